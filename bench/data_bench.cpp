// Data pipeline throughput, for docs/PERFORMANCE.md:
//   data_bench decode --folder DIR          decode every image of DIR/train and DIR/test on all cores
//   data_bench transform --device cuda      train and test transforms, uint8 32x32 -> float 224x224
//                                           (also the fast recipe's, with and without --trivial-augment)
//   data_bench loader --folder DIR --device cuda   the training loader alone on DIR's train split:
//                                           read + decode + crop + flip + normalise + transfer, as
//                                           `resnet train` gets its batches (issue 15);
//                                           --gathers-at-once 1: one batch gathered at a time;
//                                           --beside-step default|own: while a ResNet-50 training
//                                           step (resnet bench's, fp16, batch 256) runs in this
//                                           process on CUDA's default stream or a stream of its own
//   data_bench gather --folder DIR          the source's gather alone (read + decode each training
//                                           crop into the padded batch), on the CPU, no transform:
//                                           the work of the loader's background thread
// Prints one JSON line per measurement.
#include <torch/cuda.h>
#include <torch/utils.h>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <thread>

#ifdef RESNET_WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "bench/throughput.h"
#include "core/device.h"
#include "core/log.h"
#include "data/image_folder.h"
#include "data/loader.h"
#include "data/open.h"
#include "data/transforms.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void decode(const std::string& folder) {
  for (auto split : {resnet::Split::kTrain, resnet::Split::kTest}) {
    const auto dir = resnet::find_image_folder_split(folder, split);
    const auto t0 = std::chrono::steady_clock::now();
    const auto index = resnet::index_image_folder(dir);
    const double listed = seconds_since(t0);
    const auto result = resnet::decode_image_folder(index, /*skip_bad_images=*/false);
    const double total = seconds_since(t0);
    std::cout << nlohmann::json{{"bench", "decode"}, {"split", resnet::split_name(split)},
                                {"images", result.data.labels.size(0)}, {"threads", at::get_num_threads()},
                                {"list_s", listed}, {"total_s", total},
                                {"img_per_s", result.data.labels.size(0) / total}}
                     .dump()
              << std::endl;
  }
}

void transform(const std::string& device_name, int64_t batch_size, int64_t size, int64_t steps) {
  const auto device = resnet::parse_device(device_name);
  const auto images = torch::randint(0, 256, {batch_size, 3, 32, 32}, torch::TensorOptions().dtype(torch::kUInt8).device(device));
  resnet::RawBatch batch{images, torch::tensor({32, 32}).view({1, 2}).repeat({batch_size, 1}),
                         torch::zeros({batch_size}, torch::TensorOptions().dtype(torch::kLong).device(device))};
  std::mt19937_64 rng(0);
  std::vector<uint64_t> seeds(static_cast<size_t>(batch_size));
  for (size_t i = 0; i < seeds.size(); ++i) seeds[i] = i;
  resnet::TrainCropOptions pad;  // the fast recipe's: pad-and-crop by 4, erasing 0.25
  pad.pad = 4;
  const resnet::RandomErasingOptions erase{0.25};
  // the train transform (RandomResizedCrop), the recipe's, the recipe's with TrivialAugment, the test
  for (const std::string name : {"train_transform", "recipe_transform", "recipe_trivial_augment", "test_transform"}) {
    auto run = [&] {
      if (name == "train_transform") return resnet::train_transform(batch, size, rng);
      if (name == "test_transform") return resnet::test_transform(batch, size);
      return resnet::train_transform(batch, size, seeds, {}, pad, erase, name == "recipe_trivial_augment");
    };
    for (int i = 0; i < 5; ++i) run();
    if (device.is_cuda()) torch::cuda::synchronize();
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < steps; ++i) run();
    if (device.is_cuda()) torch::cuda::synchronize();
    const double s = seconds_since(t0);
    std::cout << nlohmann::json{{"bench", name},
                                {"device", resnet::describe_device(device)}, {"batch_size", batch_size},
                                {"from", "uint8 32x32"}, {"to", "float " + std::to_string(size) + "x" + std::to_string(size)},
                                {"img_per_s", batch_size * steps / s}, {"ms_per_batch", 1000 * s / steps}}
                     .dump()
              << std::endl;
  }
}

