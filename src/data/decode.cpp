#include "data/decode.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <csetjmp>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "core/error.h"

namespace resnet {
namespace {

bool is_jpeg(const std::vector<uint8_t>& b) { return b.size() >= 3 && b[0] == 0xFF && b[1] == 0xD8 && b[2] == 0xFF; }
bool is_png(const std::vector<uint8_t>& b) {
  static const uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
  return b.size() >= 8 && std::memcmp(b.data(), kSignature, 8) == 0;
}

[[noreturn]] void not_an_image(const std::vector<uint8_t>& bytes, const std::string& path) {
  std::string start;
  for (size_t i = 0; i < bytes.size() && i < 4; ++i)
    start += (bytes[i] >= 32 && bytes[i] < 127) ? static_cast<char>(bytes[i]) : '?';
  throw InputError(path + ": not a JPEG or PNG image (" +
                   (bytes.empty() ? std::string("the file is empty") : "it starts with '" + start + "'") + ")");
}

// ---- JPEG -------------------------------------------------------------------------------------

struct JpegError {
  jpeg_error_mgr mgr;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_fail(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  longjmp(err->jump, 1);
}

// libjpeg only warns about a file that ends early and fills in grey; we refuse it.
void jpeg_message(j_common_ptr cinfo, int level) {
  if (level < 0 && cinfo->err->msg_code == JWRN_JPEG_EOF) jpeg_fail(cinfo);
}

// Runs `body` on a decompressor reading `bytes`; turns libjpeg errors into InputError.
template <typename Body>
void with_jpeg(const std::vector<uint8_t>& bytes, const std::string& path, Body&& body) {
  jpeg_decompress_struct cinfo{};
  JpegError err{};
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_fail;
  err.mgr.emit_message = jpeg_message;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    throw InputError(path + ": cannot decode JPEG: " + err.message);
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, bytes.data(), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  body(cinfo);  // no C++ objects with destructors may live across a longjmp here
  jpeg_destroy_decompress(&cinfo);
}

// PIL's CMYK -> RGB for a row of `width` pixels as libjpeg gives them. PIL reads every 4-channel
// JPEG as Adobe's inverted CMYK ("CMYK;I"), then its cmyk2rgb takes R = (255 - K) - C (255 - K) / 255
// (rounded as its MULDIV255): with the stored values s = 255 - C, that is s_K - (255 - s_C) s_K / 255.
void cmyk_row_to_rgb(const JSAMPLE* cmyk, uint8_t* rgb, JDIMENSION width) {
  for (JDIMENSION x = 0; x < width; ++x, cmyk += 4, rgb += 3) {
    const int nk = cmyk[3];
    for (int c = 0; c < 3; ++c) {
      const int t = (255 - cmyk[c]) * nk + 128;
      const int v = nk - (((t >> 8) + t) >> 8);
      rgb[c] = static_cast<uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
    }
  }
}

// Rows [y_begin, y_end) of the image at libjpeg's scale eighths/8 (8: full size; `out` pixels,
// scaled_size's) into hwc, which has room for them at the whole scaled width. Columns x_begin to
// x_end (widened by libjpeg to its iMCU grid: jpeg_crop_scanline) where that is not every column;
// the columns decoded go to *x_first, *columns. The whole image is decoded to its end
// (jpeg_finish_decompress); a part leaves the rows below undecoded.
void decode_jpeg_rows(const std::vector<uint8_t>& bytes, const std::string& path, uint8_t* hwc, int eighths,
                      ImageSize out, int64_t y_begin, int64_t y_end, int64_t x_begin, int64_t x_end, int64_t* x_first,
                      int64_t* columns) {
  bool other_size = false;
  with_jpeg(bytes, path, [&](jpeg_decompress_struct& cinfo) {
    cinfo.scale_num = static_cast<unsigned>(eighths);
    cinfo.scale_denom = 8;
    jpeg_calc_output_dimensions(&cinfo);
    if (cinfo.output_height != out.height || cinfo.output_width != out.width) {  // never into a buffer of another size
      other_size = true;
      return;
    }
    // CMYK and YCCK (Adobe's; ImageNet's training set holds a few): libjpeg gives CMYK, made RGB
    // here as PIL makes it; grey, RGB and YCbCr it turns into RGB itself.
    const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    JDIMENSION x = static_cast<JDIMENSION>(x_begin), width = static_cast<JDIMENSION>(x_end - x_begin);
    if (x != 0 || width != cinfo.output_width) jpeg_crop_scanline(&cinfo, &x, &width);  // x moves left to an iMCU boundary
    *x_first = x;
    *columns = cinfo.output_width;
    // a CMYK row from libjpeg's own pool, freed with the decompressor (a longjmp skips destructors)
    JSAMPARRAY cmyk_row = cmyk ? (*cinfo.mem->alloc_sarray)(reinterpret_cast<j_common_ptr>(&cinfo), JPOOL_IMAGE,
                                                           cinfo.output_width * 4, 1)
                               : nullptr;
    if (y_begin > 0) jpeg_skip_scanlines(&cinfo, static_cast<JDIMENSION>(y_begin));
    for (int64_t y = y_begin; y < y_end; ++y) {
      JSAMPROW row = hwc + static_cast<size_t>(y - y_begin) * cinfo.output_width * 3;
      if (!cmyk) {
        jpeg_read_scanlines(&cinfo, &row, 1);
        continue;
      }
      jpeg_read_scanlines(&cinfo, cmyk_row, 1);
      cmyk_row_to_rgb(cmyk_row[0], row, cinfo.output_width);
    }
    // a part leaves the rest undecoded: jpeg_destroy_decompress (with_jpeg) aborts it
    if (y_begin == 0 && y_end == out.height) jpeg_finish_decompress(&cinfo);
  });
  if (other_size) throw InputError(path + ": libjpeg decodes it to another size than its header gives");
}

// The whole image at scale eighths/8 into hwc, of `out` pixels.
void decode_jpeg(const std::vector<uint8_t>& bytes, const std::string& path, uint8_t* hwc, int eighths, ImageSize out) {
  int64_t x_first = 0, columns = 0;
  decode_jpeg_rows(bytes, path, hwc, eighths, out, 0, out.height, 0, out.width, &x_first, &columns);
}

// ---- PNG --------------------------------------------------------------------------------------

struct PngImage {
  png_image image{};
  PngImage(const std::vector<uint8_t>& bytes, const std::string& path) {
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&image, bytes.data(), bytes.size()))
      throw InputError(path + ": cannot decode PNG: " + image.message);
  }
  ~PngImage() { png_image_free(&image); }
};

// ---- shared -----------------------------------------------------------------------------------

// Decodes to interleaved RGB, `size` as read_image_size gave it; JPEGs at eighths/8 of it.
void decode_hwc(const std::vector<uint8_t>& bytes, const std::string& path, uint8_t* hwc, ImageSize size, int eighths) {
  if (is_jpeg(bytes)) return decode_jpeg(bytes, path, hwc, eighths, scaled_size(size, eighths));
  if (!is_png(bytes)) not_an_image(bytes, path);
  PngImage png(bytes, path);
  // RGBA then drop alpha: PIL's convert('RGB') drops it too, where PNG_FORMAT_RGB would composite.
  png.image.format = PNG_FORMAT_RGBA;
  std::vector<uint8_t> rgba(PNG_IMAGE_SIZE(png.image));
  if (!png_image_finish_read(&png.image, nullptr, rgba.data(), 0, nullptr))
    throw InputError(path + ": cannot decode PNG: " + png.image.message);
  for (int64_t y = 0; y < size.height; ++y)
    for (int64_t x = 0; x < size.width; ++x)
      std::memcpy(hwc + (y * size.width + x) * 3, &rgba[(y * size.width + x) * 4], 3);
}

}  // namespace

