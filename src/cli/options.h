// Flags shared by several subcommands, with the original sample's spellings as aliases
// (`--batch_size` for `--batch-size`, ...), so that its users' command lines keep working, and
// the short forms PyTorch's ImageNet example and timm taught them (`-b`, `--wd`, ...).
#pragma once

#include <CLI/CLI.hpp>

#include "dist/env.h"

#include <c10/core/Device.h>

#include <cstdint>
#include <string>
#include <vector>

#include "train/inference.h"

namespace resnet::cli {

CLI::Option* add_model_option(CLI::App& command, std::string& model);
void add_device_option(CLI::App& command, std::string& device);
void add_batch_size_option(CLI::App& command, int64_t& batch_size);
void add_image_size_option(CLI::App& command, int64_t& image_size);
void add_num_classes_option(CLI::App& command, int64_t& num_classes);
// --max-image-pixels: sets the decoders' limit (data/decode.h) as the flags are read.
void add_max_image_pixels_option(CLI::App& command);

// `--amp`, `--channels-last` and (where not null) `--cuda-graphs`; each defaults to auto.
void add_precision_options(CLI::App& command, std::string& amp, std::string& channels_last, std::string* cuda_graphs);
// --fused, for the commands that train.
void add_fused_option(CLI::App& command, std::string& fused);
// --tta-shift (train, test): test-time views moved by N pixels (TestViews::shift).
void add_tta_shift_option(CLI::App& command, int64_t& shift);

// `--trace`, `--trace True` (the sample's spelling), `--trace false`.
// --nproc-per-node and --dist-timeout (train, bench): data-parallel over several processes.
struct DistFlags {
  int nproc_per_node = 1;
  int64_t timeout_s = 600;
};
void add_dist_options(CLI::App& command, DistFlags& flags);
// The job this process is part of (the launcher's variables); with --nproc-per-node N > 1, starts
// the N processes of this command line instead and exits with their status (never returns).
DistEnv join_or_launch(const DistFlags& flags);

struct TraceFlag {
  CLI::Option* option = nullptr;
  std::vector<std::string> values;
  // Whether it turns tracing on; UsageError for words other than True/False.
  bool enabled() const;
};
void add_trace_option(CLI::App& command, TraceFlag& flag);

// (Checks of flag values: require_at_least and require_not_negative in core/error.h.)
// UsageError "unknown model 'x' (known: ...)" unless `model` is in the registry.
void require_known_model(const std::string& model);

// `--model`, `--checkpoint`, `--checkpoint-dir`, `--weights` and `--classes` of `test` and
// `predict`: which model to load.
struct CheckpointFlags {
  std::string model = "resnet50", checkpoint, checkpoint_dir = "checkpoints";
  std::string weights, classes;  // a state dict saved by Python, and its class names
  int64_t image_size = 224;      // the input side for --weights
  CLI::Option* model_option = nullptr;
};
void add_checkpoint_options(CLI::App& command, CheckpointFlags& flags, const std::string& what);

// The file the flags name: --weights (InputError when missing) or the checkpoint (checkpoint_path).
std::string model_source(const CheckpointFlags& flags);
// The model in `source` (from model_source): --weights through load_weights (--model when given,
// else guessed), a checkpoint through load_checkpoint.
TrainedModel load_model_to_use(const CheckpointFlags& flags, const std::string& source, const c10::Device& device);

// The checkpoint the flags name: --checkpoint FILE (or a folder holding checkpoint.pth), else
// <checkpoint-dir>/<model>/checkpoint.pth. When it is missing, an InputError that names the
// checkpoints which do exist under --checkpoint-dir and the --model that picks each.
std::string checkpoint_path(const CheckpointFlags& flags);

// Loads `path` (from checkpoint_path); a warning on stderr when --model was given and the
// checkpoint holds another architecture (its checkpoint.json decides).
TrainedModel load_checkpoint(const CheckpointFlags& flags, const std::string& path, const c10::Device& device);

// Edit distance (insertions, deletions, substitutions and swaps of neighbours).
size_t edit_distance(const std::string& a, const std::string& b);
// The candidate nearest `word` when it is near enough to be a typo of it; "" otherwise.
std::string closest(const std::string& word, const std::vector<std::string>& candidates);

// Every spelling of every option of `command` (--batch-size, --batch_size, -b, ...), and the
// canonical spelling (the first long name) each one stands for.
std::vector<std::pair<std::string, std::string>> option_spellings(const CLI::App& command);

}  // namespace resnet::cli
