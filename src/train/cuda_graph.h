// A computation captured once in a CUDA graph and replayed: one launch for the thousands of
// kernels of a training step, so that small batches are no longer bound by the CPU's launch rate.
//
// The computation works on static tensors (inputs copied in before each replay, outputs read after
// it); every tensor it allocates during capture comes from the graph's private memory pool and
// keeps its address across replays. Warm-up runs (cuDNN autotuning, cuBLAS workspaces, the first
// allocations) go on the same side stream as the capture, as PyTorch's torch.cuda.graph does.
// In a build without CUDA, constructing one is a UsageError.
#pragma once

#include <c10/core/Device.h>

#include <functional>
#include <memory>

namespace resnet {

class CudaGraph {
 public:
  // The first `warmup_runs` calls of run() execute eagerly.
  CudaGraph(const c10::Device& device, int warmup_runs);
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // One run of `body` (the same computation on every call): eagerly on the capture stream for the
  // first warmup_runs calls, then captured once and replayed, and replayed on every later call.
  // Its work is ordered after the current stream's earlier work and before its later work.
  // Throws when the capture fails; the graph is unusable then.
  void run(const std::function<void()>& body);
  bool captured() const;
  // Whether the next run() captures.
  bool captures_next() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Whether this build can capture CUDA graphs on `device`.
bool cuda_graphs_supported(const c10::Device& device);

}  // namespace resnet
