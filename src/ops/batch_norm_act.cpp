#include "ops/batch_norm_act.h"

#include <stdexcept>

#ifdef RESNET_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <ATen/record_function.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/autograd.h>

#include "ops/cuda_kernels.h"
#include "ops/cuda_tensors.h"
#endif

namespace resnet {

#ifdef RESNET_WITH_CUDA
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

using namespace cuda_tensors;

// `residual` is an empty tensor where there is none: autograd's custom functions take no
// undefined tensor as input.
class BatchNormAct : public torch::autograd::Function<BatchNormAct> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& residual,
                               const torch::Tensor& weight, const torch::Tensor& bias, torch::Tensor running_mean,
                               torch::Tensor running_var, double momentum, double eps, bool relu) {
    RECORD_FUNCTION("resnet::batch_norm_act", std::vector<c10::IValue>());  // named for --trace
    const c10::cuda::CUDAGuard device_guard(x.device());
    const int64_t channels = x.size(1), rows = x.numel() / channels;
    torch::Tensor y = at::empty_like(x, at::MemoryFormat::ChannelsLast);
    const auto f32 = x.options().dtype(at::kFloat);
    torch::Tensor mean = at::empty({channels}, f32), invstd = at::empty({channels}, f32);
    torch::Tensor scratch = bn_workspace(rows, channels, x);
    const bool has_residual = residual.numel() > 0;
    cuda::bn_act_forward(half_type(x), x.data_ptr(), has_residual ? residual.data_ptr() : nullptr,
                         y.data_ptr(), rows, channels, weight.data_ptr<float>(), bias.data_ptr<float>(),
                         running_mean.data_ptr<float>(), running_var.data_ptr<float>(), static_cast<float>(momentum),
                         static_cast<float>(eps), relu, mean.data_ptr<float>(), invstd.data_ptr<float>(),
                         scratch.data_ptr<float>(), sm_count(), at::cuda::getCurrentCUDAStream().stream());
    // The output only for ReLU's mask: without ReLU (a downsample shortcut's batch norm) keeping
    // it would hold an activation to the backward pass that the forward frees (0.75 GiB at batch
    // 256 over ResNet-50's four shortcuts).
    ctx->save_for_backward({x, relu ? y : torch::Tensor(), weight, mean, invstd});
    ctx->saved_data["relu"] = relu;
    ctx->saved_data["residual"] = has_residual;
    return y;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grad_outputs) {
    RECORD_FUNCTION("resnet::batch_norm_act_backward", std::vector<c10::IValue>());
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &y = saved[1], &weight = saved[2], &mean = saved[3], &invstd = saved[4];
    const bool relu = ctx->saved_data["relu"].toBool();
    const bool has_residual = ctx->saved_data["residual"].toBool();
    const c10::cuda::CUDAGuard device_guard(x.device());
    const torch::Tensor dy = nhwc(grad_outputs[0]);
    const int64_t channels = x.size(1), rows = x.numel() / channels;
    torch::Tensor dx = at::empty_like(x, at::MemoryFormat::ChannelsLast);
    torch::Tensor dresidual = has_residual ? at::empty_like(x, at::MemoryFormat::ChannelsLast) : torch::Tensor();
    torch::Tensor dweight = at::empty_like(weight), dbias = at::empty_like(weight);
    torch::Tensor scratch = bn_workspace(rows, channels, x);
    cuda::bn_act_backward(half_type(x), dy.data_ptr(), relu ? y.data_ptr() : nullptr, x.data_ptr(), dx.data_ptr(),
                          has_residual ? dresidual.data_ptr() : nullptr, rows, channels, weight.data_ptr<float>(),
                          mean.data_ptr<float>(), invstd.data_ptr<float>(), relu, dweight.data_ptr<float>(),
                          dbias.data_ptr<float>(), scratch.data_ptr<float>(), sm_count(),
                          at::cuda::getCurrentCUDAStream().stream());
    return {dx, dresidual, dweight, dbias, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(),
            torch::Tensor()};
  }
};

