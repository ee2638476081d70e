#include "train/trainer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <future>
#include <memory>
#include <optional>
#include <sstream>
#include <tuple>

#include <torch/cuda.h>

#include "core/device.h"
#include "core/error.h"
#include "data/cifar10_fetch.h"
#include "data/loader.h"
#include "data/open.h"
#include "dist/group.h"
#include "dist/reducer.h"
#include "dist/sync_bn.h"
#include "io/background_writer.h"
#include "io/event_proto.h"
#include "io/event_writer.h"
#include "io/state_dict.h"
#include "models/registry.h"
#include "train/checkpoint.h"
#include "train/ema.h"
#include "train/evaluate.h"
#include "train/inference.h"
#include "train/metrics.h"
#include "train/profile.h"
#include "train/recipe.h"
#include "train/step.h"
#include "train/step_gaps.h"

#include <signal.h>
#include <unistd.h>

namespace resnet {
namespace fs = std::filesystem;

namespace {

constexpr const char* kDefaultData = "data/cifar10";
constexpr int64_t kTraceWarmupSteps = 3;  // steps before profiling starts (cuDNN autotuning)
constexpr int64_t kTraceSteps = 5;        // steps profiled

// Settings that must match for a resumed run to continue the same computation.
const char* kResumeKeys[] = {"batch_size", "image_size", "seed",           "learning_rate",  "momentum",
                             "weight_decay", "freeze_backbone", "lr_schedule", "lr_scale_batch",
                             "label_smoothing", "nesterov", "no_decay_bn_bias", "crop_scale", "crop_pad", "random_erase", "trivial_augment", "ema_decay",
                             "mixup", "cutmix", "mixup_off_epoch", "clip_grad_norm", "holdout", "progressive_resize"};

// "Learning rate: cosine from 0.4 (0.1 x 1024 / 256) to 0, after 5 warm-up epochs from 0.04"
std::string describe_schedule(const TrainOptions& o, double base_lr, int world) {
  std::ostringstream d;
  d << "Learning rate: " << o.schedule.kind << (o.schedule.kind == "onecycle" ? " up to " : " from ") << base_lr;
  if (o.lr_scale_batch > 0)
    d << " (" << o.learning_rate << " x " << o.batch_size * world << " / " << o.lr_scale_batch << ")";
  if (o.schedule.kind == "cosine") d << " to " << o.schedule.min_lr;
  if (o.schedule.kind == "step") d << ", x" << o.schedule.gamma << " every " << o.schedule.step_size << " epochs";
  if (o.schedule.kind == "multistep") {
    d << ", x" << o.schedule.gamma << " at epochs";
    for (size_t i = 0; i < o.schedule.milestones.size(); ++i) d << (i ? "," : " ") << o.schedule.milestones[i];
  }
  if (o.schedule.warmup_epochs > 0)
    d << ", after " << o.schedule.warmup_epochs << " warm-up epochs from " << base_lr * o.schedule.warmup_start_factor;
  return d.str();
}

// The classifier's parameters: fc (ResNets) or classifier.1 (SqueezeNets).
bool in_classifier(const std::string& name) { return name.rfind("fc.", 0) == 0 || name.rfind("classifier.", 0) == 0; }

std::atomic<int> g_stop_signal{0};

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string data_path(const TrainOptions& o, TrainReporter& reporter) {
  if (!o.data.empty()) return o.data;
  if (detect_format(kDefaultData) == DataFormat::kNone) {
    FetchOptions fetch;
    fetch.data_dir = kDefaultData;
    fetch.progress = ::isatty(STDERR_FILENO) != 0;
    fetch_cifar10(fetch, [&](const std::string& line) { reporter.message(line); });
  }
  return kDefaultData;
}

// One eager training step of a throwaway model of the run's architecture on a zero batch of the
// run's shape: cuDNN autotunes every convolution of that shape (forward and both backward
// passes, into its process-wide cache), the GPU kernels load and the caching allocator grows.
// Run on a thread while the data is read, this takes what was epoch 1's first step (4.1 s for
// ResNet-50 at batch 32 on an H100) off the run's critical path. Returns the seconds it took.
// Errors are left for the real step to report.
double warm_up(const TrainOptions& o, int64_t image_size, StepOptions options, const c10::Device& device) {
  const auto start = Clock::now();
  try {
    auto model = create_model(o.model, 10);  // the classifier's width does not touch cuDNN
    model->to(device);
    if (options.channels_last) to_channels_last(*model);
    model->train();
    options.cuda_graphs = false;
    Sgd sgd(model->parameters(), SgdOptions{});
    TrainStep step(*model, sgd, options, device);
    const auto on = torch::TensorOptions().device(device);
    step.run(torch::zeros({o.batch_size, 3, image_size, image_size}, on),
             torch::zeros({o.batch_size}, on.dtype(torch::kLong)));
    torch::cuda::synchronize(device.index());
  } catch (const std::exception&) {
  }
  return seconds_since(start);
}

// The training images' size in `epoch` (0-based): --image-size, or --progressive-resize's.
int64_t train_image_size(const TrainOptions& o, int64_t epoch) {
  if (o.progressive_resize.size() != 2) return o.image_size;
  return progressive_image_size(static_cast<int64_t>(o.progressive_resize[0]), o.progressive_resize[1], o.image_size,
                                epoch, o.epochs);
}

// <checkpoint-dir>/<model>, made if missing; an InputError naming it when it cannot be (read-only
// file system, no permission, a file in the way).
fs::path checkpoint_folder(const TrainOptions& o) {
  const fs::path dir = fs::path(o.checkpoint_dir) / o.model;
  std::error_code error;
  fs::create_directories(dir, error);
  if (error || !fs::is_directory(dir))
    throw InputError(dir.string() + ": cannot make the checkpoint folder (--checkpoint-dir): " +
                     (error ? error.message() : "a file is in the way"));
  return dir;
}

// Everything one run holds: data, model, optimiser, step, files, and where it stands.
struct Run {
  const TrainOptions& o;
  TrainReporter& reporter;
  c10::Device device;
  StepOptions step_options;
  std::shared_ptr<ImageSource> train_source, test_source;
  std::shared_ptr<Classifier> model;
  std::unique_ptr<Sgd> optimizer;
  std::unique_ptr<LrSchedule> schedule;
  std::unique_ptr<Ema> ema;  // --ema-decay
  NamedTensors saved_ema;     // the average resume.pt held, until start_ema
  std::unique_ptr<TrainStep> step;
  std::unique_ptr<EvalStep> eval_step;
  std::unique_ptr<Loader> train_loader, test_loader;
  fs::path dir;
  std::string resume_path;
  TrainState state;
  int64_t run_start_step = 0;
  bool size_said = false;  // the first epoch this process runs says its size (--progressive-resize)
  // When this process started (train()'s first line) and the run's wall time before it (resume.pt)
  Clock::time_point started = Clock::now();
  double elapsed_before = 0;
  double elapsed() const { return elapsed_before + seconds_since(started); }
  int64_t saved_step = -1;  // the step resume.pt holds (-1: this run has written none)
  // --skip-nonfinite: steps skipped in the run before this epoch, and the count last said
  int64_t skipped_before_epoch = 0, skipped_said = 0;
  std::unique_ptr<Profiler> profiler;
  bool traced = false;
  std::unique_ptr<Group> group;  // several processes: the job's
  std::unique_ptr<GradientReducer> reducer;
  std::unique_ptr<EventWriter> events;  // TensorBoard's (--logdir), rank 0's
  // The epochs' checkpoints, written beside the next epoch (the last member: it finishes its
  // writes before the rest goes)
  BackgroundWriter writer;

