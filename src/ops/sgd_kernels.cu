// SGD over all parameters in one launch (see cuda_kernels.h), over multi_tensor.cuh's batches.
// Learning rate, momentum and weight decay are read from device memory, so a step captured in a
// CUDA graph follows changes to them.
#include "ops/cuda_kernels.h"
#include "ops/multi_tensor.cuh"

namespace resnet::cuda {
namespace {

using multi_tensor::Batch;

__global__ void __launch_bounds__(multi_tensor::kThreads) sgd_kernel(const __grid_constant__ Batch<SgdTensor> batch,
                                                                     const float* hyper, const float* grad_scale,
                                                                     const float* found_inf) {
  if (found_inf && *found_inf != 0.f) return;
  const float lr = hyper[0], momentum = hyper[1], weight_decay = hyper[2];
  multi_tensor::for_each_element(batch, [&](const SgdTensor& x, int64_t i) {
    const float p = x.param[i];
    float g = x.grad[i];
    if (grad_scale) g /= *grad_scale;
    float d = g + weight_decay * p;
    if (x.buffer) {
      d = momentum * x.buffer[i] + d;
      x.buffer[i] = d;
    }
    x.param[i] = p - lr * d;
  });
}

}  // namespace

void sgd_step(const SgdTensor* tensors, int count, const float* hyper, const float* grad_scale,
              const float* found_inf, int sm_count, CUstream_st* stream) {
  multi_tensor::launch_batches(tensors, count, sm_count, "SGD step",
                               [&](const Batch<SgdTensor>& batch, unsigned blocks) {
                                 sgd_kernel<<<blocks, multi_tensor::kThreads, 0, stream>>>(batch, hyper, grad_scale,
                                                                                           found_inf);
                               });
}

}  // namespace resnet::cuda
