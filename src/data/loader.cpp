#include "data/loader.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/env.h"
#include "core/error.h"
#include "core/log.h"
#include "data/transforms.h"

#ifdef RESNET_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace resnet {
namespace {

// One stream of random numbers per (seed, epoch, image): an image gets the same crop whether the
// run was interrupted or not, and whatever its batch or process.
uint64_t mix(uint64_t seed, uint64_t epoch, uint64_t stream) {
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(epoch),
                    static_cast<uint32_t>(stream), static_cast<uint32_t>(stream >> 32)};
  uint64_t out[1];
  seq.generate(reinterpret_cast<uint32_t*>(out), reinterpret_cast<uint32_t*>(out) + 2);
  return out[0];
}

// RESNET_DATA_NICE (0-19; unset: 0): the nice value of the gathering threads, and so of the
// threads they start (decoding: OpenMP's teams, the GPU gathers' CPU part), which inherit it.
int data_nice_from_env() {
  const char* v = std::getenv("RESNET_DATA_NICE");
  return v ? whole_number_from_env("RESNET_DATA_NICE", v, 0, 19, "a whole number from 0 to 19") : 0;
}

// This thread at nice `nice` at least (Linux: a thread's own), below the training thread's
// priority; a warning where the system refuses.
void lower_this_thread(int nice) {
  const auto tid = static_cast<id_t>(syscall(SYS_gettid));
  errno = 0;
  const int now = getpriority(PRIO_PROCESS, tid);
  if (errno != 0 || now >= nice) return;  // (already as low: raising it back needs privileges)
  static std::atomic<bool> warned{false};
  if (setpriority(PRIO_PROCESS, tid, nice) != 0 && !warned.exchange(true))
    log_warning("RESNET_DATA_NICE=" + std::to_string(nice) + " not applied to the data threads: " + std::strerror(errno));
}

// Seconds on the loaders' clock: from the first call in this process.
double clock_s() {
  static const auto origin = std::chrono::steady_clock::now();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - origin).count();
}

}  // namespace

// RESNET_LOADER_TRACE's file: one per path in a process, shared by the loaders that trace to it,
// written from scratch when the first of them opens it. A row is written whole and flushed, so a
// run stopped midway keeps what it traced.
class LoaderTrace {
 public:
  static std::shared_ptr<LoaderTrace> open(const std::string& path) {
    static std::mutex registry_mutex;
    static std::map<std::string, std::weak_ptr<LoaderTrace>> registry;
    std::lock_guard<std::mutex> lock(registry_mutex);
    if (auto open = registry[path].lock()) return open;
    auto trace = std::make_shared<LoaderTrace>(path);
    registry[path] = trace;
    return trace;
  }
  explicit LoaderTrace(const std::string& path) : file_(std::fopen(path.c_str(), "we")) {
    if (!file_) {
      const int err = errno;
      throw UsageError("RESNET_LOADER_TRACE: cannot write '" + path + "': " + std::strerror(err));
    }
    std::fputs("loader,epoch,batch,images,asked_s,started_s,gathered_s,taken_s,handed_s,waited_s,gpu_images,"
               "cpu_images,read_s,headers_s,gpu_s,cpu_s,gpu_setups,zeros_s,cpu_wait_s,upload_s\n",
               file_);
    std::fflush(file_);
  }
  ~LoaderTrace() { std::fclose(file_); }
  LoaderTrace(const LoaderTrace&) = delete;
  LoaderTrace& operator=(const LoaderTrace&) = delete;
  // `taken`: when next() asked for the batch; `waited`: how long it then waited for the gathering;
  // `handed`: when it handed the batch over, its transform queued.
  void row(const char* loader, int64_t epoch, int64_t batch, int64_t images, const RawBatch::Times& t, double taken,
           double waited, double handed, const DecodeStats& d) {
    std::lock_guard<std::mutex> lock(mutex_);
    std::fprintf(file_, "%s,%lld,%lld,%lld,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%lld,%lld,%.6f,%.6f,%.6f,%.6f,%lld,%.6f,%.6f,%.6f\n", loader,
                 static_cast<long long>(epoch), static_cast<long long>(batch), static_cast<long long>(images),
                 t.asked, t.started, t.finished, taken, handed, waited, static_cast<long long>(d.gpu_images),
                 static_cast<long long>(d.cpu_images), d.read_s, d.headers_s, d.gpu_s, d.cpu_s,
                 static_cast<long long>(d.gpu_setups), d.zeros_s, d.cpu_wait_s, d.upload_s);
    std::fflush(file_);
  }

 private:
  std::mutex mutex_;
  std::FILE* file_;
};

