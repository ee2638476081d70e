// Every convolution shape of ResNet-50 (224 px) through the fused cuDNN graphs of ops/fused_conv.h,
// beside cuDNN's plain convolution as ATen runs it (fp16, channels-last, autotuned): whether cuDNN
// builds each graph, its time, and its error against an fp32 reference computed from the same
// fp16 inputs (TF32 off). Forward: conv + batch-norm statistics, with the previous batch norm and
// ReLU in the prologue for conv2/conv3; backward: dgrad (+ ReLU mask + batch-norm weight gradients
// for conv2/conv3) and wgrad (prologue recomputed). One JSON line per layer, then a table.
//
//   fused_conv_probe [--batch-size 256] [--runs 20] [--only NAME]
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAEvent.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "ops/cuda_kernels.h"
#include "ops/fused_conv.h"

namespace {

using resnet::fused::ConvGeometry;
using resnet::fused::InputNorm;

struct Layer {
  const char* name;
  int64_t cin, cout, k, stride, hin;
  bool prologue;  // its input is the previous batch norm + ReLU (conv2, conv3 of a bottleneck)
  int count;      // how many layers of ResNet-50 have this shape
};

const std::vector<Layer> kLayers = {
    {"layer1.0.conv1", 64, 64, 1, 1, 56, false, 1},        {"layer1.0.conv2", 64, 64, 3, 1, 56, true, 3},
    {"layer1.0.conv3", 64, 256, 1, 1, 56, true, 3},        {"layer1.0.downsample", 64, 256, 1, 1, 56, false, 1},
    {"layer1.1.conv1", 256, 64, 1, 1, 56, false, 2},       {"layer2.0.conv1", 256, 128, 1, 1, 56, false, 1},
    {"layer2.0.conv2", 128, 128, 3, 2, 56, true, 1},       {"layer2.0.conv3", 128, 512, 1, 1, 28, true, 4},
    {"layer2.0.downsample", 256, 512, 1, 2, 56, false, 1}, {"layer2.1.conv1", 512, 128, 1, 1, 28, false, 3},
    {"layer2.1.conv2", 128, 128, 3, 1, 28, true, 3},       {"layer3.0.conv1", 512, 256, 1, 1, 28, false, 1},
    {"layer3.0.conv2", 256, 256, 3, 2, 28, true, 1},       {"layer3.0.conv3", 256, 1024, 1, 1, 14, true, 6},
    {"layer3.0.downsample", 512, 1024, 1, 2, 28, false, 1}, {"layer3.1.conv1", 1024, 256, 1, 1, 14, false, 5},
    {"layer3.1.conv2", 256, 256, 3, 1, 14, true, 5},       {"layer4.0.conv1", 1024, 512, 1, 1, 14, false, 1},
    {"layer4.0.conv2", 512, 512, 3, 2, 14, true, 1},       {"layer4.0.conv3", 512, 2048, 1, 1, 7, true, 3},
    {"layer4.0.downsample", 1024, 2048, 1, 2, 14, false, 1}, {"layer4.1.conv1", 2048, 512, 1, 1, 7, false, 2},
    {"layer4.1.conv2", 512, 512, 3, 1, 7, true, 2},
};

double time_ms(const std::function<void()>& f, int runs) {
  for (int i = 0; i < 3; ++i) f();
  at::cuda::CUDAEvent start(cudaEventDefault), stop(cudaEventDefault);
  start.record();
  for (int i = 0; i < runs; ++i) f();
  stop.record();
  stop.synchronize();
  return start.elapsed_time(stop) / runs;
}

double rel(const torch::Tensor& a, const torch::Tensor& ref) {
  return ((a.to(torch::kDouble) - ref.to(torch::kDouble)).norm() / ref.to(torch::kDouble).norm().clamp_min(1e-30))
      .item<double>();
}

torch::Tensor nhwc(const torch::Tensor& t) { return t.contiguous(at::MemoryFormat::ChannelsLast); }

std::string fmt(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3g", v);
  return b;
}

struct Result {
  std::string name, error;
  double fwd = 0, fwd_ref = 0, dgrad = 0, dgrad_ref = 0, wgrad = 0, wgrad_ref = 0;
  std::vector<std::pair<std::string, double>> errors;
  int count = 1;
};

Result probe(const Layer& l, int64_t batch, int runs) {
  Result r;
  r.name = l.name;
  r.count = l.count;
  const auto opts = torch::TensorOptions().device(torch::kCUDA).dtype(torch::kHalf);
  const int64_t pad = l.k / 2, hout = (l.hin + 2 * pad - l.k) / l.stride + 1;
  const ConvGeometry geo{l.stride, pad};
  const std::vector<int64_t> stride2{l.stride, l.stride}, pad2{pad, pad}, dil{1, 1}, outpad{0, 0};
  torch::manual_seed(0);
  // the raw input (a previous convolution's output) and its batch norm
  torch::Tensor x = nhwc(torch::randn({batch, l.cin, l.hin, l.hin}, opts) * 0.5 + 0.2);
  torch::Tensor w = nhwc(torch::randn({l.cout, l.cin, l.k, l.k}, opts) * std::sqrt(2.0 / (l.cin * l.k * l.k)));
  torch::Tensor dy = nhwc(torch::randn({batch, l.cout, hout, hout}, opts));
  const auto f32 = opts.dtype(torch::kFloat);
  torch::Tensor xf = x.to(torch::kFloat);
  InputNorm in;
  if (l.prologue) {
    in.mean = xf.mean({0, 2, 3}).contiguous();
    in.invstd = (xf.var({0, 2, 3}, false) + 1e-5).rsqrt().contiguous();
    in.weight = (1 + 0.2 * torch::randn({l.cin}, f32)).contiguous();
    in.bias = (0.2 * torch::randn({l.cin}, f32)).contiguous();
    torch::Tensor scale = in.weight * in.invstd;
    in.scale_shift = torch::cat({scale, in.bias - in.mean * scale}).contiguous();
  }
  // fp32 reference of the convolution's input
  torch::Tensor ss = l.prologue ? in.scale_shift.view({2, l.cin, 1, 1}) : torch::Tensor();
  torch::Tensor pre = l.prologue ? xf * ss[0] + ss[1] : xf;
  torch::Tensor act = l.prologue ? torch::relu(pre) : xf;
  torch::Tensor wf = w.to(torch::kFloat), dyf = dy.to(torch::kFloat);

  at::globalContext().setAllowTF32CuDNN(false);
  torch::Tensor y_ref = at::convolution(act, wf, {}, stride2, pad2, dil, false, outpad, 1);
  auto [dx_full_ref, dw_ref, unused] =
      at::convolution_backward(dyf, act, wf, std::nullopt, stride2, pad2, dil, false, outpad, 1, {true, true, false});
  (void)unused;
  at::globalContext().setAllowTF32CuDNN(true);

  // ATen's plain fp16 convolutions (autotuned), what today's path runs
  r.fwd_ref = time_ms([&] { at::convolution(x, w, {}, stride2, pad2, dil, false, outpad, 1); }, runs);
  r.dgrad_ref = time_ms(
      [&] { at::convolution_backward(dy, x, w, std::nullopt, stride2, pad2, dil, false, outpad, 1, {true, false, false}); },
      runs);
  r.wgrad_ref = time_ms(
      [&] { at::convolution_backward(dy, x, w, std::nullopt, stride2, pad2, dil, false, outpad, 1, {false, true, false}); },
      runs);
  try {
    auto out = resnet::fused::conv_stats(x, w, in, geo);
    r.errors.push_back({"y", rel(out.y, y_ref)});
    r.errors.push_back({"sum", rel(out.sums.slice(0, 0, l.cout), y_ref.sum({0, 2, 3}))});
    r.errors.push_back({"sumsq", rel(out.sums.slice(0, l.cout), y_ref.square().sum({0, 2, 3}))});
    r.fwd = time_ms([&] { resnet::fused::conv_stats(x, w, in, geo); }, runs);
    if (l.prologue) {
      auto d = resnet::fused::dgrad_relu_bn(dy, w, x, in, geo);
      torch::Tensor g_ref = dx_full_ref * (pre > 0);
      torch::Tensor xhat = (xf - in.mean.view({1, -1, 1, 1})) * in.invstd.view({1, -1, 1, 1});
      torch::Tensor dgamma_ref = (g_ref * xhat).sum({0, 2, 3}), dbeta_ref = g_ref.sum({0, 2, 3});
      const double m = static_cast<double>(batch * l.hin * l.hin);
      torch::Tensor dx_ref = (in.weight * in.invstd).view({1, -1, 1, 1}) *
                             (g_ref - dbeta_ref.view({1, -1, 1, 1}) / m - xhat * dgamma_ref.view({1, -1, 1, 1}) / m);
      torch::Tensor coef = d.coef.view({3, l.cin, 1, 1});
      torch::Tensor dx = coef[0] * d.grad.to(torch::kFloat) + coef[1] * xf + coef[2];
      torch::Tensor dx_kernel = torch::empty_like(x);
      resnet::cuda::bn_grad_apply(resnet::cuda::Half::kFp16, d.grad.data_ptr(), x.data_ptr(),
                                  d.coef.data_ptr<float>(), dx_kernel.data_ptr(), batch * l.hin * l.hin, l.cin,
                                  at::cuda::getCurrentDeviceProperties()->multiProcessorCount,
                                  at::cuda::getCurrentCUDAStream());
      r.errors.push_back({"dgrad_masked", rel(d.grad, g_ref)});
      r.errors.push_back({"dgamma", rel(d.dweight, dgamma_ref)});
      r.errors.push_back({"dbeta", rel(d.dbias, dbeta_ref)});
      r.errors.push_back({"dx_via_coef", rel(dx, dx_ref)});
      r.errors.push_back({"dx_kernel", rel(dx_kernel, dx_ref)});
      r.dgrad = time_ms([&] { resnet::fused::dgrad_relu_bn(dy, w, x, in, geo); }, runs);
    } else {
      torch::Tensor dx = resnet::fused::dgrad(dy, w, x.sizes(), geo);
      r.errors.push_back({"dgrad", rel(dx, dx_full_ref)});
      r.dgrad = time_ms([&] { resnet::fused::dgrad(dy, w, x.sizes(), geo); }, runs);
    }
    torch::Tensor dw = resnet::fused::wgrad(dy, x, in, w.sizes(), geo);
    r.errors.push_back({"wgrad", rel(dw, dw_ref)});
    r.wgrad = time_ms([&] { resnet::fused::wgrad(dy, x, in, w.sizes(), geo); }, runs);
  } catch (const std::exception& e) {
    r.error = e.what();
  }
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t batch = 256;
  int runs = 20;
  std::string only;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--batch-size")) batch = std::stoll(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--runs")) runs = std::stoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--only")) only = argv[i + 1];
    else {
      std::fprintf(stderr, "fused_conv_probe: unknown flag %s (flags: --batch-size N --runs N --only NAME)\n", argv[i]);
      return 2;
    }
  }
  std::string why;
  if (!torch::cuda::is_available() || !resnet::fused::fused_conv_supported(torch::Device(torch::kCUDA, 0), &why)) {
    std::fprintf(stderr, "fused_conv_probe: %s\n", why.empty() ? "no CUDA GPU" : why.c_str());
    return 1;
  }
  at::globalContext().setBenchmarkCuDNN(true);
  torch::NoGradGuard no_grad;
  std::vector<Result> results;
  for (const Layer& l : kLayers) {
    if (!only.empty() && only != l.name) continue;
    Result r = probe(l, batch, runs);
    std::string errs;
    for (const auto& [k, v] : r.errors) errs += (errs.empty() ? "" : ",") + ("\"" + k + "\":" + fmt(v));
    std::printf(
        "{\"layer\":\"%s\",\"batch\":%lld,\"count\":%d,\"fwd_ms\":%.4f,\"fwd_ref_ms\":%.4f,\"dgrad_ms\":%.4f,"
        "\"dgrad_ref_ms\":%.4f,\"wgrad_ms\":%.4f,\"wgrad_ref_ms\":%.4f,\"errors\":{%s},\"error\":\"%s\"}\n",
        r.name.c_str(), static_cast<long long>(batch), r.count, r.fwd, r.fwd_ref, r.dgrad, r.dgrad_ref, r.wgrad,
        r.wgrad_ref, errs.c_str(), r.error.substr(0, 400).c_str());
    std::fflush(stdout);
    results.push_back(r);
  }
  double ours = 0, ref = 0;
  std::printf("\n| layer | x | fused fwd | conv fwd | fused dgrad | dgrad | fused wgrad | wgrad | worst rel. error |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|\n");
  for (const Result& r : results) {
    double worst = 0;
    for (const auto& e : r.errors) worst = std::max(worst, e.second);
    if (!r.error.empty()) {
      std::printf("| %s | %d | not built: %s |\n", r.name.c_str(), r.count, r.error.substr(0, 160).c_str());
      continue;
    }
    std::printf("| %s | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f | %.1e |\n", r.name.c_str(), r.count, r.fwd,
                r.fwd_ref, r.dgrad, r.dgrad_ref, r.wgrad, r.wgrad_ref, worst);
    ours += r.count * (r.fwd + r.dgrad + r.wgrad);
    ref += r.count * (r.fwd_ref + r.dgrad_ref + r.wgrad_ref);
  }
  std::printf("\nPer step (each shape times its count in ResNet-50's bottlenecks): fused %.2f ms, ATen's plain "
              "convolutions %.2f ms\n", ours, ref);
  std::printf("\ncuDNN graphs built:\n");
  for (const std::string& g : resnet::fused::fused_conv_graphs_built()) std::printf("  %s\n", g.c_str());
  return 0;
}
