// The fused bottleneck (ops/fused_bottleneck.h: cuDNN's fused convolutions + our batch-norm
// kernels, fp16) against the same torchvision block run by autograd in fp32 (TF32 off) on the same
// weights and the same input: output, every gradient and the running statistics. GPU tests skip
// without one; what the op declines is checked everywhere.
//
// Tolerances. fp16 rounds each stored value to 2^-11 = 4.9e-4 relative, and the probe
// (bench/fused_conv_probe) measured 2-4.5e-4 for each fused convolution alone. But a block's
// gradients are ill-conditioned in the test's terms: the loss sum(out * g) with random g makes the
// batch-norm sums (d(bias) = sum of g where out > 0 ...) sums of random signs, and a ReLU mask that
// flips for one value in a few thousand (fp16 noise near 0) moves them by percents. So the bound
// is relative to what fp16 itself does: the same block run by autograd under PyTorch's fp16
// autocast (ATen's kernels) on the same input, against the same fp32 reference. Ours must be within
// twice that error (or 5e-3, whichever is larger) for every output, gradient and running statistic.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <iostream>

#include "models/resnet.h"
#include "ops/fused_bottleneck.h"
#include "ops/fused_conv.h"
#include "train/precision.h"
#include "test_util.h"

namespace {

using resnet::test::relative_error;

struct BlockCase {
  int64_t inplanes, planes, stride;
  bool downsample;
};

resnet::Bottleneck make_block(const BlockCase& c, const torch::Device& device) {
  torch::manual_seed(3);
  torch::nn::Sequential ds{nullptr};
  if (c.downsample)
    ds = torch::nn::Sequential(
        torch::nn::Conv2d(torch::nn::Conv2dOptions(c.inplanes, c.planes * 4, 1).stride(c.stride).bias(false)),
        torch::nn::BatchNorm2d(c.planes * 4));
  resnet::Bottleneck block(c.inplanes, c.planes, c.stride, ds, 1, 64);
  // batch norms with weights and biases away from 1 and 0, so that their gradients matter
  for (auto& p : block->named_parameters()) {
    torch::NoGradGuard no_grad;
    if (p.key().find("bn") != std::string::npos || p.key().find("downsample.1") != std::string::npos)
      p.value().copy_(p.key().find("weight") != std::string::npos ? 1 + 0.3 * torch::randn(p.value().sizes())
                                                                  : 0.3 * torch::randn(p.value().sizes()));
  }
  block->to(device);
  for (auto& p : block->parameters())
    if (p.dim() == 4) {
      torch::NoGradGuard no_grad;
      p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
    }
  block->train();
  return block;
}

struct Outcome {
  torch::Tensor out, dx;
  std::map<std::string, torch::Tensor> grads, buffers;
};

// One forward and backward of the block on x with loss sum(out * g), g masked by out > 0 where
// `mask_g` (as the next fused block hands it back); buffers restored afterwards.
Outcome run(resnet::Bottleneck& block, const torch::Tensor& x_in, const torch::Tensor& g, bool mask_g = false) {
  std::map<std::string, torch::Tensor> before;
  for (const auto& b : block->named_buffers()) before[b.key()] = b.value().clone();
  block->zero_grad();
  torch::Tensor x = x_in.detach().clone(at::MemoryFormat::ChannelsLast).requires_grad_(true);
  Outcome o;
  o.out = block->forward(x);
  const torch::Tensor weight = mask_g ? g * (o.out.detach() > 0) : g;
  (o.out.to(torch::kFloat) * weight).sum().backward();
  o.dx = x.grad().to(torch::kFloat);
  for (const auto& p : block->named_parameters()) o.grads[p.key()] = p.value().grad().clone();
  for (const auto& b : block->named_buffers()) {
    o.buffers[b.key()] = b.value().clone();
    torch::NoGradGuard no_grad;
    b.value().copy_(before[b.key()]);
  }
  o.out = o.out.to(torch::kFloat);
  return o;
}

// Two blocks in a row, as ResNet::forward runs them: with `linked`, the first block takes its
// output gradient as the second hands it back, already masked by its output's ReLU (and skips its
// own mask); loss sum(out * g).
Outcome run_chain(resnet::Bottleneck& first, resnet::Bottleneck& second, const torch::Tensor& x_in,
                  const torch::Tensor& g, bool linked) {
  std::map<std::string, torch::Tensor> before;
  for (auto* b : {&first, &second})
    for (const auto& t : (*b)->named_buffers()) before[t.key() + (b == &first ? "@1" : "@2")] = t.value().clone();
  first->zero_grad();
  second->zero_grad();
  first->output_grad_masked = linked;
  torch::Tensor x = x_in.detach().clone(at::MemoryFormat::ChannelsLast).requires_grad_(true);
  Outcome o;
  o.out = second->forward(first->forward(x));
  (o.out.to(torch::kFloat) * g).sum().backward();
  o.dx = x.grad().to(torch::kFloat);
  for (auto* b : {&first, &second}) {
    const std::string tag = b == &first ? "first." : "second.";
    for (const auto& p : (*b)->named_parameters()) o.grads[tag + p.key()] = p.value().grad().clone();
    for (const auto& t : (*b)->named_buffers()) {
      o.buffers[tag + t.key()] = t.value().clone();
      torch::NoGradGuard no_grad;
      t.value().copy_(before[t.key() + (b == &first ? "@1" : "@2")]);
    }
  }
  first->output_grad_masked = false;
  o.out = o.out.to(torch::kFloat);
  return o;
}

// Ours within twice PyTorch's own fp16 error (autocast) or 5e-3 of the fp32 reference (see the top).
void check_against(const std::string& what, const torch::Tensor& ours, const torch::Tensor& aten,
                   const torch::Tensor& ref) {
  const double e = relative_error(ours, ref), e_amp = relative_error(aten, ref);
  std::cout << "  " << what << ": fused " << e << ", autocast fp16 " << e_amp << "\n";
  EXPECT_LE(e, std::max(2 * e_amp, 5e-3)) << what << " (autocast fp16: " << e_amp << ")";
}

// The GPU tests: skipped without a GPU where cuDNN fuses; TF32 off for the fp32 references.
class FusedBottleneckGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
    std::string why;
    if (!resnet::fused::fused_conv_supported(cuda, &why)) GTEST_SKIP() << why;
    tf32_ = at::globalContext().allowTF32CuDNN();
    at::globalContext().setAllowTF32CuDNN(false);
  }
  void TearDown() override { at::globalContext().setAllowTF32CuDNN(tf32_); }
  const torch::Device cuda{torch::kCUDA, 0};

 private:
  bool tf32_ = true;
};

}  // namespace

