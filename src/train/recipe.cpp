#include "train/recipe.h"

#include <map>

#include "core/error.h"

namespace resnet {

namespace {

const std::map<std::string, std::vector<RecipeSetting>>& recipes() {
  static const std::map<std::string, std::vector<RecipeSetting>> table{
      {"sample", {}},
      {"fast",
       {{"--amp", "fp16"},
        {"--batch-size", "256"},
        {"--epochs", "135"},
        {"--lr", "0.4"},
        {"--momentum", "0.9"},
        {"--nesterov", ""},
        {"--weight-decay", "5e-4"},
        {"--no-decay-bn-bias", ""},
        {"--lr-schedule", "cosine"},
        {"--warmup-epochs", "2"},
        {"--label-smoothing", "0.1"},
        {"--crop-pad", "4"},
        {"--test-crop-pct", "1"},
        {"--random-erase", "0.25"},
        {"--mixup", "0.2"},
        {"--zero-init-residual", ""},
        {"--tta-flip", ""},
        {"--eval-every", "10"}}},
  };
  return table;
}

}  // namespace

std::vector<std::string> recipe_names() {
  std::vector<std::string> names;
  for (const auto& [name, settings] : recipes()) names.push_back(name);
  return names;
}

const std::vector<RecipeSetting>& recipe_settings(const std::string& name) {
  const auto it = recipes().find(name);
  if (it == recipes().end()) {
    std::string known;
    for (const std::string& n : recipe_names()) known += (known.empty() ? "" : ", ") + n;
    throw UsageError("--recipe must be one of " + known + " (got '" + name + "')");
  }
  return it->second;
}

}  // namespace resnet