// Threads that gather batches for the whole life of a loader, each taking the oldest batch asked
// for. (A thread a batch, as std::async gives, cost nvJPEG's hardware decoder a set-up and a
// tear-down of its buffers on each new thread: 56 cuMemFree calls a thread, each waiting for all
// the GPU's queued work, the training step's included; a CUPTI trace beside the step on an H200,
// 2026-12-01.)
class GatherThreads {
 public:
  GatherThreads(int n, int nice) {
    for (int i = 0; i < n; ++i) threads_.emplace_back([this, nice] {
      if (nice > 0) lower_this_thread(nice);
      run();
    });
  }
  ~GatherThreads() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }
  GatherThreads(const GatherThreads&) = delete;
  GatherThreads& operator=(const GatherThreads&) = delete;

  std::future<RawBatch> submit(std::function<RawBatch()> work) {
    std::packaged_task<RawBatch()> task(std::move(work));
    auto done = task.get_future();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(std::move(task));
    }
    wake_.notify_one();
    return done;
  }

 private:
  void run() {
    name_this_thread("gather");
    for (;;) {
      std::packaged_task<RawBatch()> task;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;  // (stopping, and nothing left)
        task = std::move(queue_.front());
        queue_.pop_front();
      }
      task();  // (what it throws goes to its future)
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::packaged_task<RawBatch()>> queue_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

Loader::Loader(std::shared_ptr<ImageSource> source, LoaderOptions options, torch::Device device)
    : source_(std::move(source)),
      options_(options),
      device_(device),
      threads_(std::make_unique<GatherThreads>(std::max(1, source_->gathers_at_once()), data_nice_from_env())) {
  if (options_.batch_size < 1) throw UsageError("--batch-size must be at least 1");
  if (options_.image_size < 8) throw UsageError("--image-size must be at least 8");
  if (options_.world_size < 1 || options_.rank < 0 || options_.rank >= options_.world_size)
    throw UsageError("rank " + std::to_string(options_.rank) + " is outside a job of " +
                     std::to_string(options_.world_size) + " processes");
  clock_s();  // (the clock starts no later than the first loader)
  if (const char* path = std::getenv("RESNET_LOADER_TRACE"); path && *path)  // (a file per process of a job)
    trace_ = LoaderTrace::open(options_.world_size > 1 ? std::string(path) + ".rank" + std::to_string(options_.rank) : path);
}

Loader::~Loader() { settle(); }

int64_t Loader::shard_size() const {
  const int64_t n = source_->size(), w = options_.world_size;
  if (options_.train) return (n + w - 1) / w;
  return (n - options_.rank + w - 1) / w;
}

int64_t Loader::batches_per_epoch() const {
  return (shard_size() + options_.batch_size - 1) / options_.batch_size;
}

torch::Tensor Loader::batch_indices(const torch::Tensor& order, int64_t batch) const {
  const int64_t begin = batch * options_.batch_size;
  const int64_t end = std::min(order.size(0), begin + options_.batch_size);
  return order.slice(0, begin, end);
}

torch::Tensor Loader::epoch_order(int64_t epoch) const {
  torch::Tensor order;
  if (options_.train) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(mix(options_.seed, epoch, ~0ull));
    order = torch::randperm(source_->size(), gen, torch::kLong);
    const int64_t padded = shard_size() * options_.world_size;
    if (padded > order.size(0)) order = torch::cat({order, order.slice(0, 0, padded - order.size(0))});
  } else {
    order = torch::arange(source_->size(), torch::kLong);
  }
  if (options_.world_size > 1) order = order.slice(0, options_.rank, order.size(0), options_.world_size).contiguous();
  return order;
}

void Loader::drop_pending() {
  settle();
  pending_.clear();
  asked_ = next_batch_;
  ahead_order_ = torch::Tensor();
  ahead_asked_ = 0;
}

void Loader::start_epoch(int64_t epoch, int64_t skip_batches) {
  waited_s_ = waited_first_s_ = 0;
  first_ = true;
  decoded_ = {};
  // The epoch that follows the one just ended, from its start: its first batches are those
  // gathered ahead. Anything else (a resumed position, the last epoch left unfinished) drops
  // what is gathering and starts afresh.
  if (ahead_order_.defined() && epoch == epoch_ + 1 && skip_batches == 0 && next_batch_ == batches_per_epoch()) {
    order_ = std::exchange(ahead_order_, torch::Tensor());
    asked_ = std::exchange(ahead_asked_, 0);
    epoch_ = epoch;
    next_batch_ = 0;
    prefetch();
    return;
  }
  drop_pending();
  epoch_ = epoch;
  next_batch_ = asked_ = skip_batches;
  order_ = epoch_order(epoch);
  prefetch();
}

