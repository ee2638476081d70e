#include "io/torch_save.h"

#include <torch/serialize.h>

#include <caffe2/serialize/inline_container.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>

#include "core/error.h"
#include "io/file.h"

namespace resnet {
namespace {

// The few pickle opcodes (protocol 2) that a dict of tensors and scalars needs.
class Pickler {
 public:
  void op(char code) { out_.push_back(code); }
  void global(const std::string& module, const std::string& name) {
    op('c');
    out_ += module + "\n" + name + "\n";
  }
  void string(const std::string& s) {
    op('X');
    uint32_t n = static_cast<uint32_t>(s.size());
    out_.append(reinterpret_cast<const char*>(&n), 4);  // little-endian on every platform we build for
    out_ += s;
  }
  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      op('K');
      out_.push_back(static_cast<char>(v));
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      op('J');
      int32_t x = static_cast<int32_t>(v);
      out_.append(reinterpret_cast<const char*>(&x), 4);
    } else {
      op('\x8a');  // LONG1: 8 bytes, two's complement, little-endian
      out_.push_back(8);
      out_.append(reinterpret_cast<const char*>(&v), 8);
    }
  }
  void real(double v) {
    op('G');  // BINFLOAT: big-endian
    uint64_t bits;
    std::memcpy(&bits, &v, 8);
    for (int i = 7; i >= 0; --i) out_.push_back(static_cast<char>(bits >> (8 * i)));
  }
  void boolean(bool v) { op(v ? '\x88' : '\x89'); }
  void int_tuple(c10::IntArrayRef values) {
    op('(');
    for (int64_t v : values) integer(v);
    op('t');
  }
  std::string& bytes() { return out_; }

 private:
  std::string out_;
};

const char* storage_class(c10::ScalarType t) {
  switch (t) {
    case torch::kFloat: return "FloatStorage";
    case torch::kDouble: return "DoubleStorage";
    case torch::kHalf: return "HalfStorage";
    case torch::kBFloat16: return "BFloat16Storage";
    case torch::kLong: return "LongStorage";
    case torch::kInt: return "IntStorage";
    case torch::kShort: return "ShortStorage";
    case torch::kChar: return "CharStorage";
    case torch::kByte: return "ByteStorage";
    case torch::kBool: return "BoolStorage";
    default: throw std::invalid_argument(std::string("cannot save tensors of type ") + c10::toString(t));
  }
}

}  // namespace

TorchFile::TorchFile(const SaveEntries& entries, bool ordered) {
  Pickler p;
  p.op('\x80');
  p.op(2);
  if (ordered) {
    p.global("collections", "OrderedDict");
    p.op(')');
    p.op('R');
  } else {
    p.op('}');
  }
  p.op('(');
  for (const auto& [key, value] : entries) {
    p.string(key);
    if (const auto* t = std::get_if<torch::Tensor>(&value)) {
      // a copy of its own, whatever the device: the file may be written while training goes on
      torch::Tensor cpu = t->detach().to(torch::kCPU).contiguous();
      if (cpu.storage().is_alias_of(t->storage())) cpu = cpu.clone();
      p.global("torch._utils", "_rebuild_tensor_v2");
      p.op('(');
      p.op('(');  // persistent id: ('storage', class, key, location, numel)
      p.string("storage");
      p.global("torch", storage_class(cpu.scalar_type()));
      p.string(std::to_string(storages_.size()));
      p.string("cpu");
      p.integer(cpu.numel());
      p.op('t');
      p.op('Q');
      p.integer(0);  // storage offset
      p.int_tuple(cpu.sizes());
      p.int_tuple(cpu.strides());
      p.boolean(false);  // requires_grad
      p.global("collections", "OrderedDict");  // backward hooks: none
      p.op(')');
      p.op('R');
      p.op('t');
      p.op('R');
      storages_.push_back(cpu);
    } else if (const auto* i = std::get_if<int64_t>(&value)) {
      p.integer(*i);
    } else if (const auto* d = std::get_if<double>(&value)) {
      p.real(*d);
    } else if (const auto* b = std::get_if<bool>(&value)) {
      p.boolean(*b);
    } else {
      p.string(std::get<std::string>(value));
    }
  }
  p.op('u');
  p.op('.');
  pickle_ = p.bytes();
}

