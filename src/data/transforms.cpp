#include "data/transforms.h"

#include <torch/nn/functional/upsampling.h>
#include <torch/nn/functional/vision.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>

#include "data/augment.h"
#include "data/upload.h"

#ifdef RESNET_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "ops/cuda_kernels.h"
#endif

namespace resnet {
namespace {

// Per-image sampling geometry, all in source pixels, as float64 [B] columns on the CPU:
// source = origin + (out + 0.5) * step - 0.5, clamped to [lo, hi]; flip mirrors the output.
struct Geometry {
  std::vector<double> y0, ystep, ylo, yhi, x0, xstep, xlo, xhi;
  std::vector<uint8_t> flip;
  void add(double y_origin, double y_step, double y_lo, double y_hi, double x_origin, double x_step, double x_lo,
           double x_hi, bool flipped) {
    y0.push_back(y_origin), ystep.push_back(y_step), ylo.push_back(y_lo), yhi.push_back(y_hi);
    x0.push_back(x_origin), xstep.push_back(x_step), xlo.push_back(x_lo), xhi.push_back(x_hi);
    flip.push_back(flipped);
  }
};

torch::Tensor column(const std::vector<double>& v, const torch::Device& device) {
  return upload(torch::tensor(v, torch::kDouble).to(torch::kFloat).unsqueeze(1), device);
}

// Normalised grid_sample coordinates [B, size] along one axis of extent `extent` (padded size).
torch::Tensor axis_grid(const torch::Tensor& out, const torch::Tensor& origin, const torch::Tensor& step,
                        const torch::Tensor& lo, const torch::Tensor& hi, int64_t extent) {
  auto src = origin + (out + 0.5) * step - 0.5;
  src = torch::max(torch::min(src, hi), lo);
  return (2.0 * src + 1.0) / static_cast<double>(extent) - 1.0;
}

// The pixels (float, 0-255) [B, 3, size, size] that g's grids read from `images`, bilinear.
torch::Tensor sample(const torch::Tensor& images, const Geometry& g, int64_t size) {
  const auto device = images.device();
  const int64_t n = images.size(0);
  const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(device);
  const auto out = torch::arange(size, opts).unsqueeze(0);  // [1, size]
  const auto flip =
      upload(torch::tensor(std::vector<int64_t>(g.flip.begin(), g.flip.end()), torch::kLong).to(torch::kBool).unsqueeze(1),
             device);
  const auto out_x = torch::where(flip, (size - 1) - out, out);
  const auto gy = axis_grid(out, column(g.y0, device), column(g.ystep, device), column(g.ylo, device),
                            column(g.yhi, device), images.size(2));
  const auto gx = axis_grid(out_x, column(g.x0, device), column(g.xstep, device), column(g.xlo, device),
                            column(g.xhi, device), images.size(3));
  const auto grid = torch::stack({gx.unsqueeze(1).expand({n, size, size}), gy.unsqueeze(2).expand({n, size, size})}, 3);
  namespace F = torch::nn::functional;
  return F::grid_sample(images.to(torch::kFloat), grid,
                        F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kBorder).align_corners(false));
}

// The batch's memory for the transform's result: `into` where it fits (see normalise).
torch::Tensor output_for(const torch::Tensor& into, int64_t n, int64_t size, const torch::Device& device) {
  if (into.defined() && into.sizes() == torch::IntArrayRef{n, 3, size, size} && into.device() == device &&
      into.scalar_type() == torch::kFloat && into.is_non_overlapping_and_dense())
    return into;
  return torch::empty({n, 3, size, size}, torch::TensorOptions().dtype(torch::kFloat).device(device));
}

// (x / 255 - mean) / std of channel c's pixels as one multiply-add, x * scale + shift, in float:
// the constants of normalise() and of the GPU kernel alike.
float normalise_scale(int c) { return static_cast<float>(1.0 / (255.0 * kImageNetStd[c])); }
float normalise_shift(int c) { return -static_cast<float>(kImageNetMean[c] / kImageNetStd[c]); }

// (x / 255 - mean) / std of the pixels, as one multiply-add per element.
torch::Tensor normalise(const torch::Tensor& result, const torch::Tensor& into) {
  const auto device = result.device();
  const auto scale = torch::tensor({normalise_scale(0), normalise_scale(1), normalise_scale(2)}).view({1, 3, 1, 1});
  const auto shift = torch::tensor({normalise_shift(0), normalise_shift(1), normalise_shift(2)}).view({1, 3, 1, 1});
  // One pass, into `into` where it fits (a graphed step's input buffer, channels-last or not), so
  // that the batch is written once where the step reads it; the same arithmetic either way.
  auto normalised = output_for(into, result.size(0), result.size(2), device);
  return torch::addcmul_out(normalised, upload(shift, device), result, upload(scale, device));
}

#ifdef RESNET_WITH_CUDA
// sample() then normalise() in one kernel where the batch is uint8 RGB on a GPU: it reads only the
// bytes each output pixel needs, where sample() first makes a float copy of the whole padded batch
// (2 GB for 256 images of up to 800 px a side). The same arithmetic but for float rounding (it
// skips grid_sample's normalised coordinates; CudaGivesWhatTheCpuGives and
// TheFusedResampleGivesWhatGridSampleGives compare them); nullopt where the kernel does not apply.
std::optional<torch::Tensor> resample_on_gpu(const torch::Tensor& images, const Geometry& g, int64_t size,
                                             const torch::Tensor& into, bool normalised) {
  constexpr int64_t kIntMax = std::numeric_limits<int32_t>::max();
  if (!images.is_cuda() || images.scalar_type() != torch::kUInt8 || images.dim() != 4 || images.size(1) != 3 ||
      images.size(0) == 0 || images.size(0) > 65535 || images.size(2) == 0 || images.size(3) == 0 || size < 1 ||
      size * size > kIntMax)
    return std::nullopt;
  const int64_t n = images.size(0);
  if (g.y0.size() != static_cast<size_t>(n)) throw std::logic_error("resample: a geometry row for each image");
  std::vector<float> geometry;
  geometry.reserve(static_cast<size_t>(n) * 9);
  for (size_t b = 0; b < static_cast<size_t>(n); ++b)
    for (double v : {g.y0[b], g.ystep[b], g.ylo[b], g.yhi[b], g.x0[b], g.xstep[b], g.xlo[b], g.xhi[b],
                     static_cast<double>(g.flip[b])})
      geometry.push_back(static_cast<float>(v));
  const c10::cuda::CUDAGuard guard(images.device());
  const auto on_device = upload(torch::tensor(geometry, torch::kFloat), images.device());
  auto out = output_for(into, n, size, images.device());
  cuda::ChannelAffine affine{{1.f, 1.f, 1.f}, {0.f, 0.f, 0.f}};  // (the pixels, 0-255, where not normalised)
  for (int c = 0; c < 3 && normalised; ++c) affine.scale[c] = normalise_scale(c), affine.shift[c] = normalise_shift(c);
  const auto strides = [](const torch::Tensor& t) {
    return cuda::ImageStrides{t.stride(0), t.stride(1), t.stride(2), t.stride(3)};
  };
  static_assert(sizeof(cuda::ResampleGeometry) == 9 * sizeof(float));
  cuda::resample_normalise(images.data_ptr<uint8_t>(), strides(images), images.size(2), images.size(3),
                           reinterpret_cast<const cuda::ResampleGeometry*>(on_device.data_ptr<float>()), n, size,
                           out.data_ptr<float>(), strides(out), affine, c10::cuda::getCurrentCUDAStream().stream());
  return out;
}
#endif

torch::Tensor resample(const RawBatch& batch, const Geometry& g, int64_t size, const torch::Tensor& into) {
#ifdef RESNET_WITH_CUDA
  if (auto fused = resample_on_gpu(batch.images, g, size, into, /*normalised=*/true)) return *fused;
#endif
  return normalise(sample(batch.images, g, size), into);
}

// The pixels (float, 0-255) that g's geometry reads from the batch, not normalised.
torch::Tensor resample_pixels(const RawBatch& batch, const Geometry& g, int64_t size) {
#ifdef RESNET_WITH_CUDA
  if (auto fused = resample_on_gpu(batch.images, g, size, {}, /*normalised=*/false)) return *fused;
#endif
  return sample(batch.images, g, size);
}

// torchvision's ten tries at a box of a uniform share of the image's area with a log-uniform
// aspect ratio, placed uniformly where it fits; nullopt after ten misses. Its two transforms
// differ in the rules: RandomResizedCrop takes w from area x ratio and a box up to the image's
// size; RandomErasing takes h from area x ratio and a box strictly inside it.
enum class BoxRule { kResizedCrop, kErasing };
std::optional<CropBox> ten_tries(int64_t height, int64_t width, std::mt19937_64& rng, double scale_min, double scale_max,
                                 double ratio_min, double ratio_max, BoxRule rule) {
  const double area = static_cast<double>(height * width);
  std::uniform_real_distribution<double> scale(scale_min, scale_max);
  std::uniform_real_distribution<double> log_ratio(std::log(ratio_min), std::log(ratio_max));
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target_area = area * scale(rng);
    const double aspect = std::exp(log_ratio(rng));
    // Python's round() rounds halves to even, as nearbyint does in the default mode.
    const auto along = static_cast<int64_t>(std::nearbyint(std::sqrt(target_area * aspect)));
    const auto across = static_cast<int64_t>(std::nearbyint(std::sqrt(target_area / aspect)));
    const int64_t h = rule == BoxRule::kErasing ? along : across, w = rule == BoxRule::kErasing ? across : along;
    const bool fits = rule == BoxRule::kErasing ? h < height && w < width : 0 < w && w <= width && 0 < h && h <= height;
    if (!fits) continue;
    const int64_t top = std::uniform_int_distribution<int64_t>(0, height - h)(rng);
    const int64_t left = std::uniform_int_distribution<int64_t>(0, width - w)(rng);
    return CropBox{top, left, h, w};
  }
  return std::nullopt;
}

}  // namespace