void Loader::set_image_size(int64_t size) {
  if (size < 8) throw UsageError("--image-size must be at least 8");
  if (size == options_.image_size) return;
  options_.image_size = size;  // the transforms run in next(), on the caller's thread
  // Batches already gathering had their crops decoded for the old size (a streamed folder decodes
  // each at the smallest scale that keeps it): gathered again.
  if (!pending_.empty()) {
    drop_pending();
    prefetch();
  }
}

void Loader::prefetch() {
  const auto depth = static_cast<size_t>(std::max(1, source_->gathers_at_once()));
  while (pending_.size() < depth) {
    if (asked_ < batches_per_epoch()) {
      ask(epoch_, order_, asked_);
      ++asked_;  // (only once its gathering started)
      continue;
    }
    // This epoch's batches all asked for: the next epoch's first ones, where the run has one
    if (!options_.train || epoch_ + 1 >= options_.epochs) break;
    if (!ahead_order_.defined()) ahead_order_ = epoch_order(epoch_ + 1);
    if (ahead_asked_ >= batches_per_epoch()) break;
    ask(epoch_ + 1, ahead_order_, ahead_asked_);
    ++ahead_asked_;
  }
}

void Loader::ask(int64_t epoch, const torch::Tensor& order, int64_t batch) {
  auto indices = batch_indices(order, batch);
  // RandomResizedCrop: the source may decode only each crop; it draws them as next()'s transform
  // will, from the image's own stream of random numbers. (The test transform and pad-and-crop
  // need whole images: no plan.)
  std::optional<CropPlan> plan;
  if (options_.train && options_.crop.pad == 0) {
    plan.emplace();
    plan->output_size = options_.image_size;
    plan->box = [indices = indices.contiguous(), seed = options_.seed, epoch, crop = options_.crop](
                    int64_t row, int64_t height, int64_t width) {
      std::mt19937_64 rng(mix(seed, static_cast<uint64_t>(epoch), static_cast<uint64_t>(indices.data_ptr<int64_t>()[row])));
      return random_resized_crop_box(height, width, rng, crop);
    };
  }
  pending_.push_back(threads_->submit([this, indices, plan, asked = clock_s()] {
    const double started = clock_s();
    RawBatch raw = source_->gather(indices, device_, plan ? &*plan : nullptr);
    raw.times = {asked, started, clock_s()};
    return raw;
  }));
}

void Loader::settle() {
  for (auto& p : pending_)
    if (p.valid()) p.wait();
}

std::optional<Batch> Loader::next(const torch::Tensor& into) {
  if (next_batch_ >= batches_per_epoch() || pending_.empty()) return std::nullopt;
  auto gathering = std::move(pending_.front());
  pending_.pop_front();
  // (counted before get(): a gather that throws leaves the batches after it in step)
  const int64_t batch = next_batch_++;
  const double taken = clock_s();
  RawBatch raw = gathering.get();
  const double waited = clock_s() - taken;
  waited_s_ += waited;
  if (first_) waited_first_s_ = waited;
  first_ = false;
  decoded_ += raw.decode;
#ifdef RESNET_WITH_CUDA
  // This thread's stream reads the batch (the transform below, queued there): its memory goes to
  // no other stream's allocation before that work is done, whichever stream the caller runs on.
  for (const torch::Tensor* t : {&raw.images, &raw.labels})
    if (t->defined() && t->is_cuda())
      c10::cuda::CUDACachingAllocator::recordStream(t->storage().data_ptr(),
                                                    c10::cuda::getCurrentCUDAStream(t->device().index()));
#endif
  prefetch();
  if (on_arrival_) on_arrival_();
  Batch out;
  out.labels = raw.labels;
  if (options_.train) {
    const auto indices = batch_indices(order_, batch);
    const auto* index = indices.data_ptr<int64_t>();
    std::vector<uint64_t> seeds(static_cast<size_t>(indices.size(0)));
    for (size_t i = 0; i < seeds.size(); ++i) seeds[i] = mix(options_.seed, epoch_, static_cast<uint64_t>(index[i]));
    out.images = train_transform(raw, options_.image_size, seeds, into, options_.crop, options_.erase,
                                 options_.trivial_augment);
  } else {
    out.images = test_transform(raw, options_.image_size, into, options_.test_crop_pct);
  }
  if (trace_)
    trace_->row(options_.train ? "train" : "test", epoch_, batch, raw.labels.size(0), raw.times, taken, waited,
                clock_s(), raw.decode);
  return out;
}

}  // namespace resnet
