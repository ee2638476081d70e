// Using a trained model: load checkpoint.pth (with checkpoint.json beside it for the
// architecture, class names and image size), evaluate it on a test split (`resnet test`), and the
// top-k classes of image files (`resnet predict`). Both run the model through EvalStep, with the
// precision, memory format and graphs that training uses.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

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
  int64_t batch_size = 32;
  StepOptions step;
  std::string trace_path;  // non-empty: profile a second pass and write a Chrome trace there
};

struct TestReport {
  EvalResult result;
  std::string trace_table;  // with trace_path: the profiler's table
};

// `resnet test`: the test split of settings.data through the model. InputError when the split's
// classes differ from the model's.
TestReport test_model(TrainedModel& trained, const TestSettings& settings, const c10::Device& device);

}  // namespace resnet
