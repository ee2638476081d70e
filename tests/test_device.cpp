#include <gtest/gtest.h>
#include <torch/cuda.h>

#include <chrono>
#include <set>
#include <utility>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/device.h"
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

// The image decoder's parallel loop once ran on one thread: at::parallel_for's OpenMP pragma
// compiles into the caller, which was built without -fopenmp. This fails if that comes back.
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
  // A CPU device: nothing to set, whatever the variable says, and no error.
  const resnet::test::ScopedEnv env("RESNET_CUDA_WAIT", "block");
  EXPECT_NO_THROW(resnet::set_cuda_wait_from_environment(c10::Device(c10::kCPU)));
}

#ifdef RESNET_WITH_CUDA
TEST(Device, CudaWaitSetsTheDevicesSchedulingFlagOnAContextInUse) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA GPU visible";
  const c10::Device cuda(c10::kCUDA, 0);
  cudaSetDevice(0);
  cudaFree(nullptr);  // the primary context in use first, as in training (the loader starts before)
  unsigned before = 0;
  ASSERT_EQ(cudaGetDeviceFlags(&before), cudaSuccess);
  for (const auto& [name, flag] : {std::pair{"block", unsigned{cudaDeviceScheduleBlockingSync}},
                                   std::pair{"yield", unsigned{cudaDeviceScheduleYield}},
                                   std::pair{"spin", unsigned{cudaDeviceScheduleSpin}}}) {
    const resnet::test::ScopedEnv env("RESNET_CUDA_WAIT", name);
    resnet::set_cuda_wait_from_environment(cuda);
    unsigned now = 0;
    ASSERT_EQ(cudaGetDeviceFlags(&now), cudaSuccess);
    EXPECT_EQ(now & cudaDeviceScheduleMask, flag) << name;
    EXPECT_EQ(now & ~unsigned{cudaDeviceScheduleMask}, before & ~unsigned{cudaDeviceScheduleMask}) << name;
    EXPECT_TRUE(torch::ones({4}, torch::kCUDA).sum().item<float>() == 4.0f) << name;  // the GPU still works
  }
  cudaSetDeviceFlags(before);
}
#endif

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
