// The `resnet` command line as users meet it: exit codes, messages, the bench JSON line.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_util.h"

using resnet::test::run_resnet;

TEST(Cli, UnknownModelExitsWith2AndListsTheKnownOnes) {
  const auto r = run_resnet("bench --model resnet51 --device cpu");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("unknown model 'resnet51' (known: resnet18, resnet34, resnet50"), std::string::npos)
      << r.output;
}

TEST(Cli, BadFlagsExitWith2) {
  EXPECT_EQ(run_resnet("").exit_code, 2);
  EXPECT_EQ(run_resnet("bench --no-such-flag").exit_code, 2);
  EXPECT_EQ(run_resnet("bench --batch-size many").exit_code, 2);
  const auto zero = run_resnet("bench --batch-size 0 --device cpu");
  EXPECT_EQ(zero.exit_code, 2);
  EXPECT_NE(zero.output.find("--batch-size must be at least 1"), std::string::npos) << zero.output;
  const auto dml = run_resnet("bench --device dml");
  EXPECT_EQ(dml.exit_code, 2);
  EXPECT_NE(dml.output.find("DirectML exists only on Windows"), std::string::npos) << dml.output;
}

TEST(Cli, TrainRefusesBadUsageBeforeAnyWork) {
  const auto model = run_resnet("train --model resnet51 --data /nonexistent");
  EXPECT_EQ(model.exit_code, 2) << model.output;
  EXPECT_NE(model.output.find("unknown model 'resnet51'"), std::string::npos) << model.output;
  const auto trace = run_resnet("train --trace maybe --data /nonexistent");
  EXPECT_EQ(trace.exit_code, 2) << trace.output;
  EXPECT_NE(trace.output.find("--trace takes True or False (got 'maybe')"), std::string::npos) << trace.output;
  const auto data = run_resnet("train --model resnet18 --data /nonexistent --device cpu");
  EXPECT_EQ(data.exit_code, 1) << data.output;
  EXPECT_NE(data.output.find("/nonexistent: no such folder (--data)"), std::string::npos) << data.output;
  const auto missing = run_resnet("predict --model resnet18 --checkpoint /nonexistent/checkpoint.pth --image x.jpg");
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("/nonexistent/checkpoint.pth: no such checkpoint"), std::string::npos) << missing.output;
}

TEST(Cli, HelpListsTheCommands) {
  const auto r = run_resnet("--help");
  EXPECT_EQ(r.exit_code, 0);
  for (const char* command : {"data", "train", "test", "predict", "bench"})
    EXPECT_NE(r.output.find(command), std::string::npos) << command;
  EXPECT_EQ(run_resnet("bench --help").exit_code, 0);
}

TEST(Cli, BenchPrintsOneJsonLine) {
  // The sample's underscore spelling is accepted too.
  const auto r = run_resnet("bench --model resnet18 --batch_size 2 --image-size 32 --steps 2 --warmup 1 --device cpu");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j.at("model"), "resnet18");
  EXPECT_EQ(j.at("params"), 11181642);
  EXPECT_EQ(j.at("device"), "cpu");
  EXPECT_EQ(j.at("batch_size"), 2);
  EXPECT_EQ(j.at("image_size"), 32);
  EXPECT_EQ(j.at("mode"), "train");
  EXPECT_GT(j.at("img_per_s").get<double>(), 0.0);
  EXPECT_EQ(j.at("peak_mem_mib").get<double>(), 0.0);

  const auto inf = run_resnet("bench --model squeezenet1_1 --inference --batch-size 2 --image-size 64 --steps 2 --device cpu");
  ASSERT_EQ(inf.exit_code, 0) << inf.output;
  EXPECT_EQ(nlohmann::json::parse(inf.output).at("mode"), "inference");
}
