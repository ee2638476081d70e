#include <unistd.h>

#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/error.h"
#include "data/cifar10_fetch.h"
#include "data/imagenet_val.h"

namespace resnet::cli {

void add_data_command(CLI::App& app) {
  auto options = std::make_shared<FetchOptions>();
  auto urls = std::make_shared<std::vector<std::string>>();
  CLI::App* cmd = app.add_subcommand(
      "data", "download CIFAR-10 (binary release), check its MD5 and unpack it into --data");
  cmd->add_option("--data,--path", options->data_dir, "folder to unpack into")->capture_default_str();
  cmd->add_option("--archive", options->archive, "use this cifar-10-binary.tar.gz instead of downloading");
  cmd->add_option("--url", *urls, "mirror to download from instead of CIFAR-10's own (repeatable, tried in order)");
  cmd->add_option("--md5", options->md5, "expected MD5 of the archive")->capture_default_str();
  cmd->add_option("--retries", options->attempts_per_url, "attempts per mirror; each resumes the partial file")
      ->capture_default_str();
  cmd->add_option("--retry-delay-ms", options->retry_delay_ms, "wait before the first retry (doubles each time)")
      ->capture_default_str();
  auto imagenet_val = std::make_shared<std::string>();
  auto devkit = std::make_shared<std::string>();
  CLI::Option* val_option = cmd->add_option(
      "--imagenet-val", *imagenet_val,
      "instead: sort ImageNet's flat validation folder (ILSVRC2012_val_*.JPEG) into class folders named by "
      "WordNet id, as the training split's, from --devkit");
  cmd->add_option("--devkit", *devkit,
                  "ImageNet's devkit (ILSVRC2012_devkit_t12.tar.gz, or the folder it unpacks to) for --imagenet-val")
      ->needs(val_option);
  val_option->excludes(cmd->get_option("--archive"))->excludes(cmd->get_option("--url"));
  cmd->callback([options, urls, imagenet_val, devkit] {
    if (!imagenet_val->empty()) {
      if (devkit->empty())
        throw UsageError("--imagenet-val needs --devkit (ILSVRC2012_devkit_t12.tar.gz: its ground truth and meta.mat)");
      const ValSorted sorted = sort_imagenet_val(*imagenet_val, read_imagenet_devkit(*devkit));
      std::cout << *imagenet_val << ": " << sorted.moved << " validation images moved into their class folders, "
                << sorted.already << " already there; " << sorted.classes << " classes" << std::endl;
      return;
    }
    require_at_least(options->attempts_per_url, 1, "--retries");
    require_at_least(options->retry_delay_ms, 0, "--retry-delay-ms");
    if (!urls->empty()) options->urls = *urls;
    options->progress = ::isatty(STDERR_FILENO) != 0;
    fetch_cifar10(*options, [](const std::string& line) { std::cout << line << std::endl; });
  });
}

}  // namespace resnet::cli
