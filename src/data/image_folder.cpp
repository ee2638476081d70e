#include "data/image_folder.h"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <mutex>
#include <optional>

#include "core/device.h"
#include "core/env.h"
#include "core/error.h"
#include "core/log.h"
#include "core/parallel.h"
#include "data/decode.h"
#include "data/gpu_jpeg.h"
#include "data/upload.h"

#ifdef RESNET_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace resnet {
namespace fs = std::filesystem;

namespace {

bool is_image_name(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

std::vector<int64_t> all_of(size_t n) {
  std::vector<int64_t> all(n);
  for (size_t i = 0; i < n; ++i) all[i] = static_cast<int64_t>(i);
  return all;
}

// Decodes every file whole on all cores; errors[i] holds the message of a failure.
std::vector<torch::Tensor> decode_all(const std::vector<std::string>& files, std::vector<std::string>& errors) {
  std::vector<torch::Tensor> images(files.size());
  errors.assign(files.size(), "");
  each_on_all_cores(all_of(files.size()), errors, [&](int64_t i) { images[i] = decode_image_file(files[i]); });
  return images;
}

#ifdef RESNET_WITH_CUDA
// Waits asleep (core/device.h's wait_asleep: the CPU decodes beside it) for `stream`'s work.
void wait_for(const c10::cuda::CUDAStream& stream) {
  c10::cuda::CUDAGuard on(stream.device_index());  // (the event must be of the stream's GPU)
  const std::string error = wait_asleep(stream.stream());
  if (!error.empty()) throw std::runtime_error("the loader's CUDA stream: " + error);
}
#endif

// Copies a pinned batch to `device` on a side stream, waiting here (on the loader's background
// thread) rather than on the stream the model runs on, so the copy overlaps the model's work.
torch::Tensor to_device_beside_compute(const torch::Tensor& host, const torch::Device& device) {
#ifdef RESNET_WITH_CUDA
  if (device.is_cuda()) {
    auto side = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index());
    torch::Tensor out;
    {
      c10::cuda::CUDAStreamGuard guard(side);
      out = host.to(device, /*non_blocking=*/true);
    }
    wait_for(side);
    // The batch is used on the model's stream: tell the allocator, so that its memory is not
    // handed to the side stream's next copy while the model still reads it.
    c10::cuda::CUDACachingAllocator::recordStream(out.storage().data_ptr(),
                                                  c10::cuda::getDefaultCUDAStream(device.index()));
    return out;
  }
#endif
  return host.to(device);
}

#ifdef RESNET_WITH_CUDA
torch::Tensor pinned_index(const std::vector<int64_t>& values, const torch::Device& device) {
  return upload(torch::tensor(values, torch::kLong), device);
}
#endif

// Three batches are gathered at once (the Loader's threads): while one batch's last, slowest
// images decode on a few cores, or its JPEGs on the GPU's engines, the others' reading and
// decoding use the rest. Measured (H200, 16 cores, 20,000 JPEGs of 500 px, batch 256): with
// nvJPEG 5,832 img/s one at a time, 10,041 two, 12,236 three, 12,173 four; on the CPU 4,548,
// 4,951, 5,687. gather() is safe to call from several threads: each GPU gather takes a decoder of
// its own from the pool (nvJPEG's state is one caller's), and the shared figures are under a mutex.
constexpr int kStreamedGathersAtOnce = 3;
// Five with nvJPEG: the loader alone gains nothing past three, but beside a training step, which
// takes the GPU and CPU time the gathers would use, five trained faster than three in each of four
// device calls (`resnet train --gpu-decode`, same call each: +1.9%, +1.6%, +3.1%, +1.8%; eight no
// better than five; docs/PERFORMANCE.md, issue 15).
constexpr int kGpuDecodeGathersAtOnce = 5;

// The default above for the decoding path, or RESNET_GATHERS_AT_ONCE (1-16) to measure others: each
// GPU gather takes an nvJPEG decoder of its own, so it also sets how many decoders run at once.
int streamed_gathers_at_once(bool gpu_decode) {
  const char* v = std::getenv("RESNET_GATHERS_AT_ONCE");
  if (!v) return gpu_decode ? kGpuDecodeGathersAtOnce : kStreamedGathersAtOnce;
  return whole_number_from_env("RESNET_GATHERS_AT_ONCE", v, 1, 16, "a whole number from 1 to 16");
}

class StreamingSource : public ImageSource {
 public:
  StreamingSource(ImageFolderIndex index, bool skip_bad, int gpu_decode_device, int64_t keep_side)
      : index_(std::move(index)), skip_bad_(skip_bad), keep_side_(keep_side),
        labels_(torch::tensor(index_.labels, torch::kLong)) {
    gathers_ = streamed_gathers_at_once(gpu_decode_device >= 0);
    if (gpu_decode_device >= 0) jpeg_settings_ = GpuJpegSettings::from_environment();
    for (int k = 0; gpu_decode_device >= 0 && k < gathers_; ++k) {
      std::string why;
      auto decoder = make_gpu_jpeg_decoder(gpu_decode_device, why, jpeg_settings_);
      if (!decoder) {  // (a second that fails leaves one, which the gathers then take in turn)
        if (k == 0) {
          log_warning("--gpu-decode: " + why + "; decoding on the CPU");
          gathers_ = streamed_gathers_at_once(false);
        }
        break;
      }
      // One backend for all (a later one may fall back to the hybrid decoder, whose pixels differ
      // more): the batches then do not depend on which decoder a gather took.
      if (k > 0 && decoder->backend() != backend_) break;
      backend_ = decoder->backend();
      decoders_note_.clear();
      if (!decoder->preallocates() && backend_ == "hardware") decoders_note_ += ", buffers not pre-allocated";
      if (!decoder->fixed_count()) decoders_note_ += ", counts not fixed";
      if (decoder->pipelined()) decoders_note_ += ", pipelined";
      if (decoder->shrinks()) decoders_note_ += ", counts shrunk";
      if (jpeg_settings_.split == GpuJpegSettings::Split::kGpu) decoders_note_ += ", every JPEG it takes";
      if (jpeg_settings_.split == GpuJpegSettings::Split::kShare) {
        char share[32];
        std::snprintf(share, sizeof share, "%g%%", 100 * jpeg_settings_.gpu_share);
        decoders_note_ += std::string(", ") + share + " of the JPEGs it takes";
      }
      idle_decoders_.push_back(std::move(decoder));
    }
  }
  int64_t size() const override { return static_cast<int64_t>(index_.files.size()); }
  const std::vector<std::string>& classes() const override { return index_.classes; }
  torch::Tensor labels() const override { return labels_; }
  DecodeStats decode_stats() const override {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
  }
  int gathers_at_once() const override { return gathers_; }
  std::string description() const override {
    return index_.dir + " (image folder, streamed" + (backend_.empty() ? "" : ", JPEGs decoded on the GPU: nvJPEG " + backend_ + decoders_note_) + ")";
  }

