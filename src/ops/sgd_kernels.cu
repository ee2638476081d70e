// SGD over all parameters in one launch (see cuda_kernels.h). The tensors travel in the kernel's
// parameter block (up to kMaxTensors a launch; CUDA 12.1+ allows 32 KiB of parameters), laid end
// to end: a block takes 4096 consecutive elements of that virtual concatenation at a time, finds
// the tensor its first element falls in, and steps forward through the tensors as it goes.
// Learning rate, momentum and weight decay are read from device memory, so a step captured in a
// CUDA graph follows changes to them.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "ops/cuda_kernels.h"

namespace resnet::cuda {
namespace {

constexpr int kMaxTensors = 160;
constexpr int kThreads = 256;
constexpr int64_t kChunk = 4096;

struct SgdBatch {
  SgdTensor tensors[kMaxTensors];
  int64_t start[kMaxTensors + 1];  // start[i]: elements before tensor i; start[count]: all
  int count;
};

__global__ void __launch_bounds__(kThreads) sgd_kernel(const __grid_constant__ SgdBatch batch, const float* hyper,
                                                       const float* grad_scale, const float* found_inf) {
  if (found_inf && *found_inf != 0.f) return;
  const float lr = hyper[0], momentum = hyper[1], weight_decay = hyper[2];
  const int64_t total = batch.start[batch.count];
  for (int64_t first = blockIdx.x * kChunk; first < total; first += gridDim.x * kChunk) {
    int lo = 0, hi = batch.count - 1;  // the last tensor starting at or before `first`
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (batch.start[mid] <= first) lo = mid;
      else hi = mid - 1;
    }
    int t = lo;
    const int64_t end = first + kChunk < total ? first + kChunk : total;
    for (int64_t e = first + threadIdx.x; e < end; e += blockDim.x) {
      while (e >= batch.start[t + 1]) ++t;
      const SgdTensor& x = batch.tensors[t];
      const int64_t i = e - batch.start[t];
      const float p = x.param[i];
      float g = x.grad[i];
      if (grad_scale) g /= *grad_scale;
      float d = g + weight_decay * p;
      if (x.buffer) {
        d = momentum * x.buffer[i] + d;
        x.buffer[i] = d;
      }
      x.param[i] = p - lr * d;
    }
  }
}

}  // namespace

void sgd_step(const SgdTensor* tensors, int count, const float* hyper, const float* grad_scale,
              const float* found_inf, int sm_count, CUstream_st* stream) {
  for (int from = 0; from < count; from += kMaxTensors) {
    SgdBatch batch{};
    batch.count = std::min(kMaxTensors, count - from);
    for (int i = 0; i < batch.count; ++i) {
      batch.tensors[i] = tensors[from + i];
      batch.start[i + 1] = batch.start[i] + tensors[from + i].numel;
    }
    const int64_t total = batch.start[batch.count];
    if (total == 0) continue;
    const int64_t blocks = std::min<int64_t>((total + kChunk - 1) / kChunk, int64_t{sm_count} * 4);
    sgd_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(batch, hyper, grad_scale, found_inf);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) throw std::runtime_error(std::string("SGD step: ") + cudaGetErrorString(e));
  }
}

}  // namespace resnet::cuda
