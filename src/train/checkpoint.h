// Checkpoints of a training run, in checkpoints/<model>/ (see ../shared/SPEC.md):
//
//   checkpoint.pth   the best model so far: a state dict with torchvision's names, in Python's
//                    torch.save format (torchvision.models.<arch>(num_classes=K)
//                    .load_state_dict(torch.load(path)) works);
//   checkpoint.json  beside it: architecture, classes and their names, image size, accuracy;
//   resume.pt        everything needed to continue exactly: model, momentum buffers, epoch,
//                    batch within the epoch, step, best accuracy, fp16's loss scale, RNG states,
//                    the run's settings and a format version (a torch.save dict, so Python can inspect it too).
// Every file is written atomically (temporary file, fsync, rename): a crash at any moment
// leaves the previous complete file or the new one.
#pragma once

#include <ATen/core/ivalue.h>
#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "io/torch_save.h"
#include "models/classifier.h"
#include "train/checkpoint_info.h"
#include "train/sgd.h"

namespace resnet {

constexpr int64_t kResumeFormatVersion = 1;

struct TrainState {
  int64_t epoch = 0;  // epochs completed
  int64_t batch = 0;  // batches done within the epoch after those (mid-epoch checkpoints)
  int64_t step = 0;   // optimiser steps in all
  double best_accuracy = -1;
  double epoch_loss_sum = 0;  // sum of the batch losses of the epoch so far (for metrics.csv)
  double loss_scale = 0;        // fp16's dynamic loss scale (0: none)
  int64_t loss_scale_growth = 0;  // clean steps since the scale last changed
  // --skip-nonfinite: steps whose loss was not finite (their updates skipped), in the epoch so far
  // (left out of its mean loss) and in the whole run (against the flag's budget)
  int64_t epoch_skipped = 0, skipped_steps = 0;
  // Wall-clock seconds the run has taken up to this state, over all its processes' lives (resumes
  // add theirs): start-up, data, training and tests (metrics.csv's elapsed_s).
  double elapsed_s = 0;
  nlohmann::json settings;  // the run's settings (model, batch size, ...)
  std::vector<std::string> classes;
};

// `extra`: more tensors to keep under their own names (the weights' moving average, "ema.*").
void save_resume(const std::string& path, const TrainState& state, const Classifier& model, Sgd& optimizer,
                 const NamedTensors& extra = {});
// save_resume in two halves: the tensors are copied off the device now, and the returned job
// writes the file, on any thread (io/background_writer.h), while training changes them.
std::function<void()> resume_writer(const std::string& path, const TrainState& state, const Classifier& model,
                                    Sgd& optimizer, const NamedTensors& extra = {});

// resume.pt, read once: the run's progress and settings (state(), without a model), then the
// model's weights, the momentum buffers and the RNG states (restore()). InputError naming the file
// when it is unreadable, of another format version, or for another architecture or number of
// classes.
class ResumeFile {
 public:
  explicit ResumeFile(const std::string& path);
  TrainState state() const;
  TrainState restore(Classifier& model, Sgd& optimizer) const;
  // The tensors whose names start with `prefix`, the prefix taken off (save_resume's `extra`).
  NamedTensors tensors_with_prefix(const std::string& prefix) const;

 private:
  const c10::IValue& need(const std::string& key) const;

  std::string path_;
  std::vector<std::pair<std::string, c10::IValue>> entries_;
  std::map<std::string, c10::IValue> values_;
};

// ResumeFile(path).restore(model, optimizer).
TrainState load_resume(const std::string& path, Classifier& model, Sgd& optimizer);

// checkpoint.pth and checkpoint.json (train/checkpoint_info.h) in `dir`; best_model_writer: the
// same in two halves, as resume_writer.
void save_best_model(const std::string& dir, const Classifier& model, const BestModelInfo& info);
std::function<void()> best_model_writer(const std::string& dir, const Classifier& model, const BestModelInfo& info);

}  // namespace resnet
