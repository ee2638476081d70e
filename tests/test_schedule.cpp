// Learning-rate schedules (src/train/schedule.h) against their formulas and against the values
// PyTorch's schedulers give (torch 2.11, stepped once per iteration; the numbers below were printed
// by tests/reference/schedules.py), and the flags' checks.
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.h"
#include "train/schedule.h"

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
