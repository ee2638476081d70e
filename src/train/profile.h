// `--trace`: profiles a few steps with LibTorch's profiler (its legacy, CUDA-event based mode,
// which needs no kineto), prints a table of operators sorted by total time (as the sample's
// prof.key_averages().table(sort_by=...) did) and writes a Chrome trace JSON that Perfetto
// (ui.perfetto.dev) and chrome://tracing open.
#pragma once

#include <chrono>
#include <string>

namespace resnet {

class Profiler {
 public:
  explicit Profiler(bool cuda);
  ~Profiler();
  Profiler(const Profiler&) = delete;
  Profiler& operator=(const Profiler&) = delete;

  // Stops, writes the trace to `trace_path` and returns the table (at most `rows` operators)
  // and, on CUDA, the device time per step (of `steps` profiled) grouped by kind of operator.
  std::string finish(const std::string& trace_path, int steps = 0, int rows = 25);

 private:
  bool cuda_;
  bool running_ = true;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace resnet
