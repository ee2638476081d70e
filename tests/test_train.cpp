// The training pieces that need no Python: SGD against LibTorch's reference implementation,
// evaluation counts, checkpoint errors. The workflow (train -> test -> predict -> Python),
// resume equivalence and the crash test are test_workflow.py and test_crash.py.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "core/error.h"
#include "data/loader.h"
#include "io/state_dict.h"
#include "io/torch_save.h"
#include "models/registry.h"
#include "train/checkpoint.h"
#include "train/ema.h"
#include "train/evaluate.h"
#include "train/sgd.h"
#include "test_util.h"

namespace {

// Gives every parameter of both models the same random gradient.
void same_random_grads(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  for (size_t i = 0; i < a.size(); ++i) {
    const auto g = torch::randn_like(a[i]);
    a[i].mutable_grad() = g.clone();
    b[i].mutable_grad() = g.clone();
  }
}

// Five steps of both optimisers on the same random gradients; the two models' parameters must
// agree to 1e-6.
void step_both_and_compare(resnet::Sgd& ours, torch::optim::SGD& ref, resnet::Classifier& ours_model,
                           resnet::Classifier& ref_model) {
  for (int step = 0; step < 5; ++step) {
    same_random_grads(ours_model.parameters(), ref_model.parameters());
    ours.step();
    ref.step();
  }
  const auto a = ours_model.parameters(), b = ref_model.parameters();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_LE(resnet::test::relative_error(a[i], b[i]), 1e-6) << i;
}

}  // namespace

TEST(Sgd, MatchesTorchOptimSgd) {
  // The fast path (_foreach kernels) against LibTorch's per-parameter SGD, same semantics.
  torch::manual_seed(0);
  auto ours_model = resnet::create_model("resnet18", 10);
  auto ref_model = resnet::create_model("resnet18", 10);
  resnet::load_state_dict(*ref_model, resnet::state_dict(*ours_model), "memory");
  resnet::Sgd ours(ours_model->parameters(), {0.01, 0.9, 1e-4});
  torch::optim::SGD ref(ref_model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9).weight_decay(1e-4));
  step_both_and_compare(ours, ref, *ours_model, *ref_model);
  ours.zero_grad();
  EXPECT_FALSE(ours_model->parameters()[0].grad().defined());
}

// --nesterov and --no-decay-bn-bias against LibTorch's SGD with nesterov(true) and two
// parameter groups (weight decay 0 for the one-dimensional parameters: batch norms, biases). On a
// GPU ours runs its kernel once per group (plain momentum) or ATen's fused SGD (Nesterov).
static void check_nesterov_and_groups(const torch::Device& device) {
  for (const bool nesterov : {false, true}) {
    SCOPED_TRACE(nesterov ? "nesterov" : "plain momentum");
    torch::manual_seed(0);
    auto ours_model = resnet::create_model("resnet18", 10);
    auto ref_model = resnet::create_model("resnet18", 10);
    resnet::load_state_dict(*ref_model, resnet::state_dict(*ours_model), "memory");
    ours_model->to(device);
    ref_model->to(device);
    std::vector<bool> decay;
    std::vector<torch::Tensor> ref_decay, ref_no_decay;
    for (const auto& p : ref_model->parameters()) (p.dim() > 1 ? ref_decay : ref_no_decay).push_back(p);
    for (const auto& p : ours_model->parameters()) decay.push_back(p.dim() > 1);
    resnet::SgdOptions options{0.05, 0.9, 1e-2};
    options.nesterov = nesterov;
    resnet::Sgd ours(ours_model->parameters(), options, decay);
    auto opts = [&](double wd) {
      return std::make_unique<torch::optim::SGDOptions>(
          torch::optim::SGDOptions(0.05).momentum(0.9).weight_decay(wd).nesterov(nesterov));
    };
    std::vector<torch::optim::OptimizerParamGroup> groups{{ref_decay, opts(1e-2)}, {ref_no_decay, opts(0.0)}};
    torch::optim::SGD ref(groups, torch::optim::SGDOptions(0.05));
    step_both_and_compare(ours, ref, *ours_model, *ref_model);
  }
}

TEST(Sgd, NesterovAndNoDecayGroupsMatchTorchOptimSgd) {
  check_nesterov_and_groups(torch::Device(torch::kCPU));
  resnet::SgdOptions no_momentum{0.1, 0.0, 0.0};
  no_momentum.nesterov = true;
  EXPECT_THROW(resnet::Sgd({torch::zeros({2})}, no_momentum), resnet::UsageError);
}

