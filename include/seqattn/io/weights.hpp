#pragma once
// Saving and loading the weights of a model (any Layer<S>, e.g. a Sequential<S>) in seqattn's own binary
// format. The architecture stays in code: build the same model, then load its weights.
//
//   save_weights(model, "model.sqw");          // atomic: a crash or a full disk never leaves a partial file
//   load_weights(model, "model.sqw");          // validates everything, then copies; throws, model unchanged
//   save_weights(model, out_stream);  load_weights(model, in_stream);
//   load_weights(model, "model.sqw", WeightsOptions().allow_non_finite(true));   // also for save_weights
//
// What is saved: every tensor of model.params() (trainable) and model.buffers() (saved, not trained, e.g.
// batch-norm running statistics), each with its full name ("0.dense.W"), its kind, its shape and its values.
//
// Format version 1. Integers are unsigned little-endian; values are IEEE-754 little-endian, row-major.
//   offset  bytes  field
//   0       8      magic "SEQATTNW"
//   8       4      format version (1)
//   12      4      scalar type: 1 = float32, 2 = float64
//   16      8      total file size in bytes, checksum included
//   24      8      number of tensors N
//   32      ...    N records: kind (4: 0 = parameter, 1 = buffer), name length L (4, 1..65535), name (L bytes,
//                  UTF-8), number of dimensions D (4, 0..8), dimensions (8 each, at most INT64_MAX), values
//                  (product of the dimensions times the scalar size)
//   size-4  4      CRC-32 (zlib's) of every byte before it
//
// Loading checks, in this order, before it modifies anything: magic, version (a newer version is refused
// with a message saying so), scalar type (a float32 file does not load into a double model: MismatchError),
// size (truncated or trailing bytes), checksum, every record (bounds, duplicate names, dimensions: each at most
// INT64_MAX and their product a count, printed unsigned), then against the model: every model tensor is in the
// file, the file has no tensor the model lacks, kinds and shapes are equal; last, every value is finite.
// Loading from a path reads the 32-byte header first and checks magic, version, scalar type and, for a regular
// file, the declared size against the file's size before it reads (and allocates) the rest; it never reads more
// than the declared size, so a large file that is not a weights file, /dev/zero or a pipe costs its first bytes
// (a pipe is read up to the declared size as the bytes arrive and must end there).
// Non-finite weights: by default a load refuses a file holding a NaN or Inf and a save refuses to write a model
// holding one (a file that would not load by default): NonFiniteError (a FormatError) naming the file, the
// tensor, the element ("element 3 = (1, 1)", row-major) and the value. WeightsOptions().allow_non_finite(true)
// passes them through in both directions.
// Errors (io/errors.hpp): FileError (open/read/write/rename, a target without write permission),
// FormatError (invalid bytes; NonFiniteError), MismatchError (valid file, different model); messages start
// with "save_weights(<path>)" or "load_weights(<path>)" and name the tensor with the expected and the found value.
// The stream overloads read exactly the file's bytes (the stream may go on after them) and write with the
// stream's own guarantees (no atomic replace). Saving to a path (io/detail/atomic_file.hpp) follows a symbolic
// link (the link stays, its target is replaced), keeps the permission bits of the file it replaces and refuses
// to replace a file without write permission (mode 0444, even for root).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "seqattn/core/layer.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/io/detail/atomic_file.hpp"
#include "seqattn/io/detail/byte_io.hpp"
#include "seqattn/io/detail/crc32.hpp"
#include "seqattn/io/detail/non_finite.hpp"
#include "seqattn/io/errors.hpp"