  RawBatch gather(const torch::Tensor& indices, const torch::Device& device, const CropPlan* plan = nullptr) override {
    const auto idx = indices.to(torch::kCPU, torch::kLong).contiguous();
    const int64_t* id = idx.data_ptr<int64_t>();
    std::vector<std::string> files;
    for (int64_t i = 0; i < idx.size(0); ++i) files.push_back(index_.files.at(static_cast<size_t>(id[i])));
    if (plan && !plan->box) plan = nullptr;
    if (!backend_.empty() && device.is_cuda()) return gather_on_gpu(files, idx, device, plan);
    return gather_on_cpu(files, idx, device, plan);
  }

 private:
  // What row `row` of a batch decodes of its file: the whole image (keep_side_'s DCT scaling
  // aside), or with a plan only what its crop needs (layout_image_region); from the header alone.
  struct Decoded {
    DecodeLayout layout;
    CropBox crop;
    ImageSize file;
  };
  Decoded lay_out(const std::vector<uint8_t>& bytes, const std::string& path, int64_t row, const CropPlan* plan) const {
    Decoded d;
    if (!plan) {
      d.layout = layout_image(bytes, path, keep_side_);
      return d;
    }
    d.file = read_image_size(bytes, path);
    d.crop = plan->box(row, d.file.height, d.file.width);
    d.layout = layout_image_region(bytes, path, d.file, {d.crop.top, d.crop.left, d.crop.height, d.crop.width},
                                   plan->output_size);
    return d;
  }

