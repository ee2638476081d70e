// The training step (src/train/step.h): the fp32 eager step against a plain LibTorch loop with
// torch::optim::SGD; bf16 autocast and channels-last against fp32 NCHW; the fp16 loss scaler's
// skip-and-back-off; and, on a GPU, CUDA-graph replays against eager steps over 20 steps, a new
// learning rate reaching a captured step, and graphed evaluation against eager.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "io/state_dict.h"
#include "models/registry.h"
#include "data/dataset.h"
#include "train/cuda_graph.h"
#include "train/evaluate.h"
#include "train/mix.h"
#include "train/step.h"
#include "test_util.h"

namespace {

using resnet::Amp;
using resnet::StepOptions;

constexpr int64_t kClasses = 10;

struct Batches {
  std::vector<torch::Tensor> images, labels;
};

// `n` random batches of `batch` images of side `size` on `device`, from a fixed seed.
Batches random_batches(int n, int64_t batch, int64_t size, const torch::Device& device) {
  torch::manual_seed(123);
  Batches b;
  for (int i = 0; i < n; ++i) {
    b.images.push_back(torch::randn({batch, 3, size, size}).to(device));
    b.labels.push_back(torch::randint(kClasses, {batch}, torch::kLong).to(device));
  }
  return b;
}

std::shared_ptr<resnet::Classifier> seeded_model(const std::string& arch, const torch::Device& device) {
  torch::manual_seed(7);
  auto m = resnet::create_model(arch, kClasses);
  m->to(device);
  m->train();
  return m;
}

// Losses of `steps` TrainStep steps over `data` with `options`, from the seeded model; with
// CUDA graphs on, fails the test unless the graph was captured. `into_buffer`: each batch is
// written into the step's input buffer once it exists and that buffer passed, as the trainer's
// loader does.
std::vector<double> step_losses(const std::string& arch, const Batches& data, StepOptions options,
                                const torch::Device& device, std::shared_ptr<resnet::Classifier>* out = nullptr,
                                double lr = 0.01, bool into_buffer = false) {
  auto model = seeded_model(arch, device);
  if (options.channels_last) resnet::to_channels_last(*model);
  resnet::Sgd sgd(model->parameters(), {lr, 0.9, 1e-4});
  resnet::TrainStep step(*model, sgd, options, device);
  std::vector<double> losses;
  int buffered = 0;
  for (size_t i = 0; i < data.images.size(); ++i) {
    auto images = data.images[i];
    if (into_buffer && step.input_buffer().defined()) {
      images = step.input_buffer().copy_(images);
      ++buffered;
    }
    losses.push_back(step.run(images, data.labels[i]).item<double>());
  }
  if (into_buffer) {
    EXPECT_EQ(buffered, static_cast<int>(data.images.size()) - 1);
  }
  if (options.cuda_graphs) {
    EXPECT_EQ(step.describe().rfind("CUDA graph", 0), 0u) << step.describe();
  }
  if (out) *out = model;
  return losses;
}

double max_relative_gap(const std::vector<double>& a, const std::vector<double>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(a[i] - b[i]) / std::abs(b[i]));
  return worst;
}

bool have_cuda() { return torch::cuda::is_available(); }

}  // namespace

TEST(TrainStep, Fp32EagerMatchesAPlainLibTorchLoop) {
  // --amp off is the sample's computation: forward, cross-entropy, backward, SGD.
  const torch::Device cpu(torch::kCPU);
  const auto data = random_batches(4, 4, 32, cpu);
  std::shared_ptr<resnet::Classifier> ours;
  const auto losses = step_losses("resnet18", data, StepOptions{}, cpu, &ours);

  auto ref = seeded_model("resnet18", cpu);
  torch::optim::SGD sgd(ref->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9).weight_decay(1e-4));
  for (size_t i = 0; i < data.images.size(); ++i) {
    sgd.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(ref->forward(data.images[i]), data.labels[i]);
    loss.backward();
    sgd.step();
    EXPECT_NEAR(losses[i], loss.item<double>(), 1e-5 * std::abs(loss.item<double>())) << "step " << i;
  }
  const auto a = ours->parameters(), b = ref->parameters();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_LE(resnet::test::relative_error(a[i], b[i]), 1e-5) << i;
}