// Peak resident memory of this process so far, MiB.
double peak_rss_mib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;
}

// A ResNet-50 training step (resnet bench's: fp16, batch 256) running over and over on its own
// thread, on CUDA's default stream ("default", as `resnet train` runs it) or on a stream of its own
// ("own"), with at most two steps queued on the GPU (as training, which waits for its data), while
// the loader is measured on the same GPU in this process: how much the step slows the loader, and
// whether the default stream's implicit synchronisation with other blocking streams (nvJPEG's own,
// if it makes such) is why. It runs until destroyed; `running()` says whether it still runs.
class StepBeside {
 public:
  StepBeside(const std::string& stream, const torch::Device& device) {
#ifdef RESNET_WITH_CUDA
    if (!device.is_cuda()) throw std::runtime_error("--beside-step needs --device cuda");
    if (stream == "own") own_ = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index());
    thread_ = std::thread([this, device] {
      resnet::name_this_thread("step");
      std::optional<c10::cuda::CUDAStreamGuard> guard;
      if (own_) guard.emplace(*own_);
      resnet::BenchOptions options;
      options.device = device.str();
      options.batch_size = 256;
      options.amp = "fp16";
      options.warmup = 8;
      options.steps = std::numeric_limits<int64_t>::max();  // until stop_
      options.warmed = &warmed_;
      options.stop = &stop_;
      options.in_flight = 2;
      try {
        img_per_s_ = resnet::run_bench(options).img_per_s;
      } catch (const std::exception& e) {
        std::cerr << "the step beside: " << e.what() << std::endl;
      }
      done_ = true;
    });
    // its start-up and warm-up (2-5 s on an H200) before the loader's measurement
    while (!warmed_ && !done_) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (done_) {
      thread_.join();
      throw std::runtime_error("the step beside the loader failed (above)");
    }
#else
    (void)stream, (void)device;
    throw std::runtime_error("--beside-step needs a CUDA build");
#endif
  }
  ~StepBeside() { stop(); }
  StepBeside(const StepBeside&) = delete;
  StepBeside& operator=(const StepBeside&) = delete;
  bool running() const { return !done_; }
  // The step's own img/s while it ran (after it stopped: the destructor's join)
  double img_per_s() const { return img_per_s_; }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  // The stream the loader's caller (the transform) uses, as the trainer's step and transform share one.
  void use_its_stream() {
#ifdef RESNET_WITH_CUDA
    if (own_) c10::cuda::setCurrentCUDAStream(*own_);
#endif
  }

 private:
#ifdef RESNET_WITH_CUDA
  std::optional<c10::cuda::CUDAStream> own_;
#endif
  std::atomic<bool> warmed_{false}, stop_{false}, done_{false};
  double img_per_s_ = 0;
  std::thread thread_;
};

