// Files in Python's `torch.save` format (a zip archive holding data.pkl and one record per
// storage).
//
// Reading: a file that holds a dict of tensors (a state dict, or the reference tensors the parity
// tests write) becomes an ordered name -> tensor list. Anything else (not a zip archive, a dict
// holding other objects, a missing file) is an InputError that names the file and what was found.
#pragma once

#include <torch/types.h>

#include <string>
#include <utility>
#include <vector>

namespace resnet {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

NamedTensors load_tensor_dict(const std::string& path);

// The tensor called `name` in `tensors`; InputError naming `path` when it is not there.
torch::Tensor find_tensor(const NamedTensors& tensors, const std::string& name, const std::string& path);

}  // namespace resnet
