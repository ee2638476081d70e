// Our CUDA kernels (src/ops): batch norm + residual add + ReLU against ATen's batch_norm, add and
// relu in fp32 on the same 16-bit inputs, forward and backward, over shapes that exercise the
// tiling (few channels, many; channel counts that are not powers of two; few rows); where the op
// declines (it must, so callers fall back to ATen); and a ResNet training step with the fused
// kernels against the autograd path, eager and in a CUDA graph. GPU tests skip without one.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <ATen/autocast_mode.h>

#include "models/registry.h"
#include "models/resnet.h"
#include "ops/batch_norm_act.h"
#include "ops/half_copies.h"
#ifdef RESNET_WITH_CUDA
#include "ops/cuda_kernels.h"
#include "ops/cuda_tensors.h"
#endif
#include "train/precision.h"
#include "train/step.h"
#include "test_util.h"

namespace {

using resnet::test::relative_error;

bool have_cuda() { return torch::cuda::is_available(); }

struct Case {
  int64_t n, c, h, w;
  at::ScalarType type;
  bool relu, residual;
};

std::string name(const Case& k) {
  return std::to_string(k.n) + "x" + std::to_string(k.c) + "x" + std::to_string(k.h) + "x" + std::to_string(k.w) +
         (k.type == at::kBFloat16 ? " bf16" : " fp16") + (k.relu ? " relu" : "") + (k.residual ? " residual" : "");
}

}  // namespace

TEST(BatchNormAct, MatchesAtenForwardAndBackward) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA GPU visible";
  const auto cuda = torch::TensorOptions().device(torch::kCUDA, 0);
  std::vector<Case> cases;
  for (auto type : {at::kBFloat16, at::kHalf})
    for (bool relu : {true, false})
      for (bool residual : {true, false}) cases.push_back({4, 64, 16, 16, type, relu, residual});
  // 2048 channels over 8 block columns and only 18 rows; 24 (3 lanes) and 520 (5 lanes: 65 groups);
  // a stem-like 64 channels over 100k rows (hundreds of chunks).
  for (const Case& k : {Case{2, 2048, 3, 3, at::kBFloat16, true, true}, Case{3, 24, 5, 7, at::kBFloat16, true, false},
                        Case{2, 520, 4, 4, at::kHalf, false, true}, Case{8, 64, 112, 112, at::kBFloat16, true, false}})
    cases.push_back(k);

  torch::manual_seed(3);
  for (const Case& k : cases) {
    SCOPED_TRACE(name(k));
    const auto cl = at::MemoryFormat::ChannelsLast;
    // A mean far from zero tests the variance's cancellation.
    const auto x = (torch::randn({k.n, k.c, k.h, k.w}, cuda) * 2 + 3).to(k.type).contiguous(cl);
    const auto r = k.residual ? torch::randn({k.n, k.c, k.h, k.w}, cuda).to(k.type).contiguous(cl) : torch::Tensor();
    const auto dy = torch::randn({k.n, k.c, k.h, k.w}, cuda).to(k.type).contiguous(cl);
    const auto weight = (torch::rand({k.c}, cuda) + 0.5).requires_grad_();
    const auto bias = torch::randn({k.c}, cuda).requires_grad_();

    // Ours.
    resnet::BatchNormParams bn{weight, bias, torch::zeros({k.c}, cuda), torch::ones({k.c}, cuda), 0.1, 1e-5};
    ASSERT_TRUE(resnet::batch_norm_act_supported(x, r, bn));
    const auto xo = x.clone().requires_grad_();
    const auto ro = k.residual ? r.clone().requires_grad_() : torch::Tensor();
    const auto y = resnet::batch_norm_act(xo, ro, bn, k.relu);
    y.backward(dy);
    const auto dw = weight.grad().clone(), db = bias.grad().clone();
    weight.mutable_grad() = torch::Tensor();
    bias.mutable_grad() = torch::Tensor();

    // ATen in fp32 on the same values.
    const auto xr = x.to(torch::kFloat).requires_grad_();
    const auto rr = k.residual ? r.to(torch::kFloat).requires_grad_() : torch::Tensor();
    auto rm = torch::zeros({k.c}, cuda), rv = torch::ones({k.c}, cuda);
    auto yr = torch::batch_norm(xr, weight, bias, rm, rv, /*training=*/true, 0.1, 1e-5, /*cudnn_enabled=*/true);
    if (k.residual) yr = yr + rr;
    if (k.relu) yr = yr.relu();
    yr.backward(dy.to(torch::kFloat));

    EXPECT_EQ(y.scalar_type(), k.type);
    EXPECT_TRUE(y.is_contiguous(cl));
    // One rounding to 16 bits of values computed in fp32: bf16 keeps 8 bits (0.4% per value at
    // worst, about 0.2% over a tensor), fp16 11 bits.
    const double tol = k.type == at::kBFloat16 ? 6e-3 : 1e-3;
    EXPECT_LE(relative_error(y, yr), tol);
    EXPECT_LE(relative_error(xo.grad(), xr.grad()), 2 * tol);
    if (k.residual) {
      EXPECT_LE(relative_error(ro.grad(), rr.grad()), tol);
    }
    // fp32 sums over the same products: the only gap is where y is so near 0 that the ReLU's mask
    // differs between fp32 and 16-bit outputs.
    EXPECT_LE(relative_error(db, bias.grad()), 1e-3);
    EXPECT_LE(relative_error(dw, weight.grad()), 1e-3);
    EXPECT_LE(relative_error(bn.running_mean, rm), 1e-5);
    EXPECT_LE(relative_error(bn.running_var, rv), 1e-5);
  }
}

