// Learning-rate schedules (src/train/schedule.h) against their formulas and against the values
// PyTorch's schedulers give (torch 2.11, stepped once per iteration; the numbers below were printed
// by tests/reference/schedules.py), and the flags' checks; Mixup and CutMix against PyTorch's
// cross-entropy and timm's box, and gradient clipping against torch's clip_grad_norm_.
#include <gtest/gtest.h>

#include <vector>

#include <cmath>

#include <torch/torch.h>

#include "core/error.h"
#include "train/mix.h"
#include "train/schedule.h"
#include "train/sgd.h"

namespace {

using resnet::LrSchedule;
using resnet::ScheduleOptions;

constexpr double kPi = 3.14159265358979323846;

ScheduleOptions kind(const std::string& k) {
  ScheduleOptions o;
  o.kind = k;
  return o;
}

}  // namespace

TEST(Schedule, ConstantIsTheSamplesRate) {
  const LrSchedule s(kind("constant"), 0.001, 1563, 50);
  EXPECT_FALSE(s.varies());
  for (int64_t i : {0, 1, 1562, 1563, 78149, 100000}) EXPECT_DOUBLE_EQ(s.at(i), 0.001) << i;
}

TEST(Schedule, StepDecaysEveryStepSizeEpochs) {
  ScheduleOptions o = kind("step");
  o.step_size = 3;
  o.gamma = 0.5;
  const LrSchedule s(o, 0.1, 10, 9);  // 10 steps an epoch
  EXPECT_TRUE(s.varies());
  EXPECT_DOUBLE_EQ(s.at(0), 0.1);
  EXPECT_DOUBLE_EQ(s.at(29), 0.1);
  EXPECT_DOUBLE_EQ(s.at(30), 0.05);
  EXPECT_DOUBLE_EQ(s.at(59), 0.05);
  EXPECT_DOUBLE_EQ(s.at(60), 0.025);
}

TEST(Schedule, MultiStepDecaysAtEachMilestone) {
  ScheduleOptions o = kind("multistep");
  o.milestones = {2, 5};
  o.gamma = 0.1;
  const LrSchedule s(o, 0.1, 10, 8);
  EXPECT_DOUBLE_EQ(s.at(19), 0.1);
  EXPECT_NEAR(s.at(20), 0.01, 1e-15);
  EXPECT_NEAR(s.at(49), 0.01, 1e-15);
  EXPECT_NEAR(s.at(50), 0.001, 1e-15);
  EXPECT_NEAR(s.at(79), 0.001, 1e-15);
}

TEST(Schedule, CosineFollowsItsFormula) {
  ScheduleOptions o = kind("cosine");
  o.min_lr = 0.002;
  const LrSchedule s(o, 0.1, 10, 10);  // N = 100
  for (int64_t i = 0; i < 100; i += 7)
    EXPECT_NEAR(s.at(i), 0.002 + (0.1 - 0.002) * (1 + std::cos(kPi * i / 100.0)) / 2, 1e-12) << i;
  EXPECT_DOUBLE_EQ(s.at(0), 0.1);
  EXPECT_NEAR(s.at(50), 0.051, 1e-12);
  EXPECT_NEAR(s.at(100), 0.002, 1e-12);  // past the end: stays at the minimum
  EXPECT_NEAR(s.at(1000), 0.002, 1e-12);
}

TEST(Schedule, WarmupThenCosineMatchesPyTorch) {
  // SequentialLR([LinearLR(start_factor=0.1, total_iters=20), CosineAnnealingLR(T_max=80,
  // eta_min=0.001)], milestones=[20]), lr 0.1, 100 iterations
  ScheduleOptions o = kind("cosine");
  o.warmup_epochs = 2;
  o.warmup_start_factor = 0.1;
  o.min_lr = 0.001;
  const LrSchedule s(o, 0.1, 10, 10);
  const std::vector<std::pair<int64_t, double>> torch_values{
      {0, 0.010000000000000002}, {10, 0.05500000000000002}, {19, 0.09550000000000004}, {20, 0.1},
      {21, 0.09996183729391579},  {60, 0.050499999999999996}, {99, 0.0010381627060842165}};
  for (const auto& [i, lr] : torch_values) EXPECT_NEAR(s.at(i), lr, 1e-12) << i;
}

TEST(Schedule, WarmupBeforeAConstantRate) {
  ScheduleOptions o = kind("constant");
  o.warmup_epochs = 0.5;  // fractional: 5 of 10 steps
  o.warmup_start_factor = 0;
  const LrSchedule s(o, 0.4, 10, 3);
  EXPECT_TRUE(s.varies());
  EXPECT_DOUBLE_EQ(s.at(0), 0.0);
  EXPECT_DOUBLE_EQ(s.at(1), 0.08);
  EXPECT_DOUBLE_EQ(s.at(4), 0.32);
  EXPECT_DOUBLE_EQ(s.at(5), 0.4);
  EXPECT_DOUBLE_EQ(s.at(29), 0.4);
}

