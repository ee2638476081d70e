#include "models/resnet.h"

#include <torch/nn/functional/activation.h>
#include <torch/nn/init.h>

#include "ops/batch_norm_act.h"
#include "ops/fused_bottleneck.h"
#include "ops/fused_conv.h"
#include "ops/half_copies.h"

namespace resnet {
namespace {

namespace nn = torch::nn;

nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride = 1, int64_t groups = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).groups(groups).bias(false));
}

nn::Conv2d conv1x1(int64_t in, int64_t out, int64_t stride = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false));
}

// The parameters of a batch norm that normalises with batch statistics (training mode, affine,
// running statistics kept); nothing where it normalises otherwise.
std::optional<BatchNormParams> batch_stats_params(const nn::BatchNorm2d& bn) {
  const auto& o = bn->options;
  if (!bn->is_training() || !o.track_running_stats() || !o.affine() || !o.momentum()) return std::nullopt;
  return BatchNormParams{bn->weight, bn->bias, bn->running_mean, bn->running_var, *o.momentum(), o.eps()};
}

// The batch counters our batch norms advance during one ResNet::forward (53 in a ResNet-50 step),
// added to at its end in one kernel rather than a launch each; null outside it.
thread_local std::vector<torch::Tensor>* pending_counts = nullptr;

void count_batch(nn::BatchNorm2d& bn) {
  if (pending_counts) {
    pending_counts->push_back(bn->num_batches_tracked);
    return;
  }
  torch::NoGradGuard no_grad;
  bn->num_batches_tracked.add_(1);  // as BatchNorm2d's forward does
}

// Collects count_batch's counters for its lifetime; add() advances them all by one. A forward pass
// that throws advances none.
class BatchCounts {
 public:
  BatchCounts() : outer_(pending_counts) { pending_counts = &counts_; }
  ~BatchCounts() { pending_counts = outer_; }
  BatchCounts(const BatchCounts&) = delete;
  BatchCounts& operator=(const BatchCounts&) = delete;
  void add() {
    pending_counts = outer_;
    if (counts_.empty()) return;
    torch::NoGradGuard no_grad;
    torch::_foreach_add_(counts_, 1);
    counts_.clear();
  }

 private:
  std::vector<torch::Tensor> counts_;
  std::vector<torch::Tensor>* outer_;
};

// act(bn(x) [+ residual]): a replacement batch norm where the model was given one (training
// only); our fused kernels where `mode.fused` and they take the input (training on CUDA in
// bf16/fp16, channels-last); else ATen's ops with the ReLU in place, as torchvision's
// nn.ReLU(inplace=True) (one activation-sized buffer less per call).
torch::Tensor bn_act(nn::BatchNorm2d& bn, const torch::Tensor& x, const torch::Tensor& residual, bool relu,
                     const BatchNormMode& mode) {
  const std::optional<BatchNormParams> batch_stats = batch_stats_params(bn);
  if (batch_stats && (mode.replace || mode.fused)) {
    const BatchNormParams& params = *batch_stats;
    if (mode.replace || batch_norm_act_supported(x, residual, params)) {
      count_batch(bn);
      if (!mode.replace) return batch_norm_act(x, residual, params, relu);
      torch::Tensor out = mode.replace(x, params);
      if (residual.defined()) out = out + residual;
      return relu ? out.relu() : out;
    }
  }
  torch::Tensor out = bn(x);
  if (residual.defined()) out += residual;
  return relu ? out.relu_() : out;
}

// The downsample branch (conv1x1 + BatchNorm2d), through bn_act for its batch norm.
torch::Tensor shortcut(nn::Sequential& downsample, const torch::Tensor& x, const BatchNormMode& mode) {
  if (!downsample) return x;
  auto conv = std::dynamic_pointer_cast<nn::Conv2dImpl>(downsample->ptr(0));
  auto bn = nn::BatchNorm2d(std::dynamic_pointer_cast<nn::BatchNorm2dImpl>(downsample->ptr(1)));
  return bn_act(bn, conv->forward(x), torch::Tensor(), /*relu=*/false, mode);
}

}  // namespace

BasicBlockImpl::BasicBlockImpl(int64_t inplanes, int64_t planes, int64_t stride,
                               nn::Sequential downsample_in) {
  conv1 = register_module("conv1", conv3x3(inplanes, planes, stride));
  bn1 = register_module("bn1", nn::BatchNorm2d(planes));
  conv2 = register_module("conv2", conv3x3(planes, planes));
  bn2 = register_module("bn2", nn::BatchNorm2d(planes));
  if (downsample_in) downsample = register_module("downsample", downsample_in);
}

torch::Tensor BasicBlockImpl::forward(torch::Tensor x) {
  const torch::Tensor identity = shortcut(downsample, x, mode);
  torch::Tensor out = bn_act(bn1, conv1(x), torch::Tensor(), true, mode);
  return bn_act(bn2, conv2(out), identity, true, mode);
}

