#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/device.h"
#include "core/error.h"
#include "core/log.h"
#include "io/file.h"
#include "plot/chart.h"
#include "train/inference.h"
#include "train/precision.h"

namespace resnet::cli {

namespace {

constexpr const char* kDefaultData = "data/cifar10";

struct TestOptions {
  CheckpointFlags checkpoint;
  std::string data = kDefaultData, device = "auto";
  int64_t batch_size = 32;
  TraceFlag trace;
  std::string amp = "auto", channels_last = "auto", cuda_graphs = "auto";
  CLI::Option* data_option = nullptr;
  bool tta_flip = false;
  int64_t tta_shift = 0;
  int64_t holdout = 0;
  bool confusion = false;
};

// `test --holdout N` tests the images `train --holdout N` held out: InputError where the model's
// checkpoint.json says it trained on other images (or on all of them).
void check_holdout(const BestModelInfo& info, int64_t holdout, const std::string& path) {
  if (holdout == 0) return;
  const std::string json = best_model_info_path(path);
  if (info.holdout < 0) {
    log_warning((std::filesystem::exists(json) ? json + " does not say" : path + " comes with no record of") +
                " how many images its training held out; --holdout " + std::to_string(holdout) +
                " trusts that it was trained with the same --holdout");
  } else if (info.holdout == 0) {
    throw InputError(json + ": the model was trained on the whole training split (no --holdout): --holdout " +
                     std::to_string(holdout) + " would test it on images it was trained on");
  } else if (info.holdout != holdout) {
    throw InputError(json + ": the model was trained with --holdout " + std::to_string(info.holdout) + "; --holdout " +
                     std::to_string(holdout) + " would test other images, some of them trained on (pass --holdout " +
                     std::to_string(info.holdout) + ")");
  }
}

void run_test(const TestOptions& o) {
  require_at_least(o.batch_size, 1, "--batch-size");
  require_at_least(o.tta_shift, 0, "--tta-shift");
  require_at_least(o.holdout, 0, "--holdout");
  o.trace.enabled();  // a bad --trace word fails before any work
  const auto device = parse_device(o.device);
  if (!std::filesystem::exists(o.data))
    throw InputError(o.data_option->count() > 0
                         ? o.data + ": no such folder (--data)"
                         : o.data + ": no such folder; run `resnet data` to download CIFAR-10 there, or pass --data "
                                    "(in the repository: --data assets/cifar10-sample)");
  const std::string path = model_source(o.checkpoint);
  TrainedModel trained = load_model_to_use(o.checkpoint, path, device);
  check_test_views({o.tta_flip, o.tta_shift}, trained.info.image_size);
  check_holdout(trained.info, o.holdout, path);
  TestSettings settings;
  settings.data = o.data;
  settings.classes_from_data = !o.checkpoint.weights.empty() && o.checkpoint.classes.empty();
  settings.batch_size = o.batch_size;
  settings.views = {o.tta_flip, o.tta_shift};
  settings.holdout = o.holdout;
  settings.step = parse_step_options(o.amp, o.channels_last, o.cuda_graphs, device);
  const std::filesystem::path folder = std::filesystem::path(path).parent_path();  // the model file's
  if (o.trace.enabled()) settings.trace_path = (folder / "trace-test.json").string();
  std::cout << "Testing " << trained.info.arch << " from " << path << " (" << to_string(settings.step.amp)
            << (settings.step.channels_last ? ", channels-last" : "") << (settings.step.cuda_graphs ? ", CUDA graphs" : "")
            << (settings.views.count() > 1 ? ", " + std::to_string(settings.views.count()) + " views an image" : "")
            << (o.holdout > 0 ? ", on the " + std::to_string(o.holdout) + " held-out training images" : "") << ")"
            << std::endl;
  const TestReport report = test_model(trained, settings, device);
  if (!settings.trace_path.empty())
    std::cout << report.trace_table << "Chrome trace (open in ui.perfetto.dev): " << settings.trace_path << std::endl;
  const EvalResult& r = report.result;
  std::cout << format_test_error(r);
  std::printf(" Top-5 accuracy: %.1f%% (%lld images; top-1 %.2f%%)\n\nAccuracy per class:\n", 100.0 * r.top5,
              static_cast<long long>(r.images), 100.0 * r.accuracy);
  for (size_t c = 0; c < r.per_class.size(); ++c)
    std::printf("  %-20s %5.1f%%  (%lld images)\n", trained.info.classes[c].c_str(),
                std::isnan(r.per_class[c]) ? 0.0 : 100.0 * r.per_class[c], static_cast<long long>(r.per_class_count[c]));
  if (o.confusion) {
    const std::string csv = (folder / "confusion.csv").string();
    std::cout << "\n" << format_confusion(r, trained.info.classes);
    write_file_atomically(csv, confusion_csv(r, trained.info.classes));
    std::cout << "Confusion matrix (CSV): " << csv << std::endl;
    if (plotting_supported()) {
      const std::string png = (folder / "confusion.png").string();
      write_confusion_png(png, r.confusion, trained.info.classes,
                          "Confusion matrix, " + trained.info.arch + " on " + o.data);
      std::cout << "Confusion matrix (PNG): " << png << std::endl;
    }
  }
}

}  // namespace

void add_test_command(CLI::App& app) {
  auto o = std::make_shared<TestOptions>();
  CLI::App* cmd = app.add_subcommand("test", "evaluate the best saved model on the test split (or, with --holdout, on the training images its run held out)");
  add_checkpoint_options(*cmd, o->checkpoint, "test");
  o->data_option =
      cmd->add_option("--data,--path", o->data, "CIFAR-10 binary folder or image folder")->capture_default_str();
  add_device_option(*cmd, o->device);
  add_max_image_pixels_option(*cmd);
  add_batch_size_option(*cmd, o->batch_size);
  add_precision_options(*cmd, o->amp, o->channels_last, &o->cuda_graphs);
  add_trace_option(*cmd, o->trace);
  cmd->add_flag("--tta-flip", o->tta_flip, "test-time augmentation: average the logits of each image and its mirror");
  add_tta_shift_option(*cmd, o->tta_shift);
  cmd->add_option("--holdout", o->holdout,
                  "test the N training images that `train --holdout N` held out instead of the test split (0: off)")
      ->capture_default_str();
  cmd->add_flag("--confusion", o->confusion,
                "also print the confusion matrix and write it as confusion.csv and confusion.png beside the model file");
  cmd->callback([o] { run_test(*o); });
}

}  // namespace resnet::cli
