// Decoding JPEG (libjpeg-turbo) and PNG (libpng) files into RGB uint8 tensors [3, H, W].
//
// The format is told by the file's first bytes, not its name, so a text file called x.jpg gets
// "not a JPEG or PNG image". Grey and palette images become RGB by repeating or looking up the
// values; CMYK and YCCK JPEGs as PIL converts them (Adobe's inverted CMYK, then its cmyk2rgb);
// an alpha channel is dropped (as PIL's convert('RGB'), which torchvision's ImageFolder
// uses). A truncated JPEG is an error (libjpeg would otherwise fill the rest with grey). Every
// error is an InputError that names the file.
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "io/file.h"

namespace resnet {

struct ImageSize {
  int64_t height = 0;
  int64_t width = 0;
};

// The most pixels (height x width) an image may have: decoding reads the size from the header
// first and refuses a larger image with an InputError, before any allocation (a "decompression
// bomb": a 30,000 x 30,000 PNG under 1 MB would take 2.7 GB as RGB and more while decoding).
// Default 178,956,970, the size at which PIL refuses (twice its MAX_IMAGE_PIXELS); 0: no limit.
// Process-wide; the CLI's --max-image-pixels sets it.
constexpr int64_t kDefaultMaxImagePixels = 178956970;
void set_max_image_pixels(int64_t pixels);
int64_t max_image_pixels();

// Size from the header alone (no pixel decoding); InputError beyond max_image_pixels().
ImageSize read_image_size(const std::vector<uint8_t>& bytes, const std::string& path);

// Decodes into a new uint8 tensor [3, H, W]. With `keep_side` > 0, a JPEG whose shorter side is
// larger is decoded smaller in the DCT domain (libjpeg's scale M/8, as PIL's draft()): the
// smallest M whose shorter side is still at least keep_side (at most twice it, where M > 1).
// Less work, less memory, and the scaled IDCT filters as it shrinks; other images come whole.
torch::Tensor decode_image(const std::vector<uint8_t>& bytes, const std::string& path, int64_t keep_side = 0);

inline torch::Tensor decode_image_file(const std::string& path, int64_t keep_side = 0) {
  return decode_image(read_file_bytes(path), path, keep_side);
}

// The M of decode_image's scale M/8 for a JPEG of `size` (8: whole), and the size it decodes to.
int jpeg_eighths(ImageSize size, int64_t keep_side);
ImageSize scaled_size(ImageSize size, int eighths);

// A box of an image's pixels: rows [top, top + height), columns [left, left + width).
struct PixelBox {
  int64_t top = 0, left = 0, height = 0, width = 0;
};

// Part of an image, decoded: `image` uint8 [3, h, w] shows the file's pixels from (top, left) on,
// at `scale` (its pixel (i, j) covers the file's rows top + i / scale to top + (i + 1) / scale).
struct DecodedRegion {
  torch::Tensor image;
  double top = 0, left = 0, scale = 1;
};

// What a training crop needs of an image: the rows and columns of `box` (inside the image), for a
// JPEG decoded at the smallest of libjpeg's scales M/8 that keeps at least min_side pixels on each
// side of the box (DCT-domain scaling, as PIL's draft(); the box is resized to min_side next),
// with only the box's rows decoded and its columns converted (and up to 16 pixels above and to
// each side, dropped: the pixels kept are the whole decode's at that scale); a PNG whole, then cut.
// read_image_size's errors, and decode_image's.
DecodedRegion decode_image_region(const std::vector<uint8_t>& bytes, const std::string& path, const PixelBox& box,
                                  int64_t min_side);

// The size decode_image(bytes, path, keep_side) gives, from the header alone (read_image_size's
// errors).
ImageSize decoded_size(const std::vector<uint8_t>& bytes, const std::string& path, int64_t keep_side = 0);

// decode_image and decode_image_region in two steps, for a caller that places the pixels itself
// (the streamed loader decodes each image straight into its batch): what will be decoded, from the
// header alone, then the pixels into `dst`.
struct DecodeLayout {
  int64_t height = 0, width = 0;  // the pixels decode_into writes
  double top = 0, left = 0, scale = 1;  // where they are in the file (DecodedRegion's)
  // how: libjpeg's scale eighths/8 (8 for PNGs), and the first row and column at that scale
  int eighths = 8;
  int64_t row = 0, column = 0;
  bool whole = true;  // the whole image at that scale
};
// decode_image's (the whole image; keep_side as there) and decode_image_region's; their errors.
DecodeLayout layout_image(const std::vector<uint8_t>& bytes, const std::string& path, int64_t keep_side = 0);
DecodeLayout layout_image_region(const std::vector<uint8_t>& bytes, const std::string& path, const PixelBox& box,
                                 int64_t min_side);
// The same where the caller has read the header already: `size` is read_image_size(bytes, path)'s.
DecodeLayout layout_image_region(const std::vector<uint8_t>& bytes, const std::string& path, ImageSize size,
                                 const PixelBox& box, int64_t min_side);

// Where decoded pixels go: interleaved RGB, as libjpeg writes them (a channels-last tensor's
// layout), row y starting at data + y * row.
struct PixelRows {
  uint8_t* data = nullptr;
  int64_t row = 0;
};
// The pixels of `layout` (from these bytes) into dst, which has room for layout.height rows of
// layout.width; decode_image's errors.
void decode_into(const std::vector<uint8_t>& bytes, const std::string& path, const DecodeLayout& layout, PixelRows dst);

// A baseline JPEG (4:2:0, libjpeg-turbo's defaults) of `rgb`, uint8 [3, H, W] on the CPU, at
// `quality` (1-100). The one encoder here: the GPU decoder's filler images (data/gpu_jpeg.cpp).
std::vector<uint8_t> encode_jpeg(const torch::Tensor& rgb, int quality);

}  // namespace resnet
