#include "cli/options.h"

#include "models/registry.h"

namespace resnet::cli {

void add_model_option(CLI::App& command, std::string& model) {
  std::string names;
  for (const auto& name : model_names()) names += (names.empty() ? "" : ", ") + name;
  command.add_option("--model", model, "architecture: " + names)->capture_default_str();
}

void add_device_option(CLI::App& command, std::string& device) {
  command.add_option("--device", device, "auto (CUDA when present, else CPU), cpu, cuda or cuda:N")
      ->capture_default_str();
}

void add_batch_size_option(CLI::App& command, int64_t& batch_size) {
  command.add_option("--batch-size,--batch_size", batch_size, "images per batch")->capture_default_str();
}

void add_image_size_option(CLI::App& command, int64_t& image_size) {
  command.add_option("--image-size,--image_size", image_size, "side of the square input images, pixels")
      ->capture_default_str();
}

void add_num_classes_option(CLI::App& command, int64_t& num_classes) {
  command.add_option("--num-classes,--num_classes", num_classes, "classes the model predicts")
      ->capture_default_str();
}

}  // namespace resnet::cli
