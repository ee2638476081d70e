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
  explicit CudaGraph(const c10::Device& device);
  ~CudaGraph();
  CudaGraph(const CudaGraph&) = delete;
  CudaGraph& operator=(const CudaGraph&) = delete;

  // Runs `body` eagerly on the capture stream, ordered after the current stream's work and
  // before its later work.
  void warmup(const std::function<void()>& body);
  // Records `body` (nothing runs); replay() then runs it.
  void capture(const std::function<void()>& body);
  // Runs the captured work on the current stream.
  void replay();
  bool captured() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Whether this build can capture CUDA graphs on `device`.
bool cuda_graphs_supported(const c10::Device& device);

}  // namespace resnet
