// Many tensors cast between fp32 and fp16 in one launch (see cuda_kernels.h), over
// multi_tensor.cuh's batches.
#include <cuda_fp16.h>

#include "ops/cuda_kernels.h"
#include "ops/multi_tensor.cuh"

namespace resnet::cuda {
namespace {

using multi_tensor::Batch;

template <typename From, typename To>
__device__ __forceinline__ To convert(From v);
template <>
__device__ __forceinline__ __half convert(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ float convert(__half v) { return __half2float(v); }

template <typename From, typename To>
__global__ void __launch_bounds__(multi_tensor::kThreads) cast_kernel(const __grid_constant__ Batch<CastTensor> batch) {
  multi_tensor::for_each_element(batch, [](const CastTensor& t, int64_t i) {
    static_cast<To*>(t.dst)[i] = convert<From, To>(static_cast<const From*>(t.src)[i]);
  });
}

}  // namespace

void cast_tensors(const CastTensor* tensors, int count, Cast kind, int sm_count, CUstream_st* stream) {
  multi_tensor::launch_batches(tensors, count, sm_count, "cast", [&](const Batch<CastTensor>& batch, unsigned blocks) {
    if (kind == Cast::kFloatToHalf)
      cast_kernel<float, __half><<<blocks, multi_tensor::kThreads, 0, stream>>>(batch);
    else
      cast_kernel<__half, float><<<blocks, multi_tensor::kThreads, 0, stream>>>(batch);
  });
}

}  // namespace resnet::cuda
