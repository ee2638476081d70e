// Batch norm (training mode) fused with the residual add and ReLU that follow it in a ResNet
// block, over NHWC activations in bf16 or fp16 (see cuda_kernels.h for the contract).
//
// The activations are a [rows, C] matrix with C contiguous. Every kernel gives a thread 8
// neighbouring channels (one 16-byte load) and a block `lanes` such groups side by side (up to 256
// channels, so that a warp reads whole rows) and 256 / lanes rows; the grid's y covers the rest of
// the channels and its x splits the rows into chunks. A thread keeps its channels' constants in
// registers and walks its chunk's rows (U at a time: batch_norm_kernels.cuh says what was measured).
//
// Forward: (1) per-chunk sums of x and x^2 (fp32; a chunk is a few hundred rows), (2) one
// finalize sums the chunks in fp64 and turns them into mean, 1/std, scale, shift and the running
// statistics, (3) y = act(x * scale + shift [+ r]). Backward has the same shape: per-chunk sums of
// g and g * (x - mean), where g is dy masked by y > 0 for ReLU; a finalize that gives d(weight),
// d(bias) and three coefficients per channel; dx = a * g + k * (x - mean) + b, and g itself as the
// residual's gradient. Sums are per chunk and then in a fixed order: results are deterministic.
#include <cmath>
#include <stdexcept>
#include <string>

#include "ops/batch_norm_kernels.cuh"
#include "ops/cuda_kernels.h"

namespace resnet::cuda {
namespace {

// --- the stem: batch norm + ReLU + 3x3 max-pool, stride 2, padding 1 ---------------------------
// The input x is [N, H, W, C] (rows = N*H*W), the output [N, OH, OW, C]. A window's positions are
// numbered k = 3 * kh + kw; argmax keeps the one of each output value (one byte).
struct PoolShape {
  int H, W, OH, OW;
};

// y = max over the window of relu(x * scale + shift): the first maximum in row-major order wins,
// and NaN wins, as PyTorch's max-pool. One thread: 8 channels of one output pixel.
template <typename T>
__global__ void __launch_bounds__(kThreads) bn_relu_maxpool(const T* __restrict__ x, T* __restrict__ y,
                                                            uint8_t* __restrict__ argmax, uint32_t pixels, int C,
                                                            PoolShape s, const float* __restrict__ scale_shift) {
  // 32-bit index arithmetic (the launcher checks that it fits): 64-bit division costs more than
  // the loads
  const uint32_t groups = C / kVec, i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= pixels * groups) return;
  const int c = static_cast<int>(i % groups) * kVec;
  const uint32_t pixel = i / groups, ow = pixel % s.OW, rest = pixel / s.OW, oh = rest % s.OH;
  const int64_t n = rest / s.OH;
  float scale[kVec], shift[kVec], best[kVec];
  uint8_t at[kVec];
  load8(scale_shift + c, scale);
  load8(scale_shift + C + c, shift);
#pragma unroll
  for (int k = 0; k < kVec; ++k) best[k] = -INFINITY, at[k] = 4;  // the centre is always inside
#pragma unroll
  for (int kh = 0; kh < 3; ++kh) {
    const int h = 2 * static_cast<int>(oh) - 1 + kh;
    if (h < 0 || h >= s.H) continue;
#pragma unroll
    for (int kw = 0; kw < 3; ++kw) {
      const int w = 2 * static_cast<int>(ow) - 1 + kw;
      if (w < 0 || w >= s.W) continue;
      float v[kVec];
      load8(x + ((n * s.H + h) * s.W + w) * C + c, v);
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        const float a = relu(v[k] * scale[k] + shift[k]);
        if (a > best[k] || isnan(a)) best[k] = a, at[k] = static_cast<uint8_t>(3 * kh + kw);
      }
    }
  }
  store8(y + static_cast<int64_t>(pixel) * C + c, best);
  uint2 packed;
  packed.x = at[0] | at[1] << 8 | at[2] << 16 | static_cast<uint32_t>(at[3]) << 24;
  packed.y = at[4] | at[5] << 8 | at[6] << 16 | static_cast<uint32_t>(at[7]) << 24;
  *reinterpret_cast<uint2*>(argmax + static_cast<int64_t>(pixel) * C + c) = packed;
}

