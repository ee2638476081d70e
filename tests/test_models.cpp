// Model structure, names, parameter counts and initialisation, without Python. Parity of the
// computation with torchvision is in test_model_parity.cpp.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <tuple>

#include "core/error.h"
#include "io/state_dict.h"
#include "models/registry.h"
#include "models/resnet.h"

namespace {

torch::Tensor param(const resnet::Classifier& model, const std::string& name) {
  for (const auto& [key, value] : resnet::state_dict(model))
    if (key == name) return value;
  ADD_FAILURE() << "no parameter " << name;
  return {};
}

bool has_key(const resnet::NamedTensors& sd, const std::string& name) {
  for (const auto& entry : sd)
    if (entry.first == name) return true;
  return false;
}

}  // namespace

TEST(Registry, ListsTheTorchvisionArchitectures) {
  const std::vector<std::string> expected = {"resnet18",        "resnet34",        "resnet50",
                                             "resnet101",       "resnet152",       "resnext50_32x4d",
                                             "wide_resnet50_2", "squeezenet1_0",   "squeezenet1_1"};
  EXPECT_EQ(resnet::model_names(), expected);
}

TEST(Registry, UnknownNameListsTheKnownOnes) {
  try {
    resnet::create_model("resnet51", 10);
    FAIL() << "resnet51 accepted";
  } catch (const resnet::UsageError& e) {
    EXPECT_EQ(std::string(e.what()),
              "unknown model 'resnet51' (known: resnet18, resnet34, resnet50, resnet101, resnet152, "
              "resnext50_32x4d, wide_resnet50_2, squeezenet1_0, squeezenet1_1)");
  }
  EXPECT_THROW(resnet::create_model("resnet18", 0), resnet::UsageError);
}

TEST(Models, ResNet50ForCifar10HasTorchvisionsParameterCount) {
  auto model = resnet::create_model("resnet50", 10);
  EXPECT_EQ(resnet::count_parameters(*model), 23528522);
  EXPECT_EQ(model->arch(), "resnet50");
  EXPECT_EQ(model->num_classes(), 10);
}

TEST(Models, TorchvisionNamesForParametersAndBuffers) {
  auto r = resnet::state_dict(*resnet::create_model("resnet50", 10));
  for (const char* name : {"conv1.weight", "bn1.running_mean", "bn1.num_batches_tracked",
                           "layer1.0.downsample.0.weight", "layer1.0.downsample.1.running_var",
                           "layer3.5.conv3.weight", "layer4.2.bn3.bias", "fc.weight", "fc.bias"})
    EXPECT_TRUE(has_key(r, name)) << name;
  // PyTorch's order: a module's own tensors, then its children's.
  ASSERT_GE(r.size(), 7u);
  EXPECT_EQ(r[0].first, "conv1.weight");
  EXPECT_EQ(r[1].first, "bn1.weight");
  EXPECT_EQ(r[5].first, "bn1.num_batches_tracked");
  EXPECT_EQ(r[6].first, "layer1.0.conv1.weight");
  EXPECT_EQ(r.back().first, "fc.bias");

  auto s = resnet::state_dict(*resnet::create_model("squeezenet1_0", 10));
  for (const char* name : {"features.0.weight", "features.3.squeeze.weight", "features.3.expand1x1.bias",
                           "features.12.expand3x3.weight", "classifier.1.weight", "classifier.1.bias"})
    EXPECT_TRUE(has_key(s, name)) << name;
  EXPECT_TRUE(has_key(resnet::state_dict(*resnet::create_model("squeezenet1_1", 10)), "features.12.squeeze.weight"));
}

TEST(Models, EveryModelGivesOneLogitPerClass) {
  torch::NoGradGuard no_grad;
  const auto images = torch::randn({2, 3, 64, 64});
  for (const auto& name : resnet::model_names()) {
    for (int64_t classes : {10, 1000}) {
      auto model = resnet::create_model(name, classes);
      model->eval();
      const auto logits = model->forward(images);
      EXPECT_EQ(logits.sizes(), (std::vector<int64_t>{2, classes})) << name;
      EXPECT_TRUE(torch::isfinite(logits).all().item<bool>()) << name;
    }
  }
}

