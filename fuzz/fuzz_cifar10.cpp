// The CIFAR-10 binary reader (data/cifar10.h) on a test_batch.bin of the fuzzer's bytes.
#include "data/cifar10.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  resnet::fuzz::clear_scratch();
  resnet::fuzz::write_input(data, size, "test_batch.bin");
  resnet::fuzz::expect_clean([&] {
    const auto set = resnet::read_cifar10(resnet::fuzz::scratch().string(), resnet::Split::kTest);
    if (set.images.size(0) != set.labels.size(0)) __builtin_trap();
    if (set.labels.numel() > 0 && (set.labels.min().item<int64_t>() < 0 ||
                                   set.labels.max().item<int64_t>() >= static_cast<int64_t>(set.classes.size())))
      __builtin_trap();  // a label outside the classes would index past the logits
  });
  return 0;
}
