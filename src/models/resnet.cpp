#include "models/resnet.h"

#include <torch/nn/functional/activation.h>
#include <torch/nn/init.h>

namespace resnet {
namespace {

namespace nn = torch::nn;

nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride = 1, int64_t groups = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).groups(groups).bias(false));
}

nn::Conv2d conv1x1(int64_t in, int64_t out, int64_t stride = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false));
}

// In place, as torchvision's nn.ReLU(inplace=True): saves one activation-sized buffer per call.
torch::Tensor relu_inplace(torch::Tensor x) { return x.relu_(); }

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
  torch::Tensor identity = downsample ? downsample->forward(x) : x;
  torch::Tensor out = relu_inplace(bn1(conv1(x)));
  out = bn2(conv2(out));
  return relu_inplace(out += identity);
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

torch::Tensor BottleneckImpl::forward(torch::Tensor x) {
  torch::Tensor identity = downsample ? downsample->forward(x) : x;
  torch::Tensor out = relu_inplace(bn1(conv1(x)));
  out = relu_inplace(bn2(conv2(out)));
  out = bn3(conv3(out));
  return relu_inplace(out += identity);
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

torch::Tensor ResNet::forward(torch::Tensor x) {
  x = maxpool(relu_inplace(bn1(conv1(x))));
  x = layer4->forward(layer3->forward(layer2->forward(layer1->forward(x))));
  x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
  return fc(x);
}

}  // namespace resnet
