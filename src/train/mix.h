// Mixup and CutMix, as timm's and torchvision's (transforms.v2.MixUp / CutMix): each training batch
// is blended with a shuffled copy of itself and the targets in the same proportion; the loss is
// cross-entropy against those soft targets (label smoothing applied to each side first). Drawn on
// the batch's device from the default generator (saved in resume.pt), with no host sync: it runs
// inside a captured CUDA graph.
//
//   mixup   x' = lam * x + (1 - lam) * x[perm],             lam ~ Beta(alpha, alpha)
//   cutmix  x' = x with a box of x[perm] pasted in,          box side sqrt(1 - lam) of each
//           dimension around a uniform centre, clipped to the image; lam = the area kept
//   targets lam * t(y) + (1 - lam) * t(y[perm]),  t(y) = (1 - e) * one_hot(y) + e / classes
#pragma once

#include <torch/types.h>

#include <utility>

namespace resnet {

struct MixOptions {
  double mixup_alpha = 0, cutmix_alpha = 0;  // 0: that one off; both on: one or the other per batch, half each
  bool enabled() const { return mixup_alpha > 0 || cutmix_alpha > 0; }
  bool operator==(const MixOptions& o) const { return mixup_alpha == o.mixup_alpha && cutmix_alpha == o.cutmix_alpha; }
};

// UsageError naming the flag for a negative or non-finite alpha.
void check_mix_options(const MixOptions& options);

// The soft targets above for labels [N] (int64), a permutation perm [N] and lam (a 0-d fp32 tensor).
torch::Tensor mixed_targets(const torch::Tensor& labels, const torch::Tensor& perm, const torch::Tensor& lam,
                            int64_t classes, double smoothing);

// lam * x + (1 - lam) * x[perm] over a batch [N, C, H, W] (its memory format kept).
torch::Tensor mixup_images(const torch::Tensor& images, const torch::Tensor& perm, const torch::Tensor& lam);

// CutMix's box {y0, y1, x0, x1} (int64 [4], rows y0..y1-1, columns x0..x1-1) for lam and a centre
// (fp32 [2] in [0, 1): row, column) in an H x W image, as timm's rand_bbox.
torch::Tensor cutmix_box(const torch::Tensor& lam, const torch::Tensor& centre, int64_t height, int64_t width);

// x with the box of x[perm] pasted in, and the share of each image it keeps (a 0-d fp32 tensor).
std::pair<torch::Tensor, torch::Tensor> cutmix_images(const torch::Tensor& images, const torch::Tensor& perm,
                                                      const torch::Tensor& box);

// One draw for a training batch: the mixed images and their soft targets [N, classes] (fp32).
struct MixedBatch {
  torch::Tensor images, targets;
};
MixedBatch mix_batch(const torch::Tensor& images, const torch::Tensor& labels, int64_t classes,
                     const MixOptions& options, double smoothing);

// Mean over the batch of -sum over classes of targets * log_softmax(logits), in fp32.
torch::Tensor soft_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets);

}  // namespace resnet
