#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <time.h>

#include <chrono>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/device.h"
#include "core/env.h"
#include "core/error.h"
#include "core/parallel.h"
#include "test_util.h"

#ifdef RESNET_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

using resnet::parse_device;

TEST(Device, CpuAndAuto) {
  EXPECT_EQ(parse_device("cpu"), c10::Device(c10::kCPU));
  const auto automatic = parse_device("auto");
  EXPECT_EQ(automatic.is_cuda(), torch::cuda::is_available());
}

TEST(Device, DirectMLGetsAClearMessage) {
  try {
    parse_device("dml");
    FAIL() << "dml accepted";
  } catch (const resnet::UsageError& e) {
    EXPECT_NE(std::string(e.what()).find("DirectML exists only on Windows"), std::string::npos) << e.what();
  }
}

TEST(Device, NonsenseIsRefusedWithTheAcceptedSpellings) {
  for (const char* spec : {"gpu", "cuda:", "cuda:x", "cuda:-1", "CPU", ""}) {
    try {
      parse_device(spec);
      FAIL() << "accepted '" << spec << "'";
    } catch (const resnet::UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("--device"), std::string::npos) << e.what();
    }
  }
}

TEST(Device, CudaIndexBeyondTheDevicesIsRefused) {
  const int count = static_cast<int>(torch::cuda::device_count());
  EXPECT_THROW(parse_device("cuda:" + std::to_string(count)), resnet::UsageError);
  if (count == 0) EXPECT_THROW(parse_device("cuda"), resnet::UsageError);
  else EXPECT_EQ(parse_device("cuda:0"), c10::Device(c10::kCUDA, 0));
}

TEST(Env, AWholeNumberWithinItsBoundsOrAnErrorNamingTheVariable) {
  EXPECT_EQ(resnet::whole_number_from_env("N", "1", 1, 16, "1 to 16"), 1);
  EXPECT_EQ(resnet::whole_number_from_env("N", "16", 1, 16, "1 to 16"), 16);
  for (const char* bad : {"0", "17", "", "4x", "x", "-1"}) {
    try {
      resnet::whole_number_from_env("N_OF_THINGS", bad, 1, 16, "from 1 to 16");
      ADD_FAILURE() << "'" << bad << "' was taken";
    } catch (const resnet::UsageError& e) {
      EXPECT_EQ(std::string(e.what()),
                std::string("environment variable N_OF_THINGS must be from 1 to 16 (got '") + bad + "')");
    }
  }
}

TEST(Device, CudaWaitTakesItsFourSpellingsAndRefusesOthersByName) {
  EXPECT_EQ(resnet::cuda_wait_flag(nullptr), -1);
  EXPECT_EQ(resnet::cuda_wait_flag("auto"), 0);  // cudaDeviceScheduleAuto, Spin, Yield, BlockingSync
  EXPECT_EQ(resnet::cuda_wait_flag("spin"), 1);
  EXPECT_EQ(resnet::cuda_wait_flag("yield"), 2);
  EXPECT_EQ(resnet::cuda_wait_flag("block"), 4);
  for (const char* bad : {"", "Block", "sleep", "4"}) {
    try {
      resnet::cuda_wait_flag(bad);
      ADD_FAILURE() << "'" << bad << "' was taken";
    } catch (const resnet::UsageError& e) {
      EXPECT_NE(std::string(e.what()).find("RESNET_CUDA_WAIT"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(std::string("'") + bad + "'"), std::string::npos) << e.what();
    }
  }
  // A bad value is refused whatever the device; a good one is nothing to a CPU device.
  const resnet::test::ScopedEnv bad("RESNET_CUDA_WAIT", "nap");
  EXPECT_THROW(resnet::set_cuda_wait_from_environment(c10::Device(c10::kCPU)), resnet::UsageError);
  const resnet::test::ScopedEnv good("RESNET_CUDA_WAIT", "block");
  EXPECT_NO_THROW(resnet::set_cuda_wait_from_environment(c10::Device(c10::kCPU)));
}

#ifdef RESNET_WITH_CUDA
namespace {
// This thread's CPU seconds (clock_gettime's thread clock)
double thread_cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}
}  // namespace