TEST(TrainStep, LabelSmoothingLossFollowsItsFormula) {
  // PyTorch's label_smoothing e: (1 - e) * -log p[label] + e * mean over classes of -log p[c],
  // from the logits the step's forward pass sees (train mode, the same weights: before its update).
  const torch::Device cpu(torch::kCPU);
  const auto data = random_batches(1, 6, 32, cpu);
  for (const double e : {0.0, 0.1, 0.3}) {
    auto model = seeded_model("resnet18", cpu);
    const auto logits = model->forward(data.images[0]).detach();
    model = seeded_model("resnet18", cpu);  // running statistics as before that forward
    resnet::Sgd sgd(model->parameters(), {0.01, 0.9, 1e-4});
    StepOptions options;
    options.label_smoothing = e;
    resnet::TrainStep step(*model, sgd, options, cpu);
    const double got = step.run(data.images[0], data.labels[0]).item<double>();
    const auto logp = torch::log_softmax(logits.to(torch::kDouble), 1);
    const auto nll = -logp.gather(1, data.labels[0].unsqueeze(1)).squeeze(1);
    const double want = ((1 - e) * nll - e * logp.mean(1)).mean().item<double>();
    EXPECT_NEAR(got, want, 1e-5 * want) << "label smoothing " << e;
  }
}

TEST(TrainStep, MixedBatchesAndClippedGradients) {
  // With --mixup/--cutmix the step's loss is the soft-target cross-entropy of the batch mix_batch
  // draws from the default generator (the same draw when reseeded), and with --clip-grad-norm the
  // update is SGD's on the clipped gradients.
  const torch::Device cpu(torch::kCPU);
  const auto data = random_batches(1, 6, 32, cpu);
  resnet::MixOptions mix{0.4, 1.0};
  auto model = seeded_model("resnet18", cpu);
  torch::manual_seed(21);
  const auto mixed = resnet::mix_batch(data.images[0], data.labels[0], model->num_classes(), mix, 0.1);
  const auto logits = model->forward(mixed.images);
  const double want = resnet::soft_cross_entropy(logits, mixed.targets).item<double>();
  model->zero_grad();
  resnet::soft_cross_entropy(logits, mixed.targets).backward();
  std::vector<torch::Tensor> grads;
  for (auto& p : model->parameters()) grads.push_back(p.grad().clone());
  resnet::clip_grad_norm(grads, 0.5);
  std::vector<torch::Tensor> want_params;
  {
    auto reference = seeded_model("resnet18", cpu);
    const auto params = reference->parameters();
    for (size_t i = 0; i < params.size(); ++i)  // the first SGD step: p -= lr * (g + wd * p)
      want_params.push_back(params[i].detach() - 0.01 * (grads[i] + 1e-4 * params[i].detach()));
  }

  model = seeded_model("resnet18", cpu);
  resnet::Sgd sgd(model->parameters(), {0.01, 0.9, 1e-4});
  StepOptions options;
  options.mix = mix;
  options.label_smoothing = 0.1;
  options.clip_grad_norm = 0.5;
  resnet::TrainStep step(*model, sgd, options, cpu);
  torch::manual_seed(21);
  EXPECT_NEAR(step.run(data.images[0], data.labels[0]).item<double>(), want, 1e-5 * want);
  const auto got = model->parameters();
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_LE(resnet::test::relative_error(got[i], want_params[i]), 1e-5) << i;
}

