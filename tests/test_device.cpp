#include <gtest/gtest.h>
#include <torch/cuda.h>

#include "core/device.h"
#include "core/error.h"

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
