// Small helpers shared by the C++ sides of our CUDA ops (batch_norm_act.cpp, fused_bottleneck.cpp):
// what the kernels accept and how tensors are handed to them. CUDA builds only.
#pragma once

#include <ATen/cuda/CUDAContext.h>
#include <torch/types.h>

#include <cstdint>

#include "ops/cuda_kernels.h"

namespace resnet::cuda_tensors {

// A bf16/fp16 4-D channels-last CUDA tensor on a 16-byte boundary (our kernels load 16 bytes).
inline bool nhwc_16_bit(const torch::Tensor& t) {
  return t.is_cuda() && t.dim() == 4 && (t.scalar_type() == at::kBFloat16 || t.scalar_type() == at::kHalf) &&
         t.is_contiguous(at::MemoryFormat::ChannelsLast) && reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0;
}

// An fp32 vector of x's channel count on x's device.
inline bool fp32_vector(const torch::Tensor& t, const torch::Tensor& x) {
  return t.defined() && t.scalar_type() == at::kFloat && t.dim() == 1 && t.size(0) == x.size(1) && t.is_contiguous() &&
         t.device() == x.device();
}

inline cuda::Half half_type(const torch::Tensor& t) {
  return t.scalar_type() == at::kBFloat16 ? cuda::Half::kBf16 : cuda::Half::kFp16;
}

inline int sm_count() { return at::cuda::getCurrentDeviceProperties()->multiProcessorCount; }

inline CUstream_st* stream() { return at::cuda::getCurrentCUDAStream().stream(); }

// Scratch for bn_act_forward / bn_act_backward over a [rows, channels] activation.
inline torch::Tensor bn_workspace(int64_t rows, int64_t channels, const torch::Tensor& like) {
  return at::empty({cuda::bn_act_workspace_floats(rows, channels, sm_count())}, like.options().dtype(at::kFloat));
}

// Gradients come as autograd hands them: made channels-last and aligned where they are not.
inline torch::Tensor nhwc(const torch::Tensor& t) {
  torch::Tensor c = t.contiguous(at::MemoryFormat::ChannelsLast);
  if (reinterpret_cast<uintptr_t>(c.data_ptr()) % 16 != 0) c = c.clone(at::MemoryFormat::ChannelsLast);
  return c;
}

}  // namespace resnet::cuda_tensors
