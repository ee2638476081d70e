#include "train/evaluate.h"

#include <torch/nn/functional/loss.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iomanip>
#include <numeric>
#include <sstream>
#include <utility>
#include <vector>

#include "core/error.h"

namespace resnet {

EvalResult evaluate(Classifier& model, Loader& loader) {
  EvalStep step(model, StepOptions{}, loader.device());
  return evaluate(step, loader);
}

void check_test_views(const TestViews& views, int64_t image_size) {
  require_at_least(views.shift, 0, "--tta-shift");
  if (views.shift >= image_size)
    throw UsageError("--tta-shift must be below the image size (" + std::to_string(image_size) + " px; got " +
                     std::to_string(views.shift) + ")");
}

torch::Tensor shift_images(const torch::Tensor& images, int64_t dx, int64_t dy) {
  // Row y of the result is row clamp(y - dy) of the input (columns likewise): a gather with the
  // indices clamped to the edge.
  auto moved = [&](const torch::Tensor& x, int64_t dim, int64_t by) {
    if (by == 0) return x;
    const int64_t n = x.size(dim);
    const auto index = (torch::arange(n, torch::TensorOptions().dtype(torch::kLong).device(x.device())) - by).clamp(0, n - 1);
    return x.index_select(dim, index);
  };
  return moved(moved(images, 2, dy), 3, dx);
}

// The mean of `step`'s logits over the views of `images`.
static torch::Tensor view_logits(EvalStep& step, const torch::Tensor& images, const TestViews& views) {
  if (views.count() == 1) return step.logits(images);
  const int64_t s = views.shift;
  std::vector<std::pair<int64_t, int64_t>> positions = {{0, 0}};
  if (s > 0)
    for (int64_t dy : {-s, int64_t{0}, s})
      for (int64_t dx : {-s, int64_t{0}, s})
        if (dx != 0 || dy != 0) positions.emplace_back(dx, dy);
  // `images` may be the step's own input buffer, which each pass overwrites with its view
  const torch::Tensor original = images.clone();
  torch::Tensor sum;
  for (const auto& [dx, dy] : positions) {
    const auto moved = shift_images(original, dx, dy);
    for (bool mirror : {false, true}) {
      if (mirror && !views.flip) continue;
      // each pass may replay the same graph, whose output buffer is the last pass's: add, don't keep
      const auto logits = step.logits(mirror ? moved.flip({3}) : moved);
      sum = sum.defined() ? sum + logits : logits.clone();
    }
  }
  return sum / static_cast<double>(views.count());
}

EvalResult evaluate(EvalStep& step, Loader& loader, Group* group, TestViews views) {
  Classifier& model = step.model();
  const bool was_training = model.is_training();
  model.eval();
  torch::InferenceMode guard;
  const auto classes = static_cast<int64_t>(loader.source().classes().size());
  const int64_t answers = model.num_classes();
  const int64_t k = std::min<int64_t>(5, answers);
  // Summed on the device, no sync per batch: [loss sum, batches, top-5 hits, then the images of
  // each true class by its top-1 answer (classes x answers)], in fp64 (exact for counts); top-1
  // and the per-class figures come from that matrix.
  auto sums = torch::zeros({3 + classes * answers}, torch::TensorOptions().dtype(torch::kDouble).device(loader.device()));
  loader.start_epoch(0);
  while (auto batch = loader.next(step.input_buffer())) {
    if (step.capture_ahead()) loader.settle();  // no gathering while the graph is captured
    const torch::Tensor logits = view_logits(step, batch->images, views);
    const auto loss = torch::nn::functional::cross_entropy(logits, batch->labels).to(torch::kDouble);
    const auto topk = std::get<1>(logits.topk(k, 1));
    sums[0] += loss;
    sums[1] += 1;
    sums[2] += topk.eq(batch->labels.unsqueeze(1)).any(1).to(torch::kDouble).sum();
    sums.narrow(0, 3, classes * answers)
        .index_add_(0, batch->labels * answers + topk.select(1, 0),
                    torch::ones({batch->labels.size(0)}, sums.options()));
  }
  if (was_training) model.train();
  if (group) group->all_reduce(sums);
  const auto s = sums.cpu();
  const auto* v = s.data_ptr<double>();
  const double* matrix = v + 3;
  EvalResult r;
  if (v[1] == 0) return r;
  r.loss = v[0] / v[1];
  double images = 0, hits = 0;
  for (int64_t t = 0; t < classes; ++t) {
    const double n = std::accumulate(matrix + t * answers, matrix + (t + 1) * answers, 0.0);
    const double right = t < answers ? matrix[t * answers + t] : 0.0;
    images += n;
    hits += right;
    r.per_class_count.push_back(static_cast<int64_t>(n));
    r.per_class.push_back(n > 0 ? right / n : std::nan(""));
  }
  r.images = static_cast<int64_t>(images);
  r.accuracy = hits / images;
  r.top5 = v[2] / images;
  if (answers == classes)
    for (int64_t i = 0; i < classes * answers; ++i) r.confusion.push_back(static_cast<int64_t>(matrix[i]));
  return r;
}

std::string format_test_error(const EvalResult& r) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "Test Error: \n Accuracy: %.1f%%, Avg loss: %8f \n", 100.0 * r.accuracy, r.loss);
  return buf;
}

std::string format_confusion(const EvalResult& r, const std::vector<std::string>& classes) {
  const size_t n = classes.size();
  if (r.confusion.size() != n * n) return "";
  size_t name_width = 4;
  for (const auto& c : classes) name_width = std::max(name_width, c.size());
  int64_t most = 1;
  for (int64_t v : r.confusion) most = std::max(most, v);
  const int width = std::max<int>(3, static_cast<int>(std::to_string(most).size())) + 1;
  const int index_width = static_cast<int>(std::to_string(n - 1).size());
  std::ostringstream out;
  out << "Confusion matrix (rows: true class; columns: the model's answer, by number):\n";
  out << std::string(index_width + 3 + name_width, ' ');
  for (size_t p = 0; p < n; ++p) out << std::setw(width) << p;
  out << "\n";
  for (size_t t = 0; t < n; ++t) {
    out << "  " << std::setw(index_width) << t << " " << std::left << std::setw(static_cast<int>(name_width))
        << classes[t] << std::right;
    for (size_t p = 0; p < n; ++p) out << std::setw(width) << r.confusion[t * n + p];
    out << "\n";
  }
  return out.str();
}

std::string confusion_csv(const EvalResult& r, const std::vector<std::string>& classes) {
  const size_t n = classes.size();
  if (r.confusion.size() != n * n) return "";
  auto field = [](const std::string& s) {  // RFC 4180: quoted where a comma, quote or newline is in it
    if (s.find_first_of(",\"\n") == std::string::npos) return s;
    std::string q = "\"";
    for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
    return q + "\"";
  };
  std::string out = "true\\predicted";
  for (const auto& c : classes) out += "," + field(c);
  out += "\n";
  for (size_t t = 0; t < n; ++t) {
    out += field(classes[t]);
    for (size_t p = 0; p < n; ++p) out += "," + std::to_string(r.confusion[t * n + p]);
    out += "\n";
  }
  return out;
}

}  // namespace resnet
