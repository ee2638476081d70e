#include "ops/half_copies.h"

#include <stdexcept>

#ifdef RESNET_WITH_CUDA
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

// One launch: dst[i] = src[i] cast, element by element in memory order (dst laid out as src).
void cast_all(const std::vector<torch::Tensor>& src, const std::vector<torch::Tensor>& dst, cuda::Cast kind) {
  std::vector<cuda::CastTensor> list;
  for (size_t i = 0; i < src.size(); ++i)
    if (src[i].defined()) list.push_back({src[i].data_ptr(), dst[i].data_ptr(), src[i].numel()});
  cuda::cast_tensors(list.data(), static_cast<int>(list.size()), kind, cuda_tensors::sm_count(),
                     cuda_tensors::stream());
}

at::MemoryFormat layout_of(const torch::Tensor& t) {
  return t.dim() == 4 && !t.is_contiguous() ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
}

class HalfCopies : public torch::autograd::Function<HalfCopies> {
 public:
  static tensor_list forward(AutogradContext* ctx, at::TensorList weights) {
    RECORD_FUNCTION("resnet::half_copies", std::vector<c10::IValue>());
    const c10::cuda::CUDAGuard device_guard(weights[0].device());
    std::vector<torch::Tensor> src(weights.begin(), weights.end()), out;
    for (const torch::Tensor& w : src) out.push_back(at::empty_like(w, w.options().dtype(at::kHalf)));
    cast_all(src, out, cuda::Cast::kFloatToHalf);
    ctx->save_for_backward(src);  // for their layout (the parameters themselves: no extra memory)
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grad_outputs) {
    RECORD_FUNCTION("resnet::half_copies_backward", std::vector<c10::IValue>());
    const auto weights = ctx->get_saved_variables();
    const c10::cuda::CUDAGuard device_guard(weights[0].device());
    std::vector<torch::Tensor> src(weights.size()), grads(weights.size());
    for (size_t i = 0; i < weights.size(); ++i) {
      if (!grad_outputs[i].defined()) continue;
      // in the weight's element order, as its fp32 gradient will be
      src[i] = grad_outputs[i].to(at::kHalf).contiguous(layout_of(weights[i]));
      grads[i] = at::empty_like(weights[i]);
    }
    cast_all(src, grads, cuda::Cast::kHalfToFloat);
    return grads;
  }
};

}  // namespace

bool half_copies_supported(const std::vector<torch::Tensor>& weights) {
  if (weights.empty()) return false;
  for (const torch::Tensor& w : weights)
    if (!w.defined() || !w.is_cuda() || w.scalar_type() != at::kFloat || w.device() != weights[0].device() ||
        !(w.is_contiguous() || (w.dim() == 4 && w.is_contiguous(at::MemoryFormat::ChannelsLast))))
      return false;
  return true;
}

std::vector<torch::Tensor> half_copies(const std::vector<torch::Tensor>& weights) {
  if (!half_copies_supported(weights))
    throw std::invalid_argument("half_copies: weights it does not take (see half_copies_supported)");
  return HalfCopies::apply(at::TensorList(weights));
}

#else  // a build without CUDA: never supported

bool half_copies_supported(const std::vector<torch::Tensor>&) { return false; }

std::vector<torch::Tensor> half_copies(const std::vector<torch::Tensor>&) {
  throw std::invalid_argument("half_copies: this build has no CUDA");
}

#endif

}  // namespace resnet