#ifdef RESNET_WITH_CUDA
TEST(BatchNormPairBackward, EqualsTwoSingleBackwardsBitwise) {
  // A downsample block's end, relu(bn(x1) + bn(x2)): the pair kernels (one read of dy per pass)
  // against bn_act_backward for the first batch norm (ReLU mask, residual gradient) and then for
  // the second on that residual gradient. Same sums in the same order: equal bit for bit.
  if (!have_cuda()) GTEST_SKIP() << "no CUDA GPU visible";
  using namespace resnet::cuda_tensors;
  const auto cuda = torch::TensorOptions().device(torch::kCUDA, 0);
  const auto cl = at::MemoryFormat::ChannelsLast;
  torch::manual_seed(4);
  for (const Case& k : {Case{4, 64, 10, 10, at::kHalf, true, true}, Case{4, 64, 10, 10, at::kHalf, false, true},
                        Case{3, 520, 5, 7, at::kBFloat16, true, true}, Case{16, 256, 28, 28, at::kHalf, false, true}}) {
    SCOPED_TRACE(name(k));
    const int64_t C = k.c, rows = k.n * k.h * k.w;
    auto act = [&] { return (torch::randn({k.n, k.c, k.h, k.w}, cuda) * 2 + 1).to(k.type).contiguous(cl); };
    auto vec = [&](double shift) { return torch::rand({C}, cuda) + shift; };
    const auto x1 = act(), x2 = act(), dy = act(), y = act();  // y: only its sign (the ReLU's mask) counts
    const auto w1 = vec(0.5), w2 = vec(0.5), mean1 = vec(0.5), mean2 = vec(0.5), invstd1 = vec(1), invstd2 = vec(1);
    const int sms = sm_count();

    std::vector<torch::Tensor> want;  // dx1, dx2, dw1, db1, dw2, db2
    for (int i = 0; i < 6; ++i) want.push_back(i < 2 ? torch::empty_like(x1, cl) : torch::empty({C}, cuda));
    const auto dres = torch::empty_like(x1, cl);
    auto scratch = torch::empty({resnet::cuda::bn_act_workspace_floats(rows, C, sms)}, cuda);
    const auto type = half_type(x1);
    resnet::cuda::bn_act_backward(type, dy.data_ptr(), y.data_ptr(), x1.data_ptr(), want[0].data_ptr(),
                                  k.relu ? dres.data_ptr() : nullptr, rows, C, w1.data_ptr<float>(),
                                  mean1.data_ptr<float>(), invstd1.data_ptr<float>(), k.relu, want[2].data_ptr<float>(),
                                  want[3].data_ptr<float>(), scratch.data_ptr<float>(), sms, stream());
    resnet::cuda::bn_act_backward(type, (k.relu ? dres : dy).data_ptr(), nullptr, x2.data_ptr(), want[1].data_ptr(),
                                  nullptr, rows, C, w2.data_ptr<float>(), mean2.data_ptr<float>(),
                                  invstd2.data_ptr<float>(), false, want[4].data_ptr<float>(),
                                  want[5].data_ptr<float>(), scratch.data_ptr<float>(), sms, stream());

    std::vector<torch::Tensor> got;
    for (const auto& t : want) got.push_back(torch::full_like(t, 7));
    auto pair_scratch = torch::empty({resnet::cuda::bn_pair_backward_workspace_floats(rows, C, sms)}, cuda);
    const resnet::cuda::BnBackwardSide first{x1.data_ptr(),           got[0].data_ptr(),         w1.data_ptr<float>(),
                                             mean1.data_ptr<float>(), invstd1.data_ptr<float>(), got[2].data_ptr<float>(),
                                             got[3].data_ptr<float>()};
    const resnet::cuda::BnBackwardSide second{x2.data_ptr(),           got[1].data_ptr(),         w2.data_ptr<float>(),
                                              mean2.data_ptr<float>(), invstd2.data_ptr<float>(), got[4].data_ptr<float>(),
                                              got[5].data_ptr<float>()};
    resnet::cuda::bn_pair_backward(type, dy.data_ptr(), k.relu ? y.data_ptr() : nullptr, first, second, rows, C,
                                   k.relu, pair_scratch.data_ptr<float>(), sms, stream());
    const char* names[] = {"dx1", "dx2", "dweight1", "dbias1", "dweight2", "dbias2"};
    for (int i = 0; i < 6; ++i) EXPECT_TRUE(torch::equal(got[i], want[i])) << names[i];
    EXPECT_GT(want[0].abs().sum().item<double>(), 0.0);  // not a pair of empty results
  }
}
#endif

