#include "dist/sync_bn.h"

#include <torch/autograd.h>

namespace resnet {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

const std::vector<int64_t> kReduce{0, 2, 3};  // every dimension but the channels'

// [1, C, 1, 1] for broadcasting over x.
torch::Tensor per_channel(const torch::Tensor& v) { return v.view({1, -1, 1, 1}); }

class SyncBatchNorm : public torch::autograd::Function<SyncBatchNorm> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias, torch::Tensor running_mean, torch::Tensor running_var,
                               double momentum, double eps, Group* group) {
    const int64_t channels = x.size(1);
    const auto xf = x.to(torch::kFloat);
    // Sums in fp64: the variance as E[x^2] - E[x]^2 loses nothing over a large batch.
    const auto x64 = xf.to(torch::kDouble);
    auto stats = torch::cat({x64.sum(kReduce), x64.square().sum(kReduce),
                             torch::full({1}, static_cast<double>(x.numel() / channels), x64.options())});
    group->all_reduce(stats);
    const auto count = stats[2 * channels];
    const auto mean = stats.narrow(0, 0, channels) / count;
    const auto var = (stats.narrow(0, channels, channels) / count - mean.square()).clamp_min(0);
    const auto invstd = (var + eps).rsqrt().to(torch::kFloat);
    const auto mean32 = mean.to(torch::kFloat);
    {
      torch::NoGradGuard no_grad;
      const double n = count.item<double>();
      running_mean.mul_(1 - momentum).add_(mean32, momentum);
      running_var.mul_(1 - momentum).add_((var * (n / std::max(n - 1, 1.0))).to(torch::kFloat), momentum);
    }
    const auto y = (xf - per_channel(mean32)) * per_channel(invstd * weight) + per_channel(bias);
    ctx->save_for_backward({x, weight, mean32, invstd, count.to(torch::kFloat)});
    ctx->saved_data["group"] = reinterpret_cast<int64_t>(group);
    return y.to(x.scalar_type());
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &x = saved[0], &weight = saved[1], &mean = saved[2], &invstd = saved[3], &count = saved[4];
    auto* group = reinterpret_cast<Group*>(ctx->saved_data["group"].toInt());
    const int64_t channels = x.size(1);
    const auto dy = grad_outputs[0].to(torch::kFloat);
    const auto xmu = x.to(torch::kFloat) - per_channel(mean);
    const auto sum_dy = dy.sum(kReduce), sum_dy_xmu = (dy * xmu).sum(kReduce);
    // This process's share of the parameters' gradients: the gradient all-reduce averages them.
    const auto dweight = sum_dy_xmu * invstd, dbias = sum_dy;
    auto sums = torch::cat({sum_dy, sum_dy_xmu});
    group->all_reduce(sums);
    const auto mean_dy = sums.narrow(0, 0, channels) / count;
    const auto mean_dy_xmu = sums.narrow(0, channels, channels) / count;
    const auto dx = (dy - per_channel(mean_dy) - xmu * per_channel(invstd.square() * mean_dy_xmu)) *
                    per_channel(invstd * weight);
    return {dx.to(x.scalar_type()), dweight, dbias, torch::Tensor(), torch::Tensor(), torch::Tensor(),
            torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor sync_batch_norm(const torch::Tensor& x, const BatchNormParams& bn, Group& group) {
  return SyncBatchNorm::apply(x, bn.weight, bn.bias, bn.running_mean, bn.running_var, bn.momentum, bn.eps, &group);
}

}  // namespace resnet
