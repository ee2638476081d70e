// Small CPU tensors (indices, per-image parameters of a transform) onto the batch's device.
#pragma once

#include <torch/types.h>

namespace resnet {

// `host` on `device`. To a GPU it goes from pinned memory, without waiting: a copy from pageable
// memory first waits for all the work queued on the current stream (CUDA's rule for such copies),
// that is for the training step queued before, and the GPU would then idle while this thread
// builds the rest of the batch.
inline torch::Tensor upload(const torch::Tensor& host, const torch::Device& device) {
  if (!device.is_cuda()) return host.to(device);
  return host.pin_memory().to(device, /*non_blocking=*/true);
}

}  // namespace resnet
