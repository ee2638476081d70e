// The loader's crop-resize + normalisation of a batch of uint8 images in one pass (see
// cuda_kernels.h): each output pixel reads its four neighbours' bytes, as grid_sample (bilinear,
// border padding, align_corners=false) reads them from the float copy of the batch that the
// simple path (data/transforms.cpp) makes first.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "ops/cuda_kernels.h"

namespace resnet::cuda {
namespace {

constexpr int kThreads = 256;

// grid_sample's bilinear read at (y, x) of one channel, both already in [0, extent - 1]
__device__ __forceinline__ float bilinear(const uint8_t* plane, int64_t sh, int64_t sw, float y, float x, int height,
                                          int width) {
  const int y0 = static_cast<int>(floorf(y)), x0 = static_cast<int>(floorf(x));
  const int y1 = min(y0 + 1, height - 1), x1 = min(x0 + 1, width - 1);  // (weight 0 where clamped)
  const float wy = y - static_cast<float>(y0), wx = x - static_cast<float>(x0);
  const float top = (1.f - wx) * plane[y0 * sh + x0 * sw] + wx * plane[y0 * sh + x1 * sw];
  const float bottom = (1.f - wx) * plane[y1 * sh + x0 * sw] + wx * plane[y1 * sh + x1 * sw];
  return (1.f - wy) * top + wy * bottom;
}

__global__ void __launch_bounds__(kThreads)
    resample_kernel(const uint8_t* __restrict__ images, ImageStrides in, int height, int width,
                    const ResampleGeometry* __restrict__ geometry, int size, float* __restrict__ out,
                    ImageStrides out_strides, ChannelAffine affine) {
  const int pixel = blockIdx.x * kThreads + threadIdx.x;
  if (pixel >= size * size) return;
  const int b = blockIdx.y, oy = pixel / size, ox = pixel % size;
  const ResampleGeometry g = geometry[b];
  const float ix = g.flip != 0.f ? static_cast<float>(size - 1 - ox) : static_cast<float>(ox);
  // source = origin + (out + 0.5) * step - 0.5, clamped to the crop, then to the padded batch
  // (max(min(., hi), lo), as the simple path: lo wins where a crop leaves lo > hi)
  const float y = fminf(fmaxf(fmaxf(fminf(g.y0 + (oy + 0.5f) * g.ystep - 0.5f, g.yhi), g.ylo), 0.f), height - 1.f);
  const float x = fminf(fmaxf(fmaxf(fminf(g.x0 + (ix + 0.5f) * g.xstep - 0.5f, g.xhi), g.xlo), 0.f), width - 1.f);
  const uint8_t* image = images + b * in.n;
  float* dst = out + b * out_strides.n + oy * out_strides.h + ox * out_strides.w;
#pragma unroll
  for (int c = 0; c < 3; ++c)
    dst[c * out_strides.c] =
        affine.shift[c] + bilinear(image + c * in.c, in.h, in.w, y, x, height, width) * affine.scale[c];
}

}  // namespace

void resample_normalise(const uint8_t* images, ImageStrides in, int64_t height, int64_t width,
                        const ResampleGeometry* geometry, int64_t batch, int64_t size, float* out,
                        ImageStrides out_strides, ChannelAffine affine, CUstream_st* stream) {
  const dim3 grid(static_cast<unsigned>((size * size + kThreads - 1) / kThreads), static_cast<unsigned>(batch));
  resample_kernel<<<grid, kThreads, 0, stream>>>(images, in, static_cast<int>(height), static_cast<int>(width),
                                                 geometry, static_cast<int>(size), out, out_strides, affine);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw std::runtime_error(std::string("resample_normalise: ") + cudaGetErrorString(e));
}

}  // namespace resnet::cuda