  // A batch of `rows` images of up to height x width: uint8 [rows, 3, height, width] in channels-last
  // order (each image's rows as libjpeg writes them), pinned where it goes to a GPU.
  static torch::Tensor batch_block(int64_t rows, int64_t height, int64_t width, bool pinned) {
    return torch::empty({rows, 3, height, width}, torch::TensorOptions()
                                                      .dtype(torch::kUInt8)
                                                      .pinned_memory(pinned)
                                                      .memory_format(torch::MemoryFormat::ChannelsLast));
  }

  // Rows `which` decoded on all cores, each straight into its slot of `block` (batch_block's, room
  // for each layout), the slot's padding zeroed; errors[i] says why row i did not decode.
  static void decode_into_slots(const std::vector<int64_t>& which, const std::vector<int64_t>& slot,
                                const std::vector<std::vector<uint8_t>>& bytes, const std::vector<std::string>& files,
                                const std::vector<Decoded>& decoded, torch::Tensor& block, std::vector<std::string>& errors) {
    const int64_t height = block.size(2), width = block.size(3);
    uint8_t* base = block.data_ptr<uint8_t>();
    each_on_all_cores(which, errors, [&](int64_t i) {
      const DecodeLayout& layout = decoded[i].layout;
      const PixelRows dst{base + slot[i] * height * width * 3, width * 3};
      decode_into(bytes[i], files[i], layout, dst);
      if (layout.width < width)  // zeros beyond the image (RawBatch's promise)
        for (int64_t y = 0; y < layout.height; ++y)
          std::memset(dst.data + y * dst.row + layout.width * 3, 0, static_cast<size_t>(width - layout.width) * 3);
      std::memset(dst.data + layout.height * dst.row, 0, static_cast<size_t>((height - layout.height) * dst.row));
    });
  }

  // With a plan: RawBatch's regions, crops and file sizes of the rows kept.
  static void attach_regions(RawBatch& batch, const std::vector<Decoded>& decoded, const std::vector<int64_t>& keep) {
    const auto n = static_cast<int64_t>(keep.size());
    batch.regions = torch::empty({n, 3}, torch::kDouble);
    batch.crops = torch::empty({n, 4}, torch::kLong);
    batch.file_sizes = torch::empty({n, 2}, torch::kLong);
    auto* r = batch.regions.data_ptr<double>();
    auto* c = batch.crops.data_ptr<int64_t>();
    auto* f = batch.file_sizes.data_ptr<int64_t>();
    for (int64_t b = 0; b < n; ++b) {
      const Decoded& d = decoded[static_cast<size_t>(keep[static_cast<size_t>(b)])];
      r[3 * b] = d.layout.top, r[3 * b + 1] = d.layout.left, r[3 * b + 2] = d.layout.scale;
      c[4 * b] = d.crop.top, c[4 * b + 1] = d.crop.left, c[4 * b + 2] = d.crop.height, c[4 * b + 3] = d.crop.width;
      f[2 * b] = d.file.height, f[2 * b + 1] = d.file.width;
    }
  }

  // The image sizes of the rows kept, int64 [K, 2].
  static torch::Tensor sizes_of(const std::vector<Decoded>& decoded, const std::vector<int64_t>& keep) {
    auto sizes = torch::empty({static_cast<int64_t>(keep.size()), 2}, torch::kLong);
    auto* hw = sizes.data_ptr<int64_t>();
    for (size_t b = 0; b < keep.size(); ++b)
      hw[2 * b] = decoded[static_cast<size_t>(keep[b])].layout.height, hw[2 * b + 1] = decoded[static_cast<size_t>(keep[b])].layout.width;
    return sizes;
  }

