#include "dist/group.h"

#include "core/device.h"
#include "core/error.h"

#ifdef RESNET_WITH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#ifdef RESNET_WITH_DIST
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <signal.h>

#include <cstdlib>
#endif

namespace resnet {

c10::Device device_for_process(const std::string& device_flag, const DistEnv& env) {
  c10::Device device = parse_device(device_flag);
  if (!env.distributed() || !device.is_cuda()) return device;
  if (device_flag.rfind("cuda:", 0) == 0)
    throw UsageError("--device " + device_flag + " names one GPU; with several processes each takes the GPU of its "
                     "LOCAL_RANK (pass --device cuda)");
  device = parse_device("cuda:" + std::to_string(env.local_rank));
#ifdef RESNET_WITH_CUDA
  c10::cuda::set_device(device.index());
#endif
  return device;
}

#ifdef RESNET_WITH_DIST

// NCCL's backend, in a file of its own (nccl_backend.cpp: CUDA headers); null where this build
// has no CUDA.
c10::intrusive_ptr<c10d::Backend> make_nccl_backend(const c10::intrusive_ptr<c10d::Store>& store, int rank,
                                                    int size, std::chrono::milliseconds timeout);

struct Group::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::Backend> backend;
  std::string where;  // "rank 1 of 2"
};

namespace {

// c10d's errors carry a C++ backtrace after the first line; the user needs the first line.
std::string first_line(const std::exception& e) {
  const std::string what = e.what();
  return what.substr(0, what.find('\n'));
}

[[noreturn]] void fail(const std::string& where, const std::string& doing, const std::exception& e) {
  throw DistError(where + ": " + doing + " failed: another process of the job stopped, hangs, or cannot be reached (" +
                  first_line(e) + ")");
}

class PendingWork : public Group::Pending {
 public:
  PendingWork(c10::intrusive_ptr<c10d::Work> work, std::string where) : work_(std::move(work)), where_(std::move(where)) {}
  void wait() override {
    try {
      work_->wait();
    } catch (const std::exception& e) {
      fail(where_, "an all-reduce", e);
    }
  }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
  std::string where_;
};

}  // namespace

std::unique_ptr<Group> Group::connect(const DistEnv& env, const c10::Device& device, std::chrono::milliseconds timeout) {
  // A write to a socket whose other end died (another process of the job killed) raises SIGPIPE,
  // which would end this process silently (exit by signal 13, seen in the tests) instead of the
  // collective failing and the run saying which rank and why. Python ignores SIGPIPE at start-up,
  // so PyTorch's jobs never see it; a job of ours ignores it from here on.
  ::signal(SIGPIPE, SIG_IGN);
  auto impl = std::make_unique<Impl>();
  impl->where = "rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size);
  const std::string meeting = env.master_addr + ":" + std::to_string(env.master_port);
  try {
    c10d::TCPStoreOptions o;
    o.port = static_cast<std::uint16_t>(env.master_port);
    o.isServer = env.rank == 0 && !env.agent_store;
    o.numWorkers = env.world_size;
    o.waitWorkers = true;
    o.timeout = timeout;
    // Our keys apart from a launcher's that shares the store (torchrun's agent).
    impl->store = c10::make_intrusive<c10d::PrefixStore>("resnet/",
                                                         c10::make_intrusive<c10d::TCPStore>(env.master_addr, o));
  } catch (const std::exception& e) {
    throw DistError(impl->where + ": could not meet the other processes at " + meeting +
                    " (MASTER_ADDR:MASTER_PORT) within the timeout (" + first_line(e) + ")");
  }
  std::string name;
  try {
    if (device.is_cuda()) {
      impl->backend = make_nccl_backend(impl->store, env.rank, env.world_size, timeout);
      if (!impl->backend) throw UsageError("several processes on CUDA need NCCL, and this build has no CUDA");
      name = "NCCL";
    } else {
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      const char* iface = std::getenv("GLOO_SOCKET_IFNAME");
      if (iface != nullptr && *iface != '\0')
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(iface));
      else if (env.master_addr == "127.0.0.1" || env.master_addr == "localhost")
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else
        options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      impl->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, env.rank, env.world_size, options);
      name = "Gloo";
    }
  } catch (const UsageError&) {
    throw;
  } catch (const std::exception& e) {
    fail(impl->where, "setting up the process group at " + meeting, e);
  }
  return std::unique_ptr<Group>(new Group(std::move(impl), env.rank, env.world_size, name));
}

Group::Group(std::unique_ptr<Impl> impl, int rank, int size, std::string backend)
    : impl_(std::move(impl)), rank_(rank), size_(size), backend_name_(std::move(backend)) {}

Group::~Group() {
  // NCCL's communicators are released here, not left to the process's exit.
  try {
    if (impl_ && impl_->backend) impl_->backend->shutdown();
  } catch (const std::exception&) {
  }
}

std::unique_ptr<Group::Pending> Group::all_reduce_async(torch::Tensor tensor) {
  std::vector<torch::Tensor> tensors{std::move(tensor)};
  try {
    return std::make_unique<PendingWork>(impl_->backend->allreduce(tensors), impl_->where);
  } catch (const std::exception& e) {
    fail(impl_->where, "an all-reduce", e);
  }
}

void Group::broadcast(std::vector<torch::Tensor> tensors, int root) {
  try {
    for (auto& t : tensors) {
      std::vector<torch::Tensor> one{t};
      c10d::BroadcastOptions o;
      o.rootRank = root;
      impl_->backend->broadcast(one, o)->wait();
    }
  } catch (const std::exception& e) {
    fail(impl_->where, "a broadcast", e);
  }
}

std::vector<torch::Tensor> Group::all_gather(const torch::Tensor& tensor) {
  std::vector<std::vector<torch::Tensor>> out(1);
  for (int r = 0; r < size_; ++r) out[0].push_back(torch::empty_like(tensor));
  std::vector<torch::Tensor> in{tensor};
  try {
    impl_->backend->allgather(out, in)->wait();
  } catch (const std::exception& e) {
    fail(impl_->where, "an all-gather", e);
  }
  return out[0];
}

void Group::barrier() {
  try {
    impl_->backend->barrier()->wait();
  } catch (const std::exception& e) {
    fail(impl_->where, "a barrier", e);
  }
}

bool distributed_build() { return true; }

#else  // no c10d headers at build time (libgloo-dev missing)

struct Group::Impl {};

std::unique_ptr<Group> Group::connect(const DistEnv&, const c10::Device&, std::chrono::milliseconds) {
  throw UsageError("this build has no distributed training: install libgloo-dev (scripts/install-deps) and rebuild");
}
Group::Group(std::unique_ptr<Impl> impl, int rank, int size, std::string backend)
    : impl_(std::move(impl)), rank_(rank), size_(size), backend_name_(std::move(backend)) {}
Group::~Group() = default;
std::unique_ptr<Group::Pending> Group::all_reduce_async(torch::Tensor) { throw DistError("no distributed build"); }
void Group::broadcast(std::vector<torch::Tensor>, int) { throw DistError("no distributed build"); }
std::vector<torch::Tensor> Group::all_gather(const torch::Tensor&) { throw DistError("no distributed build"); }
void Group::barrier() { throw DistError("no distributed build"); }
bool distributed_build() { return false; }

#endif

}  // namespace resnet
