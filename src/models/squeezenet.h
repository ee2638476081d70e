// SqueezeNet 1.0 and 1.1 (Iandola et al. 2016) as torchvision builds them: a `features`
// Sequential of convolutions, max-pools and Fire modules, then a `classifier` of dropout (p=0.5),
// a 1x1 convolution to the classes, ReLU and global average pooling. Names and initialisation
// follow torchvision.models.squeezenet.
#pragma once

#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>

#include "models/classifier.h"

namespace resnet {

class FireImpl : public torch::nn::Module {
 public:
  FireImpl(int64_t inplanes, int64_t squeeze_planes, int64_t expand1x1_planes, int64_t expand3x3_planes);
  torch::Tensor forward(torch::Tensor x);

 private:
  torch::nn::Conv2d squeeze{nullptr}, expand1x1{nullptr}, expand3x3{nullptr};
};
TORCH_MODULE(Fire);

enum class SqueezeNetVersion { k1_0, k1_1 };

class SqueezeNet : public Classifier {
 public:
  SqueezeNet(std::string arch, SqueezeNetVersion version, int64_t num_classes);
  torch::Tensor forward(torch::Tensor images) override;

 private:
  torch::nn::Sequential features{nullptr}, classifier{nullptr};
};

}  // namespace resnet
