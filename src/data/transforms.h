// The sample's image transforms, done for a whole batch at once on the batch's device.
//
// Train: RandomResizedCrop(size, scale=(0.08, 1), ratio=(3/4, 4/3)) with torchvision's sampling
// (ten tries, then its centre-crop fallback) or, where asked (--crop-pad P), CIFAR's translation:
// RandomCrop(the image's own size, padding=P, padding_mode="edge") then Resize(size);
// RandomHorizontalFlip(p=0.5), ImageNet mean/std, and
// where asked (--random-erase) RandomErasing(p, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0)
// after the normalisation, as torchvision's transform placed last.
// Test: Resize(floor(size / crop_pct)) of the shorter side, CenterCrop(size), the same normalisation
// (crop_pct 0.875: the sample's Resize(256) and CenterCrop(224); 1: the whole of a square image).
//
// How: crop boxes and flips are drawn per image on the CPU (cheap), then one affine sampling grid
// per image and a single grid_sample (bilinear, half-pixel centres) read every output pixel
// from the uint8 batch, with coordinates clamped to the crop (train: torchvision crops, then
// resizes) or to the image (test: it resizes, then crops). Upsampling, as for CIFAR-10's 32-pixel
// images, matches torchvision's bilinear resize. Where the test transform shrinks an image
// (ImageNet's), that image is resized on its own with ATen's antialiased bilinear filter (PIL's,
// which the sample's Resize uses) and then cropped; the train crop's shrinking is not antialiased.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <random>
#include <vector>

#include "data/dataset.h"
#include "data/test_crop.h"

namespace resnet {

// ImageNet statistics, as the sample's Normalize.
constexpr double kImageNetMean[3] = {0.485, 0.456, 0.406};
constexpr double kImageNetStd[3] = {0.229, 0.224, 0.225};

struct TrainCropOptions {
  // RandomResizedCrop's
  double scale_min = 0.08, scale_max = 1.0;
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;
  // > 0: instead, the whole image shifted by up to `pad` source pixels each way, its edge pixels
  // repeated into the gap (torchvision's RandomCrop(image size, padding=pad, padding_mode="edge")).
  int64_t pad = 0;
};

// torchvision's RandomResizedCrop.get_params for an image of height x width.
CropBox random_resized_crop_box(int64_t height, int64_t width, std::mt19937_64& rng,
                                const TrainCropOptions& options = {});

// torchvision's RandomCrop.get_params for a crop of the image's own size from the image padded by
// `pad` on every side, as a box in the unpadded image (top and left in [-pad, pad]).
CropBox random_crop_box(int64_t height, int64_t width, int64_t pad, std::mt19937_64& rng);

struct RandomErasingOptions {
  double p = 0;  // share of images that get a box erased (0: off)
  double scale_min = 0.02, scale_max = 0.33;
  double ratio_min = 0.3, ratio_max = 3.3;
};

// torchvision's RandomErasing.get_params (ten tries) for an image of height x width, after the
// draw of whether to erase at all (probability p): a box of zero height where nothing is erased.
CropBox random_erasing_box(int64_t height, int64_t width, std::mt19937_64& rng, const RandomErasingOptions& options);

// Resize(resize_to) of the shorter side then CenterCrop(size), expressed as a box in the
// source image; `scale` is source pixels per output pixel. Also the resized image's size and
// where the crop starts in it.
struct CenterCropBox {
  double top = 0, left = 0, scale_y = 1, scale_x = 1;
  int64_t resized_height = 0, resized_width = 0, crop_top = 0, crop_left = 0;
};
CenterCropBox resize_center_crop_box(int64_t height, int64_t width, int64_t resize_to, int64_t size);

// Train transform of a batch: float [B, 3, size, size] on the batch's device, normalised.
// The crops and flips come from `rng`. Written into `into` (and `into` returned) where it is a
// float tensor of that shape on that device, in any memory format; else into a new tensor.
torch::Tensor train_transform(const RawBatch& batch, int64_t size, std::mt19937_64& rng,
                              const torch::Tensor& into = {}, const TrainCropOptions& crop = {});

// The same with image b's crop and flip drawn from its own generator, seeded with seeds[b]: an
// image's augmentation then depends on its seed alone, not on the batch it comes in.
// TrivialAugment (data/augment.h), where trivial_augment, draws from the same generator after the
// crop and the flip, and random erasing, where erase.p > 0, after those.
torch::Tensor train_transform(const RawBatch& batch, int64_t size, const std::vector<uint64_t>& seeds,
                              const torch::Tensor& into = {}, const TrainCropOptions& crop = {},
                              const RandomErasingOptions& erase = {}, bool trivial_augment = false);

// Test transform: Resize(floor(size / crop_pct)) + CenterCrop(size) + normalisation; `into` as above.
torch::Tensor test_transform(const RawBatch& batch, int64_t size, const torch::Tensor& into = {},
                             double crop_pct = kTestCropPct);

// The shorter side the test transform resizes to, as timm's floor(size / crop_pct): 256 for 224 at
// the sample's 0.875.
int64_t test_resize_size(int64_t size, double crop_pct = kTestCropPct);

}  // namespace resnet