TEST(HalfCopies, EqualToHalfAndTheirGradientsToFloat) {
  // On the CPU (and in a build without CUDA): never taken.
  EXPECT_FALSE(resnet::half_copies_supported({torch::randn({4, 4})}));
  EXPECT_THROW(resnet::half_copies({torch::randn({4, 4})}), std::invalid_argument);
  if (!have_cuda()) GTEST_SKIP() << "no CUDA GPU visible";
  const auto cuda = torch::TensorOptions().device(torch::kCUDA, 0);
  const auto cl = at::MemoryFormat::ChannelsLast;
  EXPECT_FALSE(resnet::half_copies_supported({}));
  EXPECT_FALSE(resnet::half_copies_supported({torch::randn({4, 4}, cuda).to(torch::kHalf)}));  // not fp32
  EXPECT_FALSE(resnet::half_copies_supported({torch::randn({4, 8}, cuda).narrow(1, 0, 4)}));  // not dense
  // More tensors than one launch takes (160), sizes from one element to past a block's 4,096, 3x3
  // convolution weights channels-last and 1x1 ones, values past fp16's range.
  torch::manual_seed(6);
  std::vector<torch::Tensor> weights;
  for (int i = 0; i < 170; ++i) {
    torch::Tensor w;
    if (i % 3 == 0) w = torch::randn({8 * (1 + i % 5), 16, 3, 3}, cuda).contiguous(cl);
    else if (i % 3 == 1) w = torch::randn({1 + i % 7, 24, 1, 1}, cuda);
    else w = torch::randn({1 + i * 37}, cuda);
    if (i == 5) w.view(-1)[0] = 1e6;  // inf in fp16
    weights.push_back(w.requires_grad_());
  }
  ASSERT_TRUE(resnet::half_copies_supported(weights));
  const auto copies = resnet::half_copies(weights);
  ASSERT_EQ(copies.size(), weights.size());
  std::vector<torch::Tensor> reference_weights, reference_copies, upstream;
  for (size_t i = 0; i < weights.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(copies[i].scalar_type(), torch::kHalf);
    EXPECT_EQ(copies[i].strides(), weights[i].strides());
    EXPECT_TRUE(torch::equal(copies[i], weights[i].to(torch::kHalf)));
    reference_weights.push_back(weights[i].detach().clone().requires_grad_());
    reference_copies.push_back(reference_weights.back().to(torch::kHalf));
    upstream.push_back(torch::randn_like(copies[i]));  // fp16 gradients, as the fused ops give
  }
  EXPECT_TRUE(torch::isinf(copies[5].view(-1)[0]).item<bool>());
  torch::autograd::backward(copies, upstream);
  torch::autograd::backward(reference_copies, upstream);
  for (size_t i = 0; i < weights.size(); ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(weights[i].grad().defined());
    EXPECT_EQ(weights[i].grad().scalar_type(), torch::kFloat);
    EXPECT_EQ(weights[i].grad().strides(), weights[i].strides());
    EXPECT_TRUE(torch::equal(weights[i].grad(), reference_weights[i].grad()));
  }
}

