// JPEG and PNG decoding (data/decode.h): the header's size, then the pixels, whole and DCT-scaled,
// and a crop's region (crop-aware decoding), its box and scale taken from the input's last bytes.
#include <algorithm>

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
  resnet::fuzz::expect_clean([&] {
    const auto full = resnet::read_image_size(bytes, "input");
    const uint8_t a = size > 0 ? data[size - 1] : 0, b = size > 1 ? data[size - 2] : 0, c = size > 2 ? data[size - 3] : 0;
    const int64_t h = std::max<int64_t>(1, full.height * (a % 16 + 1) / 16);
    const int64_t w = std::max<int64_t>(1, full.width * (b % 16 + 1) / 16);
    const resnet::PixelBox box{(full.height - h) * (c % 8) / 7, (full.width - w) * (c / 8 % 8) / 7, h, w};
    const auto r = resnet::decode_image_region(bytes, "input", box, 1 + a % 64);
    if (r.image.dim() != 3 || r.image.size(0) != 3 || !(r.scale > 0 && r.scale <= 1)) __builtin_trap();
    // the region covers the box at its scale, and no more than the image
    const double top = r.top * r.scale, left = r.left * r.scale;
    if (top > box.top * r.scale + 1e-9 || left > box.left * r.scale + 1e-9 ||
        top + static_cast<double>(r.image.size(1)) < (box.top + box.height) * r.scale - 1 ||
        left + static_cast<double>(r.image.size(2)) < (box.left + box.width) * r.scale - 1 ||
        top + static_cast<double>(r.image.size(1)) > full.height * r.scale + 1 ||
        left + static_cast<double>(r.image.size(2)) > full.width * r.scale + 1)
      __builtin_trap();
  });
  return 0;
}