// g at input row `row`: the output gradients of the windows whose maximum it was, zero where the
// ReLU's output was 0 (x * scale + shift <= 0).
// The input position of a row, kept up to date as a thread walks its rows (no division a row).
struct Position {
  int64_t n;
  int h, w;
  __device__ Position(int64_t row, PoolShape s)
      : n(row / (static_cast<int64_t>(s.W) * s.H)), h(static_cast<int>((row / s.W) % s.H)),
        w(static_cast<int>(row % s.W)) {}
  __device__ void advance(int rows, PoolShape s) {
    w += rows;
    while (w >= s.W) {
      w -= s.W;
      if (++h == s.H) h = 0, ++n;
    }
  }
};

template <typename T>
__device__ __forceinline__ void pooled_grad(const T* __restrict__ dy, const uint8_t* __restrict__ argmax,
                                            const Position& at, int C, int c, PoolShape s, const float (&xv)[kVec],
                                            const float (&scale)[kVec], const float (&shift)[kVec], float (&g)[kVec]) {
  const int h = at.h, w = at.w;
  const int64_t n = at.n;
#pragma unroll
  for (int k = 0; k < kVec; ++k) g[k] = 0.f;
  const int oh_end = min((h + 1) / 2, s.OH - 1), ow_end = min((w + 1) / 2, s.OW - 1);
  for (int oh = h / 2; oh <= oh_end; ++oh)
    for (int ow = w / 2; ow <= ow_end; ++ow) {
      const int64_t o = ((n * s.OH + oh) * s.OW + ow) * C + c;
      const uint2 packed = __ldg(reinterpret_cast<const uint2*>(argmax + o));
      const uint32_t mine = 3 * (h - 2 * oh + 1) + (w - 2 * ow + 1);
      float d[kVec];
      load8(dy + o, d);
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        const uint32_t a = ((k < 4 ? packed.x : packed.y) >> (8 * (k % 4))) & 0xff;
        if (a == mine) g[k] += d[k];
      }
    }
#pragma unroll
  for (int k = 0; k < kVec; ++k)
    if (!(xv[k] * scale[k] + shift[k] > 0.f)) g[k] = 0.f;
}

// scale and shift of the batch norm from its saved statistics (as the forward's finalize)
__device__ __forceinline__ void scale_shift_of(const float* weight, const float* bias, const float* mean,
                                               const float* invstd, int c, float (&scale)[kVec],
                                               float (&shift)[kVec], float (&m)[kVec]) {
  float w[kVec], b[kVec], is[kVec];
  load8(weight + c, w);
  load8(bias + c, b);
  load8(mean + c, m);
  load8(invstd + c, is);
#pragma unroll
  for (int k = 0; k < kVec; ++k) scale[k] = w[k] * is[k], shift[k] = b[k] - m[k] * scale[k];
}

template <typename T>
__global__ void __launch_bounds__(kThreads) bn_relu_maxpool_backward_reduce(
    const T* __restrict__ dy, const uint8_t* __restrict__ argmax, const T* __restrict__ x, int64_t rows, int C,
    int64_t chunk, PoolShape s, const float* weight, const float* bias, const float* save_mean,
    const float* save_invstd, float* __restrict__ partial) {
  const Place at = place(rows, chunk);
  float scale[kVec], shift[kVec], mean[kVec], sg[kVec] = {}, sgx[kVec] = {};
  scale_shift_of(weight, bias, save_mean, save_invstd, at.c, scale, shift, mean);
  Position pos(at.begin, s);
  for (int64_t r = at.begin; r < at.end; r += blockDim.y, pos.advance(blockDim.y, s)) {
    float v[kVec], g[kVec];
    load8(x + r * C + at.c, v);
    pooled_grad(dy, argmax, pos, C, at.c, s, v, scale, shift, g);
#pragma unroll
    for (int k = 0; k < kVec; ++k) {
      sg[k] += g[k];
      sgx[k] += g[k] * (v[k] - mean[k]);
    }
  }
  store_block_sums(sg, sgx, partial, C);
}

