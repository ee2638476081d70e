// ResNet (He et al. 2015) as torchvision builds it: ResNet v1.5 (the stride sits on the 3x3
// convolution of a bottleneck), BasicBlock for resnet18/34, Bottleneck for the deeper ones,
// grouped (ResNeXt) and wide variants through `groups` and `width_per_group`.
//
// Structure, parameter names and default initialisation follow torchvision.models.resnet, so a
// torchvision state dict loads without renaming and the same weights give the same logits.
#pragma once

#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/pooling.h>

#include <array>
#include <memory>
#include <optional>

#include "models/classifier.h"
#include "ops/fused_bottleneck.h"

namespace resnet {

enum class BlockKind { kBasic, kBottleneck };

struct ResNetConfig {
  BlockKind block = BlockKind::kBottleneck;
  std::array<int64_t, 4> layers{3, 4, 6, 3};  // blocks per stage
  int64_t groups = 1;
  int64_t width_per_group = 64;
  int64_t num_classes = 1000;
};

// How a ResNet's blocks run their training-mode batch norms: our fused kernels, a replacement
// (--sync-bn), or BatchNorm2d.
struct BatchNormMode {
  bool fused = false;
  BatchNormFn replace;
};

class BasicBlockImpl : public torch::nn::Module {
 public:
  static constexpr int64_t kExpansion = 1;
  BasicBlockImpl(int64_t inplanes, int64_t planes, int64_t stride, torch::nn::Sequential downsample);
  torch::Tensor forward(torch::Tensor x);
  BatchNormMode mode;  // ResNet::set_fused, set_batch_norm

 private:
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(BasicBlock);

class BottleneckImpl : public torch::nn::Module {
 public:
  static constexpr int64_t kExpansion = 4;
  BottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride, torch::nn::Sequential downsample,
                 int64_t groups, int64_t width_per_group);
  torch::Tensor forward(torch::Tensor x);
  BatchNormMode mode;  // ResNet::set_fused, set_batch_norm
  // Set by ResNet::forward: the next block is fused too and masks this one's output gradient.
  bool output_grad_masked = false;
  // The block's parameters for fused_bottleneck where all but the input allows it (fused mode,
  // training, a GPU where cuDNN fuses, ...); fused_bottleneck_supported then checks the input.
  std::optional<BottleneckParams> fused_params();
  // conv1, conv2, conv3 [, the downsample convolution]: the weights fused_params hands on.
  std::vector<torch::Tensor> conv_weights() const;
  // Set by ResNet::forward for one forward pass: fp16 copies of conv_weights() made with the rest
  // of the layer's (ops/half_copies.h), which fused_params hands on in their place; empty
  // otherwise.
  std::vector<torch::Tensor> half_weights;

 private:

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(Bottleneck);

class ResNet : public Classifier {
 public:
  ResNet(std::string arch, const ResNetConfig& config);
  torch::Tensor forward(torch::Tensor images) override;
  // Batch norm + residual add + ReLU in our CUDA kernels (ops/batch_norm_act.h) when training in
  // bf16/fp16 channels-last on CUDA; ATen's ops otherwise, and everywhere when off.
  bool set_fused(bool on) override;
  // With fp16 on a GPU where cuDNN fuses, bottleneck ResNets run fused convolutions too.
  std::string fused_description(bool fp16, const c10::Device& device) const override;
  bool set_batch_norm(BatchNormFn fn) override;
  bool zero_init_residual() override;  // bn3 of each bottleneck, bn2 of each basic block

 private:
  torch::nn::Sequential make_layer(int64_t planes, int64_t blocks, int64_t stride);
  void set_mode(const BatchNormMode& mode);  // on this model and every block
  torch::Tensor stem(const torch::Tensor& x);  // bn1 + ReLU + max-pool of conv1's output
  // A layer's forward; where all its blocks are fused bottlenecks, their weights cast in one op.
  torch::Tensor run_layer(torch::nn::Sequential& layer, const torch::Tensor& x);

  ResNetConfig config_;
  int64_t inplanes_ = 64;
  BatchNormMode mode_;
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::MaxPool2d maxpool{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
  torch::nn::Linear fc{nullptr};
};

}  // namespace resnet
