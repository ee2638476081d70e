// fp16 copies of many fp32 weights as one autograd op: one kernel casts them all forward, one
// casts all their gradients back to fp32 (cuda_kernels.h's cast_tensors), where `tensor.to(kHalf)`
// per weight launches a kernel for each and autograd another for each gradient: 104 small
// kernels a ResNet-50 step on the fused path, 8 when each layer's weights are cast together.
// The copies are laid out as the weights (channels-last stays channels-last); their values and
// gradients are exactly those of to(kHalf) and to(kFloat).
#pragma once

#include <torch/types.h>

#include <vector>

namespace resnet {

// Whether half_copies takes these: a CUDA build; every weight a fp32 CUDA tensor on one device,
// contiguous or channels-last contiguous.
bool half_copies_supported(const std::vector<torch::Tensor>& weights);

// The fp16 copies, differentiable in the weights (their gradients come back as one fp32 kernel
// once all the copies' gradients have arrived, so a data-parallel reducer sees these weights'
// gradients together: cast layer by layer to keep its overlap with backward).
std::vector<torch::Tensor> half_copies(const std::vector<torch::Tensor>& weights);

}  // namespace resnet