template <typename T>
__global__ void __launch_bounds__(kThreads) bn_relu_maxpool_backward_apply(
    const T* __restrict__ dy, const uint8_t* __restrict__ argmax, const T* __restrict__ x, T* __restrict__ dx,
    int64_t rows, int C, int64_t chunk, PoolShape s, const float* weight, const float* bias,
    const float* save_mean, const float* save_invstd, const float* __restrict__ coef) {
  const Place at = place(rows, chunk);
  float scale[kVec], shift[kVec], mean[kVec], a[kVec], k_[kVec], b[kVec];
  scale_shift_of(weight, bias, save_mean, save_invstd, at.c, scale, shift, mean);
  load8(coef + at.c, a);
  load8(coef + C + at.c, k_);
  load8(coef + 2 * C + at.c, b);
  Position pos(at.begin, s);
  for (int64_t r = at.begin; r < at.end; r += blockDim.y, pos.advance(blockDim.y, s)) {
    float v[kVec], g[kVec];
    load8(x + r * C + at.c, v);
    pooled_grad(dy, argmax, pos, C, at.c, s, v, scale, shift, g);
#pragma unroll
    for (int k = 0; k < kVec; ++k) v[k] = a[k] * g[k] + k_[k] * (v[k] - mean[k]) + b[k];
    store8(dx + r * C + at.c, v);
  }
}

