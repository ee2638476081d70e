#include "data/cifar10.h"

#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "data/decode.h"

namespace resnet {
namespace fs = std::filesystem;

std::string find_cifar10_binary(const std::string& path) {
  for (const fs::path& dir : {fs::path(path), fs::path(path) / "cifar-10-batches-bin"})
    if (fs::exists(dir / "test_batch.bin") || fs::exists(dir / "data_batch_1.bin")) return dir.string();
  return "";
}

namespace {

std::vector<std::string> read_classes(const fs::path& dir) {
  const fs::path meta = dir / "batches.meta.txt";
  std::ifstream in(meta);
  if (!in) throw InputError(meta.string() + ": cannot open (the class names of CIFAR-10 binary data)");
  std::vector<std::string> classes;
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) classes.push_back(line);
  }
  if (static_cast<int64_t>(classes.size()) != kCifarClasses)
    throw InputError(meta.string() + ": expected " + std::to_string(kCifarClasses) + " class names, found " +
                     std::to_string(classes.size()));
  return classes;
}

}  // namespace

LabeledImages read_cifar10(const std::string& dir, Split split) {
  std::vector<fs::path> files;
  if (split == Split::kTrain)
    for (int i = 1; i <= 5; ++i) files.push_back(fs::path(dir) / ("data_batch_" + std::to_string(i) + ".bin"));
  else
    files.push_back(fs::path(dir) / "test_batch.bin");

  std::vector<std::vector<uint8_t>> contents;
  int64_t records = 0;
  for (const auto& file : files) {
    if (!fs::exists(file))
      throw InputError(file.string() + ": missing (CIFAR-10 binary " + split_name(split) + " split; run `resnet data`)");
    contents.push_back(read_file_bytes(file.string()));
    const auto bytes = static_cast<int64_t>(contents.back().size());
    if (bytes == 0 || bytes % kCifarRecordBytes != 0)
      throw InputError(file.string() + ": " + std::to_string(bytes) +
                       " bytes is not a whole number of 3,073-byte CIFAR-10 records (1 label byte + 3,072 pixel bytes)");
    records += bytes / kCifarRecordBytes;
  }

  LabeledImages out;
  out.classes = read_classes(dir);
  out.images = torch::empty({records, 3, kCifarSide, kCifarSide}, torch::kUInt8);
  out.labels = torch::empty({records}, torch::kLong);
  uint8_t* pixels = out.images.data_ptr<uint8_t>();
  int64_t* labels = out.labels.data_ptr<int64_t>();
  int64_t n = 0;
  for (size_t f = 0; f < files.size(); ++f) {
    const auto& bytes = contents[f];
    for (size_t offset = 0; offset < bytes.size(); offset += kCifarRecordBytes, ++n) {
      const uint8_t label = bytes[offset];
      if (label >= kCifarClasses)
        throw InputError(files[f].string() + ": record " + std::to_string(offset / kCifarRecordBytes) +
                         " has label " + std::to_string(label) + "; CIFAR-10 labels are 0 to 9");
      labels[n] = label;
      std::memcpy(pixels + n * (kCifarRecordBytes - 1), &bytes[offset + 1], kCifarRecordBytes - 1);
    }
  }
  return out;
}

}  // namespace resnet
