// Device selection from the user's `--device` spelling.
//
// Accepts `auto` (CUDA when a GPU is visible, else the CPU), `cpu`, `cuda`, `cuda:N`.
// `dml` (the DirectML device of the original sample) and anything else get a UsageError that
// says what is accepted.
#pragma once

#include <string>

#include <c10/core/Device.h>

namespace resnet {

c10::Device parse_device(const std::string& spec);

// A short human name: "cpu", "cuda:0 (NVIDIA H100 80GB HBM3)".
std::string describe_device(const c10::Device& device);

// cuDNN autotuning on, as the sample's torch.backends.cudnn.benchmark = True: each convolution
// shape's first call times candidate kernels and keeps the fastest. The environment variable
// RESNET_CUDNN_BENCHMARK_LIMIT=N sets how many candidates are timed (PyTorch's
// torch.backends.cudnn.benchmark_limit: default 10, 0 = all); UsageError naming the variable for
// anything but a number >= 0.
void enable_cudnn_autotuning();

// The most memory the CUDA caching allocator has handed out on `device` (MiB, since the process
// started or the last reset); 0 on the CPU.
double peak_memory_mib(const c10::Device& device);

// How this process's threads wait for GPU `device` (CUDA's scheduling flag), from the environment
// variable RESNET_CUDA_WAIT: "auto" (CUDA's default: a waiting thread polls its core while the
// machine has more cores than CUDA contexts), "spin", "yield", or "block" (asleep until the GPU is
// done: the core goes to other threads, the loader's decoders among them, at a later wake-up).
// Unset: `otherwise`'s value (null: nothing changes). Issue 15: nvJPEG's own waits (thousands an
// epoch, 1-2 ms each beside the training step) poll beside the decoding threads, so training with
// --gpu-decode passes "block". A UsageError naming the variable for another value, whatever the
// device; a warning where CUDA refuses the flag; a good value is nothing to a CPU device.
void set_cuda_wait_from_environment(const c10::Device& device, const char* otherwise = nullptr);

// The cudaDeviceSchedule* flag that RESNET_CUDA_WAIT's value `value` stands for (-1: unset, null);
// a UsageError for one that is none of the above.
int cuda_wait_flag(const char* value);

// Waits on this thread for the work queued so far on CUDA stream `stream` (a cudaStream_t),
// asleep until it is done. CUDA's own waits (cudaStreamSynchronize, CUDAStream::synchronize) keep
// a core polling the whole time on a machine of many cores and one GPU; the loader's gathers wait
// so for their GPU work while the CPU decodes other images of their batches beside them. "" when
// done, else CUDA's error. (Without CUDA in the build: nothing is queued, "".)
std::string wait_asleep(void* stream);

}  // namespace resnet