TEST(BatchNormReluMaxPool, MatchesAtenForwardAndBackward) {
  // The stem's op against ATen's batch_norm + relu + max_pool2d(3, 2, 1) in fp32 on the same
  // 16-bit input: even and odd sizes (windows over the edges), few and many rows, both types.
  if (!have_cuda()) GTEST_SKIP() << "no CUDA GPU visible";
  const auto cuda = torch::TensorOptions().device(torch::kCUDA, 0);
  torch::manual_seed(4);
  for (const Case& k : {Case{4, 64, 16, 16, at::kBFloat16, true, false}, Case{4, 64, 16, 16, at::kHalf, true, false},
                        Case{2, 24, 17, 15, at::kHalf, true, false}, Case{3, 16, 1, 2, at::kBFloat16, true, false},
                        Case{8, 64, 112, 112, at::kHalf, true, false}}) {
    SCOPED_TRACE(name(k));
    const auto cl = at::MemoryFormat::ChannelsLast;
    const auto x = (torch::randn({k.n, k.c, k.h, k.w}, cuda) * 2 + 1).to(k.type).contiguous(cl);
    const auto weight = (torch::rand({k.c}, cuda) + 0.5).requires_grad_();
    const auto bias = torch::randn({k.c}, cuda).requires_grad_();
    resnet::BatchNormParams bn{weight, bias, torch::zeros({k.c}, cuda), torch::ones({k.c}, cuda), 0.1, 1e-5};
    ASSERT_TRUE(resnet::batch_norm_relu_maxpool_supported(x, bn));
    const auto xo = x.clone().requires_grad_();
    const auto y = resnet::batch_norm_relu_maxpool(xo, bn);
    const auto dy = torch::randn(y.sizes(), cuda).to(k.type).contiguous(cl);
    y.backward(dy);
    const auto dw = weight.grad().clone(), db = bias.grad().clone();
    weight.mutable_grad() = torch::Tensor();
    bias.mutable_grad() = torch::Tensor();

    const auto xr = x.to(torch::kFloat).requires_grad_();
    auto rm = torch::zeros({k.c}, cuda), rv = torch::ones({k.c}, cuda);
    const auto yr = torch::max_pool2d(
        torch::batch_norm(xr, weight, bias, rm, rv, /*training=*/true, 0.1, 1e-5, /*cudnn_enabled=*/true).relu(), {3, 3},
        {2, 2}, {1, 1});
    yr.backward(dy.to(torch::kFloat));

    ASSERT_EQ(y.sizes(), yr.sizes());
    EXPECT_EQ(y.scalar_type(), k.type);
    EXPECT_TRUE(y.is_contiguous(cl));
    const double tol = k.type == at::kBFloat16 ? 6e-3 : 1e-3;  // as BatchNormAct's
    EXPECT_LE(relative_error(y, yr), tol);
    EXPECT_LE(relative_error(xo.grad(), xr.grad()), 2 * tol);
    EXPECT_LE(relative_error(db, bias.grad()), 1e-3);
    EXPECT_LE(relative_error(dw, weight.grad()), 1e-3);
    EXPECT_LE(relative_error(bn.running_mean, rm), 1e-5);
    EXPECT_LE(relative_error(bn.running_var, rv), 1e-5);
  }
}

