#include "data/image_folder.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <filesystem>

#include "core/error.h"
#include "core/log.h"
#include "data/decode.h"
#include "data/gpu_jpeg.h"

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

// job(i) for each i of `which` on all cores; errors[i] holds the message of what job(i) threw.
template <typename Job>
void each_on_all_cores(const std::vector<int64_t>& which, std::vector<std::string>& errors, Job&& job) {
  at::parallel_for(0, static_cast<int64_t>(which.size()), /*grain_size=*/4, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      try {
        job(which[k]);
      } catch (const std::exception& e) {
        errors[which[k]] = e.what();
      }
    }
  });
}

std::vector<int64_t> all_of(size_t n) {
  std::vector<int64_t> all(n);
  for (size_t i = 0; i < n; ++i) all[i] = static_cast<int64_t>(i);
  return all;
}

// Decodes every file on all cores (decode_image's keep_side); errors[i] holds the message of a failure.
std::vector<torch::Tensor> decode_all(const std::vector<std::string>& files, std::vector<std::string>& errors,
                                      int64_t keep_side = 0) {
  std::vector<torch::Tensor> images(files.size());
  errors.assign(files.size(), "");
  each_on_all_cores(all_of(files.size()), errors, [&](int64_t i) { images[i] = decode_image_file(files[i], keep_side); });
  return images;
}

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
    side.synchronize();
    // The batch is used on the model's stream: tell the allocator, so that its memory is not
    // handed to the side stream's next copy while the model still reads it.
    c10::cuda::CUDACachingAllocator::recordStream(out.storage().data_ptr(),
                                                  c10::cuda::getDefaultCUDAStream(device.index()));
    return out;
  }
#endif
  return host.to(device);
}

class StreamingSource : public ImageSource {
 public:
  StreamingSource(ImageFolderIndex index, bool skip_bad, int gpu_decode_device, int64_t keep_side)
      : index_(std::move(index)), skip_bad_(skip_bad), keep_side_(keep_side),
        labels_(torch::tensor(index_.labels, torch::kLong)) {
    if (gpu_decode_device >= 0) {
      std::string why;
      decoder_ = make_gpu_jpeg_decoder(gpu_decode_device, why);
      if (!decoder_) log_warning("--gpu-decode: " + why + "; decoding on the CPU");
    }
  }
  int64_t size() const override { return static_cast<int64_t>(index_.files.size()); }
  const std::vector<std::string>& classes() const override { return index_.classes; }
  torch::Tensor labels() const override { return labels_; }
  std::string description() const override {
    return index_.dir + " (image folder, streamed" + (decoder_ ? ", JPEGs decoded on the GPU: nvJPEG " + decoder_->backend() : "") + ")";
  }

  RawBatch gather(const torch::Tensor& indices, const torch::Device& device) override {
    const auto idx = indices.to(torch::kCPU, torch::kLong).contiguous();
    std::vector<std::string> files;
    for (int64_t i = 0; i < idx.size(0); ++i) files.push_back(index_.files.at(idx[i].item<int64_t>()));
    if (decoder_ && device.is_cuda()) return gather_on_gpu(files, idx, device);
    return gather_on_cpu(files, idx, device);
  }

