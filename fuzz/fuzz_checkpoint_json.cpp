// checkpoint.json (train/checkpoint_info.h), as test and predict read it.
#include "fuzz_util.h"
#include "train/checkpoint_info.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  resnet::fuzz::expect_clean([&] {
    const auto info = resnet::parse_best_model_info(text, "checkpoint.json");
    if (info.classes.empty() || info.image_size < 1) __builtin_trap();  // what the parser promises
  });
  return 0;
}
