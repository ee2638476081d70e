#include "data/dataset.h"

#include <algorithm>
#include <numeric>

#include <ATen/CPUGeneratorImpl.h>

#include "core/error.h"

namespace resnet {

const char* split_name(Split split) { return split == Split::kTrain ? "train" : "test"; }

namespace {

class InMemorySource : public ImageSource {
 public:
  InMemorySource(LabeledImages data, const torch::Device& device, std::string description)
      : labels_cpu_(data.labels.to(torch::kCPU, torch::kLong)),
        images_(data.images.to(device)),
        labels_(labels_cpu_.to(device)),
        classes_(std::move(data.classes)),
        description_(std::move(description)) {
    TORCH_CHECK(images_.dim() == 4 && images_.size(1) == 3 && images_.scalar_type() == torch::kUInt8,
                "in-memory images must be uint8 [N, 3, H, W]");
    TORCH_CHECK(labels_cpu_.size(0) == images_.size(0), "one label per image");
  }
  int64_t size() const override { return images_.size(0); }
  const std::vector<std::string>& classes() const override { return classes_; }
  torch::Tensor labels() const override { return labels_cpu_; }
  std::string description() const override { return description_; }

  RawBatch gather(const torch::Tensor& indices, const torch::Device& device, const CropPlan* = nullptr) override {
    const auto idx = indices.to(images_.device(), /*non_blocking=*/true);
    RawBatch batch;
    batch.images = images_.index_select(0, idx).to(device, /*non_blocking=*/true);
    batch.labels = labels_.index_select(0, idx).to(device, /*non_blocking=*/true);
    batch.sizes = torch::tensor({images_.size(2), images_.size(3)}).repeat({indices.size(0), 1});
    return batch;
  }

 private:
  torch::Tensor labels_cpu_, images_, labels_;
  std::vector<std::string> classes_;
  std::string description_;
};

// The images `base` holds at `map` (int64, CPU, ascending).
class SubsetSource : public ImageSource {
 public:
  SubsetSource(std::shared_ptr<ImageSource> base, torch::Tensor map, std::string description)
      : base_(std::move(base)), map_(std::move(map)), labels_(base_->labels().index_select(0, map_)),
        description_(std::move(description)) {}
  int64_t size() const override { return map_.size(0); }
  const std::vector<std::string>& classes() const override { return base_->classes(); }
  torch::Tensor labels() const override { return labels_; }
  std::string description() const override { return description_; }
  RawBatch gather(const torch::Tensor& indices, const torch::Device& device, const CropPlan* plan = nullptr) override {
    return base_->gather(map_.index_select(0, indices.to(torch::kCPU)), device, plan);  // (rows keep their order)
  }
  DecodeStats decode_stats() const override { return base_->decode_stats(); }
  int gathers_at_once() const override { return base_->gathers_at_once(); }

 private:
  std::shared_ptr<ImageSource> base_;
  torch::Tensor map_, labels_;
  std::string description_;
};

// Another source as it is, but for its gathers at once.
class PacedSource : public ImageSource {
 public:
  PacedSource(std::shared_ptr<ImageSource> base, int gathers) : base_(std::move(base)), gathers_(gathers) {}
  int64_t size() const override { return base_->size(); }
  const std::vector<std::string>& classes() const override { return base_->classes(); }
  torch::Tensor labels() const override { return base_->labels(); }
  std::string description() const override { return base_->description(); }
  RawBatch gather(const torch::Tensor& indices, const torch::Device& device, const CropPlan* plan = nullptr) override {
    return base_->gather(indices, device, plan);
  }
  DecodeStats decode_stats() const override { return base_->decode_stats(); }
  int gathers_at_once() const override { return gathers_; }

 private:
  std::shared_ptr<ImageSource> base_;
  int gathers_;
};

}  // namespace

std::shared_ptr<ImageSource> with_gathers_at_once(std::shared_ptr<ImageSource> source, int gathers) {
  if (gathers < 1) throw UsageError("gathers at once must be at least 1 (got " + std::to_string(gathers) + ")");
  return std::make_shared<PacedSource>(std::move(source), gathers);
}

std::pair<std::shared_ptr<ImageSource>, std::shared_ptr<ImageSource>> hold_out(std::shared_ptr<ImageSource> source,
                                                                               int64_t count) {
  const int64_t n = source->size();
  if (count <= 0 || count >= n)
    throw UsageError("--holdout must be between 1 and the training images less one (" + std::to_string(n - 1) +
                     " in " + source->description() + "); got " + std::to_string(count));
  const int64_t classes = static_cast<int64_t>(source->classes().size());
  const auto labels = source->labels().contiguous();
  const int64_t* label = labels.data_ptr<int64_t>();
  // Each class's quota: its share of `count`, the remainder to the largest fractions.
  std::vector<int64_t> members(classes, 0), quota(classes);
  for (int64_t i = 0; i < n; ++i) ++members[label[i]];
  std::vector<double> fraction(classes);
  int64_t given = 0;
  for (int64_t c = 0; c < classes; ++c) {
    const double share = static_cast<double>(count) * static_cast<double>(members[c]) / static_cast<double>(n);
    quota[c] = static_cast<int64_t>(share);
    fraction[c] = share - static_cast<double>(quota[c]);
    given += quota[c];
  }
  std::vector<int64_t> order(classes);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return fraction[a] > fraction[b]; });
  for (int64_t k = 0; given < count; ++k, ++given) ++quota[order[k % classes]];
  // Walk a fixed permutation; an image is held out while its class's quota lasts.
  auto generator = at::make_generator<at::CPUGeneratorImpl>(/*seed=*/20261130);
  const auto perm = torch::randperm(n, generator, torch::TensorOptions().dtype(torch::kLong));
  const int64_t* p = perm.data_ptr<int64_t>();
  std::vector<uint8_t> held(n, 0);
  for (int64_t k = 0; k < n; ++k)
    if (quota[label[p[k]]] > 0) --quota[label[p[k]]], held[p[k]] = 1;
  std::vector<int64_t> rest_index, held_index;
  for (int64_t i = 0; i < n; ++i) (held[i] ? held_index : rest_index).push_back(i);
  auto as_tensor = [](const std::vector<int64_t>& v) { return torch::tensor(v, torch::kLong); };
  const std::string what = source->description();
  return {std::make_shared<SubsetSource>(source, as_tensor(rest_index),
                                         what + ", less " + std::to_string(count) + " held out"),
          std::make_shared<SubsetSource>(source, as_tensor(held_index),
                                         std::to_string(count) + " images held out of " + what)};
}

std::shared_ptr<ImageSource> in_memory_source(LabeledImages data, const torch::Device& device,
                                              std::string description) {
  return std::make_shared<InMemorySource>(std::move(data), device, std::move(description));
}

}  // namespace resnet