TEST(BatchNormAct, ANaNInputGivesNaNAsAten) {
  // A NaN in the input makes its channels' statistics NaN: ATen's batch norm + relu (and max-pool)
  // then give NaN there, and so must ours (a ReLU written as fmaxf(x, 0) turned them into zeros,
  // and a training step fed a bad image reported a finite loss).
  if (!have_cuda()) GTEST_SKIP() << "no CUDA GPU visible";
  const auto cuda = torch::TensorOptions().device(torch::kCUDA, 0);
  const auto cl = at::MemoryFormat::ChannelsLast;
  for (auto type : {at::kBFloat16, at::kHalf}) {
    auto x = torch::randn({2, 16, 6, 6}, cuda).to(type).contiguous(cl);
    x[1][3][2][4] = std::nan("");  // channel 3
    resnet::BatchNormParams bn{torch::ones({16}, cuda), torch::zeros({16}, cuda), torch::zeros({16}, cuda),
                               torch::ones({16}, cuda), 0.1, 1e-5};
    const auto want = torch::batch_norm(x.to(torch::kFloat), bn.weight, bn.bias, bn.running_mean.clone(),
                                        bn.running_var.clone(), true, 0.1, 1e-5, true)
                          .relu();
    const auto y = resnet::batch_norm_act(x, torch::Tensor(), bn, /*relu=*/true);
    EXPECT_TRUE(torch::equal(torch::isnan(y), torch::isnan(want))) << torch::isnan(y).sum().item<int64_t>();
    EXPECT_GT(torch::isnan(want).sum().item<int64_t>(), 0);
    const auto pooled = resnet::batch_norm_relu_maxpool(x, bn);
    const auto pooled_want = torch::max_pool2d(want, {3, 3}, {2, 2}, {1, 1});
    EXPECT_TRUE(torch::equal(torch::isnan(pooled), torch::isnan(pooled_want)))
        << torch::isnan(pooled).sum().item<int64_t>() << " vs " << torch::isnan(pooled_want).sum().item<int64_t>();
  }
}