  Run(const TrainOptions& options, TrainReporter& r)
      : o(options), reporter(r), device(device_for_process(options.device, options.dist)) {
    // With --gpu-decode the GPU's waits sleep: the decoding threads need the cores (+2.5% and +3.8%
    // of training speed on an ImageNet-like folder in two calls; H200, 16 cores, 2026-12-02)
    set_cuda_wait_from_environment(device, o.gpu_decode ? "block" : nullptr);
  }

  int world() const { return group ? group->size() : 1; }
  bool lead() const { return !group || group->rank() == 0; }  // rank 0 reports and writes files
  // The mean over the processes of a scalar each holds (itself with one process).
  double global_mean(const torch::Tensor& value) const;
  void connect();        // the process group, for several processes
  void share_weights();  // rank 0's parameters and buffers to every process; the gradient reducer
  // --ema-decay's average, from the weights the run starts with (after --weights and
  // share_weights) or from resume.pt's
  void start_ema();
  void check_replicas();  // every process ends with rank 0's weights, or a DistError
  // [sum, sum of squares] of all parameters, fp64, on the device: the replicas' checksum, and
  // not finite where any weight is not.
  torch::Tensor parameter_sums() const;
  // The epoch's loss so far into `state` (the mean over processes), checked finite.
  void settle_epoch_loss(const torch::Tensor& loss_sum, int64_t epoch,
                         const torch::Tensor& skipped = torch::Tensor());
  // --skip-nonfinite: `skipped` (steps of this epoch the step itself skipped: a loss, or gradients
  // outside fp16, not finite) against the budget.
  void check_skipped(const torch::Tensor& skipped, int64_t epoch);
  // A non-finite training loss ends the run, before any checkpoint holds its weights.
  void require_finite(double loss, int64_t epoch) const;
  [[noreturn]] void fail_non_finite(const std::string& what, int64_t epoch) const;
  // Whether request_stop was called (by this process; with several, by any of them, checked on
  // `logged_step`s only, where they all meet).
  bool stop_requested(bool logged_step) const;

