// MAT files (data/mat5.h), as `resnet data --imagenet-val` reads the devkit's meta.mat.
#include "data/mat5.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::vector<uint8_t> bytes(data, data + size);
  resnet::fuzz::expect_clean([&] {
    for (const auto& [name, array] : resnet::read_mat5(bytes, "meta.mat")) {
      // what the reader promises: struct elements are whole (count x fields)
      if (array.kind == resnet::MatArray::Kind::kStruct &&
          array.elements.size() != static_cast<size_t>(array.count()) * array.fields.size())
        __builtin_trap();
    }
  });
  return 0;
}
