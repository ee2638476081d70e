#include "models/registry.h"

#include <functional>
#include <utility>

#include "core/error.h"
#include "models/resnet.h"
#include "models/squeezenet.h"

namespace resnet {
namespace {

using Factory = std::function<std::shared_ptr<Classifier>(const std::string&, int64_t)>;

Factory resnet_factory(BlockKind block, std::array<int64_t, 4> layers, int64_t groups = 1,
                       int64_t width_per_group = 64) {
  return [=](const std::string& name, int64_t num_classes) {
    ResNetConfig config;
    config.block = block;
    config.layers = layers;
    config.groups = groups;
    config.width_per_group = width_per_group;
    config.num_classes = num_classes;
    return std::make_shared<ResNet>(name, config);
  };
}

Factory squeezenet_factory(SqueezeNetVersion version) {
  return [=](const std::string& name, int64_t num_classes) {
    return std::make_shared<SqueezeNet>(name, version, num_classes);
  };
}

// Kept in a vector, not a map, so that the "known:" list reads in the order users expect.
const std::vector<std::pair<std::string, Factory>>& registry() {
  static const std::vector<std::pair<std::string, Factory>> table = {
      {"resnet18", resnet_factory(BlockKind::kBasic, {2, 2, 2, 2})},
      {"resnet34", resnet_factory(BlockKind::kBasic, {3, 4, 6, 3})},
      {"resnet50", resnet_factory(BlockKind::kBottleneck, {3, 4, 6, 3})},
      {"resnet101", resnet_factory(BlockKind::kBottleneck, {3, 4, 23, 3})},
      {"resnet152", resnet_factory(BlockKind::kBottleneck, {3, 8, 36, 3})},
      {"resnext50_32x4d", resnet_factory(BlockKind::kBottleneck, {3, 4, 6, 3}, 32, 4)},
      {"wide_resnet50_2", resnet_factory(BlockKind::kBottleneck, {3, 4, 6, 3}, 1, 64 * 2)},
      {"squeezenet1_0", squeezenet_factory(SqueezeNetVersion::k1_0)},
      {"squeezenet1_1", squeezenet_factory(SqueezeNetVersion::k1_1)},
  };
  return table;
}

}  // namespace

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (const auto& entry : registry()) names.push_back(entry.first);
  return names;
}

std::shared_ptr<Classifier> create_model(const std::string& name, int64_t num_classes) {
  if (num_classes < 1)
    throw UsageError("number of classes must be at least 1 (got " + std::to_string(num_classes) + ")");
  for (const auto& [known, factory] : registry())
    if (known == name) return factory(name, num_classes);
  std::string list;
  for (const auto& known : model_names()) list += (list.empty() ? "" : ", ") + known;
  throw UsageError("unknown model '" + name + "' (known: " + list + ")");
}

}  // namespace resnet