  void open_data();
  void build_model();
  // Continues from `resume` (resume.pt, read already) or, with --restart, removes the old files.
  void resume_or_restart(const ResumeFile* resume);
  void load_initial_weights();  // --weights, on a fresh start
  // Returns false when --max-steps stopped the run.
  bool run_epoch(int64_t epoch);
  // `gpu_between`: the seconds the GPU spent between the epoch's steps (StepGaps)
  void finish_epoch(int64_t epoch, double loss_sum, int64_t images, double seconds, StepGaps::Seconds gpu_between);
  // --trace: starts the profiler before step kTraceWarmupSteps + 1 of this run, and stops it after
  // kTraceSteps steps, or earlier (`now`) when the run or the epoch ends first.
  void start_trace();
  void finish_trace(bool now);
  // TensorBoard's event file (--logdir; rank 0): a new file each run, which starts at the run's
  // next step, so that TensorBoard drops what an interrupted run logged past its resume.pt.
  void open_events();
  void log_events(const StepReport& step);
  void log_events(const EpochReport& epoch);
  // Writes resume.pt, with fp16's loss scale, after any write still in the background; or, with
  // `background`, copies it off the device and leaves the writing to `writer`.
  void save(bool background = false);
};

void Run::connect() {
  if (!o.dist.distributed()) return;
  group = Group::connect(o.dist, device, std::chrono::seconds(o.dist_timeout_s));
}

bool Run::stop_requested(bool logged_step) const {
  if (!group) return g_stop_signal.load() != 0;
  if (!logged_step) return false;  // processes agree on a step where they meet anyway
  const bool stop = global_mean(torch::full({}, g_stop_signal.load() != 0 ? 1.0 : 0.0,
                                             torch::TensorOptions().dtype(torch::kDouble).device(device))) > 0;
  if (stop && g_stop_signal.load() == 0) g_stop_signal = SIGTERM;  // another process was stopped
  return stop;
}

double Run::global_mean(const torch::Tensor& value) const {
  if (!group) return value.item<double>();
  auto v = value.detach().to(torch::kDouble).reshape({1}).clone();
  group->all_reduce(v);
  return v.item<double>() / world();
}

void Run::start_ema() {
  if (o.ema_decay <= 0) return;
  ema = std::make_unique<Ema>(*model, o.ema_decay);
  if (!saved_ema.empty()) ema->load(saved_ema, resume_path);
  saved_ema.clear();
}

void Run::share_weights() {
  if (!group) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> tensors;
  for (const auto& p : model->parameters()) tensors.push_back(p);
  for (const auto& b : model->buffers()) tensors.push_back(b);
  std::vector<torch::Tensor> dense;
  for (const auto& t : tensors) dense.push_back(t.contiguous());
  group->broadcast(dense, 0);
  for (size_t i = 0; i < tensors.size(); ++i)
    if (!dense[i].is_same(tensors[i])) tensors[i].copy_(dense[i]);
  std::vector<torch::Tensor> trainable;
  for (const auto& p : model->parameters())
    if (p.requires_grad()) trainable.push_back(p);
  reducer = std::make_unique<GradientReducer>(trainable, *group);
  step->set_gradient_sync(reducer.get());
}

torch::Tensor Run::parameter_sums() const {
  torch::NoGradGuard no_grad;
  auto sums = torch::zeros({2}, torch::TensorOptions().dtype(torch::kDouble).device(device));
  for (const auto& p : model->parameters()) {
    const auto d = p.detach().to(torch::kDouble);
    sums[0] += d.sum();
    sums[1] += d.square().sum();
  }
  return sums;
}

void Run::check_replicas() {
  if (!group) return;
  const auto all = group->all_gather(parameter_sums());
  const auto mine = all[0].cpu();
  for (int r = 1; r < world(); ++r)
    if (!torch::equal(all[r].cpu(), mine))
      throw DistError("the processes' weights differ after training: rank " + std::to_string(r) +
                      "'s parameter checksum is not rank 0's");
  char line[160];
  std::snprintf(line, sizeof line, "Replicas agree: parameter checksum %.9g on all %d processes",
                mine[0].item<double>(), world());
  reporter.message(line);
}

void Run::open_data() {
  const std::string path = data_path(o, reporter);
  DataOptions data_options;
  data_options.skip_bad_images = o.skip_bad_images;
  data_options.gpu_decode = o.gpu_decode;
  DataOptions train_options = data_options;  // training crops at most a few times the input size
  train_options.decode_keep_side = kDecodeKeepSides * o.image_size;
  train_source = open_split(path, Split::kTrain, device, train_options);
  if (o.holdout > 0) {  // the test split is not read: choices are made on training images
    std::tie(train_source, test_source) = hold_out(train_source, o.holdout);
    reporter.message("--holdout " + std::to_string(o.holdout) + ": each epoch is tested on " +
                     test_source->description() + " (the same images on every run), not on the test split");
  } else {
    test_source = open_split(path, Split::kTest, device, data_options);
  }
  if (train_source->classes() != test_source->classes())
    throw InputError(path + ": the train and test splits have different classes");
  const int rank = group ? group->rank() : 0;
  TrainCropOptions crop{o.crop_scale[0], o.crop_scale[1]};
  crop.pad = o.crop_pad;
  const RandomErasingOptions erase{o.random_erase};
  train_loader = std::make_unique<Loader>(
      train_source,
      LoaderOptions{o.batch_size, o.image_size, true, o.seed, rank, world(), crop, erase, o.test_crop_pct, o.trivial_augment,
                    o.epochs},
      device);
  test_loader = std::make_unique<Loader>(
      test_source, LoaderOptions{o.batch_size, o.image_size, false, o.seed, rank, world(), {}, {}, o.test_crop_pct}, device);
}

void Run::build_model() {
  torch::manual_seed(o.seed);
  enable_cudnn_autotuning();
  model = create_model(o.model, static_cast<int64_t>(train_source->classes().size()));
  // A resumed run's weights replace these (the command line refuses it beside --weights).
  if (o.zero_init_residual && !model->zero_init_residual()) {
    const auto& by_recipe = o.recipe_applied;
    if (std::find(by_recipe.begin(), by_recipe.end(), "--zero-init-residual") == by_recipe.end())
      throw UsageError("--zero-init-residual: " + o.model + " has no residual blocks");
    reporter.message("--recipe " + o.recipe + "'s --zero-init-residual left out: " + o.model + " has no residual blocks");
  }
  model->to(device);
  step_options = parse_step_options(o.amp, o.channels_last, o.cuda_graphs, device, o.batch_size, o.fused);
  step_options.label_smoothing = o.label_smoothing;
  step_options.mix = o.mix;
  step_options.clip_grad_norm = o.clip_grad_norm;
  step_options.skip_nonfinite = o.skip_nonfinite > 0;
  if (group && o.skip_nonfinite > 0)  // each process would decide on its own loss alone
    throw UsageError("--skip-nonfinite does not work with several processes yet");
  if (group && step_options.cuda_graphs) {
    step_options.cuda_graphs = false;
    reporter.message("CUDA graphs are off with several processes: the gradient all-reduce runs between backward and "
                     "the optimiser, outside any graph (not captured yet; at batch 256 on an H100 graphs add 2%)");
  }
  if (o.sync_bn && group) {
    if (!model->set_batch_norm([g = group.get()](const torch::Tensor& x, const BatchNormParams& bn) {
          return sync_batch_norm(x, bn, *g);
        }))
      reporter.message("--sync-bn: " + o.model + " has no batch norm");
    if (step_options.fused && o.fused == "on")
      reporter.message("--sync-bn runs batch norm in ATen's ops: --fused is off for it");
    step_options.fused = false;
  }
  // Before the optimiser sees the parameters: momentum buffers take their layout.
  if (step_options.channels_last) to_channels_last(*model);
  // Frozen parameters get no gradient, so SGD leaves them (and keeps no momentum for them).
  if (o.freeze_backbone)
    for (auto& p : model->named_parameters())
      if (!in_classifier(p.key())) p.value().requires_grad_(false);
  const double base_lr = scaled_learning_rate(o.learning_rate, o.batch_size * world(), o.lr_scale_batch);
  SgdOptions sgd{base_lr, o.momentum, o.weight_decay};
  sgd.nesterov = o.nesterov;
  std::vector<bool> decay;
  for (const auto& p : model->parameters()) decay.push_back(!o.no_decay_bn_bias || p.dim() > 1);
  optimizer = std::make_unique<Sgd>(model->parameters(), sgd, decay);
  schedule = std::make_unique<LrSchedule>(o.schedule, base_lr, train_loader->batches_per_epoch(), o.epochs);
  if (o.recipe != "sample") {
    std::string flags;
    for (const RecipeSetting& s : recipe_settings(o.recipe))
      flags += " " + s.flag + (s.value.empty() ? "" : " " + s.value);
    reporter.message("Recipe " + o.recipe + ":" + flags + " (where the command line gives none of these)");
  }
  if (o.lr_scale_batch > 0 || schedule->varies()) reporter.message(describe_schedule(o, base_lr, world()));
  if (!o.progressive_resize.empty()) {
    std::string sizes;
    for (int64_t e = 0, last = 0; e < o.epochs; ++e) {
      const int64_t s = train_image_size(o, e);
      if (s != last) sizes += (sizes.empty() ? "" : ", ") + std::to_string(s) + " px from epoch " + std::to_string(e + 1);
      last = s;
    }
    reporter.message("Progressive resizing: training images at " + sizes + "; tests at " + std::to_string(o.image_size) +
                     " px");
  }
  if (o.mixup_off_epoch > 0)
    reporter.message(o.mixup_off_epoch < o.epochs
                         ? "Mixup and CutMix in epochs 1-" + std::to_string(o.mixup_off_epoch) + ", off from epoch " +
                               std::to_string(o.mixup_off_epoch + 1) + " (--mixup-off-epoch)"
                         : "Mixup and CutMix to the end: --mixup-off-epoch " + std::to_string(o.mixup_off_epoch) +
                               " is not below --epochs " + std::to_string(o.epochs));
  step = std::make_unique<TrainStep>(*model, *optimizer, step_options, device);
  eval_step = std::make_unique<EvalStep>(*model, step_options, device);
}

void Run::resume_or_restart(const ResumeFile* resume) {
  dir = checkpoint_folder(o);
  resume_path = (dir / "resume.pt").string();
  state.settings = to_json(o);
  state.classes = train_source->classes();
  if (o.restart || !resume) {
    if (o.restart && lead()) {
      fs::remove(resume_path);
      fs::remove(dir / "metrics.csv");
    }
    load_initial_weights();
    return;
  }
  TrainState saved = resume->restore(*model, *optimizer);
  // settings older resume.pt files lack: what those runs did
  if (!saved.settings.contains("freeze_backbone")) saved.settings["freeze_backbone"] = false;
  if (!saved.settings.contains("lr_schedule")) saved.settings["lr_schedule"] = to_json(ScheduleOptions{}, o.epochs);
  if (!saved.settings.contains("lr_scale_batch")) saved.settings["lr_scale_batch"] = 0;
  if (!saved.settings.contains("label_smoothing")) saved.settings["label_smoothing"] = 0.0;
  for (const char* flag : {"nesterov", "no_decay_bn_bias", "trivial_augment"})
    if (!saved.settings.contains(flag)) saved.settings[flag] = false;
  if (!saved.settings.contains("crop_scale")) saved.settings["crop_scale"] = {0.08, 1.0};
  for (const char* key : {"ema_decay", "mixup", "cutmix", "clip_grad_norm", "random_erase"})
    if (!saved.settings.contains(key)) saved.settings[key] = 0.0;
  for (const char* key : {"holdout", "crop_pad", "mixup_off_epoch"})
    if (!saved.settings.contains(key)) saved.settings[key] = 0;
  if (!saved.settings.contains("progressive_resize")) saved.settings["progressive_resize"] = nlohmann::json::array();
  for (const char* key : kResumeKeys)
    if (saved.settings.value(key, nlohmann::json()) != state.settings[key])
      throw UsageError(resume_path + " was written by a run with " + key + " = " + saved.settings[key].dump() +
                       ", this run has " + state.settings[key].dump() +
                       "; use the same setting to resume, or --restart to start over");
  if (o.ema_decay > 0) saved_ema = resume->tensors_with_prefix("ema.");
  // Another number of processes: a mid-epoch position counts images, not steps, across them.
  const int saved_world = saved.settings.value("world_size", 1);
  if (saved_world != world() && saved.batch > 0) {
    const int64_t images = saved.batch * o.batch_size * saved_world;
    saved.batch = images / (o.batch_size * world());
    reporter.message(resume_path + " was written by " + std::to_string(saved_world) + " process(es), this run has " +
                     std::to_string(world()) + ": epoch " + std::to_string(saved.epoch + 1) + " goes on after " +
                     std::to_string(saved.batch * o.batch_size * world()) + " of its images (" +
                     std::to_string(images) + " were done)");
  }
  saved.settings = state.settings;  // --epochs may grow
  state = saved;
  saved_step = state.step;
  step->set_loss_scale_state(state.loss_scale, state.loss_scale_growth);
  reporter.message("Resuming from epoch " + std::to_string(state.epoch + 1) + ", step " + std::to_string(state.step));
}

void Run::load_initial_weights() {
  if (o.weights.empty()) return;
  NamedTensors tensors = read_weights(o.weights);
  const NamedTensors own = state_dict(*model);
  std::string replaced;
  for (auto& [name, tensor] : tensors) {
    if (!in_classifier(name)) continue;
    for (const auto& [own_name, own_tensor] : own)
      if (own_name == name && own_tensor.sizes() != tensor.sizes()) {
        if (name.find("weight") != std::string::npos)
          replaced = std::to_string(tensor.size(0)) + " classes in the file, " +
                     std::to_string(own_tensor.size(0)) + " in the data";
        tensor = own_tensor.detach().clone();  // the freshly initialised one
      }
  }
  load_state_dict(*model, tensors, o.weights);
  reporter.message("Fine-tuning from " + o.weights + (replaced.empty() ? "" : "; its classifier is replaced by a new one (" + replaced + ")") +
                   (o.freeze_backbone ? "; only the classifier trains (--freeze-backbone)" : ""));
}

void Run::start_trace() {
  if (o.trace && !traced && !profiler && state.step - run_start_step == kTraceWarmupSteps)
    profiler = std::make_unique<Profiler>(device.is_cuda());
}

void Run::finish_trace(bool now) {
  const int64_t steps = state.step - run_start_step - kTraceWarmupSteps;
  if (!profiler || (!now && steps < kTraceSteps)) return;
  const std::string trace = (dir / "trace.json").string();
  reporter.trace(profiler->finish(trace, static_cast<int>(steps)), trace);
  profiler.reset();
  traced = true;
}

void Run::require_finite(double loss, int64_t epoch) const {
  if (!std::isfinite(loss))
    fail_non_finite(std::string("the training loss is ") + (std::isnan(loss) ? "NaN" : "infinite"), epoch);
}

void Run::settle_epoch_loss(const torch::Tensor& loss_sum, int64_t epoch, const torch::Tensor& skipped) {
  if (skipped.defined()) check_skipped(skipped, epoch);
  state.epoch_loss_sum = global_mean(loss_sum);
  require_finite(state.epoch_loss_sum, epoch);
}

void Run::check_skipped(const torch::Tensor& skipped, int64_t epoch) {
  state.epoch_skipped = static_cast<int64_t>(skipped.item<double>());
  state.skipped_steps = skipped_before_epoch + state.epoch_skipped;
  if (state.skipped_steps > o.skip_nonfinite)
    fail_non_finite("the training loss or gradients were not finite in " + std::to_string(state.skipped_steps) +
                        " steps, more than --skip-nonfinite " + std::to_string(o.skip_nonfinite) + " allows",
                    epoch);
  if (state.skipped_steps > skipped_said) {
    reporter.message(std::to_string(state.skipped_steps) + " of the run's steps so far had a loss or gradients that were not finite; "
                     "their updates were skipped (--skip-nonfinite " + std::to_string(o.skip_nonfinite) + ")");
    skipped_said = state.skipped_steps;
  }
}

void Run::fail_non_finite(const std::string& what, int64_t epoch) const {
  std::string last = saved_step >= 0 ? resume_path + " still holds step " + std::to_string(saved_step) +
                                           ", the last good state: running train again resumes there"
                                     : "no resume.pt was written by this run";
  char lr[32];
  std::snprintf(lr, sizeof lr, "%g", o.learning_rate);
  throw std::runtime_error(what + " at epoch " + std::to_string(epoch + 1) + ", step " + std::to_string(state.step) +
                           ": training stopped (is --learning-rate " + lr + " too high?); " + last);
}

void Run::open_events() {
  const std::string logdir = o.logdir.value_or(dir.string());
  if (logdir.empty() || !lead() || !tensorboard_supported()) return;
  events = std::make_unique<EventWriter>(logdir);
  events->start(state.step == 0 ? 0 : state.step + 1);  // steps up to resume.pt's stay
  if (state.step == 0) events->text("settings", "```\n" + state.settings.dump(2) + "\n```", 0);
  reporter.message("TensorBoard: " + events->path() + " (watch with: tensorboard --logdir " + logdir + ")");
}

void Run::log_events(const StepReport& r) {
  if (!events) return;
  events->scalar("train/loss", r.loss, state.step);
  events->scalar("train/learning_rate", optimizer->learning_rate(), state.step);
  if (r.img_per_s > 0) events->scalar("train/img_per_s", r.img_per_s, state.step);
  if (device.is_cuda()) events->scalar("train/peak_gpu_memory_mib", peak_memory_mib(device), state.step);
}

void Run::log_events(const EpochReport& e) {
  if (!events) return;
  const std::pair<const char*, double> values[] = {{"epoch/epoch", static_cast<double>(e.epoch)},
                                                   {"epoch/train_loss", e.train_loss},
                                                   {"epoch/learning_rate", optimizer->learning_rate()},
                                                   {"epoch/img_per_s", e.img_per_s},
                                                   {"epoch/elapsed_s", e.elapsed}};
  for (const auto& [tag, value] : values) events->scalar(tag, value, state.step);
  if (e.tested) {
    const std::pair<const char*, double> test[] = {
        {"epoch/test_loss", e.test.loss}, {"epoch/top1", e.test.accuracy}, {"epoch/top5", e.test.top5}};
    for (const auto& [tag, value] : test) events->scalar(tag, value, state.step);
  }
  if (device.is_cuda()) events->scalar("epoch/peak_gpu_memory_mib", peak_memory_mib(device), state.step);
}

void Run::save(bool background) {
  // Weights that overflowed while the loss still looked finite are never written over good ones.
  if (!torch::isfinite(parameter_sums()).all().item<bool>())
    fail_non_finite("the weights are not finite (NaN or infinite)", state.epoch);
  saved_step = state.step;
  if (!lead()) return;
  state.elapsed_s = elapsed();
  std::tie(state.loss_scale, state.loss_scale_growth) = step->loss_scale_state();
  NamedTensors extra;
  if (ema)
    for (const auto& [name, t] : ema->named()) extra.emplace_back("ema." + name, t);
  if (background) {
    writer.submit(resume_writer(resume_path, state, *model, *optimizer, extra));
  } else {
    writer.wait();
    save_resume(resume_path, state, *model, *optimizer, extra);
  }
}

bool Run::run_epoch(int64_t epoch) {
  reporter.epoch_start(epoch + 1);
  const int64_t size = train_image_size(o, epoch);
  if (size != train_loader->image_size() || !size_said) {
    train_loader->set_image_size(size);
    if (!o.progressive_resize.empty())
      reporter.message("Training images at " + std::to_string(size) + " px from this epoch on (--progressive-resize)");
    size_said = true;
  }
  // --mixup-off-epoch: the batches as they are from then on (said where the step changes, also
  // in a run resumed after that epoch)
  const bool mixing = o.mix.enabled() && (o.mixup_off_epoch == 0 || epoch < o.mixup_off_epoch);
  if (step->set_mix(mixing ? o.mix : MixOptions{}))
    reporter.message("Mixup and CutMix off (--mixup-off-epoch " + std::to_string(o.mixup_off_epoch) + ": from epoch " +
                     std::to_string(o.mixup_off_epoch + 1) + " on)");
  train_loader->start_epoch(epoch, state.batch);
  const auto t0 = Clock::now();
  auto last_log = t0;
  int64_t images = 0, images_at_last_log = 0;
  StepReport report;
  report.epoch = epoch + 1;
  report.batches = train_loader->batches_per_epoch();
  report.resumed_batches = state.batch * world();
  report.dataset_size = train_source->size();
  // Summed on the device so that the loop never waits for the GPU except to print or save.
  auto loss_sum = torch::full({}, state.epoch_loss_sum, torch::TensorOptions().dtype(torch::kDouble).device(device));
  // --skip-nonfinite: this epoch's steps with a non-finite loss, left out of its sum and mean
  torch::Tensor skipped;
  if (o.skip_nonfinite > 0) {
    skipped = torch::full({}, static_cast<double>(state.epoch_skipped), loss_sum.options());
    skipped_before_epoch = state.skipped_steps - state.epoch_skipped;
  }
  StepGaps gaps(device);
  struct Arrivals {  // marked on the GPU's stream as each batch arrives, for this epoch's loop only
    Loader& loader;
    Arrivals(Loader& l, StepGaps& gaps) : loader(l) { loader.on_arrival([&gaps] { gaps.arrived(); }); }
    ~Arrivals() { loader.on_arrival(nullptr); }
  } arrivals(*train_loader, gaps);
  while (auto batch = train_loader->next(step->input_buffer())) {
    gaps.ready();
    start_trace();
    // Nothing else on the GPU while the step is captured (the loader prefetches on a thread).
    if (step->captures_next()) train_loader->settle();
    // The step's rate, by its place in the run (a graph replay reads it from the device)
    if (schedule->varies())
      optimizer->set_learning_rate(schedule->at(epoch * train_loader->batches_per_epoch() + state.batch));
    // Profiled steps run eagerly: a graph replay would show as one opaque launch.
    const auto loss = step->run(batch->images, batch->labels, /*eager=*/profiler != nullptr);
    if (ema) ema->update();
    gaps.done();
    report.images_seen = state.batch * o.batch_size * world();
    const int64_t b = state.batch++;
    ++state.step;
    images += batch->labels.size(0) * world();
    if (skipped.defined()) {  // the step's own verdict (its loss or gradients not finite)
      const torch::Tensor skip = step->skipped();
      skipped += skip;
      loss_sum += torch::nan_to_num(loss, 0.0, 0.0, 0.0) * (1 - skip);
    } else {
      loss_sum += loss;
    }
    finish_trace(/*now=*/false);
    report.batch = state.batch;
    report.seconds = seconds_since(t0);
    if (b % o.log_every == 0) {
      report.loss = global_mean(loss);
      if (skipped.defined()) {
        check_skipped(skipped, epoch);
      } else {
        require_finite(report.loss, epoch);
      }
      const double dt = seconds_since(last_log);
      report.img_per_s = dt > 0 && images > images_at_last_log ? static_cast<double>(images - images_at_last_log) / dt : 0;
      last_log = Clock::now();
      images_at_last_log = images;
      reporter.log_step(report);
      log_events(report);
    }
    reporter.progress(report);
    const bool interrupted = stop_requested(b % o.log_every == 0);
    const bool stop = o.max_steps > 0 && state.step >= o.max_steps;
    if (interrupted || stop || (o.checkpoint_every > 0 && state.step % o.checkpoint_every == 0)) {
      settle_epoch_loss(loss_sum, epoch, skipped);
      save();
    }
    if (interrupted) {
      finish_trace(/*now=*/true);
      const int sig = g_stop_signal.load();
      // Said once, by rank 0, for the whole job.
      throw Interrupted(sig, !lead() ? "" : std::string("interrupted (") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") +
                                                ") at epoch " + std::to_string(epoch + 1) + ", step " +
                                                std::to_string(state.step) + "; " + resume_path +
                                                " holds the run: the same command resumes it");
    }
    if (stop) {
      finish_trace(/*now=*/true);
      reporter.message("Stopped after " + std::to_string(state.step) + " steps (--max-steps); " + resume_path +
                       " holds the run");
      return false;
    }
  }
  finish_trace(/*now=*/true);  // the evaluation is not part of the profile
  settle_epoch_loss(loss_sum, epoch, skipped);  // waits for the GPU too
  finish_epoch(epoch, state.epoch_loss_sum, images, seconds_since(t0), gaps.seconds());
  return true;
}

void Run::finish_epoch(int64_t epoch, double loss_sum, int64_t images, double seconds, StepGaps::Seconds gpu_between) {
  EpochReport e;
  e.epoch = epoch + 1;
  e.train_loss = loss_sum / static_cast<double>(std::max<int64_t>(1, state.batch - state.epoch_skipped));
  e.seconds = seconds;
  e.img_per_s = static_cast<double>(images) / seconds;
  e.data_wait = train_loader->seconds_waited();
  e.data_wait_first = train_loader->seconds_waited_first();
  e.gpu_between_steps = gpu_between.between;
  e.gpu_transforming = gpu_between.transforming;
  e.decode = train_loader->epoch_decode_stats();  // (the training batches': not the held-out test's)
  state.epoch = epoch + 1;
  state.batch = 0;
  state.epoch_loss_sum = 0;
  state.epoch_skipped = 0;
  e.tested = state.epoch % o.eval_every == 0 || state.epoch >= o.epochs;
  if (e.tested) {
    // with --ema-decay the averaged weights are tested and kept as the best model
    std::optional<Ema::Swap> averaged;
    if (ema) averaged.emplace(*ema, *model);
    // The next epoch's first batches gather meanwhile, but not while the test's graph is captured
    if (eval_step->capture_ahead()) train_loader->settle();
    e.test = evaluate(*eval_step, *test_loader, group.get(), TestViews{o.tta_flip, o.tta_shift});
    if (e.test.accuracy > state.best_accuracy) {
      state.best_accuracy = e.test.accuracy;
      if (o.save_model && lead())
        writer.submit(best_model_writer(dir.string(), *model,
                                        {o.model, train_source->classes(), o.image_size, o.test_crop_pct, e.test.accuracy,
                                         state.epoch, o.holdout}));
    }
  }
  e.best_accuracy = state.best_accuracy;
  e.elapsed = elapsed();
  reporter.epoch_end(e);
  log_events(e);
  if (lead()) write_metrics_row((dir / "metrics.csv").string(), e, optimizer->learning_rate());
  save(/*background=*/true);
}

// Whether resume.pt's run already reached --epochs; if so, says it.
bool reached_target(const TrainState& s, const TrainOptions& o) {
  return o.target_accuracy > 0 && s.best_accuracy >= 0 && 100.0 * s.best_accuracy >= o.target_accuracy;
}

bool report_if_complete(const TrainState& s, const TrainOptions& o, TrainReporter& reporter) {
  char best[32];
  std::snprintf(best, sizeof best, "%.4f", s.best_accuracy);
  if (reached_target(s, o)) {
    char target[32];
    std::snprintf(target, sizeof target, "%g", o.target_accuracy);
    reporter.message("Training reached --target-accuracy " + std::string(target) + "% (best accuracy " + best +
                     " after " + std::to_string(s.epoch) + " epochs); pass a higher one to go on, or --restart to "
                     "start over");
    return true;
  }
  if (s.epoch < o.epochs) return false;
  reporter.message("Training is complete (" + std::to_string(s.epoch) + " epochs, best accuracy " + best +
                   "); pass a larger --epochs to go on, or --restart to start over");
  return true;
}

}  // namespace

void validate(const TrainOptions& o) {
  require_at_least(o.epochs, 1, "--epochs");
  require_at_least(o.batch_size, 1, "--batch-size");
  // Below 32 pixels the ResNet stem and four stride-2 stages leave nothing to pool.
  require_at_least(o.image_size, 32, "--image-size");
  require_at_least(o.log_every, 1, "--log-every");
  require_at_least(o.eval_every, 1, "--eval-every");
  check_test_views({o.tta_flip, o.tta_shift}, o.image_size);
  require_at_least(o.checkpoint_every, 0, "--checkpoint-every");
  require_at_least(o.max_steps, 0, "--max-steps");
  require_at_least(o.dist_timeout_s, 1, "--dist-timeout");
  // A batch of input images that cannot fit this machine's memory, before anything is allocated
  // (the activations take many times more).
  const double input_bytes = 4.0 * 3.0 * static_cast<double>(o.batch_size) * static_cast<double>(o.image_size) *
                             static_cast<double>(o.image_size);
  const double memory = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) * static_cast<double>(::sysconf(_SC_PAGE_SIZE));
  if (memory > 0 && input_bytes > memory) {
    char line[256];
    std::snprintf(line, sizeof line,
                  "--image-size %lld with --batch-size %lld: one batch of input images alone takes %.1f GB, more than "
                  "this machine's %.1f GB of memory; lower --image-size or --batch-size",
                  static_cast<long long>(o.image_size), static_cast<long long>(o.batch_size), input_bytes / 1e9,
                  memory / 1e9);
    throw UsageError(line);
  }
  SgdOptions sgd{o.learning_rate, o.momentum, o.weight_decay};
  sgd.nesterov = o.nesterov;
  check_sgd_options(sgd);
  auto text = [](const std::vector<double>& values) {  // as the flag was written: 0.5,0.9
    std::ostringstream s;
    for (size_t i = 0; i < values.size(); ++i) s << (i ? "," : "") << values[i];
    return s.str();
  };
  if (!(o.target_accuracy >= 0 && o.target_accuracy <= 100))
    throw UsageError("--target-accuracy must be a percentage between 0 and 100 (got " + text({o.target_accuracy}) + ")");
  if (o.logdir && !o.logdir->empty() && !tensorboard_supported())
    throw UsageError("--logdir " + *o.logdir + ": " + kNoTensorBoard);
  check_ema_decay(o.ema_decay);
  if (o.crop_scale.size() != 2 || !(o.crop_scale[0] > 0 && o.crop_scale[0] <= o.crop_scale[1] && o.crop_scale[1] <= 1))
    throw UsageError("--crop-scale must be MIN,MAX with 0 < MIN <= MAX <= 1 (got " + text(o.crop_scale) + ")");
  require_at_least(o.crop_pad, 0, "--crop-pad");
  if (!o.progressive_resize.empty()) {
    const auto& p = o.progressive_resize;
    if (p.size() != 2 || !(p[0] >= 32 && p[0] < static_cast<double>(o.image_size) && p[0] == std::floor(p[0])) ||
        !(p[1] > 0 && p[1] <= 1))
      throw UsageError("--progressive-resize must be START,FRACTION: START whole pixels, at least 32 and below "
                       "--image-size " + std::to_string(o.image_size) + ", FRACTION above 0 and at most 1 (got " +
                       text(p) + ")");
  }
  if (!(o.test_crop_pct > 0 && o.test_crop_pct <= 1))
    throw UsageError("--test-crop-pct must be the share of the resized image kept, above 0 and at most 1 (got " +
                     text({o.test_crop_pct}) + ")");
  if (!(o.random_erase >= 0 && o.random_erase <= 1))
    throw UsageError("--random-erase must be a probability between 0 and 1 (got " + text({o.random_erase}) + ")");
  check_schedule(o.schedule);
  require_at_least(o.lr_scale_batch, 0, "--lr-scale-batch");
  if (!(o.label_smoothing >= 0 && o.label_smoothing <= 1))
    throw UsageError("--label-smoothing must be between 0 and 1 (got " + text({o.label_smoothing}) + ")");
  check_mix_options(o.mix);
  require_at_least(o.mixup_off_epoch, 0, "--mixup-off-epoch");
  if (o.mixup_off_epoch > 0 && !o.mix.enabled())
    throw UsageError("--mixup-off-epoch " + std::to_string(o.mixup_off_epoch) +
                     ": there is no Mixup or CutMix to turn off (give --mixup or --cutmix)");
  require_at_least(o.skip_nonfinite, 0, "--skip-nonfinite");
  require_at_least(o.holdout, 0, "--holdout");
  if (!(o.clip_grad_norm >= 0 && std::isfinite(o.clip_grad_norm)))
    throw UsageError("--clip-grad-norm must be 0 (off) or a positive norm, e.g. 1 (got " + text({o.clip_grad_norm}) +
                     ")");
  parse_step_options(o.amp, o.channels_last, o.cuda_graphs, parse_device(o.device), 0, o.fused);
}

