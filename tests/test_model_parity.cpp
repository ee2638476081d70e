// Parity with torchvision, in the manner of llm.c's test_gpt2: PyTorch wrote random weights, an
// input batch and what torchvision computes from them (tests/reference/make_model_refs.py); we
// load the same weights into our model and compare eval logits, train logits, the loss, the
// gradients of several named parameters and batch-norm statistics after the train step.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include <ATen/Context.h>

#include <filesystem>
#include <fstream>
#include <map>

#include "io/state_dict.h"
#include "io/torch_save.h"
#include "models/registry.h"
#include "train/sgd.h"
#include "train/step.h"
#include "test_util.h"

namespace {

// ||ours - ref|| / ||ref|| for float32 on both sides; differences come from summation order only.
constexpr double kTolerance = 1e-4;
// The train-mode forward starts from this seed in the reference script (dropout masks).
constexpr uint64_t kTrainSeed = 1234;
constexpr int64_t kNumClasses = 10;

std::string reference_path(const std::string& file) {
  return (std::filesystem::path(RESNET_REFERENCE_DIR) / file).string();
}

// The reference's weights (state.* of <model>.weights.pt) into `model`, checking that the names
// and their order are torchvision's.
void load_reference_weights(resnet::Classifier& model, const resnet::NamedTensors& weights,
                            const std::string& weights_path) {
  resnet::NamedTensors state;
  for (const auto& [key, tensor] : weights)
    if (key.rfind("state.", 0) == 0) state.emplace_back(key.substr(6), tensor);
  const auto ours = resnet::state_dict(model);
  ASSERT_EQ(ours.size(), state.size());
  for (size_t i = 0; i < ours.size(); ++i) ASSERT_EQ(ours[i].first, state[i].first) << "entry " << i;
  resnet::load_state_dict(model, state, weights_path);
}

using Param = std::tuple<std::string, std::string>;  // model, device

class ModelParity : public ::testing::TestWithParam<Param> {};

TEST_P(ModelParity, MatchesTorchvision) {
  const auto& [name, device_name] = GetParam();
  const bool cuda = device_name == "cuda";
  if (cuda && !torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  const torch::Device device = cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  // Float32 results on the GPU too: TF32 would differ from the reference by about 1e-3.
  at::globalContext().setAllowTF32CuDNN(false);
  at::globalContext().setAllowTF32CuBLAS(false);

  const std::string weights_path = reference_path(name + ".weights.pt");
  const std::string outputs_path = reference_path(name + "." + device_name + ".pt");
  const auto weights = resnet::load_tensor_dict(weights_path);
  const auto ref = resnet::load_tensor_dict(outputs_path);

  auto model = resnet::create_model(name, kNumClasses);
  load_reference_weights(*model, weights, weights_path);  // (same names, same order as torchvision's)
  if (HasFatalFailure()) return;
  model->to(device);

  const auto input = resnet::find_tensor(weights, "input", weights_path).to(device);
  const auto labels = resnet::find_tensor(weights, "labels", weights_path).to(device);
  auto expect_close = [&](const torch::Tensor& mine, const std::string& key) {
    const double err = resnet::test::relative_error(mine, resnet::find_tensor(ref, key, outputs_path));
    EXPECT_LE(err, kTolerance) << name << " on " << device_name << ": " << key;
  };

  model->eval();
  {
    torch::NoGradGuard no_grad;
    expect_close(model->forward(input), "logits_eval");
  }

  model->train();
  torch::manual_seed(kTrainSeed);
  const auto logits = model->forward(input);
  const auto loss = torch::nn::functional::cross_entropy(logits, labels);
  loss.backward();
  expect_close(logits, "logits_train");
  expect_close(loss, "loss");

  const auto params = model->named_parameters();
  const auto buffers = model->named_buffers();
  int grads = 0;
  for (const auto& [key, tensor] : ref) {
    if (key.rfind("grad.", 0) == 0) {
      const auto* p = params.find(key.substr(5));
      ASSERT_NE(p, nullptr) << key;
      ASSERT_TRUE(p->grad().defined()) << key;
      expect_close(p->grad(), key);
      ++grads;
    } else if (key.rfind("buffer.", 0) == 0) {
      const auto* b = buffers.find(key.substr(7));
      ASSERT_NE(b, nullptr) << key;
      expect_close(*b, key);
    }
  }
  EXPECT_GE(grads, 5) << "the reference holds too few gradients to mean much";
}

std::vector<std::string> cpu_and_cuda() { return {"cpu", "cuda"}; }

INSTANTIATE_TEST_SUITE_P(AllModels, ModelParity,
                         ::testing::Combine(::testing::ValuesIn(resnet::model_names()),
                                            ::testing::ValuesIn(cpu_and_cuda())),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           return std::get<0>(info.param) + "_" + std::get<1>(info.param);
                         });

TEST(ParameterCountParity, EqualsTorchvisionFor10And1000Classes) {
  std::ifstream in(reference_path("param_counts.json"));
  ASSERT_TRUE(in) << "missing " << reference_path("param_counts.json");
  const auto counts = nlohmann::json::parse(in);
  ASSERT_EQ(counts.size(), resnet::model_names().size());
  for (const auto& name : resnet::model_names()) {
    for (int64_t classes : {10, 1000}) {
      const int64_t expected = counts.at(name).at(std::to_string(classes)).get<int64_t>();
      EXPECT_EQ(resnet::count_parameters(*resnet::create_model(name, classes)), expected)
          << name << " with " << classes << " classes";
    }
  }
}

// A short training run against PyTorch's, as llm.c's trajectory check: resnet18 from the
// reference's weights, eight steps of our fp32 training step and SGD (the sample's momentum and
// weight decay) against torch.optim.SGD's on the same batches: each step's loss (within 1e-4),
// several parameters' changes over the run (1e-2: rounding moves them by under 5e-4, a wrong
// optimizer by 6e-2 or more; make_model_refs.py says how that was measured) and batch-norm
// statistics after the last step (1e-4).
class TrajectoryParity : public ::testing::TestWithParam<std::string> {};

TEST_P(TrajectoryParity, EightSgdStepsMatchPyTorchs) {
  const std::string device_name = GetParam();
  const bool cuda = device_name == "cuda";
  if (cuda && !torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  const torch::Device device = cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  at::globalContext().setAllowTF32CuDNN(false);
  at::globalContext().setAllowTF32CuBLAS(false);
  constexpr double kChangeTolerance = 1e-2;
  const std::string weights_path = reference_path("resnet18.weights.pt");
  const std::string ref_path = reference_path("trajectory." + device_name + ".pt");
  const auto ref = resnet::load_tensor_dict(ref_path);
  auto model = resnet::create_model("resnet18", kNumClasses);
  load_reference_weights(*model, resnet::load_tensor_dict(weights_path), weights_path);
  if (HasFatalFailure()) return;
  model->to(device);
  model->train();
  const auto input = resnet::find_tensor(ref, "input", ref_path);
  const auto labels = resnet::find_tensor(ref, "labels", ref_path);
  const auto losses = resnet::find_tensor(ref, "losses", ref_path);
  const auto hyper = resnet::find_tensor(ref, "hyper", ref_path);
  resnet::Sgd sgd(model->parameters(), {hyper[0].item<double>(), hyper[1].item<double>(), hyper[2].item<double>()});
  resnet::TrainStep step(*model, sgd, resnet::StepOptions{}, device);
  std::map<std::string, torch::Tensor> start;
  for (const auto& item : model->named_parameters()) start[item.key()] = item.value().detach().clone();
  for (int64_t i = 0; i < input.size(0); ++i) {
    const double want = losses[i].item<double>();
    const double got = step.run(input[i].to(device), labels[i].to(device)).item<double>();
    std::cout << "step " << i << ": loss " << got << " (PyTorch " << want << ")\n";
    EXPECT_NEAR(got, want, kTolerance * std::abs(want)) << "step " << i;
  }
  const auto params = model->named_parameters();
  const auto buffers = model->named_buffers();
  int compared = 0;
  for (const auto& [key, tensor] : ref) {
    const bool delta = key.rfind("delta.", 0) == 0, buffer = key.rfind("buffer.", 0) == 0;
    if (!delta && !buffer) continue;
    const auto* mine = delta ? params.find(key.substr(6)) : buffers.find(key.substr(7));
    ASSERT_NE(mine, nullptr) << key;
    const double err =
        resnet::test::relative_error(delta ? *mine - start.at(key.substr(6)) : *mine, tensor);
    std::cout << key << ": relative error " << err << "\n";
    EXPECT_LE(err, delta ? kChangeTolerance : kTolerance) << key << " on " << device_name;
    ++compared;
  }
  EXPECT_GE(compared, 10);
}

INSTANTIATE_TEST_SUITE_P(CpuAndCuda, TrajectoryParity, ::testing::ValuesIn(cpu_and_cuda()),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
