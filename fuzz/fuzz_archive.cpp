// Archive unpacking (data/archive.h), as `resnet data --archive` and the CIFAR-10 download do:
// tar, gzip, xz, zip, whatever libarchive recognises; nothing may land outside the destination.
#include <filesystem>

#include "data/archive.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace fs = std::filesystem;
  resnet::fuzz::clear_scratch();
  const std::string archive = resnet::fuzz::write_input(data, size, "input.archive");
  const fs::path dest = resnet::fuzz::scratch() / "out";
  resnet::fuzz::expect_clean([&] { resnet::extract_archive(archive, dest.string()); });
  // Whatever was unpacked lies under dest: the scratch folder holds only the input and dest.
  for (const auto& entry : fs::directory_iterator(resnet::fuzz::scratch()))
    if (entry.path() != dest && entry.path().filename() != "input.archive") __builtin_trap();
  return 0;
}
