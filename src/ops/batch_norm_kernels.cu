// Batch norm (training mode) fused with the residual add and ReLU that follow it in a ResNet
// block, over NHWC activations in bf16 or fp16 (see cuda_kernels.h for the contract).
//
// The activations are a [rows, C] matrix with C contiguous. Every kernel gives a thread 8
// neighbouring channels (one 16-byte load) and a block `lanes` such groups side by side (up to 256
// channels, so that a warp reads whole rows) and 256 / lanes rows; the grid's y covers the rest of
// the channels and its x splits the rows into chunks. A thread keeps its channels' constants in
// registers and walks its chunk's rows 4 at a time, so that several loads are in flight.
//
// Forward: (1) per-chunk sums of x and x^2 (fp32; a chunk is a few hundred rows), (2) one
// finalize sums the chunks in fp64 and turns them into mean, 1/std, scale, shift and the running
// statistics, (3) y = act(x * scale + shift [+ r]). Backward has the same shape: per-chunk sums of
// g and g * (x - mean), where g is dy masked by y > 0 for ReLU; a finalize that gives d(weight),
// d(bias) and three coefficients per channel; dx = a * g + k * (x - mean) + b, and g itself as the
// residual's gradient. Sums are per chunk and then in a fixed order: results are deterministic.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "ops/cuda_kernels.h"

namespace resnet::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kVec = 8;      // channels per thread: 16 bytes of a 16-bit type
constexpr int kUnroll = 4;   // rows a thread loads before it uses them
constexpr int kStatsBlocksPerSm = 4, kApplyBlocksPerSm = 8;

// max(x, 0) that keeps a NaN, as torch.relu (fmaxf(NaN, 0) would hide a bad input as 0)
__device__ __forceinline__ float relu(float x) { return x < 0.f ? 0.f : x; }

template <typename T>
struct Pair;
template <>
struct Pair<__nv_bfloat16> {
  using T2 = __nv_bfloat162;
  __device__ static float2 unpack(T2 v) { return __bfloat1622float2(v); }
  __device__ static T2 pack(float a, float b) { return __floats2bfloat162_rn(a, b); }
};
template <>
struct Pair<__half> {
  using T2 = __half2;
  __device__ static float2 unpack(T2 v) { return __half22float2(v); }
  __device__ static T2 pack(float a, float b) { return __floats2half2_rn(a, b); }
};

template <typename T>
__device__ __forceinline__ void load8(const T* p, float (&v)[kVec]) {
  const uint4 raw = __ldg(reinterpret_cast<const uint4*>(p));
  const auto* h = reinterpret_cast<const typename Pair<T>::T2*>(&raw);
#pragma unroll
  for (int i = 0; i < kVec / 2; ++i) {
    const float2 f = Pair<T>::unpack(h[i]);
    v[2 * i] = f.x;
    v[2 * i + 1] = f.y;
  }
}

template <typename T>
__device__ __forceinline__ void store8(T* p, const float (&v)[kVec]) {
  uint4 raw;
  auto* h = reinterpret_cast<typename Pair<T>::T2*>(&raw);
#pragma unroll
  for (int i = 0; i < kVec / 2; ++i) h[i] = Pair<T>::pack(v[2 * i], v[2 * i + 1]);
  *reinterpret_cast<uint4*>(p) = raw;
}

__device__ __forceinline__ void load8(const float* p, float (&v)[kVec]) {
  const float4 a = __ldg(reinterpret_cast<const float4*>(p));
  const float4 b = __ldg(reinterpret_cast<const float4*>(p) + 1);
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z, v[7] = b.w;
}

// The first channel of this thread and the rows of this block's chunk.
struct Place {
  int c;
  int64_t begin, end;
};
__device__ __forceinline__ Place place(int64_t rows, int64_t chunk) {
  const int64_t begin = blockIdx.x * chunk;
  return {static_cast<int>((blockIdx.y * blockDim.x + threadIdx.x) * kVec), begin + threadIdx.y,
          begin + chunk < rows ? begin + chunk : rows};
}