BottleneckImpl::BottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride,
                               nn::Sequential downsample_in, int64_t groups, int64_t width_per_group) {
  // torchvision: width = int(planes * (base_width / 64.0)) * groups
  const int64_t width = planes * width_per_group / 64 * groups;
  conv1 = register_module("conv1", conv1x1(inplanes, width));
  bn1 = register_module("bn1", nn::BatchNorm2d(width));
  conv2 = register_module("conv2", conv3x3(width, width, stride, groups));
  bn2 = register_module("bn2", nn::BatchNorm2d(width));
  conv3 = register_module("conv3", conv1x1(width, planes * kExpansion));
  bn3 = register_module("bn3", nn::BatchNorm2d(planes * kExpansion));
  if (downsample_in) downsample = register_module("downsample", downsample_in);
}

std::optional<BottleneckParams> BottleneckImpl::fused_params() {
  if (!mode.fused || mode.replace || conv2->options.groups() != 1) return std::nullopt;
  auto b1 = batch_stats_params(bn1), b2 = batch_stats_params(bn2), b3 = batch_stats_params(bn3);
  if (!b1 || !b2 || !b3) return std::nullopt;
  const std::vector<torch::Tensor> w = half_weights.empty() ? conv_weights() : half_weights;
  BottleneckParams p{w[0], w[1], w[2], *b1, *b2, *b3, conv2->options.stride()->at(0), std::nullopt, std::nullopt};
  if (downsample) {
    auto conv = std::dynamic_pointer_cast<nn::Conv2dImpl>(downsample->ptr(0));
    auto bn = nn::BatchNorm2d(std::dynamic_pointer_cast<nn::BatchNorm2dImpl>(downsample->ptr(1)));
    auto bd = batch_stats_params(bn);
    if (!bd || conv->options.stride()->at(0) != p.stride) return std::nullopt;
    p.downsample_conv = w[3];
    p.downsample_bn = *bd;
  }
  // everything but the input's type and layout, so that ResNet::forward can tell which blocks fuse
  if (!fused_bottleneck_params_supported(p, conv1->weight.size(1), conv1->weight.device())) return std::nullopt;
  p.output_grad_masked = output_grad_masked;
  return p;
}

std::vector<torch::Tensor> BottleneckImpl::conv_weights() const {
  std::vector<torch::Tensor> w{conv1->weight, conv2->weight, conv3->weight};
  if (downsample) w.push_back(std::dynamic_pointer_cast<nn::Conv2dImpl>(downsample->ptr(0))->weight);
  return w;
}

torch::Tensor BottleneckImpl::forward(torch::Tensor x) {
  // fp16 training on a GPU where cuDNN fuses: the whole block as one op (ops/fused_bottleneck.h)
  const auto p = fused_params();
  if (p && fused_bottleneck_supported(x, *p)) {
    for (auto* bn : {&bn1, &bn2, &bn3}) count_batch(*bn);
    if (downsample) {
      auto bn = nn::BatchNorm2d(std::dynamic_pointer_cast<nn::BatchNorm2dImpl>(downsample->ptr(1)));
      count_batch(bn);
    }
    return fused_bottleneck(x, *p);
  }
  const torch::Tensor identity = shortcut(downsample, x, mode);
  torch::Tensor out = bn_act(bn1, conv1(x), torch::Tensor(), true, mode);
  out = bn_act(bn2, conv2(out), torch::Tensor(), true, mode);
  return bn_act(bn3, conv3(out), identity, true, mode);
}

ResNet::ResNet(std::string arch, const ResNetConfig& config)
    : Classifier(std::move(arch), config.num_classes), config_(config) {
  conv1 = register_module(
      "conv1", nn::Conv2d(nn::Conv2dOptions(3, inplanes_, 7).stride(2).padding(3).bias(false)));
  bn1 = register_module("bn1", nn::BatchNorm2d(inplanes_));
  maxpool = register_module("maxpool", nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1)));
  layer1 = register_module("layer1", make_layer(64, config.layers[0], 1));
  layer2 = register_module("layer2", make_layer(128, config.layers[1], 2));
  layer3 = register_module("layer3", make_layer(256, config.layers[2], 2));
  layer4 = register_module("layer4", make_layer(512, config.layers[3], 2));
  fc = register_module("fc", nn::Linear(inplanes_, config.num_classes));

  // torchvision's initialisation; Linear keeps LibTorch's default, which equals PyTorch's.
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* conv = module->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(conv->weight, /*a=*/0, torch::kFanOut, torch::kReLU);
    } else if (auto* bn = module->as<nn::BatchNorm2d>()) {
      nn::init::ones_(bn->weight);
      nn::init::zeros_(bn->bias);
    }
  }
}

