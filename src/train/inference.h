// Using a trained model: load checkpoint.pth (with checkpoint.json beside it for the
// architecture, class names and image size), and the top-k classes of image files.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "models/classifier.h"
#include "train/checkpoint.h"

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
                                      const c10::Device& device);

}  // namespace resnet
