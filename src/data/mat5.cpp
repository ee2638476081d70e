#include "data/mat5.h"

#include <zlib.h>

#include <cstring>

#include "core/error.h"

namespace resnet {
namespace {

// Data types of MAT v5 elements, and array classes (MATLAB's "MAT-File Format", tables 1-2 and 1-3).
enum : uint32_t {
  miINT8 = 1, miUINT8 = 2, miINT16 = 3, miUINT16 = 4, miINT32 = 5, miUINT32 = 6, miSINGLE = 7,
  miDOUBLE = 9, miINT64 = 12, miUINT64 = 13, miMATRIX = 14, miCOMPRESSED = 15, miUTF8 = 16,
  miUTF16 = 17, miUTF32 = 18,
};
enum : uint32_t {
  mxCELL = 1, mxSTRUCT = 2, mxOBJECT = 3, mxCHAR = 4, mxSPARSE = 5, mxDOUBLE = 6, mxUINT64 = 15,
};
constexpr int kMaxDepth = 32;  // nested cells and structs; deeper is refused, not a stack overflow
constexpr size_t kMaxInflated = size_t{1} << 30;  // a compressed element's bytes (the devkit's: 2 MB)

struct Element {
  uint32_t type = 0;
  size_t begin = 0, end = 0;  // the payload's bytes
};

class Reader {
 public:
  Reader(const std::string& path, size_t base) : path_(path), base_(base) {}

  [[noreturn]] void fail(size_t at, const std::string& what) const {
    throw InputError(path_ + ": not a MAT file this program reads (byte " + std::to_string(base_ + at) + "): " + what);
  }

  static uint32_t u32(const uint8_t* p) {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;  // little-endian files on little-endian machines (checked at the header)
  }

  // The element whose tag starts at `pos` in buf[0, end); `pos` moves past it (and its padding).
  Element next(const std::vector<uint8_t>& buf, size_t& pos, size_t end) const {
    if (pos > end || end - pos < 8) fail(pos, "an element's tag runs past its end");
    const uint32_t first = u32(&buf[pos]);
    Element e;
    if ((first >> 16) != 0) {  // small data element: size and type in one word, data in the next
      e.type = first & 0xffff;
      e.begin = pos + 4;
      e.end = e.begin + (first >> 16);
      if ((first >> 16) > 4) fail(pos, "a small element claims more than 4 bytes");
      pos += 8;
      return e;
    }
    e.type = first;
    const uint64_t size = u32(&buf[pos + 4]);
    e.begin = pos + 8;
    if (size > end - e.begin) fail(pos, "an element of " + std::to_string(size) + " bytes runs past its end");
    e.end = e.begin + size;
    // compressed elements are not padded; the others to a multiple of 8 bytes
    const uint64_t padded = e.type == miCOMPRESSED ? size : (size + 7) / 8 * 8;
    pos = padded > end - e.begin ? end : e.begin + padded;
    return e;
  }

  // Numbers of any numeric element type, as doubles.
  std::vector<double> numbers(const std::vector<uint8_t>& buf, const Element& e) const {
    size_t width = 0;
    switch (e.type) {
      case miINT8: case miUINT8: width = 1; break;
      case miINT16: case miUINT16: width = 2; break;
      case miINT32: case miUINT32: case miSINGLE: width = 4; break;
      case miDOUBLE: case miINT64: case miUINT64: width = 8; break;
      default: fail(e.begin, "numbers stored as element type " + std::to_string(e.type));
    }
    std::vector<double> out((e.end - e.begin) / width);
    for (size_t i = 0; i < out.size(); ++i) {
      const uint8_t* p = &buf[e.begin + i * width];
      switch (e.type) {
        case miINT8: out[i] = static_cast<int8_t>(*p); break;
        case miUINT8: out[i] = *p; break;
        case miINT16: { int16_t v; std::memcpy(&v, p, 2); out[i] = v; break; }
        case miUINT16: { uint16_t v; std::memcpy(&v, p, 2); out[i] = v; break; }
        case miINT32: { int32_t v; std::memcpy(&v, p, 4); out[i] = v; break; }
        case miUINT32: out[i] = u32(p); break;
        case miSINGLE: { float v; std::memcpy(&v, p, 4); out[i] = v; break; }
        case miDOUBLE: { double v; std::memcpy(&v, p, 8); out[i] = v; break; }
        case miINT64: { int64_t v; std::memcpy(&v, p, 8); out[i] = static_cast<double>(v); break; }
        default: { uint64_t v; std::memcpy(&v, p, 8); out[i] = static_cast<double>(v); break; }
      }
    }
    return out;
  }