namespace seqattn {

// Options of save_weights and load_weights.
struct WeightsOptions {
  // false (default): a load refuses a file holding a NaN or Inf value and a save refuses to write a model
  // holding one (NonFiniteError naming the tensor, the element and the value); true: both pass them through.
  SEQATTN_ARG(bool, allow_non_finite, false)
};

namespace detail::weights_format {

inline constexpr char kMagic[8] = {'S', 'E', 'Q', 'A', 'T', 'T', 'N', 'W'};
inline constexpr std::uint32_t kVersion = 1;
inline constexpr std::size_t kHeaderSize = 32;    // magic .. tensor count
inline constexpr std::size_t kMinFileSize = 36;  // header + checksum
inline constexpr std::uint32_t kMaxNameLength = 65535;
inline constexpr std::uint32_t kMaxDims = 8;
enum : std::uint32_t { kParameter = 0, kBuffer = 1 };

template <class S>
struct ScalarCode;
template <>
struct ScalarCode<float> {
  static constexpr std::uint32_t value = 1;
};
template <>
struct ScalarCode<double> {
  static constexpr std::uint32_t value = 2;
};
inline const char* scalar_name(std::uint32_t code) {
  return code == 1 ? "float32" : code == 2 ? "float64" : "unknown";
}
inline const char* kind_name(std::uint32_t kind) { return kind == kParameter ? "parameter" : "buffer"; }

inline std::string shape_text(const std::vector<Index>& shape) {
  Param<float> p;
  p.shape = shape;
  return p.shape_string();
}

// One tensor record of a decoded file; `data` points into the file's bytes.
struct Record {
  std::uint32_t kind = kParameter;
  std::string name;
  std::vector<Index> shape;
  const unsigned char* data = nullptr;
  std::size_t count = 0;  // number of scalars
};

template <class S>
std::vector<unsigned char> encode(Layer<S>& model, const WeightsOptions& options, const std::string& who) {
  ByteWriter w;
  w.raw(kMagic, sizeof kMagic);
  w.u32(kVersion);
  w.u32(ScalarCode<S>::value);
  w.u64(0);  // total size, patched below
  const ParamList<S> params = model.params(), buffers = model.buffers();
  w.u64(params.size() + buffers.size());
  auto put = [&w, &options, &who](const Param<S>& p, std::uint32_t kind) {
    if (p.name.empty() || p.name.size() > kMaxNameLength || p.shape.size() > kMaxDims)
      throw_config(who, ": tensor '", p.name, "' ", p.shape_string(), " cannot be saved: names have 1 to ",
                   kMaxNameLength, " bytes and shapes at most ", kMaxDims, " dimensions");
    const auto bad = first_non_finite(p.value, static_cast<std::size_t>(p.size()));
    if (!options.allow_non_finite() && bad < static_cast<std::size_t>(p.size()))
      throw_non_finite(who, ": tensor '", p.name, "' (", kind_name(kind), ", shape ", p.shape_string(), ") holds ",
                       value_text(static_cast<double>(p.value[bad])), " at ", element_text(bad, p.shape),
                       ": a file with it would not load by default, so it is not written "
                       "(WeightsOptions().allow_non_finite(true) writes it)");
    w.u32(kind);
    w.u32(static_cast<std::uint32_t>(p.name.size()));
    w.raw(p.name.data(), p.name.size());
    w.u32(static_cast<std::uint32_t>(p.shape.size()));
    for (Index d : p.shape) w.u64(static_cast<std::uint64_t>(d));
    w.scalars(p.value, static_cast<std::size_t>(p.size()));
  };
  for (const auto& p : params) put(p, kParameter);
  for (const auto& p : buffers) put(p, kBuffer);
  w.patch_u64(16, w.size() + 4);
  w.u32(crc32(w.bytes().data(), w.size()));
  return std::move(w.bytes());
}

inline constexpr std::uint64_t kUnknownSize = ~std::uint64_t{0};

// Checks the fixed header: magic, version, scalar type and the declared file size, which it returns. `n` bytes
// of the file are at `p` (fewer than kHeaderSize only when the file is that short); `actual` is the real file
// size, kUnknownSize when it is not known yet (a stream, a pipe): then the declared size is not compared.
template <class S>
std::uint64_t check_header(const unsigned char* p, std::size_t n, std::uint64_t actual, const std::string& who) {
  const std::size_t magic_len = n < sizeof kMagic ? n : sizeof kMagic;
  if (magic_len == 0) throw_format(who, ": empty file (a seqattn weights file starts with \"SEQATTNW\")");
  if (std::memcmp(p, kMagic, magic_len) != 0) {
    std::string found;
    for (std::size_t i = 0; i < magic_len; ++i) {
      const char c = static_cast<char>(p[i]);
      found += (c >= 32 && c < 127) ? std::string(1, c) : cat("\\x", std::hex, static_cast<int>(p[i]));
    }
    throw_format(who, ": not a seqattn weights file: magic expected \"SEQATTNW\" but found \"", found, "\"");
  }
  ByteReader header(p, n, who);
  header.take(sizeof kMagic, "magic");
  const std::uint32_t version = header.u32("format version");
  if (version != kVersion)
    throw_format(who, ": format version ", version, " is not supported: this seqattn (", version_string(),
                 ") reads version ", kVersion, version > kVersion ? "; the file was written by a newer seqattn" : "");
  const std::uint32_t scalar = header.u32("scalar type");
  if (scalar != 1 && scalar != 2) throw_format(who, ": unknown scalar type code ", scalar, " (1 = float32, 2 = float64)");
  if (scalar != ScalarCode<S>::value)
    throw_mismatch(who, ": scalar type expected ", scalar_name(ScalarCode<S>::value), " (the model's) but the file holds ",
                   scalar_name(scalar), " weights");
  const std::uint64_t total = header.u64("file size");
  if (total < kMinFileSize) throw_format(who, ": corrupt header: file size field is ", total, ", less than the minimum ", kMinFileSize);
  if (total > static_cast<std::uint64_t>(PTRDIFF_MAX))
    throw_format(who, ": corrupt header: file size field is ", total, ", more than this system can address");
  if (actual != kUnknownSize) {
    if (actual < total) throw_format(who, ": truncated file: expected ", total, " bytes but found ", actual);
    if (actual > total)
      throw_format(who, ": ", actual - total, " trailing bytes after the end of the file (expected ", total,
                   " bytes but found ", actual, ")");
  }
  return total;
}

inline std::string shape_text(const std::vector<std::uint64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// Checks the header, size and checksum, then parses every record (bounds-checked).
template <class S>
std::vector<Record> decode(const std::vector<unsigned char>& bytes, const std::string& who) {
  const std::size_t n = bytes.size();
  check_header<S>(bytes.data(), n, n, who);
  const std::size_t body = n - 4;
  std::uint32_t stored = 0;
  for (int i = 3; i >= 0; --i) stored = (stored << 8) | bytes[body + static_cast<std::size_t>(i)];
  const std::uint32_t computed = crc32(bytes.data(), body);
  if (stored != computed)
    throw_format(who, ": checksum mismatch (stored 0x", std::hex, stored, ", computed 0x", computed, std::dec,
                 "): the file is corrupt");

  ByteReader r(bytes.data(), body, who);
  r.take(24, "header");
  const std::uint64_t count = r.u64("tensor count");
  // Each record takes at least 12 bytes: a larger count cannot fit (and must not size a vector).
  if (count > r.remaining() / 12) throw_format(who, ": corrupt header: ", count, " tensors cannot fit in ", n, " bytes");
  std::vector<Record> records(static_cast<std::size_t>(count));
  std::map<std::string, std::size_t> seen;
  for (std::size_t i = 0; i < records.size(); ++i) {
    Record& rec = records[i];
    const std::size_t at = r.offset();
    rec.kind = r.u32("tensor kind");
    if (rec.kind != kParameter && rec.kind != kBuffer)
      throw_format(who, ": tensor record ", i, " at offset ", at, ": kind expected 0 or 1 but found ", rec.kind);
    const std::uint32_t len = r.u32("tensor name length");
    if (len == 0 || len > kMaxNameLength)
      throw_format(who, ": tensor record ", i, " at offset ", at, ": name length ", len, " outside 1..", kMaxNameLength);
    const unsigned char* name = r.take(len, "tensor name");
    rec.name.assign(reinterpret_cast<const char*>(name), len);
    if (!seen.emplace(rec.name, i).second) throw_format(who, ": tensor '", rec.name, "' appears twice in the file");
    const std::uint32_t dims = r.u32("number of dimensions");
    if (dims > kMaxDims)
      throw_format(who, ": tensor '", rec.name, "': ", dims, " dimensions, more than the maximum ", kMaxDims);
    std::vector<std::uint64_t> dim(dims);
    for (auto& d : dim) d = r.u64("dimension");
    // Dimensions are unsigned 64-bit in the file and Index (signed) in the model: each at most INT64_MAX, their
    // product bounded by what the rest of the file holds (no overflow, no huge allocation), and, when one
    // dimension is 0, the product of the others still a 64-bit count.
    constexpr std::uint64_t kMaxCount = static_cast<std::uint64_t>(std::numeric_limits<Index>::max());
    for (std::uint32_t d = 0; d < dims; ++d)
      if (dim[d] > kMaxCount)
        throw_format(who, ": tensor '", rec.name, "': dimension ", d, " of shape ", shape_text(dim), " is ", dim[d],
                     ", more than the largest supported ", kMaxCount);
    const bool empty = std::find(dim.begin(), dim.end(), std::uint64_t{0}) != dim.end();
    std::uint64_t count_values = 1;
    for (std::uint64_t d : dim) {
      if (empty) {
        if (d > 0 && count_values > kMaxCount / d)
          throw_format(who, ": tensor '", rec.name, "': the product of the dimensions of shape ", shape_text(dim),
                       " overflows a 64-bit count");
        if (d > 0) count_values *= d;
      } else {
        if (count_values > (r.remaining() / sizeof(S)) / d)
          throw_format(who, ": tensor '", rec.name, "': dimensions too large for the ", n, "-byte file: shape ",
                       shape_text(dim), " of ", sizeof(S), "-byte values needs more than the ", r.remaining(),
                       " bytes that remain");
        count_values *= d;
      }
    }
    if (empty) count_values = 0;
    for (std::uint64_t d : dim) rec.shape.push_back(static_cast<Index>(d));
    rec.count = static_cast<std::size_t>(count_values);
    rec.data = r.take(rec.count * sizeof(S), "tensor values");
  }
  if (r.remaining() != 0)
    throw_format(who, ": ", r.remaining(), " unused bytes after the last tensor record at offset ", r.offset());
  return records;
}

// Checks the records against the model, then (only if everything matches) copies the values.
template <class S>
void apply(Layer<S>& model, const std::vector<Record>& records, const WeightsOptions& options, const std::string& who) {
  struct Target {
    Param<S> param;
    std::uint32_t kind;
    const Record* record = nullptr;
  };
  std::map<std::string, Target> targets;
  for (auto& p : model.params()) targets[p.name] = Target{p, kParameter};
  for (auto& p : model.buffers()) targets[p.name] = Target{p, kBuffer};
  for (const Record& rec : records) {
    auto it = targets.find(rec.name);
    if (it == targets.end())
      throw_mismatch(who, ": the file has tensor '", rec.name, "' (", kind_name(rec.kind), ", shape ",
                     shape_text(rec.shape), ") that the model does not have");
    Target& t = it->second;
    if (t.kind != rec.kind)
      throw_mismatch(who, ": tensor '", rec.name, "': expected a ", kind_name(t.kind), " but the file stores a ",
                     kind_name(rec.kind));
    if (t.param.shape != rec.shape)
      throw_mismatch(who, ": tensor '", rec.name, "': shape expected ", t.param.shape_string(), " but found ",
                     shape_text(rec.shape));
    t.record = &rec;
  }
  std::string missing;
  std::size_t n_missing = 0;
  for (const auto& [name, t] : targets)
    if (!t.record) {
      if (n_missing++ < 8) missing += cat(n_missing > 1 ? ", " : "", "'", name, "' ", t.param.shape_string());
    }
  if (n_missing > 0)
    throw_mismatch(who, ": ", n_missing, n_missing == 1 ? " tensor is" : " tensors are", " missing from the file: ",
                   missing, n_missing > 8 ? ", ..." : "");
  if (!options.allow_non_finite())
    for (const Record& rec : records) {
      S block[256];  // the values, decoded a block at a time
      for (std::size_t at = 0; at < rec.count; at += 256) {
        const std::size_t m = std::min<std::size_t>(256, rec.count - at);
        copy_little_endian(rec.data + at * sizeof(S), reinterpret_cast<unsigned char*>(block), m, sizeof(S));
        const std::size_t bad = first_non_finite(block, m);
        if (bad < m)
          throw_non_finite(who, ": tensor '", rec.name, "' (", kind_name(rec.kind), ", shape ", shape_text(rec.shape),
                           ") holds ", value_text(static_cast<double>(block[bad])), " at ",
                           element_text(at + bad, rec.shape),
                           ": non-finite weights are refused (WeightsOptions().allow_non_finite(true) loads them)");
      }
    }
  for (const auto& [name, t] : targets)
    copy_little_endian(t.record->data, reinterpret_cast<unsigned char*>(t.param.value), t.record->count, sizeof(S));
}

}  // namespace detail::weights_format

// Writes every parameter and buffer of `model` to `out` (format above). FileError when the stream fails;
// NonFiniteError (nothing written) when a value is NaN or Inf, unless options.allow_non_finite().
template <class S>
void save_weights(Layer<S>& model, std::ostream& out, const WeightsOptions& options = WeightsOptions()) {
  const auto bytes = detail::weights_format::encode(model, options, "save_weights(stream)");
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  out.flush();
  if (!out) detail::throw_file("save_weights(stream): writing ", bytes.size(), " bytes failed");
}

// Writes the weights to `path` atomically (io/detail/atomic_file.hpp: temporary file beside the target, fsync,
// rename): `path` holds either its previous content or the complete new file, even after a crash or a full
// disk. A symbolic link is followed (its target is replaced, the link stays); an existing file keeps its
// permission bits; a file without write permission is not replaced (FileError).
template <class S>
void save_weights(Layer<S>& model, const std::string& path, const WeightsOptions& options = WeightsOptions()) {
  const std::string who = "save_weights(" + path + ")";
  const auto bytes = detail::weights_format::encode(model, options, who);
  detail::write_file_atomically(path, bytes.data(), bytes.size(), who);
}

// Reads one weights file from `in` (exactly its bytes) into `model`. On any error the model is unchanged.
// The fixed header (magic, version, scalar type, size) is checked before the rest is read.
template <class S>
void load_weights(Layer<S>& model, std::istream& in, const WeightsOptions& options = WeightsOptions()) {
  namespace wf = detail::weights_format;
  const std::string who = "load_weights(stream)";
  std::vector<unsigned char> bytes;
  detail::read_some(in, bytes, wf::kHeaderSize);
  const std::uint64_t total = wf::check_header<S>(
      bytes.data(), bytes.size(), bytes.size() < wf::kHeaderSize ? bytes.size() : wf::kUnknownSize, who);
  detail::read_some(in, bytes, total - wf::kHeaderSize);  // grows with the bytes that arrive, up to `total`
  wf::apply(model, wf::decode<S>(bytes, who), options, who);
}

// Reads the weights file at `path` into `model`. On any error the model is unchanged. Reads the fixed header
// first and checks it (magic, version, scalar type, and the declared size against the size of a regular
// file) before it reads the rest, and never reads more than the declared size (a pipe, /dev/zero).
template <class S>
void load_weights(Layer<S>& model, const std::string& path, const WeightsOptions& options = WeightsOptions()) {
  namespace wf = detail::weights_format;
  const std::string who = "load_weights(" + path + ")";
  detail::InputFile file(path, who);
  std::vector<unsigned char> bytes;
  file.read(bytes, wf::kHeaderSize);
  std::uint64_t actual = wf::kUnknownSize;  // a pipe or a device: known at its end only
  if (file.regular()) actual = file.size();
  if (!file.regular() && bytes.size() < wf::kHeaderSize) actual = bytes.size();
  const std::uint64_t total = wf::check_header<S>(bytes.data(), bytes.size(), actual, who);
  if (file.regular()) bytes.reserve(static_cast<std::size_t>(total));
  file.read(bytes, total - bytes.size());
  if (bytes.size() == total && file.read(bytes, 1) > 0)
    detail::throw_format(who, ": the input goes on after the ", total, " bytes its header declares",
                         file.regular() ? " (the file grew while it was read)" : "");
  wf::apply(model, wf::decode<S>(bytes, who), options, who);
}

}  // namespace seqattn