TEST(Schedule, OneCycleMatchesPyTorch) {
  // OneCycleLR(max_lr=0.1, total_steps=100, pct_start=0.3, anneal_strategy='cos', div_factor=25,
  // final_div_factor=1e4, cycle_momentum=False)
  ScheduleOptions o = kind("onecycle");
  const LrSchedule s(o, 0.1, 20, 5);  // N = 100
  const std::vector<std::pair<int64_t, double>> torch_values{
      {0, 0.0040000000000000036}, {1, 0.004281378056590748}, {15, 0.05459866761210004},
      {28, 0.09971862194340926},  {29, 0.1},                 {30, 0.09994965352845243},
      {31, 0.09979871550490317},  {60, 0.05892800902855288}, {98, 5.07464715475788e-05},
      {99, 4e-07}};
  for (const auto& [i, lr] : torch_values) EXPECT_NEAR(s.at(i), lr, 1e-12 + 1e-9 * lr) << i;
}

TEST(Schedule, LinearScalingRule) {
  EXPECT_DOUBLE_EQ(resnet::scaled_learning_rate(0.1, 1024, 256), 0.4);
  EXPECT_DOUBLE_EQ(resnet::scaled_learning_rate(0.1, 1024, 0), 0.1);  // 0: off
}

TEST(Schedule, BadSettingsNameTheirFlag) {
  auto refused = [](ScheduleOptions o, const std::string& flag) {
    try {
      resnet::check_schedule(o);
    } catch (const resnet::UsageError& e) {
      return std::string(e.what()).find(flag) != std::string::npos;
    }
    return false;
  };
  EXPECT_TRUE(refused(kind("linear"), "--lr-schedule"));
  ScheduleOptions o = kind("multistep");
  EXPECT_TRUE(refused(o, "--lr-milestones"));  // none given
  o.milestones = {30, 20};
  EXPECT_TRUE(refused(o, "--lr-milestones"));  // not increasing
  o = kind("onecycle");
  o.warmup_epochs = 1;
  EXPECT_TRUE(refused(o, "--warmup-epochs"));
  o = kind("onecycle");
  o.pct_start = 1.5;
  EXPECT_TRUE(refused(o, "--onecycle-pct-start"));
  o = kind("cosine");
  o.warmup_start_factor = 2;
  EXPECT_TRUE(refused(o, "--warmup-start-factor"));
  o.warmup_start_factor = 0.1;
  o.warmup_epochs = -1;
  EXPECT_TRUE(refused(o, "--warmup-epochs"));
  o = kind("step");
  o.step_size = 0;
  EXPECT_TRUE(refused(o, "--lr-step-size"));
  EXPECT_NO_THROW(resnet::check_schedule(kind("cosine")));
}

TEST(Schedule, ResumeSettingsHoldWhatShapesTheRates) {
  // constant: the sample's runs, whose --epochs may grow on resume
  EXPECT_EQ(resnet::to_json(kind("constant"), 50), nlohmann::json({{"kind", "constant"}}));
  const auto cosine = resnet::to_json(kind("cosine"), 50);
  EXPECT_EQ(cosine["epochs"], 50);
  EXPECT_EQ(cosine["min_lr"], 0.0);
  ScheduleOptions m = kind("multistep");
  m.milestones = {3, 6};
  EXPECT_EQ(resnet::to_json(m, 10)["milestones"], nlohmann::json({3, 6}));
  EXPECT_FALSE(resnet::to_json(m, 10).contains("epochs"));
}

// --- Mixup, CutMix (src/train/mix.h) and gradient clipping (train/sgd.h) -------------------------

namespace {

namespace F = torch::nn::functional;

// PyTorch's loss of a mixed batch: lam * CE(logits, y) + (1 - lam) * CE(logits, y[perm]), each with
// label smoothing, as torchvision's reference scripts and timm compute it with hard labels.
double pytorch_mixed_loss(const torch::Tensor& logits, const torch::Tensor& y, const torch::Tensor& perm, double lam,
                          double e) {
  const auto opts = F::CrossEntropyFuncOptions().label_smoothing(e);
  return (lam * F::cross_entropy(logits, y, opts) + (1 - lam) * F::cross_entropy(logits, y.index_select(0, perm), opts))
      .item<double>();
}

}  // namespace

