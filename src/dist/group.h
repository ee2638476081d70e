// The processes of a distributed job as one group, over c10d, PyTorch's own distributed engine:
// a TCPStore at MASTER_ADDR:MASTER_PORT for the rendezvous (rank 0 serves it), then Gloo for CPU
// tensors or NCCL for CUDA tensors. Collectives sum in place. A collective that cannot finish
// within the group's timeout (another rank died, hangs, or never came) throws DistError, naming
// this rank; nothing waits forever.
#pragma once

#include <torch/types.h>

#include <chrono>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "dist/env.h"

namespace resnet {

class DistError : public std::runtime_error {
 public:
  explicit DistError(const std::string& message) : std::runtime_error(message) {}
};

class Group {
 public:
  // Meets the job's other processes (waits at most `timeout` for all of them) on `device`'s
  // backend: NCCL for CUDA, Gloo for the CPU. UsageError where this build has neither.
  static std::unique_ptr<Group> connect(const DistEnv& env, const c10::Device& device,
                                        std::chrono::milliseconds timeout);
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::string& backend() const { return backend_name_; }

  // An all-reduce in flight; wait() before reading the tensor (for NCCL it orders the current
  // CUDA stream after the reduction, for Gloo it blocks until the sum is there).
  class Pending {
   public:
    virtual ~Pending() = default;
    virtual void wait() = 0;
  };
  std::unique_ptr<Pending> all_reduce_async(torch::Tensor tensor);
  void all_reduce(torch::Tensor tensor) { all_reduce_async(std::move(tensor))->wait(); }
  // Every rank's tensors become `root`'s.
  void broadcast(std::vector<torch::Tensor> tensors, int root = 0);
  // Every rank's `tensor` (same shape on all), in rank order.
  std::vector<torch::Tensor> all_gather(const torch::Tensor& tensor);
  void barrier();

  struct Impl;

 private:
  Group(std::unique_ptr<Impl> impl, int rank, int size, std::string backend);
  std::unique_ptr<Impl> impl_;
  int rank_, size_;
  std::string backend_name_;
};

// --device's spelling for this process: in a job of several processes on CUDA, the GPU of its
// LOCAL_RANK (made the current device); else parse_device's. UsageError for one named GPU
// (cuda:N) with several processes.
c10::Device device_for_process(const std::string& device_flag, const DistEnv& env);

// Whether this build has c10d's process groups (Gloo; NCCL too where it has CUDA).
bool distributed_build();

}  // namespace resnet
