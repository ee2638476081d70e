#include "data/gpu_jpeg.h"

#ifdef RESNET_WITH_NVJPEG
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#include <nvjpeg.h>

#include "core/device.h"
#endif

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace resnet {

int64_t jpegs_for_the_cpu(int64_t eligible, int64_t forced, double cpu_rate, double gpu_rate) {
  if (eligible <= 0) return 0;
  if (cpu_rate <= 0 || gpu_rate <= 0) return forced > 0 ? 0 : eligible / 8;
  // (forced + m) / cpu_rate = (eligible - m) / gpu_rate
  const double m = (static_cast<double>(eligible) * cpu_rate - static_cast<double>(forced) * gpu_rate) / (cpu_rate + gpu_rate);
  return std::clamp<int64_t>(std::llround(m), 0, eligible);
}

int64_t jpegs_for_the_gpu(int64_t eligible, int64_t ideal, int64_t prepared, int64_t slack) {
  if (prepared > 0 && prepared <= eligible && std::abs(prepared - ideal) <= slack) return prepared;
  return ideal;
}

#ifdef RESNET_WITH_NVJPEG
namespace {

std::string status_text(nvjpegStatus_t s) {
  switch (s) {
    case NVJPEG_STATUS_NOT_INITIALIZED: return "not initialised";
    case NVJPEG_STATUS_INVALID_PARAMETER: return "invalid parameter";
    case NVJPEG_STATUS_BAD_JPEG: return "bad JPEG";
    case NVJPEG_STATUS_JPEG_NOT_SUPPORTED: return "JPEG not supported";
    case NVJPEG_STATUS_ALLOCATOR_FAILURE: return "allocation failed";
    case NVJPEG_STATUS_EXECUTION_FAILED: return "execution failed";
    case NVJPEG_STATUS_ARCH_MISMATCH: return "not supported on this GPU";
    case NVJPEG_STATUS_INTERNAL_ERROR: return "internal error";
    case NVJPEG_STATUS_IMPLEMENTATION_NOT_SUPPORTED: return "not implemented by this backend";
    default: return "status " + std::to_string(static_cast<int>(s));
  }
}

// nvJPEG's memory, given out in stream order. By default nvJPEG takes its buffers with cudaMalloc
// and cudaHostAlloc and gives them back with cudaFree and cudaFreeHost, which wait for all the
// GPU's work, the training step queued beside the decoding included. Beside the step, a gather's
// GPU decoding took 4x longer than alone in training (where one or two steps are queued) and about
// 1 s where many were (an H200, 2026-12-01): these waits are the suspect. Device memory comes from a
// CUDA memory pool of the decoder's own (cudaMallocFromPoolAsync / cudaFreeAsync on the stream
// nvJPEG names, which order reuse without waiting; the pool neither returns memory to the driver
// at each synchronisation nor makes one stream's allocation wait for another's free); pinned
// memory from a cache that hands a block out again once the work queued before its free has
// finished (an event), and frees a block only when more than kFreeBlocksKept are idle and its work
// is done, so that no free waits.
class NvjpegMemory {
 public:
  explicit NvjpegMemory(int device) {
    cudaMemPoolProps props{};
    props.allocType = cudaMemAllocationTypePinned;
    props.handleTypes = cudaMemHandleTypeNone;
    props.location.type = cudaMemLocationTypeDevice;
    props.location.id = device;
    if (cudaMemPoolCreate(&pool_, &props) != cudaSuccess) {
      (void)cudaGetLastError();
      pool_ = nullptr;
      return;
    }
    uint64_t keep = std::numeric_limits<uint64_t>::max();
    int no = 0;
    if (cudaMemPoolSetAttribute(pool_, cudaMemPoolAttrReleaseThreshold, &keep) != cudaSuccess ||
        cudaMemPoolSetAttribute(pool_, cudaMemPoolReuseAllowInternalDependencies, &no) != cudaSuccess) {
      (void)cudaGetLastError();
      cudaMemPoolDestroy(pool_);
      pool_ = nullptr;
    }
  }
  ~NvjpegMemory() {  // (after nvjpegDestroy, which frees through this)
    for (auto& b : free_pinned_) {
      if (b.freed) {
        cudaEventSynchronize(b.freed);
        cudaEventDestroy(b.freed);
      }
      cudaFreeHost(b.ptr);
    }
    if (pool_) cudaMemPoolDestroy(pool_);
  }
  NvjpegMemory(const NvjpegMemory&) = delete;
  NvjpegMemory& operator=(const NvjpegMemory&) = delete;

  bool ready() const { return pool_ != nullptr; }
  // (members, in case nvJPEG keeps the pointers rather than copies)
  nvjpegDevAllocatorV2_t* device_allocator() { return &device_allocator_; }
  nvjpegPinnedAllocatorV2_t* pinned_allocator() { return &pinned_allocator_; }
  GpuJpegDecoder::Allocations counts() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return counts_;
  }

 private:
  struct PinnedBlock {
    void* ptr;
    size_t size;
    cudaEvent_t freed;  // recorded on the stream of the free: the block is unused once it completes
  };
  static constexpr size_t kFreeBlocksKept = 8;

  static int device_malloc(void* ctx, void** ptr, size_t size, cudaStream_t stream) noexcept {
    auto* self = static_cast<NvjpegMemory*>(ctx);
    if (cudaMallocFromPoolAsync(ptr, std::max<size_t>(size, 1), self->pool_, stream) != cudaSuccess) return 1;
    std::lock_guard<std::mutex> lock(self->mutex_);
    ++self->counts_.device;
    return 0;
  }
  static int device_free(void*, void* ptr, size_t, cudaStream_t stream) noexcept {
    return cudaFreeAsync(ptr, stream) == cudaSuccess ? 0 : 1;
  }
  // (no exception may leave these: nvJPEG is C)
  static int pinned_malloc(void* ctx, void** ptr, size_t size, cudaStream_t) noexcept {
    try {
      return static_cast<NvjpegMemory*>(ctx)->take_pinned(ptr, std::max<size_t>(size, 1));
    } catch (...) {
      return 1;
    }
  }
  static int pinned_free(void* ctx, void* ptr, size_t, cudaStream_t stream) noexcept {
    try {
      return static_cast<NvjpegMemory*>(ctx)->give_back_pinned(ptr, stream);
    } catch (...) {
      return 1;
    }
  }

  // Whether a free block's last user has finished (a query that is not ready leaves no error behind)
  static bool idle(const PinnedBlock& b) {
    if (!b.freed) return true;
    const cudaError_t e = cudaEventQuery(b.freed);
    if (e != cudaSuccess) (void)cudaGetLastError();
    return e == cudaSuccess;
  }
  static void release(const PinnedBlock& b) {  // (idle already: waits for nothing)
    if (b.freed) cudaEventDestroy(b.freed);
    cudaFreeHost(b.ptr);
  }

  // The smallest idle free block of `at_least` bytes or more (end(): none). Under mutex_.
  std::vector<PinnedBlock>::iterator smallest_idle(size_t at_least) {
    auto best = free_pinned_.end();
    for (auto it = free_pinned_.begin(); it != free_pinned_.end(); ++it)
      if (it->size >= at_least && (best == free_pinned_.end() || it->size < best->size) && idle(*it)) best = it;
    return best;
  }

  int take_pinned(void** ptr, size_t size) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto best = smallest_idle(size);
    if (best != free_pinned_.end()) {
      *ptr = best->ptr;
      if (best->freed) cudaEventDestroy(best->freed);
      pinned_size_[best->ptr] = best->size;
      free_pinned_.erase(best);
      ++counts_.pinned_reused;
      return 0;
    }
    if (cudaHostAlloc(ptr, size, cudaHostAllocDefault) != cudaSuccess) return 1;
    pinned_size_[*ptr] = size;
    ++counts_.pinned;
    return 0;
  }
  int give_back_pinned(void* ptr, cudaStream_t stream) {
    std::lock_guard<std::mutex> lock(mutex_);
    const auto found = pinned_size_.find(ptr);
    if (found == pinned_size_.end()) return 1;
    PinnedBlock block{ptr, found->second, nullptr};
    pinned_size_.erase(found);
    if (cudaEventCreateWithFlags(&block.freed, cudaEventDisableTiming) != cudaSuccess ||
        cudaEventRecord(block.freed, stream) != cudaSuccess) {  // (unlikely) then wait for the stream here
      (void)cudaGetLastError();
      if (block.freed) cudaEventDestroy(block.freed);
      block.freed = nullptr;
      if (cudaStreamSynchronize(stream) != cudaSuccess) return 1;
    }
    free_pinned_.push_back(block);
    // More idle blocks than kept (rare: nvJPEG reallocates only to grow): the smallest idle ones go.
    while (free_pinned_.size() > kFreeBlocksKept) {
      const auto smallest = smallest_idle(0);
      if (smallest == free_pinned_.end()) break;  // none idle yet: later
      release(*smallest);
      free_pinned_.erase(smallest);
    }
    return 0;
  }

  cudaMemPool_t pool_ = nullptr;
  nvjpegDevAllocatorV2_t device_allocator_{&NvjpegMemory::device_malloc, &NvjpegMemory::device_free, this};
  nvjpegPinnedAllocatorV2_t pinned_allocator_{&NvjpegMemory::pinned_malloc, &NvjpegMemory::pinned_free, this};
  mutable std::mutex mutex_;  // (nvJPEG may call from threads of its own)
  std::vector<PinnedBlock> free_pinned_;
  std::unordered_map<void*, size_t> pinned_size_;  // blocks given out, and their sizes
  GpuJpegDecoder::Allocations counts_;
};

