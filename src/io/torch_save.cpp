#include "io/torch_save.h"

#include <torch/serialize.h>

#include <fstream>
#include <iterator>

#include "core/error.h"

namespace resnet {

NamedTensors load_tensor_dict(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open for reading");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < 4 || bytes[0] != 'P' || bytes[1] != 'K')
    throw InputError(path + ": not a torch.save file (expected a zip archive, found " +
                     std::to_string(bytes.size()) + " bytes without the zip signature)");
  c10::IValue value;
  try {
    value = torch::pickle_load(bytes);
  } catch (const c10::Error& e) {
    throw InputError(path + ": cannot read it as a torch.save file: " + e.what_without_backtrace());
  }
  if (!value.isGenericDict())
    throw InputError(path + ": expected a dict of tensors, found " + value.tagKind());
  NamedTensors tensors;
  for (const auto& entry : value.toGenericDict()) {
    if (!entry.key().isString())
      throw InputError(path + ": a key of the dict is a " + entry.key().tagKind() + ", not a string");
    const std::string& name = entry.key().toStringRef();
    if (!entry.value().isTensor())
      throw InputError(path + ": entry '" + name + "' is a " + entry.value().tagKind() + ", not a tensor");
    tensors.emplace_back(name, entry.value().toTensor());
  }
  return tensors;
}

torch::Tensor find_tensor(const NamedTensors& tensors, const std::string& name, const std::string& path) {
  for (const auto& [key, tensor] : tensors)
    if (key == name) return tensor;
  throw InputError(path + ": has no tensor named '" + name + "'");
}

}  // namespace resnet
