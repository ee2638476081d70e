// Throughput of a model on synthetic data: what `resnet bench` measures.
//
// Training mode times TrainStep (src/train/step.h), the step `resnet train` runs: forward,
// cross-entropy loss, backward, the trainer's SGD with the sample's settings, with the same
// precision, memory format and CUDA graphs; inference mode times EvalStep, the forward pass of
// `test` and the per-epoch evaluation. Data is random and already on the device, so the numbers are the model's
// and the framework's, not the input pipeline's. Warm-up steps (cuDNN autotuning, allocator
// growth) are excluded; the device is synchronised before each clock read. With several
// processes, they meet before and after the timed steps, and rank 0's clock counts.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <string>

#include "dist/env.h"

namespace resnet {

struct BenchOptions {
  std::string model = "resnet50";
  int64_t num_classes = 10;
  int64_t batch_size = 32;
  int64_t image_size = 224;
  std::string device = "auto";
  int64_t steps = 20;
  int64_t warmup = 5;
  bool inference = false;
  uint64_t seed = 0;
  std::string amp = "auto";            // as train's --amp
  std::string channels_last = "auto";  // as train's --channels-last
  std::string cuda_graphs = "auto";    // as train's --cuda-graphs
  std::string fused = "auto";          // as train's --fused
  // Where to write a Chrome trace of 5 eager steps profiled after the timed ones ("": none).
  std::string trace;
  // Several processes (train's data parallelism: each a batch of batch_size, gradients averaged
  // in buckets during backward); img_per_s is then the job's.
  DistEnv dist;
  int64_t dist_timeout_s = 600;
  // Run beside another measurement (data_bench loader --beside-step): *warmed turns true when the
  // warm-up is done, the timed steps end early once *stop is true, and at most `in_flight` steps
  // are queued on the GPU at once (0: no limit), as in training, which queues one or two while it
  // waits for the next batch.
  std::atomic<bool>* warmed = nullptr;
  const std::atomic<bool>* stop = nullptr;
  int64_t in_flight = 0;
};

struct BenchResult {
  std::string model;
  int64_t params = 0;
  std::string device;
  std::string device_name;
  int64_t batch_size = 0;
  int64_t image_size = 0;
  int64_t steps = 0;
  std::string mode;  // "train" or "inference"
  std::string precision;  // "bf16", "fp16", "fp32"
  bool channels_last = false;
  bool cuda_graphs = false;  // whether the timed steps replayed a graph
  bool fused = false;        // whether the model ran its fused kernels (training)
  double seconds = 0;
  double warmup_seconds = 0;  // the untimed steps: cuDNN autotuning, graph capture
  double img_per_s = 0;
  double step_ms = 0;
  double peak_mem_mib = 0;  // CUDA caching allocator's peak; 0 on the CPU
  int processes = 1;        // the job's; img_per_s counts all of them
  int rank = 0;             // this process's (only rank 0 prints)
  std::string profile;      // with BenchOptions::trace: the profiler's tables
};

// Throws UsageError for impossible options (unknown model, batch size 0, ...).
BenchResult run_bench(const BenchOptions& options);

nlohmann::json to_json(const BenchResult& result);

}  // namespace resnet
