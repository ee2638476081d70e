#include "train/profile.h"

#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <vector>

#include "core/error.h"

namespace resnet {
namespace prof = torch::autograd::profiler;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

Profiler::Profiler(bool cuda) : cuda_(cuda) {
  if (cuda_) torch::cuda::synchronize();
  prof::enableProfilerLegacy(ProfilerConfig(cuda_ ? ProfilerState::CUDA : ProfilerState::CPU));
}

Profiler::~Profiler() {
  if (running_) prof::disableProfilerLegacy();
}

std::string Profiler::finish(const std::string& trace_path, int rows) {
  if (cuda_) torch::cuda::synchronize();
  auto lists = prof::disableProfilerLegacy();
  running_ = false;

  struct Row {
    std::string name;
    int64_t calls = 0;
    double cpu_us = 0, cuda_us = 0;
  };
  std::map<std::string, Row> by_name;
  std::vector<prof::LegacyEvent*> all;
  for (auto& list : lists) {
    std::vector<prof::LegacyEvent*> open;  // push ranges waiting for their pop, per thread
    for (auto& e : list) {
      all.push_back(&e);
      if (e.kind() == prof::EventKind::PushRange) {
        open.push_back(&e);
      } else if (e.kind() == prof::EventKind::PopRange && !open.empty()) {
        prof::LegacyEvent* start = open.back();
        open.pop_back();
        Row& r = by_name[start->name()];
        r.name = start->name();
        r.calls += 1;
        r.cpu_us += start->cpuElapsedUs(e);
        if (cuda_ && start->hasCuda() && e.hasCuda()) r.cuda_us += start->cudaElapsedUs(e);
      }
    }
  }
  std::ofstream out(trace_path);
  if (!out) throw InputError(trace_path + ": cannot open for writing (the trace)");
  prof::writeProfilerEventsToStream(out, all);
  if (!out) throw InputError(trace_path + ": write failed");

  std::vector<Row> table;
  for (auto& [name, row] : by_name) table.push_back(row);
  const bool by_cuda = cuda_;
  std::sort(table.begin(), table.end(),
            [by_cuda](const Row& a, const Row& b) { return by_cuda ? a.cuda_us > b.cuda_us : a.cpu_us > b.cpu_us; });
  double cpu_total = 0, cuda_total = 0;
  for (const auto& r : table) cpu_total += r.cpu_us, cuda_total += r.cuda_us;
  std::string s;
  char line[256];
  std::snprintf(line, sizeof line, "%-44s %10s %13s %13s %8s\n", "Name", "# calls", "CPU total", "CUDA total",
                by_cuda ? "CUDA %" : "CPU %");
  s += line;
  s += std::string(92, '-') + "\n";
  for (size_t i = 0; i < table.size() && static_cast<int>(i) < rows; ++i) {
    const auto& r = table[i];
    const std::string name = r.name.size() > 43 ? r.name.substr(0, 40) + "..." : r.name;
    std::snprintf(line, sizeof line, "%-44s %10lld %11.3fms %11.3fms %7.1f%%\n", name.c_str(),
                  static_cast<long long>(r.calls), r.cpu_us / 1000, r.cuda_us / 1000,
                  100.0 * (by_cuda ? r.cuda_us / std::max(cuda_total, 1e-9) : r.cpu_us / std::max(cpu_total, 1e-9)));
    s += line;
  }
  s += "(totals include the time of operators called inside; sorted by " + std::string(by_cuda ? "CUDA" : "CPU") +
       " total)\n";
  return s;
}

}  // namespace resnet
