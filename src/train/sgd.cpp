#include "train/sgd.h"

#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_foreach_mul.h>
#include <torch/autograd.h>

namespace resnet {

Sgd::Sgd(std::vector<torch::Tensor> params, SgdOptions options)
    : params_(std::move(params)), buffers_(params_.size()), options_(options) {}

void Sgd::zero_grad() {
  for (auto& p : params_) p.mutable_grad() = torch::Tensor();
}

void Sgd::step() {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> params, grads, buffers;
  std::vector<size_t> fresh;  // parameters without a momentum buffer yet
  for (size_t i = 0; i < params_.size(); ++i) {
    if (!params_[i].grad().defined()) continue;
    params.push_back(params_[i]);
    grads.push_back(params_[i].grad());
  }
  if (params.empty()) return;
  if (options_.weight_decay != 0) grads = at::_foreach_add(grads, params, options_.weight_decay);
  std::vector<torch::Tensor> directions = grads;
  if (options_.momentum != 0) {
    std::vector<torch::Tensor> existing, existing_grads;
    size_t k = 0;
    for (size_t i = 0; i < params_.size(); ++i) {
      if (!params_[i].grad().defined()) continue;
      if (!buffers_[i].defined()) {
        buffers_[i] = grads[k].clone();
      } else {
        existing.push_back(buffers_[i]);
        existing_grads.push_back(grads[k]);
      }
      directions[k] = buffers_[i];
      ++k;
    }
    if (!existing.empty()) {
      at::_foreach_mul_(existing, options_.momentum);
      at::_foreach_add_(existing, existing_grads, /*alpha=*/1.0);
    }
  }
  at::_foreach_add_(params, directions, -options_.learning_rate);
}

}  // namespace resnet