nn::Sequential ResNet::make_layer(int64_t planes, int64_t blocks, int64_t stride) {
  const bool basic = config_.block == BlockKind::kBasic;
  const int64_t expansion = basic ? BasicBlockImpl::kExpansion : BottleneckImpl::kExpansion;
  nn::Sequential layer;
  for (int64_t i = 0; i < blocks; ++i) {
    const int64_t block_stride = i == 0 ? stride : 1;
    nn::Sequential downsample{nullptr};
    if (i == 0 && (stride != 1 || inplanes_ != planes * expansion)) {
      downsample = nn::Sequential(conv1x1(inplanes_, planes * expansion, stride),
                                  nn::BatchNorm2d(planes * expansion));
    }
    if (basic) {
      layer->push_back(BasicBlock(inplanes_, planes, block_stride, downsample));
    } else {
      layer->push_back(Bottleneck(inplanes_, planes, block_stride, downsample, config_.groups,
                                  config_.width_per_group));
    }
    inplanes_ = planes * expansion;
  }
  return layer;
}

void ResNet::set_mode(const BatchNormMode& mode) {
  mode_ = mode;
  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* block = module->as<BasicBlockImpl>()) block->mode = mode;
    if (auto* block = module->as<BottleneckImpl>()) block->mode = mode;
  }
}

bool ResNet::set_fused(bool on) {
  BatchNormMode mode = mode_;
  mode.fused = on;
  set_mode(mode);
  return true;
}

std::string ResNet::fused_description(bool fp16, const c10::Device& device) const {
  if (fp16 && config_.block == BlockKind::kBottleneck && config_.groups == 1 && fused::fused_conv_supported(device))
    return "fused convolutions + batch norm (cuDNN graphs)";
  return "fused batch norm";
}

bool ResNet::set_batch_norm(BatchNormFn fn) {
  BatchNormMode mode = mode_;
  mode.replace = std::move(fn);
  set_mode(mode);
  return true;
}

bool ResNet::zero_init_residual() {
  const std::string last = config_.block == BlockKind::kBottleneck ? ".bn3.weight" : ".bn2.weight";
  torch::NoGradGuard no_grad;
  for (auto& p : named_parameters()) {
    const std::string& name = p.key();
    if (name.rfind("layer", 0) == 0 && name.size() > last.size() &&
        name.compare(name.size() - last.size(), last.size(), last) == 0)
      p.value().zero_();
  }
  return true;
}

// bn1 + ReLU + max-pool: in one op of our kernels where the fused kernels run (training on CUDA
// in bf16/fp16, channels-last), else as bn_act and the module's max-pool.
torch::Tensor ResNet::stem(const torch::Tensor& x) {
  const std::optional<BatchNormParams> batch_stats = batch_stats_params(bn1);
  if (mode_.fused && !mode_.replace && batch_stats && batch_norm_relu_maxpool_supported(x, *batch_stats)) {
    count_batch(bn1);
    return batch_norm_relu_maxpool(x, *batch_stats);
  }
  return maxpool(bn_act(bn1, x, torch::Tensor(), true, mode_));
}

torch::Tensor ResNet::run_layer(nn::Sequential& layer, const torch::Tensor& x) {
  std::vector<BottleneckImpl*> blocks;
  std::vector<torch::Tensor> weights;
  std::vector<size_t> ends;  // where each block's weights end in `weights`
  bool fused = mode_.fused;
  for (auto& child : layer->children()) {
    auto* block = child->as<BottleneckImpl>();
    const auto p = block ? block->fused_params() : std::nullopt;
    // the first block's input is x; the others' the output of a fused block, which they take
    if (!p || (blocks.empty() && !fused_bottleneck_supported(x, *p))) fused = false;
    if (!fused) break;
    blocks.push_back(block);
    for (const torch::Tensor& w : block->conv_weights()) weights.push_back(w);
    ends.push_back(weights.size());
  }
  if (!fused || !half_copies_supported(weights)) return layer->forward(x);
  // the copies live for this forward pass only (autograd keeps what backward needs)
  struct Clear {
    std::vector<BottleneckImpl*>& blocks;
    ~Clear() {
      for (auto* block : blocks) block->half_weights.clear();
    }
  } clear{blocks};
  const std::vector<torch::Tensor> halves = half_copies(weights);
  for (size_t i = 0; i < blocks.size(); ++i)
    blocks[i]->half_weights.assign(halves.begin() + (i ? ends[i - 1] : 0), halves.begin() + ends[i]);
  return layer->forward(x);
}

torch::Tensor ResNet::forward(torch::Tensor x) {
  if (mode_.fused) {
    // A fused bottleneck hands back its input's gradient masked by the ReLU (fused_bottleneck.h):
    // a fused block whose output feeds another can skip that mask. Whether a block fuses depends
    // on its input only through its type and layout, which a fused block's output always has.
    std::vector<BottleneckImpl*> blocks;
    for (auto* layer : {&layer1, &layer2, &layer3, &layer4})
      for (auto& child : (*layer)->children())
        if (auto* block = child->as<BottleneckImpl>()) blocks.push_back(block);
    for (size_t i = 0; i < blocks.size(); ++i)
      blocks[i]->output_grad_masked = i + 1 < blocks.size() && blocks[i + 1]->fused_params().has_value();
  }
  BatchCounts counts;
  x = stem(conv1(x));
  for (auto* layer : {&layer1, &layer2, &layer3, &layer4}) x = run_layer(*layer, x);
  x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
  x = fc(x);
  counts.add();
  return x;
}

}  // namespace resnet