nlohmann::json to_json(const TrainOptions& o) {
  return {{"model", o.model},
          {"data", o.data},
          {"epochs", o.epochs},
          {"batch_size", o.batch_size},
          {"image_size", o.image_size},
          {"seed", o.seed},
          {"learning_rate", o.learning_rate},
          {"momentum", o.momentum},
          {"weight_decay", o.weight_decay},
          {"lr_schedule", to_json(o.schedule, o.epochs)},
          {"lr_scale_batch", o.lr_scale_batch},
          {"label_smoothing", o.label_smoothing},
          {"nesterov", o.nesterov},
          {"no_decay_bn_bias", o.no_decay_bn_bias},
          {"zero_init_residual", o.zero_init_residual},
          {"crop_scale", o.crop_scale},
          {"crop_pad", o.crop_pad},
          {"progressive_resize", o.progressive_resize},
          {"test_crop_pct", o.test_crop_pct},
          {"random_erase", o.random_erase},
          {"trivial_augment", o.trivial_augment},
          {"ema_decay", o.ema_decay},
          {"mixup", o.mix.mixup_alpha},
          {"cutmix", o.mix.cutmix_alpha},
          {"mixup_off_epoch", o.mixup_off_epoch},
          {"clip_grad_norm", o.clip_grad_norm},
          {"holdout", o.holdout},
          {"tta_flip", o.tta_flip},
          {"tta_shift", o.tta_shift},
          {"eval_every", o.eval_every},
          {"recipe", o.recipe},
          {"amp", o.amp},
          {"channels_last", o.channels_last},
          {"cuda_graphs", o.cuda_graphs},
          {"fused", o.fused},
          {"weights", o.weights},
          {"freeze_backbone", o.freeze_backbone},
          {"sync_bn", o.sync_bn},
          {"world_size", o.dist.world_size}};
}