CropBox random_resized_crop_box(int64_t height, int64_t width, std::mt19937_64& rng,
                                const TrainCropOptions& o) {
  if (auto box = ten_tries(height, width, rng, o.scale_min, o.scale_max, o.ratio_min, o.ratio_max, BoxRule::kResizedCrop))
    return *box;
  // torchvision's fallback: the whole image, its ratio clamped into range, centred
  const double in_ratio = static_cast<double>(width) / static_cast<double>(height);
  int64_t w = width, h = height;
  if (in_ratio < o.ratio_min) {
    h = static_cast<int64_t>(std::nearbyint(static_cast<double>(w) / o.ratio_min));
  } else if (in_ratio > o.ratio_max) {
    w = static_cast<int64_t>(std::nearbyint(static_cast<double>(h) * o.ratio_max));
  }
  return {(height - h) / 2, (width - w) / 2, h, w};
}

CropBox random_crop_box(int64_t height, int64_t width, int64_t pad, std::mt19937_64& rng) {
  std::uniform_int_distribution<int64_t> offset(0, 2 * pad);
  const int64_t top = offset(rng) - pad;  // torchvision draws the row first
  const int64_t left = offset(rng) - pad;
  return {top, left, height, width};
}

CropBox random_erasing_box(int64_t height, int64_t width, std::mt19937_64& rng, const RandomErasingOptions& o) {
  if (!(std::uniform_real_distribution<double>(0, 1)(rng) < o.p)) return {};
  // after ten misses the image stays as it is
  return ten_tries(height, width, rng, o.scale_min, o.scale_max, o.ratio_min, o.ratio_max, BoxRule::kErasing)
      .value_or(CropBox{});
}

