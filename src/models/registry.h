// Model registry: architecture name -> constructor.
//
// Names are torchvision's (resnet18 ... squeezenet1_1). An unknown name is a UsageError that
// lists the known ones, so the CLI exits with 2 and tells the user what to type.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "models/classifier.h"

namespace resnet {

std::shared_ptr<Classifier> create_model(const std::string& name, int64_t num_classes);

// Every registered name, in a stable order.
std::vector<std::string> model_names();

}  // namespace resnet
