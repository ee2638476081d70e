// Mixed precision and memory format for training and inference: `--amp bf16|fp16|off` and
// `--channels-last on|off`.
//
// bf16 and fp16 run the forward pass under LibTorch's autocast (convolutions and matrix products
// in the low precision, losses and softmax in fp32, parameters and their gradients stay fp32), as
// `torch.autocast` does in Python. fp16 also needs a loss scale (see LossScaler in step.h); bf16
// has fp32's range and needs none. Channels-last (NHWC) is the layout the tensor-core
// convolutions of cuDNN read and write without transposes.
#pragma once

#include <torch/nn/module.h>
#include <torch/types.h>

#include <string>

namespace resnet {

enum class Amp { kOff, kBf16, kFp16 };

// "bf16", "fp16", "off" (also "fp32"), or "auto": bf16 on CUDA, off on the CPU (the sample's
// fp32). UsageError for anything else, and for fp16 on the CPU (no loss-scaled CPU path).
Amp parse_amp(const std::string& spec, const c10::Device& device);
std::string to_string(Amp amp);  // "bf16", "fp16", "fp32"

// "on", "off" or "auto" (on for CUDA, off for the CPU, where NCHW kernels are the fast ones).
bool parse_channels_last(const std::string& spec, const c10::Device& device);

// Autocast on `device` for the guard's lifetime (nothing when amp is kOff). The cast-weight
// cache is off: a step captured in a CUDA graph must re-cast the weights on every replay, and
// in eager mode each weight is used once per forward pass anyway.
class AutocastGuard {
 public:
  AutocastGuard(Amp amp, const c10::Device& device);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  c10::DeviceType type_;
  bool was_enabled_ = false, was_cache_enabled_ = true;
  c10::ScalarType was_dtype_;
};

// Converts every 4-D parameter and buffer of `module` (convolution weights) to channels-last in
// place; the parameters stay the same objects, so optimisers built on them keep working.
void to_channels_last(torch::nn::Module& module);

// `images` in the layout the model expects.
torch::Tensor model_input(const torch::Tensor& images, bool channels_last);

}  // namespace resnet
