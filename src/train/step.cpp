#include "train/step.h"

#include <cmath>

#include <ATen/ops/_amp_foreach_non_finite_check_and_unscale.h>
#include <ATen/ops/_amp_update_scale.h>
#include <torch/nn/functional/loss.h>

#include <ATen/Context.h>

#include "core/error.h"

namespace resnet {

namespace {

std::string graphs_unavailable(const StepOptions& o, const c10::Device& device) {
  if (!o.cuda_graphs) return "off";
  if (!cuda_graphs_supported(device)) return device.is_cuda() ? "this build has no CUDA" : "not on the CPU";
  return "";
}

// cuDNN autotuning off for the guard's lifetime. Autotuning a new batch shape costs seconds (14.5 s
// measured for the last partial batch of a CIFAR-10 epoch on an H100: every convolution is timed
// with each candidate kernel, some compiled at run time), paid back only by a shape that comes
// often. A batch whose size differs from the first one (the last partial batch of an epoch)
// takes cuDNN's heuristic choice instead.
class NoAutotuning {
 public:
  explicit NoAutotuning(bool active) : was_(at::globalContext().benchmarkCuDNN()), active_(active) {
    if (active_) at::globalContext().setBenchmarkCuDNN(false);
  }
  ~NoAutotuning() {
    if (active_) at::globalContext().setBenchmarkCuDNN(was_);
  }
  NoAutotuning(const NoAutotuning&) = delete;
  NoAutotuning& operator=(const NoAutotuning&) = delete;

 private:
  bool was_, active_;
};

}  // namespace

StepOptions parse_step_options(const std::string& amp, const std::string& channels_last,
                               const std::string& cuda_graphs, const c10::Device& device, int64_t main_batch,
                               const std::string& fused) {
  if (cuda_graphs != "on" && cuda_graphs != "off" && cuda_graphs != "auto")
    throw UsageError("--cuda-graphs takes on or off (got '" + cuda_graphs + "')");
  if (cuda_graphs == "on" && !cuda_graphs_supported(device))
    throw UsageError("--cuda-graphs on needs a CUDA device (this run is on " + device.str() + ")");
  StepOptions o{parse_amp(amp, device), parse_channels_last(channels_last, device),
                cuda_graphs == "on" || (cuda_graphs == "auto" && cuda_graphs_supported(device)), main_batch};
  o.fused = parse_fused(fused, o, device);
  return o;
}

bool parse_fused(const std::string& fused, const StepOptions& step, const c10::Device& device) {
  if (fused != "on" && fused != "off" && fused != "auto")
    throw UsageError("--fused takes on or off (got '" + fused + "')");
  std::string missing;
  if (!device.is_cuda()) missing = "a CUDA device (this run is on " + device.str() + ")";
  else if (step.amp == Amp::kOff) missing = "--amp bf16 or fp16";
  else if (!step.channels_last) missing = "--channels-last on";
  if (fused == "on" && !missing.empty()) throw UsageError("--fused on needs " + missing);
  return fused != "off" && missing.empty();
}

LossScaler::LossScaler(const c10::Device& device) {
  const auto f = torch::TensorOptions().dtype(torch::kFloat).device(device);
  scale_ = torch::full({}, kInitialScale, f);
  growth_tracker_ = torch::zeros({}, f.dtype(torch::kInt));
  found_inf_ = torch::zeros({}, f);
  one_ = torch::ones({}, f);
}

void LossScaler::restore(double scale, int64_t growth_tracker) {
  torch::NoGradGuard no_grad;
  scale_.fill_(scale);
  growth_tracker_.fill_(growth_tracker);
}

void LossScaler::step(Sgd& optimizer) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads = optimizer.grads();
  found_inf_.zero_();
  // Only the check here (an inverse scale of one): the fused SGD kernel divides by the scale.
  at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf_, one_);
  optimizer.step(scale_, found_inf_);
  at::_amp_update_scale_(scale_, growth_tracker_, found_inf_, kGrowth, kBackoff, kGrowthInterval);
}

TrainStep::TrainStep(Classifier& model, Sgd& optimizer, StepOptions options, const c10::Device& device)
    : model_(model), optimizer_(optimizer), options_(options), device_(device) {
  if (options_.amp == Amp::kFp16) scaler_ = std::make_unique<LossScaler>(device);
  graph_off_reason_ = graphs_unavailable(options_, device_);
  fused_ = model_.set_fused(options_.fused) && options_.fused;
}

TrainStep::~TrainStep() = default;

torch::Tensor TrainStep::eager_step(const torch::Tensor& images, const torch::Tensor& labels) {
  optimizer_.zero_grad();
  torch::Tensor loss;
  {
    AutocastGuard autocast(options_.amp, device_);
    if (options_.mix.enabled()) {  // soft targets, label smoothing in them
      const MixedBatch mixed =
          mix_batch(images, labels, model_.num_classes(), options_.mix, options_.label_smoothing);
      loss = soft_cross_entropy(model_.forward(mixed.images), mixed.targets);
    } else {
      // Under autocast, cross-entropy runs in fp32 whatever the logits' precision.
      loss = torch::nn::functional::cross_entropy(
          model_.forward(images), labels,
          torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(options_.label_smoothing));
    }
  }
  if (sync_) sync_->before_backward();
  (scaler_ ? scaler_->scale(loss) : loss).backward();
  if (sync_) sync_->finish();
  torch::NoGradGuard no_grad;
  torch::Tensor grad_norm;  // the gradients' total L2 norm, where clipping or the skip needs it
  if (options_.clip_grad_norm > 0) {  // after the all-reduce: every process clips the same sum
    grad_norm = clip_grad_norm(optimizer_.grads(), options_.clip_grad_norm,
                               scaler_ ? scaler_->current_scale() : torch::Tensor());
  }
  if (options_.skip_nonfinite) {
    // fp16: overflowing gradients are the loss scaler's business (it skips and backs off), so only
    // the loss counts; otherwise a non-finite gradient (with a finite loss) skips the step too.
    skipped_ = torch::isfinite(loss.detach()).logical_not();
    if (!scaler_) {
      if (!grad_norm.defined()) grad_norm = grad_l2_norm(optimizer_.grads());
      skipped_ = skipped_.logical_or(torch::isfinite(grad_norm).logical_not());
    }
    skipped_ = skipped_.to(torch::kFloat);
  }
  if (scaler_) {
    scaler_->step(optimizer_);  // non-finite gradients skip the update there
  } else if (skipped_.defined() && device_.is_cuda()) {
    optimizer_.step(std::nullopt, skipped_);  // decided on the device: no sync
  } else if (!skipped_.defined() || skipped_.item<float>() == 0) {  // the CPU: reading it costs nothing
    optimizer_.step();
  }
  return loss.detach();
}