int64_t test_resize_size(int64_t size, double crop_pct) {
  return static_cast<int64_t>(std::floor(static_cast<double>(size) / crop_pct));
}

CenterCropBox resize_center_crop_box(int64_t height, int64_t width, int64_t resize_to, int64_t size) {
  // torchvision's Resize(int): the shorter side becomes resize_to, the longer int(resize_to * long / short).
  int64_t new_h, new_w;
  if (height <= width) {
    new_h = resize_to;
    new_w = static_cast<int64_t>(static_cast<double>(resize_to) * width / height);
  } else {
    new_w = resize_to;
    new_h = static_cast<int64_t>(static_cast<double>(resize_to) * height / width);
  }
  const double crop_top = std::nearbyint((new_h - size) / 2.0);
  const double crop_left = std::nearbyint((new_w - size) / 2.0);
  const double sy = static_cast<double>(height) / new_h, sx = static_cast<double>(width) / new_w;
  return {crop_top * sy,
          crop_left * sx,
          sy,
          sx,
          new_h,
          new_w,
          static_cast<int64_t>(crop_top),
          static_cast<int64_t>(crop_left)};
}

namespace {

// Zeroes boxes[b] of image b (channels alike) of the normalised batch, in place: one mask, one pass.
void erase_boxes(torch::Tensor& images, const std::vector<CropBox>& boxes) {
  std::vector<double> top, bottom, left, right;
  for (const CropBox& box : boxes) {
    top.push_back(static_cast<double>(box.top)), bottom.push_back(static_cast<double>(box.top + box.height));
    left.push_back(static_cast<double>(box.left)), right.push_back(static_cast<double>(box.left + box.width));
  }
  const auto device = images.device();
  const auto at = torch::arange(images.size(2), torch::TensorOptions().dtype(torch::kFloat).device(device));
  const auto rows = at.unsqueeze(0).ge(column(top, device)) & at.unsqueeze(0).lt(column(bottom, device));  // [B, H]
  const auto cols = at.unsqueeze(0).ge(column(left, device)) & at.unsqueeze(0).lt(column(right, device));  // [B, W]
  images.masked_fill_((rows.unsqueeze(2) & cols.unsqueeze(1)).unsqueeze(1), 0.0);
}

// The train transform's geometry, image b's random numbers from `rng_of(b)`.
template <typename RngOf>
torch::Tensor train_transform_with(const RawBatch& batch, int64_t size, RngOf&& rng_of, const torch::Tensor& into,
                                   const TrainCropOptions& crop, const RandomErasingOptions& erase,
                                   bool trivial_augment) {
  const auto sizes = batch.sizes.to(torch::kCPU).contiguous();
  const auto* hw = sizes.data_ptr<int64_t>();
  // A source that decoded only the crops (a CropPlan): where each image sits in its file.
  const bool regions = batch.regions.defined();
  const auto* region = regions ? batch.regions.data_ptr<double>() : nullptr;
  const auto* planned = regions ? batch.crops.data_ptr<int64_t>() : nullptr;
  const auto* file_hw = regions ? batch.file_sizes.data_ptr<int64_t>() : hw;
  std::bernoulli_distribution flip(0.5);
  Geometry g;
  std::vector<CropBox> erased;
  std::vector<AugmentDraw> augments;
  std::vector<double> translate_scale;  // output pixels per crop pixel, x then y (augment.h)
  for (int64_t b = 0; b < sizes.size(0); ++b) {
    std::mt19937_64& rng = rng_of(b);
    const int64_t h = file_hw[2 * b], w = file_hw[2 * b + 1];
    CropBox box = crop.pad > 0 ? random_crop_box(h, w, crop.pad, rng) : random_resized_crop_box(h, w, rng, crop);
    // (the same box but where --skip-bad-images left a row out and the seeds moved up a row)
    if (regions) box = {planned[4 * b], planned[4 * b + 1], planned[4 * b + 2], planned[4 * b + 3]};
    const double sy = static_cast<double>(box.height) / size, sx = static_cast<double>(box.width) / size;
    // Reads clamp to the crop (the resize's edges) and to the image (a shifted crop's padding
    // repeats the edge pixels, as bilinear reads of edge padding do).
    double y0 = static_cast<double>(box.top), ylo = static_cast<double>(std::max<int64_t>(box.top, 0)),
           yhi = static_cast<double>(std::min(box.top + box.height, h) - 1), ystep = sy;
    double x0 = static_cast<double>(box.left), xlo = static_cast<double>(std::max<int64_t>(box.left, 0)),
           xhi = static_cast<double>(std::min(box.left + box.width, w) - 1), xstep = sx;
    if (regions) {  // the file's coordinates u become the region's (u + 0.5 - top) * scale - 0.5
      const double top = region[3 * b], left = region[3 * b + 1], s = region[3 * b + 2];
      auto to_y = [&](double u) { return (u + 0.5 - top) * s - 0.5; };
      auto to_x = [&](double u) { return (u + 0.5 - left) * s - 0.5; };
      y0 = (y0 - top) * s, ystep *= s;
      x0 = (x0 - left) * s, xstep *= s;
      ylo = std::max(0.0, to_y(ylo)), yhi = std::min(static_cast<double>(hw[2 * b] - 1), to_y(yhi));
      xlo = std::max(0.0, to_x(xlo)), xhi = std::min(static_cast<double>(hw[2 * b + 1] - 1), to_x(xhi));
    }
    g.add(y0, ystep, ylo, yhi, x0, xstep, xlo, xhi, flip(rng));
    if (trivial_augment) {  // (translations in the pad-and-crop's pixels, else the output's: augment.h)
      augments.push_back(draw_trivial_augment(rng));
      translate_scale.push_back(crop.pad > 0 ? static_cast<double>(size) / static_cast<double>(box.width) : 1.0);
      translate_scale.push_back(crop.pad > 0 ? static_cast<double>(size) / static_cast<double>(box.height) : 1.0);
    }
    if (erase.p > 0) erased.push_back(random_erasing_box(size, size, rng, erase));
  }
  torch::Tensor images = trivial_augment
                             ? normalise(resnet::trivial_augment(resample_pixels(batch, g, size), augments, translate_scale), into)
                             : resample(batch, g, size, into);
  if (erase.p > 0) erase_boxes(images, erased);
  return images;
}

}  // namespace

