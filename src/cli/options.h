// Flags shared by several subcommands, with the original sample's spellings as aliases
// (`--batch_size` for `--batch-size`, ...), so that its users' command lines keep working.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace resnet::cli {

void add_model_option(CLI::App& command, std::string& model);
void add_device_option(CLI::App& command, std::string& device);
void add_batch_size_option(CLI::App& command, int64_t& batch_size);
void add_image_size_option(CLI::App& command, int64_t& image_size);
void add_num_classes_option(CLI::App& command, int64_t& num_classes);

// `--amp`, `--channels-last` and (where not null) `--cuda-graphs`; each defaults to auto.
void add_precision_options(CLI::App& command, std::string& amp, std::string& channels_last, std::string* cuda_graphs);

// `--trace`, `--trace True` (the sample's spelling), `--trace false`.
struct TraceFlag {
  CLI::Option* option = nullptr;
  std::vector<std::string> values;
  // Whether it turns tracing on; UsageError for words other than True/False.
  bool enabled() const;
};
void add_trace_option(CLI::App& command, TraceFlag& flag);

}  // namespace resnet::cli