TEST_F(FusedBottleneckGpu, MatchesTheFp32BlockForwardAndBackward) {
  for (const BlockCase& c : {BlockCase{256, 64, 1, false}, BlockCase{64, 64, 1, true}, BlockCase{256, 128, 2, true}}) {
    SCOPED_TRACE(std::to_string(c.inplanes) + "->" + std::to_string(c.planes * 4) + " stride " +
                 std::to_string(c.stride) + (c.downsample ? " downsample" : ""));
    auto block = make_block(c, cuda);
    torch::manual_seed(7);
    // a previous block's output: non-negative, fp16
    const auto x16 = torch::relu(torch::randn({8, c.inplanes, 16, 16}, cuda)).to(torch::kHalf).contiguous(
        at::MemoryFormat::ChannelsLast);
    const int64_t side = 16 / c.stride;
    const auto g = torch::randn({8, c.planes * 4, side, side}, cuda);

    block->mode.fused = false;
    Outcome want = run(block, x16.to(torch::kFloat), g);
    Outcome amp;
    {
      resnet::AutocastGuard autocast(resnet::Amp::kFp16, cuda);
      amp = run(block, x16, g);  // PyTorch's own fp16 (autocast, ATen's kernels): fp16's error
    }
    // The fused block returns its input gradient masked by x > 0 (its input is a ReLU's output in
    // a ResNet, whose backward masks it anyway): the references are masked the same way.
    const auto mask = (x16 > 0).to(torch::kFloat);
    want.dx *= mask;
    amp.dx *= mask;
    block->mode.fused = true;
    for (const bool masked : {false, true}) {
      SCOPED_TRACE(masked ? "output gradient masked by the next block" : "output gradient as it comes");
      block->output_grad_masked = masked;
      const Outcome got = run(block, x16, g, masked);

      EXPECT_EQ(got.out.sizes(), want.out.sizes());
      check_against("output", got.out, amp.out, want.out);
      check_against("input gradient", got.dx, amp.dx, want.dx);
      for (const auto& [name, w] : want.grads) check_against(name + " gradient", got.grads.at(name), amp.grads.at(name), w);
      for (const auto& [name, w] : want.buffers) {
        if (name.find("num_batches_tracked") != std::string::npos) {
          EXPECT_TRUE(torch::equal(got.buffers.at(name), w)) << name;
        } else {
          check_against(name, got.buffers.at(name), amp.buffers.at(name), w);
        }
      }
    }
  }
}

