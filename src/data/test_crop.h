// The sample's test crop, in a header of its own: the readers of checkpoint.json (built without
// LibTorch for the fuzzers) and the transforms share it.
#pragma once

namespace resnet {

// The share of the resized image the test transform keeps: 0.875, the sample's CenterCrop(224) of
// Resize(256) (timm's crop_pct).
constexpr double kTestCropPct = 0.875;

}  // namespace resnet
