// SGD with momentum and weight decay, PyTorch's semantics (torch.optim.SGD, dampening 0):
// d = grad + wd * p; buf = d on the first step, else momentum * buf + d; p -= lr * buf, or with
// Nesterov p -= lr * (d + momentum * buf). Parameters may skip weight decay (a second group).
//
// On CUDA the update is our one-launch kernel over all parameters (ops/sgd_kernels.cu), which
// reads the learning rate, momentum and weight decay from a tensor on the parameters' device: a
// step captured in a CUDA graph follows set_learning_rate, set_momentum and set_weight_decay
// without re-capture. It also takes the loss scale and the "found inf" flag of fp16 training on
// the device (a step with an overflow changes nothing). Parameters it does not take (not fp32, or
// gradient and parameter in different layouts) go through ATen's fused SGD, for which the three
// are the values of the moment the step is captured.
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
  // Nesterov momentum (torch.optim.SGD's nesterov=True): p -= lr * (d + momentum * buf).
  bool nesterov = false;
};

// UsageError naming the flag for values torch.optim.SGD refuses (negative rate, momentum or
// weight decay, Nesterov without momentum) and for non-finite ones.
void check_sgd_options(const SgdOptions& options);

class Sgd {
 public:
  // `decay[i]` false: no weight decay for params[i] (a second parameter group, as timm's
  // filter_bias_and_bn); empty: every parameter decays.
  Sgd(std::vector<torch::Tensor> params, SgdOptions options, std::vector<bool> decay = {});
  void zero_grad();  // sets gradients to none, as PyTorch's default
  // With fp16 loss scaling: gradients are divided by `grad_scale`, and nothing changes where
  // `found_inf` (a device scalar) is non-zero.
  void step(const std::optional<torch::Tensor>& grad_scale = std::nullopt,
            const std::optional<torch::Tensor>& found_inf = std::nullopt);

  double learning_rate() const { return options_.learning_rate; }
  // These write the value into the device tensor the kernel reads (stream-ordered, no host sync).
  void set_learning_rate(double lr);
  // Momentum can change, but not from or to 0 (a run without momentum keeps no buffers).
  void set_momentum(double momentum);
  void set_weight_decay(double weight_decay);
  const SgdOptions& options() const { return options_; }
  // One buffer per parameter, undefined until the first step; same layout as its parameter.
  std::vector<torch::Tensor>& momentum_buffers() { return buffers_; }
  const std::vector<torch::Tensor>& params() const { return params_; }
  // The parameters' gradients that are defined (after a backward pass), in params()' order.
  std::vector<torch::Tensor> grads() const;

 private:
  void set_options(const SgdOptions& options);
  void foreach_step(std::vector<torch::Tensor>& params, std::vector<torch::Tensor>& grads,
                    std::vector<torch::Tensor>& buffers, double weight_decay) const;
  // The update of the parameters with_grad[k] for which decay_ is `decay`, through ATen's kernels.
  void aten_step(const std::vector<size_t>& with_grad, bool decay, bool cuda,
                 const std::optional<torch::Tensor>& grad_scale, const std::optional<torch::Tensor>& found_inf);
  // Our CUDA kernel over every parameter with a gradient; false (nothing done) where one of them is
  // not a dense fp32 tensor in its gradient's layout.
  bool kernel_step(const std::vector<size_t>& with_grad, const std::optional<torch::Tensor>& grad_scale,
                   const std::optional<torch::Tensor>& found_inf);

  std::vector<torch::Tensor> params_, buffers_;
  std::vector<bool> decay_;  // per parameter
  SgdOptions options_;
  torch::Tensor hyper_;  // float32 {learning rate, momentum, weight decay} on the parameters' device
  torch::Tensor hyper_no_decay_;  // the same with weight decay 0, for the parameters that skip it
};

// The total L2 norm of `grads` (a 0-d fp32 tensor on their device; no host sync); inf or NaN
// where one of them holds such a value.
torch::Tensor grad_l2_norm(const std::vector<torch::Tensor>& grads);

// Scales `grads` in place so that their total L2 norm is at most max_norm, as
// torch.nn.utils.clip_grad_norm_ (coefficient max_norm / (norm + 1e-6), at most 1); where `scale`
// is given the gradients are that many times the true ones (fp16's loss scale) and the limit
// scales with it. On the device with no host sync (it runs in a CUDA graph). Returns the total norm
// of the gradients as given (a 0-d fp32 tensor).
torch::Tensor clip_grad_norm(const std::vector<torch::Tensor>& grads, double max_norm,
                             const torch::Tensor& scale = torch::Tensor());

}  // namespace resnet