  // A miMATRIX payload buf[begin, end) and its name.
  MatArray matrix(const std::vector<uint8_t>& buf, size_t begin, size_t end, std::string& name, int depth) const {
    MatArray a;
    if (begin == end) return a;  // an empty array (a struct's unset field)
    if (depth > kMaxDepth) fail(begin, "arrays nested more than " + std::to_string(kMaxDepth) + " deep");
    size_t pos = begin;
    const Element flags = next(buf, pos, end);
    if (flags.type != miUINT32 || flags.end - flags.begin < 8) fail(flags.begin, "an array without its flags");
    const uint32_t word = u32(&buf[flags.begin]);
    const uint32_t cls = word & 0xff;
    if (word & 0x800) fail(flags.begin, "complex numbers");
    const Element dims = next(buf, pos, end);
    if (dims.type != miINT32) fail(dims.begin, "an array without its dimensions");
    int64_t count = 1;
    for (double d : numbers(buf, dims)) {
      if (d < 0) fail(dims.begin, "a negative dimension");
      a.dims.push_back(static_cast<int64_t>(d));
      count *= a.dims.back();
      // every element takes at least a byte: more elements than bytes is a lie (and kept small,
      // the product cannot overflow)
      if (count > static_cast<int64_t>(end - begin)) fail(dims.begin, "dimensions larger than the file");
    }
    if (a.dims.size() < 2) fail(dims.begin, "an array of " + std::to_string(a.dims.size()) + " dimensions (at least 2)");
    const Element name_element = next(buf, pos, end);
    if (name_element.type != miINT8) fail(name_element.begin, "an array without its name");
    name.assign(reinterpret_cast<const char*>(buf.data() + name_element.begin), name_element.end - name_element.begin);
    if (cls == mxCELL || cls == mxSTRUCT) {
      if (cls == mxSTRUCT) {
        a.kind = MatArray::Kind::kStruct;
        const Element length = next(buf, pos, end);
        const auto len = numbers(buf, length);
        if (length.type != miINT32 || len.size() != 1 || len[0] < 1) fail(length.begin, "a struct without its field name length");
        const Element names = next(buf, pos, end);
        const auto width = static_cast<size_t>(len[0]);
        if (names.type != miINT8 || (names.end - names.begin) % width != 0) fail(names.begin, "a struct's field names");
        for (size_t at = names.begin; at < names.end; at += width)
          a.fields.emplace_back(reinterpret_cast<const char*>(&buf[at]), strnlen(reinterpret_cast<const char*>(&buf[at]), width));
      } else {
        a.kind = MatArray::Kind::kCell;
      }
      const int64_t parts = count * (cls == mxSTRUCT ? static_cast<int64_t>(a.fields.size()) : 1);
      for (int64_t i = 0; i < parts; ++i) {
        const Element part = next(buf, pos, end);
        if (part.type != miMATRIX) fail(part.begin, "a cell or field that is not an array");
        std::string ignored;
        a.elements.push_back(matrix(buf, part.begin, part.end, ignored, depth + 1));
      }
      return a;
    }
    if (cls == mxOBJECT || cls == mxSPARSE || cls > mxUINT64) fail(flags.begin, "array class " + std::to_string(cls));
    const Element data = next(buf, pos, end);
    if (cls == mxCHAR) {
      a.kind = MatArray::Kind::kChar;
      if (data.type == miUTF8 || data.type == miUINT8 || data.type == miINT8) {
        for (size_t i = data.begin; i < data.end; ++i) a.text += buf[i] < 128 ? static_cast<char>(buf[i]) : '?';
      } else {
        for (double c : numbers(buf, data)) a.text += c >= 0 && c < 128 ? static_cast<char>(c) : '?';
      }
      return a;
    }
    a.numbers = numbers(buf, data);
    if (static_cast<int64_t>(a.numbers.size()) != count)
      fail(data.begin, std::to_string(a.numbers.size()) + " numbers for " + std::to_string(count) + " elements");
    return a;
  }