class NvjpegDecoder final : public GpuJpegDecoder {
 public:
  // `memory`: the allocators `handle` was made with (none: nvJPEG's own)
  NvjpegDecoder(int device, nvjpegHandle_t handle, bool hardware, std::unique_ptr<NvjpegMemory> memory)
      : device_(device), handle_(handle), hardware_(hardware), memory_(std::move(memory)) {}
  ~NvjpegDecoder() override {
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
    if (jpeg_stream_) nvjpegJpegStreamDestroy(jpeg_stream_);
    if (state_) nvjpegJpegStateDestroy(state_);
    nvjpegDestroy(handle_);
    memory_.reset();  // (after the handle, which frees its buffers through it)
  }
  NvjpegDecoder(const NvjpegDecoder&) = delete;
  NvjpegDecoder& operator=(const NvjpegDecoder&) = delete;

  // The rest of construction; the reason in `why` where it fails.
  bool start(std::string& why) {
    nvjpegStatus_t s = nvjpegJpegStateCreate(handle_, &state_);
    if (s == NVJPEG_STATUS_SUCCESS) s = nvjpegJpegStreamCreate(handle_, &jpeg_stream_);
    if (s != NVJPEG_STATUS_SUCCESS) why = "nvJPEG could not start: " + status_text(s);
    return s == NVJPEG_STATUS_SUCCESS;
  }

