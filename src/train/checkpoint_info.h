// checkpoint.json, the description train writes beside checkpoint.pth: architecture, class names,
// input side, accuracy and epoch. Its reader is apart from checkpoint.h's so that it builds without
// the models (fuzz/fuzz_checkpoint_json.cpp feeds it arbitrary text).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/test_crop.h"

namespace resnet {

struct BestModelInfo {
  std::string arch;
  std::vector<std::string> classes;
  int64_t image_size = 224;
  // The test transform's centre crop the model was tested with (data/transforms.h)
  double test_crop_pct = kTestCropPct;
  double accuracy = 0;
  int64_t epoch = 0;
  // train's --holdout: N training images held out (0: none); -1 where not recorded (checkpoints
  // from before 2026-12-02, --weights)
  int64_t holdout = -1;
};

// checkpoint.json beside `checkpoint_path` (file.pth -> file.json).
std::string best_model_info_path(const std::string& checkpoint_path);

// The description in `text`, read from `path` (named in errors): InputError unless it is a JSON
// object with "arch" (a string), "classes" (1 to 100,000 strings) and, where present, "image_size"
// (an integer from 1 to 65,536), "test_crop_pct" (a number above 0, at most 1), "accuracy" (a
// number), "epoch" and "holdout" (integers, not negative).
BestModelInfo parse_best_model_info(const std::string& text, const std::string& path);

// Reads checkpoint.json beside `checkpoint_path`; InputError if absent or malformed.
BestModelInfo read_best_model_info(const std::string& checkpoint_path);

}  // namespace resnet
