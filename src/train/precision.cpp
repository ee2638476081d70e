#include "train/precision.h"

#include <ATen/autocast_mode.h>

#include "core/error.h"

namespace resnet {

Amp parse_amp(const std::string& spec, const c10::Device& device) {
  if (spec == "auto") return device.is_cuda() ? Amp::kBf16 : Amp::kOff;
  if (spec == "off" || spec == "fp32") return Amp::kOff;
  if (spec == "bf16") return Amp::kBf16;
  if (spec == "fp16") {
    if (!device.is_cuda()) throw UsageError("--amp fp16 needs a CUDA device; on the CPU use --amp bf16 or off");
    return Amp::kFp16;
  }
  throw UsageError("--amp takes bf16, fp16 or off (got '" + spec + "')");
}

std::string to_string(Amp amp) {
  switch (amp) {
    case Amp::kBf16: return "bf16";
    case Amp::kFp16: return "fp16";
    case Amp::kOff: break;
  }
  return "fp32";
}

bool parse_channels_last(const std::string& spec, const c10::Device& device) {
  if (spec == "auto") return device.is_cuda();
  if (spec == "on") return true;
  if (spec == "off") return false;
  throw UsageError("--channels-last takes on or off (got '" + spec + "')");
}

AutocastGuard::AutocastGuard(Amp amp, const c10::Device& device) : type_(device.type()) {
  if (amp == Amp::kOff) return;
  active_ = true;
  was_enabled_ = at::autocast::is_autocast_enabled(type_);
  was_dtype_ = at::autocast::get_autocast_dtype(type_);
  was_cache_enabled_ = at::autocast::is_autocast_cache_enabled();
  at::autocast::set_autocast_enabled(type_, true);
  at::autocast::set_autocast_dtype(type_, amp == Amp::kFp16 ? at::kHalf : at::kBFloat16);
  at::autocast::set_autocast_cache_enabled(false);
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  at::autocast::set_autocast_enabled(type_, was_enabled_);
  at::autocast::set_autocast_dtype(type_, was_dtype_);
  at::autocast::set_autocast_cache_enabled(was_cache_enabled_);
}

void to_channels_last(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters())
    if (p.dim() == 4) p.set_data(p.data().contiguous(at::MemoryFormat::ChannelsLast));
  for (auto& b : module.buffers())
    if (b.dim() == 4) b.set_data(b.data().contiguous(at::MemoryFormat::ChannelsLast));
}

torch::Tensor model_input(const torch::Tensor& images, bool channels_last) {
  return channels_last ? images.contiguous(at::MemoryFormat::ChannelsLast) : images;
}

}  // namespace resnet
