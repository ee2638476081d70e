// `resnet export --format onnx`: a model as an ONNX inference graph (opset 17). Input "images"
// float32 [batch, 3, S, S] (normalised as the test transform leaves them), output "logits"
// float32 [batch, classes]; the batch dimension is dynamic. Batch norm in inference form
// (BatchNormalization with the running statistics), dropout left out; initializers carry the
// state dict's names (layer1.0.conv1.weight, ...). ResNets and SqueezeNets.
#pragma once

#include <string>

#include "models/classifier.h"

namespace resnet {

constexpr int64_t kOnnxOpset = 17;

// Writes `model` (its weights as they are now) to `path`, atomically. UsageError when this build
// has no ONNX support (it says what to install) or the model holds a layer the exporter does not
// know.
void export_onnx(Classifier& model, int64_t image_size, const std::string& path);

}  // namespace resnet