  bool accepts(const std::vector<uint8_t>& bytes, int64_t& height, int64_t& width) override {
    // A truncated file can pass the header checks and decode to garbage on the GPU; the CPU path
    // refuses it by name. So only whole files (ending in EOI) go to the GPU.
    const size_t n = bytes.size();
    if (n < 4 || bytes[n - 2] != 0xFF || bytes[n - 1] != 0xD9) return false;
    int components = 0;
    nvjpegChromaSubsampling_t subsampling = NVJPEG_CSS_UNKNOWN;
    int widths[NVJPEG_MAX_COMPONENT] = {}, heights[NVJPEG_MAX_COMPONENT] = {};
    if (nvjpegGetImageInfo(handle_, bytes.data(), bytes.size(), &components, &subsampling, widths, heights) !=
        NVJPEG_STATUS_SUCCESS)
      return false;  // PNG, or a JPEG nvJPEG cannot read: the CPU path decodes it or names the error
    // Colour JPEGs only: grey and CMYK/YCCK ones stay with the CPU path's PIL-equal conversions.
    if (components != 3 || subsampling == NVJPEG_CSS_UNKNOWN || subsampling == NVJPEG_CSS_GRAY) return false;
    if (hardware_) {  // the engines take baseline, single-scan files of the common subsamplings
      int unsupported = 1;
      if (nvjpegJpegStreamParseHeader(handle_, bytes.data(), bytes.size(), jpeg_stream_) != NVJPEG_STATUS_SUCCESS ||
          nvjpegDecodeBatchedSupported(handle_, jpeg_stream_, &unsupported) != NVJPEG_STATUS_SUCCESS || unsupported != 0)
        return false;
    }
    height = heights[0];
    width = widths[0];
    return height > 0 && width > 0;
  }

  std::string decode(const std::vector<const std::vector<uint8_t>*>& files, const std::vector<int64_t>& slots,
                     torch::Tensor& images, void* stream) override {
    const int n = static_cast<int>(files.size());
    if (n == 0) return "";
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
    if (n != batch_) {  // "once for batches of this size, and to reset a failed batch"
      const nvjpegStatus_t s = nvjpegDecodeBatchedInitialize(handle_, state_, n, 1, NVJPEG_OUTPUT_RGB);
      if (s != NVJPEG_STATUS_SUCCESS) return refuse("nvjpegDecodeBatchedInitialize: " + status_text(s));
      batch_ = n;
    }
    const int64_t height = images.size(2), width = images.size(3);
    uint8_t* base = images.data_ptr<uint8_t>();
    std::vector<const unsigned char*> data(n);
    std::vector<size_t> lengths(n);
    std::vector<nvjpegImage_t> out(n);
    for (int i = 0; i < n; ++i) {
      data[i] = files[i]->data();
      lengths[i] = files[i]->size();
      out[i] = nvjpegImage_t{};
      for (int c = 0; c < 3; ++c) {  // planar RGB into the padded batch: a plane's rows are `width` apart
        out[i].channel[c] = base + (slots[i] * 3 + c) * height * width;
        out[i].pitch[c] = static_cast<size_t>(width);
      }
    }
    const nvjpegStatus_t s =
        nvjpegDecodeBatched(handle_, state_, data.data(), lengths.data(), out.data(), static_cast<cudaStream_t>(stream));
    // wait here (asleep: the CPU decodes beside it): data, lengths and out must outlive the work,
    // and the caller reads the images next
    const std::string synced = wait_asleep(stream);
    if (s != NVJPEG_STATUS_SUCCESS) return refuse("nvjpegDecodeBatched: " + status_text(s));
    if (!synced.empty()) return refuse("the decode's stream: " + synced);
    images_decoded_ += n;
    return "";
  }