// Sums a[] and b[] over the block's rows and writes them to partial[chunk][C] and
// partial[chunks + chunk][C].
__device__ void store_block_sums(const float (&a)[kVec], const float (&b)[kVec], float* partial, int C) {
  __shared__ float sa[kThreads * kVec], sb[kThreads * kVec];
  const int width = blockDim.x * kVec;  // channels of this block
  const int col = threadIdx.x * kVec;
#pragma unroll
  for (int k = 0; k < kVec; ++k) {
    sa[threadIdx.y * width + col + k] = a[k];
    sb[threadIdx.y * width + col + k] = b[k];
  }
  __syncthreads();
  const int t = threadIdx.y * blockDim.x + threadIdx.x;
  if (t < width) {  // width <= 256 = threads
    float s = 0.f, q = 0.f;
    for (int r = 0; r < blockDim.y; ++r) {
      s += sa[r * width + t];
      q += sb[r * width + t];
    }
    const int64_t c = blockIdx.y * width + t;
    partial[blockIdx.x * static_cast<int64_t>(C) + c] = s;
    partial[(gridDim.x + blockIdx.x) * static_cast<int64_t>(C) + c] = q;
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) bn_stats(const T* __restrict__ x, int64_t rows, int C, int64_t chunk,
                                                     float* __restrict__ partial) {
  const Place at = place(rows, chunk);
  float s[kVec] = {}, q[kVec] = {};
  const int step = blockDim.y;
  for (int64_t r = at.begin; r < at.end; r += kUnroll * step) {
    float v[kUnroll][kVec];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t row = r + u * step;
      if (row < at.end) {
        load8(x + row * C + at.c, v[u]);
      } else {
#pragma unroll
        for (int k = 0; k < kVec; ++k) v[u][k] = 0.f;
      }
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u)
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        s[k] += v[u][k];
        q[k] += v[u][k] * v[u][k];
      }
  }
  store_block_sums(s, q, partial, C);
}

// One thread per channel and 8 over the chunks; fp64 from here on.
__device__ __forceinline__ bool sum_chunks(const float* partial, int chunks, int C, double& s, double& q) {
  __shared__ double ss[8][32], sq[8][32];
  const int c = blockIdx.x * 32 + threadIdx.x;
  s = 0, q = 0;
  if (c < C)
    for (int p = threadIdx.y; p < chunks; p += 8) {
      s += partial[static_cast<int64_t>(p) * C + c];
      q += partial[static_cast<int64_t>(chunks + p) * C + c];
    }
  ss[threadIdx.y][threadIdx.x] = s;
  sq[threadIdx.y][threadIdx.x] = q;
  __syncthreads();
  if (threadIdx.y != 0 || c >= C) return false;
  for (int r = 1; r < 8; ++r) s += ss[r][threadIdx.x], q += sq[r][threadIdx.x];
  return true;
}

__global__ void bn_finalize_forward(const float* __restrict__ partial, int chunks, int64_t rows, int C,
                                    const float* weight, const float* bias, float* running_mean,
                                    float* running_var, float momentum, float eps, float* save_mean,
                                    float* save_invstd, float* scale_shift, __half* scale_shift_half = nullptr) {
  double s, q;
  if (!sum_chunks(partial, chunks, C, s, q)) return;
  const int c = blockIdx.x * 32 + threadIdx.x;
  const double n = static_cast<double>(rows);
  const double mean = s / n;
  const double var = fmax(q / n - mean * mean, 0.0);
  const float invstd = static_cast<float>(1.0 / sqrt(var + eps));
  save_mean[c] = static_cast<float>(mean);
  save_invstd[c] = invstd;
  const float scale = (weight ? weight[c] : 1.f) * invstd;
  scale_shift[c] = scale;
  scale_shift[C + c] = (bias ? bias[c] : 0.f) - static_cast<float>(mean) * scale;
  if (scale_shift_half) {
    scale_shift_half[c] = __float2half_rn(scale);
    scale_shift_half[C + c] = __float2half_rn(scale_shift[C + c]);
  }
  if (running_mean)
    running_mean[c] = static_cast<float>((1.0 - momentum) * running_mean[c] + momentum * mean);
  if (running_var)
    running_var[c] = static_cast<float>((1.0 - momentum) * running_var[c] + momentum * var * n / (n - 1.0));
}

// Residual: none, added as it is, or normalised first (scale and shift of its own batch norm).
enum Residual { kNoResidual, kAddResidual, kAddNormalisedResidual };

