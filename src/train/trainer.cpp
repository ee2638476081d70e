#include "train/trainer.h"

#include <ATen/Context.h>
#include <torch/cuda.h>
#include <torch/nn/functional/loss.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "core/device.h"
#include "core/error.h"
#include "data/cifar10_fetch.h"
#include "data/loader.h"
#include "data/open.h"
#include "models/registry.h"
#include "train/checkpoint.h"
#include "train/evaluate.h"
#include "train/profile.h"
#include "train/sgd.h"

namespace resnet {
namespace fs = std::filesystem;

namespace {

constexpr const char* kDefaultData = "data/cifar10";
constexpr int64_t kTraceWarmupSteps = 3;  // steps before profiling starts (cuDNN autotuning)
constexpr int64_t kTraceSteps = 5;        // steps profiled

// Settings that must match for a resumed run to continue the same computation.
const char* kResumeKeys[] = {"batch_size", "image_size", "seed", "learning_rate", "momentum", "weight_decay"};

std::string data_path(const TrainOptions& o) {
  if (!o.data.empty()) return o.data;
  if (detect_format(kDefaultData) == DataFormat::kNone) {
    FetchOptions fetch;
    fetch.data_dir = kDefaultData;
    fetch.progress = ::isatty(STDERR_FILENO) != 0;
    fetch_cifar10(fetch, [](const std::string& line) { std::cout << line << std::endl; });
  }
  return kDefaultData;
}

void print_progress(int64_t done, int64_t total, double eta) {
  constexpr int kWidth = 30;
  const double f = static_cast<double>(done) / static_cast<double>(total);
  std::string bar(static_cast<size_t>(f * kWidth), '#');
  bar.resize(kWidth, '.');
  std::printf("\r[%s] %lld/%lld batches, ETA %.0fs ", bar.c_str(), static_cast<long long>(done),
              static_cast<long long>(total), eta);
  std::fflush(stdout);
}

// Rewrites metrics.csv atomically with this epoch's row last; rows of this epoch or later (left
// by a run that crashed after writing them) are replaced, so a resumed run never duplicates one.
void write_metrics(const fs::path& csv, int64_t epoch, double train_loss, const EvalResult& e, double img_per_s,
                   double seconds, double lr) {
  std::string text = "epoch,train_loss,test_loss,top1,top5,img_per_s,seconds,learning_rate\n";
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line))
    if (!line.empty() && std::stoll(line.substr(0, line.find(','))) < epoch) text += line + "\n";
  char row[256];
  std::snprintf(row, sizeof row, "%lld,%.6f,%.6f,%.4f,%.4f,%.1f,%.2f,%g\n", static_cast<long long>(epoch), train_loss,
                e.loss, e.accuracy, e.top5, img_per_s, seconds, lr);
  write_file_atomically(csv.string(), text + row);
}

}  // namespace

nlohmann::json to_json(const TrainOptions& o) {
  return {{"model", o.model},           {"data", o.data},         {"epochs", o.epochs},
          {"batch_size", o.batch_size}, {"image_size", o.image_size}, {"seed", o.seed},
          {"learning_rate", o.learning_rate}, {"momentum", o.momentum}, {"weight_decay", o.weight_decay}};
}