void request_stop(int signal_number) { g_stop_signal = signal_number; }

double train(const TrainOptions& o, TrainReporter& reporter) {
  const auto started = Clock::now();
  validate(o);
  create_model(o.model, 1);  // an unknown --model fails before any data work
  // Read once, before any data work: a run that already reached --epochs is reported at once.
  // Only rank 0 of a job of several processes reports; the others train silently.
  TrainReporter silent;
  TrainReporter& out = o.dist.rank == 0 ? reporter : silent;
  std::optional<ResumeFile> resume;
  const fs::path resume_path = fs::path(o.checkpoint_dir) / o.model / "resume.pt";
  int64_t first_epoch = 0;  // this process's (for the warm-up's image size)
  if (!o.restart && fs::exists(resume_path)) {
    resume.emplace(resume_path.string());
    const TrainState saved = resume->state();
    if (report_if_complete(saved, o, out)) return saved.best_accuracy;
    first_epoch = saved.epoch;
  }
  Run run(o, out);
  run.connect();
  std::future<double> warm;
  if (run.device.is_cuda()) {
    enable_cudnn_autotuning();
    warm = std::async(std::launch::async, warm_up, std::cref(o), train_image_size(o, first_epoch),
                      parse_step_options(o.amp, o.channels_last, o.cuda_graphs, run.device, o.batch_size, o.fused),
                      run.device);
  }
  const auto data_start = Clock::now();
  run.open_data();  // if it throws, `warm`'s destructor waits for the warm-up (std::async's future)
  if (warm.valid()) {
    const double data_seconds = seconds_since(data_start), warm_seconds = warm.get();
    char line[160];
    std::snprintf(line, sizeof line, "Start-up: data read in %.1f s; beside it, cuDNN autotuning and GPU warm-up %.1f s",
                  data_seconds, warm_seconds);
    run.reporter.message(line);
  }
  run.build_model();
  run.resume_or_restart(resume ? &*resume : nullptr);
  resume.reset();  // its tensors are in the model and the optimiser now
  run.share_weights();
  run.start_ema();
  run.run_start_step = run.state.step;
  run.open_events();
  run.started = started;
  run.elapsed_before = run.state.elapsed_s;
  run.reporter.message("Training " + o.model + " (" + std::to_string(count_parameters(*run.model)) + " parameters) on " +
                   describe_device(run.device) + ": " + run.train_source->description() + ", " +
                   std::to_string(run.train_source->size()) + " training and " +
                   std::to_string(run.test_source->size()) + (o.holdout > 0 ? " held-out" : " test") + " images, " +
                   std::to_string(run.train_source->classes().size()) + " classes; " +
                   to_string(run.step_options.amp) + (run.step_options.channels_last ? ", channels-last" : "") +
                   (run.step_options.cuda_graphs ? ", CUDA graphs" : "") + (run.step->fused() ? ", " + run.step->fused_description() : "") +
                   (run.group ? "; " + std::to_string(run.world()) + " processes (" + run.group->backend() + ", " +
                                    o.dist.launcher + "), batch " + std::to_string(o.batch_size) + " each, " +
                                    std::to_string(o.batch_size * run.world()) + " in all" +
                                    (o.sync_bn ? ", synchronised batch norm" : "")
                              : ""));
  run.model->train();
  for (int64_t epoch = run.state.epoch; epoch < o.epochs; ++epoch) {
    if (!run.run_epoch(epoch)) break;
    if (reached_target(run.state, o)) {
      char line[200];
      std::snprintf(line, sizeof line, "Reached --target-accuracy %g%% (test top-1 %.2f%%) after epoch %lld, %.1f s after the start",
                    o.target_accuracy, 100.0 * run.state.best_accuracy, static_cast<long long>(epoch + 1),
                    seconds_since(started));
      run.reporter.message(line);
      break;
    }
  }
  run.writer.wait();  // the last epoch's checkpoints are on disk before train returns
  if (run.step_options.cuda_graphs) run.reporter.message("Training step: " + run.step->describe());
  run.check_replicas();
  return run.state.best_accuracy;
}

}  // namespace resnet