class BatchNormReluMaxPool : public torch::autograd::Function<BatchNormReluMaxPool> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias, torch::Tensor running_mean, torch::Tensor running_var,
                               double momentum, double eps) {
    RECORD_FUNCTION("resnet::batch_norm_relu_maxpool", std::vector<c10::IValue>());
    const c10::cuda::CUDAGuard device_guard(x.device());
    const int64_t n = x.size(0), channels = x.size(1), h = x.size(2), w = x.size(3);
    torch::Tensor y = at::empty({n, channels, cuda::stem_pooled_side(h), cuda::stem_pooled_side(w)}, x.options(),
                                at::MemoryFormat::ChannelsLast);
    torch::Tensor argmax = at::empty(y.sizes(), x.options().dtype(at::kByte), at::MemoryFormat::ChannelsLast);
    const auto f32 = x.options().dtype(at::kFloat);
    torch::Tensor mean = at::empty({channels}, f32), invstd = at::empty({channels}, f32);
    torch::Tensor scratch = bn_workspace(n * h * w, channels, x);
    cuda::bn_relu_maxpool_forward(half_type(x), x.data_ptr(), y.data_ptr(), argmax.data_ptr<uint8_t>(), n, h, w,
                                  channels, weight.data_ptr<float>(), bias.data_ptr<float>(),
                                  running_mean.data_ptr<float>(), running_var.data_ptr<float>(),
                                  static_cast<float>(momentum), static_cast<float>(eps), mean.data_ptr<float>(),
                                  invstd.data_ptr<float>(), scratch.data_ptr<float>(), sm_count(), stream());
    ctx->save_for_backward({x, argmax, weight, bias, mean, invstd});
    return y;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grad_outputs) {
    RECORD_FUNCTION("resnet::batch_norm_relu_maxpool_backward", std::vector<c10::IValue>());
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &argmax = saved[1], &weight = saved[2], &bias = saved[3], &mean = saved[4],
                        &invstd = saved[5];
    const c10::cuda::CUDAGuard device_guard(x.device());
    const torch::Tensor dy = nhwc(grad_outputs[0]);
    const int64_t n = x.size(0), channels = x.size(1), h = x.size(2), w = x.size(3);
    torch::Tensor dx = at::empty_like(x, at::MemoryFormat::ChannelsLast);
    torch::Tensor dweight = at::empty_like(weight), dbias = at::empty_like(weight);
    torch::Tensor scratch = bn_workspace(n * h * w, channels, x);
    cuda::bn_relu_maxpool_backward(half_type(x), dy.data_ptr(), argmax.data_ptr<uint8_t>(), x.data_ptr(),
                                   dx.data_ptr(), n, h, w, channels, weight.data_ptr<float>(), bias.data_ptr<float>(),
                                   mean.data_ptr<float>(), invstd.data_ptr<float>(), dweight.data_ptr<float>(),
                                   dbias.data_ptr<float>(), scratch.data_ptr<float>(), sm_count(), stream());
    return {dx, dweight, dbias, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

bool batch_norm_relu_maxpool_supported(const torch::Tensor& x, const BatchNormParams& bn) {
  if (!batch_norm_act_supported(x, torch::Tensor(), bn)) return false;
  // the kernels' indexing: input rows and output threads (8 channels each) in 32 bits
  const int64_t pixels = x.size(0) * cuda::stem_pooled_side(x.size(2)) * cuda::stem_pooled_side(x.size(3));
  return x.size(0) * x.size(2) * x.size(3) < (int64_t{1} << 31) && pixels * (x.size(1) / 8) < (int64_t{1} << 31);
}

torch::Tensor batch_norm_relu_maxpool(const torch::Tensor& x, const BatchNormParams& bn) {
  if (!batch_norm_relu_maxpool_supported(x, bn))
    throw std::invalid_argument(
        "batch_norm_relu_maxpool: inputs its CUDA kernels do not take (see batch_norm_relu_maxpool_supported)");
  return BatchNormReluMaxPool::apply(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.momentum, bn.eps);
}

bool batch_norm_act_supported(const torch::Tensor& x, const torch::Tensor& residual, const BatchNormParams& bn) {
  if (!x.defined() || !nhwc_16_bit(x) || x.size(1) % 8 != 0 || x.numel() / x.size(1) < 2) return false;
  for (const auto* t : {&bn.weight, &bn.bias, &bn.running_mean, &bn.running_var})
    if (!fp32_vector(*t, x)) return false;
  return !residual.defined() || (nhwc_16_bit(residual) && residual.sizes() == x.sizes() &&
                                 residual.scalar_type() == x.scalar_type() && residual.device() == x.device());
}

torch::Tensor batch_norm_act(const torch::Tensor& x, const torch::Tensor& residual, const BatchNormParams& bn,
                             bool relu) {
  if (!batch_norm_act_supported(x, residual, bn))
    throw std::invalid_argument("batch_norm_act: inputs its CUDA kernels do not take (see batch_norm_act_supported)");
  const torch::Tensor none = residual.defined() ? torch::Tensor() : at::empty({0}, x.options());
  return BatchNormAct::apply(x, residual.defined() ? residual : none, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.momentum, bn.eps,
                             relu);
}

#else  // a build without CUDA: never supported

bool batch_norm_act_supported(const torch::Tensor&, const torch::Tensor&, const BatchNormParams&) { return false; }

torch::Tensor batch_norm_act(const torch::Tensor&, const torch::Tensor&, const BatchNormParams&, bool) {
  throw std::invalid_argument("batch_norm_act: this build has no CUDA");
}

bool batch_norm_relu_maxpool_supported(const torch::Tensor&, const BatchNormParams&) { return false; }

torch::Tensor batch_norm_relu_maxpool(const torch::Tensor&, const BatchNormParams&) {
  throw std::invalid_argument("batch_norm_relu_maxpool: this build has no CUDA");
}

#endif

}  // namespace resnet
