// Using a trained model: load checkpoint.pth (with checkpoint.json beside it for the
// architecture, class names and image size), evaluate it on a test split (`resnet test`), and the
// top-k classes of image files (`resnet predict`). Both run the model through EvalStep, with the
// precision, memory format and graphs that training uses.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "io/torch_save.h"
#include "models/classifier.h"
#include "train/checkpoint.h"
#include "train/evaluate.h"
#include "train/step.h"

namespace resnet {

struct TrainedModel {
  std::shared_ptr<Classifier> model;  // in eval mode, on the device
  BestModelInfo info;
};

TrainedModel load_trained_model(const std::string& checkpoint_path, const c10::Device& device);

// Weights saved by Python (torch.save of a state dict in either format, such as torchvision's
// published ImageNet weights) without our checkpoint.json: the number of classes comes from the
// classifier's shape (fc.weight, or classifier.1.weight for SqueezeNets), the architecture is
// `arch` or, when empty, the one registered architecture whose names and shapes the weights
// match; class names come from `classes_file` (one a line), else ImageNet's for 1,000 classes,
// else "0", "1", .... `image_size`: the input side (torchvision's weights expect 224). InputError
// naming the file when no architecture or more than one matches, or the class list's length
// differs.
TrainedModel load_weights(const std::string& path, const std::string& arch, const std::string& classes_file,
                          int64_t image_size, const c10::Device& device);

// The state dict at `path` (--weights); InputError naming the flag when the file is missing.
NamedTensors read_weights(const std::string& path);

// The one registered architecture whose names and shapes the state dict at `path` has;
// InputError naming the file when none or several do.
std::string architecture_of(const std::string& path);

// Class names, one a line (surrounding spaces and blank lines ignored); InputError naming the file
// when it is missing or holds another number of names than `expected`.
std::vector<std::string> read_class_names(const std::string& path, int64_t expected);

struct Prediction {
  std::string file;
  std::vector<std::pair<std::string, double>> top;  // class name, probability; best first
};

// Decodes each file, applies the test transform at the model's image size, and returns the
// `k` most probable classes. A file that does not decode is an InputError naming it.
std::vector<Prediction> predict_files(const TrainedModel& trained, const std::vector<std::string>& files, int64_t k,
                                      const c10::Device& device, StepOptions step = {});

struct TestSettings {
  std::string data;  // CIFAR-10 binary folder or image folder; its test split is used
  // > 0: instead, the training split's images that `train --holdout N` held out (hold_out)
  int64_t holdout = 0;
  int64_t batch_size = 32;
  StepOptions step;
  std::string trace_path;  // non-empty: profile a second pass and write a Chrome trace there
  TestViews views;         // test-time augmentation
  // Weights without class names of their own (--weights without --classes): take the split's
  // names, when their number matches the model's.
  bool classes_from_data = false;
};

struct TestReport {
  EvalResult result;
  std::string trace_table;  // with trace_path: the profiler's table
};

// `resnet test`: the test split of settings.data (or its held-out training images) through the
// model. InputError when the split's classes differ from the model's.
TestReport test_model(TrainedModel& trained, const TestSettings& settings, const c10::Device& device);

}  // namespace resnet
