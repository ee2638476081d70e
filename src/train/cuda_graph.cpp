#include "train/cuda_graph.h"

#include "core/error.h"

#ifdef RESNET_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace resnet {

#ifdef RESNET_WITH_CUDA

struct CudaGraph::Impl {
  Impl(const c10::Device& device, int warmup_runs)
      : device(device),
        side(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index())),
        warmup_left(warmup_runs) {}

  // `body` on the side stream, which first waits for the current stream; the current stream then
  // waits for the side stream, so that callers see the results in stream order.
  void on_side_stream(const std::function<void()>& body) {
    c10::cuda::CUDAGuard device_guard(device);
    const auto current = c10::cuda::getCurrentCUDAStream(device.index());
    at::cuda::CUDAEvent ready;
    ready.record(current);
    ready.block(side);
    {
      c10::cuda::CUDAStreamGuard stream_guard(side);
      body();
    }
    at::cuda::CUDAEvent done;
    done.record(side);
    done.block(current);
  }

  c10::Device device;
  c10::cuda::CUDAStream side;
  at::cuda::CUDAGraph graph;
  int warmup_left;
  bool captured = false;
};

CudaGraph::CudaGraph(const c10::Device& device, int warmup_runs) {
  if (!device.is_cuda()) throw UsageError("CUDA graphs need a CUDA device (got " + device.str() + ")");
  impl_ = std::make_unique<Impl>(device, warmup_runs);
}

void CudaGraph::run(const std::function<void()>& body) {
  if (impl_->warmup_left > 0) {
    --impl_->warmup_left;
    impl_->on_side_stream(body);
    return;
  }
  if (!impl_->captured) {
    impl_->on_side_stream([&] {
      // Thread-local: CUDA calls of other threads (the loader's prefetch copies its next batch to
      // the GPU meanwhile) neither break the capture nor fail; the capture stream is non-blocking,
      // so they are not ordered with it either.
      impl_->graph.capture_begin(/*pool=*/{0, 0}, cudaStreamCaptureModeThreadLocal);
      try {
        body();
      } catch (...) {
        try {
          impl_->graph.capture_end();  // leaves the stream usable; the graph is discarded
        } catch (...) {
        }
        throw;
      }
      impl_->graph.capture_end();
    });
    impl_->captured = true;
  }
  c10::cuda::CUDAGuard device_guard(impl_->device);
  impl_->graph.replay();
}

bool CudaGraph::captured() const { return impl_->captured; }
bool CudaGraph::captures_next() const { return !impl_->captured && impl_->warmup_left == 0; }

bool cuda_graphs_supported(const c10::Device& device) { return device.is_cuda(); }

#else

struct CudaGraph::Impl {};

CudaGraph::CudaGraph(const c10::Device& device, int) {
  throw UsageError("CUDA graphs need a build with CUDA (this one has none; device " + device.str() + ")");
}
void CudaGraph::run(const std::function<void()>&) {}
bool CudaGraph::captured() const { return false; }
bool CudaGraph::captures_next() const { return false; }
bool cuda_graphs_supported(const c10::Device&) { return false; }

#endif

CudaGraph::~CudaGraph() = default;

}  // namespace resnet
