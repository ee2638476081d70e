#include "data/dataset.h"

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

  RawBatch gather(const torch::Tensor& indices, const torch::Device& device) override {
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

}  // namespace

std::shared_ptr<ImageSource> in_memory_source(LabeledImages data, const torch::Device& device,
                                              std::string description) {
  return std::make_shared<InMemorySource>(std::move(data), device, std::move(description));
}

}  // namespace resnet
