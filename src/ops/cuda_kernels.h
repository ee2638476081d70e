// Launchers of our own CUDA kernels (src/ops/*.cu). They take raw pointers and a stream, so that
// the .cu files include no ATen header and nvcc compiles them in seconds; the callers
// (batch_norm_act.cpp, train/sgd.cpp) check shapes, dtypes, layouts and alignment first.
// Every launcher queues work on `stream` and returns without waiting: all of it can be captured
// in a CUDA graph.
#pragma once

#include <cstdint>

struct CUstream_st;  // cudaStream_t without the CUDA headers

namespace resnet::cuda {

enum class Half { kBf16, kFp16 };  // the 16-bit activation type

// --- batch norm + residual add + ReLU over NHWC activations -------------------------------------
// `rows` = N*H*W, `channels` = C (a multiple of 8; x, residual, y 16-byte aligned). Weight, bias,
// running statistics and saved statistics are fp32 [C]; `sm_count` sizes the grid.

// fp32 elements of the scratch buffer bn_act_forward and bn_act_backward need.
int64_t bn_act_workspace_floats(int64_t rows, int64_t channels, int sm_count);

// y = act(x * scale + shift [+ residual]) with batch statistics (training mode): saves the mean and
// 1/sqrt(var + eps) of each channel and updates the running statistics as PyTorch does (momentum,
// unbiased variance). residual may be null; act is ReLU or identity.
void bn_act_forward(Half type, const void* x, const void* residual, void* y, int64_t rows, int64_t channels,
                    const float* weight, const float* bias, float* running_mean, float* running_var,
                    float momentum, float eps, bool relu, float* save_mean, float* save_invstd, float* workspace,
                    int sm_count, CUstream_st* stream);

// Gradients of bn_act_forward: dx, d(residual) when `dresidual` is not null (the gradient after
// the ReLU), d(weight) and d(bias). `y` is the forward output (the ReLU mask), read only with
// `relu` (null otherwise).
void bn_act_backward(Half type, const void* dy, const void* y, const void* x, void* dx, void* dresidual,
                     int64_t rows, int64_t channels, const float* weight, const float* save_mean,
                     const float* save_invstd, bool relu, float* dweight, float* dbias, float* workspace,
                     int sm_count, CUstream_st* stream);

// Two batch norms whose outputs were added before the ReLU (a downsample block's end:
// relu(bn1(x1) + bn2(x2)), y its output, read only with `relu`): the gradients of both from one
// read of dy per pass, as two bn_act_backward calls give them (same sums, same order).
struct BnBackwardSide {
  const void* x;
  void* dx;
  const float *weight, *save_mean, *save_invstd;
  float *dweight, *dbias;
};
int64_t bn_pair_backward_workspace_floats(int64_t rows, int64_t channels, int sm_count);
void bn_pair_backward(Half type, const void* dy, const void* y, const BnBackwardSide& first,
                      const BnBackwardSide& second, int64_t rows, int64_t channels, bool relu, float* workspace,
                      int sm_count, CUstream_st* stream);

// --- the fused convolution path (ops/fused_conv.h): cuDNN's convolutions give the statistics -----
// From per-channel sums `sums` = {sum[C], sum of squares[C]} over `rows` values: the saved mean and
// 1/std, scale_shift = {weight/std[C], bias - mean*weight/std[C]} and the running statistics, as
// bn_act_forward does; scale_shift_half, where not null, gets the same in fp16 (for cuDNN's
// prologues that take it so).
void bn_finalize_sums(const float* sums, int64_t rows, int64_t channels, const float* weight, const float* bias,
                      float* running_mean, float* running_var, float momentum, float eps, float* save_mean,
                      float* save_invstd, float* scale_shift, void* scale_shift_half, CUstream_st* stream);

// y = act(x * scale + shift + r) with r = residual, residual * rscale + rshift where
// residual_scale_shift = {rscale[C], rshift[C]} is given, or nothing where residual is null.
void bn_apply(Half type, const void* x, const float* scale_shift, const void* residual,
              const float* residual_scale_shift, void* y, int64_t rows, int64_t channels, bool relu, int sm_count,
              CUstream_st* stream);

// dx = a * g + b * x + c per channel, coef = {a[C], b[C], c[C]}.
void bn_grad_apply(Half type, const void* g, const void* x, const float* coef, void* dx, int64_t rows,
                   int64_t channels, int sm_count, CUstream_st* stream);

// --- the stem: batch norm + ReLU + 3x3 max-pool with stride 2 and padding 1 ---------------------
// The pooled output's side for an input side (3x3 windows, stride 2, padding 1).
constexpr int64_t stem_pooled_side(int64_t side) { return (side - 1) / 2 + 1; }

// x is [n, h, w, channels] (NHWC; channels a multiple of 8; n * h * w < 2^31), y is
// [n, (h - 1) / 2 + 1, (w - 1) / 2 + 1, channels]. Forward: batch statistics as bn_act_forward (saved
// mean and 1/std, running statistics, same workspace), then y = maxpool(relu(x * scale + shift))
// in one pass, without writing the ReLU's output; `argmax` (one byte per value of y, 8-byte
// aligned) keeps where each maximum was: 3 * kh + kw in its window, the first in row-major order
// (as PyTorch's max-pool; NaN wins).
void bn_relu_maxpool_forward(Half type, const void* x, void* y, uint8_t* argmax, int64_t n, int64_t h, int64_t w,
                             int64_t channels, const float* weight, const float* bias, float* running_mean,
                             float* running_var, float momentum, float eps, float* save_mean, float* save_invstd,
                             float* workspace, int sm_count, CUstream_st* stream);
// Backward from dy (y's shape): the max-pool's gradient gathered at each input position from the
// windows whose maximum it was, masked by the ReLU, through the batch norm: dx, d(weight), d(bias).
void bn_relu_maxpool_backward(Half type, const void* dy, const uint8_t* argmax, const void* x, void* dx, int64_t n,
                              int64_t h, int64_t w, int64_t channels, const float* weight, const float* bias,
                              const float* save_mean, const float* save_invstd, float* dweight, float* dbias,
                              float* workspace, int sm_count, CUstream_st* stream);

// --- SGD with momentum and weight decay over many fp32 tensors ----------------------------------
// torch.optim.SGD (dampening 0, no Nesterov), hyperparameters read on the device from
// `hyper` = {learning rate, momentum, weight decay}: d = g / grad_scale + wd * p;
// buf = momentum * buf + d; p -= lr * buf. A zero buffer makes the first step PyTorch's
// (buf = d). Without buffers (null), p -= lr * d. Nothing changes where *found_inf != 0.
// grad_scale and found_inf may be null.
struct SgdTensor {
  float* param;
  const float* grad;
  float* buffer;  // null: no momentum
  int64_t numel;
};
void sgd_step(const SgdTensor* tensors, int count, const float* hyper, const float* grad_scale,
              const float* found_inf, int sm_count, CUstream_st* stream);

// --- many tensors cast between fp32 and fp16 in one launch (each dense, dst laid out as src) -----
enum class Cast { kFloatToHalf, kHalfToFloat };
struct CastTensor {
  const void* src;
  void* dst;
  int64_t numel;
};
void cast_tensors(const CastTensor* tensors, int count, Cast kind, int sm_count, CUstream_st* stream);

// --- the loader's transform: bilinear crop-resize of uint8 images, then normalisation -------------
// out[b, c, y, x] = shift[c] + scale[c] * (image b's channel c read bilinearly at source (sy, sx)),
// sy = max(min(y0 + (y + 0.5) * ystep - 0.5, yhi), ylo), sx likewise from x, or from size - 1 - x
// where flip != 0; both then clamped into the padded batch (height x width, both > 0), as
// grid_sample's border padding does. Images and out are addressed through their strides (in
// elements), so either may be channels-last; 3 channels, batch <= 65535, size * size < 2^31; out is
// fp32 [batch, 3, size, size].
struct ResampleGeometry {
  float y0, ystep, ylo, yhi, x0, xstep, xlo, xhi, flip;
};
struct ImageStrides {
  int64_t n, c, h, w;
};
struct ChannelAffine {
  float scale[3], shift[3];
};
void resample_normalise(const uint8_t* images, ImageStrides in, int64_t height, int64_t width,
                        const ResampleGeometry* geometry, int64_t batch, int64_t size, float* out,
                        ImageStrides out_strides, ChannelAffine affine, CUstream_st* stream);

}  // namespace resnet::cuda
