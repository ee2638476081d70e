#include "data/loader.h"

#include "core/error.h"
#include "data/transforms.h"

namespace resnet {
namespace {

// One stream of random numbers per (seed, epoch, batch): the same batch gets the same crops
// whether the run was interrupted or not.
uint64_t mix(uint64_t seed, uint64_t epoch, uint64_t batch) {
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(epoch),
                    static_cast<uint32_t>(batch)};
  uint64_t out[1];
  seq.generate(reinterpret_cast<uint32_t*>(out), reinterpret_cast<uint32_t*>(out) + 2);
  return out[0];
}

}  // namespace

Loader::Loader(std::shared_ptr<ImageSource> source, LoaderOptions options, torch::Device device)
    : source_(std::move(source)), options_(options), device_(device) {
  if (options_.batch_size < 1) throw UsageError("--batch-size must be at least 1");
  if (options_.image_size < 8) throw UsageError("--image-size must be at least 8");
}

Loader::~Loader() {
  if (pending_.valid()) pending_.wait();
}

int64_t Loader::batches_per_epoch() const {
  return (source_->size() + options_.batch_size - 1) / options_.batch_size;
}

torch::Tensor Loader::batch_indices(int64_t batch) const {
  const int64_t begin = batch * options_.batch_size;
  const int64_t end = std::min(source_->size(), begin + options_.batch_size);
  return order_.slice(0, begin, end);
}

void Loader::start_epoch(int64_t epoch, int64_t skip_batches) {
  if (pending_.valid()) pending_.wait();
  pending_ = {};
  epoch_ = epoch;
  next_batch_ = skip_batches;
  if (options_.train) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(mix(options_.seed, epoch, ~0ull));
    order_ = torch::randperm(source_->size(), gen, torch::kLong);
  } else {
    order_ = torch::arange(source_->size(), torch::kLong);
  }
  prefetch();
}

void Loader::prefetch() {
  if (next_batch_ >= batches_per_epoch()) return;
  auto indices = batch_indices(next_batch_);
  pending_ = std::async(std::launch::async, [this, indices] { return source_->gather(indices, device_); });
}

void Loader::settle() {
  if (pending_.valid()) pending_.wait();
}

std::optional<Batch> Loader::next(const torch::Tensor& into) {
  if (!pending_.valid()) return std::nullopt;
  RawBatch raw = pending_.get();
  const int64_t batch = next_batch_++;
  prefetch();
  Batch out;
  out.labels = raw.labels;
  if (options_.train) {
    std::mt19937_64 rng(mix(options_.seed, epoch_, batch));
    out.images = train_transform(raw, options_.image_size, rng, into);
  } else {
    out.images = test_transform(raw, options_.image_size, into);
  }
  return out;
}

}  // namespace resnet