namespace {

std::atomic<int64_t> g_max_image_pixels{kDefaultMaxImagePixels};

ImageSize header_size(const std::vector<uint8_t>& bytes, const std::string& path) {
  if (is_jpeg(bytes)) {
    ImageSize size;
    with_jpeg(bytes, path, [&](jpeg_decompress_struct& cinfo) { size = {cinfo.image_height, cinfo.image_width}; });
    return size;
  }
  if (is_png(bytes)) {
    PngImage png(bytes, path);
    return {png.image.height, png.image.width};
  }
  not_an_image(bytes, path);
}

}  // namespace

void set_max_image_pixels(int64_t pixels) { g_max_image_pixels = pixels; }
int64_t max_image_pixels() { return g_max_image_pixels; }

ImageSize read_image_size(const std::vector<uint8_t>& bytes, const std::string& path) {
  const ImageSize size = header_size(bytes, path);
  const int64_t limit = g_max_image_pixels;
  if (limit > 0 && size.height * size.width > limit) {
    char line[256];
    std::snprintf(line, sizeof line,
                  ": %lld x %lld = %lld pixels, more than the limit of %lld (--max-image-pixels; raise it if the image "
                  "is what you meant, 0: no limit)",
                  static_cast<long long>(size.width), static_cast<long long>(size.height),
                  static_cast<long long>(size.height * size.width), static_cast<long long>(limit));
    throw InputError(path + line);
  }
  return size;
}

