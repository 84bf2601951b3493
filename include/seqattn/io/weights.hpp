#pragma once
// Saving and loading the weights of a model (any Layer<S>, e.g. a Sequential<S>) in seqattn's own binary
// format. The architecture stays in code: build the same model, then load its weights.
//
//   save_weights(model, "model.sqw");          // atomic: a crash or a full disk never leaves a partial file
//   load_weights(model, "model.sqw");          // validates everything, then copies; throws, model unchanged
//   save_weights(model, out_stream);  load_weights(model, in_stream);
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
//                  UTF-8), number of dimensions D (4, 0..8), dimensions (8 each), values (product of the
//                  dimensions times the scalar size)
//   size-4  4      CRC-32 (zlib's) of every byte before it
//
// Loading checks, in this order, before it modifies anything: magic, version (a newer version is refused
// with a message saying so), scalar type (a float32 file does not load into a double model: MismatchError),
// size (truncated or trailing bytes), checksum, every record (bounds, duplicate names), then against the
// model: every model tensor is in the file, the file has no tensor the model lacks, kinds and shapes are equal.
// Errors (io/errors.hpp): FileError (open/write/rename), FormatError (invalid bytes), MismatchError (valid
// file, different model); messages start with "save_weights(<path>)" or "load_weights(<path>)" and name the
// tensor with the expected and the found value.
// The stream overloads read exactly the file's bytes (the stream may go on after them) and write with the
// stream's own guarantees (no atomic replace).

#include <cstdint>
#include <cstring>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "seqattn/core/layer.hpp"
#include "seqattn/io/detail/atomic_file.hpp"
#include "seqattn/io/detail/byte_io.hpp"
#include "seqattn/io/detail/crc32.hpp"
#include "seqattn/io/errors.hpp"

namespace seqattn {

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
std::vector<unsigned char> encode(Layer<S>& model) {
  ByteWriter w;
  w.raw(kMagic, sizeof kMagic);
  w.u32(kVersion);
  w.u32(ScalarCode<S>::value);
  w.u64(0);  // total size, patched below
  const ParamList<S> params = model.params(), buffers = model.buffers();
  w.u64(params.size() + buffers.size());
  auto put = [&w](const Param<S>& p, std::uint32_t kind) {
    if (p.name.empty() || p.name.size() > kMaxNameLength || p.shape.size() > kMaxDims)
      throw_config("save_weights: tensor '", p.name, "' ", p.shape_string(), " cannot be saved: names have 1 to ",
                   kMaxNameLength, " bytes and shapes at most ", kMaxDims, " dimensions");
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

// Checks magic, version, scalar type, size and checksum, then parses every record (bounds-checked).
template <class S>
std::vector<Record> decode(const std::vector<unsigned char>& bytes, const std::string& who) {
  const std::size_t n = bytes.size();
  const std::size_t magic_len = n < sizeof kMagic ? n : sizeof kMagic;
  if (magic_len == 0) throw_format(who, ": empty file (a seqattn weights file starts with \"SEQATTNW\")");
  if (std::memcmp(bytes.data(), kMagic, magic_len) != 0) {
    std::string found;
    for (std::size_t i = 0; i < magic_len; ++i) {
      const char c = static_cast<char>(bytes[i]);
      found += (c >= 32 && c < 127) ? std::string(1, c) : cat("\\x", std::hex, static_cast<int>(bytes[i]));
    }
    throw_format(who, ": not a seqattn weights file: magic expected \"SEQATTNW\" but found \"", found, "\"");
  }
  ByteReader header(bytes.data(), n, who);
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
  if (n < total) throw_format(who, ": truncated file: expected ", total, " bytes but found ", n);
  if (n > total) throw_format(who, ": ", n - total, " trailing bytes after the end of the file (expected ", total, " bytes but found ", n, ")");
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
    std::uint64_t count_values = 1;
    for (std::uint32_t d = 0; d < dims; ++d) {
      const std::uint64_t dim = r.u64("dimension");
      // Bound every partial product by what the rest of the file can hold: no overflow, no huge allocation.
      if (dim > 0 && count_values > (r.remaining() / sizeof(S)) / dim)
        throw_format(who, ": tensor '", rec.name, "': dimensions too large for the ", n, "-byte file");
      count_values *= dim;
      rec.shape.push_back(static_cast<Index>(dim));
    }
    rec.count = static_cast<std::size_t>(count_values);
    rec.data = r.take(rec.count * sizeof(S), "tensor values");
  }
  if (r.remaining() != 0)
    throw_format(who, ": ", r.remaining(), " unused bytes after the last tensor record at offset ", r.offset());
  return records;
}

// Checks the records against the model, then (only if everything matches) copies the values.
template <class S>
void apply(Layer<S>& model, const std::vector<Record>& records, const std::string& who) {
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
  for (const auto& [name, t] : targets)
    copy_little_endian(t.record->data, reinterpret_cast<unsigned char*>(t.param.value), t.record->count, sizeof(S));
}

}  // namespace detail::weights_format

// Writes every parameter and buffer of `model` to `out` (format above). FileError when the stream fails.
template <class S>
void save_weights(Layer<S>& model, std::ostream& out) {
  const auto bytes = detail::weights_format::encode(model);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  out.flush();
  if (!out) detail::throw_file("save_weights(stream): writing ", bytes.size(), " bytes failed");
}

// Writes the weights to `path` atomically (temporary file in the same directory, fsync, rename): `path` holds
// either its previous content or the complete new file, even after a crash or a full disk.
template <class S>
void save_weights(Layer<S>& model, const std::string& path) {
  const auto bytes = detail::weights_format::encode(model);
  detail::write_file_atomically(path, bytes.data(), bytes.size(), "save_weights(" + path + ")");
}

// Reads one weights file from `in` (exactly its bytes) into `model`. On any error the model is unchanged.
template <class S>
void load_weights(Layer<S>& model, std::istream& in) {
  namespace wf = detail::weights_format;
  const std::string who = "load_weights(stream)";
  std::vector<unsigned char> bytes;
  detail::read_some(in, bytes, wf::kHeaderSize);
  if (bytes.size() == wf::kHeaderSize && std::memcmp(bytes.data(), wf::kMagic, sizeof wf::kMagic) == 0) {
    std::uint64_t total = 0;
    for (int i = 7; i >= 0; --i) total = (total << 8) | bytes[16 + static_cast<std::size_t>(i)];
    if (total > wf::kHeaderSize) detail::read_some(in, bytes, total - wf::kHeaderSize);
  }
  wf::apply(model, wf::decode<S>(bytes, who), who);
}

// Reads the weights file at `path` into `model`. On any error the model is unchanged.
template <class S>
void load_weights(Layer<S>& model, const std::string& path) {
  const std::string who = "load_weights(" + path + ")";
  const auto bytes = detail::read_all(path, who);
  detail::weights_format::apply(model, detail::weights_format::decode<S>(bytes, who), who);
}

}  // namespace seqattn
