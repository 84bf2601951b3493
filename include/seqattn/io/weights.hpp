#pragma once
/// \file
/// Saving and loading the weights of a model (any Layer\<S>, e.g. a Sequential\<S>) in seqattn's own binary
/// format. The architecture stays in code: build the same model, then load its weights (io/model_file.hpp stores
/// the architecture too; both share the tensor records of io/detail/tensor_records.hpp).
///
/// ```unparsed
///   save_weights(model, "model.sqw");          // atomic: a crash or a full disk never leaves a partial file
///   load_weights(model, "model.sqw");          // validates everything, then copies; throws, model unchanged
///   save_weights(model, out_stream);  load_weights(model, in_stream);
///   load_weights(model, "model.sqw", WeightsOptions().allow_non_finite(true));   // also for save_weights
///
/// ```
/// What is saved: every tensor of model.params() (trainable) and model.buffers() (saved, not trained, e.g.
/// batch-norm running statistics), each with its full name ("0.dense.W"), its kind, its shape and its values.
///
/// Format version 1. Integers are unsigned little-endian; values are IEEE-754 little-endian, row-major.
///
/// ```unparsed
///   offset  bytes  field
///   0       8      magic "SEQATTNW"
///   8       4      format version (1)
///   12      4      scalar type: 1 = float32, 2 = float64
///   16      8      total file size in bytes, checksum included
///   24      8      number of tensors N
///   32      ...    N records: kind (4: 0 = parameter, 1 = buffer), name length L (4, 1..65535), name (L bytes,
///                  UTF-8), number of dimensions D (4, 0..8), dimensions (8 each, at most INT64_MAX), values
///                  (product of the dimensions times the scalar size)
///   size-4  4      CRC-32 (zlib's) of every byte before it
///
/// ```
/// Loading checks, in this order, before it modifies anything: magic, version (a newer version is refused
/// with a message saying so), scalar type (a float32 file does not load into a double model: MismatchError),
/// size (truncated or trailing bytes), checksum, every record (bounds, duplicate names, dimensions: each at most
/// INT64_MAX and their product a count, printed unsigned), then against the model: every model tensor is in the
/// file, the file has no tensor the model lacks, kinds and shapes are equal; last, every value is finite.
/// Loading from a path reads the 32-byte header first and checks magic, version, scalar type and, for a regular
/// file, the declared size against the file's size before it reads (and allocates) the rest; it never reads more
/// than the declared size, so a large file that is not a weights file, /dev/zero or a pipe costs its first bytes
/// (a pipe is read up to the declared size as the bytes arrive and must end there).
/// Non-finite weights: by default a load refuses a file holding a NaN or Inf and a save refuses to write a model
/// holding one (a file that would not load by default): NonFiniteError (a FormatError) naming the file, the
/// tensor, the element ("element 3 = (1, 1)", row-major) and the value. WeightsOptions().allow_non_finite(true)
/// passes them through in both directions.
/// Errors (io/errors.hpp): FileError (open/read/write/rename, a target without write permission),
/// FormatError (invalid bytes; NonFiniteError), MismatchError (valid file, different model); messages start
/// with "save_weights(\<path>)" or "load_weights(\<path>)" and name the tensor with the expected and the found value.
/// The stream overloads read exactly the file's bytes (the stream may go on after them) and write with the
/// stream's own guarantees (no atomic replace). Saving to a path (io/detail/atomic_file.hpp) follows a symbolic
/// link (the link stays, its target is replaced), keeps the permission bits of the file it replaces and refuses
/// to replace a file without write permission (mode 0444, even for root).

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
#include "seqattn/io/detail/file_frame.hpp"
#include "seqattn/io/detail/non_finite.hpp"
#include "seqattn/io/detail/tensor_records.hpp"
#include "seqattn/io/errors.hpp"

