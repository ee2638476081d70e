#include "train/mix.h"

#include <ATen/ops/_standard_gamma.h>
#include <torch/torch.h>

#include <cmath>
#include <sstream>
#include <string>

#include "core/error.h"

namespace resnet {

void check_mix_options(const MixOptions& o) {
  for (const auto& [value, flag] : {std::pair{o.mixup_alpha, "--mixup"}, std::pair{o.cutmix_alpha, "--cutmix"}})
    if (!(value >= 0 && std::isfinite(value))) {
      std::ostringstream got;
      got << value;
      throw UsageError(std::string(flag) + " must be an alpha of 0 (off) or more, e.g. 0.2 (got " + got.str() + ")");
    }
}

torch::Tensor mixed_targets(const torch::Tensor& labels, const torch::Tensor& perm, const torch::Tensor& lam,
                            int64_t classes, double smoothing) {
  const auto f32 = labels.options().dtype(torch::kFloat);
  auto soft = [&](const torch::Tensor& y) {
    return torch::zeros({y.size(0), classes}, f32).scatter_(1, y.unsqueeze(1), 1.0) * (1 - smoothing) +
           smoothing / static_cast<double>(classes);
  };
  const torch::Tensor l = lam.to(f32);
  return soft(labels) * l + soft(labels.index_select(0, perm)) * (1 - l);
}

torch::Tensor mixup_images(const torch::Tensor& images, const torch::Tensor& perm, const torch::Tensor& lam) {
  const torch::Tensor l = lam.to(images.options());
  return images * l + images.index_select(0, perm) * (1 - l);
}

torch::Tensor cutmix_box(const torch::Tensor& lam, const torch::Tensor& centre, int64_t height, int64_t width) {
  // scalar arithmetic only: no host-to-device copy, so that it can be captured in a CUDA graph
  const torch::Tensor side = torch::sqrt(1 - lam.to(torch::kFloat));  // of each dimension
  const torch::Tensor c = centre.to(torch::kFloat);
  auto span = [&](int64_t extent, const torch::Tensor& at) {
    const torch::Tensor half = torch::div((side * extent).to(torch::kLong), 2, "floor");
    const torch::Tensor mid = (at * extent).to(torch::kLong);
    return std::pair{torch::clamp(mid - half, 0, extent), torch::clamp(mid + half, 0, extent)};
  };
  const auto [y0, y1] = span(height, c[0]);
  const auto [x0, x1] = span(width, c[1]);
  return torch::stack({y0, y1, x0, x1});
}

namespace {

// `t` in channels-last where `like` is (the model's input layout; a no-op when it already is).
torch::Tensor in_layout_of(const torch::Tensor& t, const torch::Tensor& like) {
  const bool channels_last = like.is_contiguous(at::MemoryFormat::ChannelsLast) && !like.is_contiguous();
  return channels_last ? t.contiguous(at::MemoryFormat::ChannelsLast) : t;
}

}  // namespace

std::pair<torch::Tensor, torch::Tensor> cutmix_images(const torch::Tensor& images, const torch::Tensor& perm,
                                                      const torch::Tensor& box) {
  const int64_t H = images.size(2), W = images.size(3);
  const auto longs = box.options();
  const torch::Tensor rows = torch::arange(H, longs), cols = torch::arange(W, longs);
  const torch::Tensor in_rows = (rows >= box[0]) & (rows < box[1]), in_cols = (cols >= box[2]) & (cols < box[3]);
  const torch::Tensor inside = (in_rows.unsqueeze(1) & in_cols.unsqueeze(0)).view({1, 1, H, W});
  const torch::Tensor mixed = in_layout_of(torch::where(inside, images.index_select(0, perm), images), images);
  const torch::Tensor area = ((box[1] - box[0]) * (box[3] - box[2])).to(torch::kFloat);
  return {mixed, 1 - area / static_cast<double>(H * W)};
}

namespace {

// lam ~ Beta(alpha, alpha) as X / (X + Y) of two Gamma(alpha) draws, on `like`'s device.
torch::Tensor beta(double alpha, const torch::Tensor& like) {
  const torch::Tensor a = torch::full({2}, alpha, like.options().dtype(torch::kFloat));
  const torch::Tensor g = at::_standard_gamma(a);
  return g[0] / (g[0] + g[1]).clamp_min(1e-30);
}

}  // namespace

MixedBatch mix_batch(const torch::Tensor& images, const torch::Tensor& labels, int64_t classes,
                     const MixOptions& o, double smoothing) {
  torch::NoGradGuard no_grad;
  const int64_t n = images.size(0);
  const torch::Tensor perm = torch::randperm(n, labels.options().dtype(torch::kLong));
  torch::Tensor mixed, lam;
  if (o.mixup_alpha > 0) {
    lam = beta(o.mixup_alpha, images);
    mixed = mixup_images(images, perm, lam);
  }
  if (o.cutmix_alpha > 0) {
    const torch::Tensor centre = torch::rand({2}, images.options().dtype(torch::kFloat));
    const torch::Tensor box =
        cutmix_box(beta(o.cutmix_alpha, images), centre, images.size(2), images.size(3)).to(labels.device());
    auto [cut, kept] = cutmix_images(images, perm, box);
    if (mixed.defined()) {  // both on: one of them for this batch, half each (decided on the device)
      const torch::Tensor use_cut = torch::rand({}, images.options().dtype(torch::kFloat)) < 0.5;
      mixed = torch::where(use_cut, cut, mixed);
      lam = torch::where(use_cut, kept, lam);
    } else {
      mixed = cut;
      lam = kept;
    }
  }
  return {in_layout_of(mixed, images), mixed_targets(labels, perm, lam, classes, smoothing)};
}

torch::Tensor soft_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets) {
  return -(targets * torch::log_softmax(logits.to(torch::kFloat), 1)).sum(1).mean();
}

}  // namespace resnet
