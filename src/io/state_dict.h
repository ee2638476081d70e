// State dicts: a module's parameters and buffers by their dotted names, in PyTorch's order
// (each module's own parameters, then its own buffers, then its children in registration order),
// and loading one into a module with the checks PyTorch's `load_state_dict(strict=True)` makes.
#pragma once

#include <torch/nn/module.h>

#include "io/torch_save.h"

namespace resnet {

NamedTensors state_dict(const torch::nn::Module& module);

// Copies `tensors` into `module`'s parameters and buffers (values are converted to each
// destination's device and dtype). `source` names where they came from, for error messages.
// Strict: every missing key, unexpected key and shape mismatch is listed in one InputError.
void load_state_dict(torch::nn::Module& module, const NamedTensors& tensors, const std::string& source);

}  // namespace resnet
