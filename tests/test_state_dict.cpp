// Reading torch.save files and loading state dicts: what goes right, and the errors users see.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>

#include "core/error.h"
#include "io/state_dict.h"
#include "io/torch_save.h"
#include "models/registry.h"
#include "test_util.h"

namespace {

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const resnet::InputError& e) {
    return e.what();
  }
  return "(no InputError)";
}

void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

}  // namespace

TEST(TorchSave, ReadsWhatTorchPickleSaveWrites) {
  resnet::test::TempDir dir;
  c10::Dict<std::string, torch::Tensor> dict;
  dict.insert("a", torch::arange(6).reshape({2, 3}));
  dict.insert("b", torch::tensor({1.5f, -2.0f}));
  const auto bytes = torch::pickle_save(dict);
  write_file(dir.path() / "x.pt", std::string(bytes.begin(), bytes.end()));
  const auto tensors = resnet::load_tensor_dict((dir.path() / "x.pt").string());
  ASSERT_EQ(tensors.size(), 2u);
  EXPECT_TRUE(torch::equal(resnet::find_tensor(tensors, "a", "x"), torch::arange(6).reshape({2, 3})));
  EXPECT_TRUE(torch::equal(resnet::find_tensor(tensors, "b", "x"), torch::tensor({1.5f, -2.0f})));
  EXPECT_NE(message_of([&] { resnet::find_tensor(tensors, "c", "x.pt"); }).find("x.pt: has no tensor named 'c'"),
            std::string::npos);
}

TEST(TorchSave, ErrorsNameTheFileAndWhatWasFound) {
  resnet::test::TempDir dir;
  const auto missing = (dir.path() / "missing.pt").string();
  EXPECT_EQ(message_of([&] { resnet::load_tensor_dict(missing); }), missing + ": cannot open for reading");

  const auto text = (dir.path() / "text.pt").string();
  write_file(text, "hello, not a checkpoint");
  EXPECT_NE(message_of([&] { resnet::load_tensor_dict(text); }).find(text + ": not a torch.save file"),
            std::string::npos);

  const auto truncated = (dir.path() / "truncated.pt").string();
  c10::Dict<std::string, torch::Tensor> dict;
  dict.insert("w", torch::randn({100, 100}));
  auto bytes = torch::pickle_save(dict);
  write_file(truncated, std::string(bytes.begin(), bytes.begin() + bytes.size() / 2));
  EXPECT_NE(message_of([&] { resnet::load_tensor_dict(truncated); }).find(truncated + ": cannot read it"),
            std::string::npos);

  const auto list = (dir.path() / "list.pt").string();
  bytes = torch::pickle_save(c10::List<int64_t>({1, 2}));
  write_file(list, std::string(bytes.begin(), bytes.end()));
  EXPECT_NE(message_of([&] { resnet::load_tensor_dict(list); }).find(list + ": expected a dict of tensors"),
            std::string::npos);
}

TEST(StateDict, RoundTripsIntoAFreshModel) {
  torch::manual_seed(1);
  auto a = resnet::create_model("resnet18", 10);
  auto b = resnet::create_model("resnet18", 10);
  resnet::load_state_dict(*b, resnet::state_dict(*a), "memory");
  const auto sa = resnet::state_dict(*a), sb = resnet::state_dict(*b);
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) EXPECT_TRUE(torch::equal(sa[i].second, sb[i].second)) << sa[i].first;
}

TEST(StateDict, MismatchesAreListed) {
  auto model = resnet::create_model("resnet18", 10);
  auto other_classes = resnet::state_dict(*resnet::create_model("resnet18", 1000));
  const auto shape = message_of([&] { resnet::load_state_dict(*model, other_classes, "w.pth"); });
  EXPECT_NE(shape.find("w.pth: does not match the model"), std::string::npos) << shape;
  EXPECT_NE(shape.find("shape mismatches (2): fc.weight (file [1000, 512], model [10, 512]) fc.bias"),
            std::string::npos)
      << shape;

  auto partial = resnet::state_dict(*model);
  partial.erase(partial.begin());
  partial.emplace_back("extra.weight", torch::zeros({1}));
  const auto keys = message_of([&] { resnet::load_state_dict(*model, partial, "w.pth"); });
  EXPECT_NE(keys.find("missing keys (1): conv1.weight"), std::string::npos) << keys;
  EXPECT_NE(keys.find("unexpected keys (1): extra.weight"), std::string::npos) << keys;
}
