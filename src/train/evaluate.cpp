#include "train/evaluate.h"

#include <torch/nn/functional/loss.h>

#include <cmath>
#include <cstdio>

namespace resnet {

EvalResult evaluate(Classifier& model, Loader& loader) {
  EvalStep step(model, StepOptions{}, loader.device());
  return evaluate(step, loader);
}

EvalResult evaluate(EvalStep& step, Loader& loader) {
  Classifier& model = step.model();
  const bool was_training = model.is_training();
  model.eval();
  torch::InferenceMode guard;
  const auto classes = static_cast<int64_t>(loader.source().classes().size());
  const int64_t k = std::min<int64_t>(5, model.num_classes());
  int64_t batches = 0;
  torch::Tensor loss_sum, correct1, correct5, hits, counts;  // summed on the device: no sync per batch
  loader.start_epoch(0);
  while (auto batch = loader.next(step.input_buffer())) {
    if (step.captures_next()) loader.settle();
    const auto logits = step.logits(batch->images);
    const auto loss = torch::nn::functional::cross_entropy(logits, batch->labels).to(torch::kDouble);
    loss_sum = loss_sum.defined() ? loss_sum + loss : loss;
    ++batches;
    const auto topk = std::get<1>(logits.topk(k, 1));
    const auto match = topk.eq(batch->labels.unsqueeze(1));
    const auto top1 = match.select(1, 0).to(torch::kLong);
    const auto c1 = top1.sum(), c5 = match.any(1).sum();
    const auto class_hits = torch::zeros({classes}, top1.options()).index_add_(0, batch->labels, top1);
    const auto class_counts = torch::bincount(batch->labels, {}, classes);
    correct1 = correct1.defined() ? correct1 + c1 : c1;
    correct5 = correct5.defined() ? correct5 + c5 : c5;
    hits = hits.defined() ? hits + class_hits : class_hits;
    counts = counts.defined() ? counts + class_counts : class_counts;
  }
  if (was_training) model.train();
  EvalResult r;
  if (batches == 0) return r;
  r.loss = loss_sum.item<double>() / static_cast<double>(batches);
  r.images = counts.sum().item<int64_t>();
  r.accuracy = static_cast<double>(correct1.item<int64_t>()) / static_cast<double>(r.images);
  r.top5 = static_cast<double>(correct5.item<int64_t>()) / static_cast<double>(r.images);
  const auto h = hits.cpu(), c = counts.cpu();
  for (int64_t i = 0; i < classes; ++i) {
    const int64_t n = c[i].item<int64_t>();
    r.per_class_count.push_back(n);
    r.per_class.push_back(n > 0 ? static_cast<double>(h[i].item<int64_t>()) / static_cast<double>(n) : std::nan(""));
  }
  return r;
}

std::string format_test_error(const EvalResult& r) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "Test Error: \n Accuracy: %.1f%%, Avg loss: %8f \n", 100.0 * r.accuracy, r.loss);
  return buf;
}

}  // namespace resnet
