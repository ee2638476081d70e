// Batches for an epoch: a permutation of the split (shuffled from --seed and the epoch number,
// so a resumed run sees the same order), cut into batches of `batch_size` with the last partial
// batch kept (as the sample's DataLoader), gathered from the ImageSource and transformed on
// `device`. Each training image's crop and flip come from a generator seeded by (seed, epoch,
// the image's index in the split): the same whatever batch or process it lands in.
// In a job of several processes each reads its shard, as PyTorch's DistributedSampler: for
// training the epoch's permutation padded with its first images to a multiple of the number of
// processes, then every world_size-th image from position `rank` (all shards equally long); for
// evaluation the split in order, every world_size-th image from `rank` (no padding: each image
// is counted once). The next batches are gathered on background threads while the caller works on
// this one (for streamed image folders that is where the decoding happens): as many at once as the
// source's gathers_at_once(), delivered in order, on threads that live as long as the loader. A
// training loader told the run's length (`epochs`) goes on into the next epoch's first batches once
// this one's are all asked for, so that epoch starts without waiting (the test between the two
// overlaps their gathering); start_epoch() takes them where it starts the epoch that follows, at
// its first batch and the same image size, and drops them otherwise. RESNET_DATA_NICE=N (0-19)
// runs the gathering threads, and the decoding threads they start, at nice N: below the training
// thread, which then gets a core as soon as it wakes. With RandomResizedCrop the
// training crops are drawn there first, from each image's own random numbers, and handed to the
// source (dataset.h's CropPlan), so that a streamed folder decodes only them.
#pragma once

#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <random>

#include "data/dataset.h"
#include "data/transforms.h"

namespace resnet {

class LoaderTrace;  // (loader.cpp: RESNET_LOADER_TRACE's file)

class GatherThreads;  // (loader.cpp)

struct LoaderOptions {
  int64_t batch_size = 32;
  int64_t image_size = 224;
  bool train = true;  // shuffle and the train transform; else in order with the test transform
  uint64_t seed = 0;
  int rank = 0, world_size = 1;  // this process's shard
  TrainCropOptions crop;       // the train transform's crop (--crop-scale, --crop-pad)
  RandomErasingOptions erase;  // and its random erasing (--random-erase)
  double test_crop_pct = kTestCropPct;  // the test transform's centre crop (--test-crop-pct)
  bool trivial_augment = false;         // the train transform's TrivialAugment (--trivial-augment)
  int64_t epochs = 0;  // training: the run's epochs, gathered ahead up to the last (0: no gathering ahead)
};

struct Batch {
  torch::Tensor images;  // float [B, 3, S, S], normalised, on the device
  torch::Tensor labels;  // int64 [B], on the device
};

class Loader {
 public:
  Loader(std::shared_ptr<ImageSource> source, LoaderOptions options, torch::Device device);
  ~Loader();

  int64_t batches_per_epoch() const;
  // Images this process reads per epoch (its shard).
  int64_t shard_size() const;
  // Starts `epoch` (0-based), skipping its first `skip_batches` batches (resume mid-epoch).
  void start_epoch(int64_t epoch, int64_t skip_batches = 0);
  // The size the transforms give from the next batch on (--progressive-resize; at least 8).
  // Batches gathered ahead for the old size are gathered again.
  void set_image_size(int64_t size);
  int64_t image_size() const { return options_.image_size; }
  // The next batch of the epoch, or nullopt at its end. Where `into` is a float tensor of the
  // batch's image shape on the device (a graphed step's static input buffer), the images are
  // written there and the batch's images are `into`: no copy between the loader and the step.
  // With RESNET_LOADER_TRACE=FILE set when the loader was made, each call writes a CSV row there
  // (the process's loaders share the file, which a process starts afresh; FILE.rankN for process N
  // of a data-parallel job): when the batch was asked for, started and finished gathering, asked
  // for by next() and handed over, in seconds from the first loader made in the process, the wait,
  // and its DecodeStats: what a late batch waited on. A test loader's rows say epoch 0 at each
  // evaluation (it starts epoch 0 each time); a caller's settle() is not counted as waiting.
  std::optional<Batch> next(const torch::Tensor& into = {});
  // Waits until the background threads have gathered the batches asked for (before a CUDA graph
  // capture: nothing else then runs on the GPU).
  void settle();

  const ImageSource& source() const { return *source_; }
  // Seconds next() waited this epoch for a batch still being gathered (the loader not keeping up).
  double seconds_waited() const { return waited_s_; }
  // Of those, the wait for the epoch's first batch (little where it was gathered ahead).
  double seconds_waited_first() const { return waited_first_s_; }
  // What gathering the batches next() gave this epoch took (RawBatch::decode, summed): the same
  // whenever they were gathered.
  const DecodeStats& epoch_decode_stats() const { return decoded_; }
  // Called by next() on the caller's thread once each batch has arrived, before its transform is
  // queued (train's StepGaps marks the GPU's stream there); empty: none.
  void on_arrival(std::function<void()> hook) { on_arrival_ = std::move(hook); }
  const torch::Device& device() const { return device_; }

 private:
  torch::Tensor epoch_order(int64_t epoch) const;  // this shard's images of `epoch`, in order
  torch::Tensor batch_indices(const torch::Tensor& order, int64_t batch) const;  // batch `batch` of `order`
  void prefetch();  // asks for batches until gathers_at_once() are in flight
  void ask(int64_t epoch, const torch::Tensor& order, int64_t batch);
  void drop_pending();  // waits for what is gathering and forgets it

  std::shared_ptr<ImageSource> source_;
  LoaderOptions options_;
  torch::Device device_;
  torch::Tensor order_;
  int64_t epoch_ = 0;
  int64_t next_batch_ = 0;  // the next batch next() gives
  int64_t asked_ = 0;       // the next batch to start gathering
  torch::Tensor ahead_order_;  // the next epoch's order, once its batches are asked for
  int64_t ahead_asked_ = 0;    // its next batch to start gathering
  double waited_s_ = 0, waited_first_s_ = 0;
  bool first_ = true;  // next() gives the epoch's first batch next
  DecodeStats decoded_;
  std::function<void()> on_arrival_;
  std::shared_ptr<LoaderTrace> trace_;  // RESNET_LOADER_TRACE's file, where it is set
  // Batches next_batch_ ... asked_ - 1 of epoch_, then batches 0 ... ahead_asked_ - 1 of the next
  std::deque<std::future<RawBatch>> pending_;
  std::unique_ptr<GatherThreads> threads_;     // (after pending_: joined first, once all are settled)
};

}  // namespace resnet