  std::string backend() const override { return hardware_ ? "hardware" : "hybrid"; }
  std::string allocators() const override { return memory_ ? "stream-ordered" : "nvJPEG's"; }
  Allocations allocations() const override { return memory_ ? memory_->counts() : Allocations{}; }
  int64_t prepared_for() const override { return batch_; }

 private:
  std::string refuse(const std::string& why) {
    batch_ = 0;  // initialise again before the next batch
    ++batches_refused_;
    return why;
  }

  int device_;
  nvjpegHandle_t handle_;
  bool hardware_;
  std::unique_ptr<NvjpegMemory> memory_;
  nvjpegJpegState_t state_ = nullptr;
  nvjpegJpegStream_t jpeg_stream_ = nullptr;
  int batch_ = 0;  // the batch size the state was initialised for
};

}  // namespace

bool gpu_jpeg_built() { return true; }

std::unique_ptr<GpuJpegDecoder> make_gpu_jpeg_decoder(int device_index, std::string& why,
                                                      std::optional<bool> stream_ordered) {
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_index));
  // The hardware engines where the GPU has them (creating fails where it has none), else hybrid;
  // each with chroma upsampling that interpolates (as libjpeg's "fancy" upsampling, which PIL and
  // our CPU path use) where that backend offers it.
  // Stream-ordered allocators (NvjpegMemory) unless RESNET_NVJPEG_ALLOCATORS=default asks for
  // nvJPEG's own (cudaMalloc, cudaHostAlloc), to compare the two.
  if (!stream_ordered) {
    const char* allocators = std::getenv("RESNET_NVJPEG_ALLOCATORS");
    stream_ordered = !allocators || std::strcmp(allocators, "default") != 0;
  }
  std::unique_ptr<NvjpegMemory> memory;
  if (*stream_ordered) {
    memory = std::make_unique<NvjpegMemory>(device_index);
    if (!memory->ready()) memory.reset();  // (no memory pools on this GPU or driver: nvJPEG's own)
  }
  nvjpegHandle_t handle = nullptr;
  nvjpegStatus_t s = NVJPEG_STATUS_NOT_INITIALIZED;
  bool hardware = false;
  // each way in turn: a backend that cannot start with our allocators starts with nvJPEG's own
  // before the next backend is tried
  for (const nvjpegBackend_t backend : {NVJPEG_BACKEND_HARDWARE, NVJPEG_BACKEND_DEFAULT}) {
    for (const unsigned flags : {unsigned{NVJPEG_FLAGS_UPSAMPLING_WITH_INTERPOLATION}, unsigned{NVJPEG_FLAGS_DEFAULT}}) {
      for (const bool ours : {true, false}) {
        if (ours && !memory) continue;
        handle = nullptr;
        s = ours ? nvjpegCreateExV2(backend, memory->device_allocator(), memory->pinned_allocator(), flags, &handle)
                 : nvjpegCreateEx(backend, nullptr, nullptr, flags, &handle);
        if (s == NVJPEG_STATUS_SUCCESS) {
          if (!ours) memory.reset();
          break;
        }
      }
      if (s == NVJPEG_STATUS_SUCCESS) break;
    }
    if (s == NVJPEG_STATUS_SUCCESS) {
      hardware = backend == NVJPEG_BACKEND_HARDWARE;
      break;
    }
  }
  if (s != NVJPEG_STATUS_SUCCESS) {
    why = "nvJPEG could not start on GPU " + std::to_string(device_index) + ": " + status_text(s);
    return nullptr;
  }
  auto decoder = std::make_unique<NvjpegDecoder>(device_index, handle, hardware, std::move(memory));
  if (!decoder->start(why)) return nullptr;
  return decoder;
}

#else

bool gpu_jpeg_built() { return false; }

std::unique_ptr<GpuJpegDecoder> make_gpu_jpeg_decoder(int, std::string& why, std::optional<bool>) {
  why = "this build has no nvJPEG (scripts/install-deps installs PyPI's nvidia-nvjpeg for a CUDA build)";
  return nullptr;
}

#endif

}  // namespace resnet