TEST(Sgd, NesterovAndNoDecayGroupsOnTheGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  check_nesterov_and_groups(torch::Device(torch::kCUDA, 0));
}

TEST(Ema, UpdateFollowsItsFormulaAndSwapRestores) {
  torch::manual_seed(1);
  auto model = resnet::create_model("resnet18", 10);
  const auto before = resnet::state_dict(*model);
  std::vector<torch::Tensor> start;
  for (const auto& [name, t] : before) start.push_back(t.clone());
  resnet::Ema ema(*model, 0.9);
  {
    torch::NoGradGuard no_grad;  // "a step": every weight moves, the batch counter too
    for (const auto& [name, t] : resnet::state_dict(*model)) {
      if (t.is_floating_point()) {
        t.add_(torch::randn_like(t));
      } else {
        t.add_(3);
      }
    }
  }
  ema.update();
  const auto now = resnet::state_dict(*model);
  const auto avg = ema.named();
  ASSERT_EQ(avg.size(), now.size());
  for (size_t i = 0; i < avg.size(); ++i) {
    EXPECT_EQ(avg[i].first, now[i].first);
    const auto want = now[i].second.is_floating_point() ? 0.9 * start[i] + 0.1 * now[i].second : now[i].second;
    EXPECT_LE(resnet::test::relative_error(avg[i].second, want), 1e-6) << avg[i].first;
  }
  {
    resnet::Ema::Swap swap(ema, *model);
    const auto swapped = resnet::state_dict(*model);
    for (size_t i = 0; i < avg.size(); ++i) EXPECT_TRUE(torch::equal(swapped[i].second, avg[i].second)) << avg[i].first;
  }
  const auto back = resnet::state_dict(*model);
  for (size_t i = 0; i < back.size(); ++i) EXPECT_TRUE(torch::equal(back[i].second, now[i].second)) << back[i].first;
  EXPECT_THROW(resnet::Ema(*model, 1.0), resnet::UsageError);
}

TEST(Evaluate, CountsTopOneTopFiveAndPerClass) {
  // A model whose logits are the label of the image itself: every answer right.
  struct Oracle : resnet::Classifier {
    Oracle() : Classifier("oracle", 10) {}
    torch::Tensor forward(torch::Tensor x) override {
      // Pixel value v (0..9, set below) -> a one-hot logit for class (v + shift) % 10.
      const auto v = (x.select(1, 0).mean({1, 2}) * 0.229 + 0.485) * 255.0;
      return torch::one_hot((v.round().to(torch::kLong) + shift) % 10, 10).to(torch::kFloat);
    }
    int64_t shift = 0;
  };
  resnet::LabeledImages data;
  data.labels = torch::arange(20) % 10;
  data.images = data.labels.to(torch::kUInt8).view({20, 1, 1, 1}).expand({20, 3, 8, 8}).contiguous();
  data.classes = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
  auto source = resnet::in_memory_source(data, torch::kCPU, "toy");
  resnet::Loader loader(source, {8, 8, /*train=*/false, 0, 0, 1, {}, {}}, torch::kCPU);
  Oracle oracle;
  auto right = resnet::evaluate(oracle, loader);
  EXPECT_EQ(right.images, 20);
  EXPECT_DOUBLE_EQ(right.accuracy, 1.0);
  EXPECT_DOUBLE_EQ(right.top5, 1.0);
  for (double c : right.per_class) EXPECT_DOUBLE_EQ(c, 1.0);
  ASSERT_EQ(right.confusion.size(), 100u);  // the diagonal: 2 images of each class, each right
  for (int t = 0; t < 10; ++t)
    for (int p = 0; p < 10; ++p) EXPECT_EQ(right.confusion[t * 10 + p], t == p ? 2 : 0) << t << " -> " << p;
  oracle.shift = 1;  // always one class off: top-1 wrong (top-5 among tied zeros is arbitrary: not checked)
  auto wrong = resnet::evaluate(oracle, loader);
  EXPECT_DOUBLE_EQ(wrong.accuracy, 0.0);
  for (int t = 0; t < 10; ++t)  // each class taken for the next
    for (int p = 0; p < 10; ++p) EXPECT_EQ(wrong.confusion[t * 10 + p], p == (t + 1) % 10 ? 2 : 0) << t << " -> " << p;
  std::vector<std::string> names = {"plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck, big"};
  const std::string csv = resnet::confusion_csv(wrong, names);
  EXPECT_EQ(csv.substr(0, csv.find('\n')), "true\\predicted,plane,car,bird,cat,deer,dog,frog,horse,ship,\"truck, big\"");
  EXPECT_NE(csv.find("\nplane,0,2,0,0,0,0,0,0,0,0\n"), std::string::npos) << csv;
  EXPECT_NE(csv.find("\n\"truck, big\",2,0,0,0,0,0,0,0,0,0\n"), std::string::npos) << csv;
  const std::string table = resnet::format_confusion(wrong, names);
  EXPECT_NE(table.find("  0 plane     "), std::string::npos) << table;
  EXPECT_EQ(std::count(table.begin(), table.end(), '\n'), 12) << table;  // title, header, 10 rows
  EXPECT_NE(resnet::format_test_error(wrong).find("Test Error: \n Accuracy: 0.0%, Avg loss: "), std::string::npos);
}