TEST(Schedule, ProgressiveResizeGrowsInStepsOf32ThenStaysFull) {
  using resnet::progressive_image_size;
  // 128 -> 224 over the first 75% of 140 epochs (105): three steps of 35 epochs each.
  std::vector<int64_t> sizes;
  for (int64_t e = 0; e < 140; ++e) sizes.push_back(progressive_image_size(128, 0.75, 224, e, 140));
  for (int64_t e = 0; e < 140; ++e) {
    const int64_t want = e < 35 ? 128 : e < 70 ? 160 : e < 105 ? 192 : 224;
    EXPECT_EQ(sizes[e], want) << "epoch " << e;
  }
  // A span that is not a multiple of 32: 100 -> 224 in 4 steps (100, 132, 164, 196), then 224.
  EXPECT_EQ(progressive_image_size(100, 1.0, 224, 0, 8), 100);
  EXPECT_EQ(progressive_image_size(100, 1.0, 224, 2, 8), 132);
  EXPECT_EQ(progressive_image_size(100, 1.0, 224, 7, 8), 196);
  EXPECT_EQ(progressive_image_size(100, 1.0, 224, 8, 8), 224);
  // Off, or nothing to grow: the full size throughout.
  EXPECT_EQ(progressive_image_size(0, 0.5, 224, 0, 10), 224);
  EXPECT_EQ(progressive_image_size(224, 0.5, 224, 0, 10), 224);
  // Never shrinks, never passes the full size.
  for (int64_t e = 1; e < 140; ++e) EXPECT_GE(sizes[e], sizes[e - 1]);
  for (const int64_t s : sizes) EXPECT_LE(s, 224);
}

TEST(Mix, SoftTargetLossMatchesPyTorchsCrossEntropy) {
  torch::manual_seed(1);
  const auto logits = torch::randn({6, 10}, torch::kDouble).to(torch::kFloat) * 3;
  const auto y = torch::tensor({3, 0, 9, 9, 4, 1}, torch::kLong);
  const auto perm = torch::tensor({2, 0, 5, 1, 3, 4}, torch::kLong);
  for (double lam : {1.0, 0.7, 0.25})
    for (double e : {0.0, 0.1}) {
      const auto targets = resnet::mixed_targets(y, perm, torch::tensor(lam), 10, e);
      EXPECT_TRUE(torch::allclose(targets.sum(1), torch::ones({6}))) << "targets are distributions";
      EXPECT_NEAR(resnet::soft_cross_entropy(logits, targets).item<double>(), pytorch_mixed_loss(logits, y, perm, lam, e),
                  1e-5)
          << "lam " << lam << " smoothing " << e;
    }
  // no mixing, no smoothing: plain cross-entropy
  const auto identity = torch::arange(6, torch::kLong);
  EXPECT_NEAR(resnet::soft_cross_entropy(logits, resnet::mixed_targets(y, identity, torch::tensor(0.5), 10, 0))
                  .item<double>(),
              F::cross_entropy(logits, y).item<double>(), 1e-5);
}

TEST(Mix, MixupBlendsEachImageWithItsPartner) {
  torch::manual_seed(2);
  const auto x = torch::randn({4, 3, 5, 5});
  const auto perm = torch::tensor({3, 2, 0, 1}, torch::kLong);
  const auto mixed = resnet::mixup_images(x, perm, torch::tensor(0.3));
  for (int64_t i = 0; i < 4; ++i)
    EXPECT_TRUE(torch::allclose(mixed[i], 0.3 * x[i] + 0.7 * x[perm[i].item<int64_t>()], 1e-6, 1e-6)) << i;
  // channels-last stays channels-last (the model's input layout on CUDA)
  const auto cl = x.contiguous(at::MemoryFormat::ChannelsLast);
  EXPECT_TRUE(resnet::mixup_images(cl, perm, torch::tensor(0.3)).is_contiguous(at::MemoryFormat::ChannelsLast));
}

TEST(Mix, CutMixBoxFollowsTimmsRandBbox) {
  // side sqrt(1 - lam) of each dimension, centred at centre * size, clipped: lam 0.75 in 32 x 32 ->
  // a 16 x 16 box; at the corner it is clipped to 8 x 8
  auto box = [](double lam, double cy, double cx, int64_t h, int64_t w) {
    const auto b = resnet::cutmix_box(torch::tensor(lam), torch::tensor({cy, cx}, torch::kFloat), h, w);
    return std::vector<int64_t>(b.data_ptr<int64_t>(), b.data_ptr<int64_t>() + 4);
  };
  EXPECT_EQ(box(0.75, 0.5, 0.5, 32, 32), (std::vector<int64_t>{8, 24, 8, 24}));
  EXPECT_EQ(box(0.75, 0.0, 0.0, 32, 32), (std::vector<int64_t>{0, 8, 0, 8}));
  EXPECT_EQ(box(0.75, 0.99, 0.5, 32, 20), (std::vector<int64_t>{23, 32, 5, 15}));
  EXPECT_EQ(box(1.0, 0.5, 0.5, 32, 32), (std::vector<int64_t>{16, 16, 16, 16}));  // nothing cut
}

