// Files in Python's `torch.save` format (a zip archive holding data.pkl and one record per
// storage).
//
// Writing: a dict of tensors and plain values (int, float, bool, str) is pickled the way
// Python's torch.save pickles it: tensors through torch._utils._rebuild_tensor_v2 with one
// storage record each, an OrderedDict for state dicts. Such files open in Python with plain
// `torch.load(path)` (weights_only=True, the default since torch 2.6). The file is written
// atomically: a temporary file beside it, fsync, rename, fsync of the folder.
//
// Reading: both of torch.save's formats, the zip archive and the legacy one of files such as
// torchvision's published weights (_use_new_zipfile_serialization=False). A file that holds a
// dict of tensors (a state dict, or the reference tensors the parity tests write) becomes an
// ordered name -> tensor list. Anything else (neither format, a truncated file, a dict holding
// other objects, a pickle that asks for any class but tensors and containers, a missing file) is
// an InputError that names the file and what was found; nothing a pickle names is ever run.
#pragma once

#include <torch/types.h>

#include <ATen/core/ivalue.h>

#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace resnet {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

NamedTensors load_tensor_dict(const std::string& path);

// Any dict with string keys (values as IValues), for files that mix tensors and plain values.
std::vector<std::pair<std::string, c10::IValue>> load_torch_dict(const std::string& path);

using SaveValue = std::variant<torch::Tensor, int64_t, double, bool, std::string>;
using SaveEntries = std::vector<std::pair<std::string, SaveValue>>;

// `ordered`: an OrderedDict (what state_dict() returns in Python); else a plain dict.
void save_torch_file(const std::string& path, const SaveEntries& entries, bool ordered);

// save_torch_file in two halves: the constructor copies the tensors to host memory (waiting for
// the device) and pickles; write() makes the file, atomically, on any thread, while the caller
// goes on changing the tensors it was made from (train's checkpoints in the background).
class TorchFile {
 public:
  TorchFile(const SaveEntries& entries, bool ordered);
  void write(const std::string& path) const;

 private:
  std::string pickle_;
  std::vector<torch::Tensor> storages_;  // host copies of their own
};

// A state dict as Python's torch.save(model.state_dict()) writes it.
void save_state_dict(const std::string& path, const NamedTensors& tensors);

// The tensor called `name` in `tensors`; InputError naming `path` when it is not there.
torch::Tensor find_tensor(const NamedTensors& tensors, const std::string& name, const std::string& path);

}  // namespace resnet