  // Files read and their headers laid out on all cores, then each decoded straight into its slot
  // of one pinned batch (no copy after: the cores' work is the whole of it).
  RawBatch gather_on_cpu(const std::vector<std::string>& files, const torch::Tensor& idx, const torch::Device& device,
                         const CropPlan* plan) {
    const auto n = static_cast<int64_t>(files.size());
    std::vector<std::string> errors(files.size());
    std::vector<std::vector<uint8_t>> bytes(files.size());
    std::vector<Decoded> decoded(files.size());
    each_on_all_cores(all_of(files.size()), errors, [&](int64_t i) {
      bytes[i] = read_file_bytes(files[i]);
      decoded[i] = lay_out(bytes[i], files[i], i, plan);
    });
    std::vector<int64_t> slot(files.size(), -1), laid_out;
    int64_t max_h = 0, max_w = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (!errors[i].empty()) continue;
      slot[i] = static_cast<int64_t>(laid_out.size());
      laid_out.push_back(i);
      max_h = std::max(max_h, decoded[i].layout.height), max_w = std::max(max_w, decoded[i].layout.width);
    }
    // Pinned host memory lets the copy to the GPU run beside the compute of the previous batch.
    auto host = batch_block(static_cast<int64_t>(laid_out.size()), max_h, max_w, device.is_cuda());
    if (!laid_out.empty()) decode_into_slots(laid_out, slot, bytes, files, decoded, host, errors);
    const std::vector<int64_t> keep = kept(errors);
    if (keep.size() < laid_out.size()) {  // --skip-bad-images: the slots of files that failed to decode dropped
      std::vector<int64_t> slots;
      for (int64_t i : keep) slots.push_back(slot[i]);
      host = host.index_select(0, torch::tensor(slots, torch::kLong));
      if (device.is_cuda()) host = host.pin_memory();
    }
    RawBatch batch{to_device_beside_compute(host, device), sizes_of(decoded, keep),
                   to_device_beside_compute(labels_of(idx, keep), device)};
    if (plan) attach_regions(batch, decoded, keep);
    return batch;
  }

  // The positions of the files that decoded; the others' errors thrown, or with --skip-bad-images warned of.
  std::vector<int64_t> kept(const std::vector<std::string>& errors) const {
    std::vector<int64_t> keep;
    for (size_t i = 0; i < errors.size(); ++i) {
      if (errors[i].empty()) {
        keep.push_back(static_cast<int64_t>(i));
      } else if (!skip_bad_) {
        throw InputError(errors[i] + " (or pass --skip-bad-images to leave such files out)");
      } else {
        log_warning("skipping " + errors[i]);
      }
    }
    if (keep.empty()) throw InputError(index_.dir + ": no image of a batch could be decoded");
    return keep;
  }

  // `idx` as gather() made it: int64, contiguous, on the CPU. (Through raw pointers: a tensor's
  // element access costs microseconds, a batch's 256 of them a millisecond or more.)
  torch::Tensor labels_of(const torch::Tensor& idx, const std::vector<int64_t>& keep) const {
    const int64_t* id = idx.data_ptr<int64_t>();
    auto labels = torch::empty({static_cast<int64_t>(keep.size())}, torch::kLong);
    int64_t* label = labels.data_ptr<int64_t>();
    for (size_t b = 0; b < keep.size(); ++b) label[b] = index_.labels.at(static_cast<size_t>(id[keep[b]]));
    return labels;
  }

