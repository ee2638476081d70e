#include "data/gpu_jpeg.h"

#include "core/error.h"

#ifdef RESNET_WITH_NVJPEG
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#include <nvjpeg.h>

#include "core/device.h"
#include "data/decode.h"
#endif

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace resnet {

GpuJpegSettings GpuJpegSettings::from_environment() {
  const auto on = [](const char* name, bool unset) {  // "0" is off, any other value on
    const char* v = std::getenv(name);
    return v ? std::strcmp(v, "0") != 0 : unset;
  };
  GpuJpegSettings s;
  s.preallocate = on("RESNET_NVJPEG_PREALLOCATE", true);
  s.fixed_count = on("RESNET_NVJPEG_FIXED_COUNT", true);
  s.pipeline = on("RESNET_NVJPEG_PIPELINE", false);
  s.shrink = on("RESNET_NVJPEG_SHRINK", false);
  const char* backend = std::getenv("RESNET_NVJPEG_BACKEND");
  s.backend = backend ? backend : "";
  if (const char* split = std::getenv("RESNET_NVJPEG_SPLIT")) {
    // (from_chars: a plain decimal number, whatever the locale; no sign, space or hex)
    const char* const end = split + std::strlen(split);
    double share = 0;
    const auto [stop, error] = std::from_chars(split, end, share);
    if (std::strcmp(split, "gpu") == 0) {
      s.split = Split::kGpu;
    } else if (error == std::errc() && stop == end && share > 0 && share <= 1) {
      s.split = Split::kShare;
      s.gpu_share = share;
    } else if (std::strcmp(split, "balanced") != 0) {
      throw UsageError(std::string("environment variable RESNET_NVJPEG_SPLIT must be balanced, gpu or the share of the "
                                   "JPEGs nvJPEG decodes, over 0 and at most 1 (got '") +
                       split + "')");
    }
  }
  return s;
}

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

int64_t jpegs_moved_to_the_cpu(const GpuJpegSettings& how, int64_t eligible, int64_t forced, double cpu_rate,
                               double gpu_rate, int64_t prepared, int64_t slack) {
  using Split = GpuJpegSettings::Split;
  if (how.split == Split::kGpu || eligible <= 0) return 0;
  const int64_t ideal =
      how.split == Split::kShare
          ? std::clamp<int64_t>(std::llround(static_cast<double>(eligible) * how.gpu_share), 0, eligible)
          : eligible - jpegs_for_the_cpu(eligible, forced, cpu_rate, gpu_rate);
  return eligible - jpegs_for_the_gpu(eligible, ideal, prepared, slack);
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

class NvjpegDecoder final : public GpuJpegDecoder {
 public:
  NvjpegDecoder(int device, nvjpegHandle_t handle, std::string backend, const GpuJpegSettings& settings, bool pipelined)
      : device_(device), handle_(handle), backend_(std::move(backend)), hardware_(backend_ == "hardware"),
        preallocate_(hardware_ && settings.preallocate), fixed_count_(settings.fixed_count),
        shrink_(settings.shrink), pipelined_(pipelined) {}
  ~NvjpegDecoder() override {
    c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_));
    if (jpeg_stream_) nvjpegJpegStreamDestroy(jpeg_stream_);
    if (state_) nvjpegJpegStateDestroy(state_);
    nvjpegDestroy(handle_);
  }
  NvjpegDecoder(const NvjpegDecoder&) = delete;
  NvjpegDecoder& operator=(const NvjpegDecoder&) = delete;

  // The rest of construction; the reason in `why` where it fails.
  bool start(std::string& why) {
    nvjpegStatus_t s = nvjpegJpegStateCreate(handle_, &state_);
    if (s == NVJPEG_STATUS_SUCCESS) s = nvjpegJpegStreamCreate(handle_, &jpeg_stream_);
    if (s != NVJPEG_STATUS_SUCCESS) {
      why = "nvJPEG could not start: " + status_text(s);
      return false;
    }
    if (fixed_count_) {  // the filler: a mid-grey JPEG of kFillerSide pixels a side (none: no fixed counts)
      try {
        filler_ = encode_jpeg(torch::full({3, kFillerSide, kFillerSide}, 128, torch::kUInt8), 50);
      } catch (const std::exception&) {
        filler_.clear();
      }
      int64_t h = 0, w = 0;
      fixed_count_ = !filler_.empty() && accepts(filler_, h, w) && h == kFillerSide && w == kFillerSide;
    }
    shrink_ = shrink_ && fixed_count_;
    return true;
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
    // the count of images nvJPEG decodes: this call's, or with fixed counts the count it is set
    // up for, grown (to a multiple of kCountStep) only for more files, and with shrink_ lowered
    // after a run of calls that were mostly fillers (shrunk). (Set up again for fewer files at
    // each call where more than a quarter would be fillers, it was set up 0.55 times a batch
    // beside the training step and gave 1,505 img/s against 2,600; H200, 2026-12-02.)
    int count = n;
    if (fixed_count_) count = n <= batch_ ? batch_ : std::max(largest_, round_up_count(n));
    if (shrink_) count = shrunk(n, count);
    if (count != batch_) {  // "once for batches of this size, and to reset a failed batch"
      const nvjpegStatus_t s = nvjpegDecodeBatchedInitialize(handle_, state_, count, 1, NVJPEG_OUTPUT_RGB);
      if (s != NVJPEG_STATUS_SUCCESS) return refuse("nvjpegDecodeBatchedInitialize: " + status_text(s));
      batch_ = count;
      largest_ = std::max(largest_, count);
      ready_ = {0, 0};
      ++setups_;
    }
    constexpr int64_t kFillerBytes = 3 * kFillerSide * kFillerSide;
    if (count > n && fillers_.numel() < (count - n) * kFillerBytes)
      fillers_ =
          torch::empty({count * kFillerBytes}, torch::TensorOptions().dtype(torch::kUInt8).device(images.device()));
    const int64_t height = images.size(2), width = images.size(3);  // (the batch's largest file's)
    preallocate(height, width);
    uint8_t* base = images.data_ptr<uint8_t>();
    std::vector<const unsigned char*> data(count, filler_.data());
    std::vector<size_t> lengths(count, filler_.size());
    std::vector<nvjpegImage_t> out(count);
    for (int i = 0; i < n; ++i) {
      data[i] = files[i]->data();
      lengths[i] = files[i]->size();
      out[i] = nvjpegImage_t{};
      for (int c = 0; c < 3; ++c) {  // planar RGB into the padded batch: a plane's rows are `width` apart
        out[i].channel[c] = base + (slots[i] * 3 + c) * height * width;
        out[i].pitch[c] = static_cast<size_t>(width);
      }
    }
    for (int i = n; i < count; ++i) {  // the fillers', each into its own part of fillers_
      out[i] = nvjpegImage_t{};
      for (int c = 0; c < 3; ++c) {
        out[i].channel[c] = fillers_.data_ptr<uint8_t>() + (i - n) * kFillerBytes + c * kFillerSide * kFillerSide;
        out[i].pitch[c] = static_cast<size_t>(kFillerSide);
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

  std::string backend() const override { return backend_; }
  bool preallocates() const override { return preallocate_; }
  ImageSize preallocated() const override { return ready_; }
  int64_t prepared_for() const override { return batch_; }
  bool fixed_count() const override { return fixed_count_; }
  bool pipelined() const override { return pipelined_; }
  bool shrinks() const override { return shrink_; }

 private:
  // Left to itself, nvJPEG's hardware decoder takes buffers for each batch's images as it decodes
  // them and frees them after (cuMemFree, which waits for all the GPU's queued work: beside the
  // training step, 1,059 such frees in a run of 60 batches took 18 s; CUPTI trace, an H200,
  // 2026-12-01). Set up for the largest image size seen so far, rounded up, it keeps its buffers
  // from batch to batch (nvjpegDecodeBatchedPreAllocate, as DALI does), and grows them only when
  // a larger image comes. An outsized image (buffers over kPreallocatedBytesMax for the batch)
  // leaves them as they are: nvJPEG then allocates for that batch alone.
  static constexpr int64_t kPreallocateStep = 128;  // pixels a side
  // Setting nvJPEG up for another count of files frees and takes its buffers too (and drops those
  // set up ahead): with fixed counts a batch with fewer files than the decoder is set up for is
  // filled up with tiny JPEGs, and a batch with more sets it up for a multiple of kCountStep.
  static constexpr int kCountStep = 32;
  static int round_up_count(int n) { return (n + kCountStep - 1) / kCountStep * kCountStep; }
  // GpuJpegSettings::shrink: the count for a call of `n` files where fixed counts gave `count`.
  // kShrinkWindow calls in a row each with a quarter or more fillers set the decoder up for their
  // largest count plus an eighth (rounded up to kCountStep), which growth and a refusal's set-up
  // then start from; a call with fewer fillers, or one that grows the count, starts the window again.
  // (8: with five decoders taking the batches in turn, each shrinks after about 40 batches)
  static constexpr int kShrinkWindow = 8;
  int shrunk(int n, int count) {
    if (count != batch_ || 4 * (batch_ - n) < batch_) {
      window_calls_ = 0, window_largest_ = 0;
      return count;
    }
    window_largest_ = std::max(window_largest_, n);
    if (++window_calls_ < kShrinkWindow) return count;
    const int fits = round_up_count(window_largest_ + window_largest_ / 8);
    window_calls_ = 0, window_largest_ = 0;
    if (fits >= batch_) return count;
    largest_ = fits;
    return fits;
  }
  static constexpr int64_t kFillerSide = 16;
  static constexpr int64_t kPreallocatedBytesMax = int64_t{1} << 30;
  void preallocate(int64_t height, int64_t width) {
    if (!preallocate_ || (height <= ready_.height && width <= ready_.width)) return;
    const auto round_up = [](int64_t v) { return (v + kPreallocateStep - 1) / kPreallocateStep * kPreallocateStep; };
    seen_ = {std::max(seen_.height, round_up(height)), std::max(seen_.width, round_up(width))};
    if (batch_ * seen_.height * seen_.width * 3 > kPreallocatedBytesMax) return;
    const nvjpegStatus_t s = nvjpegDecodeBatchedPreAllocate(handle_, state_, batch_, static_cast<int>(seen_.width),
                                                            static_cast<int>(seen_.height), NVJPEG_CSS_444,
                                                            NVJPEG_OUTPUT_RGB);
    if (s != NVJPEG_STATUS_SUCCESS) {  // (decodes as before, allocating as it goes)
      preallocate_ = false;
      return;
    }
    ready_ = seen_;
    ++setups_;
  }

  std::string refuse(const std::string& why) {
    batch_ = 0;  // initialise again before the next batch
    ++batches_refused_;
    return why;
  }

  int device_;
  nvjpegHandle_t handle_;
  std::string backend_;
  bool hardware_;
  bool preallocate_;
  bool fixed_count_;
  bool shrink_;  // (only with fixed counts)
  bool pipelined_;
  std::vector<uint8_t> filler_;  // the filler JPEG (fixed counts)
  torch::Tensor fillers_;        // on the GPU: where the fillers' pixels go
  ImageSize seen_{0, 0};   // the largest size asked for since the decoder started, rounded up
  ImageSize ready_{0, 0};  // the size nvJPEG's buffers are set up for (since the last initialisation)
  nvjpegJpegState_t state_ = nullptr;
  nvjpegJpegStream_t jpeg_stream_ = nullptr;
  int batch_ = 0;    // the batch size the state was initialised for
  // the largest it has been, or with shrink what it shrank to (with fixed counts, set up for that
  // again after a refusal)
  int largest_ = 0;
  int window_calls_ = 0, window_largest_ = 0;  // shrunk()'s window: its calls so far, their largest count
};

}  // namespace

bool gpu_jpeg_built() { return true; }

std::unique_ptr<GpuJpegDecoder> make_gpu_jpeg_decoder(int device_index, std::string& why,
                                                      std::optional<GpuJpegSettings> settings) {
  // The backend asked for, or the hardware engines where the GPU has them (creating fails where it
  // has none), else hybrid; each with chroma upsampling that interpolates (as libjpeg's "fancy"
  // upsampling, which PIL and our CPU path use) where that backend offers it.
  const GpuJpegSettings how = settings ? *settings : GpuJpegSettings::from_environment();
  const std::vector<std::pair<std::string, nvjpegBackend_t>> known = {{"hardware", NVJPEG_BACKEND_HARDWARE},
                                                                       {"gpu-hybrid", NVJPEG_BACKEND_GPU_HYBRID},
                                                                       {"hybrid", NVJPEG_BACKEND_HYBRID}};
  std::vector<std::pair<std::string, nvjpegBackend_t>> tries;
  for (const auto& k : known)
    if (k.first == how.backend) tries.push_back(k);
  if (how.backend.empty()) tries = {known[0], {"hybrid", NVJPEG_BACKEND_DEFAULT}};
  if (tries.empty()) {
    why = "unknown nvJPEG backend '" + how.backend + "' (RESNET_NVJPEG_BACKEND: hardware, gpu-hybrid or hybrid)";
    return nullptr;
  }
  c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device_index));
  nvjpegHandle_t handle = nullptr;
  nvjpegStatus_t s = NVJPEG_STATUS_NOT_INITIALIZED;
  std::string backend;
  bool pipelined = true;  // (nvJPEG's hardware decoder, where it started without the flag)
  for (const auto& [name, id] : tries) {
    // The hardware decoder without its pipeline where asked and nvJPEG takes the flag, else with it
    // (before another backend); with smooth chroma upsampling where nvJPEG has it.
    std::vector<unsigned> pipeline_flags{0u};
    if (!how.pipeline && id == NVJPEG_BACKEND_HARDWARE)
      pipeline_flags.insert(pipeline_flags.begin(), NVJPEG_FLAGS_HW_DECODE_NO_PIPELINE);
    for (const unsigned pipeline_flag : pipeline_flags) {
      for (const unsigned flags :
           {unsigned{NVJPEG_FLAGS_UPSAMPLING_WITH_INTERPOLATION}, unsigned{NVJPEG_FLAGS_DEFAULT}}) {
        handle = nullptr;
        s = nvjpegCreateEx(id, nullptr, nullptr, flags | pipeline_flag, &handle);
        if (s == NVJPEG_STATUS_SUCCESS) break;
      }
      if (s == NVJPEG_STATUS_SUCCESS) {
        pipelined = pipeline_flag == 0;
        break;
      }
    }
    if (s == NVJPEG_STATUS_SUCCESS) {
      backend = name;
      break;
    }
  }
  if (s != NVJPEG_STATUS_SUCCESS) {
    why = "nvJPEG could not start on GPU " + std::to_string(device_index) +
          (how.backend.empty() ? "" : " with backend " + how.backend) + ": " + status_text(s);
    return nullptr;
  }
  auto decoder =
      std::make_unique<NvjpegDecoder>(device_index, handle, backend, how, pipelined && backend == "hardware");
  if (!decoder->start(why)) return nullptr;
  return decoder;
}

#else

bool gpu_jpeg_built() { return false; }

std::unique_ptr<GpuJpegDecoder> make_gpu_jpeg_decoder(int, std::string& why, std::optional<GpuJpegSettings>) {
  why = "this build has no nvJPEG (scripts/install-deps installs PyPI's nvidia-nvjpeg for a CUDA build)";
  return nullptr;
}

#endif

}  // namespace resnet