TEST(TrainStep, MixingTurnedOffTrainsOnTheBatchAsItIs) {
  // --mixup-off-epoch: after set_mix({}) a step's loss is the plain (label-smoothed) loss of the
  // batch, and it draws nothing from the generator; set_mix with the same options changes nothing,
  // and turned back on the step mixes as a step made with them does.
  const torch::Device cpu(torch::kCPU);
  const auto data = random_batches(2, 6, 32, cpu);
  const resnet::MixOptions mix{0.4, 1.0};
  auto reference = seeded_model("resnet18", cpu);
  const auto logits = reference->forward(data.images[0]).detach();
  const double plain = torch::nn::functional::cross_entropy(
                           logits, data.labels[0], torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(0.1))
                           .item<double>();

  auto model = seeded_model("resnet18", cpu);
  resnet::Sgd sgd(model->parameters(), {0.01, 0.9, 1e-4});
  StepOptions options;
  options.mix = mix;
  options.label_smoothing = 0.1;
  resnet::TrainStep step(*model, sgd, options, cpu);
  EXPECT_FALSE(step.set_mix(mix));
  EXPECT_TRUE(step.set_mix({}));
  EXPECT_FALSE(step.set_mix({}));
  torch::manual_seed(5);
  EXPECT_NEAR(step.run(data.images[0], data.labels[0]).item<double>(), plain, 1e-5 * plain);
  const auto after_step = torch::rand({4});
  torch::manual_seed(5);
  EXPECT_TRUE(torch::equal(after_step, torch::rand({4}))) << "a step without mixing drew random numbers";

  // on again: the loss of mix_batch's draw on this batch, from the weights the first step left
  EXPECT_TRUE(step.set_mix(mix));
  torch::manual_seed(21);
  const auto mixed = resnet::mix_batch(data.images[1], data.labels[1], model->num_classes(), mix, 0.1);
  torch::Tensor want;
  {  // (train mode: the batch's own statistics, so the running ones this forward moves change nothing)
    torch::NoGradGuard no_grad;
    want = resnet::soft_cross_entropy(model->forward(mixed.images), mixed.targets);
  }
  torch::manual_seed(21);
  const double got = step.run(data.images[1], data.labels[1]).item<double>();
  EXPECT_NEAR(got, want.item<double>(), 1e-4 * want.item<double>());
}

TEST(TrainStep, SkipNonFiniteLeavesTheWeightsOfABadStep) {
  // --skip-nonfinite: a batch whose loss is NaN changes no weight; the next good one does.
  const torch::Device cpu(torch::kCPU);
  const auto data = random_batches(2, 4, 32, cpu);
  auto model = seeded_model("resnet18", cpu);
  resnet::Sgd sgd(model->parameters(), {0.01, 0.9, 1e-4});
  StepOptions options;
  options.skip_nonfinite = true;
  resnet::TrainStep step(*model, sgd, options, cpu);
  auto snapshot = [&] {  // copies: the state dict holds the model's own tensors
    auto named = resnet::state_dict(*model);
    for (auto& [name, t] : named) t = t.clone();
    return named;
  };
  const auto before = snapshot();
  auto bad = data.images[0].clone();
  bad[0][0][0][0] = std::nan("");
  EXPECT_TRUE(std::isnan(step.run(bad, data.labels[0]).item<double>()));
  const auto after_bad = snapshot();
  for (size_t i = 0; i < before.size(); ++i)
    if (before[i].first.find("weight") != std::string::npos || before[i].first.find("bias") != std::string::npos) {
      EXPECT_TRUE(torch::equal(before[i].second, after_bad[i].second)) << before[i].first;
    }
  EXPECT_TRUE(std::isfinite(step.run(data.images[1], data.labels[1]).item<double>()));
  const auto after_good = snapshot();
  EXPECT_FALSE(torch::equal(after_bad.front().second, after_good.front().second)) << "the good step updated nothing";
}