template <typename T, bool kRelu, int kResidual>
__global__ void __launch_bounds__(kThreads) bn_apply(const T* __restrict__ x, const T* __restrict__ residual,
                                                     T* __restrict__ y, int64_t rows, int C, int64_t chunk,
                                                     const float* __restrict__ scale_shift,
                                                     const float* __restrict__ residual_scale_shift) {
  const Place at = place(rows, chunk);
  float scale[kVec], shift[kVec], rscale[kVec], rshift[kVec];
  load8(scale_shift + at.c, scale);
  load8(scale_shift + C + at.c, shift);
  if (kResidual == kAddNormalisedResidual) {
    load8(residual_scale_shift + at.c, rscale);
    load8(residual_scale_shift + C + at.c, rshift);
  }
  const int step = blockDim.y;
  for (int64_t r = at.begin; r < at.end; r += kUnroll * step) {
    float v[kUnroll][kVec], w[kUnroll][kVec];
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t row = r + u * step;
      if (row >= at.end) continue;
      load8(x + row * C + at.c, v[u]);
      if (kResidual != kNoResidual) load8(residual + row * C + at.c, w[u]);
    }
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t row = r + u * step;
      if (row >= at.end) continue;
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        float o = v[u][k] * scale[k] + shift[k];
        if (kResidual == kAddResidual) o += w[u][k];
        if (kResidual == kAddNormalisedResidual) o += w[u][k] * rscale[k] + rshift[k];
        if (kRelu) o = relu(o);
        v[u][k] = o;
      }
      store8(y + row * C + at.c, v[u]);
    }
  }
}

// g = dy, masked by y > 0 for ReLU.
template <typename T, bool kRelu>
__device__ __forceinline__ void load_grad(const T* dy, const T* y, int64_t offset, float (&g)[kVec]) {
  load8(dy + offset, g);
  if (kRelu) {
    float m[kVec];
    load8(y + offset, m);
#pragma unroll
    for (int k = 0; k < kVec; ++k) g[k] = m[k] > 0.f ? g[k] : 0.f;
  }
}

constexpr int kBackwardUnroll = 2;  // three loads a row

template <typename T, bool kRelu>
__global__ void __launch_bounds__(kThreads) bn_backward_reduce(const T* __restrict__ dy, const T* __restrict__ y,
                                                               const T* __restrict__ x, int64_t rows, int C,
                                                               int64_t chunk, const float* __restrict__ save_mean,
                                                               float* __restrict__ partial) {
  const Place at = place(rows, chunk);
  float mean[kVec], sg[kVec] = {}, sgx[kVec] = {};
  load8(save_mean + at.c, mean);
  const int step = blockDim.y;
  for (int64_t r = at.begin; r < at.end; r += kBackwardUnroll * step) {
    float g[kBackwardUnroll][kVec], v[kBackwardUnroll][kVec];
#pragma unroll
    for (int u = 0; u < kBackwardUnroll; ++u) {
      const int64_t row = r + u * step;
      if (row < at.end) {
        load_grad<T, kRelu>(dy, y, row * C + at.c, g[u]);
        load8(x + row * C + at.c, v[u]);
      } else {
#pragma unroll
        for (int k = 0; k < kVec; ++k) g[u][k] = v[u][k] = 0.f;
      }
    }
#pragma unroll
    for (int u = 0; u < kBackwardUnroll; ++u)
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        sg[k] += g[u][k];
        sgx[k] += g[u][k] * (v[u][k] - mean[k]);
      }
  }
  store_block_sums(sg, sgx, partial, C);
}

// coef = {a, k, b} with dx = a * g + k * (x - mean) + b.
__global__ void bn_finalize_backward(const float* __restrict__ partial, int chunks, int64_t rows, int C,
                                     const float* weight, const float* save_invstd, float* dweight, float* dbias,
                                     float* coef) {
  double sg, sgx;
  if (!sum_chunks(partial, chunks, C, sg, sgx)) return;
  const int c = blockIdx.x * 32 + threadIdx.x;
  const double invstd = save_invstd[c], n = static_cast<double>(rows);
  if (dbias) dbias[c] = static_cast<float>(sg);
  if (dweight) dweight[c] = static_cast<float>(sgx * invstd);
  const double a = (weight ? weight[c] : 1.0) * invstd;
  coef[c] = static_cast<float>(a);
  coef[C + c] = static_cast<float>(-a * invstd * invstd * sgx / n);
  coef[2 * C + c] = static_cast<float>(-a * sg / n);
}

