#pragma once
// The safetensors container (the format of Hugging Face's `safetensors`, used with PyTorch):
//   8 bytes   N, unsigned little-endian: size of the header
//   N bytes   JSON header (UTF-8): {"__metadata__": {"key": "value", ...},
//                                   "<name>": {"dtype": "F32", "shape": [d0, ...], "data_offsets": [begin, end]}, ...}
//   rest      the byte buffer; offsets are relative to its start; values are little-endian, row-major.
// Validation (every violation throws FormatError naming the tensor): the header is a JSON object without
// duplicate keys; each entry has exactly dtype (a known name), shape (non-negative integers, each at most
// INT64_MAX, the product of the non-zero ones a 64-bit count) and data_offsets
// (begin <= end); end - begin equals the element count times the dtype size; the entries cover the buffer
// exactly, without overlap or hole; the file is not truncated and has no trailing bytes.
// read_file reads a file in bounded steps (header size, header, then the data its offsets declare, checked
// against a regular file's size first). Needs nlohmann-json (Debian: nlohmann-json3-dev); only
// io/safetensors.hpp includes this header.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <istream>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "seqattn/io/detail/byte_io.hpp"
#include "seqattn/io/errors.hpp"

namespace seqattn::detail::safetensors {

inline constexpr std::uint64_t kMaxHeaderSize = 100000000;  // as the reference implementation

struct Entry {
  std::string name;
  std::string dtype;
  std::vector<std::uint64_t> shape;
  std::uint64_t begin = 0, end = 0;
  std::uint64_t count() const {
    std::uint64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

struct Header {
  std::vector<Entry> entries;  // sorted by name
  std::map<std::string, std::string> metadata;
  std::uint64_t data_size = 0;  // the byte buffer's size implied by the offsets
};

// Bytes per element of a safetensors dtype, 0 when unknown.
inline std::size_t dtype_size(const std::string& dtype) {
  static const std::map<std::string, std::size_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
      {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1},   {"BOOL", 1}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  const auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

inline std::string shape_text(const std::vector<std::uint64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// Parses and validates the JSON header (not yet the buffer size, which the caller checks against data_size).
inline Header parse_header(const unsigned char* text, std::size_t size, const std::string& who) {
  using json = nlohmann::json;
  // Duplicate keys are an error (nlohmann would keep the last one silently): one key set per open object.
  std::vector<std::vector<std::string>> open_objects;
  std::string duplicate;
  const json::parser_callback_t cb = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) open_objects.emplace_back();
    if (event == json::parse_event_t::object_end && !open_objects.empty()) open_objects.pop_back();
    if (event == json::parse_event_t::key && !open_objects.empty() && parsed.is_string()) {
      auto& keys = open_objects.back();
      const auto& key = parsed.get_ref<const std::string&>();
      if (std::find(keys.begin(), keys.end(), key) != keys.end()) {
        if (duplicate.empty()) duplicate = key;
      } else {
        keys.push_back(key);
      }
    }
    return true;
  };
  // nlohmann stops at a NUL byte; JSON text never contains one (strings escape control characters).
  if (std::memchr(text, 0, size) != nullptr) throw_format(who, ": the header contains a NUL byte");
  const json root = json::parse(text, text + size, cb, /*allow_exceptions=*/false);
  if (root.is_discarded()) throw_format(who, ": the header is not valid JSON");
  if (!duplicate.empty()) throw_format(who, ": the header has the key '", duplicate, "' twice");
  if (!root.is_object()) throw_format(who, ": the header must be a JSON object");

  Header header;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) throw_format(who, ": __metadata__ must be an object of strings");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) throw_format(who, ": __metadata__ value of '", m.key(), "' is not a string");
        header.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string at = cat(who, ": tensor '", name, "'");
    if (!v.is_object()) throw_format(at, ": entry is not an object");
    if (v.size() != 3 || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
      throw_format(at, ": entry must have exactly dtype, shape and data_offsets");
    Entry e;
    e.name = name;
    const json& dtype = v["dtype"];
    if (!dtype.is_string()) throw_format(at, ": dtype is not a string");
    e.dtype = dtype.get<std::string>();
    const std::size_t width = dtype_size(e.dtype);
    if (width == 0) throw_format(at, ": unknown dtype '", e.dtype, "'");
    const json& shape = v["shape"];
    if (!shape.is_array()) throw_format(at, ": shape is not an array");
    for (const json& d : shape) {
      if (!d.is_number_unsigned()) throw_format(at, ": shape has an entry that is not a non-negative integer");
      e.shape.push_back(d.get<std::uint64_t>());
    }
    // Dimensions become seqattn Index values (signed 64-bit): each at most INT64_MAX, and the product of the
    // non-zero ones a 64-bit count even when another dimension is 0 (else data_offsets bound it below).
    constexpr std::uint64_t kMaxCount = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    for (std::size_t k = 0; k < e.shape.size(); ++k)
      if (e.shape[k] > kMaxCount)
        throw_format(at, ": dimension ", k, " of shape ", shape_text(e.shape), " is ", e.shape[k],
                     ", more than the largest supported ", kMaxCount);
    if (std::find(e.shape.begin(), e.shape.end(), std::uint64_t{0}) != e.shape.end()) {
      std::uint64_t nonzero = 1;
      for (const std::uint64_t d : e.shape) {
        if (d > 0 && nonzero > kMaxCount / d)
          throw_format(at, ": the product of the dimensions of shape ", shape_text(e.shape),
                       " overflows a 64-bit count");
        if (d > 0) nonzero *= d;
      }
    }
    const json& offsets = v["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
        !offsets[1].is_number_unsigned())
      throw_format(at, ": data_offsets must be two non-negative integers [begin, end]");
    e.begin = offsets[0].get<std::uint64_t>();
    e.end = offsets[1].get<std::uint64_t>();
    if (e.begin > e.end) throw_format(at, ": data_offsets [", e.begin, ", ", e.end, "] end before they begin");
    // Element count without overflow: every partial product is bounded by what the data_offsets hold.
    const std::uint64_t bytes = e.end - e.begin, cap = bytes / width;
    std::uint64_t count = 1;
    const bool empty = std::find(e.shape.begin(), e.shape.end(), std::uint64_t{0}) != e.shape.end();
    for (auto d : e.shape) {
      if (empty) {
        count = 0;
        break;
      }
      if (count > cap / d)
        throw_format(at, ": shape ", shape_text(e.shape), " of ", e.dtype, " does not fit its data_offsets [", e.begin,
                     ", ", e.end, "] (", bytes, " bytes)");
      count *= d;
    }
    if (count * width != bytes)
      throw_format(at, ": shape ", shape_text(e.shape), " of ", e.dtype, " needs ", count * width,
                   " bytes but data_offsets [", e.begin, ", ", e.end, "] hold ", bytes);
    header.entries.push_back(std::move(e));
  }
  // The entries must tile the buffer: sorted by offset, each begins where the previous ended.
  std::vector<const Entry*> order;
  for (const auto& e : header.entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  std::uint64_t pos = 0;
  for (const Entry* e : order) {
    if (e->begin != pos)
      throw_format(who, ": tensor '", e->name, "' data_offsets [", e->begin, ", ", e->end, "] ",
                   e->begin < pos ? "overlap the previous tensor" : "leave a hole in the buffer", " (expected begin ", pos, ")");
    pos = e->end;
  }
  header.data_size = pos;
  return header;
}

// A decoded file: its header and a pointer to the byte buffer inside `bytes`.
struct File {
  Header header;
  const unsigned char* data = nullptr;
};

inline std::uint64_t header_length(const unsigned char* p) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | p[i];
  return n;
}

// The checks on the 8-byte header size `n` of a file of `file_size` bytes, then on the `have` bytes after the
// header against the `data_size` its offsets imply.
inline void check_header_size(std::uint64_t n, std::uint64_t file_size, const std::string& who) {
  if (n > kMaxHeaderSize) throw_format(who, ": header size ", n, " exceeds the limit of ", kMaxHeaderSize, " bytes");
  const std::uint64_t follow = file_size < 8 ? 0 : file_size - 8;
  if (n > follow)
    throw_format(who, ": truncated: the header needs ", n, " bytes but only ", follow, " follow its size");
}
inline void check_data_size(std::uint64_t have, std::uint64_t data_size, const std::string& who) {
  if (have < data_size)
    throw_format(who, ": truncated: the tensors need ", data_size, " bytes of data but the file has ", have);
  if (have > data_size) throw_format(who, ": ", have - data_size, " trailing bytes after the last tensor's data");
}

inline File decode(const std::vector<unsigned char>& bytes, const std::string& who) {
  if (bytes.size() < 8)
    throw_format(who, ": truncated: a safetensors file starts with an 8-byte header size but the file has ", bytes.size(),
                 " bytes");
  const std::uint64_t n = header_length(bytes.data());
  check_header_size(n, bytes.size(), who);
  File f;
  f.header = parse_header(bytes.data() + 8, static_cast<std::size_t>(n), who);
  check_data_size(bytes.size() - 8 - n, f.header.data_size, who);
  f.data = bytes.data() + 8 + n;
  return f;
}

// Reads exactly one safetensors file from a stream (header size, header, then the buffer its offsets imply).
inline std::vector<unsigned char> read_stream(std::istream& in, const std::string& who) {
  std::vector<unsigned char> bytes;
  if (read_some(in, bytes, 8) < 8) return bytes;  // decode reports the truncation
  const std::uint64_t n = header_length(bytes.data());
  if (n > kMaxHeaderSize || read_some(in, bytes, n) < n) return bytes;
  const Header h = parse_header(bytes.data() + 8, static_cast<std::size_t>(n), who);
  read_some(in, bytes, h.data_size);
  return bytes;
}

// Reads the safetensors file at `path` in bounded steps: the header size first (bounded by kMaxHeaderSize and,
// for a regular file, by the file's size), then the header, whose offsets give the data size, checked against
// the file's size before the data is read. A non-regular file (pipe, device) is read up to the data size and
// must end there. decode() then checks everything again on the bytes.
inline std::vector<unsigned char> read_file(const std::string& path, const std::string& who) {
  InputFile file(path, who);
  std::vector<unsigned char> bytes;
  if (file.read(bytes, 8) < 8) return bytes;  // decode reports the truncation
  const std::uint64_t n = header_length(bytes.data());
  check_header_size(n, file.regular() ? file.size() : 8 + n, who);
  if (file.read(bytes, n) < n) return bytes;
  const Header h = parse_header(bytes.data() + 8, static_cast<std::size_t>(n), who);
  if (file.regular()) {
    check_data_size(file.size() - 8 - n, h.data_size, who);
    bytes.reserve(static_cast<std::size_t>(8 + n + h.data_size));
  }
  if (file.read(bytes, h.data_size) == h.data_size && file.read(bytes, 1) > 0)
    throw_format(who, ": the input goes on after the ", h.data_size, " bytes of data its header declares",
                 file.regular() ? " (the file grew while it was read)" : "");
  return bytes;
}

inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000U) << 16;
  std::uint32_t exp = (h >> 10) & 0x1FU, mant = h & 0x3FFU, bits = 0;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000U | (mant << 13);  // inf, nan
  } else if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalize
      int e = -1;
      do {
        ++e;
        mant <<= 1;
      } while ((mant & 0x400U) == 0);
      bits = sign | (static_cast<std::uint32_t>(112 - e) << 23) | ((mant & 0x3FFU) << 13);
    }
  } else {
    bits = sign | ((exp + 112) << 23) | (mant << 13);
  }
  float f = 0;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Element i of a floating-point tensor (F64, F32, F16, BF16) as double; little-endian source.
inline double float_element(const unsigned char* data, const std::string& dtype, std::size_t i) {
  const std::size_t w = dtype_size(dtype);
  std::uint64_t bits = 0;
  for (std::size_t k = w; k-- > 0;) bits = (bits << 8) | data[i * w + k];
  if (dtype == "F64") {
    double d = 0;
    std::memcpy(&d, &bits, 8);
    return d;
  }
  std::uint32_t b32 = static_cast<std::uint32_t>(bits);
  if (dtype == "F16") return half_to_float(static_cast<std::uint16_t>(bits));
  if (dtype == "BF16") b32 <<= 16;
  float f = 0;
  std::memcpy(&f, &b32, 4);
  return f;
}

inline bool is_float_dtype(const std::string& dtype) {
  return dtype == "F64" || dtype == "F32" || dtype == "F16" || dtype == "BF16";
}

}  // namespace seqattn::detail::safetensors
