// Learning-rate schedules, per optimiser step: constant (the sample's), step, multi-step, cosine
// and one-cycle, after an optional linear warm-up; the base rate optionally scaled with the batch
// size (the linear scaling rule of Goyal et al. 2017).
//
// The rate of a step is a pure function of where the step is in the run — iteration
// i = epoch * steps_per_epoch + batch — so a resumed run (resume.pt keeps epoch and batch)
// gets exactly the rates of an unbroken one, also with another number of processes. The trainer
// writes each step's rate into the device tensor the SGD kernel reads (Sgd::set_learning_rate),
// so a step replayed from a CUDA graph follows it without re-capture.
//
// Formulas (i: iteration from 0, N = epochs * steps_per_epoch, W = warm-up iterations, lr the
// base rate):
//   warm-up, i < W:   lr * (s + (1 - s) * i / W)          s = warmup_start_factor
//   constant:         lr
//   step:             lr * gamma ^ floor(i / (step_size * steps_per_epoch))
//   multistep:        lr * gamma ^ (number of milestones m with m * steps_per_epoch <= i)
//   cosine:           min_lr + (lr - min_lr) * (1 + cos(pi * (i - W) / (N - W))) / 2
//   onecycle:         torch.optim.lr_scheduler.OneCycleLR (cosine annealing, two phases) over N
//                     steps with max_lr = lr: from lr / div_factor up to lr over pct_start of the
//                     run, then down to lr / div_factor / final_div_factor (its own warm-up; no
//                     other warm-up with it). Momentum is not cycled (cycle_momentum=False).
// Warm-up does not shift step/multistep's epochs: they count from the run's start (torch's
// SequentialLR would restart their count after the warm-up).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace resnet {

struct ScheduleOptions {
  std::string kind = "constant";  // constant | step | multistep | cosine | onecycle
  double warmup_epochs = 0;       // linear warm-up (may be fractional)
  double warmup_start_factor = 0.1;
  int64_t step_size = 30;            // step: epochs between decays
  std::vector<int64_t> milestones;   // multistep: epochs at which the rate is multiplied by gamma
  double gamma = 0.1;                // step, multistep
  double min_lr = 0;                 // cosine: the rate it ends at
  double pct_start = 0.3;            // onecycle: share of the run spent rising
  double div_factor = 25;            // onecycle: initial rate = lr / div_factor
  double final_div_factor = 1e4;     // onecycle: final rate = initial / final_div_factor
};

// UsageError naming the flag for settings no schedule can use (an unknown kind, negative epochs,
// unsorted milestones, a warm-up with onecycle ...).
void check_schedule(const ScheduleOptions& options);

// The settings a resumed run must share (only those of its kind; with the run's epochs where the
// schedule's shape depends on them: cosine, onecycle).
nlohmann::json to_json(const ScheduleOptions& options, int64_t epochs);

class LrSchedule {
 public:
  LrSchedule(ScheduleOptions options, double base_lr, int64_t steps_per_epoch, int64_t epochs);
  // The rate for iteration i (0-based over the whole run).
  double at(int64_t i) const;
  // Whether the rate ever changes (constant without warm-up: never).
  bool varies() const;

 private:
  ScheduleOptions o_;
  double base_;
  int64_t steps_per_epoch_, total_, warmup_;
};

// The base rate with the linear scaling rule: lr * global_batch / reference_batch (reference 0:
// no scaling).
double scaled_learning_rate(double lr, int64_t global_batch, int64_t reference_batch);

// --progressive-resize START,FRACTION: the training images' size in epoch `epoch` (0-based) of
// `epochs`. START pixels at first, then larger in steps of 32 pixels, evenly spaced over the first
// FRACTION of the epochs, to `full` (--image-size), which the rest of the run and every test use.
// Small images early cost less (a ResNet's work goes with the pixels), and the last epochs at full
// size adapt the model to the size it is tested at (progressive resizing, as fast.ai's and
// MosaicML's ImageNet recipes). Sizes only grow, so a run meets each at most once (a CUDA graph
// and cuDNN's autotuning each). `full` for every epoch where START is 0.
int64_t progressive_image_size(int64_t start, double fraction, int64_t full, int64_t epoch, int64_t epochs);

}  // namespace resnet
