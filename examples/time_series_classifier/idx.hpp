#pragma once
// Reader for the IDX files of MNIST and Fashion-MNIST, and Fashion-MNIST as sequences.
//
// IDX format: bytes 0-1 are zero, byte 2 is the value type (only 0x08, unsigned byte, is supported: the one
// MNIST and Fashion-MNIST use), byte 3 the number of dimensions D (1..4), then D sizes as big-endian uint32,
// then the values in row-major order; the file ends right after them.
//   parse_idx(bytes, name)   checks everything above (sizes against the bytes present, without overflow)
//   read_idx(path)           reads a file, gzip-compressed or not (gzip needs zlib: the example is built with
//                            TSC_HAVE_ZLIB; without it a compressed file gives a message to gunzip it)
// Fashion-MNIST as sequences: an image of R rows and C columns is a sequence of R steps of C features (rows
// as time), pixels scaled to [0, 1]. load_fashion_mnist(dir, "train" or "t10k", limit) reads
// <dir>/<split>-images-idx3-ubyte[.gz] and <dir>/<split>-labels-idx1-ubyte[.gz] (Debian's
// dataset-fashion-mnist installs them in /usr/share/datasets/fashion-mnist). Missing files give a message
// saying how to install the package. Errors are DataError naming the file.

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#ifdef TSC_HAVE_ZLIB
#include <zlib.h>
#endif

#include "data.hpp"

