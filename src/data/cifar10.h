// The CIFAR-10 binary release (`cifar-10-batches-bin`): data_batch_1..5.bin (train) and
// test_batch.bin, each a run of 3,073-byte records (1 label byte, then 1,024 red, 1,024 green
// and 1,024 blue bytes of a 32x32 image, row by row), and batches.meta.txt with one class name
// per line. A whole split becomes one uint8 tensor [N, 3, 32, 32] and int64 labels [N].
//
// Errors name the file and what was found: a missing file, a size that is not a whole number of
// records, a label outside 0..9.
#pragma once

#include <string>

#include "data/dataset.h"

namespace resnet {

constexpr int64_t kCifarSide = 32;
constexpr int64_t kCifarClasses = 10;
constexpr int64_t kCifarRecordBytes = 1 + 3 * kCifarSide * kCifarSide;
static_assert(kCifarRecordBytes == 3073, "a CIFAR-10 record is a label byte and 32x32x3 pixels");

// The folder holding the .bin files, if `path` is one or holds `cifar-10-batches-bin/`; else "".
std::string find_cifar10_binary(const std::string& path);

LabeledImages read_cifar10(const std::string& dir, Split split);

}  // namespace resnet
