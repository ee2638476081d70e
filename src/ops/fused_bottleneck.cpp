#include "ops/fused_bottleneck.h"

#include <stdexcept>
#include <utility>

#ifdef RESNET_WITH_CUDA
#include <ATen/record_function.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/autograd.h>

#include "ops/cuda_kernels.h"
#include "ops/cuda_tensors.h"
#include "ops/fused_conv.h"
#endif

namespace resnet {

#ifdef RESNET_WITH_CUDA
namespace {

using namespace cuda_tensors;
using fused::ConvGeometry;
using fused::InputNorm;
using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

int64_t rows_of(const torch::Tensor& t) { return t.numel() / t.size(1); }

// One batch norm of the block after the forward: its statistics and the scale and shift they give.
struct Norm {
  torch::Tensor scale_shift, mean, invstd, scale_shift_half;  // the last for cuDNN's fp16 prologues
};

// From the sums a convolution's epilogue gave: mean, 1/std, scale and shift, running statistics.
Norm finalize(const torch::Tensor& sums, int64_t rows, const torch::Tensor& weight, const torch::Tensor& bias,
              torch::Tensor& running_mean, torch::Tensor& running_var, double momentum, double eps) {
  RECORD_FUNCTION("resnet::batch_norm_finalize", std::vector<c10::IValue>());
  const int64_t C = weight.size(0);
  const auto f32 = weight.options();
  Norm n{at::empty({2 * C}, f32), at::empty({C}, f32), at::empty({C}, f32), at::empty({2 * C}, f32.dtype(at::kHalf))};
  cuda::bn_finalize_sums(sums.data_ptr<float>(), rows, C, weight.data_ptr<float>(), bias.data_ptr<float>(),
                         running_mean.data_ptr<float>(), running_var.data_ptr<float>(), static_cast<float>(momentum),
                         static_cast<float>(eps), n.mean.data_ptr<float>(), n.invstd.data_ptr<float>(),
                         n.scale_shift.data_ptr<float>(), n.scale_shift_half.data_ptr(), stream());
  return n;
}

// out = relu(y * scale + shift + residual), the residual normalised too where residual_norm is given.
torch::Tensor block_end(const torch::Tensor& y, const Norm& n, const torch::Tensor& residual, const Norm* residual_norm) {
  RECORD_FUNCTION("resnet::batch_norm_apply", std::vector<c10::IValue>());
  torch::Tensor out = at::empty_like(y, at::MemoryFormat::ChannelsLast);
  cuda::bn_apply(cuda::Half::kFp16, y.data_ptr(), n.scale_shift.data_ptr<float>(), residual.data_ptr(),
                 residual_norm ? residual_norm->scale_shift.data_ptr<float>() : nullptr, out.data_ptr(),
                 rows_of(out), out.size(1), /*relu=*/true, sm_count(), stream());
  return out;
}

// Gradients of bn(x) [+ residual] [-> ReLU with output y]: dx, and d(residual) where asked.
struct BnGrads {
  torch::Tensor dx, dresidual, dweight, dbias;
};
BnGrads batch_norm_backward(const torch::Tensor& dy, const torch::Tensor& y, const torch::Tensor& x,
                            const torch::Tensor& weight, const torch::Tensor& mean, const torch::Tensor& invstd,
                            bool relu, bool want_dresidual) {
  RECORD_FUNCTION("resnet::batch_norm_act_backward", std::vector<c10::IValue>());
  const int64_t C = x.size(1);
  BnGrads g{at::empty_like(x, at::MemoryFormat::ChannelsLast),
            want_dresidual ? at::empty_like(x, at::MemoryFormat::ChannelsLast) : torch::Tensor(),
            at::empty({C}, weight.options()), at::empty({C}, weight.options())};
  cuda::bn_act_backward(cuda::Half::kFp16, dy.data_ptr(), relu ? y.data_ptr() : nullptr, x.data_ptr(), g.dx.data_ptr(),
                        want_dresidual ? g.dresidual.data_ptr() : nullptr, rows_of(x), C, weight.data_ptr<float>(),
                        mean.data_ptr<float>(), invstd.data_ptr<float>(), relu, g.dweight.data_ptr<float>(),
                        g.dbias.data_ptr<float>(), bn_workspace(rows_of(x), C, x).data_ptr<float>(), sm_count(),
                        stream());
  return g;
}

// The same for a downsample block's end, relu(bn3(y3) + bnd(yd)): both batch norms' gradients from
// one read of dy (masked by the ReLU of y where relu).
struct SavedNorm {
  const torch::Tensor &x, &weight, &mean, &invstd;
};
std::pair<BnGrads, BnGrads> batch_norm_pair_backward(const torch::Tensor& dy, const torch::Tensor& y,
                                                     const SavedNorm& first, const SavedNorm& second, bool relu) {
  RECORD_FUNCTION("resnet::batch_norm_pair_backward", std::vector<c10::IValue>());
  const int64_t C = first.x.size(1), rows = rows_of(first.x);
  auto grads = [&](const SavedNorm& n) {
    return BnGrads{at::empty_like(n.x, at::MemoryFormat::ChannelsLast), torch::Tensor(),
                   at::empty({C}, n.weight.options()), at::empty({C}, n.weight.options())};
  };
  std::pair<BnGrads, BnGrads> g{grads(first), grads(second)};
  auto side = [](const SavedNorm& n, BnGrads& d) {
    return cuda::BnBackwardSide{n.x.data_ptr(),           d.dx.data_ptr(),          n.weight.data_ptr<float>(),
                                n.mean.data_ptr<float>(), n.invstd.data_ptr<float>(), d.dweight.data_ptr<float>(),
                                d.dbias.data_ptr<float>()};
  };
  torch::Tensor scratch =
      at::empty({cuda::bn_pair_backward_workspace_floats(rows, C, sm_count())}, first.weight.options());
  cuda::bn_pair_backward(cuda::Half::kFp16, dy.data_ptr(), relu ? y.data_ptr() : nullptr, side(first, g.first),
                         side(second, g.second), rows, C, relu, scratch.data_ptr<float>(), sm_count(), stream());
  return g;
}

// A batch norm's input gradient from cuDNN's masked gradient and coefficients: a * g + b * x + c.
torch::Tensor grad_apply(const fused::DgradNorm& d, const torch::Tensor& x) {
  RECORD_FUNCTION("resnet::batch_norm_grad_apply", std::vector<c10::IValue>());
  torch::Tensor dx = at::empty_like(x, at::MemoryFormat::ChannelsLast);
  cuda::bn_grad_apply(cuda::Half::kFp16, d.grad.data_ptr(), x.data_ptr(), d.coef.data_ptr<float>(), dx.data_ptr(),
                      rows_of(x), x.size(1), sm_count(), stream());
  return dx;
}

InputNorm input_norm(const Norm& n, const torch::Tensor& weight, const torch::Tensor& bias) {
  return InputNorm{n.scale_shift, n.mean, n.invstd, weight, bias, n.scale_shift_half};
}

torch::Tensor half_nhwc(const torch::Tensor& w) {
  return w.to(at::kHalf).contiguous(at::MemoryFormat::ChannelsLast);
}

// Inputs, in this order: x, w1, g1, b1, w2, g2, b2, w3, g3, b3 [, wd, gd, bd]; buffers: running
// mean and variance of bn1, bn2, bn3 [, bnd]. Weights fp16 channels-last (cast by the caller, so
// that autograd casts their gradients back).
enum Input { kX, kW1, kG1, kB1, kW2, kG2, kB2, kW3, kG3, kB3, kWd, kGd, kBd };

class FusedBottleneck : public torch::autograd::Function<FusedBottleneck> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, at::TensorList in, at::TensorList buffers, int64_t stride,
                               double momentum, double eps, bool output_grad_masked) {
    RECORD_FUNCTION("resnet::fused_bottleneck", std::vector<c10::IValue>());
    const c10::cuda::CUDAGuard device_guard(in[kX].device());
    const bool ds = in.size() > kWd;
    std::vector<torch::Tensor> buf(buffers.begin(), buffers.end());
    const torch::Tensor& x = in[kX];
    auto c1 = fused::conv_stats(x, in[kW1], {}, {1, 0});
    Norm n1 = finalize(c1.sums, rows_of(c1.y), in[kG1], in[kB1], buf[0], buf[1], momentum, eps);
    auto c2 = fused::conv_stats(c1.y, in[kW2], input_norm(n1, in[kG1], in[kB1]), {stride, 1});
    Norm n2 = finalize(c2.sums, rows_of(c2.y), in[kG2], in[kB2], buf[2], buf[3], momentum, eps);
    auto c3 = fused::conv_stats(c2.y, in[kW3], input_norm(n2, in[kG2], in[kB2]), {1, 0});
    Norm n3 = finalize(c3.sums, rows_of(c3.y), in[kG3], in[kB3], buf[4], buf[5], momentum, eps);
    fused::ConvStats cd;
    Norm nd;
    if (ds) {
      cd = fused::conv_stats(x, in[kWd], {}, {stride, 0});
      nd = finalize(cd.sums, rows_of(cd.y), in[kGd], in[kBd], buf[6], buf[7], momentum, eps);
    }
    torch::Tensor out = block_end(c3.y, n3, ds ? cd.y : x, ds ? &nd : nullptr);
    std::vector<torch::Tensor> saved(in.begin(), in.end());
    for (const torch::Tensor& t : {c1.y, c2.y, c3.y, out, n1.scale_shift, n1.mean, n1.invstd, n2.scale_shift,
                                   n2.mean, n2.invstd, n3.mean, n3.invstd, n1.scale_shift_half, n2.scale_shift_half})
      saved.push_back(t);
    if (ds)
      for (const torch::Tensor& t : {cd.y, nd.mean, nd.invstd}) saved.push_back(t);
    ctx->save_for_backward(saved);
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["output_grad_masked"] = output_grad_masked;
    ctx->saved_data["inputs"] = static_cast<int64_t>(in.size());
    ctx->saved_data["buffers"] = static_cast<int64_t>(buffers.size());
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grad_outputs) {
    RECORD_FUNCTION("resnet::fused_bottleneck_backward", std::vector<c10::IValue>());
    const auto s = ctx->get_saved_variables();
    const int64_t stride = ctx->saved_data["stride"].toInt();
    const int64_t inputs = ctx->saved_data["inputs"].toInt(), buffers = ctx->saved_data["buffers"].toInt();
    const bool ds = inputs > kWd;
    const int64_t b = inputs;  // where the block's own saved tensors start
    const torch::Tensor &x = s[kX], &y1 = s[b], &y2 = s[b + 1], &y3 = s[b + 2], &out = s[b + 3];
    const Norm n1{s[b + 4], s[b + 5], s[b + 6], s[b + 12]}, n2{s[b + 7], s[b + 8], s[b + 9], s[b + 13]};
    const torch::Tensor &mean3 = s[b + 10], &invstd3 = s[b + 11];
    const c10::cuda::CUDAGuard device_guard(x.device());
    const torch::Tensor dout = nhwc(grad_outputs[0]);
    const bool masked = ctx->saved_data["output_grad_masked"].toBool();
    tensor_list grads(inputs + buffers + 4);

    // bn3 + residual + ReLU: dy3, and the gradient that reaches the residual (dout masked by the
    // ReLU; the next block masked it already where output_grad_masked). With a downsample
    // shortcut, bnd's gradients come from the same pass over dout.
    BnGrads g3;
    torch::Tensor dx_shortcut;
    if (ds) {
      const torch::Tensor &yd = s[b + 14], &meand = s[b + 15], &invstdd = s[b + 16];
      const auto both = batch_norm_pair_backward(dout, out, {y3, s[kG3], mean3, invstd3},
                                                 {yd, s[kGd], meand, invstdd}, /*relu=*/!masked);
      g3 = both.first;
      const BnGrads& gd = both.second;
      grads[kGd] = gd.dweight;
      grads[kBd] = gd.dbias;
      grads[kWd] = fused::wgrad(gd.dx, x, {}, s[kWd].sizes(), {stride, 0});
      dx_shortcut = fused::dgrad(gd.dx, s[kWd], x.sizes(), {stride, 0});
    } else {
      g3 = batch_norm_backward(dout, out, y3, s[kG3], mean3, invstd3, /*relu=*/!masked, /*want_dresidual=*/!masked);
      dx_shortcut = masked ? dout : g3.dresidual;
    }
    grads[kG3] = g3.dweight;
    grads[kB3] = g3.dbias;
    const torch::Tensor& dy3 = g3.dx;
    // conv3, whose input was relu(bn2(y2)); then bn2's input gradient
    const InputNorm in2 = input_norm(n2, s[kG2], s[kB2]);
    grads[kW3] = fused::wgrad(dy3, y2, in2, s[kW3].sizes(), {1, 0});
    fused::DgradNorm d2 = fused::dgrad_relu_bn(dy3, s[kW3], y2, in2, {1, 0});
    grads[kG2] = d2.dweight;
    grads[kB2] = d2.dbias;
    const torch::Tensor dy2 = grad_apply(d2, y2);
    // conv2 (the block's stride), input relu(bn1(y1))
    const InputNorm in1 = input_norm(n1, s[kG1], s[kB1]);
    grads[kW2] = fused::wgrad(dy2, y1, in1, s[kW2].sizes(), {stride, 1});
    fused::DgradNorm d1 = fused::dgrad_relu_bn(dy2, s[kW2], y1, in1, {stride, 1});
    grads[kG1] = d1.dweight;
    grads[kB1] = d1.dbias;
    const torch::Tensor dy1 = grad_apply(d1, y1);
    grads[kW1] = fused::wgrad(dy1, x, {}, s[kW1].sizes(), {1, 0});
    // conv1 on the block's input, plus the shortcut's gradient, masked by x > 0 (see the header)
    grads[kX] = fused::dgrad(dy1, s[kW1], x.sizes(), {1, 0}, dx_shortcut, x);
    return grads;
  }
};

