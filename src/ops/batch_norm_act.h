// act(batch_norm(x) [+ residual]) in training mode as one autograd op: the batch norm, residual
// add and ReLU that close every ResNet block, in our own CUDA kernels (batch_norm_kernels.cu) for
// bf16/fp16 channels-last activations. Where ATen runs batch norm, the add and the ReLU as five
// kernels forward and backward (each a full pass over the activation, the ReLU's and the add's
// gradients as separate tensors), this reads x twice and writes y once forward, and reads dy, y, x
// twice and writes dx once backward. Results match ATen's batch_norm + add + relu to the
// precision of the 16-bit type (tests/test_ops.cpp, on the GPU); running statistics are updated
// as nn.BatchNorm2d does.
#pragma once

#include <torch/types.h>

#include <functional>

namespace resnet {

// The parameters and buffers of a BatchNorm2d.
struct BatchNormParams {
  torch::Tensor weight, bias, running_mean, running_var;
  double momentum = 0.1, eps = 1e-5;
};

// A training-mode batch norm of x with these parameters (updating the running statistics), as a
// model may be given one in place of its own (Classifier::set_batch_norm).
using BatchNormFn = std::function<torch::Tensor(const torch::Tensor& x, const BatchNormParams& bn)>;

// Whether batch_norm_act runs these inputs: a CUDA build, x a bf16 or fp16 channels-last 4-D CUDA
// tensor with a multiple of 8 channels and more than one value per channel, fp32 weight, bias and
// running statistics, and a residual (if defined) of x's shape, type and layout. Callers use
// ATen's ops otherwise.
bool batch_norm_act_supported(const torch::Tensor& x, const torch::Tensor& residual, const BatchNormParams& bn);

// Training-mode batch norm of x with batch statistics (running statistics updated), plus
// `residual` where defined, then ReLU where `relu`. Differentiable in x, residual, weight, bias.
torch::Tensor batch_norm_act(const torch::Tensor& x, const torch::Tensor& residual, const BatchNormParams& bn,
                             bool relu);

// The stem of a ResNet in training mode as one op: max_pool2d(relu(batch_norm(x)), 3, stride 2,
// padding 1). Forward reads x twice (statistics, then the pool) and writes only the pooled output
// and a byte per output value for where its maximum was; backward gathers each input position's
// gradient from the windows it won, through the ReLU and the batch norm, in two passes. Where the
// plain ops write the ReLU's output, 8-byte max-pool indices and a zero-filled gradient, and read
// them back. Same inputs as batch_norm_act (without residual), and n * h * w < 2^31.
bool batch_norm_relu_maxpool_supported(const torch::Tensor& x, const BatchNormParams& bn);
torch::Tensor batch_norm_relu_maxpool(const torch::Tensor& x, const BatchNormParams& bn);

}  // namespace resnet