TEST(Mix, CutMixPastesTheBoxAndKeepsTheRest) {
  torch::manual_seed(3);
  const auto x = torch::randn({3, 2, 8, 10});
  const auto perm = torch::tensor({1, 2, 0}, torch::kLong);
  const auto box = torch::tensor({2, 6, 3, 8}, torch::kLong);  // rows 2..5, columns 3..7
  const auto [mixed, kept] = resnet::cutmix_images(x, perm, box);
  EXPECT_NEAR(kept.item<double>(), 1 - 4.0 * 5.0 / 80.0, 1e-7);
  const auto partner = x.index_select(0, perm);
  using torch::indexing::Slice;
  EXPECT_TRUE(torch::equal(mixed.index({Slice(), Slice(), Slice(2, 6), Slice(3, 8)}),
                           partner.index({Slice(), Slice(), Slice(2, 6), Slice(3, 8)})));
  auto outside = torch::ones({8, 10}, torch::kBool);
  outside.index_put_({Slice(2, 6), Slice(3, 8)}, false);
  EXPECT_TRUE(torch::equal(mixed.masked_select(outside), x.masked_select(outside)));
}

TEST(Mix, DrawnBatchesAreConsistentWithTheirTargets) {
  // mix_batch draws lam and the permutation itself: the images and targets must tell the same lam.
  torch::manual_seed(4);
  const auto x = torch::rand({8, 3, 16, 16});
  const auto y = torch::arange(8, torch::kLong);  // distinct labels: lam is readable from the targets
  int cutmix_batches = 0, mixup_batches = 0;
  for (int draw = 0; draw < 40; ++draw) {
    const auto m = resnet::mix_batch(x, y, 8, resnet::MixOptions{0.4, 1.0}, 0.0);
    ASSERT_EQ(m.images.sizes(), x.sizes());
    EXPECT_TRUE(torch::allclose(m.targets.sum(1), torch::ones({8})));
    // each row: lam on its own label, 1 - lam on its partner's (or 1 where it is its own partner)
    const double lam = m.targets[0][0].item<double>();
    EXPECT_GE(lam, 0.0);
    EXPECT_LE(lam, 1.0);
    // CutMix copies pixels exactly: every pixel equals the image's own or another's
    const bool copied = torch::isin(m.images[0].flatten(), x.flatten()).all().item<bool>();
    if (copied && lam < 1 - 1e-6) ++cutmix_batches;
    if (!copied) ++mixup_batches;
  }
  EXPECT_GT(cutmix_batches, 5) << "with both on, about half the batches are CutMix";
  EXPECT_GT(mixup_batches, 5);
  EXPECT_THROW(resnet::check_mix_options(resnet::MixOptions{-0.2, 0}), resnet::UsageError);
  EXPECT_THROW(resnet::check_mix_options(resnet::MixOptions{0, std::nan("")}), resnet::UsageError);
  EXPECT_NO_THROW(resnet::check_mix_options(resnet::MixOptions{0.2, 1.0}));
}

TEST(ClipGradNorm, MatchesTorchsClipGradNorm) {
  torch::manual_seed(5);
  std::vector<torch::Tensor> ours, theirs;
  for (auto shape : {std::vector<int64_t>{4, 3}, {7}, {2, 2, 2}}) {
    auto p = torch::randn(shape, torch::requires_grad());
    p.mutable_grad() = torch::randn(shape) * 3;
    theirs.push_back(p);
    ours.push_back(p.grad().clone());
  }
  const double total = torch::nn::utils::clip_grad_norm_(theirs, 1.5);
  const auto norm = resnet::clip_grad_norm(ours, 1.5);
  EXPECT_NEAR(norm.item<double>(), total, 1e-4);
  for (size_t i = 0; i < ours.size(); ++i) EXPECT_TRUE(torch::allclose(ours[i], theirs[i].grad(), 1e-5, 1e-6)) << i;
  // gradients 1024 times too large (fp16's loss scale): clipped to 1024 x the limit
  std::vector<torch::Tensor> scaled{torch::full({4}, 1024.0)};  // norm 2048
  resnet::clip_grad_norm(scaled, 1.0, torch::tensor(1024.0));
  EXPECT_NEAR(scaled[0].norm().item<double>(), 1024.0, 1e-2);
  // under the limit: untouched
  std::vector<torch::Tensor> small{torch::full({4}, 0.1)};
  resnet::clip_grad_norm(small, 1.0);
  EXPECT_TRUE(torch::allclose(small[0], torch::full({4}, 0.1)));
}
