// Evaluation on a test split: the sample's average loss (mean over batches of each batch's mean
// cross-entropy) and accuracy, plus top-5 accuracy and accuracy per class.
#pragma once

#include <string>
#include <vector>

#include "data/loader.h"
#include "dist/group.h"
#include "models/classifier.h"
#include "train/step.h"

namespace resnet {

struct EvalResult {
  double loss = 0;        // mean over batches, as the sample computes it
  double accuracy = 0;    // top-1, fraction
  double top5 = 0;        // fraction (top-k with k = min(5, classes))
  int64_t images = 0;
  std::vector<double> per_class;  // accuracy per class (NaN where a class has no test image)
  std::vector<int64_t> per_class_count;
  // confusion[t * classes + p]: images of class t whose top-1 answer was p (when the model has as
  // many classes as the split; empty otherwise)
  std::vector<int64_t> confusion;
};

// Test-time augmentation: each image's logits are the mean of its views' (`--tta-flip`,
// `--tta-shift`).
struct TestViews {
  bool flip = false;  // the image and its horizontal mirror
  // > 0: each of those also moved by `shift` pixels (of the network's input) left, right, up, down
  // and diagonally, the edge pixels repeated into the gap: 9 positions instead of 1
  int64_t shift = 0;
  int64_t count() const { return (flip ? 2 : 1) * (shift > 0 ? 9 : 1); }
};

// UsageError naming --tta-shift unless 0 <= views.shift < image_size.
void check_test_views(const TestViews& views, int64_t image_size);

// `images` (N, C, H, W) moved right by `dx` and down by `dy` pixels (negative: left, up), the edge
// rows and columns repeated into the gap (as --crop-pad pads). Keeps the device and dtype.
torch::Tensor shift_images(const torch::Tensor& images, int64_t dx, int64_t dy);

// The whole split through `step` (its precision, memory format and graphs). With a `group`, each
// process evaluates its loader's shard and the counts and losses are summed over the group: every
// process gets the result of the whole split. `views`: the logits averaged over each image's views.
EvalResult evaluate(EvalStep& step, Loader& loader, Group* group = nullptr, TestViews views = {});
// The same in fp32, eager, NCHW.
EvalResult evaluate(Classifier& model, Loader& loader);

// The sample's block: "Test Error: \n Accuracy: 28.6%, Avg loss: 1.862064 \n"
std::string format_test_error(const EvalResult& result);

// The confusion matrix as a table for the terminal (rows: the true class, by number and name;
// columns: the answer, by number) and as CSV (a header of class names, one row per true class).
std::string format_confusion(const EvalResult& result, const std::vector<std::string>& classes);
std::string confusion_csv(const EvalResult& result, const std::vector<std::string>& classes);

}  // namespace resnet