 private:
  std::string path_;
  size_t base_;  // where buf starts in the file (0 but inside a compressed element's inflated bytes)
};

std::vector<uint8_t> inflate_all(const uint8_t* data, size_t size, const std::string& path, size_t at) {
  z_stream z{};
  if (inflateInit(&z) != Z_OK) throw InputError(path + ": zlib could not start");
  std::vector<uint8_t> out;
  z.next_in = const_cast<Bytef*>(data);
  z.avail_in = static_cast<uInt>(size);
  int status = Z_OK;
  while (status == Z_OK) {
    if (out.size() >= kMaxInflated) {
      inflateEnd(&z);
      throw InputError(path + ": a compressed element at byte " + std::to_string(at) + " inflates past 1 GiB");
    }
    out.resize(out.size() + (size_t{1} << 20));
    z.next_out = &out[out.size() - (size_t{1} << 20)];
    z.avail_out = 1u << 20;
    status = inflate(&z, Z_NO_FLUSH);
    out.resize(out.size() - z.avail_out);
    if (status == Z_BUF_ERROR && z.avail_in == 0) break;
  }
  inflateEnd(&z);
  if (status != Z_STREAM_END)
    throw InputError(path + ": not a MAT file this program reads (byte " + std::to_string(at) +
                     "): a compressed element that does not inflate");
  return out;
}

}  // namespace

int64_t MatArray::count() const {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return dims.empty() ? 0 : n;
}

const MatArray& MatArray::field(int64_t e, const std::string& name, const std::string& where) const {
  for (size_t f = 0; f < fields.size(); ++f)
    if (fields[f] == name) return elements.at(static_cast<size_t>(e) * fields.size() + f);
  throw InputError(where + ": has no field " + name);
}

std::map<std::string, MatArray> read_mat5(const std::vector<uint8_t>& bytes, const std::string& path) {
  if (bytes.size() < 128 || std::memcmp(bytes.data(), "MATLAB 5.0 MAT-file", 19) != 0)
    throw InputError(path + ": not a MAT file (version 5 files start 'MATLAB 5.0 MAT-file')");
  if (bytes[126] != 'I' || bytes[127] != 'M')
    throw InputError(path + ": a big-endian MAT file, which this program does not read");
  std::map<std::string, MatArray> out;
  const Reader file(path, 0);
  size_t pos = 128;
  while (pos < bytes.size()) {
    const Element e = file.next(bytes, pos, bytes.size());
    std::string name;
    if (e.type == miCOMPRESSED) {
      const std::vector<uint8_t> inner = inflate_all(bytes.data() + e.begin, e.end - e.begin, path, e.begin);
      const Reader reader(path + " (inside the compressed element at byte " + std::to_string(e.begin) + ")", 0);
      size_t at = 0;
      const Element m = reader.next(inner, at, inner.size());
      if (m.type != miMATRIX) reader.fail(0, "a compressed element that holds no array");
      MatArray a = reader.matrix(inner, m.begin, m.end, name, 0);
      out[name] = std::move(a);
    } else if (e.type == miMATRIX) {
      MatArray a = file.matrix(bytes, e.begin, e.end, name, 0);
      out[name] = std::move(a);
    }  // other top-level elements (none in practice) carry no variable
  }
  return out;
}

}  // namespace resnet
