#pragma once
// The tensor records shared by weights files (io/weights.hpp) and model files (io/model_file.hpp): a count, then
// one record per parameter and buffer of a model:
//   number of tensors N (8), then N records: kind (4: 0 = parameter, 1 = buffer), name length L (4, 1..65535),
//   name (L bytes, UTF-8), number of dimensions D (4, 0..8), dimensions (8 each, at most INT64_MAX), values
//   (product of the dimensions times the stored scalar size, little-endian, row-major)
//   write_records(writer, model, allow_non_finite, who)     appends the count and the records of model's tensors
//   read_records(reader, width, file_size, who)             parses them (bounds, duplicates, dimensions), up to
//                                                            the end of the reader; values stay in the file's bytes
//   apply_records<S>(model, records, width, allow_non_finite, who)   checks them against the model (names, kinds,
//                                                            shapes, then finite values) and only then copies,
//                                                            converting float32 <-> float64 when width != sizeof(S)
// Errors as io/errors.hpp: FormatError for bad bytes, MismatchError for a file that does not fit the model,
// NonFiniteError (a FormatError) for a NaN or Inf unless allowed.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "seqattn/core/layer.hpp"
#include "seqattn/io/detail/byte_io.hpp"
#include "seqattn/io/detail/non_finite.hpp"
#include "seqattn/io/errors.hpp"

namespace seqattn::detail::tensor_records {

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
inline const char* scalar_name(std::uint32_t code) { return code == 1 ? "float32" : code == 2 ? "float64" : "unknown"; }
inline std::size_t scalar_width(std::uint32_t code) { return code == 1 ? 4 : 8; }
inline const char* kind_name(std::uint32_t kind) { return kind == kParameter ? "parameter" : "buffer"; }

inline std::string shape_text(const std::vector<Index>& shape) {
  Param<float> p;
  p.shape = shape;
  return p.shape_string();
}
inline std::string shape_text(const std::vector<std::uint64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

// One tensor record of a decoded file; `data` points into the file's bytes.
struct Record {
  std::uint32_t kind = kParameter;
  std::string name;
  std::vector<Index> shape;
  const unsigned char* data = nullptr;
  std::size_t count = 0;  // number of scalars
};

// The count and one record per parameter and buffer of `model`, in S. NonFiniteError unless allow_non_finite.
template <class S>
void write_records(ByteWriter& w, Layer<S>& model, bool allow_non_finite, const std::string& who) {
  const ParamList<S> params = model.params(), buffers = model.buffers();
  w.u64(params.size() + buffers.size());
  auto put = [&](const Param<S>& p, std::uint32_t kind) {
    if (p.name.empty() || p.name.size() > kMaxNameLength || p.shape.size() > kMaxDims)
      throw_config(who, ": tensor '", p.name, "' ", p.shape_string(), " cannot be saved: names have 1 to ",
                   kMaxNameLength, " bytes and shapes at most ", kMaxDims, " dimensions");
    const auto bad = first_non_finite(p.value, static_cast<std::size_t>(p.size()));
    if (!allow_non_finite && bad < static_cast<std::size_t>(p.size()))
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
}

// Parses the count and the records that fill the rest of `r`; values are `width` bytes (4 or 8). `file_size`
// only appears in messages.
inline std::vector<Record> read_records(ByteReader& r, std::size_t width, std::size_t file_size,
                                        const std::string& who) {
  const std::uint64_t count = r.u64("tensor count");
  // Each record takes at least 12 bytes: a larger count cannot fit (and must not size a vector).
  if (count > r.remaining() / 12)
    throw_format(who, ": corrupt header: ", count, " tensors cannot fit in ", file_size, " bytes");
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
      throw_format(who, ": tensor record ", i, " at offset ", at, ": name length ", len, " outside 1..",
                   kMaxNameLength);
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
        if (count_values > (r.remaining() / width) / d)
          throw_format(who, ": tensor '", rec.name, "': dimensions too large for the ", file_size, "-byte file: shape ",
                       shape_text(dim), " of ", width, "-byte values needs more than the ", r.remaining(),
                       " bytes that remain");
        count_values *= d;
      }
    }
    if (empty) count_values = 0;
    for (std::uint64_t d : dim) rec.shape.push_back(static_cast<Index>(d));
    rec.count = static_cast<std::size_t>(count_values);
    rec.data = r.take(rec.count * width, "tensor values");
  }
  if (r.remaining() != 0)
    throw_format(who, ": ", r.remaining(), " unused bytes after the last tensor record at offset ", r.offset());
  return records;
}

// `n` stored values (`width` bytes each, little-endian) at `src` -> `dst` as S.
template <class S>
void decode_values(const unsigned char* src, std::size_t n, std::size_t width, S* dst) {
  if (width == sizeof(S)) return copy_little_endian(src, reinterpret_cast<unsigned char*>(dst), n, sizeof(S));
  constexpr std::size_t kBlock = 256;
  for (std::size_t at = 0; at < n; at += kBlock) {
    const std::size_t m = std::min(kBlock, n - at);
    if (width == 4) {
      float block[kBlock];
      copy_little_endian(src + at * 4, reinterpret_cast<unsigned char*>(block), m, 4);
      for (std::size_t i = 0; i < m; ++i) dst[at + i] = static_cast<S>(block[i]);
    } else {
      double block[kBlock];
      copy_little_endian(src + at * 8, reinterpret_cast<unsigned char*>(block), m, 8);
      for (std::size_t i = 0; i < m; ++i) dst[at + i] = static_cast<S>(block[i]);
    }
  }
}

// Checks the records against the model, then (only if everything matches) copies the values, converted to S.
// A float64 value outside float's range becomes +-Inf in a float model: refused as non-finite like any other.
template <class S>
void apply_records(Layer<S>& model, const std::vector<Record>& records, std::size_t width, bool allow_non_finite,
                   const std::string& who) {
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
    throw_mismatch(who, ": ", n_missing, n_missing == 1 ? " tensor is" : " tensors are",
                   " missing from the file: ", missing, n_missing > 8 ? ", ..." : "");
  if (!allow_non_finite)
    for (const Record& rec : records) {
      S block[256];  // the values, decoded (and converted) a block at a time
      for (std::size_t at = 0; at < rec.count; at += 256) {
        const std::size_t m = std::min<std::size_t>(256, rec.count - at);
        decode_values(rec.data + at * width, m, width, block);
        const std::size_t bad = first_non_finite(block, m);
        if (bad < m)
          throw_non_finite(who, ": tensor '", rec.name, "' (", kind_name(rec.kind), ", shape ", shape_text(rec.shape),
                           ") holds ", value_text(static_cast<double>(block[bad])), " at ",
                           element_text(at + bad, rec.shape),
                           width != sizeof(S)
                               ? " (converted from the file's " + std::string(width == 4 ? "float32" : "float64") + ")"
                               : "",
                           ": non-finite weights are refused (WeightsOptions().allow_non_finite(true) loads them)");
      }
    }
  for (const auto& [name, t] : targets) decode_values(t.record->data, t.record->count, width, t.param.value);
}

}  // namespace seqattn::detail::tensor_records
