#pragma once
// The frame shared by seqattn's binary files (weights files "SEQATTNW", model files "SEQATTNM"):
//   0  8  magic;  8  4  format version;  12  4  scalar type (1 = float32, 2 = float64);  16  8  total file size,
//   checksum included;  ...;  size-4  4  CRC-32 (zlib's) of every byte before it.
//   check_frame_header(...)   magic, version (a newer version is refused with a message saying so), scalar type
//                             (one required type, or either), the declared size (at least the minimum, at most
//                             what the system addresses, equal to the real size when known); returns the declared
//                             size and the scalar code
//   check_crc(bytes, who)     the stored checksum against the computed one
//   read_framed(path | stream, header_size, check, who)   reads the header, calls check(bytes, actual size or
//                             kUnknownSize) for the declared size, then reads exactly that many bytes (never more,
//                             so a pipe, /dev/zero or a large unrelated file costs its first bytes)

#include <cstdint>
#include <cstring>
#include <istream>
#include <string>
#include <vector>

#include "seqattn/core/config.hpp"
#include "seqattn/io/detail/byte_io.hpp"
#include "seqattn/io/detail/crc32.hpp"
#include "seqattn/io/errors.hpp"

namespace seqattn::detail {

inline constexpr std::uint64_t kUnknownSize = ~std::uint64_t{0};

struct FrameHeader {
  std::uint32_t scalar = 0;
  std::uint64_t total = 0;
};

inline const char* frame_scalar_name(std::uint32_t code) {
  return code == 1 ? "float32" : code == 2 ? "float64" : "unknown";
}

// `n` bytes of the file are at `p` (fewer than 24 only when the file is that short); `actual` is the real file
// size, kUnknownSize when it is not known yet (a stream, a pipe). `kind`: "seqattn weights file";
// `required_scalar`: 1 or 2 (MismatchError for the other, `content` naming what the file holds: "weights"), or 0.
inline FrameHeader check_frame_header(const unsigned char* p, std::size_t n, std::uint64_t actual,
                                      const char (&magic)[8], const char* kind, std::uint32_t version,
                                      std::uint32_t required_scalar, const char* content, std::uint64_t min_size,
                                      const std::string& who) {
  const std::string magic_text(magic, 8);
  const std::size_t magic_len = n < 8 ? n : 8;
  if (magic_len == 0) throw_format(who, ": empty file (a ", kind, " starts with \"", magic_text, "\")");
  if (std::memcmp(p, magic, magic_len) != 0) {
    std::string found;
    for (std::size_t i = 0; i < magic_len; ++i) {
      const char c = static_cast<char>(p[i]);
      found += (c >= 32 && c < 127) ? std::string(1, c) : cat("\\x", std::hex, static_cast<int>(p[i]));
    }
    throw_format(who, ": not a ", kind, ": magic expected \"", magic_text, "\" but found \"", found, "\"");
  }
  ByteReader header(p, n, who);
  header.take(8, "magic");
  const std::uint32_t found_version = header.u32("format version");
  if (found_version != version)
    throw_format(who, ": format version ", found_version, " is not supported: this seqattn (", version_string(),
                 ") reads version ", version,
                 found_version > version ? "; the file was written by a newer seqattn" : "");
  FrameHeader h;
  h.scalar = header.u32("scalar type");
  if (h.scalar != 1 && h.scalar != 2)
    throw_format(who, ": unknown scalar type code ", h.scalar, " (1 = float32, 2 = float64)");
  if (required_scalar != 0 && h.scalar != required_scalar)
    throw_mismatch(who, ": scalar type expected ", frame_scalar_name(required_scalar),
                   " (the model's) but the file holds ", frame_scalar_name(h.scalar), " ", content);
  h.total = header.u64("file size");
  if (h.total < min_size)
    throw_format(who, ": corrupt header: file size field is ", h.total, ", less than the minimum ", min_size);
  if (h.total > static_cast<std::uint64_t>(PTRDIFF_MAX))
    throw_format(who, ": corrupt header: file size field is ", h.total, ", more than this system can address");
  if (actual != kUnknownSize) {
    if (actual < h.total) throw_format(who, ": truncated file: expected ", h.total, " bytes but found ", actual);
    if (actual > h.total)
      throw_format(who, ": ", actual - h.total, " trailing bytes after the end of the file (expected ", h.total,
                   " bytes but found ", actual, ")");
  }
  return h;
}

inline void check_crc(const std::vector<unsigned char>& bytes, const std::string& who) {
  const std::size_t body = bytes.size() - 4;
  std::uint32_t stored = 0;
  for (int i = 3; i >= 0; --i) stored = (stored << 8) | bytes[body + static_cast<std::size_t>(i)];
  const std::uint32_t computed = crc32(bytes.data(), body);
  if (stored != computed)
    throw_format(who, ": checksum mismatch (stored 0x", std::hex, stored, ", computed 0x", computed, std::dec,
                 "): the file is corrupt");
}

// The bytes of one framed file from `in` (exactly its bytes; the stream may go on). check(bytes, actual) checks
// the header and returns the declared total size.
template <class Check>
std::vector<unsigned char> read_framed(std::istream& in, std::size_t header_size, Check&& check) {
  std::vector<unsigned char> bytes;
  read_some(in, bytes, header_size);
  const std::uint64_t total = check(bytes, bytes.size() < header_size ? bytes.size() : kUnknownSize);
  read_some(in, bytes, total - bytes.size());  // grows with the bytes that arrive, up to `total`
  return bytes;
}

// The bytes of the framed file at `path`: the header first (checked against the size of a regular file), then
// the rest, never more than the declared size.
template <class Check>
std::vector<unsigned char> read_framed(const std::string& path, std::size_t header_size, Check&& check,
                                       const std::string& who) {
  InputFile file(path, who);
  std::vector<unsigned char> bytes;
  file.read(bytes, header_size);
  std::uint64_t actual = kUnknownSize;  // a pipe or a device: known at its end only
  if (file.regular()) actual = file.size();
  if (!file.regular() && bytes.size() < header_size) actual = bytes.size();
  const std::uint64_t total = check(bytes, actual);
  if (file.regular()) bytes.reserve(static_cast<std::size_t>(total));
  file.read(bytes, total - bytes.size());
  if (bytes.size() == total && file.read(bytes, 1) > 0)
    throw_format(who, ": the input goes on after the ", total, " bytes its header declares",
                 file.regular() ? " (the file grew while it was read)" : "");
  return bytes;
}

}  // namespace seqattn::detail
