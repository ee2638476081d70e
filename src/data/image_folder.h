// Image folders in torchvision's ImageFolder layout: `root/train/<class>/*` and
// `root/test/<class>/*` (or `root/val/<class>/*`), classes sorted by name, files ending in .jpg,
// .jpeg or .png in any case, sorted by path within a class. The ImageNet layout is the same.
//
// Two ways to serve one (the rule is open_split's, in data/open.h): decode every image once into
// memory (small images such as CIFAR-10), or stream: decode each batch's files when the loader
// asks, on all cores, with a bounded number of batches in flight.
#pragma once

#include <string>
#include <vector>

#include "data/dataset.h"

namespace resnet {

struct ImageFolderIndex {
  std::string dir;  // the split's folder
  std::vector<std::string> classes;
  std::vector<std::string> files;
  std::vector<int64_t> labels;
};

// `root/train`, or for the test split `root/test` then `root/val`; "" when there is none.
std::string find_image_folder_split(const std::string& root, Split split);

// Lists the split. InputError when it holds no class folder or a class folder holds no image.
ImageFolderIndex index_image_folder(const std::string& split_dir);

struct DecodeResult {
  LabeledImages data;                     // images empty when the sizes differ
  std::vector<std::string> skipped;       // undecodable files left out (with skip_bad_images)
  bool uniform = true;                    // all images one size
};

// Decodes every image on all cores. A file that fails: InputError naming it, or with
// `skip_bad_images`, listed in `skipped` and left out.
DecodeResult decode_image_folder(const ImageFolderIndex& index, bool skip_bad_images);

// Streams: each gather() reads and decodes its files on all cores into a padded batch.
// With `skip_bad_images`, an undecodable file is dropped from its batch with a warning. With
// `gpu_decode_device` (a CUDA device index; -1: none), batches gathered for that GPU have the JPEGs
// nvJPEG takes decoded on it (data/gpu_jpeg.h) straight into the batch, the rest on the CPU;
// where nvJPEG cannot start, all on the CPU (warned once, here). With `keep_side` > 0, JPEGs whose
// shorter side is larger are decoded smaller on the CPU (decode_image's DCT scaling), so that a
// huge photo no longer pads its whole batch to its size.
std::shared_ptr<ImageSource> streaming_source(ImageFolderIndex index, bool skip_bad_images, int gpu_decode_device = -1,
                                              int64_t keep_side = 0);

}  // namespace resnet