TEST(BatchNormAct, DeclinesWhatItsKernelsDoNotTake) {
  const auto cl = at::MemoryFormat::ChannelsLast;
  auto params = [](const torch::TensorOptions& o, int64_t c) {
    return resnet::BatchNormParams{torch::ones({c}, o), torch::zeros({c}, o), torch::zeros({c}, o), torch::ones({c}, o)};
  };
  const auto cpu = torch::TensorOptions();
  // On the CPU (and in any build without CUDA) never, whatever the tensors.
  EXPECT_FALSE(resnet::batch_norm_act_supported(torch::randn({2, 8, 4, 4}, cpu.dtype(torch::kBFloat16)).contiguous(cl),
                                                torch::Tensor(), params(cpu, 8)));
  EXPECT_THROW(resnet::batch_norm_act(torch::randn({2, 8, 4, 4}), torch::Tensor(), params(cpu, 8), true),
               std::invalid_argument);
  EXPECT_FALSE(resnet::batch_norm_relu_maxpool_supported(
      torch::randn({2, 8, 4, 4}, cpu.dtype(torch::kBFloat16)).contiguous(cl), params(cpu, 8)));
  EXPECT_THROW(resnet::batch_norm_relu_maxpool(torch::randn({2, 8, 4, 4}), params(cpu, 8)), std::invalid_argument);
  if (!have_cuda()) GTEST_SKIP() << "no CUDA GPU visible";
  const auto cuda = torch::TensorOptions().device(torch::kCUDA, 0);
  const auto good = torch::randn({2, 16, 4, 4}, cuda).to(torch::kBFloat16).contiguous(cl);
  EXPECT_TRUE(resnet::batch_norm_act_supported(good, torch::Tensor(), params(cuda, 16)));
  EXPECT_TRUE(resnet::batch_norm_act_supported(good, good, params(cuda, 16)));
  EXPECT_FALSE(resnet::batch_norm_act_supported(good.to(torch::kFloat), torch::Tensor(), params(cuda, 16)));  // fp32
  EXPECT_FALSE(resnet::batch_norm_act_supported(good.contiguous(), torch::Tensor(), params(cuda, 16)));  // NCHW
  EXPECT_FALSE(resnet::batch_norm_act_supported(good.narrow(1, 0, 12).contiguous(cl), torch::Tensor(),
                                                params(cuda, 12)));  // 12 channels: not a multiple of 8
  EXPECT_FALSE(resnet::batch_norm_act_supported(good.narrow(0, 0, 1).narrow(2, 0, 1).narrow(3, 0, 1).contiguous(cl),
                                                torch::Tensor(), params(cuda, 16)));  // one value a channel
  EXPECT_FALSE(resnet::batch_norm_act_supported(good, good.to(torch::kHalf), params(cuda, 16)));  // residual type
  EXPECT_FALSE(resnet::batch_norm_act_supported(good, torch::Tensor(), params(cuda, 8)));          // weight size
  EXPECT_TRUE(resnet::batch_norm_relu_maxpool_supported(good, params(cuda, 16)));
  EXPECT_FALSE(resnet::batch_norm_relu_maxpool_supported(good.contiguous(), params(cuda, 16)));  // NCHW
}

namespace {

std::shared_ptr<resnet::Classifier> seeded_resnet(const std::string& arch, const torch::Device& device) {
  torch::manual_seed(11);
  auto m = resnet::create_model(arch, 10);
  m->to(device);
  resnet::to_channels_last(*m);
  m->train();
  return m;
}

struct StepRun {
  std::vector<double> losses;
  std::shared_ptr<resnet::Classifier> model;
};

StepRun train_steps(const std::string& arch, resnet::StepOptions options, int steps, const torch::Device& device) {
  StepRun run{{}, seeded_resnet(arch, device)};
  resnet::Sgd sgd(run.model->parameters(), {0.01, 0.9, 1e-4});
  resnet::TrainStep step(*run.model, sgd, options, device);
  EXPECT_EQ(step.fused(), options.fused);
  torch::manual_seed(5);
  for (int i = 0; i < steps; ++i) {
    const auto images = torch::randn({8, 3, 64, 64}).to(device);
    const auto labels = torch::randint(10, {8}, torch::kLong).to(device);
    run.losses.push_back(step.run(images, labels).item<double>());
  }
  if (options.cuda_graphs) {
    EXPECT_TRUE(step.captured()) << step.describe();
  }
  return run;
}

}  // namespace

