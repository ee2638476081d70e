// SGD with momentum and weight decay, PyTorch's semantics (torch.optim.SGD, dampening 0, no
// Nesterov): d = grad + wd * p; buf = d on the first step, else momentum * buf + d; p -= lr * buf.
//
// On CUDA the update is ATen's fused SGD (`torch.optim.SGD(fused=True)`): one multi-tensor kernel
// for all parameters, reading the learning rate from a tensor on the parameters' device, so that a
// step captured in a CUDA graph picks up a new rate (set_learning_rate) without re-capture, and
// taking the loss scale and the "found inf" flag of fp16 training on the device (a step with an
// overflow changes nothing). Momentum and weight decay are constants of the kernel: a step
// captured in a graph keeps the values it was captured with.
// On the CPU it is a few _foreach kernels (PyTorch's default there), faster than the fused one.
// Its state (the momentum buffers) is public so that checkpoints can save and restore it exactly.
// tests/test_train.cpp checks it against torch::optim::SGD.
#pragma once

#include <torch/types.h>

#include <optional>
#include <vector>

namespace resnet {

struct SgdOptions {
  double learning_rate = 0.001;
  double momentum = 0.9;
  double weight_decay = 1e-4;
};

// UsageError naming the flag for values torch.optim.SGD refuses (negative rate, momentum or
// weight decay) and for non-finite ones.
void check_sgd_options(const SgdOptions& options);

class Sgd {
 public:
  Sgd(std::vector<torch::Tensor> params, SgdOptions options);
  void zero_grad();  // sets gradients to none, as PyTorch's default
  // With fp16 loss scaling: gradients are divided by `grad_scale`, and nothing changes where
  // `found_inf` (a device scalar) is non-zero.
  void step(const std::optional<torch::Tensor>& grad_scale = std::nullopt,
            const std::optional<torch::Tensor>& found_inf = std::nullopt);

  double learning_rate() const { return learning_rate_; }
  // Writes the rate into the device tensor the kernel reads (stream-ordered, no host sync).
  void set_learning_rate(double lr);
  const SgdOptions& options() const { return options_; }
  // One buffer per parameter, undefined until the first step; same layout as its parameter.
  std::vector<torch::Tensor>& momentum_buffers() { return buffers_; }
  const std::vector<torch::Tensor>& params() const { return params_; }

 private:
  void foreach_step(std::vector<torch::Tensor>& params, std::vector<torch::Tensor>& grads,
                    std::vector<torch::Tensor>& buffers, bool first) const;

  std::vector<torch::Tensor> params_, buffers_;
  SgdOptions options_;
  double learning_rate_;
  torch::Tensor lr_;  // float32 scalar on the parameters' device
};

}  // namespace resnet
