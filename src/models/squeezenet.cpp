#include "models/squeezenet.h"

#include <torch/nn/init.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/pooling.h>

namespace resnet {
namespace {

namespace nn = torch::nn;

// Each Fire's ReLUs are separate modules in torchvision but hold no state, so functional calls
// keep the state dict identical.
nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding));
}

nn::MaxPool2d pool() { return nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).ceil_mode(true)); }

nn::ReLU relu() { return nn::ReLU(nn::ReLUOptions(/*inplace=*/true)); }

// torchvision's final convolution starts small: normal(0, 0.01).
constexpr double kFinalConvStd = 0.01;

}  // namespace

FireImpl::FireImpl(int64_t inplanes, int64_t squeeze_planes, int64_t expand1x1_planes,
                   int64_t expand3x3_planes) {
  squeeze = register_module("squeeze", conv(inplanes, squeeze_planes, 1));
  expand1x1 = register_module("expand1x1", conv(squeeze_planes, expand1x1_planes, 1));
  expand3x3 = register_module("expand3x3", conv(squeeze_planes, expand3x3_planes, 3, 1, 1));
}

torch::Tensor FireImpl::forward(torch::Tensor x) {
  x = squeeze(x).relu_();
  return torch::cat({expand1x1(x).relu_(), expand3x3(x).relu_()}, 1);
}

SqueezeNet::SqueezeNet(std::string arch, SqueezeNetVersion version, int64_t num_classes)
    : Classifier(std::move(arch), num_classes) {
  // Indices matter: they are the names in the state dict (features.3.squeeze.weight).
  if (version == SqueezeNetVersion::k1_0) {
    features = nn::Sequential(conv(3, 96, 7, 2), relu(), pool(),           //
                              Fire(96, 16, 64, 64), Fire(128, 16, 64, 64),  //
                              Fire(128, 32, 128, 128), pool(),              //
                              Fire(256, 32, 128, 128), Fire(256, 48, 192, 192),
                              Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), pool(),
                              Fire(512, 64, 256, 256));
  } else {
    features = nn::Sequential(conv(3, 64, 3, 2), relu(), pool(),           //
                              Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), pool(),
                              Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), pool(),
                              Fire(256, 48, 192, 192), Fire(384, 48, 192, 192),
                              Fire(384, 64, 256, 256), Fire(512, 64, 256, 256));
  }
  register_module("features", features);
  nn::Conv2d final_conv = conv(512, num_classes, 1);
  classifier = register_module(
      "classifier", nn::Sequential(nn::Dropout(0.5), final_conv, relu(),
                                   nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({1, 1}))));

  for (auto& module : modules(/*include_self=*/false)) {
    if (auto* c = module->as<nn::Conv2d>()) {
      if (c == final_conv.get())
        nn::init::normal_(c->weight, 0.0, kFinalConvStd);
      else
        nn::init::kaiming_uniform_(c->weight);
      nn::init::zeros_(c->bias);
    }
  }
}

torch::Tensor SqueezeNet::forward(torch::Tensor x) {
  return classifier->forward(features->forward(x)).flatten(1);
}

}  // namespace resnet
