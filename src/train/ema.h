// An exponential moving average of a model's weights (--ema-decay): after every optimiser step
// ema = decay * ema + (1 - decay) * weights, over the parameters and the floating-point buffers
// (batch-norm running statistics; integer buffers such as num_batches_tracked are copied), as
// timm's ModelEmaV2. With it on, the per-epoch test and checkpoint.pth use the averaged weights;
// resume.pt keeps them ("ema.<name>"), so a resumed run continues the same average.
#pragma once

#include <torch/types.h>

#include "io/torch_save.h"
#include "models/classifier.h"

namespace resnet {

// UsageError naming --ema-decay unless 0 <= decay < 1.
void check_ema_decay(double decay);

class Ema {
 public:
  // Starts as a copy of the model's weights, on its device. The model's tensors must stay the
  // same objects while it averages them (the trainer never replaces them).
  Ema(const Classifier& model, double decay);
  // One update from the model's current weights (a few _foreach kernels; no host sync).
  void update();
  // The averaged weights with state_dict's names (for resume.pt), and setting them (resume).
  NamedTensors named() const;
  void load(const NamedTensors& tensors, const std::string& source);
  double decay() const { return decay_; }

  // Puts the averaged weights into `model` for its lifetime (evaluation, checkpoint.pth) and the
  // model's own back afterwards. Copies into the model's tensors: a captured CUDA graph reading
  // them sees the swap.
  class Swap {
   public:
    Swap(const Ema& ema, Classifier& model);
    ~Swap();
    Swap(const Swap&) = delete;
    Swap& operator=(const Swap&) = delete;

   private:
    NamedTensors live_;
    std::vector<torch::Tensor> saved_;
  };

 private:
  double decay_;
  std::vector<std::string> names_;
  std::vector<torch::Tensor> average_;
  std::vector<torch::Tensor> live_float_, average_float_;  // the model's floating-point tensors, and theirs
  std::vector<std::pair<torch::Tensor, torch::Tensor>> live_other_;  // (average, model's) integer tensors
};

}  // namespace resnet
