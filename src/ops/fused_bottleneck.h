// A whole ResNet bottleneck block in training mode as one autograd op, forward and backward
// written out by hand over the fused cuDNN convolutions of ops/fused_conv.h and our batch-norm
// kernels (issue 9's design, as NVIDIA's MLPerf ResNet):
//
//   forward   y1, stats1 = conv1(x)                      (statistics in the epilogue)
//             y2, stats2 = conv2(relu(bn1(y1)))          (bn1 + ReLU in the prologue)
//             y3, stats3 = conv3(relu(bn2(y2)))
//             [yd, statsd = downsample conv(x)]
//             out = relu(bn3(y3) + (bnd(yd) or x))       (one pass)
//   backward  bn3 (+ bnd) backward through the ReLU mask of `out`   (our kernels)
//             conv3: wgrad with bn2 + ReLU recomputed in its prologue; dgrad with the ReLU mask and
//                    bn2's weight gradients in its epilogue, then bn2's input gradient (one pass)
//             conv2: the same with bn1;  conv1 and downsample: plain dgrad and wgrad
//
// No normalised activation is ever written: the convolution outputs y1, y2, y3 (and yd) and the
// block output are all the block keeps.
//
// The ReLU masks between blocks. x must be a ReLU's output (every ResNet bottleneck's input is:
// the previous block's, or the max-pool of the stem's ReLU), and the input gradient this op
// returns is already masked by x > 0, in conv1's dgrad epilogue: where x == 0 the ReLU's own
// backward zeroes it anyway, so the model's gradients are the same, and the producer of x, when it
// is a fused block too (output_grad_masked), skips its own pass over the mask. fp16 only (the precision cuDNN fuses in), channels-last.
// Same parameters and buffers as the torchvision block; running statistics updated as PyTorch's
// BatchNorm2d does (unbiased variance, momentum).
#pragma once

#include <torch/types.h>

#include <optional>

#include "ops/batch_norm_act.h"

namespace resnet {

struct BottleneckParams {
  torch::Tensor conv1, conv2, conv3;  // fp32 (or fp16) weights, as the module holds them
  BatchNormParams bn1, bn2, bn3;
  int64_t stride = 1;  // of conv2 and of the downsample convolution
  std::optional<torch::Tensor> downsample_conv;
  std::optional<BatchNormParams> downsample_bn;
  // The gradient of the output will arrive already masked by output > 0 (the next block is a
  // fused bottleneck too): the block then does not read its output again for the mask.
  bool output_grad_masked = false;
};

// Whether fused_bottleneck runs this block on x: x fp16 channels-last on a CUDA GPU where cuDNN
// fuses (fused::fused_conv_supported), channel counts multiples of 8, batch-norm parameters fp32;
// the first without x: the parameters' half, for an input of in_channels on `device`.
bool fused_bottleneck_params_supported(const BottleneckParams& p, int64_t in_channels, const torch::Device& device);
bool fused_bottleneck_supported(const torch::Tensor& x, const BottleneckParams& p);

// The block's output for input x (training mode); differentiable in x (its gradient masked by
// x > 0, see above), the convolution weights and the batch norms' weights and biases. Updates the
// running statistics (not num_batches_tracked).
torch::Tensor fused_bottleneck(const torch::Tensor& x, const BottleneckParams& p);

}  // namespace resnet