TEST(Models, DefaultInitialisationFollowsTorchvision) {
  torch::manual_seed(0);
  auto r = resnet::create_model("resnet50", 10);
  // kaiming_normal_(mode="fan_out", nonlinearity="relu"): std = sqrt(2 / (out * kh * kw))
  const auto conv1 = param(*r, "conv1.weight");
  EXPECT_NEAR(conv1.std().item<double>(), std::sqrt(2.0 / (64 * 7 * 7)), 0.05 * std::sqrt(2.0 / (64 * 7 * 7)));
  const auto conv3 = param(*r, "layer3.0.conv3.weight");  // 1024 x 256 x 1 x 1
  EXPECT_NEAR(conv3.std().item<double>(), std::sqrt(2.0 / 1024), 0.02 * std::sqrt(2.0 / 1024));
  EXPECT_TRUE(param(*r, "layer2.1.bn2.weight").eq(1).all().item<bool>());
  EXPECT_TRUE(param(*r, "layer2.1.bn2.bias").eq(0).all().item<bool>());
  // nn.Linear's default: uniform(-1/sqrt(in), 1/sqrt(in)) for weight and bias
  const double bound = 1.0 / std::sqrt(2048.0);
  EXPECT_LE(param(*r, "fc.weight").abs().max().item<double>(), bound);
  EXPECT_GT(param(*r, "fc.weight").abs().max().item<double>(), 0.9 * bound);

  auto s = resnet::create_model("squeezenet1_1", 10);
  // kaiming_uniform_ with a = 0: bound = sqrt(6 / fan_in); final conv: normal(0, 0.01); biases 0
  const auto squeeze = param(*s, "features.3.squeeze.weight");  // 16 x 64 x 1 x 1
  EXPECT_LE(squeeze.abs().max().item<double>(), std::sqrt(6.0 / 64));
  EXPECT_GT(squeeze.abs().max().item<double>(), 0.9 * std::sqrt(6.0 / 64));
  EXPECT_TRUE(param(*s, "features.3.squeeze.bias").eq(0).all().item<bool>());
  EXPECT_NEAR(param(*s, "classifier.1.weight").std().item<double>(), 0.01, 0.002);
}

// torchvision's zero_init_residual=True: bn3.weight of every Bottleneck, bn2.weight of every
// BasicBlock, and nothing else; an identity block then passes its (non-negative) input through.
TEST(Models, ZeroInitResidualStartsEachBlockAsItsShortcut) {
  for (const auto& [name, last, blocks] : {std::tuple<std::string, std::string, int>{"resnet18", ".bn2.weight", 8},
                                           {"resnet50", ".bn3.weight", 16}}) {
    torch::manual_seed(0);
    auto model = resnet::create_model(name, 10);
    ASSERT_TRUE(model->zero_init_residual()) << name;
    int zeroed = 0;
    for (const auto& p : model->named_parameters()) {
      const std::string& key = p.key();
      const bool is_last = key.rfind("layer", 0) == 0 && key.size() > last.size() &&
                           key.compare(key.size() - last.size(), last.size(), last) == 0;
      if (is_last) {
        EXPECT_TRUE(p.value().eq(0).all().item<bool>()) << key;
        ++zeroed;
      } else if ((key.find(".bn") != std::string::npos || key.rfind("bn1.", 0) == 0) && key.size() > 7 &&
                 key.compare(key.size() - 7, 7, ".weight") == 0) {
        EXPECT_TRUE(p.value().eq(1).all().item<bool>()) << key << " kept torchvision's 1";
      } else if (key.find("conv") != std::string::npos) {
        EXPECT_GT(p.value().abs().sum().item<double>(), 0) << key << " kept its random weights";
      }
    }
    EXPECT_EQ(zeroed, blocks) << name;
  }
  // resnet50's layer1.1 (256 -> 256, no downsample), training mode: relu(0 + x) = x for x >= 0
  torch::manual_seed(1);
  auto model = resnet::create_model("resnet50", 10);
  model->zero_init_residual();
  model->train();
  std::shared_ptr<torch::nn::Module> block;
  for (const auto& m : model->named_modules())
    if (m.key() == "layer1.1") block = m.value();
  ASSERT_TRUE(block);
  auto* bottleneck = block->as<resnet::BottleneckImpl>();
  ASSERT_NE(bottleneck, nullptr);
  const torch::Tensor x = torch::relu(torch::randn({2, 256, 6, 6}));
  EXPECT_TRUE(torch::equal(bottleneck->forward(x), x));
  auto squeezenet = resnet::create_model("squeezenet1_1", 10);
  EXPECT_FALSE(squeezenet->zero_init_residual());
}
