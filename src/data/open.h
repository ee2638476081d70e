// Opening a split of a data set from the user's `--data PATH`, whatever it holds:
//   * CIFAR-10 binary (PATH or PATH/cifar-10-batches-bin holds the .bin files): read whole.
//   * An image folder (PATH/train/<class>/..., PATH/test|val/<class>/...).
//
// Memory rule for image folders: the images are decoded once into memory when the headers of a
// sample of up to 64 files (spread over the split) all give one size H x W and
// N x 3 x H x W bytes is at most `memory_limit_mib`; otherwise (mixed sizes such as ImageNet,
// or too large) each batch is decoded when needed, with `prefetch` batches in flight, so memory
// stays at about (prefetch + 1) x batch x 3 x (largest H x W) bytes. In-memory pixels move to
// the GPU when the device is CUDA and they take at most `gpu_limit_mib`.
#pragma once

#include <memory>
#include <string>

#include "data/dataset.h"

namespace resnet {

struct DataOptions {
  bool skip_bad_images = false;
  bool gpu_decode = false;  // streamed folders: JPEGs decoded with nvJPEG where it runs (data/gpu_jpeg.h)
  // Streamed folders: JPEGs whose shorter side is larger decode smaller in the DCT domain (data/decode.h),
  // keeping at least this; 0: whole. Train sets kDecodeKeepSides x the input size for its training split.
  int64_t decode_keep_side = 0;
  int64_t memory_limit_mib = 8192;
  int64_t gpu_limit_mib = 4096;
};

enum class DataFormat { kNone, kCifar10Binary, kImageFolder };

// A training crop of RandomResizedCrop's smallest share (0.08 of the area, aspect 3/4) of an image
// whose shorter side is 3 x the input size still has about the input's size: larger gains nothing.
constexpr int64_t kDecodeKeepSides = 3;

DataFormat detect_format(const std::string& path);

// InputError when `path` holds neither format, naming what was looked for.
std::shared_ptr<ImageSource> open_split(const std::string& path, Split split, const torch::Device& device,
                                        const DataOptions& options = {});

}  // namespace resnet