double train(const TrainOptions& o) {
  if (o.epochs < 1) throw UsageError("--epochs must be at least 1");
  if (o.batch_size < 1) throw UsageError("--batch-size must be at least 1");
  if (o.image_size < 32) throw UsageError("--image-size must be at least 32");
  const c10::Device device = parse_device(o.device);
  create_model(o.model, 1);  // an unknown --model fails before any data work

  const std::string path = data_path(o);
  DataOptions data_options;
  data_options.skip_bad_images = o.skip_bad_images;
  auto train_source = open_split(path, Split::kTrain, device, data_options);
  auto test_source = open_split(path, Split::kTest, device, data_options);
  if (train_source->classes() != test_source->classes())
    throw InputError(path + ": the train and test splits have different classes");
  const auto& classes = train_source->classes();

  torch::manual_seed(o.seed);
  at::globalContext().setBenchmarkCuDNN(true);
  auto model = create_model(o.model, static_cast<int64_t>(classes.size()));
  model->to(device);
  Sgd optimizer(model->parameters(), {o.learning_rate, o.momentum, o.weight_decay});

  const fs::path dir = fs::path(o.checkpoint_dir) / o.model;
  fs::create_directories(dir);
  const std::string resume_path = (dir / "resume.pt").string();
  const fs::path metrics = dir / "metrics.csv";
  TrainState state;
  state.settings = to_json(o);
  state.classes = classes;
  if (o.restart) {
    fs::remove(resume_path);
    fs::remove(metrics);
  } else if (fs::exists(resume_path)) {
    TrainState saved = load_resume(resume_path, *model, optimizer);
    for (const char* key : kResumeKeys)
      if (saved.settings.value(key, nlohmann::json()) != state.settings[key])
        throw UsageError(resume_path + " was written by a run with " + key + " = " + saved.settings[key].dump() +
                         ", this run has " + state.settings[key].dump() +
                         "; use the same setting to resume, or --restart to start over");
    saved.settings = state.settings;  // --epochs may grow
    state = saved;
    std::cout << "Resuming from epoch " << state.epoch + 1 << ", step " << state.step << std::endl;
  }

  std::cout << "Training " << o.model << " (" << count_parameters(*model) << " parameters) on "
            << describe_device(device) << ": " << train_source->description() << ", " << train_source->size()
            << " training and " << test_source->size() << " test images, " << classes.size() << " classes"
            << std::endl;
  LoaderOptions train_loader_options{o.batch_size, o.image_size, /*train=*/true, o.seed};
  LoaderOptions test_loader_options{o.batch_size, o.image_size, /*train=*/false, o.seed};
  Loader train_loader(train_source, train_loader_options, device);
  Loader test_loader(test_source, test_loader_options, device);
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  const int64_t size = train_source->size();
  const int64_t run_start_step = state.step;
  std::unique_ptr<Profiler> profiler;
  bool traced = false;

  if (state.epoch >= o.epochs)
    std::cout << "Training is complete (" << state.epoch << " epochs, best accuracy " << state.best_accuracy
              << "); pass a larger --epochs to go on, or --restart to start over" << std::endl;
  model->train();
  for (int64_t epoch = state.epoch; epoch < o.epochs; ++epoch) {
    std::cout << "Epoch " << epoch + 1 << "\n-------------------------------" << std::endl;
    train_loader.start_epoch(epoch, state.batch);
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t first_batch = state.batch;
    int64_t images = 0;
    // Summed on the device so that the loop never waits for the GPU except to print or save.
    auto loss_sum = torch::full({}, state.epoch_loss_sum, torch::TensorOptions().dtype(torch::kDouble).device(device));
    auto sync_loss_sum = [&] { state.epoch_loss_sum = loss_sum.item<double>(); };
    while (auto batch = train_loader.next()) {
      if (o.trace && !traced && !profiler && state.step - run_start_step == kTraceWarmupSteps)
        profiler = std::make_unique<Profiler>(device.is_cuda());
      optimizer.zero_grad();
      const auto loss = torch::nn::functional::cross_entropy(model->forward(batch->images), batch->labels);
      loss.backward();
      optimizer.step();
      const int64_t b = state.batch++;
      ++state.step;
      images += batch->labels.size(0);
      loss_sum += loss.detach();
      if (b % o.log_every == 0) {
        if (tty) std::printf("\r%60s\r", "");
        std::printf("loss: %7f  [%5lld/%5lld]\n", loss.item<double>(), static_cast<long long>(b * o.batch_size),
                    static_cast<long long>(size));
      }
      if (tty) {
        // From this run's pace: batches before a resume took no time here.
        const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const int64_t left = train_loader.batches_per_epoch() - state.batch;
        print_progress(state.batch, train_loader.batches_per_epoch(),
                       elapsed * static_cast<double>(left) / static_cast<double>(state.batch - first_batch));
      }
      if (profiler && state.step - run_start_step == kTraceWarmupSteps + kTraceSteps) {
        const std::string trace = (dir / "trace.json").string();
        std::cout << (tty ? "\n" : "") << profiler->finish(trace) << "Chrome trace (open in ui.perfetto.dev): " << trace
                  << std::endl;
        profiler.reset();
        traced = true;
      }
      const bool stop = o.max_steps > 0 && state.step >= o.max_steps;
      if (stop || (o.checkpoint_every > 0 && state.step % o.checkpoint_every == 0)) {
        sync_loss_sum();
        save_resume(resume_path, state, *model, optimizer);
      }
      if (stop) {
        std::cout << (tty ? "\n" : "") << "Stopped after " << state.step << " steps (--max-steps); "
                  << resume_path << " holds the run" << std::endl;
        return state.best_accuracy;
      }
    }
    if (tty) std::printf("\n");
    sync_loss_sum();  // waits for the GPU too
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double train_loss = state.epoch_loss_sum / static_cast<double>(std::max<int64_t>(1, state.batch));

    const EvalResult result = evaluate(*model, test_loader);
    state.epoch = epoch + 1;
    state.batch = 0;
    state.epoch_loss_sum = 0;
    if (result.accuracy > state.best_accuracy) {
      state.best_accuracy = result.accuracy;
      if (o.save_model)
        save_best_model(dir.string(), *model, {o.model, classes, o.image_size, result.accuracy, state.epoch});
    }
    std::cout << "current highest_accuracy:  " << state.best_accuracy << "\n" << format_test_error(result);
    std::printf(" Top-5 accuracy: %.1f%%, train loss: %.6f, %.1f img/s, %.1f s\n\n", 100.0 * result.top5, train_loss,
                static_cast<double>(images) / seconds, seconds);
    std::fflush(stdout);
    write_metrics(metrics, state.epoch, train_loss, result, static_cast<double>(images) / seconds, seconds,
                   o.learning_rate);
    save_resume(resume_path, state, *model, optimizer);
  }
  return state.best_accuracy;
}

}  // namespace resnet