void check_launch(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

// y = act(x * scale + shift [+ residual, itself normalised where residual_scale_shift is given]).
template <typename T>
void launch_apply(const T* x, const float* scale_shift, const T* residual, const float* residual_scale_shift, T* y,
                  int64_t rows, int C, bool relu, int sm_count, cudaStream_t stream) {
  const Tiling apply = tiling(rows, C, sm_count, kApplyBlocksPerSm);
#define RESNET_BN_APPLY(RELU, RES)                                                                      \
  bn_apply<T, RELU, RES><<<apply.grid, apply.block, 0, stream>>>(x, residual, y, rows, C, apply.chunk, scale_shift, \
                                                                 residual_scale_shift)
  const int mode = !residual ? kNoResidual : residual_scale_shift ? kAddNormalisedResidual : kAddResidual;
  if (relu && mode == kAddResidual) RESNET_BN_APPLY(true, kAddResidual);
  else if (relu && mode == kAddNormalisedResidual) RESNET_BN_APPLY(true, kAddNormalisedResidual);
  else if (relu) RESNET_BN_APPLY(true, kNoResidual);
  else if (mode == kAddResidual) RESNET_BN_APPLY(false, kAddResidual);
  else if (mode == kAddNormalisedResidual) RESNET_BN_APPLY(false, kAddNormalisedResidual);
  else RESNET_BN_APPLY(false, kNoResidual);
#undef RESNET_BN_APPLY
}

// The forward's first two steps: per-chunk sums of x, then their finalize (saved statistics,
// running statistics); returns where in the workspace scale_shift = {scale[C], shift[C]} is.
template <typename T>
float* batch_statistics(const void* x, int64_t rows, int C, const float* weight, const float* bias,
                        float* running_mean, float* running_var, float momentum, float eps, float* save_mean,
                        float* save_invstd, float* workspace, int sm_count, cudaStream_t stream) {
  const Tiling stats = tiling(rows, C, sm_count, kStatsBlocksPerSm);
  const int chunks = static_cast<int>(stats.grid.x);
  float* scale_shift = workspace + 2 * static_cast<int64_t>(chunks) * C;
  bn_stats<T><<<stats.grid, stats.block, 0, stream>>>(static_cast<const T*>(x), rows, C, stats.chunk, workspace);
  bn_finalize_forward<<<(C + 31) / 32, dim3(32, 8), 0, stream>>>(workspace, chunks, rows, C, weight, bias, running_mean,
                                                               running_var, momentum, eps, save_mean, save_invstd,
                                                               scale_shift);
  return scale_shift;
}

template <typename T>
void forward_typed(const void* x, const void* residual, void* y, int64_t rows, int C, const float* weight,
                   const float* bias, float* running_mean, float* running_var, float momentum, float eps, bool relu,
                   float* save_mean, float* save_invstd, float* workspace, int sm_count, cudaStream_t stream) {
  const float* scale_shift = batch_statistics<T>(x, rows, C, weight, bias, running_mean, running_var, momentum, eps,
                                                 save_mean, save_invstd, workspace, sm_count, stream);
  const auto* xt = static_cast<const T*>(x);
  const auto* rt = static_cast<const T*>(residual);
  auto* yt = static_cast<T*>(y);
  launch_apply<T>(xt, scale_shift, rt, nullptr, yt, rows, C, relu, sm_count, stream);
  check_launch("batch norm forward");
}

template <typename T>
void backward_typed(const void* dy, const void* y, const void* x, void* dx, void* dresidual, int64_t rows, int C,
                    const float* weight, const float* save_mean, const float* save_invstd, bool relu, float* dweight,
                    float* dbias, float* workspace, int sm_count, cudaStream_t stream) {
  const Tiling stats = tiling(rows, C, sm_count, kStatsBlocksPerSm);
  const int chunks = static_cast<int>(stats.grid.x);
  float* coef = workspace + 2 * static_cast<int64_t>(chunks) * C;
  const auto* dyt = static_cast<const T*>(dy);
  const auto* yt = static_cast<const T*>(y);
  const auto* xt = static_cast<const T*>(x);
  if (relu)
    bn_backward_reduce<T, true><<<stats.grid, stats.block, 0, stream>>>(dyt, yt, xt, rows, C, stats.chunk, save_mean, workspace);
  else
    bn_backward_reduce<T, false><<<stats.grid, stats.block, 0, stream>>>(dyt, yt, xt, rows, C, stats.chunk, save_mean, workspace);
  bn_finalize_backward<<<(C + 31) / 32, dim3(32, 8), 0, stream>>>(workspace, chunks, rows, C, weight, save_invstd,
                                                                dweight, dbias, coef);
  const Tiling apply = tiling(rows, C, sm_count, kApplyBlocksPerSm);
  auto* dxt = static_cast<T*>(dx);
  auto* drt = static_cast<T*>(dresidual);
#define RESNET_BN_BACKWARD_APPLY(RELU, RES)                                                                      \
  bn_backward_apply<T, RELU, RES><<<apply.grid, apply.block, 0, stream>>>(dyt, yt, xt, dxt, drt, rows, C, apply.chunk, \
                                                                           coef, save_mean)
  if (relu && dresidual) RESNET_BN_BACKWARD_APPLY(true, true);
  else if (relu) RESNET_BN_BACKWARD_APPLY(true, false);
  else if (dresidual) RESNET_BN_BACKWARD_APPLY(false, true);
  else RESNET_BN_BACKWARD_APPLY(false, false);
#undef RESNET_BN_BACKWARD_APPLY
  check_launch("batch norm backward");
}

template <typename T>
void pair_backward_typed(const void* dy, const void* y, const BnBackwardSide& s1, const BnBackwardSide& s2,
                         int64_t rows, int C, bool relu, float* workspace, int sm_count, cudaStream_t stream) {
  const Tiling stats = tiling(rows, C, sm_count, kStatsBlocksPerSm);
  const int chunks = static_cast<int>(stats.grid.x);
  float* partial1 = workspace;
  float* partial2 = workspace + 2 * static_cast<int64_t>(chunks) * C;
  float* coef1 = workspace + 4 * static_cast<int64_t>(chunks) * C;
  float* coef2 = coef1 + 3 * C;
  const auto* dyt = static_cast<const T*>(dy);
  const auto* yt = static_cast<const T*>(y);
  const auto* x1 = static_cast<const T*>(s1.x);
  const auto* x2 = static_cast<const T*>(s2.x);
  if (relu)
    bn_pair_backward_reduce<T, true><<<stats.grid, stats.block, 0, stream>>>(
        dyt, yt, x1, x2, rows, C, stats.chunk, s1.save_mean, s2.save_mean, partial1, partial2);
  else
    bn_pair_backward_reduce<T, false><<<stats.grid, stats.block, 0, stream>>>(
        dyt, yt, x1, x2, rows, C, stats.chunk, s1.save_mean, s2.save_mean, partial1, partial2);
  bn_finalize_backward<<<(C + 31) / 32, dim3(32, 8), 0, stream>>>(partial1, chunks, rows, C, s1.weight,
                                                                s1.save_invstd, s1.dweight, s1.dbias, coef1);
  bn_finalize_backward<<<(C + 31) / 32, dim3(32, 8), 0, stream>>>(partial2, chunks, rows, C, s2.weight,
                                                                s2.save_invstd, s2.dweight, s2.dbias, coef2);
  const Tiling apply = tiling(rows, C, sm_count, kApplyBlocksPerSm);
  auto* dx1 = static_cast<T*>(s1.dx);
  auto* dx2 = static_cast<T*>(s2.dx);
  if (relu)
    bn_pair_backward_apply<T, true><<<apply.grid, apply.block, 0, stream>>>(
        dyt, yt, x1, x2, dx1, dx2, rows, C, apply.chunk, coef1, coef2, s1.save_mean, s2.save_mean);
  else
    bn_pair_backward_apply<T, false><<<apply.grid, apply.block, 0, stream>>>(
        dyt, yt, x1, x2, dx1, dx2, rows, C, apply.chunk, coef1, coef2, s1.save_mean, s2.save_mean);
  check_launch("batch norm pair backward");
}

PoolShape pool_shape(int64_t h, int64_t w) {
  return {static_cast<int>(h), static_cast<int>(w), static_cast<int>(stem_pooled_side(h)),
          static_cast<int>(stem_pooled_side(w))};
}

template <typename T>
void pool_forward_typed(const void* x, void* y, uint8_t* argmax, int64_t n, int64_t h, int64_t w, int C,
                        const float* weight, const float* bias, float* running_mean, float* running_var,
                        float momentum, float eps, float* save_mean, float* save_invstd, float* workspace,
                        int sm_count, cudaStream_t stream) {
  const float* scale_shift = batch_statistics<T>(x, n * h * w, C, weight, bias, running_mean, running_var, momentum,
                                                 eps, save_mean, save_invstd, workspace, sm_count, stream);
  const PoolShape s = pool_shape(h, w);
  const int64_t pixels = n * s.OH * s.OW, threads = pixels * (C / kVec);
  if (threads >= (int64_t{1} << 32) - kThreads)
    throw std::invalid_argument("batch norm + ReLU + max-pool: the output is too large for the kernel's indexing");
  bn_relu_maxpool<T><<<static_cast<unsigned>((threads + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
      static_cast<const T*>(x), static_cast<T*>(y), argmax, static_cast<uint32_t>(pixels), C, s, scale_shift);
  check_launch("batch norm + ReLU + max-pool forward");
}

template <typename T>
void pool_backward_typed(const void* dy, const uint8_t* argmax, const void* x, void* dx, int64_t n, int64_t h,
                         int64_t w, int C, const float* weight, const float* bias, const float* save_mean,
                         const float* save_invstd, float* dweight, float* dbias, float* workspace, int sm_count,
                         cudaStream_t stream) {
  const int64_t rows = n * h * w;
  const PoolShape s = pool_shape(h, w);
  const Tiling stats = tiling(rows, C, sm_count, kStatsBlocksPerSm);
  const int chunks = static_cast<int>(stats.grid.x);
  float* coef = workspace + 2 * static_cast<int64_t>(chunks) * C;
  const auto* dyt = static_cast<const T*>(dy);
  const auto* xt = static_cast<const T*>(x);
  bn_relu_maxpool_backward_reduce<T><<<stats.grid, stats.block, 0, stream>>>(
      dyt, argmax, xt, rows, C, stats.chunk, s, weight, bias, save_mean, save_invstd, workspace);
  bn_finalize_backward<<<(C + 31) / 32, dim3(32, 8), 0, stream>>>(workspace, chunks, rows, C, weight, save_invstd,
                                                                dweight, dbias, coef);
  const Tiling apply = tiling(rows, C, sm_count, kApplyBlocksPerSm);
  bn_relu_maxpool_backward_apply<T><<<apply.grid, apply.block, 0, stream>>>(
      dyt, argmax, xt, static_cast<T*>(dx), rows, C, apply.chunk, s, weight, bias, save_mean, save_invstd, coef);
  check_launch("batch norm + ReLU + max-pool backward");
}

}  // namespace

void bn_relu_maxpool_forward(Half type, const void* x, void* y, uint8_t* argmax, int64_t n, int64_t h, int64_t w,
                             int64_t channels, const float* weight, const float* bias, float* running_mean,
                             float* running_var, float momentum, float eps, float* save_mean, float* save_invstd,
                             float* workspace, int sm_count, CUstream_st* stream) {
  const int C = static_cast<int>(channels);
  if (type == Half::kBf16)
    pool_forward_typed<__nv_bfloat16>(x, y, argmax, n, h, w, C, weight, bias, running_mean, running_var, momentum,
                                      eps, save_mean, save_invstd, workspace, sm_count, stream);
  else
    pool_forward_typed<__half>(x, y, argmax, n, h, w, C, weight, bias, running_mean, running_var, momentum, eps,
                               save_mean, save_invstd, workspace, sm_count, stream);
}

void bn_relu_maxpool_backward(Half type, const void* dy, const uint8_t* argmax, const void* x, void* dx, int64_t n,
                              int64_t h, int64_t w, int64_t channels, const float* weight, const float* bias,
                              const float* save_mean, const float* save_invstd, float* dweight, float* dbias,
                              float* workspace, int sm_count, CUstream_st* stream) {
  const int C = static_cast<int>(channels);
  if (type == Half::kBf16)
    pool_backward_typed<__nv_bfloat16>(dy, argmax, x, dx, n, h, w, C, weight, bias, save_mean, save_invstd, dweight,
                                       dbias, workspace, sm_count, stream);
  else
    pool_backward_typed<__half>(dy, argmax, x, dx, n, h, w, C, weight, bias, save_mean, save_invstd, dweight, dbias,
                                workspace, sm_count, stream);
}

int64_t bn_act_workspace_floats(int64_t rows, int64_t channels, int sm_count) {
  const Tiling stats = tiling(rows, channels, sm_count, kStatsBlocksPerSm);
  return 2 * static_cast<int64_t>(stats.grid.x) * channels + 3 * channels;
}

void bn_act_forward(Half type, const void* x, const void* residual, void* y, int64_t rows, int64_t channels,
                    const float* weight, const float* bias, float* running_mean, float* running_var, float momentum,
                    float eps, bool relu, float* save_mean, float* save_invstd, float* workspace, int sm_count,
                    CUstream_st* stream) {
  const int C = static_cast<int>(channels);
  if (type == Half::kBf16)
    forward_typed<__nv_bfloat16>(x, residual, y, rows, C, weight, bias, running_mean, running_var, momentum, eps,
                                 relu, save_mean, save_invstd, workspace, sm_count, stream);
  else
    forward_typed<__half>(x, residual, y, rows, C, weight, bias, running_mean, running_var, momentum, eps, relu,
                          save_mean, save_invstd, workspace, sm_count, stream);
}

void bn_act_backward(Half type, const void* dy, const void* y, const void* x, void* dx, void* dresidual, int64_t rows,
                     int64_t channels, const float* weight, const float* save_mean, const float* save_invstd,
                     bool relu, float* dweight, float* dbias, float* workspace, int sm_count, CUstream_st* stream) {
  const int C = static_cast<int>(channels);
  if (type == Half::kBf16)
    backward_typed<__nv_bfloat16>(dy, y, x, dx, dresidual, rows, C, weight, save_mean, save_invstd, relu, dweight,
                                  dbias, workspace, sm_count, stream);
  else
    backward_typed<__half>(dy, y, x, dx, dresidual, rows, C, weight, save_mean, save_invstd, relu, dweight, dbias,
                           workspace, sm_count, stream);
}

int64_t bn_pair_backward_workspace_floats(int64_t rows, int64_t channels, int sm_count) {
  const Tiling stats = tiling(rows, channels, sm_count, kStatsBlocksPerSm);
  return 4 * static_cast<int64_t>(stats.grid.x) * channels + 6 * channels;
}

void bn_pair_backward(Half type, const void* dy, const void* y, const BnBackwardSide& first,
                      const BnBackwardSide& second, int64_t rows, int64_t channels, bool relu, float* workspace,
                      int sm_count, CUstream_st* stream) {
  const int C = static_cast<int>(channels);
  if (type == Half::kBf16)
    pair_backward_typed<__nv_bfloat16>(dy, y, first, second, rows, C, relu, workspace, sm_count, stream);
  else
    pair_backward_typed<__half>(dy, y, first, second, rows, C, relu, workspace, sm_count, stream);
}

void bn_finalize_sums(const float* sums, int64_t rows, int64_t channels, const float* weight, const float* bias,
                      float* running_mean, float* running_var, float momentum, float eps, float* save_mean,
                      float* save_invstd, float* scale_shift, void* scale_shift_half, CUstream_st* stream) {
  const int C = static_cast<int>(channels);
  bn_finalize_forward<<<(C + 31) / 32, dim3(32, 8), 0, stream>>>(sums, 1, rows, C, weight, bias, running_mean,
                                                               running_var, momentum, eps, save_mean, save_invstd,
                                                               scale_shift, static_cast<__half*>(scale_shift_half));
  check_launch("batch norm finalize");
}

void bn_apply(Half type, const void* x, const float* scale_shift, const void* residual,
              const float* residual_scale_shift, void* y, int64_t rows, int64_t channels, bool relu, int sm_count,
              CUstream_st* stream) {
  const int C = static_cast<int>(channels);
  if (type == Half::kBf16)
    launch_apply(static_cast<const __nv_bfloat16*>(x), scale_shift, static_cast<const __nv_bfloat16*>(residual),
                 residual_scale_shift, static_cast<__nv_bfloat16*>(y), rows, C, relu, sm_count, stream);
  else
    launch_apply(static_cast<const __half*>(x), scale_shift, static_cast<const __half*>(residual),
                 residual_scale_shift, static_cast<__half*>(y), rows, C, relu, sm_count, stream);
  check_launch("batch norm apply");
}

void bn_grad_apply(Half type, const void* g, const void* x, const float* coef, void* dx, int64_t rows,
                   int64_t channels, int sm_count, CUstream_st* stream) {
  const int C = static_cast<int>(channels);
  const Tiling apply = tiling(rows, C, sm_count, kApplyBlocksPerSm);
  if (type == Half::kBf16)
    bn_grad_apply<<<apply.grid, apply.block, 0, stream>>>(static_cast<const __nv_bfloat16*>(g),
                                                          static_cast<const __nv_bfloat16*>(x),
                                                          static_cast<__nv_bfloat16*>(dx), rows, C, apply.chunk, coef);
  else
    bn_grad_apply<<<apply.grid, apply.block, 0, stream>>>(static_cast<const __half*>(g), static_cast<const __half*>(x),
                                                          static_cast<__half*>(dx), rows, C, apply.chunk, coef);
  check_launch("batch norm gradient apply");
}

}  // namespace resnet::cuda
