// Synchronised batch norm (--sync-bn), as torch.nn.SyncBatchNorm: in training, each channel's
// mean and variance are those of the whole global batch, summed over every process of the group
// (one all-reduce of [sum, sum of squares, count] forward, one of [sum dy, sum dy*(x-mean)]
// backward). With one process it is BatchNorm2d. Any device and dtype (sums in fp64 for fp32
// input; the output in x's dtype).
#pragma once

#include "dist/group.h"
#include "ops/batch_norm_act.h"

namespace resnet {

// Training-mode batch norm of x [N, C, H, W] with statistics over the group's global batch;
// updates bn's running statistics with them (unbiased variance, as BatchNorm2d). Differentiable
// in x, weight and bias. Every process must call it for the same layers in the same order.
torch::Tensor sync_batch_norm(const torch::Tensor& x, const BatchNormParams& bn, Group& group);

}  // namespace resnet