TEST(FusedResNet, TrainStepsMatchTheAutogradPath) {
  if (!have_cuda()) GTEST_SKIP() << "no CUDA GPU visible";
  const torch::Device cuda(torch::kCUDA, 0);
  const resnet::test::DeterministicCudnn deterministic;
  for (const std::string arch : {"resnet50", "resnet18"}) {
    SCOPED_TRACE(arch);
    const resnet::StepOptions autograd{resnet::Amp::kBf16, true, false, 0, false};
    const resnet::StepOptions fused{resnet::Amp::kBf16, true, false, 0, true};
    const resnet::StepOptions fused_graph{resnet::Amp::kBf16, true, true, 0, true};
    const auto a = train_steps(arch, autograd, 6, cuda);
    const auto f = train_steps(arch, fused, 6, cuda);
    const auto g = train_steps(arch, fused_graph, 6, cuda);
    // The paths round at different points and the network is chaotic at initialisation (see
    // EachBlockMatchesTheAutogradPath): the first loss (the forward pass alone) agrees to a few
    // percent (measured 2.1%), later ones only loosely.
    EXPECT_LE(std::abs(f.losses[0] - a.losses[0]) / a.losses[0], 5e-2);
    for (size_t i = 0; i < a.losses.size(); ++i) EXPECT_TRUE(std::isfinite(f.losses[i])) << i;
    // Our kernels are deterministic and cuDNN is made so: the graph replays what eager launches.
    for (size_t i = 0; i < f.losses.size(); ++i) EXPECT_LE(std::abs(g.losses[i] - f.losses[i]) / f.losses[i], 1e-4) << i;
    // The batch counter as BatchNorm2d keeps it (the statistics themselves: BatchNormAct tests).
    for (const auto& item : f.model->named_buffers()) {
      if (item.key().find("num_batches_tracked") != std::string::npos) {
        EXPECT_EQ(item.value().item<int64_t>(), 6) << item.key();
      }
    }
  }
}

TEST(FusedResNet, Fp16ConvolutionPathTrainSteps) {
  // fp16 + fused: every bottleneck runs as one op over cuDNN's fused convolutions
  // (ops/fused_bottleneck.h); the stem keeps our batch-norm kernels.
  if (!have_cuda()) GTEST_SKIP() << "no CUDA GPU visible";
  const torch::Device cuda(torch::kCUDA, 0);
  const resnet::test::DeterministicCudnn deterministic;
  const resnet::StepOptions autograd{resnet::Amp::kFp16, true, false, 0, false};
  const resnet::StepOptions fused{resnet::Amp::kFp16, true, false, 0, true};
  const resnet::StepOptions fused_graph{resnet::Amp::kFp16, true, true, 0, true};
  const auto a = train_steps("resnet50", autograd, 6, cuda);
  const auto f = train_steps("resnet50", fused, 6, cuda);
  const auto g = train_steps("resnet50", fused_graph, 6, cuda);
  // the forward pass alone (the first loss) agrees closely; later ones only loosely (chaotic)
  EXPECT_LE(std::abs(f.losses[0] - a.losses[0]) / a.losses[0], 5e-2);
  for (size_t i = 0; i < f.losses.size(); ++i) {
    EXPECT_TRUE(std::isfinite(f.losses[i])) << i;
    EXPECT_TRUE(std::isfinite(g.losses[i])) << i;
  }
  // The graph replays the eager step's kernels, but cuDNN's fused engines are not bitwise
  // deterministic (the order of their sums), and the untrained network amplifies that: the first
  // loss differed by 2.1e-3 and 2.3e-3 between two eager-vs-graph runs on an H100.
  for (size_t i = 0; i < f.losses.size(); ++i) EXPECT_LE(std::abs(g.losses[i] - f.losses[i]) / f.losses[i], 2e-2) << i;
  EXPECT_LE(std::abs(g.losses[0] - f.losses[0]) / f.losses[0], 1e-2);
  for (const auto& item : f.model->named_buffers())
    if (item.key().find("num_batches_tracked") != std::string::npos) {
      EXPECT_EQ(item.value().item<int64_t>(), 6) << item.key();
    }
}

