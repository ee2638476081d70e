// SGD with momentum and weight decay, PyTorch's semantics (torch.optim.SGD, dampening 0, no
// Nesterov): d = grad + wd * p; buf = d on the first step, else momentum * buf + d; p -= lr * buf.
//
// The update runs as a handful of multi-tensor (_foreach) kernels for all parameters at once,
// as PyTorch's foreach implementation does, instead of several kernels per parameter. Its state
// (the momentum buffers) is public so that checkpoints can save and restore it exactly.
// tests/test_train.cpp checks it against torch::optim::SGD.
#pragma once

#include <torch/types.h>

#include <vector>

namespace resnet {

struct SgdOptions {
  double learning_rate = 0.001;
  double momentum = 0.9;
  double weight_decay = 1e-4;
};

class Sgd {
 public:
  Sgd(std::vector<torch::Tensor> params, SgdOptions options);
  void zero_grad();  // sets gradients to none, as PyTorch's default
  void step();

  const SgdOptions& options() const { return options_; }
  // One buffer per parameter, undefined until the first step.
  std::vector<torch::Tensor>& momentum_buffers() { return buffers_; }
  const std::vector<torch::Tensor>& params() const { return params_; }

 private:
  std::vector<torch::Tensor> params_, buffers_;
  SgdOptions options_;
};

}  // namespace resnet
