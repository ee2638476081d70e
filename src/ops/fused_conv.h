// Convolutions fused with the batch norms around them, as cuDNN graphs (issue 9; NVIDIA's MLPerf
// ResNet does the same): the convolution's epilogue sums its output per channel (the next batch
// norm's statistics, no pass of their own), its prologue applies the previous batch norm and ReLU
// to its input (no normalised copy in memory), and backward the data gradient comes out masked by
// that ReLU with the batch norm's weight gradients summed in the same pass.
//
// All tensors are CUDA; activations fp16 channels-last (NHWC) with a multiple of 8 channels,
// weights fp16 channels-last; per-channel vectors fp32 contiguous. cuDNN offers these fusions for
// fp16 only (no engine takes them in bf16: docs/PERFORMANCE.md), on Ampere and Hopper GPUs.
// Compiled only where the build found cudnn-frontend's headers (RESNET_WITH_CUDNN_FRONTEND);
// elsewhere fused_conv_supported() says why not and every other function throws.
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

namespace resnet::fused {

struct ConvGeometry {
  int64_t stride = 1, padding = 0;
};

// Whether this build and this GPU can run the graphs below; `why` gets the reason where not.
bool fused_conv_supported(const torch::Device& device, std::string* why = nullptr);

// The previous layer's batch norm + ReLU, applied to a convolution's input in its prologue:
// relu(x * scale + shift), scale_shift = {scale[C], shift[C]} fp32 (undefined: no prologue).
// Backward also needs the batch norm itself: its saved mean and 1/std and its weight.
struct InputNorm {
  torch::Tensor scale_shift;
  torch::Tensor mean, invstd, weight, bias;  // for backward (dgrad_relu_bn)
  torch::Tensor scale_shift_half;  // scale_shift in fp16 where the caller has it (else cast where cuDNN wants fp16)
  bool defined() const { return scale_shift.defined(); }
};

// y = conv(prologue(x), w) and sums = {sum[K], sum of squares[K]} of y per output channel (fp32 [2K]).
struct ConvStats {
  torch::Tensor y, sums;
};
ConvStats conv_stats(const torch::Tensor& x, const torch::Tensor& w, const InputNorm& in, ConvGeometry g);

// Backward of a convolution whose input was relu(batch_norm(x)) (x: the raw input, `in` its norm):
// grad = conv_dgrad(dy, w) masked by that ReLU; dweight, dbias of the batch norm (fp32 [C]); and
// coef = {a, b, c} (fp32 [3C]) with the batch norm's input gradient dx = a * grad + b * x + c
// (cuda::bn_grad_apply).
struct DgradNorm {
  torch::Tensor grad, dweight, dbias, coef;
};
DgradNorm dgrad_relu_bn(const torch::Tensor& dy, const torch::Tensor& w, const torch::Tensor& x, const InputNorm& in,
                        ConvGeometry g);

// Data gradient of a convolution with input of x_sizes, plus `addend` where given (another
// branch's gradient of the same input), then zero where mask_by <= 0 where given (the backward of
// the ReLU whose output mask_by is): both in cuDNN's epilogue where it can, else after it.
torch::Tensor dgrad(const torch::Tensor& dy, const torch::Tensor& w, at::IntArrayRef x_sizes, ConvGeometry g,
                    const torch::Tensor& addend = torch::Tensor(), const torch::Tensor& mask_by = torch::Tensor());

// Weight gradient (fp16, channels-last, w_sizes) of conv(prologue(x), w): the prologue recomputed.
torch::Tensor wgrad(const torch::Tensor& dy, const torch::Tensor& x, const InputNorm& in, at::IntArrayRef w_sizes,
                    ConvGeometry g);

// The cuDNN graphs built so far in this process (once per shape), a line each: what it computes,
// its shapes, the variant cuDNN took and its workspace.
std::vector<std::string> fused_conv_graphs_built();

}  // namespace resnet::fused