void TorchFile::write(const std::string& path) const {
  write_file_atomically(path, [&](std::FILE* f) {
    bool ok = true;
    caffe2::serialize::PyTorchStreamWriter writer([&](const void* data, size_t n) {
      if (std::fwrite(data, 1, n, f) != n) ok = false;
      return n;
    });
    writer.writeRecord("data.pkl", pickle_.data(), pickle_.size());
    writer.writeRecord(".format_version", "1", 1);
    writer.writeRecord("byteorder", "little", 6);
    for (size_t i = 0; i < storages_.size(); ++i)
      writer.writeRecord("data/" + std::to_string(i), storages_[i].data_ptr(), storages_[i].nbytes());
    writer.writeEndOfFile();
    return ok;
  });
}

void save_torch_file(const std::string& path, const SaveEntries& entries, bool ordered) {
  TorchFile(entries, ordered).write(path);
}

void save_state_dict(const std::string& path, const NamedTensors& tensors) {
  SaveEntries entries;
  for (const auto& [name, tensor] : tensors) entries.emplace_back(name, tensor);
  save_torch_file(path, entries, /*ordered=*/true);
}

namespace {

// A storage named by a pickle's persistent id: its element type, key and element count. The
// format decides where its bytes are (a zip record; after the pickles in the legacy format).
using StorageSource = std::function<torch::Tensor(c10::ScalarType type, const std::string& key, int64_t numel)>;

// Reads the pickle subset that torch.save writes for dicts of tensors and plain values
// (protocol 2: dict or OrderedDict, tuples, lists, str, int, float, bool, None, tensors through
// _rebuild_tensor_v2 / _rebuild_parameter with persistent storage ids). LibTorch's own
// unpickler turns a top-level OrderedDict into None, so state dicts saved by Python need this.
// Any other global (a class a malicious pickle asks for) is refused, never looked up or run.
class Unpickler {
 public:
  // The pickle at bytes[pos, size).
  Unpickler(const uint8_t* bytes, size_t size, size_t pos, StorageSource storages, const std::string& path,
            const std::string& what)
      : storages_(std::move(storages)), path_(path), what_(what), bytes_(bytes), size_(size), pos_(pos) {}

  // Where the pickle ended (after its STOP), once load() returned.
  size_t end() const { return pos_; }

