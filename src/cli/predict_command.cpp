#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/device.h"
#include "train/inference.h"

namespace resnet::cli {

void add_predict_command(CLI::App& app) {
  struct Options {
    std::string model = "resnet50", checkpoint, checkpoint_dir = "checkpoints", device = "auto";
    std::vector<std::string> images;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("predict", "print the top-5 classes of each image, with probabilities");
  cmd->add_option("--image,--images", o->images, "JPEG or PNG files")->required()->expected(1, -1);
  add_model_option(*cmd, o->model);
  cmd->add_option("--checkpoint", o->checkpoint, "checkpoint.pth (default checkpoints/<model>/checkpoint.pth)");
  cmd->add_option("--checkpoint-dir,--checkpoint_dir", o->checkpoint_dir, "where train saved it")->capture_default_str();
  add_device_option(*cmd, o->device);
  cmd->callback([o] {
    const auto device = parse_device(o->device);
    const std::string path = o->checkpoint.empty()
                                 ? (std::filesystem::path(o->checkpoint_dir) / o->model / "checkpoint.pth").string()
                                 : o->checkpoint;
    const auto trained = load_trained_model(path, device);
    const auto predictions = predict_files(trained, o->images, /*k=*/5, device);
    for (const auto& p : predictions) {
      if (predictions.size() > 1) std::cout << p.file << ":\n";
      for (const auto& [name, probability] : p.top) std::cout << name << " " << probability << "\n";
    }
  });
}

}  // namespace resnet::cli
