// The common face of every image classifier in src/models.
//
// A Classifier maps a float batch [N, 3, H, W] to logits [N, num_classes]. Its parameter and
// buffer names are torchvision's (`conv1.weight`, `layer1.0.downsample.0.weight`,
// `features.3.squeeze.weight`, ...) so that state dicts move between this project and
// torchvision unchanged (src/io/state_dict.h).
#pragma once

#include <torch/nn/module.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "ops/batch_norm_act.h"

namespace resnet {

class Classifier : public torch::nn::Module {
 public:
  Classifier(std::string arch, int64_t num_classes)
      : torch::nn::Module(arch), arch_(std::move(arch)), num_classes_(num_classes) {}

  virtual torch::Tensor forward(torch::Tensor images) = 0;
  // Turns the model's fused training kernels (`--fused`) on or off; false where it has none.
  virtual bool set_fused(bool on) {
    (void)on;
    return false;
  }

  // What the fused kernels are when on, for the log ("fused batch norm"); `fp16`: --amp fp16.
  virtual std::string fused_description(bool fp16, const c10::Device& device) const {
    (void)fp16, (void)device;
    return "fused batch norm";
  }

  // Replaces the model's training-mode batch norm by `fn` (given the input and the layer's
  // parameters and running statistics, which it updates; --sync-bn's statistics over all
  // processes); an empty fn restores the layers' own. False where the model has no batch norm.
  virtual bool set_batch_norm(BatchNormFn fn) {
    (void)fn;
    return false;
  }

  // Starts the last batch norm of every residual block at zero weight, so that each block begins
  // as its shortcut (torchvision's zero_init_residual=True; Goyal et al., "Accurate, Large
  // Minibatch SGD", 2017). False where the model has no residual blocks.
  virtual bool zero_init_residual() { return false; }

  // The registry name this model was built from ("resnet50").
  const std::string& arch() const { return arch_; }
  int64_t num_classes() const { return num_classes_; }

 private:
  std::string arch_;
  int64_t num_classes_;
};

// Number of trainable parameters (elements), as torchvision users count them:
// sum(p.numel() for p in model.parameters()).
int64_t count_parameters(const torch::nn::Module& model);

}  // namespace resnet
