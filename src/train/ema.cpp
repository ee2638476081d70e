#include "train/ema.h"

#include <ATen/ops/_foreach_lerp.h>
#include <torch/torch.h>

#include <map>
#include <sstream>

#include "core/error.h"
#include "io/state_dict.h"

namespace resnet {

void check_ema_decay(double decay) {
  if (!(decay >= 0 && decay < 1)) {
    std::ostringstream got;
    got << decay;
    throw UsageError("--ema-decay must be at least 0 and below 1 (got " + got.str() + ")");
  }
}

Ema::Ema(const Classifier& model, double decay) : decay_(decay) {
  check_ema_decay(decay);
  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : state_dict(model)) {
    names_.push_back(name);
    average_.push_back(t.detach().clone());
    if (t.is_floating_point()) {
      live_float_.push_back(t);
      average_float_.push_back(average_.back());
    } else {
      live_other_.emplace_back(average_.back(), t);
    }
  }
}

void Ema::update() {
  torch::NoGradGuard no_grad;
  // lerp: avg + (1 - decay) * (now - avg) = decay * avg + (1 - decay) * now
  if (!average_float_.empty()) at::_foreach_lerp_(average_float_, live_float_, 1.0 - decay_);
  for (auto& [avg, now] : live_other_) avg.copy_(now);
}

NamedTensors Ema::named() const {
  NamedTensors out;
  for (size_t i = 0; i < average_.size(); ++i) out.emplace_back(names_[i], average_[i]);
  return out;
}

void Ema::load(const NamedTensors& tensors, const std::string& source) {
  std::map<std::string, torch::Tensor> given(tensors.begin(), tensors.end());
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < average_.size(); ++i) {
    auto it = given.find(names_[i]);
    if (it == given.end() || it->second.sizes() != average_[i].sizes())
      throw InputError(source + ": its averaged weights (--ema-decay) lack or misshape '" + names_[i] +
                       "'; pass --restart to start over");
    average_[i].copy_(it->second);
  }
}

Ema::Swap::Swap(const Ema& ema, Classifier& model) : live_(state_dict(model)) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < live_.size(); ++i) {
    saved_.push_back(live_[i].second.clone());
    live_[i].second.copy_(ema.average_[i]);
  }
}

Ema::Swap::~Swap() {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < live_.size(); ++i) live_[i].second.copy_(saved_[i]);
}

}  // namespace resnet
