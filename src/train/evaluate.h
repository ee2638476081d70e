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

// The whole split through `step` (its precision, memory format and graphs). With a `group`, each
// process evaluates its loader's shard and the counts and losses are summed over the group: every
// process gets the result of the whole split. With `flip`, test-time augmentation: the logits are
// the mean of the image's and its horizontal mirror's.
EvalResult evaluate(EvalStep& step, Loader& loader, Group* group = nullptr, bool flip = false);
// The same in fp32, eager, NCHW.
EvalResult evaluate(Classifier& model, Loader& loader);

// The sample's block: "Test Error: \n Accuracy: 28.6%, Avg loss: 1.862064 \n"
std::string format_test_error(const EvalResult& result);

// The confusion matrix as a table for the terminal (rows: the true class, by number and name;
// columns: the answer, by number) and as CSV (a header of class names, one row per true class).
std::string format_confusion(const EvalResult& result, const std::vector<std::string>& classes);
std::string confusion_csv(const EvalResult& result, const std::vector<std::string>& classes);

}  // namespace resnet