void loader(const std::string& folder, const std::string& device_name, int64_t batch_size, int64_t size,
            int64_t batches, bool gpu_decode, int gathers, const std::string& beside_step) {
  const auto device = resnet::parse_device(device_name);
  resnet::set_cuda_wait_from_environment(device, gpu_decode ? "block" : nullptr);  // (as train's)
  std::unique_ptr<StepBeside> beside;
  if (!beside_step.empty()) {
    beside = std::make_unique<StepBeside>(beside_step, device);
    beside->use_its_stream();
  }
  resnet::DataOptions data;
  data.gpu_decode = gpu_decode;
  data.decode_keep_side = resnet::kDecodeKeepSides * size;  // as train's training split
  auto source = resnet::open_split(folder, resnet::Split::kTrain, device, data);
  if (gathers > 0) source = resnet::with_gathers_at_once(source, gathers);
  resnet::LoaderOptions options;
  options.batch_size = batch_size;
  options.image_size = size;
  resnet::Loader loader(source, options, device);
  const int64_t warmup = 3;
  batches = std::min(batches, loader.batches_per_epoch() - warmup);
  if (batches < 1) throw std::runtime_error(folder + ": too few training images for a measurement");
  loader.start_epoch(0);
  auto finish = [&](const resnet::Batch& b) {  // as the step would: the batch complete on the device
    // (beside a step, as in training: no wait for each batch's transform, which queues behind the
    // step's work on its stream; one wait at the end)
    if (device.is_cuda() && !beside) torch::cuda::synchronize();
    return b.images.size(0);
  };
  for (int64_t i = 0; i < warmup; ++i) finish(*loader.next());
  const auto t0 = std::chrono::steady_clock::now();
  int64_t images = 0;  // (the source's description says the decoder after its first batch)
  for (int64_t i = 0; i < batches; ++i) images += finish(*loader.next());
#ifdef RESNET_WITH_CUDA
  if (beside) c10::cuda::getCurrentCUDAStream().synchronize();
#endif
  const double s = seconds_since(t0);
  nlohmann::json out{{"bench", "loader"}, {"source", source->description()},
                     {"device", resnet::describe_device(device)}, {"batch_size", batch_size},
                     {"image_size", size}, {"threads", at::get_num_threads()}, {"batches", batches},
                     {"gathers_at_once", source->gathers_at_once()},
                     {"img_per_s", images / s}, {"ms_per_batch", 1000 * s / batches},
                     {"peak_rss_mib", peak_rss_mib()}};
  if (beside) {
    out["beside_step"] = beside_step;
    // the step failed before the loader's last batch: not a figure of the two together
    if (!beside->running()) out["beside_step_ended_early"] = true;
    beside->stop();
    out["beside_step_img_per_s"] = beside->img_per_s();  // the step's own, meanwhile
  }
  // With --gpu-decode: how the batches gathered (warm-up and those gathered ahead included) were
  // split, and each side's speed while both ran at once, per gather (gathers at once overlap:
  // their seconds add up to more than the wall time).
  loader.settle();
  const auto d = source->decode_stats();
  if (d.gpu_images + d.cpu_images > 0) {
    const double all = static_cast<double>(d.gpu_images + d.cpu_images) / static_cast<double>(batch_size);
    out["gpu_decode"] = {{"gpu_share", static_cast<double>(d.gpu_images) / static_cast<double>(d.gpu_images + d.cpu_images)},
                         {"gpu_img_per_s", d.gpu_s > 0 ? static_cast<double>(d.gpu_images) / d.gpu_s : 0.0},
                         {"cpu_img_per_s", d.cpu_s > 0 ? static_cast<double>(d.cpu_images) / d.cpu_s : 0.0},
                         {"read_ms_per_batch", 1000 * d.read_s / all},
                         {"headers_ms_per_batch", 1000 * d.headers_s / all},
                         {"gpu_ms_per_batch", 1000 * d.gpu_s / all},
                         {"gpu_setups_per_batch", static_cast<double>(d.gpu_setups) / all},
                         {"zeros_ms_per_batch", 1000 * d.zeros_s / all},
                         {"cpu_wait_ms_per_batch", 1000 * d.cpu_wait_s / all},
                         {"upload_ms_per_batch", 1000 * d.upload_s / all},
                         {"cpu_ms_per_batch", 1000 * d.cpu_s / all}};
  }
  std::cout << out.dump() << std::endl;
}