TEST(TrainStep, Bf16AndChannelsLastStayCloseToFp32OnTheCpu) {
  // Same weights and batches; the sample's learning rate. Step 0's loss is the forward pass alone,
  // later ones include the updates.
  const torch::Device cpu(torch::kCPU);
  const auto data = random_batches(3, 8, 32, cpu);
  const auto fp32 = step_losses("resnet18", data, StepOptions{}, cpu, nullptr, 0.001);
  const auto cl = step_losses("resnet18", data, StepOptions{Amp::kOff, /*channels_last=*/true, false}, cpu, nullptr, 0.001);
  const auto bf16 = step_losses("resnet18", data, StepOptions{Amp::kBf16, false, false}, cpu, nullptr, 0.001);
  EXPECT_LE(max_relative_gap(cl, fp32), 1e-5);
  // bf16 keeps 8 bits of mantissa: the forward pass and the first update agree to about a percent
  // (measured 0.27% and 0.19%). Random labels on 8 images make later steps chaotic (6% by step 2).
  EXPECT_LE(std::abs(bf16[0] - fp32[0]) / fp32[0], 1e-2);
  EXPECT_LE(std::abs(bf16[1] - fp32[1]) / fp32[1], 1e-2);
  EXPECT_GT(std::abs(bf16[0] - fp32[0]), 0.0) << "autocast changed nothing: is it on?";
}

TEST(Precision, ParsesFlagsAndRefusesFp16OnTheCpu) {
  const torch::Device cpu(torch::kCPU), cuda(torch::kCUDA, 0);
  EXPECT_EQ(resnet::parse_amp("auto", cpu), Amp::kOff);
  EXPECT_EQ(resnet::parse_amp("auto", cuda), Amp::kBf16);
  EXPECT_EQ(resnet::parse_amp("fp16", cuda), Amp::kFp16);
  EXPECT_THROW(resnet::parse_amp("fp16", cpu), resnet::UsageError);
  EXPECT_THROW(resnet::parse_amp("fp8", cuda), resnet::UsageError);
  EXPECT_TRUE(resnet::parse_channels_last("auto", cuda));
  EXPECT_FALSE(resnet::parse_channels_last("auto", cpu));
  EXPECT_THROW(resnet::parse_channels_last("yes", cpu), resnet::UsageError);
  const auto on_cpu = resnet::parse_step_options("auto", "auto", "auto", cpu, 32);
  EXPECT_EQ(on_cpu.amp, Amp::kOff);
  EXPECT_FALSE(on_cpu.channels_last);
  EXPECT_FALSE(on_cpu.cuda_graphs);
  EXPECT_EQ(on_cpu.main_batch, 32);
  EXPECT_THROW(resnet::parse_step_options("auto", "auto", "on", cpu), resnet::UsageError);
  EXPECT_THROW(resnet::parse_step_options("auto", "auto", "maybe", cpu), resnet::UsageError);
}

TEST(Precision, ChannelsLastKeepsParametersAndValues) {
  auto model = seeded_model("resnet18", torch::Device(torch::kCPU));
  const auto before = resnet::state_dict(*model);
  std::vector<torch::Tensor> copies;
  for (const auto& [name, t] : before) copies.push_back(t.clone());
  const auto* first = model->parameters()[0].unsafeGetTensorImpl();
  resnet::to_channels_last(*model);
  EXPECT_EQ(model->parameters()[0].unsafeGetTensorImpl(), first) << "the parameter object must stay";
  EXPECT_TRUE(model->parameters()[0].is_contiguous(at::MemoryFormat::ChannelsLast));
  const auto after = resnet::state_dict(*model);
  for (size_t i = 0; i < after.size(); ++i) EXPECT_TRUE(torch::equal(after[i].second, copies[i])) << after[i].first;
}

TEST(Sgd, LearningRateTensorAndValidation) {
  auto p = torch::ones({3});
  resnet::Sgd sgd({p}, {0.5, 0.0, 0.0});
  p.mutable_grad() = torch::ones({3});
  sgd.step();
  EXPECT_TRUE(torch::allclose(p, torch::full({3}, 0.5)));
  sgd.set_learning_rate(0.25);
  sgd.step();
  EXPECT_TRUE(torch::allclose(p, torch::full({3}, 0.25)));
  EXPECT_THROW(sgd.set_learning_rate(-1), resnet::UsageError);
  EXPECT_THROW(resnet::check_sgd_options({0.1, -5, 0}), resnet::UsageError);
  EXPECT_THROW(resnet::check_sgd_options({0.1, 0.9, std::nan("")}), resnet::UsageError);
}