  // Files read on all cores. The JPEGs the GPU decoder takes are decoded by it straight into the
  // padded batch on the GPU while the CPU's cores, at the same time, decode the rest (PNG, grey,
  // CMYK, what the hardware engines refuse) and a share of those JPEGs sized so that both sides
  // finish together (jpegs_for_the_cpu, at the rates measured on earlier batches); the CPU's
  // images then go up in one copy from pinned memory. A batch nvJPEG refuses is gathered again on
  // the CPU.
  RawBatch gather_on_gpu(const std::vector<std::string>& files, const torch::Tensor& idx, const torch::Device& device,
                         const CropPlan* plan) {
#ifdef RESNET_WITH_CUDA
    const auto n = static_cast<int64_t>(files.size());
    const auto read_start = Clock::now();
    std::vector<std::vector<uint8_t>> bytes(files.size());
    std::vector<std::string> errors(files.size());
    each_on_all_cores(all_of(files.size()), errors, [&](int64_t i) { bytes[i] = read_file_bytes(files[i]); });
    const double read_s = seconds_since(read_start);
    std::optional<DecoderLease> lease;
    lease.emplace(*this);
    GpuJpegDecoder* const decoder = lease->decoder.get();
    const auto headers_start = Clock::now();
    std::vector<ImageSize> size(files.size());
    std::vector<int64_t> on_gpu, on_cpu;
    for (int64_t i = 0; i < n; ++i) {  // headers: cheap, and the decoder's parse state is one
      if (!errors[i].empty()) continue;
      try {
        // (one the CPU would decode smaller goes there: nvJPEG decodes only whole)
        if (decoder->accepts(bytes[i], size[i].height, size[i].width) &&
            (max_image_pixels() == 0 || size[i].height * size[i].width <= max_image_pixels()) &&
            jpeg_eighths(size[i], keep_side_) == 8) {
          on_gpu.push_back(i);
        } else {
          // (with a plan, the region decoded is at most the file's size: room enough)
          size[i] = plan ? read_image_size(bytes[i], files[i]) : decoded_size(bytes[i], files[i], keep_side_);
          on_cpu.push_back(i);
        }
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    }
    const double headers_s = seconds_since(headers_start);
    // The CPU's share of the GPU's JPEGs (none where RESNET_NVJPEG_SPLIT=gpu, the rest of a share
    // it names): the last ones (the batch is in shuffled order). The decoder keeps the count it is
    // set up for where that is within 1/16 of the batch of the split's (setting nvJPEG up again
    // frees and allocates its buffers).
    double cpu_rate = 0, gpu_rate = 0;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      cpu_rate = cpu_rate_, gpu_rate = gpu_rate_;
    }
    const int64_t moved =
        jpegs_moved_to_the_cpu(jpeg_settings_, static_cast<int64_t>(on_gpu.size()), static_cast<int64_t>(on_cpu.size()), cpu_rate,
                               gpu_rate, decoder->prepared_for(), std::max<int64_t>(4, n / 16));
    on_cpu.insert(on_cpu.end(), on_gpu.end() - moved, on_gpu.end());
    on_gpu.resize(on_gpu.size() - static_cast<size_t>(moved));
    // A slot in the batch for each file read; one that then fails to decode loses it at the end.
    std::vector<int64_t> slot(files.size(), -1);
    int64_t b = 0, max_h = 0, max_w = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (!errors[i].empty()) continue;
      slot[i] = b++;
      max_h = std::max(max_h, size[i].height), max_w = std::max(max_w, size[i].width);
    }
    // The GPU's rows, whole; with a plan their crops are drawn here (the transform cuts them).
    std::vector<Decoded> decoded(files.size());
    if (plan)
      for (int64_t i : on_gpu) {
        decoded[i].file = size[i];
        decoded[i].crop = plan->box(i, size[i].height, size[i].width);
      }
    // The CPU's part on a thread of its own (its decodes on all cores), into one pinned block;
    // errors[i] and decoded[i] of its files are written there, and read here only after get().
    double cpu_s = 0;
    auto cpu_part = std::async(std::launch::async, [&] {
      name_this_thread("gather-cpu");
      const auto start = Clock::now();
      each_on_all_cores(on_cpu, errors, [&](int64_t i) {
        decoded[i] = lay_out(bytes[i], files[i], i, plan);
        const DecodeLayout& layout = decoded[i].layout;
        // (the JPEGs moved from the GPU's share have nvJPEG's reading of their header as size[i],
        // which sized the batch: a file libjpeg reads otherwise is refused, not written past its slot)
        if (layout.height > size[i].height || layout.width > size[i].width ||
            (!plan && (layout.height != size[i].height || layout.width != size[i].width)))
          throw InputError(files[i] + ": decodes to " + std::to_string(layout.width) + " x " +
                           std::to_string(layout.height) + " pixels, not the header's " + std::to_string(size[i].width) +
                           " x " + std::to_string(size[i].height));
      });
      std::vector<int64_t> laid_out, cpu_slot(files.size(), -1);
      int64_t h = 0, w = 0;
      for (size_t k = 0; k < on_cpu.size(); ++k) {  // the block's row k is on_cpu[k]'s (unused where it failed)
        const int64_t i = on_cpu[k];
        cpu_slot[i] = static_cast<int64_t>(k);
        if (!errors[i].empty()) continue;
        laid_out.push_back(i);
        h = std::max(h, decoded[i].layout.height), w = std::max(w, decoded[i].layout.width);
      }
      auto block = batch_block(static_cast<int64_t>(on_cpu.size()), h, w, /*pinned=*/true);
      if (!laid_out.empty()) decode_into_slots(laid_out, cpu_slot, bytes, files, decoded, block, errors);
      for (int64_t i : laid_out)  // a region's own size (read here only after get())
        size[i] = {decoded[i].layout.height, decoded[i].layout.width};
      cpu_s = seconds_since(start);
      return block;
    });
    // A high-priority stream: beside training the step's kernels fill the GPU, and this gather's
    // small kernels (the zeros, the decoder's, the CPU rows' copy into the batch; the uploads
    // themselves use the copy engines, which priorities do not order) would otherwise queue behind
    // its blocks, one after another, while the step needs this batch next anyway. (The suspected
    // reason why the loader gave 10,300 img/s alone but about 6,500 beside training on an H200,
    // 2026-12-01; to be measured.)
    auto side = c10::cuda::getStreamFromPool(/*isHighPriority=*/true, device.index());
    torch::Tensor images;
    std::string refused;
    double gpu_s = 0, zeros_s = 0;
    int64_t gpu_setups = 0;
    {
      c10::cuda::CUDAStreamGuard guard(side);
      const auto zeros_start = Clock::now();
      images = torch::zeros({b, 3, max_h, max_w}, torch::TensorOptions().dtype(torch::kUInt8).device(device));
      // nvJPEG's hardware path has been seen to write without waiting for work queued before it
      // on its stream (torchvision and torchcodec work round it the same way): the zeros first.
      wait_for(side);
      zeros_s = seconds_since(zeros_start);
      std::vector<const std::vector<uint8_t>*> gpu_files;
      std::vector<int64_t> gpu_slots;
      for (int64_t i : on_gpu) gpu_files.push_back(&bytes[i]), gpu_slots.push_back(slot[i]);
      const auto start = Clock::now();
      const int64_t setups = decoder->setups();
      if (!gpu_files.empty()) refused = decoder->decode(gpu_files, gpu_slots, images, side.stream());
      gpu_s = seconds_since(start);
      gpu_setups = decoder->setups() - setups;
    }
    lease.reset();  // (decode() waited for its stream: the decoder is another gather's from here)
    const auto cpu_wait_start = Clock::now();
    const torch::Tensor block = cpu_part.get();
    const double cpu_wait_s = seconds_since(cpu_wait_start);
    if (!refused.empty()) {
      if (++batches_refused_ == 1)
        log_warning("nvJPEG refused a batch of " + index_.dir + " (" + refused + "); such batches are decoded on the CPU");
      return gather_on_cpu(files, idx, device, plan);
    }
    const std::vector<int64_t> keep = kept(errors);
    const auto upload_start = Clock::now();
    torch::Tensor labels;
    {
      c10::cuda::CUDAStreamGuard guard(side);
      // (the labels too, from pinned memory on this stream, under the one wait below)
      labels = upload(labels_of(idx, keep), device);
      if (block.numel() > 0) {
        // The CPU's rows into their slots in one copy (each row is zero beyond its image, as the
        // slot is): the block's row k is on_cpu[k]'s.
        std::vector<int64_t> rows, slots;
        for (size_t k = 0; k < on_cpu.size(); ++k)
          if (errors[on_cpu[k]].empty()) rows.push_back(static_cast<int64_t>(k)), slots.push_back(slot[on_cpu[k]]);
        if (!rows.empty()) {
          auto up = block.to(device, /*non_blocking=*/true);
          if (rows.size() < on_cpu.size()) up = up.index_select(0, pinned_index(rows, device));
          images.narrow(2, 0, up.size(2)).narrow(3, 0, up.size(3)).index_copy_(0, pinned_index(slots, device), up);
        }
      }
      if (static_cast<int64_t>(keep.size()) < b) {  // --skip-bad-images: the slots of files that failed dropped
        std::vector<int64_t> slots;
        for (int64_t i : keep) slots.push_back(slot[i]);
        images = images.index_select(0, pinned_index(slots, device));
      }
      wait_for(side);
    }
    const double upload_s = seconds_since(upload_start);
    for (const torch::Tensor* used : {&images, &labels})  // (read on the model's stream from here)
      c10::cuda::CUDACachingAllocator::recordStream(used->storage().data_ptr(),
                                                    c10::cuda::getDefaultCUDAStream(device.index()));
    const DecodeStats took{static_cast<int64_t>(on_gpu.size()),
                           static_cast<int64_t>(on_cpu.size()),
                           gpu_s,
                           cpu_s,
                           read_s,
                           headers_s,
                           gpu_setups,
                           zeros_s,
                           cpu_wait_s,
                           upload_s};
    note_rates(took);
    auto sizes = torch::empty({static_cast<int64_t>(keep.size()), 2}, torch::kLong);
    int64_t* hw = sizes.data_ptr<int64_t>();
    for (size_t s = 0; s < keep.size(); ++s) hw[2 * s] = size[keep[s]].height, hw[2 * s + 1] = size[keep[s]].width;
    RawBatch batch{images, sizes, labels};
    if (plan) attach_regions(batch, decoded, keep);
    batch.decode = took;
    return batch;
#else
    (void)device;
    return gather_on_cpu(files, idx, torch::kCPU, plan);
#endif
  }

  // Each side's images a second, smoothed over batches (0: not measured yet), for the next
  // batch's split; and the totals data_bench reports. (The GPU's rate counts the batch's images,
  // not the fillers of a fixed count: counting those too gave the GPU a larger share, whose larger
  // images took longer, 1,197 img/s beside the training step against 2,600; H200, 2026-12-02.)
  void note_rates(const DecodeStats& took) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto smooth = [](double& rate, double now) { rate = rate > 0 ? 0.7 * rate + 0.3 * now : now; };
    if (took.gpu_images > 0 && took.gpu_s > 0) smooth(gpu_rate_, static_cast<double>(took.gpu_images) / took.gpu_s);
    if (took.cpu_images > 0 && took.cpu_s > 0) smooth(cpu_rate_, static_cast<double>(took.cpu_images) / took.cpu_s);
    stats_ += took;
  }

  // A decoder from the pool for one gather, back in the pool at the end (waiting for one while
  // all are out).
  struct DecoderLease {
    explicit DecoderLease(StreamingSource& source) : source(source) {
      std::unique_lock<std::mutex> lock(source.mutex_);
      source.decoder_free_.wait(lock, [&] { return !source.idle_decoders_.empty(); });
      decoder = std::move(source.idle_decoders_.back());
      source.idle_decoders_.pop_back();
    }
    ~DecoderLease() {
      {
        std::lock_guard<std::mutex> lock(source.mutex_);
        source.idle_decoders_.push_back(std::move(decoder));
      }
      source.decoder_free_.notify_one();
    }
    DecoderLease(const DecoderLease&) = delete;
    DecoderLease& operator=(const DecoderLease&) = delete;
    StreamingSource& source;
    std::unique_ptr<GpuJpegDecoder> decoder;
  };

  ImageFolderIndex index_;
  bool skip_bad_;
  int64_t keep_side_;
  int gathers_ = 1;  // (the constructor sets it)
  GpuJpegSettings jpeg_settings_;  // --gpu-decode's, from the environment (RESNET_NVJPEG_*), read once
  torch::Tensor labels_;
  std::string backend_;  // --gpu-decode's nvJPEG backend, where it started ("": the CPU decodes)
  std::string decoders_note_;  // for the description: how the decoders differ from the defaults
  std::atomic<int64_t> batches_refused_{0};
  mutable std::mutex mutex_;  // guards what follows
  std::condition_variable decoder_free_;
  std::vector<std::unique_ptr<GpuJpegDecoder>> idle_decoders_;  // --gpu-decode's, not in use
  double gpu_rate_ = 0, cpu_rate_ = 0;
  DecodeStats stats_;
};

}  // namespace

