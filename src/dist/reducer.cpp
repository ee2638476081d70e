#include "dist/reducer.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <map>

namespace resnet {

GradientReducer::GradientReducer(const std::vector<torch::Tensor>& params, Group& group, int64_t bucket_bytes)
    : group_(group) {
  // Buckets per (device, dtype), filled from the last parameter back.
  std::map<std::pair<std::string, c10::ScalarType>, size_t> open;
  std::vector<int64_t> bucket_elems;
  for (size_t i = params.size(); i-- > 0;) {
    const auto& p = params[i];
    if (!p.requires_grad()) continue;
    const auto key = std::make_pair(p.device().str(), p.scalar_type());
    auto it = open.find(key);
    const int64_t cap = (buckets_.empty() ? std::min(bucket_bytes, kFirstBucketBytes) : bucket_bytes) /
                        static_cast<int64_t>(p.element_size());
    if (it == open.end() || (bucket_elems[it->second] > 0 && bucket_elems[it->second] + p.numel() > cap)) {
      buckets_.emplace_back();
      bucket_elems.push_back(0);
      it = open.insert_or_assign(key, buckets_.size() - 1).first;
    }
    const size_t b = it->second;
    slots_.push_back({p, b, bucket_elems[b]});
    buckets_[b].slots.push_back(slots_.size() - 1);
    bucket_elems[b] += p.numel();
  }
  for (size_t b = 0; b < buckets_.size(); ++b) {
    const auto& first = slots_[buckets_[b].slots.front()].param;
    buckets_[b].flat = torch::zeros({bucket_elems[b]}, first.options().requires_grad(false));
  }
  seen_.assign(slots_.size(), 0);
  for (size_t s = 0; s < slots_.size(); ++s) {
    auto accumulator = torch::autograd::impl::grad_accumulator(slots_[s].param);
    accumulator->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [this, s](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          on_ready(s);
          return outputs;
        }));
    accumulators_.push_back(std::move(accumulator));
  }
}

GradientReducer::~GradientReducer() = default;

void GradientReducer::before_backward() {
  std::lock_guard<std::mutex> lock(mutex_);
  std::fill(seen_.begin(), seen_.end(), 0);
  for (auto& b : buckets_) {
    b.ready = 0;
    b.work.reset();
  }
  next_launch_ = 0;
}

void GradientReducer::on_ready(size_t s) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (seen_[s]) return;
  const Slot& slot = slots_[s];
  const auto& grad = slot.param.grad();
  if (!grad.defined()) return;
  Bucket& bucket = buckets_[slot.bucket];
  torch::NoGradGuard no_grad;
  bucket.flat.narrow(0, slot.offset, slot.param.numel()).view(slot.param.sizes()).copy_(grad);
  seen_[s] = 1;
  ++bucket.ready;
  launch_ready_buckets();
}

void GradientReducer::launch_ready_buckets() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].ready == buckets_[next_launch_].slots.size()) {
    Bucket& b = buckets_[next_launch_++];
    b.work = group_.all_reduce_async(b.flat);
  }
}

void GradientReducer::finish() {
  torch::NoGradGuard no_grad;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    // Parameters that got no gradient this step count as zeros, on every rank alike.
    for (size_t s = 0; s < slots_.size(); ++s) {
      if (seen_[s]) continue;
      const Slot& slot = slots_[s];
      Bucket& bucket = buckets_[slot.bucket];
      const auto& grad = slot.param.grad();
      auto dst = bucket.flat.narrow(0, slot.offset, slot.param.numel());
      if (grad.defined()) dst.view(slot.param.sizes()).copy_(grad);
      else dst.zero_();
      seen_[s] = 1;
      ++bucket.ready;
    }
    launch_ready_buckets();
  }
  const double inv_world = 1.0 / group_.size();
  for (auto& b : buckets_) {
    b.work->wait();
    b.work.reset();
    b.flat.mul_(inv_world);
    for (size_t s : b.slots) {
      auto& p = slots_[s].param;
      const auto avg = b.flat.narrow(0, slots_[s].offset, p.numel()).view(p.sizes());
      if (p.grad().defined()) p.mutable_grad().copy_(avg);
      else p.mutable_grad() = avg.clone(p.suggest_memory_format());
    }
  }
}

}  // namespace resnet