template <typename T, bool kRelu, bool kResidual>
__global__ void __launch_bounds__(kThreads) bn_backward_apply(const T* __restrict__ dy, const T* __restrict__ y,
                                                              const T* __restrict__ x, T* __restrict__ dx,
                                                              T* __restrict__ dresidual, int64_t rows, int C,
                                                              int64_t chunk, const float* __restrict__ coef,
                                                              const float* __restrict__ save_mean) {
  const Place at = place(rows, chunk);
  float a[kVec], k_[kVec], b[kVec], mean[kVec];
  load8(coef + at.c, a);
  load8(coef + C + at.c, k_);
  load8(coef + 2 * C + at.c, b);
  load8(save_mean + at.c, mean);
  const int step = blockDim.y;
  for (int64_t r = at.begin; r < at.end; r += kBackwardUnroll * step) {
    float g[kBackwardUnroll][kVec], v[kBackwardUnroll][kVec];
#pragma unroll
    for (int u = 0; u < kBackwardUnroll; ++u) {
      const int64_t row = r + u * step;
      if (row >= at.end) continue;
      load_grad<T, kRelu>(dy, y, row * C + at.c, g[u]);
      load8(x + row * C + at.c, v[u]);
    }
#pragma unroll
    for (int u = 0; u < kBackwardUnroll; ++u) {
      const int64_t row = r + u * step;
      if (row >= at.end) continue;
      if (kResidual) store8(dresidual + row * C + at.c, g[u]);
#pragma unroll
      for (int k = 0; k < kVec; ++k) v[u][k] = a[k] * g[u][k] + k_[k] * (v[u][k] - mean[k]) + b[k];
      store8(dx + row * C + at.c, v[u]);
    }
  }
}

// Two batch norms whose outputs were summed before the (optional) ReLU, as a downsample block's
// end, relu(bn3(y3) + bnd(yd)): both take the same gradient g, so one pass reads it once for both.
// Sums: g, g * (x1 - mean1), g * (x2 - mean2); partial1 and partial2 get the layout
// bn_finalize_backward reads (the sums of g written to both).
template <typename T, bool kRelu>
__global__ void __launch_bounds__(kThreads) bn_pair_backward_reduce(
    const T* __restrict__ dy, const T* __restrict__ y, const T* __restrict__ x1, const T* __restrict__ x2,
    int64_t rows, int C, int64_t chunk, const float* __restrict__ mean1, const float* __restrict__ mean2,
    float* __restrict__ partial1, float* __restrict__ partial2) {
  const Place at = place(rows, chunk);
  float m1[kVec], m2[kVec], sg[kVec] = {}, s1[kVec] = {}, s2[kVec] = {};
  load8(mean1 + at.c, m1);
  load8(mean2 + at.c, m2);
  const int step = blockDim.y;
  for (int64_t r = at.begin; r < at.end; r += kBackwardUnroll * step) {
    float g[kBackwardUnroll][kVec], v1[kBackwardUnroll][kVec], v2[kBackwardUnroll][kVec];
#pragma unroll
    for (int u = 0; u < kBackwardUnroll; ++u) {
      const int64_t row = r + u * step;
      if (row < at.end) {
        load_grad<T, kRelu>(dy, y, row * C + at.c, g[u]);
        load8(x1 + row * C + at.c, v1[u]);
        load8(x2 + row * C + at.c, v2[u]);
      } else {
#pragma unroll
        for (int k = 0; k < kVec; ++k) g[u][k] = v1[u][k] = v2[u][k] = 0.f;
      }
    }
#pragma unroll
    for (int u = 0; u < kBackwardUnroll; ++u)
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        sg[k] += g[u][k];
        s1[k] += g[u][k] * (v1[u][k] - m1[k]);
        s2[k] += g[u][k] * (v2[u][k] - m2[k]);
      }
  }
  store_block_sums(sg, s1, partial1, C);
  __syncthreads();  // the shared buffers again
  store_block_sums(sg, s2, partial2, C);
}

