#include "train/sgd.h"

#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_fused_sgd.h>
#include <torch/autograd.h>

#include <cmath>
#include <string>

#include "core/error.h"

namespace resnet {

void check_sgd_options(const SgdOptions& o) {
  // As torch.optim.SGD refuses them; NaN and infinity too.
  auto check = [](double v, const char* flag) {
    require_not_negative(v, flag);
    if (!std::isfinite(v)) throw UsageError(std::string(flag) + " must be finite (got inf)");
  };
  check(o.learning_rate, "--learning-rate (--lr)");
  check(o.momentum, "--momentum");
  check(o.weight_decay, "--weight-decay (--wd)");
}

Sgd::Sgd(std::vector<torch::Tensor> params, SgdOptions options)
    : params_(std::move(params)), buffers_(params_.size()), options_(options), learning_rate_(options.learning_rate) {
  check_sgd_options(options_);
  const auto device = params_.empty() ? torch::Device(torch::kCPU) : params_.front().device();
  lr_ = torch::full({}, learning_rate_, torch::TensorOptions().dtype(torch::kFloat).device(device));
}

void Sgd::set_learning_rate(double lr) {
  check_sgd_options({lr, options_.momentum, options_.weight_decay});
  learning_rate_ = lr;
  lr_.fill_(lr);
}

void Sgd::zero_grad() {
  for (auto& p : params_) p.mutable_grad() = torch::Tensor();
}

void Sgd::step(const std::optional<torch::Tensor>& grad_scale, const std::optional<torch::Tensor>& found_inf) {
  torch::NoGradGuard no_grad;
  // Parameters whose buffer exists, and those taking their first step (buffer = gradient).
  std::vector<torch::Tensor> params[2], grads[2], buffers[2];
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto& grad = params_[i].grad();
    if (!grad.defined()) continue;
    const bool first = options_.momentum != 0 && !buffers_[i].defined();
    // zeros, not empty: an fp16 step skipped for an overflow leaves the buffer as it was, and a zero
    // buffer makes the next step equal to a first one.
    if (first) buffers_[i] = torch::zeros_like(grad);
    params[first].push_back(params_[i]);
    grads[first].push_back(grad);
    if (options_.momentum != 0) buffers[first].push_back(buffers_[i]);
  }
  for (int first = 0; first < 2; ++first) {
    if (params[first].empty()) continue;
    if (params[first].front().is_cuda()) {
      at::_fused_sgd_(params[first], grads[first], buffers[first], options_.weight_decay, options_.momentum, lr_,
                      /*dampening=*/0.0, /*nesterov=*/false, /*maximize=*/false, /*is_first_step=*/first == 1,
                      grad_scale, found_inf);
    } else {
      if (grad_scale || found_inf) throw UsageError("loss scaling (--amp fp16) needs a CUDA device");
      foreach_step(params[first], grads[first], buffers[first], first == 1);
    }
  }
}

// On the CPU ATen's fused kernel runs at under half the speed of these few _foreach kernels
// (measured: 0.61 s against 0.26 s a step for ResNet-18's parameters on 2 cores).
void Sgd::foreach_step(std::vector<torch::Tensor>& params, std::vector<torch::Tensor>& grads,
                       std::vector<torch::Tensor>& buffers, bool first) const {
  if (options_.weight_decay != 0) grads = at::_foreach_add(grads, params, options_.weight_decay);
  if (options_.momentum == 0) {
    at::_foreach_add_(params, grads, -learning_rate_);
    return;
  }
  if (first) {
    for (size_t i = 0; i < buffers.size(); ++i) buffers[i].copy_(grads[i]);
  } else {
    at::_foreach_mul_(buffers, options_.momentum);
    at::_foreach_add_(buffers, grads, /*alpha=*/1.0);
  }
  at::_foreach_add_(params, buffers, -learning_rate_);
}

}  // namespace resnet
