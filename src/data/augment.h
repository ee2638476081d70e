// TrivialAugment (Müller & Hutter, 2021), torchvision's TrivialAugmentWide: each training image
// gets one operation drawn uniformly from fourteen, at a magnitude drawn uniformly from 31 steps
// of its range (signed where the operation has two directions). Batched on the batch's device:
// the images that drew an operation are processed together.
//
// Applied to the pixels (0-255) after the crop, flip and resize and before the normalisation and
// random erasing, where torchvision's CIFAR-10 pipelines apply it to the crop (RandomCrop, flip,
// TrivialAugmentWide, ToTensor, Normalize, RandomErasing). Translations are in pixels of the crop
// before resizing where the crop is CIFAR's pad-and-crop (torchvision's 0-32 pixels on 32-pixel
// images: they move the content as far as on the small image), and in output pixels after a
// RandomResizedCrop (torchvision's ImageNet recipes apply it after that crop); rotations and
// shears do not depend on the scale. Geometric operations read with nearest-neighbour sampling
// and fill with black (0), as torchvision's defaults; the pixels stay float (no rounding to uint8
// between operations, which makes results differ from torchvision's uint8 ones by up to 2 levels;
// Posterize and Equalize round first, as they need whole levels).
#pragma once

#include <torch/types.h>

#include <random>
#include <vector>

namespace resnet {

enum class AugmentOp {
  kIdentity,
  kShearX,
  kShearY,
  kTranslateX,
  kTranslateY,
  kRotate,
  kBrightness,
  kColor,
  kContrast,
  kSharpness,
  kPosterize,
  kSolarize,
  kAutoContrast,
  kEqualize,
};
constexpr int kAugmentOps = 14;
constexpr int kAugmentBins = 31;  // torchvision's num_magnitude_bins

// torchvision's name of an operation ("ShearX", ...).
const char* augment_op_name(AugmentOp op);

// One image's operation and its signed magnitude, in torchvision's units: shear as the tangent of
// the angle, translation in pixels (whole), rotation in degrees, Brightness/Color/Contrast/
// Sharpness as the factor minus 1, Posterize as bits kept, Solarize as the threshold.
struct AugmentDraw {
  AugmentOp op = AugmentOp::kIdentity;
  double magnitude = 0;
};

// Three draws from `rng` (operation, magnitude step, sign), whatever the operation.
AugmentDraw draw_trivial_augment(std::mt19937_64& rng);

// Image b of `pixels` (float [B, 3, H, W], 0-255, any device) with draws[b] applied; a
// translation moves image b by its magnitude times translate_scale[b] (x then y: 2 per image).
torch::Tensor trivial_augment(const torch::Tensor& pixels, const std::vector<AugmentDraw>& draws,
                              const std::vector<double>& translate_scale);

}  // namespace resnet
