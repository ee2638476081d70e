#include <algorithm>
#include <cctype>
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/device.h"
#include "core/error.h"
#include "train/inference.h"
#include "train/step.h"

namespace resnet::cli {

namespace {

namespace fs = std::filesystem;

bool has_image_extension(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

// The files --image names: a file as it is; a folder stands for every .jpg, .jpeg and .png in it
// and its subfolders (sorted by path). InputError naming what is missing or empty.
std::vector<std::string> image_files(const std::vector<std::string>& args) {
  std::vector<std::string> files;
  for (const auto& arg : args) {
    if (fs::is_directory(arg)) {
      std::vector<std::string> found;
      std::error_code ec;
      for (fs::recursive_directory_iterator it(arg, fs::directory_options::follow_directory_symlink, ec), end;
           !ec && it != end; it.increment(ec))
        if (it->is_regular_file() && has_image_extension(it->path())) found.push_back(it->path().string());
      if (ec) throw InputError(arg + ": cannot list the folder: " + ec.message() + " (--image)");
      if (found.empty()) throw InputError(arg + ": a folder with no .jpg, .jpeg or .png file in it (--image)");
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else if (!fs::exists(arg)) {
      throw InputError(arg + ": no such file (--image)");
    } else {
      files.push_back(arg);
    }
  }
  return files;
}

}  // namespace

void add_predict_command(CLI::App& app) {
  struct Options {
    CheckpointFlags checkpoint;
    std::string device = "auto", amp = "auto", channels_last = "auto";
    std::vector<std::string> images;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("predict", "print the top-5 classes of each image, with probabilities");
  cmd->add_option("--image,--images", o->images, "JPEG or PNG files, or folders (every image in them)")
      ->required()
      ->expected(1, -1);
  add_checkpoint_options(*cmd, o->checkpoint, "use");
  add_device_option(*cmd, o->device);
  add_max_image_pixels_option(*cmd);
  add_precision_options(*cmd, o->amp, o->channels_last, nullptr);
  cmd->callback([o] {
    const auto device = parse_device(o->device);
    const std::string source = model_source(o->checkpoint);  // a missing model is heard of before the images
    const auto files = image_files(o->images);
    const auto trained = load_model_to_use(o->checkpoint, source, device);
    const StepOptions step = parse_step_options(o->amp, o->channels_last, "off", device);
    const auto predictions = predict_files(trained, files, /*k=*/5, device, step);
    for (const auto& p : predictions) {
      if (predictions.size() > 1) std::cout << p.file << ":\n";
      for (const auto& [name, probability] : p.top) std::cout << name << " " << probability << "\n";
    }
  });
}

}  // namespace resnet::cli
