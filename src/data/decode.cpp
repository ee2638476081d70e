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
#include <tuple>
#include <utility>

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

// Rows [y, y + h) and columns [x, x + w) of the JPEG at libjpeg's scale eighths/8 into dst (its row
// 0 and column 0 being y and x). A part (`whole` false) is decoded with a margin of one iMCU (at
// most 16 pixels) above and to each side, dropped: chroma upsampling next to where libjpeg starts a
// region reads neighbours it skipped, and the pixels kept are then the whole decode's, bit for bit.
// Only the rows needed are decoded (jpeg_skip_scanlines above them; below them the decompressor is
// aborted unread), and only the columns needed converted (jpeg_crop_scanline); a whole image is
// decoded to its end (jpeg_finish_decompress: a file cut short is an error).
void decode_jpeg_into(const std::vector<uint8_t>& bytes, const std::string& path, int eighths, int64_t y, int64_t h,
                      int64_t x, int64_t w, bool whole, PixelRows dst) {
  constexpr int64_t kMargin = 16;
  bool outside = false, stalled = false;
  with_jpeg(bytes, path, [&](jpeg_decompress_struct& cinfo) {
    cinfo.scale_num = static_cast<unsigned>(eighths);
    cinfo.scale_denom = 8;
    jpeg_calc_output_dimensions(&cinfo);
    const auto height = static_cast<int64_t>(cinfo.output_height), width = static_cast<int64_t>(cinfo.output_width);
    if (y < 0 || x < 0 || y + h > height || x + w > width) {  // never beyond dst's room
      outside = true;
      return;
    }
    // CMYK and YCCK (Adobe's; ImageNet's training set holds a few): libjpeg gives CMYK, made RGB
    // here as PIL makes it; grey, RGB and YCbCr it turns into RGB itself.
    const bool cmyk = cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK;
    cinfo.out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    const int64_t y_first = whole ? 0 : std::max<int64_t>(0, y - kMargin);
    const int64_t x_first = whole ? 0 : std::max<int64_t>(0, x - kMargin);
    const int64_t x_last = whole ? width : std::min(width, x + w + kMargin);
    JDIMENSION column = static_cast<JDIMENSION>(x_first), columns = static_cast<JDIMENSION>(x_last - x_first);
    if (column != 0 || columns != cinfo.output_width) jpeg_crop_scanline(&cinfo, &column, &columns);  // column moves left to an iMCU boundary
    const int64_t skip = x - static_cast<int64_t>(column);  // the first column kept, in a row read
    // rows from libjpeg's own pool, freed with the decompressor (a longjmp skips destructors)
    auto* pool = reinterpret_cast<j_common_ptr>(&cinfo);
    // Rows read 16 a call, not one: 1.6-4% more images a second (data_bench gather, 500-px JPEGs, on
    // 1 and 2 cores of the development machine, 2026-12-02)
    constexpr JDIMENSION kRows = 16;
    JSAMPARRAY rows = (*cinfo.mem->alloc_sarray)(pool, JPOOL_IMAGE, cinfo.output_width * (cmyk ? 4 : 3), kRows);
    if (y_first > 0) jpeg_skip_scanlines(&cinfo, static_cast<JDIMENSION>(y_first));
    for (int64_t r = y_first; r < y + h;) {
      const auto want = static_cast<JDIMENSION>(std::min<int64_t>(kRows, y + h - r));
      const JDIMENSION got = jpeg_read_scanlines(&cinfo, rows, want);
      for (JDIMENSION k = 0; k < got; ++k, ++r) {
        if (r < y) continue;
        uint8_t* out = dst.data + (r - y) * dst.row;
        if (cmyk)
          cmyk_row_to_rgb(rows[k] + 4 * skip, out, static_cast<JDIMENSION>(w));
        else
          std::memcpy(out, rows[k] + 3 * skip, static_cast<size_t>(w) * 3);
      }
      if (got == 0) {  // (never with a file in memory, which libjpeg pads when cut short: not left unwritten)
        stalled = true;
        return;
      }
    }
    // a part leaves the rest undecoded: jpeg_destroy_decompress (with_jpeg) aborts it
    if (whole) jpeg_finish_decompress(&cinfo);
  });
  if (outside) throw InputError(path + ": libjpeg decodes it to another size than its header gives");
  if (stalled) throw InputError(path + ": libjpeg stopped giving rows before the end of the image");
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

// Rows [y, y + h) and columns [x, x + w) of a PNG into dst, from the whole image decoded.
void decode_png_into(const std::vector<uint8_t>& bytes, const std::string& path, int64_t y, int64_t h, int64_t x,
                     int64_t w, PixelRows dst) {
  PngImage png(bytes, path);
  const auto height = static_cast<int64_t>(png.image.height), width = static_cast<int64_t>(png.image.width);
  if (y < 0 || x < 0 || y + h > height || x + w > width)
    throw InputError(path + ": libpng decodes it to another size than its header gives");
  // RGBA then drop alpha: PIL's convert('RGB') drops it too, where PNG_FORMAT_RGB would composite.
  png.image.format = PNG_FORMAT_RGBA;
  std::vector<uint8_t> rgba(PNG_IMAGE_SIZE(png.image));
  if (!png_image_finish_read(&png.image, nullptr, rgba.data(), 0, nullptr))
    throw InputError(path + ": cannot decode PNG: " + png.image.message);
  for (int64_t r = 0; r < h; ++r) {
    const uint8_t* from = &rgba[static_cast<size_t>(((y + r) * width + x) * 4)];
    uint8_t* out = dst.data + r * dst.row;
    for (int64_t c = 0; c < w; ++c) std::memcpy(out + 3 * c, from + 4 * c, 3);
  }
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

DecodeLayout layout_image(const std::vector<uint8_t>& bytes, const std::string& path, int64_t keep_side) {
  const ImageSize size = read_image_size(bytes, path);
  DecodeLayout layout;
  layout.eighths = is_jpeg(bytes) ? jpeg_eighths(size, keep_side) : 8;
  const ImageSize out = scaled_size(size, layout.eighths);
  layout.height = out.height, layout.width = out.width, layout.scale = layout.eighths / 8.0;
  return layout;
}

DecodeLayout layout_image_region(const std::vector<uint8_t>& bytes, const std::string& path, const PixelBox& box,
                                 int64_t min_side) {
  return layout_image_region(bytes, path, read_image_size(bytes, path), box, min_side);
}

DecodeLayout layout_image_region(const std::vector<uint8_t>& bytes, const std::string& path, ImageSize size,
                                 const PixelBox& box, int64_t min_side) {
  if (box.height < 1 || box.width < 1 || box.top < 0 || box.left < 0 || box.top + box.height > size.height ||
      box.left + box.width > size.width)
    throw std::invalid_argument(path + ": a crop box outside the image");
  DecodeLayout layout;
  if (is_jpeg(bytes))  // the smallest scale that keeps min_side pixels on each side of the box
    while (layout.eighths > 1 && box.height * (layout.eighths - 1) >= 8 * min_side &&
           box.width * (layout.eighths - 1) >= 8 * min_side)
      --layout.eighths;
  const ImageSize out = scaled_size(size, layout.eighths);
  const double s = layout.eighths / 8.0;
  // the box's rows and columns at that scale, at least one of each
  auto span = [s](int64_t begin, int64_t length, int64_t limit) {
    const int64_t first = std::min(limit - 1, static_cast<int64_t>(std::floor(static_cast<double>(begin) * s)));
    const int64_t end = std::min(limit, std::max(first + 1, static_cast<int64_t>(std::ceil(static_cast<double>(begin + length) * s))));
    return std::pair<int64_t, int64_t>{first, end - first};
  };
  std::tie(layout.row, layout.height) = span(box.top, box.height, out.height);
  std::tie(layout.column, layout.width) = span(box.left, box.width, out.width);
  layout.whole = layout.row == 0 && layout.column == 0 && layout.height == out.height && layout.width == out.width;
  layout.top = static_cast<double>(layout.row) / s, layout.left = static_cast<double>(layout.column) / s;
  layout.scale = s;
  return layout;
}

void decode_into(const std::vector<uint8_t>& bytes, const std::string& path, const DecodeLayout& layout, PixelRows dst) {
  if (is_jpeg(bytes))
    return decode_jpeg_into(bytes, path, layout.eighths, layout.row, layout.height, layout.column, layout.width,
                            layout.whole, dst);
  if (!is_png(bytes)) not_an_image(bytes, path);
  decode_png_into(bytes, path, layout.row, layout.height, layout.column, layout.width, dst);
}

namespace {

// A new uint8 [3, H, W] tensor holding `layout`'s pixels (decoded interleaved, then made planar
// by ATen's copy).
torch::Tensor decode_layout(const std::vector<uint8_t>& bytes, const std::string& path, const DecodeLayout& layout) {
  auto hwc = torch::empty({layout.height, layout.width, 3}, torch::kUInt8);
  decode_into(bytes, path, layout, {hwc.data_ptr<uint8_t>(), layout.width * 3});
  return hwc.permute({2, 0, 1}).contiguous();
}

}  // namespace

DecodedRegion decode_image_region(const std::vector<uint8_t>& bytes, const std::string& path, const PixelBox& box,
                                  int64_t min_side) {
  const DecodeLayout layout = layout_image_region(bytes, path, box, min_side);
  return {decode_layout(bytes, path, layout), layout.top, layout.left, layout.scale};
}

ImageSize decoded_size(const std::vector<uint8_t>& bytes, const std::string& path, int64_t keep_side) {
  const DecodeLayout layout = layout_image(bytes, path, keep_side);
  return {layout.height, layout.width};
}

torch::Tensor decode_image(const std::vector<uint8_t>& bytes, const std::string& path, int64_t keep_side) {
  return decode_layout(bytes, path, layout_image(bytes, path, keep_side));
}

namespace {

// libjpeg's output into a std::vector, grown by doubling (jpeg_mem_dest's buffer would be freed and
// replaced behind our back as it grows, which an error path cannot clean up safely).
struct VectorDestination {
  jpeg_destination_mgr mgr;  // first: libjpeg sees only this
  std::vector<uint8_t>* bytes;
};
void vector_destination_init(j_compress_ptr cinfo) {
  auto* d = reinterpret_cast<VectorDestination*>(cinfo->dest);
  d->bytes->resize(4096);
  d->mgr.next_output_byte = d->bytes->data();
  d->mgr.free_in_buffer = d->bytes->size();
}
boolean vector_destination_grow(j_compress_ptr cinfo) {  // (called with the buffer full)
  auto* d = reinterpret_cast<VectorDestination*>(cinfo->dest);
  const size_t used = d->bytes->size();
  d->bytes->resize(2 * used);
  d->mgr.next_output_byte = d->bytes->data() + used;
  d->mgr.free_in_buffer = d->bytes->size() - used;
  return TRUE;
}
void vector_destination_term(j_compress_ptr cinfo) {
  auto* d = reinterpret_cast<VectorDestination*>(cinfo->dest);
  d->bytes->resize(d->bytes->size() - d->mgr.free_in_buffer);
}

}  // namespace

std::vector<uint8_t> encode_jpeg(const torch::Tensor& rgb, int quality) {
  TORCH_CHECK(rgb.dim() == 3 && rgb.size(0) == 3 && rgb.scalar_type() == torch::kUInt8 && rgb.device().is_cpu(),
              "encode_jpeg: a uint8 [3, H, W] CPU tensor");
  const auto hwc = rgb.permute({1, 2, 0}).contiguous();  // (libjpeg takes interleaved rows)
  jpeg_compress_struct cinfo{};
  JpegError err{};
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_fail;
  std::vector<uint8_t> bytes;
  VectorDestination dest{};
  dest.bytes = &bytes;
  dest.mgr.init_destination = vector_destination_init;
  dest.mgr.empty_output_buffer = vector_destination_grow;
  dest.mgr.term_destination = vector_destination_term;
  if (setjmp(err.jump)) {
    jpeg_destroy_compress(&cinfo);
    throw std::runtime_error(std::string("encode_jpeg: ") + err.message);
  }
  jpeg_create_compress(&cinfo);
  cinfo.dest = &dest.mgr;
  cinfo.image_width = static_cast<JDIMENSION>(hwc.size(1));
  cinfo.image_height = static_cast<JDIMENSION>(hwc.size(0));
  cinfo.input_components = 3;
  cinfo.in_color_space = JCS_RGB;
  jpeg_set_defaults(&cinfo);
  jpeg_set_quality(&cinfo, quality, TRUE);
  jpeg_start_compress(&cinfo, TRUE);
  auto* row = hwc.data_ptr<uint8_t>();
  const auto stride = static_cast<size_t>(hwc.size(1) * 3);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW rows[1] = {row + cinfo.next_scanline * stride};
    jpeg_write_scanlines(&cinfo, rows, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  return bytes;
}

}  // namespace resnet
