#include "core/device.h"

#include <torch/cuda.h>

#include <ATen/Context.h>

#include <cctype>
#include <cstdlib>

#include "core/env.h"
#include "core/error.h"
#include "core/log.h"

#ifdef RESNET_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace resnet {
namespace {

bool all_digits(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
  return true;
}

c10::Device cuda_device(int index, const std::string& spec) {
  const int count = static_cast<int>(torch::cuda::device_count());
  if (count == 0)
    throw UsageError("--device " + spec + ": no CUDA GPU is visible to this process" +
                     (torch::cuda::is_available() ? "" : " (use --device cpu or --device auto)"));
  if (index >= count)
    throw UsageError("--device " + spec + ": there are only " + std::to_string(count) +
                     " CUDA device(s) (cuda:0 to cuda:" + std::to_string(count - 1) + ")");
  return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(index));
}

}  // namespace

c10::Device parse_device(const std::string& spec) {
  if (spec == "auto")
    return torch::cuda::is_available() ? c10::Device(c10::kCUDA, 0) : c10::Device(c10::kCPU);
  if (spec == "cpu") return c10::Device(c10::kCPU);
  if (spec == "cuda") return cuda_device(0, spec);
  if (spec.rfind("cuda:", 0) == 0 && all_digits(spec.substr(5)) && spec.size() < 12)
    return cuda_device(std::stoi(spec.substr(5)), spec);
  if (spec == "dml" || spec.rfind("dml:", 0) == 0)
    throw UsageError("--device " + spec +
                     ": DirectML exists only on Windows (torch-directml); this build runs on "
                     "NVIDIA GPUs (--device cuda) and on the CPU (--device cpu)");
  throw UsageError("--device '" + spec + "' is not a device; use auto, cpu, cuda or cuda:N");
}

std::string describe_device(const c10::Device& device) {
  std::string name = device.str();
#ifdef RESNET_WITH_CUDA
  if (device.is_cuda()) name += std::string(" (") + at::cuda::getDeviceProperties(device.index())->name + ")";
#endif
  return name;
}

void enable_cudnn_autotuning() {
  at::globalContext().setBenchmarkCuDNN(true);
  const char* limit = std::getenv("RESNET_CUDNN_BENCHMARK_LIMIT");
  if (limit == nullptr || *limit == '\0') return;
  at::globalContext().setBenchmarkLimitCuDNN(
      whole_number_from_env("RESNET_CUDNN_BENCHMARK_LIMIT", limit, 0, 100000, "a number of kernels from 0 to 100000"));
}

double peak_memory_mib(const c10::Device& device) {
#ifdef RESNET_WITH_CUDA
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    const auto aggregate = static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE);
    return static_cast<double>(stats.allocated_bytes[aggregate].peak) / (1024.0 * 1024.0);
  }
#else
  (void)device;
#endif
  return 0.0;
}

// cudaDeviceScheduleAuto, Spin, Yield and BlockingSync (CUDA's values, checked below where CUDA is)
constexpr int kScheduleAuto = 0, kScheduleSpin = 1, kScheduleYield = 2, kScheduleBlock = 4;
#ifdef RESNET_WITH_CUDA
static_assert(kScheduleAuto == cudaDeviceScheduleAuto && kScheduleSpin == cudaDeviceScheduleSpin &&
              kScheduleYield == cudaDeviceScheduleYield && kScheduleBlock == cudaDeviceScheduleBlockingSync);
#endif

int cuda_wait_flag(const char* value) {
  if (value == nullptr) return -1;
  const std::string v = value;
  if (v == "auto") return kScheduleAuto;
  if (v == "spin") return kScheduleSpin;
  if (v == "yield") return kScheduleYield;
  if (v == "block") return kScheduleBlock;
  throw UsageError("RESNET_CUDA_WAIT must be auto, spin, yield or block (got '" + v + "')");
}

void set_cuda_wait_from_environment(const c10::Device& device, const char* otherwise) {
  const char* given = std::getenv("RESNET_CUDA_WAIT");
  const char* value = given ? given : otherwise;
  const int flag = cuda_wait_flag(value);
  if (flag < 0 || !device.is_cuda()) return;
#ifdef RESNET_WITH_CUDA
  c10::cuda::CUDAGuard guard(device);
  unsigned flags = 0;
  cudaError_t e = cudaGetDeviceFlags(&flags);
  if (e == cudaSuccess)
    e = cudaSetDeviceFlags((flags & ~unsigned{cudaDeviceScheduleMask}) | static_cast<unsigned>(flag));
  if (e != cudaSuccess) {
    cudaGetLastError();  // (not left for the next CUDA call to report)
    log_warning(std::string("RESNET_CUDA_WAIT=") + value + (given ? "" : " (the default here)") + " not applied to " +
                device.str() + ": " + cudaGetErrorString(e));
  }
#endif
}

std::string wait_asleep(void* stream) {
#ifdef RESNET_WITH_CUDA
  cudaEvent_t done = nullptr;
  cudaError_t e = cudaEventCreateWithFlags(&done, cudaEventBlockingSync | cudaEventDisableTiming);
  if (e == cudaSuccess) {
    e = cudaEventRecord(done, static_cast<cudaStream_t>(stream));
    if (e == cudaSuccess) e = cudaEventSynchronize(done);
    cudaEventDestroy(done);
  }
  return e == cudaSuccess ? "" : cudaGetErrorString(e);
#else
  (void)stream;
  return "";
#endif
}

}  // namespace resnet