bool fp16_nhwc_multiple_of_8(const torch::Tensor& t) {
  return nhwc_16_bit(t) && t.scalar_type() == at::kHalf && t.size(1) % 8 == 0;
}

bool conv_weight_ok(const torch::Tensor& w, int64_t in, int64_t k) {
  return w.defined() && w.dim() == 4 && w.size(1) == in && w.size(2) == k && w.size(3) == k && w.size(0) % 8 == 0 &&
         w.is_cuda() && (w.scalar_type() == at::kFloat || w.scalar_type() == at::kHalf);
}

bool bn_ok(const BatchNormParams& bn, int64_t channels, const torch::Device& device) {
  for (const auto* t : {&bn.weight, &bn.bias, &bn.running_mean, &bn.running_var})
    if (!t->defined() || t->scalar_type() != at::kFloat || t->dim() != 1 || t->size(0) != channels ||
        !t->is_contiguous() || t->device() != device)
      return false;
  return true;
}

}  // namespace

bool fused_bottleneck_params_supported(const BottleneckParams& p, int64_t in_channels, const torch::Device& device) {
  if (!fused::fused_conv_supported(device)) return false;
  const int64_t width = p.conv1.defined() ? p.conv1.size(0) : 0;
  const int64_t out = p.conv3.defined() ? p.conv3.size(0) : 0;
  if (in_channels % 8 != 0 || !conv_weight_ok(p.conv1, in_channels, 1) || !conv_weight_ok(p.conv2, width, 3) ||
      !conv_weight_ok(p.conv3, width, 1))
    return false;
  for (const auto* w : {&p.conv1, &p.conv2, &p.conv3})
    if (w->device() != device) return false;
  if (!bn_ok(p.bn1, width, device) || !bn_ok(p.bn2, width, device) || !bn_ok(p.bn3, out, device)) return false;
  if (p.downsample_conv.has_value() != p.downsample_bn.has_value()) return false;
  if (p.downsample_conv)
    return conv_weight_ok(*p.downsample_conv, in_channels, 1) && p.downsample_conv->device() == device &&
           bn_ok(*p.downsample_bn, out, device);
  return p.stride == 1 && out == in_channels;  // the identity shortcut
}

