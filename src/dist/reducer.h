// Data-parallel gradients, as PyTorch's DistributedDataParallel averages them: the parameters are
// cut into buckets (about 25 MB, in reverse order of registration, which is roughly the order in
// which backward produces their gradients), and each bucket's all-reduce starts as soon as the
// last of its gradients is accumulated, while backward goes on with earlier layers. finish()
// waits for the buckets and writes the averages back into the gradients. Buckets are launched in
// the same order on every rank, as collectives must be. Each parameter must be used once per
// forward pass (no weight sharing; true of every model in src/models): its gradient is taken when
// first accumulated.
#pragma once

#include <torch/types.h>

#include <memory>
#include <mutex>
#include <vector>

#include "dist/group.h"
#include "train/step.h"

namespace torch::autograd {
struct Node;
}

namespace resnet {

class GradientReducer : public GradientSync {
 public:
  static constexpr int64_t kBucketBytes = 25 << 20, kFirstBucketBytes = 1 << 20;  // DDP's defaults

  // `params`: those that train (requires_grad). `group` must outlive the reducer.
  GradientReducer(const std::vector<torch::Tensor>& params, Group& group, int64_t bucket_bytes = kBucketBytes);
  ~GradientReducer() override;
  void before_backward() override;
  void finish() override;
  size_t buckets() const { return buckets_.size(); }

 private:
  struct Slot {
    torch::Tensor param;
    size_t bucket;
    int64_t offset;
  };
  struct Bucket {
    std::vector<size_t> slots;
    torch::Tensor flat;
    size_t ready = 0;
    std::unique_ptr<Group::Pending> work;
  };
  void on_ready(size_t slot);
  void launch_ready_buckets();  // in order, from next_launch_

  Group& group_;
  std::vector<Slot> slots_;
  std::vector<Bucket> buckets_;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators_;  // kept alive: they hold the hooks
  std::vector<char> seen_;
  size_t next_launch_ = 0;
  std::mutex mutex_;
};

}  // namespace resnet