// `n` random 8 x 8 images of three classes, in memory on the CPU.
static std::shared_ptr<resnet::ImageSource> random_toy_source(int64_t n, uint64_t seed) {
  torch::manual_seed(seed);
  resnet::LabeledImages data;
  data.labels = torch::randint(3, {n}, torch::kLong);
  data.images = torch::randint(256, {n, 3, 8, 8}, torch::kUInt8);
  data.classes = {"a", "b", "c"};
  return resnet::in_memory_source(data, torch::kCPU, "toy");
}

TEST(Evaluate, FlipAveragesTheLogitsOfEachImageAndItsMirror) {
  // A model that tells left from right: class 0's logit is the left half's mean, class 1's the
  // right half's. With --tta-flip each image's logits are the mean of its own and its mirror's.
  struct Sided : resnet::Classifier {
    Sided() : Classifier("sided", 3) {}
    torch::Tensor forward(torch::Tensor x) override {
      const int64_t w = x.size(3);
      const auto left = x.narrow(3, 0, w / 2).mean({1, 2, 3}), right = x.narrow(3, w - w / 2, w / 2).mean({1, 2, 3});
      return torch::stack({left * 4, right * 4, torch::zeros_like(left)}, 1);
    }
  };
  resnet::Loader loader(random_toy_source(12, 6), {5, 8, /*train=*/false, 0, 0, 1, {}, {}}, torch::kCPU);
  Sided model;
  // by hand, over the loader's own batches
  double plain = 0, flipped = 0;
  int batches = 0;
  loader.start_epoch(0);
  while (auto batch = loader.next()) {
    const auto a = model.forward(batch->images), b = model.forward(batch->images.flip({3}));
    plain += torch::nn::functional::cross_entropy(a, batch->labels).item<double>();
    flipped += torch::nn::functional::cross_entropy((a + b) / 2, batch->labels).item<double>();
    ++batches;
  }
  resnet::EvalStep step(model, resnet::StepOptions{}, torch::kCPU);
  const auto without = resnet::evaluate(step, loader);
  const auto with = resnet::evaluate(step, loader, nullptr, resnet::TestViews{/*flip=*/true});
  EXPECT_NEAR(without.loss, plain / batches, 1e-6);
  EXPECT_NEAR(with.loss, flipped / batches, 1e-6);
  EXPECT_GT(std::abs(with.loss - without.loss), 1e-4) << "the mirror changed nothing: is it flipped?";
}

// A view moved by (dx, dy), made another way: the image padded by `pad` with its edges repeated,
// then the window that starts `pad` pixels in, less the shift.
static torch::Tensor moved_by_padding(const torch::Tensor& x, int64_t dx, int64_t dy, int64_t pad) {
  namespace F = torch::nn::functional;
  const auto padded = F::pad(x.to(torch::kFloat), F::PadFuncOptions({pad, pad, pad, pad}).mode(torch::kReplicate));
  return padded.narrow(2, pad - dy, x.size(2)).narrow(3, pad - dx, x.size(3)).to(x.dtype());
}