TEST(Sgd, FusedCudaKernelMatchesTorchOptimSgdWithChannelsLast) {
  // The CUDA path (our one-launch kernel, hyperparameters read from the device) against LibTorch's
  // own SGD, on channels-last convolution weights (1x1 ones included), over 5 steps.
  if (!have_cuda()) GTEST_SKIP() << "no CUDA GPU visible";
  const torch::Device cuda(torch::kCUDA, 0);
  auto ours_model = seeded_model("resnet50", cuda);
  auto ref_model = seeded_model("resnet50", cuda);
  resnet::to_channels_last(*ours_model);
  resnet::Sgd ours(ours_model->parameters(), {0.01, 0.9, 1e-4});
  torch::optim::SGD ref(ref_model->parameters(), torch::optim::SGDOptions(0.01).momentum(0.9).weight_decay(1e-4));
  const auto a = ours_model->parameters(), b = ref_model->parameters();
  for (int step = 0; step < 5; ++step) {
    for (size_t i = 0; i < a.size(); ++i) {
      const auto g = torch::randn(a[i].sizes(), a[i].options());
      a[i].mutable_grad() = torch::empty_like(a[i]).copy_(g);  // the gradient takes the parameter's layout
      b[i].mutable_grad() = g.clone();
    }
    ours.step();
    ref.step();
  }
  for (size_t i = 0; i < a.size(); ++i) EXPECT_LE(resnet::test::relative_error(a[i], b[i]), 1e-6) << i;
}

TEST(Sgd, NewMomentumAndWeightDecayReachACapturedStep) {
  // The SGD step alone in a CUDA graph, beside torch::optim::SGD stepping eagerly; after the
  // capture, momentum, weight decay and rate change on both and must agree.
  if (!have_cuda()) GTEST_SKIP() << "no CUDA GPU visible";
  const torch::Device cuda(torch::kCUDA, 0);
  torch::manual_seed(1);
  const auto start = torch::randn({1000}, torch::TensorOptions().device(cuda));
  const auto grad = torch::randn({1000}, start.options());
  auto p = start.clone(), q = start.clone();
  p.mutable_grad() = grad.clone();
  q.mutable_grad() = grad.clone();
  resnet::Sgd ours({p}, {0.1, 0.9, 1e-2});
  torch::optim::SGD ref({q}, torch::optim::SGDOptions(0.1).momentum(0.9).weight_decay(1e-2));
  auto& ref_options = static_cast<torch::optim::SGDOptions&>(ref.param_groups()[0].options());
  resnet::CudaGraph graph(cuda, /*warmup_runs=*/2);
  for (int step = 0; step < 8; ++step) {
    if (step == 4) {  // captured at step 2
      ours.set_momentum(0.5);
      ours.set_weight_decay(0.1);
      ours.set_learning_rate(0.05);
      ref_options.momentum(0.5).weight_decay(0.1).lr(0.05);
    }
    graph.run([&] { ours.step(); });
    ref.step();
    EXPECT_LE(resnet::test::relative_error(p, q), 1e-6) << "step " << step;
  }
  EXPECT_TRUE(graph.captured());
  EXPECT_THROW(ours.set_momentum(0), resnet::UsageError);  // buffers cannot go away mid-run
}

TEST(LossScaler, SkipsAStepWithInfAndBacksOff) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA GPU visible";
  const torch::Device cuda(torch::kCUDA, 0);
  auto p = torch::ones({4}, torch::TensorOptions().device(cuda));
  resnet::Sgd sgd({p}, {0.1, 0.9, 0.0});
  resnet::LossScaler scaler(cuda);
  const double s0 = scaler.current_scale().item<double>();
  p.mutable_grad() = torch::full({4}, std::numeric_limits<float>::infinity(), p.options());
  scaler.step(sgd);
  EXPECT_TRUE(torch::equal(p.cpu(), torch::ones({4}))) << "an overflowing step must change nothing";
  EXPECT_EQ(scaler.current_scale().item<double>(), s0 * resnet::LossScaler::kBackoff);
  // A clean step: gradient s * 1 unscaled to 1, so p = 1 - 0.1 * 1.
  p.mutable_grad() = torch::full({4}, s0 * resnet::LossScaler::kBackoff, p.options());
  scaler.step(sgd);
  EXPECT_TRUE(torch::allclose(p.cpu(), torch::full({4}, 0.9)));
}