TEST_F(FusedBottleneckGpu, TwoBlocksInARowMatchTheFp32Chain) {
  // The first block's output gradient as the second hands it back (masked in its conv1 dgrad's
  // epilogue) against the same two blocks in fp32 and in fp16 autocast.
  struct Pair {
    BlockCase first, second;
  };
  for (const Pair& c : {Pair{{256, 64, 1, false}, {256, 64, 1, false}}, Pair{{64, 64, 1, true}, {256, 64, 1, false}},
                        Pair{{256, 128, 2, true}, {512, 128, 1, false}}}) {
    SCOPED_TRACE(std::to_string(c.first.inplanes) + "->" + std::to_string(c.first.planes * 4) +
                 (c.first.downsample ? " downsample" : "") + ", then " + std::to_string(c.second.planes * 4));
    auto first = make_block(c.first, cuda);
    auto second = make_block(c.second, cuda);
    torch::manual_seed(11);
    const auto x16 = torch::relu(torch::randn({8, c.first.inplanes, 16, 16}, cuda)).to(torch::kHalf).contiguous(
        at::MemoryFormat::ChannelsLast);
    const int64_t side = 16 / c.first.stride;
    const auto g = torch::randn({8, c.second.planes * 4, side, side}, cuda);
    first->mode.fused = second->mode.fused = false;
    Outcome want = run_chain(first, second, x16.to(torch::kFloat), g, false);
    Outcome amp;
    {
      resnet::AutocastGuard autocast(resnet::Amp::kFp16, cuda);
      amp = run_chain(first, second, x16, g, false);
    }
    const auto mask = (x16 > 0).to(torch::kFloat);
    want.dx *= mask;
    amp.dx *= mask;
    first->mode.fused = second->mode.fused = true;
    const Outcome got = run_chain(first, second, x16, g, true);
    check_against("output", got.out, amp.out, want.out);
    check_against("input gradient", got.dx, amp.dx, want.dx);
    for (const auto& [name, w] : want.grads) check_against(name + " gradient", got.grads.at(name), amp.grads.at(name), w);
    for (const auto& [name, w] : want.buffers)
      if (name.find("num_batches_tracked") == std::string::npos)
        check_against(name, got.buffers.at(name), amp.buffers.at(name), w);
  }
}

TEST(FusedBottleneck, DeclinesWhatItDoesNotTake) {
  resnet::BottleneckParams p;
  const auto cpu = torch::randn({2, 64, 4, 4}).contiguous(at::MemoryFormat::ChannelsLast);
  EXPECT_FALSE(resnet::fused_bottleneck_supported(cpu, p));
  EXPECT_FALSE(resnet::fused_bottleneck_supported(cpu.to(torch::kHalf), p));
  EXPECT_THROW(resnet::fused_bottleneck(cpu, p), std::invalid_argument);
  std::string why;
  EXPECT_FALSE(resnet::fused::fused_conv_supported(torch::Device(torch::kCPU), &why));
  EXPECT_FALSE(why.empty());
}

TEST(FusedBottleneck, DeclinesOtherTypesAndLayoutsOnTheGpu) {
  resnet::BottleneckParams p;
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  const torch::Device cuda(torch::kCUDA, 0);
  if (!resnet::fused::fused_conv_supported(cuda)) GTEST_SKIP() << "cuDNN does not fuse on this GPU";
  auto block = make_block({256, 64, 1, false}, cuda);
  block->mode.fused = true;
  const auto x = torch::randn({2, 256, 8, 8}, cuda).contiguous(at::MemoryFormat::ChannelsLast);
  // a bf16 input (autocast bf16) takes our batch-norm kernels instead: the same shape out
  {
    resnet::AutocastGuard autocast(resnet::Amp::kBf16, cuda);
    EXPECT_EQ(block->forward(x.to(torch::kBFloat16)).sizes(), (std::vector<int64_t>{2, 256, 8, 8}));
  }
  EXPECT_FALSE(resnet::fused_bottleneck_supported(x.to(torch::kHalf).contiguous(), p));  // NCHW (and no weights)
  EXPECT_FALSE(resnet::fused_bottleneck_supported(x.to(torch::kBFloat16), p));
}
