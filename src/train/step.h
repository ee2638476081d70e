// One training step and one evaluation forward pass, as `train`, `test`, `predict` and `bench`
// all run them: what bench times is what train runs.
//
// TrainStep: forward under autocast (--amp), cross-entropy loss in fp32, backward, fused SGD;
// for fp16, a dynamic loss scale. With CUDA graphs on, the main batch size (StepOptions) is the
// graphed one: its first kGraphWarmupSteps steps run eagerly on the capture stream, the next one is
// captured and replayed, and every later batch of that size is a copy into the static input
// buffers and one replay. Other batch sizes (the last partial batch of an epoch) run eagerly,
// with cuDNN's heuristic kernels rather than autotuned ones (autotuning a shape costs seconds).
// Nothing in a step waits for the GPU: the loss comes back as a device scalar.
//
// EvalStep: logits of a batch in eval mode under InferenceMode, with the same precision, memory
// format and graphs.
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>
#include <utility>

#include "models/classifier.h"
#include "train/cuda_graph.h"
#include "train/mix.h"
#include "train/precision.h"
#include "train/sgd.h"

namespace resnet {

// Eager steps before capture: cuDNN autotunes each convolution on its first call, and the
// allocator and library workspaces settle; PyTorch's examples warm up for 3 as well.
constexpr int kGraphWarmupSteps = 3;

struct StepOptions {
  Amp amp = Amp::kOff;
  bool channels_last = false;
  bool cuda_graphs = false;
  // The batch size to graph and autotune (the loader's --batch-size); 0: the first one seen.
  int64_t main_batch = 0;
  // Our fused kernels for the model's training step (Classifier::set_fused; ResNets: batch norm +
  // residual add + ReLU), where the model has them.
  bool fused = false;
  // Cross-entropy against (1 - e) * one-hot + e / classes (torch's label_smoothing); 0: the sample's.
  double label_smoothing = 0;
  // Mixup / CutMix of each training batch (train/mix.h); none by default.
  MixOptions mix = {};
  // The gradients' total L2 norm clipped to this before the optimiser step (0: no clipping).
  double clip_grad_norm = 0;
  // A step whose loss is not finite (NaN, inf) leaves the weights and momentum as they were (the
  // decision on the device: no sync). fp16's loss scaling skips such steps anyway.
  bool skip_nonfinite = false;
};

// StepOptions from the flags' spellings: --amp (bf16, fp16, off, auto), --channels-last and
// --cuda-graphs (on, off, auto: on for CUDA). UsageError naming the flag for anything else, and
// for --cuda-graphs on where graphs cannot run.
// `fused` is --fused's spelling (parse_fused); off for the commands that do not train.
StepOptions parse_step_options(const std::string& amp, const std::string& channels_last,
                               const std::string& cuda_graphs, const c10::Device& device, int64_t main_batch = 0,
                               const std::string& fused = "off");

// --fused: on, off, or auto (on where the kernels run: CUDA with --amp bf16/fp16 and
// channels-last). UsageError naming the flag for anything else, and for on where they cannot run.
bool parse_fused(const std::string& fused, const StepOptions& step, const c10::Device& device);

// Dynamic loss scaling for fp16, as torch.amp.GradScaler: the loss is multiplied by the scale
// before backward; a step whose gradients hold inf or NaN is skipped and the scale halved; after
// kGrowthInterval clean steps it doubles. All on the device, so it works inside a CUDA graph.
class LossScaler {
 public:
  static constexpr double kInitialScale = 65536.0, kGrowth = 2.0, kBackoff = 0.5;
  static constexpr int64_t kGrowthInterval = 2000;

  explicit LossScaler(const c10::Device& device);
  torch::Tensor scale(const torch::Tensor& loss) const { return loss * scale_; }
  // Checks the gradients for inf/NaN (into found_inf), steps (unscaling inside the kernel) and
  // updates the scale.
  void step(Sgd& optimizer);
  const torch::Tensor& current_scale() const { return scale_; }
  const torch::Tensor& growth_tracker() const { return growth_tracker_; }
  // Sets both in place (a captured graph holds their addresses).
  void restore(double scale, int64_t growth_tracker);