TEST(CudaGraphs, ReplaysGiveTheEagerLossesOver20Steps) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA GPU visible";
  const torch::Device cuda(torch::kCUDA, 0);
  const resnet::test::DeterministicCudnn deterministic;
  const auto data = random_batches(20, 16, 64, cuda);
  for (Amp amp : {Amp::kOff, Amp::kBf16, Amp::kFp16}) {
    const StepOptions eager{amp, true, false}, graphed{amp, true, true};
    std::shared_ptr<resnet::Classifier> a, b;
    const auto le = step_losses("resnet50", data, eager, cuda, &a);
    const auto lg = step_losses("resnet50", data, graphed, cuda, &b);
    // Deterministic cuDNN, same kernels in both: the graph replays what eager mode launches. The
    // tolerance leaves room for reductions whose order may differ between launches.
    EXPECT_LE(max_relative_gap(lg, le), 1e-3) << resnet::to_string(amp);
    // The loader writing straight into the graph's input buffer: the same replays.
    const auto lb = step_losses("resnet50", data, graphed, cuda, nullptr, 0.01, /*into_buffer=*/true);
    EXPECT_LE(max_relative_gap(lb, lg), 1e-6) << resnet::to_string(amp);
    const auto pa = a->parameters(), pb = b->parameters();
    for (size_t i = 0; i < pa.size(); i += 20)
      EXPECT_LE(resnet::test::relative_error(pb[i], pa[i]), 1e-3) << resnet::to_string(amp) << " parameter " << i;
  }
}

TEST(CudaGraphs, ANewImageSizeIsCapturedAfreshAndGivesTheEagerLosses) {
  // --progressive-resize: 8 steps at 32 px, then 8 at 64 px. The graphed step drops the first
  // size's graph, warms up and captures the second; its losses stay the eager step's throughout.
  if (!have_cuda()) GTEST_SKIP() << "no CUDA GPU visible";
  const torch::Device cuda(torch::kCUDA, 0);
  const resnet::test::DeterministicCudnn deterministic;
  auto data = random_batches(8, 16, 32, cuda);
  const auto larger = random_batches(8, 16, 64, cuda);
  data.images.insert(data.images.end(), larger.images.begin(), larger.images.end());
  data.labels.insert(data.labels.end(), larger.labels.begin(), larger.labels.end());
  for (Amp amp : {Amp::kBf16, Amp::kFp16}) {
    const StepOptions eager{amp, true, false}, graphed{amp, true, true};
    const auto le = step_losses("resnet50", data, eager, cuda);
    const auto lg = step_losses("resnet50", data, graphed, cuda);  // (fails unless captured at the end)
    EXPECT_LE(max_relative_gap(lg, le), 1e-3) << resnet::to_string(amp);
  }
}

