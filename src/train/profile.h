// `--trace`: profiles a few steps with LibTorch's profiler (its legacy, CUDA-event based mode,
// which needs no kineto), prints a table of operators sorted by total time (as the sample's
// prof.key_averages().table(sort_by=...) did) and writes a Chrome trace JSON that Perfetto
// (ui.perfetto.dev) and chrome://tracing open.
#pragma once

#include <string>

namespace resnet {

class Profiler {
 public:
  explicit Profiler(bool cuda);
  ~Profiler();
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  // Stops, writes the trace to `trace_path` and returns the table (at most `rows` operators).
  std::string finish(const std::string& trace_path, int rows = 25);

 private:
  bool cuda_;
  bool running_ = true;
};

}  // namespace resnet
