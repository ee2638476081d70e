#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include "cli/commands.h"
#include "cli/options.h"
#include "core/device.h"
#include "core/error.h"
#include "data/loader.h"
#include "data/open.h"
#include "train/evaluate.h"
#include "train/inference.h"
#include "train/profile.h"

namespace resnet::cli {

namespace {

constexpr const char* kDefaultData = "data/cifar10";

struct TestOptions {
  CheckpointFlags checkpoint;
  std::string data = kDefaultData, device = "auto";
  int64_t batch_size = 32;
  TraceFlag trace;
  CLI::Option* data_option = nullptr;
};

void run_test(const TestOptions& o) {
  require_at_least(o.batch_size, 1, "--batch-size");
  o.trace.enabled();  // a bad --trace word fails before any work
  const auto device = parse_device(o.device);
  if (!std::filesystem::exists(o.data))
    throw InputError(o.data_option->count() > 0
                         ? o.data + ": no such folder (--data)"
                         : o.data + ": no such folder; run `resnet data` to download CIFAR-10 there, or pass --data "
                                    "(in the repository: --data assets/cifar10-sample)");
  const std::string path = checkpoint_path(o.checkpoint);
  const TrainedModel trained = load_checkpoint(o.checkpoint, path, device);
  auto source = open_split(o.data, Split::kTest, device);
  if (source->classes() != trained.info.classes)
    throw InputError(o.data + ": its classes differ from those " + path + " was trained on");
  Loader loader(source, {o.batch_size, trained.info.image_size, /*train=*/false, 0}, device);
  std::cout << "Testing " << trained.info.arch << " from " << path << " on " << source->description() << std::endl;
  std::unique_ptr<Profiler> profiler;
  if (o.trace.enabled()) {
    evaluate(*trained.model, loader);  // warm-up: cuDNN autotuning, allocator
    profiler = std::make_unique<Profiler>(device.is_cuda());
  }
  const EvalResult r = evaluate(*trained.model, loader);
  if (profiler) {
    const std::string trace = (std::filesystem::path(path).parent_path() / "trace-test.json").string();
    std::cout << profiler->finish(trace) << "Chrome trace (open in ui.perfetto.dev): " << trace << std::endl;
  }
  std::cout << format_test_error(r);
  std::printf(" Top-5 accuracy: %.1f%% (%lld images)\n\nAccuracy per class:\n", 100.0 * r.top5,
              static_cast<long long>(r.images));
  for (size_t c = 0; c < r.per_class.size(); ++c)
    std::printf("  %-20s %5.1f%%  (%lld images)\n", trained.info.classes[c].c_str(),
                std::isnan(r.per_class[c]) ? 0.0 : 100.0 * r.per_class[c], static_cast<long long>(r.per_class_count[c]));
}

}  // namespace

void add_test_command(CLI::App& app) {
  auto o = std::make_shared<TestOptions>();
  CLI::App* cmd = app.add_subcommand("test", "evaluate the best saved model on the test split");
  add_checkpoint_options(*cmd, o->checkpoint, "test");
  o->data_option =
      cmd->add_option("--data,--path", o->data, "CIFAR-10 binary folder or image folder")->capture_default_str();
  add_device_option(*cmd, o->device);
  add_batch_size_option(*cmd, o->batch_size);
  add_trace_option(*cmd, o->trace);
  cmd->callback([o] { run_test(*o); });
}

}  // namespace resnet::cli