TEST(CudaGraphs, MixingClippingAndSkippingRunInTheCapturedStep) {
  // --mixup/--cutmix (randperm and Beta draws on the device), --clip-grad-norm and
  // --skip-nonfinite inside the graph: captured (step_losses checks), the replays give the eager
  // losses (the generator's offsets advance alike), and a replayed step with a NaN image is
  // skipped in both (its loss NaN, the next ones still equal).
  if (!have_cuda()) GTEST_SKIP() << "no CUDA GPU visible";
  const torch::Device cuda(torch::kCUDA, 0);
  const resnet::test::DeterministicCudnn deterministic;
  auto data = random_batches(resnet::kGraphWarmupSteps + 5, 16, 64, cuda);
  const size_t bad = resnet::kGraphWarmupSteps + 2;  // a replay
  data.images[bad][0][0][0][0] = std::nan("");
  for (Amp amp : {Amp::kBf16, Amp::kFp16}) {
    StepOptions eager{amp, true, false};
    // Our bf16 kernels are deterministic; cuDNN's fused fp16 convolutions are not run to run
    // (0.2-0.7% apart in a loss at batch 16, measured), so fp16 compares ATen's path.
    eager.fused = amp == Amp::kBf16;
    eager.mix = {0.4, 1.0};
    eager.label_smoothing = 0.1;
    eager.clip_grad_norm = 1.0;
    eager.skip_nonfinite = true;
    StepOptions graphed = eager;
    graphed.cuda_graphs = true;
    std::shared_ptr<resnet::Classifier> a, b;
    const auto le = step_losses("resnet50", data, eager, cuda, &a);
    const auto lg = step_losses("resnet50", data, graphed, cuda, &b);
    for (size_t i = 0; i < le.size(); ++i) {
      if (i == bad) {
        EXPECT_TRUE(std::isnan(le[i]) && std::isnan(lg[i])) << resnet::to_string(amp) << " " << le[i] << " " << lg[i];
      } else {
        EXPECT_TRUE(std::isfinite(lg[i])) << resnet::to_string(amp) << " step " << i;
        EXPECT_LE(std::abs(lg[i] - le[i]), 1e-3 * std::abs(le[i])) << resnet::to_string(amp) << " step " << i;
      }
    }
    const auto pa = a->parameters(), pb = b->parameters();
    for (size_t i = 0; i < pa.size(); i += 20) {
      EXPECT_TRUE(torch::isfinite(pb[i]).all().item<bool>()) << resnet::to_string(amp) << " parameter " << i;
      EXPECT_LE(resnet::test::relative_error(pb[i], pa[i]), 1e-3) << resnet::to_string(amp) << " parameter " << i;
    }
  }
}

TEST(CudaGraphs, MixingTurnedOffIsCapturedAgain) {
  // --mixup-off-epoch under CUDA graphs: the graph captured with Mixup/CutMix is dropped when they
  // are turned off, and the new one's replays give the eager steps' losses without mixing.
  if (!have_cuda()) GTEST_SKIP() << "no CUDA GPU visible";
  const torch::Device cuda(torch::kCUDA, 0);
  const resnet::test::DeterministicCudnn deterministic;
  const int64_t warm = resnet::kGraphWarmupSteps;
  const auto data = random_batches(2 * (warm + 3), 16, 64, cuda);
  StepOptions eager{Amp::kBf16, true, false};
  eager.mix = {0.4, 1.0};
  eager.label_smoothing = 0.1;
  StepOptions graphed = eager;
  graphed.cuda_graphs = true;
  std::vector<double> losses[2];
  for (int g = 0; g < 2; ++g) {
    auto model = seeded_model("resnet50", cuda);
    resnet::to_channels_last(*model);
    resnet::Sgd sgd(model->parameters(), {0.01, 0.9, 1e-4});
    resnet::TrainStep step(*model, sgd, g ? graphed : eager, cuda);
    torch::manual_seed(3);
    for (size_t i = 0; i < data.images.size(); ++i) {
      if (i == static_cast<size_t>(warm + 3)) {
        if (g) {
          ASSERT_TRUE(step.captured()) << step.describe();
        }
        EXPECT_TRUE(step.set_mix({}));
        EXPECT_FALSE(step.captured());
      }
      losses[g].push_back(step.run(data.images[i], data.labels[i]).item<double>());
    }
    if (g) {
      EXPECT_TRUE(step.captured()) << "captured again without mixing: " << step.describe();
    }
  }
  for (size_t i = 0; i < losses[0].size(); ++i) {
    EXPECT_TRUE(std::isfinite(losses[1][i])) << "step " << i;
    EXPECT_LE(std::abs(losses[1][i] - losses[0][i]), 1e-3 * std::abs(losses[0][i])) << "step " << i;
  }
}

