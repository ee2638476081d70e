// JPEG and PNG decoding (data/decode.h): the header's size, then the pixels, whole and DCT-scaled.
#include "data/decode.h"
#include "fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // A bomb's refusal is checked elsewhere; here a few megapixels keep each input fast.
  resnet::set_max_image_pixels(4 << 20);
  const std::vector<uint8_t> bytes(data, data + size);
  resnet::fuzz::expect_clean([&] { resnet::read_image_size(bytes, "input"); });
  resnet::fuzz::expect_clean([&] {
    const auto image = resnet::decode_image(bytes, "input");
    // what the loader relies on: uint8 [3, H, W]
    if (image.dim() != 3 || image.size(0) != 3 || image.scalar_type() != torch::kUInt8) __builtin_trap();
  });
  resnet::fuzz::expect_clean([&] {  // DCT-domain downscaling (streamed training images)
    const auto image = resnet::decode_image(bytes, "input", /*keep_side=*/8);
    if (image.dim() != 3 || image.size(0) != 3) __builtin_trap();
  });
  return 0;
}
