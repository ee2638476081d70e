// The training run of `resnet train`: the original sample's loop, with checkpoints that resume,
// a test after every epoch, metrics.csv, and an optional profile of a few steps.
//
// The pieces: TrainStep (src/train/step.h) runs one step, eager or replayed from a CUDA graph;
// train() below is the loop (data, steps, evaluation, checkpoints); a TrainReporter
// (src/train/report.h) hears what happens and decides what the user sees.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/test_crop.h"
#include "dist/env.h"
#include "train/mix.h"
#include "train/report.h"
#include "train/schedule.h"
#include "train/sgd.h"

namespace resnet {

struct TrainOptions {
  std::string model = "resnet50";
  std::string data;  // empty: data/cifar10, downloaded when missing
  std::string device = "auto";
  int64_t epochs = 50;
  int64_t batch_size = 32;
  // The sample's optimiser settings, kept in one place (SgdOptions) for train and bench.
  double learning_rate = SgdOptions{}.learning_rate;
  double momentum = SgdOptions{}.momentum;
  double weight_decay = SgdOptions{}.weight_decay;
  // The rate's schedule over the run (constant: the sample's) and the linear scaling rule:
  // lr * batch_size * processes / lr_scale_batch when lr_scale_batch > 0.
  ScheduleOptions schedule;
  int64_t lr_scale_batch = 0;
  double label_smoothing = 0;  // of the training loss (the test loss stays plain cross-entropy)
  MixOptions mix = {};         // Mixup / CutMix of the training batches (train/mix.h)
  // Mixup and CutMix after this many epochs no more (timm's --mixup-off-epoch): the last epochs
  // train on the images as they are; 0: mixed to the end.
  int64_t mixup_off_epoch = 0;
  double clip_grad_norm = 0;   // the gradients' total L2 norm at most this (0: no clipping)
  bool tta_flip = false;       // the per-epoch test averages each image's logits with its mirror's
  int64_t tta_shift = 0;       // and with those of its copies moved by this many pixels (TestViews)
  // Up to this many steps whose loss is not finite are skipped (weights unchanged) before a
  // non-finite loss stops the run; 0: the first one stops it.
  int64_t skip_nonfinite = 0;
  // The --recipe the settings came from (train/recipe.h; the command line applied it), said at the start.
  std::string recipe = "sample";
  std::vector<std::string> recipe_applied;  // the flags the recipe set (the command line gave none of them)
  bool nesterov = false;          // Nesterov momentum
  bool no_decay_bn_bias = false;  // no weight decay for batch norms and biases (1-D parameters)
  // Each residual block's last batch norm starts at zero weight (a fresh model only; models/classifier.h).
  bool zero_init_residual = false;
  // RandomResizedCrop's scale range (share of the image's area a training crop covers)
  std::vector<double> crop_scale{0.08, 1.0};
  // > 0: the training crop is instead the whole image shifted by up to this many source pixels
  // (data/transforms.h: CIFAR's pad-and-crop); crop_scale is then unused
  int64_t crop_pad = 0;
  // The test transform's centre crop: the share of the resized image kept (the sample's 224 of 256)
  double test_crop_pct = kTestCropPct;
  // --progressive-resize START,FRACTION (train/schedule.h's progressive_image_size); empty: off,
  // every epoch at image_size.
  std::vector<double> progressive_resize;
  // RandomErasing's probability after the normalisation (torchvision's scale and ratio; 0: off)
  double random_erase = 0;
  // TrivialAugmentWide on each training image, before the normalisation (data/augment.h)
  bool trivial_augment = false;
  // A moving average of the weights, updated every step with this decay (0: none); the per-epoch
  // test and checkpoint.pth then use it.
  double ema_decay = 0;
  // Images of the training split held out of training (data/dataset.h's hold_out) and tested on
  // after each epoch instead of the test split, for choosing settings; 0: none (the test split).
  int64_t holdout = 0;
  // Stop after the first epoch whose test top-1 reaches this percentage (0: train all --epochs).
  double target_accuracy = 0;
  // Test after every this many epochs and after the last (1: each epoch, the sample's way). The
  // test is a fifth of an epoch's time in a short recipe; untested epochs leave the test columns
  // of metrics.csv empty and keep the best model as it was.
  int64_t eval_every = 1;
  int64_t image_size = 224;
  uint64_t seed = 0;
  std::string amp = "auto";            // bf16 | fp16 | off | auto (bf16 on CUDA, off on the CPU)
  std::string channels_last = "auto";  // on | off | auto (on for CUDA)
  std::string cuda_graphs = "auto";    // on | off | auto (on for CUDA)
  std::string fused = "auto";          // on | off | auto (on where the fused kernels run)
  std::string checkpoint_dir = "checkpoints";
  // TensorBoard event files go here (rank 0); unset: the run's checkpoint folder, beside
  // metrics.csv; "": none.
  std::optional<std::string> logdir;
  bool save_model = false;
  bool restart = false;
  int64_t checkpoint_every = 0;  // steps between mid-epoch resume.pt writes; 0: at epoch ends only
  int64_t max_steps = 0;         // stop after this many steps in all (smoke tests); 0: no limit
  bool skip_bad_images = false;
  bool gpu_decode = false;  // streamed image folders' JPEGs decoded with nvJPEG (data/gpu_jpeg.h)
  bool trace = false;
  int64_t log_every = 100;  // batches between the sample's "loss:" lines
  // Fine-tuning: start from this state dict (torch.save, either format) instead of random weights;
  // a classifier for another number of classes is replaced by a fresh one.
  std::string weights;
  bool freeze_backbone = false;  // train the classifier alone (the rest keeps its weights)
  // Data-parallel training over several processes (dist/env.h; the CLI reads it from the
  // launcher's variables): each reads its shard with batch_size images a step, gradients are
  // averaged, only rank 0 reports and writes files.
  DistEnv dist;
  bool sync_bn = false;           // batch-norm statistics over all processes' batches
  int64_t dist_timeout_s = 600;   // a collective that waits longer fails the job
};

// UsageError naming the flag for a value the run cannot use.
void validate(const TrainOptions& options);

nlohmann::json to_json(const TrainOptions& options);

// Runs (or resumes) training, telling `reporter` what happens. Returns the best test accuracy.
// Throws Interrupted after request_stop.
double train(const TrainOptions& options, TrainReporter& reporter);

// Asks a running train() to stop at the next step boundary (one process: after the step in
// flight; several: at the next `loss:` line's step, which they agree on) with resume.pt written.
// Safe to call from a signal handler (an atomic store).
void request_stop(int signal_number);

// What train() throws after request_stop, once resume.pt holds the run; its message (how to
// resume) is empty on processes other than rank 0.
class Interrupted : public std::runtime_error {
 public:
  Interrupted(int signal_number, const std::string& message) : std::runtime_error(message), signal(signal_number) {}
  int signal;
};

}  // namespace resnet