TEST(CudaGraphs, ANewLearningRateReachesTheCapturedStep) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA GPU visible";
  const torch::Device cuda(torch::kCUDA, 0);
  const auto data = random_batches(resnet::kGraphWarmupSteps + 3, 8, 64, cuda);
  auto model = seeded_model("resnet18", cuda);
  resnet::Sgd sgd(model->parameters(), {0.01, 0.9, 1e-4});
  resnet::TrainStep step(*model, sgd, StepOptions{Amp::kBf16, true, true}, cuda);
  for (int i = 0; i <= resnet::kGraphWarmupSteps; ++i) step.run(data.images[i], data.labels[i]);
  ASSERT_EQ(step.describe().rfind("CUDA graph", 0), 0u) << step.describe();
  // A batch of another size (an epoch's last) runs eagerly and leaves the graph in place.
  const auto odd = step.run(data.images[0].narrow(0, 0, 3), data.labels[0].narrow(0, 0, 3));
  EXPECT_TRUE(std::isfinite(odd.item<double>()));
  EXPECT_EQ(step.describe().rfind("CUDA graph (batch 8)", 0), 0u) << step.describe();
  sgd.set_learning_rate(0.0);  // p -= 0 * buf: the parameters must not move
  std::vector<torch::Tensor> before;
  for (const auto& p : model->parameters()) before.push_back(p.detach().clone());
  step.run(data.images.back(), data.labels.back());
  const auto after = model->parameters();
  for (size_t i = 0; i < after.size(); ++i) EXPECT_TRUE(torch::equal(after[i], before[i])) << i;
  sgd.set_learning_rate(0.01);
  step.run(data.images.back(), data.labels.back());
  EXPECT_FALSE(torch::equal(model->parameters()[0], before[0]));
}

TEST(CudaGraphs, GraphedEvaluationMatchesEager) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA GPU visible";
  const torch::Device cuda(torch::kCUDA, 0);
  const auto data = random_batches(resnet::kGraphWarmupSteps + 3, 8, 64, cuda);
  auto model = seeded_model("resnet50", cuda);
  resnet::to_channels_last(*model);
  model->eval();
  torch::InferenceMode guard;
  resnet::EvalStep eager(*model, StepOptions{Amp::kBf16, true, false}, cuda);
  resnet::EvalStep graphed(*model, StepOptions{Amp::kBf16, true, true}, cuda);
  for (size_t i = 0; i < data.images.size(); ++i) {
    const auto want = eager.logits(data.images[i]).clone();
    EXPECT_LE(resnet::test::relative_error(graphed.logits(data.images[i]), want), 1e-3) << "batch " << i;
  }
  EXPECT_TRUE(graphed.captured());
}

TEST(CudaGraphs, GraphedEvaluationWithShiftedViewsMatchesEager) {
  // Each view replays the graph, whose input buffer is also where the loader put the batch: every
  // view must still be made from the batch, not from the view before it. A model that sees where
  // things are (one logit per region), so a view taken from the wrong image changes the answer.
  if (!have_cuda()) GTEST_SKIP() << "no CUDA GPU visible";
  const torch::Device cuda(torch::kCUDA, 0);
  torch::manual_seed(11);
  resnet::LabeledImages data;
  const int64_t batch = 4, images = batch * (resnet::kGraphWarmupSteps + 3);
  data.labels = torch::randint(3, {images}, torch::kLong);
  data.images = torch::randint(256, {images, 3, 8, 8}, torch::kUInt8);
  data.classes = {"a", "b", "c"};
  auto source = resnet::in_memory_source(data, cuda, "toy");
  resnet::Loader loader(source, {batch, 8, /*train=*/false, 0, 0, 1, {}, {}}, cuda);
  resnet::test::RegionsModel model;
  resnet::EvalStep eager(model, StepOptions{Amp::kOff, false, false}, cuda);
  resnet::EvalStep graphed(model, StepOptions{Amp::kOff, false, true}, cuda);
  for (const resnet::TestViews views : {resnet::TestViews{true, 0}, resnet::TestViews{false, 2}, resnet::TestViews{true, 2}}) {
    const auto want = resnet::evaluate(eager, loader, nullptr, views);
    const auto got = resnet::evaluate(graphed, loader, nullptr, views);
    EXPECT_NEAR(got.loss, want.loss, 1e-5) << views.count() << " views";
    EXPECT_DOUBLE_EQ(got.accuracy, want.accuracy) << views.count() << " views";
  }
  EXPECT_TRUE(graphed.captured());
}