std::string find_image_folder_split(const std::string& root, Split split) {
  const std::vector<std::string> names =
      split == Split::kTrain ? std::vector<std::string>{"train"} : std::vector<std::string>{"test", "val"};
  for (const auto& name : names)
    if (fs::is_directory(fs::path(root) / name)) return (fs::path(root) / name).string();
  return "";
}

ImageFolderIndex index_image_folder(const std::string& split_dir) {
  ImageFolderIndex index;
  index.dir = split_dir;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(split_dir, ec))
    if (entry.is_directory()) index.classes.push_back(entry.path().filename().string());
  if (ec) throw InputError(split_dir + ": cannot list: " + ec.message());
  if (index.classes.empty())
    throw InputError(split_dir + ": holds no class folders (expected " + split_dir + "/<class>/<image>.jpg)");
  std::sort(index.classes.begin(), index.classes.end());
  for (size_t c = 0; c < index.classes.size(); ++c) {
    const fs::path class_dir = fs::path(split_dir) / index.classes[c];
    std::vector<std::string> files;
    for (const auto& entry : fs::recursive_directory_iterator(class_dir, ec))
      if (entry.is_regular_file() && is_image_name(entry.path())) files.push_back(entry.path().string());
    if (ec) throw InputError(class_dir.string() + ": cannot list: " + ec.message());
    if (files.empty())
      throw InputError(class_dir.string() + ": class folder holds no images (.jpg, .jpeg, .png); "
                       "remove it or add images, as the class list comes from the folder names");
    std::sort(files.begin(), files.end());
    for (auto& f : files) {
      index.files.push_back(std::move(f));
      index.labels.push_back(static_cast<int64_t>(c));
    }
  }
  return index;
}

