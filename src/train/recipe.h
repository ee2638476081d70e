// Named sets of training settings (--recipe NAME): a small table of flags and values, applied as
// if written on the command line before the user's own flags, which override them.
//
//   sample  the PyTorch sample's job: no settings (today's defaults, and the default recipe)
//   fast    toward 94% test top-1 on CIFAR-10 with ResNet-50 in 15 minutes on one H100/H200
//           (issue 12): fp16 fused convolutions at batch 256, Nesterov SGD with linear warm-up and
//           cosine decay, label smoothing, no weight decay on batch norms and biases, CIFAR's
//           pad-and-crop, random erasing, Mixup, zero-initialised residual branches, tests of
//           the whole image with its mirror. Values chosen on held-out training images; see
//           docs/RECIPES.md for what has been run.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace resnet {

struct RecipeSetting {
  std::string flag, value;  // as written on the command line; value "" for a flag that takes none
};

// The settings of the recipe `name`, in order; UsageError naming --recipe and the known names for
// any other.
const std::vector<RecipeSetting>& recipe_settings(const std::string& name);

std::vector<std::string> recipe_names();

}  // namespace resnet
