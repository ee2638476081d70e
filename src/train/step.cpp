#include "train/step.h"

#include <ATen/ops/_amp_foreach_non_finite_check_and_unscale.h>
#include <ATen/ops/_amp_update_scale.h>
#include <torch/nn/functional/loss.h>

#include "core/error.h"

namespace resnet {

namespace {

std::string graphs_unavailable(const StepOptions& o, const c10::Device& device) {
  if (!o.cuda_graphs) return "off";
  if (!cuda_graphs_supported(device)) return device.is_cuda() ? "this build has no CUDA" : "not on the CPU";
  return "";
}

}  // namespace

LossScaler::LossScaler(const c10::Device& device) {
  const auto f = torch::TensorOptions().dtype(torch::kFloat).device(device);
  scale_ = torch::full({}, kInitialScale, f);
  growth_tracker_ = torch::zeros({}, f.dtype(torch::kInt));
  found_inf_ = torch::zeros({}, f);
  one_ = torch::ones({}, f);
}

void LossScaler::step(Sgd& optimizer) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (const auto& p : optimizer.params())
    if (p.grad().defined()) grads.push_back(p.grad());
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
}

TrainStep::~TrainStep() = default;

torch::Tensor TrainStep::eager_step(const torch::Tensor& images, const torch::Tensor& labels) {
  optimizer_.zero_grad();
  torch::Tensor loss;
  {
    AutocastGuard autocast(options_.amp, device_);
    // Under autocast, cross-entropy runs in fp32 whatever the logits' precision.
    loss = torch::nn::functional::cross_entropy(model_.forward(images), labels);
  }
  if (scaler_) {
    scaler_->scale(loss).backward();
    scaler_->step(optimizer_);
  } else {
    loss.backward();
    optimizer_.step();
  }
  return loss.detach();
}

torch::Tensor TrainStep::run(const torch::Tensor& images, const torch::Tensor& labels, bool eager) {
  if (eager || !graph_off_reason_.empty() || (static_images_.defined() && images.size(0) != static_images_.size(0)))
    return eager_step(model_input(images, options_.channels_last), labels);
  if (!static_images_.defined()) {
    static_images_ = torch::empty_like(model_input(images, options_.channels_last));
    static_labels_ = torch::empty_like(labels);
    graph_ = std::make_unique<CudaGraph>(device_);
  }
  static_images_.copy_(images);
  static_labels_.copy_(labels);
  auto body = [this] { static_loss_ = eager_step(static_images_, static_labels_); };
  if (warmup_done_ < kGraphWarmupSteps) {
    graph_->warmup(body);
    ++warmup_done_;
    return static_loss_;
  }
  if (!graph_->captured()) {
    try {
      // Gradients must be allocated inside the capture (from the graph's pool), so that every
      // replay writes them at the same addresses.
      optimizer_.zero_grad();
      graph_->capture(body);
    } catch (const std::exception& e) {
      graph_off_reason_ = std::string("capture failed: ") + e.what();
      graph_.reset();
      static_images_ = static_labels_ = static_loss_ = torch::Tensor();
      return eager_step(model_input(images, options_.channels_last), labels);
    }
  }
  graph_->replay();
  return static_loss_;
}

std::string TrainStep::describe() const {
  if (graph_ && graph_->captured()) return "CUDA graph (batch " + std::to_string(static_images_.size(0)) + ")";
  if (!graph_off_reason_.empty()) return "eager (CUDA graphs " + graph_off_reason_ + ")";
  return "eager (CUDA graph after " + std::to_string(kGraphWarmupSteps) + " warm-up steps)";
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
  if (!options_.cuda_graphs || (static_images_.defined() && images.size(0) != static_images_.size(0)))
    return forward(model_input(images, options_.channels_last));
  if (!static_images_.defined()) {
    static_images_ = torch::empty_like(model_input(images, options_.channels_last));
    graph_ = std::make_unique<CudaGraph>(device_);
  }
  static_images_.copy_(images);
  auto body = [this] { static_logits_ = forward(static_images_); };
  if (warmup_done_ < kGraphWarmupSteps) {
    graph_->warmup(body);
    ++warmup_done_;
    return static_logits_;
  }
  if (!graph_->captured()) {
    try {
      graph_->capture(body);
    } catch (const std::exception&) {
      options_.cuda_graphs = false;  // eager from now on; the training step reports capture failures
      graph_.reset();
      static_images_ = static_logits_ = torch::Tensor();
      return forward(model_input(images, options_.channels_last));
    }
  }
  graph_->replay();
  return static_logits_;
}

}  // namespace resnet