namespace tsc {

inline const char* fashion_mnist_default_dir() { return "/usr/share/datasets/fashion-mnist"; }

struct IdxArray {
  std::vector<Index> dims;            // (D)
  std::vector<std::uint8_t> values;   // product of dims, row-major
};

inline IdxArray parse_idx(const std::vector<std::uint8_t>& bytes, const std::string& name) {
  auto fail = [&](const std::string& what) -> DataError { return DataError(name + ": " + what); };
  if (bytes.size() < 4)
    throw fail("not an IDX file: it has " + std::to_string(bytes.size()) + " bytes, fewer than the 4 of the header");
  if (bytes[0] != 0 || bytes[1] != 0) {
    const bool gz = bytes[0] == 0x1f && bytes[1] == 0x8b;
    throw fail(std::string("not an IDX file: its first two bytes must be 0") +
               (gz ? " but it is gzip-compressed (gunzip it first)" : ""));
  }
  if (bytes[2] != 0x08)
    throw fail("IDX value type " + std::to_string(bytes[2]) + " is not supported (only 8, unsigned byte)");
  const size_t D = bytes[3];
  if (D < 1 || D > 4) throw fail("IDX files here have 1 to 4 dimensions but this one has " + std::to_string(D));
  const size_t header = 4 + 4 * D;
  if (bytes.size() < header)
    throw fail("truncated header: " + std::to_string(D) + " dimensions need " + std::to_string(header) +
               " bytes but the file has " + std::to_string(bytes.size()));
  IdxArray a;
  const std::uint64_t available = bytes.size() - header;
  std::uint64_t count = 1;
  bool too_many = false, zero = false;  // too_many: the product passes 2^62 (never overflows)
  for (size_t k = 0; k < D; ++k) {
    const std::uint8_t* p = bytes.data() + 4 + 4 * k;
    const std::uint64_t size =
        (std::uint64_t{p[0]} << 24) | (std::uint64_t{p[1]} << 16) | (std::uint64_t{p[2]} << 8) | p[3];
    a.dims.push_back(static_cast<Index>(size));
    zero = zero || size == 0;
    if (size != 0 && count > (std::uint64_t{1} << 62) / size) too_many = true;
    if (!too_many) count *= size;
  }
  if (zero) count = 0;
  if (zero ? available != 0 : (too_many || count != available)) {
    std::string shape;
    for (Index d : a.dims) shape += (shape.empty() ? "" : " x ") + std::to_string(d);
    const bool more = !zero && (too_many || count > available);
    throw fail("dimensions " + shape + " need " +
               (too_many && !zero ? "more than " + std::to_string(available) : std::to_string(count)) +
               " values but the file has " + std::to_string(available) + " after its header" +
               (more ? " (truncated?)" : " (trailing bytes)"));
  }
  a.values.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return a;
}

// The bytes of a file, decompressed when it is gzip (with zlib). DataError when it cannot be read.
inline std::vector<std::uint8_t> read_file_bytes(const std::string& path) {
  constexpr size_t kMaxBytes = size_t{1} << 30;
  std::vector<std::uint8_t> bytes;
#ifdef TSC_HAVE_ZLIB
  gzFile file = gzopen(path.c_str(), "rb");  // also reads uncompressed files unchanged
  if (!file) throw DataError(path + ": cannot open the file");
  std::uint8_t chunk[1 << 16];
  for (;;) {
    const int n = gzread(file, chunk, sizeof(chunk));
    if (n < 0) {
      int code = 0;
      const std::string message = gzerror(file, &code);
      gzclose(file);
      throw DataError(path + ": cannot decompress: " + message);
    }
    if (n == 0) break;
    bytes.insert(bytes.end(), chunk, chunk + n);
    if (bytes.size() > kMaxBytes) {
      gzclose(file);
      throw DataError(path + ": larger than 1 GiB");
    }
  }
  gzclose(file);
#else
  std::ifstream in(path, std::ios::binary);
  if (!in) throw DataError(path + ": cannot open the file");
  bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (bytes.size() > kMaxBytes) throw DataError(path + ": larger than 1 GiB");
  if (bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b)
    throw DataError(path + ": gzip-compressed, and this program was built without zlib (gunzip it first)");
#endif
  return bytes;
}

inline IdxArray read_idx(const std::string& path) { return parse_idx(read_file_bytes(path), path); }

namespace idx_detail {
inline bool exists(const std::string& path) { return static_cast<bool>(std::ifstream(path, std::ios::binary)); }

// <dir>/<base>, else <dir>/<base>.gz; DataError explaining how to get Fashion-MNIST when neither exists.
inline std::string find_file(const std::string& dir, const std::string& base) {
  const std::string path = dir + "/" + base;
  if (exists(path)) return path;
  if (exists(path + ".gz")) return path + ".gz";
  throw DataError("Fashion-MNIST not found: neither " + path + " nor " + path +
                  ".gz exists. Install Debian's package (sudo apt-get install dataset-fashion-mnist, files in " +
                  fashion_mnist_default_dir() + ") or pass the directory holding the IDX files");
}
}  // namespace idx_detail

inline std::vector<std::string> fashion_mnist_classes() {
  return {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
}

inline bool fashion_mnist_available(const std::string& dir) {
  for (const char* split : {"train", "t10k"})
    for (const char* kind : {"-images-idx3-ubyte", "-labels-idx1-ubyte"}) {
      const std::string path = dir + "/" + split + kind;
      if (!idx_detail::exists(path) && !idx_detail::exists(path + ".gz")) return false;
    }
  return true;
}

// Images (N, R, C) and labels (N) -> Dataset x (N', R, C) in [0, 1], N' = min(N, limit) (limit 0: all).
inline Dataset images_to_dataset(const IdxArray& images, const IdxArray& labels, const std::string& images_name,
                                 const std::string& labels_name, Index limit, std::vector<std::string> classes) {
  if (images.dims.size() != 3)
    throw DataError(images_name + ": images need 3 dimensions (count, rows, columns) but the file has " +
                    std::to_string(images.dims.size()));
  if (labels.dims.size() != 1)
    throw DataError(labels_name + ": labels need 1 dimension but the file has " + std::to_string(labels.dims.size()));
  const Index N = images.dims[0], R = images.dims[1], C = images.dims[2];
  if (labels.dims[0] != N)
    throw DataError(labels_name + ": " + std::to_string(labels.dims[0]) + " labels but " + images_name + " has " +
                    std::to_string(N) + " images");
  if (N == 0 || R == 0 || C == 0) throw DataError(images_name + ": no image (a dimension is 0)");
  const Index n = limit > 0 ? std::min(N, limit) : N;
  Dataset d;
  d.class_names = std::move(classes);
  d.x.resize(n, R, C);
  for (Index i = 0; i < n * R * C; ++i) d.x.data()[i] = static_cast<float>(images.values[static_cast<size_t>(i)]) / 255.0f;
  for (Index i = 0; i < n; ++i) {
    const int label = labels.values[static_cast<size_t>(i)];
    if (label >= static_cast<int>(d.class_names.size()))
      throw DataError(labels_name + ": label " + std::to_string(label) + " of item " + std::to_string(i) +
                      " is not a class index below " + std::to_string(d.class_names.size()));
    d.labels.push_back(label);
    d.lengths.push_back(R);
  }
  return d;
}

// split: "train" or "t10k". limit > 0 keeps the first `limit` images.
inline Dataset load_fashion_mnist(const std::string& dir, const std::string& split, Index limit = 0) {
  const std::string images = idx_detail::find_file(dir, split + "-images-idx3-ubyte");
  const std::string labels = idx_detail::find_file(dir, split + "-labels-idx1-ubyte");
  return images_to_dataset(read_idx(images), read_idx(labels), images, labels, limit, fashion_mnist_classes());
}

}  // namespace tsc
