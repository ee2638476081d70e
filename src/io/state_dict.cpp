#include "io/state_dict.h"

#include <torch/types.h>

#include <map>
#include <sstream>

#include "core/error.h"

namespace resnet {
namespace {

void collect(const torch::nn::Module& module, const std::string& prefix, NamedTensors& out) {
  for (const auto& p : module.named_parameters(/*recurse=*/false)) out.emplace_back(prefix + p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/false)) out.emplace_back(prefix + b.key(), b.value());
  for (const auto& child : module.named_children()) collect(*child.value(), prefix + child.key() + ".", out);
}

std::string shape_string(const torch::Tensor& t) {
  std::ostringstream s;
  s << t.sizes();
  return s.str();
}

}  // namespace

NamedTensors state_dict(const torch::nn::Module& module) {
  NamedTensors out;
  collect(module, "", out);
  return out;
}

void load_state_dict(torch::nn::Module& module, const NamedTensors& tensors, const std::string& source) {
  std::map<std::string, torch::Tensor> given(tensors.begin(), tensors.end());
  const NamedTensors own = state_dict(module);
  std::vector<std::string> missing, mismatched;
  for (const auto& [name, dest] : own) {
    auto it = given.find(name);
    if (it == given.end()) {
      missing.push_back(name);
    } else if (it->second.sizes() != dest.sizes()) {
      mismatched.push_back(name + " (file " + shape_string(it->second) + ", model " + shape_string(dest) + ")");
    }
    if (it != given.end()) given.erase(it);
  }
  if (!missing.empty() || !given.empty() || !mismatched.empty()) {
    std::ostringstream msg;
    msg << source << ": does not match the model";
    auto list = [&msg](const char* what, const std::vector<std::string>& names) {
      if (names.empty()) return;
      msg << "; " << what << " (" << names.size() << "):";
      for (size_t i = 0; i < names.size() && i < 5; ++i) msg << " " << names[i];
      if (names.size() > 5) msg << " ...";
    };
    std::vector<std::string> unexpected;
    for (const auto& entry : given) unexpected.push_back(entry.first);
    list("missing keys", missing);
    list("unexpected keys", unexpected);
    list("shape mismatches", mismatched);
    msg << ". Was it saved from the same architecture and number of classes?";
    throw InputError(msg.str());
  }
  torch::NoGradGuard no_grad;
  std::map<std::string, torch::Tensor> by_name(tensors.begin(), tensors.end());
  for (const auto& [name, dest] : own) dest.copy_(by_name.at(name));
}

}  // namespace resnet
