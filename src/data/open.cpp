#include "data/open.h"

#include <filesystem>

#include "core/error.h"
#include "core/log.h"
#include "data/cifar10.h"
#include "data/decode.h"
#include "data/image_folder.h"

namespace resnet {
namespace {

constexpr int64_t kSizeSample = 64;  // headers read to guess the decoded size of a folder
constexpr int64_t kMiB = 1024 * 1024;

torch::Device pixel_home(const LabeledImages& data, const torch::Device& device, const DataOptions& options) {
  const int64_t bytes = data.images.numel();
  return device.is_cuda() && bytes <= options.gpu_limit_mib * kMiB ? device : torch::Device(torch::kCPU);
}

bool fits_in_memory(const ImageFolderIndex& index, const DataOptions& options) {
  const auto n = static_cast<int64_t>(index.files.size());
  const int64_t step = std::max<int64_t>(1, n / kSizeSample);
  ImageSize first{-1, -1};
  for (int64_t i = 0; i < n; i += step) {
    ImageSize s;
    try {
      s = read_image_size(read_file_bytes(index.files[i]), index.files[i]);
    } catch (const InputError&) {
      continue;  // reported when it is decoded
    }
    if (first.height < 0) first = s;
    if (s.height != first.height || s.width != first.width) return false;
  }
  return first.height > 0 && n * 3 * first.height * first.width <= options.memory_limit_mib * kMiB;
}

}  // namespace

DataFormat detect_format(const std::string& path) {
  if (!find_cifar10_binary(path).empty()) return DataFormat::kCifar10Binary;
  if (!find_image_folder_split(path, Split::kTrain).empty() || !find_image_folder_split(path, Split::kTest).empty())
    return DataFormat::kImageFolder;
  return DataFormat::kNone;
}

std::shared_ptr<ImageSource> open_split(const std::string& path, Split split, const torch::Device& device,
                                        const DataOptions& options) {
  if (!std::filesystem::exists(path)) throw InputError(path + ": no such folder (--data)");
  const std::string bin = find_cifar10_binary(path);
  if (!bin.empty()) {
    LabeledImages data = read_cifar10(bin, split);
    const auto home = pixel_home(data, device, options);
    return in_memory_source(std::move(data), home, bin + " (CIFAR-10 binary)");
  }
  const std::string dir = find_image_folder_split(path, split);
  if (dir.empty()) {
    if (detect_format(path) == DataFormat::kImageFolder)
      throw InputError(path + ": image folder has no " +
                       (split == Split::kTrain ? std::string("train/") : std::string("test/ or val/")) + " split");
    throw InputError(path + ": holds neither CIFAR-10 binary files (data_batch_1.bin ... test_batch.bin, "
                     "batches.meta.txt) nor an image folder (train/<class>/*.jpg, test/<class>/*.jpg)");
  }
  ImageFolderIndex index = index_image_folder(dir);
  if (fits_in_memory(index, options)) {
    DecodeResult decoded = decode_image_folder(index, options.skip_bad_images);
    if (!decoded.skipped.empty()) {
      for (const auto& why : decoded.skipped) log_warning("skipping " + why);
      log_warning(std::to_string(decoded.skipped.size()) + " of " + std::to_string(index.files.size()) + " images in " + dir +
                  " could not be decoded and were left out");
    }
    if (decoded.uniform) {
      const auto home = pixel_home(decoded.data, device, options);
      return in_memory_source(std::move(decoded.data), home, dir + " (image folder, in memory)");
    }
  }
  const int gpu = options.gpu_decode && device.is_cuda() ? (device.has_index() ? device.index() : 0) : -1;
  return streaming_source(std::move(index), options.skip_bad_images, gpu, options.decode_keep_side);
}

}  // namespace resnet
