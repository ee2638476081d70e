#include "train/checkpoint_info.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"

namespace resnet {

std::string best_model_info_path(const std::string& checkpoint_path) {
  return std::filesystem::path(checkpoint_path).replace_extension(".json").string();
}

BestModelInfo parse_best_model_info(const std::string& text, const std::string& path) {
  auto bad = [&](const std::string& what) {
    return InputError(path + ": not a checkpoint description: " + what);
  };
  try {
    const nlohmann::json j = nlohmann::json::parse(text);
    if (!j.is_object()) throw bad("expected a JSON object, found " + std::string(j.type_name()));
    BestModelInfo info;
    info.arch = j.at("arch").get<std::string>();
    info.classes = j.at("classes").get<std::vector<std::string>>();
    if (info.classes.empty() || info.classes.size() > 100000)
      throw bad("\"classes\" must list 1 to 100,000 names (found " + std::to_string(info.classes.size()) + ")");
    // Integers only: a number such as 1e30 would be converted out of range.
    auto integer = [&](const char* key, int64_t absent) {
      if (!j.contains(key)) return absent;
      if (!j[key].is_number_integer())
        throw bad(std::string("\"") + key + "\" must be an integer (found " + j[key].dump() + ")");
      return j[key].get<int64_t>();
    };
    info.image_size = integer("image_size", 224);
    if (info.image_size < 1 || info.image_size > 65536)
      throw bad("\"image_size\" must be 1 to 65,536 pixels (found " + std::to_string(info.image_size) + ")");
    info.test_crop_pct = j.value("test_crop_pct", info.test_crop_pct);
    if (!(info.test_crop_pct > 0 && info.test_crop_pct <= 1))
      throw bad("\"test_crop_pct\" must be above 0 and at most 1 (found " + j["test_crop_pct"].dump() + ")");
    info.accuracy = j.value("accuracy", 0.0);
    info.epoch = integer("epoch", 0);
    if (info.epoch < 0) throw bad("\"epoch\" must not be negative (found " + std::to_string(info.epoch) + ")");
    info.holdout = integer("holdout", -1);
    if (j.contains("holdout") && info.holdout < 0)
      throw bad("\"holdout\" must not be negative (found " + std::to_string(info.holdout) + ")");
    return info;
  } catch (const nlohmann::json::exception& e) {
    throw bad(e.what());
  }
}

BestModelInfo read_best_model_info(const std::string& checkpoint_path) {
  const std::string path = best_model_info_path(checkpoint_path);
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw InputError(path + ": missing; it holds the architecture, class names and image size of " +
                     checkpoint_path + " (train writes it beside checkpoint.pth). For a state dict saved elsewhere, "
                     "write it by hand, e.g. {\"arch\": \"resnet18\", \"classes\": [\"airplane\", ...], "
                     "\"image_size\": 224}");
  return parse_best_model_info(std::string(std::istreambuf_iterator<char>(in), {}), path);
}

}  // namespace resnet
