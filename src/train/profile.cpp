#include "train/profile.h"

#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <vector>

#include "core/error.h"

namespace resnet {
namespace prof = torch::autograd::profiler;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

namespace {

// The kind of work an innermost operator does, for the "where the time goes" summary.
const char* kind_of(const std::string& name) {
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (has("conv")) return "convolutions";
  if (has("batch_norm")) return "batch norm";
  if (has("sgd") || has("_foreach") || has("_amp_")) return "optimizer";
  if (has("copy") || has("_to_copy") || has("contiguous") || has("clone")) return "copies";
  if (has("mm") || has("addmm") || has("linear")) return "matrix products (fc)";
  if (has("pool")) return "pooling";
  if (has("softmax") || has("nll_loss") || has("cross_entropy")) return "loss";
  if (has("relu") || has("clamp") || has("threshold") || has("add") || has("mul") || has("fill") || has("zero") || has("sum") ||
      has("div") || has("sub"))
    return "elementwise";
  return "other";
}

}  // namespace

Profiler::Profiler(bool cuda) : cuda_(cuda) {
  if (cuda_) torch::cuda::synchronize();
  start_ = std::chrono::steady_clock::now();
  prof::enableProfilerLegacy(ProfilerConfig(cuda_ ? ProfilerState::CUDA : ProfilerState::CPU));
}

Profiler::~Profiler() {
  if (running_) prof::disableProfilerLegacy();
}

std::string Profiler::finish(const std::string& trace_path, int steps, int rows) {
  if (cuda_) torch::cuda::synchronize();
  const double wall_us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start_).count();
  auto lists = prof::disableProfilerLegacy();
  running_ = false;

  struct Row {
    std::string name;
    int64_t calls = 0;
    double cpu_us = 0, cuda_us = 0;
  };
  std::map<std::string, Row> by_name;
  std::map<std::string, double> by_kind;  // device time of each operator less that of those inside it
  std::vector<prof::LegacyEvent*> all;
  for (auto& list : lists) {
    // push ranges waiting for their pop, per thread, with the device time of the ranges inside
    std::vector<std::pair<prof::LegacyEvent*, double>> open;
    for (auto& e : list) {
      all.push_back(&e);
      if (e.kind() == prof::EventKind::PushRange) {
        open.emplace_back(&e, 0.0);
      } else if (e.kind() == prof::EventKind::PopRange && !open.empty()) {
        const auto [start, inner_us] = open.back();
        open.pop_back();
        Row& r = by_name[start->name()];
        r.name = start->name();
        r.calls += 1;
        r.cpu_us += start->cpuElapsedUs(e);
        if (cuda_ && start->hasCuda() && e.hasCuda()) {
          const double us = start->cudaElapsedUs(e);
          r.cuda_us += us;
          by_kind[kind_of(start->name())] += std::max(0.0, us - inner_us);
          if (!open.empty()) open.back().second += us;
        }
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
  if (!cuda_ || steps < 1) return s;
  // Where a step's GPU time goes: operators' own device time (less that of operators inside them)
  // grouped by kind; the rest of the wall time
  // is the GPU waiting for the CPU (launches, Python-free but still host-bound work) or idle.
  std::vector<std::pair<std::string, double>> kinds(by_kind.begin(), by_kind.end());
  std::sort(kinds.begin(), kinds.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  double busy = 0;
  for (const auto& [kind, us] : kinds) busy += us;
  std::snprintf(line, sizeof line, "\nWhere a step's time goes (%d eager steps, %.3f ms per step wall):\n", steps,
                wall_us / 1000 / steps);
  s += line;
  kinds.emplace_back("idle / waiting for the host", std::max(0.0, wall_us - busy));
  for (const auto& [kind, us] : kinds) {
    std::snprintf(line, sizeof line, "  %-30s %9.3f ms %6.1f%%\n", kind.c_str(), us / 1000 / steps,
                  100.0 * us / std::max(wall_us, 1e-9));
    s += line;
  }
  return s;
}

}  // namespace resnet