DecodeResult decode_image_folder(const ImageFolderIndex& index, bool skip_bad_images) {
  std::vector<std::string> errors;
  std::vector<torch::Tensor> images = decode_all(index.files, errors);
  DecodeResult result;
  result.data.classes = index.classes;
  std::vector<torch::Tensor> kept;
  std::vector<int64_t> labels;
  for (size_t i = 0; i < images.size(); ++i) {
    if (!errors[i].empty()) {
      if (!skip_bad_images) throw InputError(errors[i] + " (or pass --skip-bad-images to leave such files out)");
      result.skipped.push_back(errors[i]);
      continue;
    }
    if (!kept.empty() && images[i].sizes() != kept.front().sizes()) result.uniform = false;
    kept.push_back(images[i]);
    labels.push_back(index.labels[i]);
  }
  if (kept.empty()) throw InputError(index.dir + ": none of its " + std::to_string(images.size()) + " images could be decoded");
  result.data.labels = torch::tensor(labels, torch::kLong);
  if (result.uniform) result.data.images = torch::stack(kept);
  return result;
}

std::shared_ptr<ImageSource> streaming_source(ImageFolderIndex index, bool skip_bad_images, int gpu_decode_device,
                                              int64_t keep_side) {
  return std::make_shared<StreamingSource>(std::move(index), skip_bad_images, gpu_decode_device, keep_side);
}

}  // namespace resnet