TEST(Device, CudaWaitSetsTheDevicesSchedulingFlagOnAContextInUse) {
  // Set on a context already in use (as in training: the model and the loader's decoders may have
  // started CUDA before): the flag read back, the others kept, and a wait for a quarter of a second
  // of GPU work asleep with "block" (this thread's CPU time well under the wait) but not with "spin".
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  const c10::Device cuda(c10::kCUDA, 0);
  cudaSetDevice(0);
  cudaFree(nullptr);  // the primary context in use first
  unsigned before = 0;
  ASSERT_EQ(cudaGetDeviceFlags(&before), cudaSuccess);
  struct Restore {
    unsigned flags;
    ~Restore() { cudaSetDeviceFlags(flags); }
  } restore{before};
  const auto a = torch::randn({4096, 4096}, torch::kCUDA);
  std::map<std::string, double> busy;  // CPU time / wall time during the wait
  for (const auto& [name, flag] : {std::pair{"block", unsigned{cudaDeviceScheduleBlockingSync}},
                                   std::pair{"yield", unsigned{cudaDeviceScheduleYield}},
                                   std::pair{"spin", unsigned{cudaDeviceScheduleSpin}}}) {
    const resnet::test::ScopedEnv env("RESNET_CUDA_WAIT", name);
    resnet::set_cuda_wait_from_environment(cuda);
    unsigned now = 0;
    ASSERT_EQ(cudaGetDeviceFlags(&now), cudaSuccess);
    EXPECT_EQ(now & cudaDeviceScheduleMask, flag) << name;
    EXPECT_EQ(now & ~unsigned{cudaDeviceScheduleMask}, before & ~unsigned{cudaDeviceScheduleMask}) << name;
    torch::cuda::synchronize();
    auto x = a;
    for (int i = 0; i < 60; ++i) x = torch::mm(x, a).div_(64.0);  // about 0.25 s on an H100 (fp32)
    const auto wall0 = std::chrono::steady_clock::now();
    const double cpu0 = thread_cpu_seconds();
    torch::cuda::synchronize();
    const double cpu = thread_cpu_seconds() - cpu0;
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall0).count();
    EXPECT_TRUE(torch::isfinite(x).all().item<bool>()) << name;  // the GPU still works
    ASSERT_GT(wall, 0.05) << name << ": too little GPU work to tell a sleeping wait from a polling one";
    busy[name] = cpu / wall;
  }
  EXPECT_LT(busy["block"], 0.5) << "the wait kept its core busy " << busy["block"] << " of the time";
  EXPECT_GT(busy["spin"], busy["block"]) << "spin " << busy["spin"] << ", block " << busy["block"];
  // The caller's default (train --gpu-decode: block) where the variable is unset, not where it is set
  auto flag_now = [] {
    unsigned now = 0;
    EXPECT_EQ(cudaGetDeviceFlags(&now), cudaSuccess);
    return now & cudaDeviceScheduleMask;
  };
  {
    const resnet::test::ScopedEnv unset("RESNET_CUDA_WAIT", nullptr);
    resnet::set_cuda_wait_from_environment(cuda, "block");
    EXPECT_EQ(flag_now(), unsigned{cudaDeviceScheduleBlockingSync});
    resnet::set_cuda_wait_from_environment(cuda, "spin");
    EXPECT_EQ(flag_now(), unsigned{cudaDeviceScheduleSpin});
    resnet::set_cuda_wait_from_environment(cuda);  // no default: left as it is
    EXPECT_EQ(flag_now(), unsigned{cudaDeviceScheduleSpin});
  }
  const resnet::test::ScopedEnv given("RESNET_CUDA_WAIT", "yield");
  resnet::set_cuda_wait_from_environment(cuda, "block");
  EXPECT_EQ(flag_now(), unsigned{cudaDeviceScheduleYield});
}
#endif

// The image decoder's parallel loop once ran on one thread: at::parallel_for's OpenMP pragma
// compiles into the caller, which was built without -fopenmp. This fails if that comes back.
TEST(Parallel, EachOnAllCoresUsesSeveralThreadsAndKeepsEachError) {
  const int before = at::get_num_threads();
  at::set_num_threads(4);  // OpenMP starts the threads even on a machine of fewer cores
  std::vector<int64_t> which;
  for (int64_t i = 0; i < 64; i += 2) which.push_back(i);
  std::vector<std::string> errors(64);
  std::vector<std::thread::id> ran_on(64);
  std::vector<int> runs(64, 0);
  resnet::each_on_all_cores(which, errors, [&](int64_t i) {
    ran_on[i] = std::this_thread::get_id();
    ++runs[i];
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // long enough for the others to take items too
    if (i % 10 == 0) throw std::runtime_error("item " + std::to_string(i));
  });
  at::set_num_threads(before);
  std::set<std::thread::id> threads;
  for (int64_t i = 0; i < 64; ++i) {
    const bool listed = i % 2 == 0;
    EXPECT_EQ(runs[i], listed ? 1 : 0) << i;
    EXPECT_EQ(errors[i], listed && i % 10 == 0 ? "item " + std::to_string(i) : "") << i;
    if (listed) threads.insert(ran_on[i]);
  }
  EXPECT_GE(threads.size(), 2u) << "each_on_all_cores ran on one thread";
}
