#include "cli/options.h"

#include "core/error.h"
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

void add_precision_options(CLI::App& command, std::string& amp, std::string& channels_last, std::string* cuda_graphs) {
  command.add_option("--amp", amp, "mixed precision: bf16, fp16 (with a dynamic loss scale) or off (fp32); auto: bf16 on CUDA, off on the CPU")
      ->capture_default_str();
  command.add_option("--channels-last,--channels_last", channels_last, "NHWC memory format: on, off; auto: on for CUDA")
      ->capture_default_str();
  if (cuda_graphs)
    command.add_option("--cuda-graphs,--cuda_graphs", *cuda_graphs, "replay each step from a CUDA graph: on, off; auto: on for CUDA")
        ->capture_default_str();
}

void add_trace_option(CLI::App& command, TraceFlag& flag) {
  flag.option = command.add_option("--trace", flag.values,
                                   "profile a few steps: print the operator table, write a Chrome trace")
                    ->expected(0, 1);
}

bool TraceFlag::enabled() const {
  if (option == nullptr || option->count() == 0) return false;
  if (values.empty()) return true;
  const std::string& v = values.back();
  if (v.empty() || v == "True" || v == "true" || v == "1") return true;
  if (v == "False" || v == "false" || v == "0") return false;
  throw UsageError("--trace takes True or False (got '" + v + "')");
}

}  // namespace resnet::cli