namespace seqattn {

/// Options of save_weights and load_weights.
struct WeightsOptions {
  /// false (default): a load refuses a file holding a NaN or Inf value and a save refuses to write a model
  /// holding one (NonFiniteError naming the tensor, the element and the value); true: both pass them through.
  SEQATTN_ARG(bool, allow_non_finite, false)
};

namespace detail::weights_format {

/// The tensor records (count, records) are io/detail/tensor_records.hpp's, shared with model files.
using tensor_records::kind_name;
using tensor_records::Record;
using tensor_records::scalar_name;
using tensor_records::ScalarCode;
using tensor_records::shape_text;

inline constexpr char kMagic[8] = {'S', 'E', 'Q', 'A', 'T', 'T', 'N', 'W'};
inline constexpr std::uint32_t kVersion = 1;
inline constexpr std::size_t kHeaderSize = 32;  ///< magic .. tensor count
inline constexpr std::size_t kMinFileSize = 36;  ///< header + checksum

template <class S>
std::vector<unsigned char> encode(Layer<S>& model, const WeightsOptions& options, const std::string& who) {
  ByteWriter w;
  w.raw(kMagic, sizeof kMagic);
  w.u32(kVersion);
  w.u32(ScalarCode<S>::value);
  w.u64(0);  // total size, patched below
  tensor_records::write_records(w, model, options.allow_non_finite(), who);
  w.patch_u64(16, w.size() + 4);
  w.u32(crc32(w.bytes().data(), w.size()));
  return std::move(w.bytes());
}

using detail::kUnknownSize;

/// Checks the fixed header: magic, version, scalar type and the declared file size, which it returns. `n` bytes
/// of the file are at `p` (fewer than kHeaderSize only when the file is that short); `actual` is the real file
/// size, kUnknownSize when it is not known yet (a stream, a pipe): then the declared size is not compared.
template <class S>
std::uint64_t check_header(const unsigned char* p, std::size_t n, std::uint64_t actual, const std::string& who) {
  return check_frame_header(p, n, actual, kMagic, "seqattn weights file", kVersion, ScalarCode<S>::value, "weights",
                            kMinFileSize, who)
      .total;
}

/// Checks the header, size and checksum, then parses every record (bounds-checked).
template <class S>
std::vector<Record> decode(const std::vector<unsigned char>& bytes, const std::string& who) {
  const std::size_t n = bytes.size();
  check_header<S>(bytes.data(), n, n, who);
  check_crc(bytes, who);
  ByteReader r(bytes.data(), n - 4, who);
  r.take(24, "header");
  return tensor_records::read_records(r, sizeof(S), n, who);
}

/// Checks the records against the model, then (only if everything matches) copies the values.
template <class S>
void apply(Layer<S>& model, const std::vector<Record>& records, const WeightsOptions& options, const std::string& who) {
  tensor_records::apply_records(model, records, sizeof(S), options.allow_non_finite(), who);
}

}  // namespace detail::weights_format

/// Writes every parameter and buffer of `model` to `out` (format above). FileError when the stream fails;
/// NonFiniteError (nothing written) when a value is NaN or Inf, unless options.allow_non_finite().
template <class S>
void save_weights(Layer<S>& model, std::ostream& out, const WeightsOptions& options = WeightsOptions()) {
  const auto bytes = detail::weights_format::encode(model, options, "save_weights(stream)");
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  out.flush();
  if (!out) detail::throw_file("save_weights(stream): writing ", bytes.size(), " bytes failed");
}

/// Writes the weights to `path` atomically (io/detail/atomic_file.hpp: temporary file beside the target, fsync,
/// rename): `path` holds either its previous content or the complete new file, even after a crash or a full
/// disk. A symbolic link is followed (its target is replaced, the link stays); an existing file keeps its
/// permission bits; a file without write permission is not replaced (FileError).
template <class S>
void save_weights(Layer<S>& model, const std::string& path, const WeightsOptions& options = WeightsOptions()) {
  const std::string who = "save_weights(" + path + ")";
  const auto bytes = detail::weights_format::encode(model, options, who);
  detail::write_file_atomically(path, bytes.data(), bytes.size(), who);
}

/// Reads one weights file from `in` (exactly its bytes) into `model`. On any error the model is unchanged.
/// The fixed header (magic, version, scalar type, size) is checked before the rest is read.
template <class S>
void load_weights(Layer<S>& model, std::istream& in, const WeightsOptions& options = WeightsOptions()) {
  namespace wf = detail::weights_format;
  const std::string who = "load_weights(stream)";
  const auto bytes =
      detail::read_framed(in, wf::kHeaderSize, [&](const std::vector<unsigned char>& b, std::uint64_t actual) {
        return wf::check_header<S>(b.data(), b.size(), actual, who);
      });
  wf::apply(model, wf::decode<S>(bytes, who), options, who);
}

/// Reads the weights file at `path` into `model`. On any error the model is unchanged. Reads the fixed header
/// first and checks it (magic, version, scalar type, and the declared size against the size of a regular
/// file) before it reads the rest, and never reads more than the declared size (a pipe, /dev/zero).
template <class S>
void load_weights(Layer<S>& model, const std::string& path, const WeightsOptions& options = WeightsOptions()) {
  namespace wf = detail::weights_format;
  const std::string who = "load_weights(" + path + ")";
  const auto bytes = detail::read_framed(
      path, wf::kHeaderSize,
      [&](const std::vector<unsigned char>& b, std::uint64_t actual) {
        return wf::check_header<S>(b.data(), b.size(), actual, who);
      },
      who);
  wf::apply(model, wf::decode<S>(bytes, who), options, who);
}

}  // namespace seqattn