bool fused_bottleneck_supported(const torch::Tensor& x, const BottleneckParams& p) {
  return x.defined() && fp16_nhwc_multiple_of_8(x) && fused_bottleneck_params_supported(p, x.size(1), x.device());
}

torch::Tensor fused_bottleneck(const torch::Tensor& x, const BottleneckParams& p) {
  if (!fused_bottleneck_supported(x, p))
    throw std::invalid_argument("fused_bottleneck: inputs it does not take (see fused_bottleneck_supported)");
  std::vector<torch::Tensor> in{x,
                                half_nhwc(p.conv1), p.bn1.weight, p.bn1.bias,
                                half_nhwc(p.conv2), p.bn2.weight, p.bn2.bias,
                                half_nhwc(p.conv3), p.bn3.weight, p.bn3.bias};
  std::vector<torch::Tensor> buffers{p.bn1.running_mean, p.bn1.running_var, p.bn2.running_mean,
                                     p.bn2.running_var, p.bn3.running_mean, p.bn3.running_var};
  if (p.downsample_conv) {
    for (const torch::Tensor& t : {half_nhwc(*p.downsample_conv), p.downsample_bn->weight, p.downsample_bn->bias})
      in.push_back(t);
    buffers.push_back(p.downsample_bn->running_mean);
    buffers.push_back(p.downsample_bn->running_var);
  }
  return FusedBottleneck::apply(at::TensorList(in), at::TensorList(buffers), p.stride, p.bn1.momentum, p.bn1.eps,
                               p.output_grad_masked);
}

#else  // a build without CUDA: never supported

bool fused_bottleneck_params_supported(const BottleneckParams&, int64_t, const torch::Device&) { return false; }
bool fused_bottleneck_supported(const torch::Tensor&, const BottleneckParams&) { return false; }

torch::Tensor fused_bottleneck(const torch::Tensor&, const BottleneckParams&) {
  throw std::invalid_argument("fused_bottleneck: this build has no CUDA");
}

#endif

}  // namespace resnet