torch::Tensor TrainStep::run(const torch::Tensor& images, const torch::Tensor& labels, bool eager) {
  if (options_.main_batch == 0) options_.main_batch = images.size(0);
  const bool odd_size = images.size(0) != options_.main_batch;
  if (eager || odd_size || !graph_off_reason_.empty()) {
    NoAutotuning heuristics_only(odd_size);
    return eager_step(model_input(images, options_.channels_last), labels);
  }
  if (graph_ && static_images_.defined() && images.sizes() != static_images_.sizes()) {
    // Another image size (--progressive-resize: sizes only grow, each comes once): the old size's
    // graph and its memory pool go, and the new size warms up and is captured as the first was.
    drop_graph();
  }
  if (!graph_) {
    static_images_ = torch::empty_like(model_input(images, options_.channels_last));
    static_labels_ = torch::empty_like(labels);
    graph_ = std::make_unique<CudaGraph>(device_, kGraphWarmupSteps);
  }
  if (!images.is_same(static_images_)) static_images_.copy_(images);
  static_labels_.copy_(labels);
  try {
    // eager_step sets the gradients to none first: inside the capture they are then allocated
    // from the graph's pool, and every replay writes them at the same addresses.
    graph_->run([this] {
      static_loss_ = eager_step(static_images_, static_labels_);
      static_skipped_ = skipped_;
    });
    skipped_ = static_skipped_;  // an eager step of another batch size may have replaced it
  } catch (const std::exception& e) {
    graph_off_reason_ = std::string("capture failed: ") + e.what();
    drop_graph();
    return eager_step(model_input(images, options_.channels_last), labels);
  }
  return static_loss_;
}

bool TrainStep::set_mix(const MixOptions& mix) {
  if (mix == options_.mix) return false;
  options_.mix = mix;
  drop_graph();
  return true;
}

void TrainStep::drop_graph() {
  graph_.reset();
  static_images_ = static_labels_ = static_loss_ = static_skipped_ = torch::Tensor();
}

std::pair<double, int64_t> TrainStep::loss_scale_state() const {
  if (!scaler_) return {0.0, 0};
  return {scaler_->current_scale().item<double>(), scaler_->growth_tracker().item<int64_t>()};
}

void TrainStep::set_loss_scale_state(double scale, int64_t growth_tracker) {
  if (!scaler_ || scale <= 0) return;  // fp16 resumed from a run without a scale: the initial one
  scaler_->restore(scale, growth_tracker);
}

std::string TrainStep::fused_description() const {
  return fused_ ? model_.fused_description(options_.amp == Amp::kFp16, device_) : "";
}

std::string TrainStep::describe() const {
  const std::string fused = fused_ ? ", " + fused_description() : "";
  if (captured()) return "CUDA graph (batch " + std::to_string(static_images_.size(0)) + ")" + fused;
  if (!graph_off_reason_.empty()) return "eager (CUDA graphs " + graph_off_reason_ + ")" + fused;
  return "eager (CUDA graph after " + std::to_string(kGraphWarmupSteps) + " warm-up steps)" + fused;
}

EvalStep::EvalStep(Classifier& model, StepOptions options, const c10::Device& device)
    : model_(model), options_(options), device_(device) {
  if (!graphs_unavailable(options_, device_).empty()) options_.cuda_graphs = false;
}

EvalStep::~EvalStep() = default;

torch::Tensor EvalStep::forward(const torch::Tensor& images) {
  AutocastGuard autocast(options_.amp, device_);
  return model_.forward(images).to(torch::kFloat);
}

torch::Tensor EvalStep::logits(const torch::Tensor& images) {
  if (options_.main_batch == 0) options_.main_batch = images.size(0);
  const bool odd_size = images.size(0) != options_.main_batch;
  if (!options_.cuda_graphs || odd_size) {
    NoAutotuning heuristics_only(odd_size);
    return forward(model_input(images, options_.channels_last));
  }
  if (!graph_) {
    static_images_ = torch::empty_like(model_input(images, options_.channels_last));
    graph_ = std::make_unique<CudaGraph>(device_, kGraphWarmupSteps);
  }
  if (!images.is_same(static_images_)) static_images_.copy_(images);
  try {
    graph_->run([this] { static_logits_ = forward(static_images_); });
  } catch (const std::exception&) {
    options_.cuda_graphs = false;  // eager from now on; the training step reports capture failures
    graph_.reset();
    static_images_ = static_logits_ = torch::Tensor();
    return forward(model_input(images, options_.channels_last));
  }
  return static_logits_;
}

}  // namespace resnet