// The streamed source's gather on the CPU with the training loader's crop plan (RandomResizedCrop
// boxes from a seeded generator), without the transform: how fast the CPU fills batches.
void gather(const std::string& folder, int64_t batch_size, int64_t size, int64_t batches) {
  resnet::DataOptions data;
  data.decode_keep_side = resnet::kDecodeKeepSides * size;
  const auto source = resnet::open_split(folder, resnet::Split::kTrain, torch::kCPU, data);
  torch::manual_seed(0);  // the same batches on every run
  const auto order = torch::randperm(source->size(), torch::TensorOptions().dtype(torch::kLong));
  batches = std::min(batches, source->size() / batch_size);
  if (batches < 2) throw std::runtime_error(folder + ": too few training images for a measurement");
  resnet::CropPlan plan;
  plan.output_size = size;
  plan.box = [](int64_t row, int64_t height, int64_t width) {
    std::mt19937_64 rng(static_cast<uint64_t>(row));
    return resnet::random_resized_crop_box(height, width, rng);
  };
  source->gather(order.slice(0, 0, batch_size), torch::kCPU, &plan);  // warm-up (allocator, file cache)
  const auto t0 = std::chrono::steady_clock::now();
  int64_t images = 0;
  double padded_mib = 0;
  for (int64_t i = 1; i < batches; ++i) {
    const auto batch = source->gather(order.slice(0, i * batch_size, (i + 1) * batch_size), torch::kCPU, &plan);
    images += batch.images.size(0);
    padded_mib += static_cast<double>(batch.images.numel()) / (1 << 20);
  }
  const double s = seconds_since(t0);
  std::cout << nlohmann::json{{"bench", "gather"}, {"source", source->description()}, {"batch_size", batch_size},
                              {"image_size", size}, {"threads", at::get_num_threads()}, {"batches", batches - 1},
                              {"img_per_s", images / s}, {"ms_per_batch", 1000 * s / (batches - 1)},
                              {"padded_mib_per_batch", padded_mib / (batches - 1)}, {"peak_rss_mib", peak_rss_mib()}}
                   .dump()
            << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"data pipeline benchmarks"};
  app.require_subcommand(1);
  std::string folder, device = "auto";
  int64_t batch_size = 256, size = 224, steps = 200;
  auto* dec = app.add_subcommand("decode", "decode an image folder's train and test splits");
  dec->add_option("--folder", folder)->required();
  auto* tf = app.add_subcommand("transform", "batched train and test transforms");
  tf->add_option("--device", device);
  tf->add_option("--batch-size", batch_size);
  tf->add_option("--image-size", size);
  tf->add_option("--steps", steps);
  auto* ld = app.add_subcommand("loader", "the training loader on an image folder's train split");
  ld->add_option("--folder", folder)->required();
  ld->add_option("--device", device);
  ld->add_option("--batch-size", batch_size);
  ld->add_option("--image-size", size);
  ld->add_option("--batches", steps, "batches timed (after 3 more)");
  bool gpu_decode = false;
  ld->add_flag("--gpu-decode", gpu_decode, "JPEGs decoded with nvJPEG");
  int gathers = 0;
  ld->add_option("--gathers-at-once", gathers, "batches gathered at once (at most the source's; default: the source's)");
  std::string beside_step;
  ld->add_option("--beside-step", beside_step,
                 "measure while a ResNet-50 training step runs in this process, on CUDA's default stream or its own")
      ->check(CLI::IsMember({"default", "own"}));
  auto* ga = app.add_subcommand("gather", "the streamed source's gather alone, with training crops, on the CPU");
  ga->add_option("--folder", folder)->required();
  ga->add_option("--batch-size", batch_size);
  ga->add_option("--image-size", size);
  ga->add_option("--batches", steps, "batches timed (after 1 more)");
  CLI11_PARSE(app, argc, argv);
  try {
    if (dec->parsed()) decode(folder);
    if (tf->parsed()) transform(device, batch_size, size, steps);
    if (ld->parsed()) loader(folder, device, batch_size, size, steps, gpu_decode, gathers, beside_step);
    if (ga->parsed()) gather(folder, batch_size, size, steps);
  } catch (const std::exception& e) {
    std::cerr << "data_bench: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
