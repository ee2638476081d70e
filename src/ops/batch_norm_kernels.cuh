// The batch-norm kernels of batch_norm_kernels.cu (device code and the grid they run on), in a
// header so that bench/bn_tiling_probe.cu can time them under other tilings and unrolls than the
// launchers pick. See batch_norm_kernels.cu for the layout and the passes.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace resnet::cuda {
namespace {  // each translation unit its own copy: kernels are instantiated where launched

constexpr int kThreads = 256;
constexpr int kVec = 8;      // channels per thread: 16 bytes of a 16-bit type
// Rows a thread loads before it uses them (U), and the grid: blocks per multiprocessor for the
// passes that sum over rows (one wave: a chunk's sums wait for its last row) and for those that
// only stream (many small chunks balance the load). Measured per ResNet-50 shape on an H200
// (bench/bn_tiling_probe, docs/PERFORMANCE.md): registers, not loads in flight, bound these
// kernels, so a row at a time with more blocks resident beat 2-4 rows a thread by 8-25%; the
// reductions hold 3 blocks per SM (the pair reduce's 77 registers a thread) and fill one wave.
constexpr int kUnroll = 1;
constexpr int kStatsUnroll = 4;  // bn_stats, not probed (the fused path takes its sums from cuDNN)
constexpr int kStatsBlocksPerSm = 3, kApplyBlocksPerSm = 24;

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

template <typename T, int U = kStatsUnroll>
__global__ void __launch_bounds__(kThreads) bn_stats(const T* __restrict__ x, int64_t rows, int C, int64_t chunk,
                                                     float* __restrict__ partial) {
  const Place at = place(rows, chunk);
  float s[kVec] = {}, q[kVec] = {};
  const int step = blockDim.y;
  for (int64_t r = at.begin; r < at.end; r += U * step) {
    float v[U][kVec];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t row = r + u * step;
      if (row < at.end) {
        load8(x + row * C + at.c, v[u]);
      } else {
#pragma unroll
        for (int k = 0; k < kVec; ++k) v[u][k] = 0.f;
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u)
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

template <typename T, bool kRelu, int kResidual, int U = kUnroll>
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
  for (int64_t r = at.begin; r < at.end; r += U * step) {
    float v[U][kVec], w[U][kVec];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t row = r + u * step;
      if (row >= at.end) continue;
      load8(x + row * C + at.c, v[u]);
      if (kResidual != kNoResidual) load8(residual + row * C + at.c, w[u]);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
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

template <typename T, bool kRelu, int U = kUnroll>
__global__ void __launch_bounds__(kThreads) bn_backward_reduce(const T* __restrict__ dy, const T* __restrict__ y,
                                                               const T* __restrict__ x, int64_t rows, int C,
                                                               int64_t chunk, const float* __restrict__ save_mean,
                                                               float* __restrict__ partial) {
  const Place at = place(rows, chunk);
  float mean[kVec], sg[kVec] = {}, sgx[kVec] = {};
  load8(save_mean + at.c, mean);
  const int step = blockDim.y;
  for (int64_t r = at.begin; r < at.end; r += U * step) {
    float g[U][kVec], v[U][kVec];
#pragma unroll
    for (int u = 0; u < U; ++u) {
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
    for (int u = 0; u < U; ++u)
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

template <typename T, bool kRelu, bool kResidual, int U = kUnroll>
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
  for (int64_t r = at.begin; r < at.end; r += U * step) {
    float g[U][kVec], v[U][kVec];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t row = r + u * step;
      if (row >= at.end) continue;
      load_grad<T, kRelu>(dy, y, row * C + at.c, g[u]);
      load8(x + row * C + at.c, v[u]);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
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
template <typename T, bool kRelu, int U = kUnroll>
__global__ void __launch_bounds__(kThreads) bn_pair_backward_reduce(
    const T* __restrict__ dy, const T* __restrict__ y, const T* __restrict__ x1, const T* __restrict__ x2,
    int64_t rows, int C, int64_t chunk, const float* __restrict__ mean1, const float* __restrict__ mean2,
    float* __restrict__ partial1, float* __restrict__ partial2) {
  const Place at = place(rows, chunk);
  float m1[kVec], m2[kVec], sg[kVec] = {}, s1[kVec] = {}, s2[kVec] = {};
  load8(mean1 + at.c, m1);
  load8(mean2 + at.c, m2);
  const int step = blockDim.y;
  for (int64_t r = at.begin; r < at.end; r += U * step) {
    float g[U][kVec], v1[U][kVec], v2[U][kVec];
#pragma unroll
    for (int u = 0; u < U; ++u) {
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
    for (int u = 0; u < U; ++u)
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
template <typename T, bool kRelu, int U = kUnroll>
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
  for (int64_t r = at.begin; r < at.end; r += U * step) {
    float g[U][kVec], v1[U][kVec], v2[U][kVec];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t row = r + u * step;
      if (row >= at.end) continue;
      load_grad<T, kRelu>(dy, y, row * C + at.c, g[u]);
      load8(x1 + row * C + at.c, v1[u]);
      load8(x2 + row * C + at.c, v2[u]);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
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
template <typename T, int U = kUnroll>
__global__ void __launch_bounds__(kThreads) bn_grad_apply(const T* __restrict__ g, const T* __restrict__ x,
                                                          T* __restrict__ dx, int64_t rows, int C, int64_t chunk,
                                                          const float* __restrict__ coef) {
  const Place at = place(rows, chunk);
  float a[kVec], b[kVec], c[kVec];
  load8(coef + at.c, a);
  load8(coef + C + at.c, b);
  load8(coef + 2 * C + at.c, c);
  const int step = blockDim.y;
  for (int64_t r = at.begin; r < at.end; r += U * step) {
    float gv[U][kVec], v[U][kVec];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t row = r + u * step;
      if (row >= at.end) continue;
      load8(g + row * C + at.c, gv[u]);
      load8(x + row * C + at.c, v[u]);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int64_t row = r + u * step;
      if (row >= at.end) continue;
#pragma unroll
      for (int k = 0; k < kVec; ++k) v[u][k] = a[k] * gv[u][k] + b[k] * v[u][k] + c[k];
      store8(dx + row * C + at.c, v[u]);
    }
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

}  // namespace
}  // namespace resnet::cuda