TEST(FusedResNet, OnlyResNetsHaveFusedKernels) {
  EXPECT_TRUE(resnet::create_model("resnet50", 10)->set_fused(true));
  EXPECT_FALSE(resnet::create_model("squeezenet1_1", 10)->set_fused(true));
  const torch::Device cpu(torch::kCPU), cuda(torch::kCUDA, 0);
  resnet::StepOptions bf16_cl{resnet::Amp::kBf16, true, true};
  EXPECT_FALSE(resnet::parse_fused("auto", bf16_cl, cpu));
  EXPECT_THROW(resnet::parse_fused("on", bf16_cl, cpu), resnet::UsageError);
  EXPECT_THROW(resnet::parse_fused("yes", bf16_cl, cuda), resnet::UsageError);
  EXPECT_TRUE(resnet::parse_fused("auto", bf16_cl, cuda));
  EXPECT_FALSE(resnet::parse_fused("off", bf16_cl, cuda));
  EXPECT_FALSE(resnet::parse_fused("auto", resnet::StepOptions{resnet::Amp::kOff, true, true}, cuda));
  EXPECT_THROW(resnet::parse_fused("on", resnet::StepOptions{resnet::Amp::kOff, true, true}, cuda), resnet::UsageError);
  EXPECT_THROW(resnet::parse_fused("on", resnet::StepOptions{resnet::Amp::kBf16, false, true}, cuda),
               resnet::UsageError);
}

TEST(FusedResNet, EachBlockMatchesTheAutogradPath) {
  // ResNet-50 at initialisation (train mode, bf16) is chaotic: measured on an H100, scaling the
  // input by 1.0025 moves the logits by 37%, and fp32 and bf16 logits differ by 29%. So the paths
  // are compared block by block on the activations the model really produces (each block fused and
  // not, on the same input), and the whole model by its distance to fp32.
  if (!have_cuda()) GTEST_SKIP() << "no CUDA GPU visible";
  const torch::Device cuda(torch::kCUDA, 0);
  auto model = seeded_resnet("resnet50", cuda);
  torch::manual_seed(5);
  const auto images = torch::randn({8, 3, 64, 64}).to(cuda).contiguous(at::MemoryFormat::ChannelsLast);
  model->set_fused(false);
  const auto fp32 = model->forward(images);
  resnet::AutocastGuard autocast(resnet::Amp::kBf16, cuda);
  const auto unfused = model->forward(images).to(torch::kFloat);
  model->set_fused(true);
  const auto fused = model->forward(images).to(torch::kFloat);
  EXPECT_LE(relative_error(fused, fp32), 1.5 * relative_error(unfused, fp32));

  auto children = model->named_children();
  auto conv1 = children["conv1"]->as<torch::nn::Conv2dImpl>();
  auto bn1 = children["bn1"]->as<torch::nn::BatchNorm2dImpl>();
  const auto stem = conv1->forward(images);
  resnet::BatchNormParams params{bn1->weight, bn1->bias, bn1->running_mean.clone(), bn1->running_var.clone()};
  torch::Tensor x = resnet::batch_norm_act(stem, torch::Tensor(), params, true);
  EXPECT_LE(relative_error(x, bn1->forward(stem).relu()), 1e-2) << "stem";
  x = children["maxpool"]->as<torch::nn::MaxPool2dImpl>()->forward(x);
  int blocks = 0;
  for (const char* layer : {"layer1", "layer2", "layer3", "layer4"}) {
    for (const auto& child : children[layer]->named_children()) {
      auto* block = child.value()->as<resnet::BottleneckImpl>();
      ASSERT_NE(block, nullptr);
      block->mode.fused = false;
      const auto want = block->forward(x);
      block->mode.fused = true;
      const auto got = block->forward(x);
      // bf16 outputs of the same fp32 arithmetic, rounded at other points: measured 0.25-0.28%.
      EXPECT_LE(relative_error(got, want), 1e-2) << layer << "." << child.key();
      x = want;
      ++blocks;
    }
  }
  EXPECT_EQ(blocks, 16);
}