TEST(Evaluate, ShiftedImagesRepeatTheirEdges) {
  torch::manual_seed(3);
  const auto x = torch::randint(256, {2, 3, 7, 9}, torch::kUInt8);
  EXPECT_TRUE(torch::equal(resnet::shift_images(x, 0, 0), x));
  for (int64_t dy : {-3, -1, 0, 2, 6})
    for (int64_t dx : {-8, -2, 0, 1, 4})
      EXPECT_TRUE(torch::equal(resnet::shift_images(x, dx, dy), moved_by_padding(x, dx, dy, 9))) << dx << "," << dy;
  // right by 2: the first two columns are copies of the first, the rest the image's columns 0..6
  const auto right = resnet::shift_images(x, 2, 0);
  EXPECT_TRUE(torch::equal(right.select(3, 0), x.select(3, 0)));
  EXPECT_TRUE(torch::equal(right.select(3, 1), x.select(3, 0)));
  EXPECT_TRUE(torch::equal(right.narrow(3, 2, 7), x.narrow(3, 0, 7)));
  EXPECT_THROW(resnet::check_test_views({false, 7}, 7), resnet::UsageError);
  EXPECT_THROW(resnet::check_test_views({false, -1}, 224), resnet::UsageError);
  EXPECT_NO_THROW(resnet::check_test_views({true, 6}, 7));
}

TEST(Evaluate, ShiftAveragesNinePositionsAndTheirMirrors) {
  // A model that sees where things are (test_util.h): every shift and the mirror change its logits.
  resnet::Loader loader(random_toy_source(10, 7), {4, 8, /*train=*/false, 0, 0, 1, {}, {}}, torch::kCPU);
  resnet::test::RegionsModel model;
  const int64_t s = 2;
  double shifted = 0, both = 0;
  int batches = 0;
  loader.start_epoch(0);
  while (auto batch = loader.next()) {
    torch::Tensor sum_shifted = torch::zeros({batch->images.size(0), 3}), sum_both = sum_shifted.clone();
    for (int64_t dy : {-s, int64_t{0}, s})
      for (int64_t dx : {-s, int64_t{0}, s}) {
        const auto view = moved_by_padding(batch->images, dx, dy, s);
        const auto a = model.forward(view);
        sum_shifted += a;
        sum_both += a + model.forward(view.flip({3}));
      }
    shifted += torch::nn::functional::cross_entropy(sum_shifted / 9, batch->labels).item<double>();
    both += torch::nn::functional::cross_entropy(sum_both / 18, batch->labels).item<double>();
    ++batches;
  }
  resnet::EvalStep step(model, resnet::StepOptions{}, torch::kCPU);
  const auto plain = resnet::evaluate(step, loader);
  const auto with_shift = resnet::evaluate(step, loader, nullptr, resnet::TestViews{false, s});
  const auto with_both = resnet::evaluate(step, loader, nullptr, resnet::TestViews{true, s});
  EXPECT_EQ((resnet::TestViews{true, s}.count()), 18);
  EXPECT_NEAR(with_shift.loss, shifted / batches, 1e-5);
  EXPECT_NEAR(with_both.loss, both / batches, 1e-5);
  EXPECT_GT(std::abs(with_shift.loss - plain.loss), 1e-4) << "the shifts changed nothing";
  EXPECT_GT(std::abs(with_both.loss - with_shift.loss), 1e-4) << "the mirrors changed nothing";
}

TEST(Checkpoint, ResumeRefusesAnotherArchitecture) {
  resnet::test::TempDir dir;
  auto model = resnet::create_model("resnet18", 10);
  resnet::Sgd sgd(model->parameters(), {});
  resnet::TrainState state;
  state.epoch = 3;
  state.classes = {"a", "b"};
  const auto path = (dir.path() / "resume.pt").string();
  resnet::save_resume(path, state, *model, sgd);
  const auto back = resnet::load_resume(path, *model, sgd);
  EXPECT_EQ(back.epoch, 3);
  EXPECT_EQ(back.classes, (std::vector<std::string>{"a", "b"}));
  auto other = resnet::create_model("resnet34", 10);
  resnet::Sgd other_sgd(other->parameters(), {});
  try {
    resnet::load_resume(path, *other, other_sgd);
    FAIL() << "a resnet18 resume.pt loaded into resnet34";
  } catch (const resnet::InputError& e) {
    EXPECT_NE(std::string(e.what()).find("holds resnet18 with 10 classes, this run trains resnet34"), std::string::npos)
        << e.what();
  }
}