 private:
  torch::Tensor scale_, growth_tracker_, found_inf_, one_;
};

// Averages gradients across the processes of a distributed job (dist/reducer.h). TrainStep
// calls before_backward() before each backward pass and finish() after it, before the optimiser
// (and fp16's inf check) reads the gradients.
class GradientSync {
 public:
  virtual ~GradientSync() = default;
  virtual void before_backward() = 0;
  virtual void finish() = 0;
};

class TrainStep {
 public:
  TrainStep(Classifier& model, Sgd& optimizer, StepOptions options, const c10::Device& device);
  ~TrainStep();

  // One optimisation step on a batch; returns the batch's mean loss as a float scalar on the
  // device, valid until the next call. `eager` forces the eager path (for profiling).
  torch::Tensor run(const torch::Tensor& images, const torch::Tensor& labels, bool eager = false);

  // "CUDA graph (batch 32)" once captured; "eager" otherwise, with the reason graphs are off;
  // ", fused batch norm" with the model's fused kernels.
  std::string describe() const;
  // Whether the model runs its fused kernels (--fused and the model has them).
  bool fused() const { return fused_; }
  // "fused batch norm", "fused convolutions + batch norm (cuDNN graphs)"; empty where not fused.
  std::string fused_description() const;
  const StepOptions& options() const { return options_; }
  // Whether the next run() of the main batch size captures the graph (callers quiet other GPU
  // work first, such as a loader's prefetch).
  bool captures_next() const { return graph_ && graph_->captures_next(); }
  // Whether steps of the main batch size replay a captured graph.
  bool captured() const { return graph_ && graph_->captured(); }
  // Mixup / CutMix from the next step on (--mixup-off-epoch turns them off); a captured graph,
  // which holds the old mixing, is dropped and captured again. Returns whether anything changed.
  bool set_mix(const MixOptions& mix);
  // The graph's static input buffer (float, the model's memory format) once it exists, for the
  // loader to write the next batch into (Loader::next); undefined before the first graphed step
  // and when graphs are off. run() with this tensor copies nothing.
  const torch::Tensor& input_buffer() const { return static_images_; }
  // Gradients averaged across processes by `sync` (null: none) in every later step. Eager steps
  // only: the constructor's options must have CUDA graphs off.
  void set_gradient_sync(GradientSync* sync) { sync_ = sync; }
  // With skip_nonfinite: a float scalar on the device, 1 where the last step's update was skipped
  // (its loss, or without fp16 its gradients, not finite), else 0; valid until the next call.
  // Undefined without skip_nonfinite.
  const torch::Tensor& skipped() const { return skipped_; }
  // fp16's loss scale and its growth tracker (for resume.pt); {0, 0} without loss scaling.
  std::pair<double, int64_t> loss_scale_state() const;
  void set_loss_scale_state(double scale, int64_t growth_tracker);

 private:
  torch::Tensor eager_step(const torch::Tensor& images, const torch::Tensor& labels);
  // The captured graph and its static tensors released (a capture that failed, a new image size).
  void drop_graph();

  Classifier& model_;
  Sgd& optimizer_;
  StepOptions options_;
  c10::Device device_;
  std::unique_ptr<LossScaler> scaler_;
  std::unique_ptr<CudaGraph> graph_;
  torch::Tensor static_images_, static_labels_, static_loss_;
  torch::Tensor skipped_, static_skipped_;  // see skipped(); a graph replay rewrites the static one
  std::string graph_off_reason_;
  bool fused_ = false;
  GradientSync* sync_ = nullptr;
};

class EvalStep {
 public:
  EvalStep(Classifier& model, StepOptions options, const c10::Device& device);
  ~EvalStep();
  // Logits [B, classes] (fp32) of a batch; valid until the next call. The model must be in eval
  // mode and the caller under InferenceMode.
  torch::Tensor logits(const torch::Tensor& images);
  Classifier& model() { return model_; }
  bool captures_next() const { return graph_ && graph_->captures_next(); }
  bool captured() const { return graph_ && graph_->captured(); }
  // Whether a graph is still to be warmed up and captured, by the next call or a later one (the
  // first call makes the graph; with several views an image, one batch may warm up and capture it).
  bool capture_ahead() const { return options_.cuda_graphs && !captured(); }
  // As TrainStep::input_buffer.
  const torch::Tensor& input_buffer() const { return static_images_; }

 private:
  torch::Tensor forward(const torch::Tensor& images);

  Classifier& model_;
  StepOptions options_;
  c10::Device device_;
  std::unique_ptr<CudaGraph> graph_;
  torch::Tensor static_images_, static_logits_;
};

}  // namespace resnet
