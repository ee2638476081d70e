// Many tensors in one launch (the SGD step, the weight casts): the tensors travel in the kernel's
// parameter block (up to kMaxTensors a launch; CUDA 12.1+ allows 32 KiB of parameters), laid end
// to end. A block takes kChunk consecutive elements of that virtual concatenation at a time, finds
// the tensor its first element falls in, and steps forward through the tensors as it goes. CUDA
// code only (included by src/ops/*.cu).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace resnet::cuda::multi_tensor {

constexpr int kMaxTensors = 160;
constexpr int kThreads = 256;
constexpr int64_t kChunk = 4096;

// `Entry` is a struct of pointers with an `int64_t numel`.
template <typename Entry>
struct Batch {
  Entry tensors[kMaxTensors];
  int64_t start[kMaxTensors + 1];  // start[i]: elements before tensor i; start[count]: all
  int count;
};

// f(entry, i) for every element i of every tensor in the batch, over the grid.
template <typename Entry, typename F>
__device__ __forceinline__ void for_each_element(const Batch<Entry>& batch, F f) {
  const int64_t total = batch.start[batch.count];
  for (int64_t first = blockIdx.x * kChunk; first < total; first += gridDim.x * kChunk) {
    int lo = 0, hi = batch.count - 1;  // the last tensor starting at or before `first`
    while (lo < hi) {
      const int mid = (lo + hi + 1) / 2;
      if (batch.start[mid] <= first) lo = mid;
      else hi = mid - 1;
    }
    int t = lo;
    const int64_t end = first + kChunk < total ? first + kChunk : total;
    for (int64_t e = first + threadIdx.x; e < end; e += blockDim.x) {
      while (e >= batch.start[t + 1]) ++t;
      f(batch.tensors[t], e - batch.start[t]);
    }
  }
}

// Splits `tensors` into batches and calls launch(batch, blocks) for each that holds any element;
// checks the launch.
template <typename Entry, typename Launch>
void launch_batches(const Entry* tensors, int count, int sm_count, const char* what, Launch launch) {
  for (int from = 0; from < count; from += kMaxTensors) {
    Batch<Entry> batch{};
    batch.count = std::min(kMaxTensors, count - from);
    for (int i = 0; i < batch.count; ++i) batch.start[i + 1] = batch.start[i] + (batch.tensors[i] = tensors[from + i]).numel;
    const int64_t total = batch.start[batch.count];
    if (total == 0) continue;
    const int64_t blocks = std::min<int64_t>((total + kChunk - 1) / kChunk, int64_t{sm_count} * 4);
    launch(batch, static_cast<unsigned>(blocks));
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
  }
}

}  // namespace resnet::cuda::multi_tensor
