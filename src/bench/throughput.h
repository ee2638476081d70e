// Throughput of a model on synthetic data: what `resnet bench` measures.
//
// Training mode times one full step as `resnet train` runs it (forward, cross-entropy loss,
// backward, the trainer's SGD with the sample's momentum and weight decay) per batch; inference mode times the forward pass alone
// under InferenceMode. Data is random and already on the device, so the numbers are the model's
// and the framework's, not the input pipeline's. Warm-up steps (cuDNN autotuning, allocator
// growth) are excluded; the device is synchronised before each clock read.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>

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
  double seconds = 0;
  double img_per_s = 0;
  double step_ms = 0;
  double peak_mem_mib = 0;  // CUDA caching allocator's peak; 0 on the CPU
};

// Throws UsageError for impossible options (unknown model, batch size 0, ...).
BenchResult run_bench(const BenchOptions& options);

nlohmann::json to_json(const BenchResult& result);

}  // namespace resnet