  c10::IValue load() {
    for (;;) {
      const uint8_t code = next_byte();
      switch (code) {
        case 0x80: next_byte(); break;                                           // PROTO
        case 0x95: skip(8); break;                                               // FRAME
        case 'c': { const auto module = read_line(); push(global(module + "." + read_line())); break; }  // GLOBAL
        case 'q': memo(next_byte()); break;                                      // BINPUT
        case 'r': memo(read_le<uint32_t>()); break;                              // LONG_BINPUT
        case 0x94: memo(memo_.size()); break;                                    // MEMOIZE
        case 'h': push(memo_get(next_byte())); break;                            // BINGET
        case 'j': push(memo_get(read_le<uint32_t>())); break;                    // LONG_BINGET
        case '(': marks_.push_back(stack_.size()); break;                        // MARK
        case ')': push(c10::ivalue::Tuple::create({})); break;                   // EMPTY_TUPLE
        case 't': push(c10::ivalue::Tuple::create(pop_mark())); break;           // TUPLE
        case 0x85: tuple_of(1); break;                                           // TUPLE1
        case 0x86: tuple_of(2); break;                                           // TUPLE2
        case 0x87: tuple_of(3); break;                                           // TUPLE3
        case '}': push(empty_dict()); break;                                     // EMPTY_DICT
        case ']': push(c10::impl::GenericList(c10::AnyType::get())); break;      // EMPTY_LIST
        case 'e': { auto items = pop_mark(); auto list = top_list();             // APPENDS
                    for (auto& v : items) { list.push_back(v); } break; }
        case 'a': { auto v = pop(); top_list().push_back(v); break; }             // APPEND
        case 's': { auto v = pop(); auto k = pop(); set_item(k, v); break; }      // SETITEM
        case 'u': { auto items = pop_mark();                                     // SETITEMS
                    for (size_t i = 0; i + 1 < items.size(); i += 2) { set_item(items[i], items[i + 1]); } break; }
        case 'X': { const auto n = read_le<uint32_t>(); push(read_string(n)); break; }  // BINUNICODE
        case 0x8c: { const auto n = next_byte(); push(read_string(n)); break; }        // SHORT_BINUNICODE
        case 'K': push(static_cast<int64_t>(next_byte())); break;                // BININT1
        case 'M': push(static_cast<int64_t>(read_le<uint16_t>())); break;        // BININT2
        case 'J': push(static_cast<int64_t>(read_le<int32_t>())); break;         // BININT
        case 0x8a: push(read_long1()); break;                                    // LONG1
        case 'G': push(read_binfloat()); break;                                  // BINFLOAT
        case 0x88: push(true); break;                                            // NEWTRUE
        case 0x89: push(false); break;                                           // NEWFALSE
        case 'N': push(c10::IValue()); break;                                    // NONE
        case 'Q': push(persistent(pop())); break;                                // BINPERSID
        case 'b': pop(); break;  // BUILD: state_dict()'s _metadata attribute, not needed here
        case 'R': { auto args = pop(); auto fn = pop(); push(reduce(fn, args)); break; }  // REDUCE
        case '.': return pop();                                                  // STOP
        default: fail("pickle opcode 0x" + hex(code) + " is not one torch.save uses for a dict of tensors");
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& why) { throw InputError(path_ + ": cannot read " + what_ + ": " + why); }
  static std::string hex(uint8_t c) { char b[3]; std::snprintf(b, 3, "%02x", c); return b; }
  uint8_t next_byte() { if (pos_ >= size_) fail("ends early"); return bytes_[pos_++]; }
  void skip(size_t n) { if (pos_ + n > size_) fail("ends early"); pos_ += n; }
  template <typename T> T read_le() { T v; skip(sizeof(T)); std::memcpy(&v, bytes_ + pos_ - sizeof(T), sizeof(T)); return v; }
  std::string read_string(size_t n) { skip(n); return std::string(reinterpret_cast<const char*>(bytes_ + pos_ - n), n); }
  std::string read_line() {
    std::string s;
    for (uint8_t c; (c = next_byte()) != '\n';) s.push_back(static_cast<char>(c));
    return s;
  }
  int64_t read_long1() {
    const uint8_t n = next_byte();
    if (n > 8) fail("an integer wider than 64 bits");
    uint64_t v = 0;
    for (uint8_t i = 0; i < n; ++i) v |= uint64_t(next_byte()) << (8 * i);
    if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t(0) << (8 * n);  // sign-extend
    return static_cast<int64_t>(v);
  }
  double read_binfloat() {
    uint64_t bits = 0;
    for (int i = 0; i < 8; ++i) bits = (bits << 8) | next_byte();
    double d;
    std::memcpy(&d, &bits, 8);
    return d;
  }
  void push(c10::IValue v) { stack_.push_back(std::move(v)); }
  c10::IValue pop() { if (stack_.empty()) fail("stack underflow"); auto v = std::move(stack_.back()); stack_.pop_back(); return v; }
  c10::IValue& top() { if (stack_.empty()) fail("stack underflow"); return stack_.back(); }
  std::vector<c10::IValue> pop_mark() {
    if (marks_.empty()) fail("no mark");
    const size_t m = marks_.back();
    marks_.pop_back();
    if (m > stack_.size()) fail("a mark above the stack (values taken from under it)");
    std::vector<c10::IValue> items(std::make_move_iterator(stack_.begin() + m), std::make_move_iterator(stack_.end()));
    stack_.resize(m);
    return items;
  }
  void tuple_of(size_t n) {
    if (stack_.size() < n) fail("stack underflow");
    std::vector<c10::IValue> items(stack_.end() - n, stack_.end());
    stack_.resize(stack_.size() - n);
    push(c10::ivalue::Tuple::create(std::move(items)));
  }
  void memo(size_t index) {
    // Python numbers its memo entries in order: a larger index is a damaged file (and would
    // allocate up to 2^32 entries)
    if (index > memo_.size()) fail("memo entry " + std::to_string(index) + " out of order");
    if (index == memo_.size()) memo_.emplace_back();
    memo_[index] = top();
  }
  const c10::IValue& memo_get(size_t index) {
    if (index >= memo_.size()) fail("memo entry " + std::to_string(index) + " read before it was written");
    return memo_[index];
  }
  c10::List<c10::IValue> top_list() {
    if (!top().isList()) fail("APPEND to a " + std::string(top().tagKind()) + ", not a list");
    return top().toList();
  }
  static c10::IValue empty_dict() { return c10::impl::GenericDict(c10::AnyType::get(), c10::AnyType::get()); }
  void set_item(const c10::IValue& key, const c10::IValue& value) {
    if (!top().isGenericDict()) fail("SETITEM on something that is not a dict");
    top().toGenericDict().insert_or_assign(key, value);
  }
  // A global is kept as its dotted name; REDUCE decides what it means.
  static c10::IValue global(const std::string& name) { return c10::IValue("global:" + name); }
  // The dotted name of a global pushed by global(); "" for any other value (a plain string too).
  static std::string global_name(const c10::IValue& v) {
    if (!v.isString() || v.toStringRef().rfind("global:", 0) != 0) return "";
    return v.toStringRef().substr(7);
  }

  c10::IValue persistent(const c10::IValue& id) {
    if (!id.isTuple() || id.toTupleRef().elements().size() < 5) fail("a persistent id that is not a storage");
    // a copy: indexing the tuple's inline storage past 3 makes GCC 12 warn (-Warray-bounds)
    const std::vector<c10::IValue> e = id.toTupleRef().elements().vec();
    const std::string type = global_name(e[1]);
    if (type.empty() || !e[2].isString() || !e[4].isInt()) fail("a storage id of the wrong types");
    const std::string key = e[2].toStringRef();
    const int64_t numel = e[4].toInt();
    static const std::map<std::string, c10::ScalarType> kTypes = {
        {"torch.FloatStorage", torch::kFloat}, {"torch.DoubleStorage", torch::kDouble},
        {"torch.HalfStorage", torch::kHalf},   {"torch.BFloat16Storage", torch::kBFloat16},
        {"torch.LongStorage", torch::kLong},   {"torch.IntStorage", torch::kInt},
        {"torch.ShortStorage", torch::kShort}, {"torch.CharStorage", torch::kChar},
        {"torch.ByteStorage", torch::kByte},   {"torch.BoolStorage", torch::kBool}};
    const auto t = kTypes.find(type);
    if (t == kTypes.end()) fail("storage type " + type + " is not supported");
    if (numel < 0) fail("storage " + key + " has a negative size");
    return storages_(t->second, key, numel);
  }

  std::vector<int64_t> ints(const c10::IValue& tuple) {
    if (!tuple.isTuple()) fail("a tensor's sizes or strides are not a tuple");
    std::vector<int64_t> out;
    for (const auto& v : tuple.toTupleRef().elements()) {
      if (!v.isInt() || v.toInt() < 0) fail("a tensor's sizes or strides are not counts");
      out.push_back(v.toInt());
    }
    return out;
  }

  c10::IValue reduce(const c10::IValue& fn, const c10::IValue& args) {
    const std::string name = global_name(fn);
    if (name == "collections.OrderedDict") return empty_dict();
    if (!args.isTuple())
      fail("the arguments of " + (name.empty() ? std::string("a call") : name) + " are not a tuple");
    const auto& a = args.toTupleRef().elements();
    if (name == "torch._utils._rebuild_tensor_v2" && a.size() >= 4) {
      if (!a[0].isTensor() || !a[1].isInt()) fail("a tensor without its storage or offset");
      const auto storage = a[0].toTensor();
      const auto sizes = ints(a[2]), strides = ints(a[3]);
      const int64_t offset = a[1].toInt();
      if (sizes.size() != strides.size()) fail("a tensor with " + std::to_string(sizes.size()) + " sizes and " +
                                                std::to_string(strides.size()) + " strides");
      // The view must lie inside its storage: offset + sum((size - 1) * stride) < numel.
      bool empty = false;
      int64_t last = offset;
      for (size_t i = 0; i < sizes.size(); ++i) {
        empty = empty || sizes[i] == 0;
        int64_t span = 0;
        if (sizes[i] > 0 && (__builtin_mul_overflow(sizes[i] - 1, strides[i], &span) ||
                             __builtin_add_overflow(last, span, &last)))
          fail("a tensor too large to index");
      }
      if (offset < 0 || (!empty && last >= storage.numel()))
        fail("a tensor that reaches past its storage (" + std::to_string(storage.numel()) + " elements)");
      return storage.as_strided(sizes, strides, offset);
    }
    if (name == "torch._utils._rebuild_parameter" && !a.empty()) return a[0];
    fail("cannot rebuild " + (name.empty() ? std::string("a non-global") : name) +
         " (only dicts of tensors and plain values are read)");
  }

  StorageSource storages_;
  std::string path_, what_;
  const uint8_t* bytes_ = nullptr;
  size_t size_ = 0, pos_ = 0;
  std::vector<c10::IValue> stack_, memo_;
  std::vector<size_t> marks_;
};

// The zip format (torch.save's default since torch 1.6): data.pkl and one record per storage.
c10::IValue load_zip(const std::string& path) {
  caffe2::serialize::PyTorchStreamReader zip(path);
  auto [data, size] = zip.getRecord("data.pkl");
  auto storage = [&](c10::ScalarType type, const std::string& key, int64_t numel) {
    auto [bytes, n] = zip.getRecord("data/" + key);
    const size_t want = static_cast<size_t>(numel) * c10::elementSize(type);  // numel < 2^63; a huge one fails below
    if (numel > static_cast<int64_t>(n) || n != want)
      throw InputError(path + ": storage " + key + " holds " + std::to_string(n) + " bytes, expected " +
                       std::to_string(numel) + " elements of " + std::to_string(c10::elementSize(type)) + " bytes");
    auto t = torch::empty({numel}, type);
    std::memcpy(t.data_ptr(), bytes.get(), n);
    return t;
  };
  return Unpickler(static_cast<const uint8_t*>(data.get()), size, 0, storage, path, "data.pkl").load();
}

// The legacy format (torch.save(..., _use_new_zipfile_serialization=False), and files such as
// torchvision's resnet50-0676ba61.pth): five pickles in a row — the magic number, the protocol
// version (1001), a dict about the saving system, the object, the list of storage keys — then
// each storage in that order as an 8-byte little-endian element count and its bytes.
constexpr uint8_t kLegacyMagic[] = {0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9,
                                    0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e};

bool is_legacy(const std::vector<uint8_t>& file) {
  return file.size() >= sizeof kLegacyMagic && std::memcmp(file.data(), kLegacyMagic, sizeof kLegacyMagic) == 0;
}

c10::IValue load_legacy(const std::string& path, const std::vector<uint8_t>& file) {
  const uint8_t* bytes = file.data();
  std::map<std::string, torch::Tensor> storages;  // filled after the pickles
  auto storage = [&](c10::ScalarType type, const std::string& key, int64_t numel) {
    auto [it, fresh] = storages.emplace(key, torch::Tensor());
    if (fresh) {
      // its bytes come after the pickles, inside the file: a larger count is a damaged file
      if (numel > static_cast<int64_t>(file.size() / c10::elementSize(type)))
        throw InputError(path + ": storage " + key + " of " + std::to_string(numel) +
                         " elements is larger than the file");
      it->second = torch::empty({numel}, type);
    }
    return it->second;
  };
  auto none = [&](c10::ScalarType, const std::string&, int64_t) -> torch::Tensor {
    throw InputError(path + ": a tensor where torch.save writes none (damaged file?)");
  };
  size_t pos = sizeof kLegacyMagic;
  Unpickler protocol(bytes, file.size(), pos, none, path, "the protocol version");
  const c10::IValue version = protocol.load();
  if (!version.isInt() || version.toInt() != 1001)
    throw InputError(path + ": legacy torch.save protocol " + (version.isInt() ? std::to_string(version.toInt()) : "?") +
                     " is not supported (1001 is)");
  Unpickler sys_info(bytes, file.size(), protocol.end(), none, path, "the system information");
  sys_info.load();
  Unpickler object(bytes, file.size(), sys_info.end(), storage, path, "the object");
  c10::IValue value = object.load();
  Unpickler keys(bytes, file.size(), object.end(), none, path, "the storage keys");
  const c10::IValue key_list = keys.load();
  if (!key_list.isList()) throw InputError(path + ": the storage keys are not a list");
  pos = keys.end();
  for (const auto& key : key_list.toListRef()) {
    if (!key.isString()) throw InputError(path + ": a storage key is not a string");
    int64_t numel = 0;
    if (pos + 8 > file.size()) throw InputError(path + ": ends before storage " + key.toStringRef() + " (truncated?)");
    std::memcpy(&numel, bytes + pos, 8);
    pos += 8;
    const auto it = storages.find(key.toStringRef());
    if (it == storages.end()) throw InputError(path + ": storage " + key.toStringRef() + " is not used by the object");
    torch::Tensor& t = it->second;
    if (numel != t.numel())
      throw InputError(path + ": storage " + key.toStringRef() + " holds " + std::to_string(numel) + " elements, expected " +
                       std::to_string(t.numel()));
    if (pos + t.nbytes() > file.size())
      throw InputError(path + ": ends inside storage " + key.toStringRef() + " (truncated?)");
    std::memcpy(t.data_ptr(), bytes + pos, t.nbytes());
    pos += t.nbytes();
  }
  if (storages.size() != key_list.toListRef().size())
    throw InputError(path + ": the object uses storages the file does not hold");
  return value;
}

}  // namespace

std::vector<std::pair<std::string, c10::IValue>> load_torch_dict(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open for reading");
  char magic[2] = {0, 0};
  in.read(magic, 2);
  const bool zip = magic[0] == 'P' && magic[1] == 'K';
  in.close();
  c10::IValue value;
  if (zip) {
    try {
      value = load_zip(path);
    } catch (const c10::Error& e) {
      throw InputError(path + ": cannot read it as a torch.save file: " + e.what_without_backtrace());
    }
  } else {
    const std::vector<uint8_t> file = read_file_bytes(path);
    if (!is_legacy(file))
      throw InputError(path + ": not a torch.save file (neither a zip archive nor the legacy format's magic number)");
    try {
      value = load_legacy(path, file);
    } catch (const c10::Error& e) {  // a value of another type than the format puts there
      throw InputError(path + ": cannot read it as a torch.save file (damaged?): " + e.what_without_backtrace());
    }
  }
  if (!value.isGenericDict()) throw InputError(path + ": expected a dict, found " + value.tagKind());
  std::vector<std::pair<std::string, c10::IValue>> out;
  for (const auto& entry : value.toGenericDict()) {
    if (!entry.key().isString())
      throw InputError(path + ": a key of the dict is a " + entry.key().tagKind() + ", not a string");
    out.emplace_back(entry.key().toStringRef(), entry.value());
  }
  return out;
}

NamedTensors load_tensor_dict(const std::string& path) {
  NamedTensors tensors;
  for (auto& [name, value] : load_torch_dict(path)) {
    if (!value.isTensor())
      throw InputError(path + ": expected a dict of tensors, but entry '" + name + "' is a " + value.tagKind());
    tensors.emplace_back(name, value.toTensor());
  }
  return tensors;
}

torch::Tensor find_tensor(const NamedTensors& tensors, const std::string& name, const std::string& path) {
  for (const auto& [key, tensor] : tensors)
    if (key == name) return tensor;
  throw InputError(path + ": has no tensor named '" + name + "'");
}

}  // namespace resnet
