#pragma once
// Little-endian byte encoding for the weight files, independent of the host's byte order:
//   ByteWriter   appends u32, u64, raw bytes and arrays of float/double to a byte vector.
//   ByteReader   reads the same from a byte span with a bounds check before every read: reading past the end
//                throws FormatError "<source>: truncated: <field> at offset X needs N bytes but only R remain".
//   InputFile    a file read in bounded steps, with its size when it is a regular file (FileError when it
//                cannot be opened or read).
//   read_some    reads up to n bytes of a stream in bounded chunks (a corrupt size field cannot over-allocate).

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <istream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "seqattn/io/errors.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <sys/stat.h>
#define SEQATTN_IO_POSIX 1
#endif

namespace seqattn::detail {

inline bool host_is_little_endian() {
  const std::uint32_t one = 1;
  unsigned char first = 0;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

// Copies n scalars (float or double) between memory and little-endian bytes (either direction: the
// conversion is a byte reversal per scalar on big-endian hosts, a plain copy otherwise).
inline void copy_little_endian(const unsigned char* src, unsigned char* dst, std::size_t n, std::size_t width) {
  if (n == 0) return;
  if (host_is_little_endian()) {
    std::memcpy(dst, src, n * width);
    return;
  }
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t k = 0; k < width; ++k) dst[i * width + k] = src[i * width + width - 1 - k];
}

class ByteWriter {
 public:
  void u32(std::uint32_t v) { uint(v, 4); }
  void u64(std::uint64_t v) { uint(v, 8); }
  void raw(const void* data, std::size_t size) {
    const auto* p = static_cast<const unsigned char*>(data);
    bytes_.insert(bytes_.end(), p, p + size);
  }
  template <class S>
  void scalars(const S* values, std::size_t n) {
    static_assert(std::is_floating_point<S>::value, "ByteWriter::scalars: float or double");
    const std::size_t at = bytes_.size();
    bytes_.resize(at + n * sizeof(S));
    copy_little_endian(reinterpret_cast<const unsigned char*>(values), bytes_.data() + at, n, sizeof(S));
  }
  // Overwrites 8 bytes at `offset` (a size field known only at the end).
  void patch_u64(std::size_t offset, std::uint64_t v) {
    for (int i = 0; i < 8; ++i) bytes_[offset + static_cast<std::size_t>(i)] = static_cast<unsigned char>(v >> (8 * i));
  }
  std::size_t size() const { return bytes_.size(); }
  std::vector<unsigned char>& bytes() { return bytes_; }

 private:
  void uint(std::uint64_t v, int width) {
    for (int i = 0; i < width; ++i) bytes_.push_back(static_cast<unsigned char>(v >> (8 * i)));
  }
  std::vector<unsigned char> bytes_;
};

class ByteReader {
 public:
  // `source` prefixes every error message: "load_weights(model.bin)".
  ByteReader(const unsigned char* data, std::size_t size, std::string source)
      : data_(data), size_(size), source_(std::move(source)) {}

  std::size_t offset() const { return offset_; }
  std::size_t remaining() const { return size_ - offset_; }
  const std::string& source() const { return source_; }

  std::uint32_t u32(const char* field) { return static_cast<std::uint32_t>(uint(field, 4)); }
  std::uint64_t u64(const char* field) { return uint(field, 8); }
  // The next n bytes (bounds-checked), advancing past them.
  const unsigned char* take(std::size_t n, const char* field) {
    need(n, field);
    const unsigned char* p = data_ + offset_;
    offset_ += n;
    return p;
  }

 private:
  void need(std::size_t n, const char* field) const {
    if (n > remaining())
      throw_format(source_, ": truncated: ", field, " at offset ", offset_, " needs ", n, " bytes but only ",
                   remaining(), " remain");
  }
  std::uint64_t uint(const char* field, int width) {
    const unsigned char* p = take(static_cast<std::size_t>(width), field);
    std::uint64_t v = 0;
    for (int i = width - 1; i >= 0; --i) v = (v << 8) | p[i];
    return v;
  }
  const unsigned char* data_;
  std::size_t size_;
  std::size_t offset_ = 0;
  std::string source_;
};

// An input file read in bounded steps: the loaders read a fixed header first, check it (and, for a regular
// file, its declared size against the real one) and only then read what the header declares, so a huge file
// that is not a weights file, or an endless one (/dev/zero, a pipe), costs no more than its first bytes.
class InputFile {
 public:
  // FileError "<who>: cannot open '<path>' for reading: <reason>".
  InputFile(const std::string& path, std::string who) : path_(path), who_(std::move(who)) {
    file_ = std::fopen(path.c_str(), "rb");
    if (!file_) throw_file(who_, ": cannot open '", path, "' for reading: ", std::strerror(errno));
#ifdef SEQATTN_IO_POSIX
    struct stat st;
    if (::fstat(::fileno(file_), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
      regular_ = true;
      size_ = static_cast<std::uint64_t>(st.st_size);
    }
#endif
  }
  ~InputFile() { std::fclose(file_); }
  InputFile(const InputFile&) = delete;
  InputFile& operator=(const InputFile&) = delete;

  // A regular file has a known size(); a pipe, a device or /dev/zero does not (and may never end), nor does a
  // file that reports the size 0 (an empty file, or one of /proc, which is read like a pipe).
  bool regular() const { return regular_; }
  std::uint64_t size() const { return size_; }

  // Appends up to `n` bytes to `bytes` in 64 KiB steps (memory grows with the bytes that arrive, not with n);
  // returns the number read, less than n at the end of the file. FileError on a read error.
  std::size_t read(std::vector<unsigned char>& bytes, std::uint64_t n) {
    std::size_t total = 0;
    unsigned char chunk[1 << 16];
    while (n > 0) {
      const std::size_t want = n < sizeof chunk ? static_cast<std::size_t>(n) : sizeof chunk;
      const std::size_t got = std::fread(chunk, 1, want, file_);
      bytes.insert(bytes.end(), chunk, chunk + got);
      total += got;
      n -= got;
      if (got < want) break;
    }
    if (std::ferror(file_)) throw_file(who_, ": cannot read '", path_, "': ", std::strerror(errno));
    return total;
  }

 private:
  std::string path_, who_;
  std::FILE* file_ = nullptr;
  bool regular_ = false;
  std::uint64_t size_ = 0;
};

// Appends up to `n` bytes of `in` to `bytes` in bounded chunks (a corrupt size field cannot make it allocate
// more than the stream holds). Returns the number of bytes read (less than n at the end of the stream).
inline std::size_t read_some(std::istream& in, std::vector<unsigned char>& bytes, std::uint64_t n) {
  std::size_t total = 0;
  char chunk[1 << 16];
  while (n > 0 && in) {
    const std::size_t want = n < sizeof chunk ? static_cast<std::size_t>(n) : sizeof chunk;
    in.read(chunk, static_cast<std::streamsize>(want));
    const auto got = static_cast<std::size_t>(in.gcount());
    bytes.insert(bytes.end(), reinterpret_cast<unsigned char*>(chunk), reinterpret_cast<unsigned char*>(chunk) + got);
    total += got;
    n -= got;
    if (got < want) break;
  }
  return total;
}

}  // namespace seqattn::detail