int jpeg_eighths(ImageSize size, int64_t keep_side) {
  const int64_t shorter = std::min(size.height, size.width);
  if (keep_side <= 0 || shorter <= keep_side) return 8;
  for (int m = 1; m < 8; ++m)
    if ((shorter * m + 7) / 8 >= keep_side) return m;
  return 8;
}

ImageSize scaled_size(ImageSize size, int eighths) {  // libjpeg's jdiv_round_up(side * num, denom)
  return {(size.height * eighths + 7) / 8, (size.width * eighths + 7) / 8};
}

DecodedRegion decode_image_region(const std::vector<uint8_t>& bytes, const std::string& path, const PixelBox& box,
                                  int64_t min_side) {
  const ImageSize size = read_image_size(bytes, path);
  if (box.height < 1 || box.width < 1 || box.top < 0 || box.left < 0 || box.top + box.height > size.height ||
      box.left + box.width > size.width)
    throw std::invalid_argument(path + ": a crop box outside the image");
  DecodedRegion region;
  if (!is_jpeg(bytes)) {  // PNG: whole, then the box's rows and columns
    region.image = decode_image(bytes, path).narrow(1, box.top, box.height).narrow(2, box.left, box.width).contiguous();
    region.top = static_cast<double>(box.top), region.left = static_cast<double>(box.left);
    return region;
  }
  int eighths = 8;  // the smallest scale that keeps min_side pixels on each side of the box
  while (eighths > 1 && box.height * (eighths - 1) >= 8 * min_side && box.width * (eighths - 1) >= 8 * min_side)
    --eighths;
  const ImageSize out = scaled_size(size, eighths);
  const double s = eighths / 8.0;
  const int64_t y_begin = std::min(out.height - 1, static_cast<int64_t>(std::floor(static_cast<double>(box.top) * s)));
  const int64_t y_end = std::min(out.height, std::max(y_begin + 1, static_cast<int64_t>(std::ceil(
                                                                     static_cast<double>(box.top + box.height) * s))));
  const int64_t x_begin = std::min(out.width - 1, static_cast<int64_t>(std::floor(static_cast<double>(box.left) * s)));
  const int64_t x_end = std::min(out.width, std::max(x_begin + 1, static_cast<int64_t>(std::ceil(
                                                                    static_cast<double>(box.left + box.width) * s))));
  // A margin of one iMCU (at most 16 pixels) each way, decoded and dropped: chroma upsampling
  // next to where libjpeg starts or stops a region reads neighbours it skipped, and the pixels kept
  // are then the whole decode's, bit for bit.
  constexpr int64_t kMargin = 16;
  const int64_t y_first = std::max<int64_t>(0, y_begin - kMargin), y_last = std::min(out.height, y_end + kMargin);
  auto rows = torch::empty({y_last - y_first, out.width, 3}, torch::kUInt8);
  int64_t x_first = 0, columns = 0;
  decode_jpeg_rows(bytes, path, rows.data_ptr<uint8_t>(), eighths, out, y_first, y_last,
                   std::max<int64_t>(0, x_begin - kMargin), std::min(out.width, x_end + kMargin), &x_first, &columns);
  region.image = rows.view(-1)
                     .narrow(0, 0, (y_last - y_first) * columns * 3)
                     .view({y_last - y_first, columns, 3})
                     .narrow(0, y_begin - y_first, y_end - y_begin)
                     .narrow(1, x_begin - x_first, x_end - x_begin)
                     .permute({2, 0, 1})
                     .contiguous();
  region.top = static_cast<double>(y_begin) / s, region.left = static_cast<double>(x_begin) / s, region.scale = s;
  return region;
}

ImageSize decoded_size(const std::vector<uint8_t>& bytes, const std::string& path, int64_t keep_side) {
  const ImageSize size = read_image_size(bytes, path);
  return scaled_size(size, is_jpeg(bytes) ? jpeg_eighths(size, keep_side) : 8);
}

torch::Tensor decode_image(const std::vector<uint8_t>& bytes, const std::string& path, int64_t keep_side) {
  const ImageSize size = read_image_size(bytes, path);
  const int eighths = is_jpeg(bytes) ? jpeg_eighths(size, keep_side) : 8;
  const ImageSize out = scaled_size(size, eighths);
  auto hwc = torch::empty({out.height, out.width, 3}, torch::kUInt8);
  decode_hwc(bytes, path, hwc.data_ptr<uint8_t>(), size, eighths);
  return hwc.permute({2, 0, 1}).contiguous();
}

}  // namespace resnet