// dx1 and dx2 from one read of g, as bn_backward_apply does for each.
template <typename T, bool kRelu>
__global__ void __launch_bounds__(kThreads) bn_pair_backward_apply(
    const T* __restrict__ dy, const T* __restrict__ y, const T* __restrict__ x1, const T* __restrict__ x2,
    T* __restrict__ dx1, T* __restrict__ dx2, int64_t rows, int C, int64_t chunk, const float* __restrict__ coef1,
    const float* __restrict__ coef2, const float* __restrict__ mean1, const float* __restrict__ mean2) {
  const Place at = place(rows, chunk);
  float a1[kVec], k1[kVec], b1[kVec], m1[kVec], a2[kVec], k2[kVec], b2[kVec], m2[kVec];
  load8(coef1 + at.c, a1);
  load8(coef1 + C + at.c, k1);
  load8(coef1 + 2 * C + at.c, b1);
  load8(mean1 + at.c, m1);
  load8(coef2 + at.c, a2);
  load8(coef2 + C + at.c, k2);
  load8(coef2 + 2 * C + at.c, b2);
  load8(mean2 + at.c, m2);
  const int step = blockDim.y;
  for (int64_t r = at.begin; r < at.end; r += kBackwardUnroll * step) {
    float g[kBackwardUnroll][kVec], v1[kBackwardUnroll][kVec], v2[kBackwardUnroll][kVec];
#pragma unroll
    for (int u = 0; u < kBackwardUnroll; ++u) {
      const int64_t row = r + u * step;
      if (row >= at.end) continue;
      load_grad<T, kRelu>(dy, y, row * C + at.c, g[u]);
      load8(x1 + row * C + at.c, v1[u]);
      load8(x2 + row * C + at.c, v2[u]);
    }
#pragma unroll
    for (int u = 0; u < kBackwardUnroll; ++u) {
      const int64_t row = r + u * step;
      if (row >= at.end) continue;
#pragma unroll
      for (int k = 0; k < kVec; ++k) {
        v1[u][k] = a1[k] * g[u][k] + k1[k] * (v1[u][k] - m1[k]) + b1[k];
        v2[u][k] = a2[k] * g[u][k] + k2[k] * (v2[u][k] - m2[k]) + b2[k];
      }
      store8(dx1 + row * C + at.c, v1[u]);
      store8(dx2 + row * C + at.c, v2[u]);
    }
  }
}

// dx = a * g + b * x + c per channel, coef = {a, b, c}: the batch norm's input gradient from the
// masked gradient g and the coefficients cuDNN's dbn_weight gives (the fused convolution path).
template <typename T>
__global__ void __launch_bounds__(kThreads) bn_grad_apply(const T* __restrict__ g, const T* __restrict__ x,
                                                          T* __restrict__ dx, int64_t rows, int C, int64_t chunk,
                                                          const float* __restrict__ coef) {
  const Place at = place(rows, chunk);
  float a[kVec], b[kVec], c[kVec];
  load8(coef + at.c, a);
  load8(coef + C + at.c, b);
  load8(coef + 2 * C + at.c, c);
  const int step = blockDim.y;
  for (int64_t r = at.begin; r < at.end; r += kBackwardUnroll * step) {
    float gv[kBackwardUnroll][kVec], v[kBackwardUnroll][kVec];
#pragma unroll
    for (int u = 0; u < kBackwardUnroll; ++u) {
      const int64_t row = r + u * step;
      if (row >= at.end) continue;
      load8(g + row * C + at.c, gv[u]);
      load8(x + row * C + at.c, v[u]);
    }
#pragma unroll
    for (int u = 0; u < kBackwardUnroll; ++u) {
      const int64_t row = r + u * step;
      if (row >= at.end) continue;
#pragma unroll
      for (int k = 0; k < kVec; ++k) v[u][k] = a[k] * gv[u][k] + b[k] * v[u][k] + c[k];
      store8(dx + row * C + at.c, v[u]);
    }
  }
}

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

// Block and grid for `rows` x `channels` with about blocks_per_sm blocks per multiprocessor.
struct Tiling {
  dim3 block, grid;
  int64_t chunk;  // rows per grid.x index
};

Tiling tiling(int64_t rows, int64_t channels, int sm_count, int blocks_per_sm) {
  const int64_t groups = channels / kVec;
  int lanes = 1;
  for (int d = static_cast<int>(std::min<int64_t>(groups, 32)); d >= 1; --d)
    if (groups % d == 0) {
      lanes = d;
      break;
    }
  const int block_rows = kThreads / lanes;
  const int64_t tiles = groups / lanes;
  const int64_t wanted = std::max<int64_t>(1, (int64_t{sm_count} * blocks_per_sm + tiles - 1) / tiles);
  const int64_t most = (rows + block_rows - 1) / block_rows;
  const int64_t chunks = std::min(wanted, most);
  int64_t chunk = (rows + chunks - 1) / chunks;
  chunk = (chunk + block_rows - 1) / block_rows * block_rows;
  return {dim3(lanes, block_rows), dim3(static_cast<unsigned>((rows + chunk - 1) / chunk), static_cast<unsigned>(tiles)),
          chunk};
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
