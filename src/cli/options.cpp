#include "cli/options.h"

#include "cli/launch.h"
#include "data/decode.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "core/error.h"
#include "models/registry.h"

namespace resnet::cli {

namespace fs = std::filesystem;

CLI::Option* add_model_option(CLI::App& command, std::string& model) {
  std::string names;
  for (const auto& name : model_names()) names += (names.empty() ? "" : ", ") + name;
  return command.add_option("--model,-a,--arch", model, "architecture: " + names)->capture_default_str();
}

void add_device_option(CLI::App& command, std::string& device) {
  command.add_option("--device", device, "auto (CUDA when present, else CPU), cpu, cuda or cuda:N")
      ->capture_default_str();
}

void add_batch_size_option(CLI::App& command, int64_t& batch_size) {
  command.add_option("--batch-size,--batch_size,-b", batch_size, "images per batch")->capture_default_str();
}

void add_image_size_option(CLI::App& command, int64_t& image_size) {
  command.add_option("--image-size,--image_size", image_size, "side of the square input images, pixels")
      ->capture_default_str();
}

void add_max_image_pixels_option(CLI::App& command) {
  command.add_option_function<int64_t>(
      "--max-image-pixels",
      [](const int64_t& pixels) {
        require_at_least(pixels, 0, "--max-image-pixels");
        set_max_image_pixels(pixels);
      },
      "refuse images of more pixels than this, before decoding them (default " +
          std::to_string(kDefaultMaxImagePixels) + ", as PIL; 0: no limit)");
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

void add_fused_option(CLI::App& command, std::string& fused) {
  command.add_option("--fused", fused, "our fused kernels for the training step (ResNets: batch norm + add + ReLU): on, off; auto: on for CUDA with --amp bf16/fp16 and channels-last")
      ->capture_default_str();
}

void add_tta_shift_option(CLI::App& command, int64_t& shift) {
  command
      .add_option("--tta-shift", shift,
                  "test-time augmentation: also average the logits of each test image moved N pixels left, right, "
                  "up, down and diagonally, edges repeated (9 positions; with --tta-flip each with its mirror; 0: off)")
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

void require_known_model(const std::string& model) {
  const auto names = model_names();
  if (std::find(names.begin(), names.end(), model) == names.end()) create_model(model, 1);  // its UsageError
}

void add_checkpoint_options(CLI::App& command, CheckpointFlags& flags, const std::string& what) {
  flags.model_option = add_model_option(command, flags.model);
  command.add_option("--checkpoint", flags.checkpoint,
                     "checkpoint.pth to " + what + " (default <checkpoint-dir>/<model>/checkpoint.pth)");
  auto* dir = command.add_option("--checkpoint-dir,--checkpoint_dir", flags.checkpoint_dir, "where train saved it")
                  ->capture_default_str();
  auto* weights =
      command.add_option("--weights", flags.weights,
                         "a state dict saved by Python's torch.save (torchvision's ImageNet weights, say) instead "
                         "of a checkpoint; the number of classes comes from it, the architecture from --model or "
                         "its names and shapes")
          ->excludes("--checkpoint")
          ->excludes(dir);
  command.add_option("--classes", flags.classes,
                     "class names of --weights, one a line (default: ImageNet's for 1,000 classes, else 0, 1, ...)")
      ->needs(weights);
  command.add_option("--image-size,--image_size", flags.image_size,
                     "input side for --weights (a checkpoint's comes from its checkpoint.json)")
      ->capture_default_str()
      ->needs(weights);
}

std::string model_source(const CheckpointFlags& flags) {
  if (flags.weights.empty()) return checkpoint_path(flags);
  if (!fs::exists(flags.weights)) throw InputError(flags.weights + ": no such file (--weights)");
  return flags.weights;
}

TrainedModel load_model_to_use(const CheckpointFlags& flags, const std::string& source, const c10::Device& device) {
  if (flags.weights.empty()) return load_checkpoint(flags, source, device);
  const bool model_given = flags.model_option != nullptr && flags.model_option->count() > 0;
  if (model_given) require_known_model(flags.model);
  require_at_least(flags.image_size, 32, "--image-size");
  return load_weights(source, model_given ? flags.model : "", flags.classes, flags.image_size, device);
}

std::string checkpoint_path(const CheckpointFlags& flags) {
  if (!flags.checkpoint.empty()) {
    if (fs::is_directory(flags.checkpoint)) {  // the folder train wrote into
      const fs::path inside = fs::path(flags.checkpoint) / "checkpoint.pth";
      if (fs::is_regular_file(inside)) return inside.string();
      throw InputError(flags.checkpoint + ": a folder without checkpoint.pth in it (--checkpoint takes the file)");
    }
    if (!fs::exists(flags.checkpoint)) throw InputError(flags.checkpoint + ": no such checkpoint (--checkpoint)");
    return flags.checkpoint;
  }
  require_known_model(flags.model);
  const fs::path path = fs::path(flags.checkpoint_dir) / flags.model / "checkpoint.pth";
  if (fs::exists(path)) return path.string();

  // Say what is there instead: DIR/<name>/checkpoint.pth for any name.
  std::vector<fs::path> found;
  std::error_code ec;
  for (fs::directory_iterator it(flags.checkpoint_dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_directory() && fs::is_regular_file(it->path() / "checkpoint.pth"))
      found.push_back(it->path() / "checkpoint.pth");
  std::sort(found.begin(), found.end());
  std::string message = path.string() + ": no such checkpoint";
  if (found.empty()) {
    message += fs::is_regular_file(path.parent_path() / "resume.pt")
                   ? " (" + path.parent_path().string() + " holds a run that was trained without "
                     "`resnet train --save-model`, which keeps the best model)"
                   : " (run `resnet train --save-model` first, or pass --checkpoint)";
    throw InputError(message);
  }
  const auto names = model_names();
  message += "; found ";
  for (size_t i = 0; i < found.size(); ++i) {
    const std::string name = found[i].parent_path().filename().string();
    const bool known = std::find(names.begin(), names.end(), name) != names.end();
    message += (i == 0 ? "" : ", ") + found[i].string() +
               (known ? " (pass --model " + name + ")" : " (pass --checkpoint " + found[i].string() + ")");
  }
  throw InputError(message);
}

TrainedModel load_checkpoint(const CheckpointFlags& flags, const std::string& path, const c10::Device& device) {
  TrainedModel trained = load_trained_model(path, device);
  if (flags.model_option != nullptr && flags.model_option->count() > 0 && trained.info.arch != flags.model)
    std::cerr << "warning: --model " << flags.model << " was given, but " << path << " holds a "
              << trained.info.arch << " (its checkpoint.json says so); using " << trained.info.arch << std::endl;
  return trained;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  // Optimal string alignment: Levenshtein plus the swap of two neighbours ("trian" -> "train").
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i)
    for (size_t j = 1; j <= m; ++j) {
      const size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[n][m];
}

std::string closest(const std::string& word, const std::vector<std::string>& candidates) {
  auto bare = [](const std::string& s) { return s.substr(std::min(s.find_first_not_of('-'), s.size())); };
  const std::string w = bare(word);
  if (w.empty()) return "";
  // An unambiguous beginning: --batch -> --batch-size (and its spelling --batch_size).
  auto normal = [&](const std::string& s) {
    std::string n = bare(s);
    std::replace(n.begin(), n.end(), '_', '-');
    return n;
  };
  std::vector<std::string> starts, seen;
  for (const auto& c : candidates)
    if (w.size() >= 3 && normal(c).rfind(normal(w), 0) == 0 &&
        std::find(seen.begin(), seen.end(), normal(c)) == seen.end()) {
      starts.push_back(c);
      seen.push_back(normal(c));
    }
  if (starts.size() == 1) return starts.front();
  const size_t limit = std::max<size_t>(1, std::min<size_t>(3, w.size() / 3));
  std::string best;
  size_t best_distance = limit + 1;
  for (const auto& c : candidates) {
    const size_t d = edit_distance(w, bare(c));
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  return best;
}

std::vector<std::pair<std::string, std::string>> option_spellings(const CLI::App& command) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const CLI::Option* option : command.get_options()) {
    const auto& longs = option->get_lnames();
    if (longs.empty()) continue;
    const std::string canonical = "--" + longs.front();
    for (const auto& name : longs) out.emplace_back("--" + name, canonical);
    for (const auto& name : option->get_snames()) out.emplace_back("-" + name, canonical);
  }
  return out;
}

void add_dist_options(CLI::App& command, DistFlags& flags) {
  command
      .add_option("--nproc-per-node,--nproc_per_node", flags.nproc_per_node,
                  "data-parallel on this machine: start N processes (one per GPU; --batch-size is each one's); for "
                  "several machines run torchrun or srun instead")
      ->capture_default_str();
  command
      .add_option("--dist-timeout", flags.timeout_s,
                  "with several processes: seconds a process waits for the others before the job fails")
      ->capture_default_str();
}

DistEnv join_or_launch(const DistFlags& flags) {
  require_at_least(flags.nproc_per_node, 1, "--nproc-per-node");
  require_at_least(flags.timeout_s, 1, "--dist-timeout");
  DistEnv env = dist_env_from_environment();
  if (flags.nproc_per_node == 1) return env;
  if (env.distributed())
    throw UsageError("--nproc-per-node starts the processes itself; under a launcher (" + env.launcher +
                     " set the job's variables) leave it out");
  std::exit(launch_local(flags.nproc_per_node, without_option(command_line(), {"--nproc-per-node", "--nproc_per_node"})));
}

}  // namespace resnet::cli