torch::Tensor train_transform(const RawBatch& batch, int64_t size, std::mt19937_64& rng, const torch::Tensor& into,
                              const TrainCropOptions& crop) {
  return train_transform_with(batch, size, [&](int64_t) -> std::mt19937_64& { return rng; }, into, crop, {}, false);
}

torch::Tensor train_transform(const RawBatch& batch, int64_t size, const std::vector<uint64_t>& seeds,
                              const torch::Tensor& into, const TrainCropOptions& crop,
                              const RandomErasingOptions& erase, bool trivial_augment) {
  std::mt19937_64 rng;
  return train_transform_with(
      batch, size,
      [&](int64_t b) -> std::mt19937_64& {
        rng.seed(seeds.at(static_cast<size_t>(b)));
        return rng;
      },
      into, crop, erase, trivial_augment);
}

torch::Tensor test_transform(const RawBatch& batch, int64_t size, const torch::Tensor& into, double crop_pct) {
  const auto sizes = batch.sizes.to(torch::kCPU).contiguous();
  const auto* hw = sizes.data_ptr<int64_t>();
  const int64_t n = sizes.size(0);
  Geometry g;  // of the images the resize does not shrink (all of CIFAR-10's)
  std::vector<int64_t> sampled;
  std::vector<std::pair<int64_t, CenterCropBox>> shrunk;
  for (int64_t b = 0; b < n; ++b) {
    const int64_t h = hw[2 * b], w = hw[2 * b + 1];
    const CenterCropBox box = resize_center_crop_box(h, w, test_resize_size(size, crop_pct), size);
    if (box.resized_height < h || box.resized_width < w) {
      shrunk.emplace_back(b, box);
      continue;
    }
    g.add(box.top, box.scale_y, 0, h - 1, box.left, box.scale_x, 0, w - 1, false);
    sampled.push_back(b);
  }
  if (shrunk.empty()) return resample(batch, g, size, into);
  // Shrinking: torchvision's Resize (PIL's bilinear) widens its filter by the factor, as ATen's
  // antialiased bilinear does; such images are resized one at a time, the rest sampled together.
  auto pixels = torch::empty({n, 3, size, size}, torch::TensorOptions().dtype(torch::kFloat).device(batch.images.device()));
  if (!sampled.empty()) {
    const auto index = upload(torch::tensor(sampled, torch::kLong), batch.images.device());
    pixels.index_copy_(0, index, sample(batch.images.index_select(0, index), g, size));
  }
  namespace F = torch::nn::functional;
  for (const auto& [b, box] : shrunk) {
    const auto image = batch.images[b].narrow(1, 0, hw[2 * b]).narrow(2, 0, hw[2 * b + 1]).unsqueeze(0);
    const auto resized = F::interpolate(image.to(torch::kFloat), F::InterpolateFuncOptions()
                                                                     .size(std::vector<int64_t>{box.resized_height,
                                                                                                box.resized_width})
                                                                     .mode(torch::kBilinear)
                                                                     .align_corners(false)
                                                                     .antialias(true));
    pixels[b].copy_(resized[0].narrow(1, box.crop_top, size).narrow(2, box.crop_left, size));
  }
  return normalise(pixels, into);
}

}  // namespace resnet
