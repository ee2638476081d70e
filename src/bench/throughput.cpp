#include "bench/throughput.h"

#include <torch/cuda.h>
#include <torch/nn/functional/loss.h>
#include <torch/utils.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <functional>

#ifdef RESNET_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#endif

#include "core/device.h"
#include "core/error.h"
#include "dist/group.h"
#include "dist/reducer.h"
#include "models/registry.h"
#include "train/precision.h"
#include "train/profile.h"
#include "train/sgd.h"
#include "train/step.h"

namespace resnet {
namespace {

void synchronize(const c10::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

// Keeps at most `limit` steps queued on a CUDA device (0 or the CPU: no limit): after() follows
// each step, and waits (asleep, leaving the core to others) for the step `limit` before it.
class InFlight {
 public:
  InFlight(int64_t limit, const c10::Device& device) : limit_(device.is_cuda() ? limit : 0) {}
  void after() {
#ifdef RESNET_WITH_CUDA
    if (limit_ <= 0) return;
    queued_.emplace_back(cudaEventDisableTiming | cudaEventBlockingSync);
    queued_.back().record();
    if (static_cast<int64_t>(queued_.size()) > limit_) {
      queued_.front().synchronize();
      queued_.pop_front();
    }
#endif
  }

 private:
  int64_t limit_;
#ifdef RESNET_WITH_CUDA
  std::deque<at::cuda::CUDAEvent> queued_;
#endif
};


}  // namespace

BenchResult run_bench(const BenchOptions& options) {
  require_at_least(options.batch_size, 1, "--batch-size");
  require_at_least(options.steps, 1, "--steps");
  require_at_least(options.num_classes, 1, "--num-classes");
  if (options.warmup < 0) throw UsageError("--warmup must be 0 or more");
  // Below 32 pixels the ResNet stem and four stride-2 stages leave nothing to pool.
  require_at_least(options.image_size, 32, "--image-size");

  const c10::Device device = device_for_process(options.device, options.dist);
  set_cuda_wait_from_environment(device);
  std::unique_ptr<Group> group;
  if (options.dist.distributed()) group = Group::connect(options.dist, device, std::chrono::seconds(options.dist_timeout_s));
  torch::manual_seed(options.seed);
  // Same choice as the Python peer (torch.backends.cudnn.benchmark = True): autotune convolutions.
  enable_cudnn_autotuning();

  auto model = create_model(options.model, options.num_classes);
  model->to(device);
  const auto images = torch::randn({options.batch_size, 3, options.image_size, options.image_size},
                                   torch::TensorOptions().device(device));
  const auto labels = torch::randint(options.num_classes, {options.batch_size},
                                     torch::TensorOptions().device(device).dtype(torch::kLong));

  StepOptions step_options = parse_step_options(options.amp, options.channels_last, options.cuda_graphs, device,
                                                options.batch_size, options.fused);
  if (group) step_options.cuda_graphs = false;  // as train: the all-reduce runs outside a graph
  if (step_options.channels_last) to_channels_last(*model);
  // The trainer's optimiser with the sample's settings (SgdOptions' defaults) and the trainer's
  // step, so that a step costs what a step of `resnet train` costs.
  Sgd optimizer(model->parameters(), SgdOptions{});
  TrainStep train_step(*model, optimizer, step_options, device);
  EvalStep eval_step(*model, step_options, device);
  std::unique_ptr<GradientReducer> reducer;
  if (group) {
    reducer = std::make_unique<GradientReducer>(model->parameters(), *group);
    train_step.set_gradient_sync(reducer.get());
  }
  auto meet = [&] {
    synchronize(device);
    if (group) group->barrier();
  };
  std::function<void()> step;
  if (options.inference) {
    model->eval();
    step = [&] {
      torch::InferenceMode guard;
      eval_step.logits(images);
    };
  } else {
    model->train();
    step = [&] { train_step.run(images, labels); };
  }
  // Graphs are captured after kGraphWarmupSteps eager steps, and the capture is one more.
  const int64_t warmup = step_options.cuda_graphs ? std::max<int64_t>(options.warmup, kGraphWarmupSteps + 2) : options.warmup;

  const auto warmup_start = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < warmup; ++i) step();
  meet();
  const double warmup_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - warmup_start).count();
  if (options.warmed) *options.warmed = true;
  const auto start = std::chrono::steady_clock::now();
  InFlight in_flight(options.in_flight, device);
  int64_t steps = 0;
  for (; steps < options.steps && !(options.stop && options.stop->load()); ++steps) {
    step();
    in_flight.after();
  }
  meet();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  BenchResult r;
  r.model = options.model;
  r.params = count_parameters(*model);
  r.device = device.str();
  r.device_name = describe_device(device);
  r.batch_size = options.batch_size;
  r.image_size = options.image_size;
  r.steps = steps;
  r.mode = options.inference ? "inference" : "train";
  r.precision = to_string(step_options.amp);
  r.channels_last = step_options.channels_last;
  r.cuda_graphs = options.inference ? eval_step.captured() : train_step.captured();
  r.fused = !options.inference && train_step.fused();
  r.seconds = seconds;
  r.warmup_seconds = warmup_seconds;
  r.processes = group ? group->size() : 1;
  r.rank = group ? group->rank() : 0;
  // (none when a stop came before the first: 0)
  r.img_per_s = steps > 0 ? static_cast<double>(options.batch_size * steps * r.processes) / seconds : 0.0;
  r.step_ms = steps > 0 ? 1000.0 * seconds / static_cast<double>(steps) : 0.0;
  r.peak_mem_mib = peak_memory_mib(device);
  if (!options.trace.empty()) {
    constexpr int kProfiledSteps = 5;
    Profiler profiler(device.is_cuda());
    for (int i = 0; i < kProfiledSteps; ++i) {
      if (options.inference) {
        step();
      } else {
        train_step.run(images, labels, /*eager=*/true);  // a graph replay would show as one launch
      }
    }
    meet();
    r.profile = profiler.finish(options.trace, kProfiledSteps);
  }
  return r;
}

nlohmann::json to_json(const BenchResult& r) {
  // Divide, not multiply, by the power of ten: 74739 / 10.0 prints as 7473.9, 74739 * 0.1 does not.
  auto round = [](double v, double per_unit) { return std::round(v * per_unit) / per_unit; };
  return {{"model", r.model},
          {"params", r.params},
          {"device", r.device},
          {"device_name", r.device_name},
          {"mode", r.mode},
          {"precision", r.precision},
          {"channels_last", r.channels_last},
          {"cuda_graphs", r.cuda_graphs},
          {"fused", r.fused},
          {"batch_size", r.batch_size},
          {"image_size", r.image_size},
          {"steps", r.steps},
          {"img_per_s", round(r.img_per_s, 10)},
          {"step_ms", round(r.step_ms, 100)},
          {"warmup_s", round(r.warmup_seconds, 10)},
          {"peak_mem_mib", round(r.peak_mem_mib, 10)},
          {"processes", r.processes},
          {"img_per_s_per_process", round(r.img_per_s / r.processes, 10)}};
}

}  // namespace resnet