 private:
  RawBatch gather_on_cpu(const std::vector<std::string>& files, const torch::Tensor& idx, const torch::Device& device) {
    std::vector<std::string> errors;
    std::vector<torch::Tensor> images = decode_all(files, errors, keep_side_);
    const std::vector<int64_t> keep = kept(errors);
    int64_t max_h = 0, max_w = 0;
    for (int64_t k : keep) {
      max_h = std::max(max_h, images[k].size(1));
      max_w = std::max(max_w, images[k].size(2));
    }
    const auto n = static_cast<int64_t>(keep.size());
    // Pinned host memory lets the copy to the GPU run beside the compute of the previous batch.
    auto host = torch::zeros({n, 3, max_h, max_w},
                             torch::TensorOptions().dtype(torch::kUInt8).pinned_memory(device.is_cuda()));
    auto sizes = torch::empty({n, 2}, torch::kLong);
    using torch::indexing::Slice;
    for (int64_t b = 0; b < n; ++b) {
      const auto& img = images[keep[b]];
      host[b].index({Slice(), Slice(0, img.size(1)), Slice(0, img.size(2))}).copy_(img);
      sizes[b][0] = img.size(1);
      sizes[b][1] = img.size(2);
    }
    return {to_device_beside_compute(host, device), sizes, to_device_beside_compute(labels_of(idx, keep), device)};
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

  torch::Tensor labels_of(const torch::Tensor& idx, const std::vector<int64_t>& keep) const {
    auto labels = torch::empty({static_cast<int64_t>(keep.size())}, torch::kLong);
    for (size_t b = 0; b < keep.size(); ++b) labels[static_cast<int64_t>(b)] = index_.labels[idx[keep[b]].item<int64_t>()];
    return labels;
  }

  // Files read on all cores; the JPEGs nvJPEG takes decoded by it straight into the padded batch on
  // the GPU, the rest (PNG, grey, CMYK, and what the hardware engines refuse) on the CPU and
  // copied in. A batch nvJPEG refuses is gathered again on the CPU.
  RawBatch gather_on_gpu(const std::vector<std::string>& files, const torch::Tensor& idx, const torch::Device& device) {
#ifdef RESNET_WITH_CUDA
    const auto n = static_cast<int64_t>(files.size());
    std::vector<std::vector<uint8_t>> bytes(files.size());
    std::vector<std::string> errors(files.size());
    each_on_all_cores(all_of(files.size()), errors, [&](int64_t i) { bytes[i] = read_file_bytes(files[i]); });
    std::vector<ImageSize> size(files.size());
    std::vector<uint8_t> on_gpu(files.size(), 0);
    std::vector<int64_t> rest;
    for (int64_t i = 0; i < n; ++i) {  // headers: cheap, and the decoder's parse state is one
      if (!errors[i].empty()) continue;
      // (one the CPU would decode smaller goes there: nvJPEG decodes only whole)
      if (decoder_->accepts(bytes[i], size[i].height, size[i].width) &&
          (max_image_pixels() == 0 || size[i].height * size[i].width <= max_image_pixels()) &&
          jpeg_eighths(size[i], keep_side_) == 8)
        on_gpu[i] = 1;
      else
        rest.push_back(i);
    }
    std::vector<torch::Tensor> cpu(files.size());
    each_on_all_cores(rest, errors, [&](int64_t i) {
      cpu[i] = decode_image(bytes[i], files[i], keep_side_);
      size[i] = {cpu[i].size(1), cpu[i].size(2)};
    });
    const std::vector<int64_t> keep = kept(errors);
    int64_t max_h = 0, max_w = 0;
    for (int64_t k : keep) {
      max_h = std::max(max_h, size[k].height);
      max_w = std::max(max_w, size[k].width);
    }
    const auto b = static_cast<int64_t>(keep.size());
    auto side = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index());
    torch::Tensor images;
    {
      c10::cuda::CUDAStreamGuard guard(side);
      images = torch::zeros({b, 3, max_h, max_w}, torch::TensorOptions().dtype(torch::kUInt8).device(device));
      // nvJPEG's hardware path has been seen to write without waiting for work queued before it
      // on its stream (torchvision and torchcodec work round it the same way): the zeros first.
      side.synchronize();
      std::vector<const std::vector<uint8_t>*> gpu_files;
      std::vector<int64_t> slots;
      for (int64_t s = 0; s < b; ++s)
        if (on_gpu[keep[s]]) gpu_files.push_back(&bytes[keep[s]]), slots.push_back(s);
      const std::string refused = decoder_->decode(gpu_files, slots, images, side.stream());
      if (!refused.empty()) {
        if (decoder_->batches_refused() == 1)
          log_warning("nvJPEG refused a batch of " + index_.dir + " (" + refused + "); such batches are decoded on the CPU");
        return gather_on_cpu(files, idx, device);
      }
      using torch::indexing::Slice;
      for (int64_t s = 0; s < b; ++s) {
        const int64_t i = keep[s];
        if (!on_gpu[i]) images[s].index({Slice(), Slice(0, size[i].height), Slice(0, size[i].width)}).copy_(cpu[i].to(device));
      }
      side.synchronize();
    }
    c10::cuda::CUDACachingAllocator::recordStream(images.storage().data_ptr(),
                                                  c10::cuda::getDefaultCUDAStream(device.index()));
    auto sizes = torch::empty({b, 2}, torch::kLong);
    for (int64_t s = 0; s < b; ++s) {
      sizes[s][0] = size[keep[s]].height;
      sizes[s][1] = size[keep[s]].width;
    }
    return {images, sizes, to_device_beside_compute(labels_of(idx, keep), device)};
#else
    (void)device;
    return gather_on_cpu(files, idx, torch::kCPU);
#endif
  }

  ImageFolderIndex index_;
  bool skip_bad_;
  int64_t keep_side_;
  torch::Tensor labels_;
  std::unique_ptr<GpuJpegDecoder> decoder_;  // --gpu-decode's, where it started
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
