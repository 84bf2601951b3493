#pragma once
/// \file
/// Saving and restoring the carried state of a Stream\<S> (model/stream.hpp), so that a restarted service goes on
/// with every stream exactly where it stopped:
///
/// ```unparsed
///   save_state(stream, "streams.sqs");      // atomic (io/detail/atomic_file.hpp), like save_weights
///   Stream<float> s = model.stream(B);  load_state(s, "streams.sqs");   // validates everything, then copies
///
/// ```
/// The stream to load into must be open over the same architecture (the same layers, options and parameter
/// shapes; the weights are the model's business: load them with load_weights) with the same number of streams.
/// Then each stream's steps(b) and every state tensor (ring buffers, key caches, recurrent states, running
/// pools) are restored; the next step's outputs are those the saved stream would have given.
///
/// Format version 1. Integers are unsigned little-endian; values are IEEE-754 little-endian, row-major.
///
/// ```unparsed
///   offset  bytes  field
///   0       8      magic "SEQATTNS"
///   8       4      format version (1)
///   12      4      scalar type: 1 = float32, 2 = float64
///   16      8      total file size in bytes, checksum included
///   24      8      number of streams B
///   32      4+L    architecture: length L (at most 1 MiB), then the text: the model's describe() and the name
///                  and shape of every parameter and buffer, one per line
///   ...     8 B    steps(b) of every stream
///   ...     8      number of state tensors N
///   ...     ...    N records: name length L (4, 1..65535), name, 3 dimensions (8 each), values
///   size-4  4      CRC-32 (zlib's) of every byte before it
/// ```
/// Loading checks, before it changes anything: magic, version (a newer one is refused saying so), scalar type,
/// size, checksum, every record's bounds; then against the stream: the number of streams, the architecture text,
/// the same state tensor names, shapes (B, rows, cols) equal to the stream's (a cache that grows may have any
/// number of rows up to StreamOptions::max_history, and at least the steps it holds), every steps(b) at most
/// the stream's max_steps(). Errors: FileError, FormatError, MismatchError (io/errors.hpp), messages starting
/// with "save_state(\<path>)" / "load_state(\<path>)". State values are not checked for finiteness (a stream that
/// has seen a NaN carries it, as it would have without the restart).

#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "seqattn/core/layer.hpp"
#include "seqattn/io/detail/atomic_file.hpp"
#include "seqattn/io/detail/byte_io.hpp"
#include "seqattn/io/detail/crc32.hpp"
#include "seqattn/io/errors.hpp"
#include "seqattn/io/weights.hpp"
#include "seqattn/model/stream.hpp"

namespace seqattn {

namespace detail::stream_state_format {

inline constexpr char kMagic[8] = {'S', 'E', 'Q', 'A', 'T', 'T', 'N', 'S'};
inline constexpr std::uint32_t kVersion = 1;
inline constexpr std::size_t kHeaderSize = 32;
inline constexpr std::uint32_t kMaxNameLength = 65535;
inline constexpr std::uint32_t kMaxArchitecture = 1u << 20;

/// The model's describe() and its parameter and buffer names and shapes.
template <class S>
std::string architecture(const Layer<S>& model) {
  Layer<S>& m = const_cast<Layer<S>&>(model);  // params() and buffers() only read
  std::string text = model.describe() + "\n";
  for (const auto& p : m.params()) text += p.name + " " + p.shape_string() + "\n";
  for (const auto& p : m.buffers()) text += p.name + " " + p.shape_string() + " (buffer)\n";
  return text;
}

/// The first line where two architecture texts differ, for messages.
inline std::string first_difference(const std::string& a, const std::string& b) {
  std::size_t i = 0, line_start = 0;
  while (i < a.size() && i < b.size() && a[i] == b[i]) {
    if (a[i] == '\n') line_start = i + 1;
    ++i;
  }
  auto line = [line_start](const std::string& s) {
    const std::size_t end = s.find('\n', line_start);
    return s.substr(line_start, end == std::string::npos ? std::string::npos : end - line_start);
  };
  return cat("'", line(a), "' against '", line(b), "'");
}

/// The size of the largest valid file for `stream`: every cache at its largest capacity.
template <class S>
std::uint64_t largest_file(Stream<S>& stream) {
  const auto B = static_cast<std::uint64_t>(stream.batch());
  std::uint64_t bytes = kHeaderSize + 4 + kMaxArchitecture + 8 * B + 8 + 4;
  for (const auto& t : stream.state()) {
    const auto rows = static_cast<std::uint64_t>(t.grows ? t.max_rows : t.tensor->dimension(1));
    bytes += 4 + kMaxNameLength + 24 + B * rows * static_cast<std::uint64_t>(t.tensor->dimension(2)) * sizeof(S);
  }
  return bytes;
}

template <class S>
std::vector<unsigned char> encode(Stream<S>& stream) {
  using weights_format::ScalarCode;
  ByteWriter w;
  w.raw(kMagic, sizeof kMagic);
  w.u32(kVersion);
  w.u32(ScalarCode<S>::value);
  w.u64(0);  // total size, patched below
  w.u64(static_cast<std::uint64_t>(stream.batch()));
  const std::string arch = architecture(stream.model());
  w.u32(static_cast<std::uint32_t>(arch.size()));
  w.raw(arch.data(), arch.size());
  for (Index s : stream.all_steps()) w.u64(static_cast<std::uint64_t>(s));
  const StreamStateList<S> state = stream.state();
  w.u64(state.size());
  for (const auto& t : state) {
    w.u32(static_cast<std::uint32_t>(t.name.size()));
    w.raw(t.name.data(), t.name.size());
    for (int d = 0; d < 3; ++d) w.u64(static_cast<std::uint64_t>(t.tensor->dimension(d)));
    w.scalars(t.tensor->data(), static_cast<std::size_t>(t.tensor->size()));
  }
  w.patch_u64(16, w.size() + 4);
  w.u32(crc32(w.bytes().data(), w.size()));
  return std::move(w.bytes());
}

/// Checks the whole file against the stream, then copies it in.
template <class S>
void decode_into(Stream<S>& stream, const std::vector<unsigned char>& bytes, const std::string& who) {
  using weights_format::scalar_name;
  using weights_format::ScalarCode;
  const std::size_t n = bytes.size();
  if (n < kHeaderSize + 4)
    throw_format(who, ": not a seqattn stream state file: ", n, " bytes, fewer than the minimum ", kHeaderSize + 4);
  if (std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
    throw_format(who, ": not a seqattn stream state file: it does not start with \"SEQATTNS\"");
  ByteReader header(bytes.data(), n, who);
  header.take(sizeof kMagic, "magic");
  const std::uint32_t version = header.u32("format version");
  if (version != kVersion)
    throw_format(who, ": format version ", version, " is not supported: this seqattn reads version ", kVersion,
                 version > kVersion ? "; the file was written by a newer seqattn" : "");
  const std::uint32_t scalar = header.u32("scalar type");
  if (scalar != ScalarCode<S>::value)
    throw_mismatch(who, ": scalar type expected ", scalar_name(ScalarCode<S>::value),
                   " (the stream's) but the file holds ", scalar_name(scalar), " state");
  const std::uint64_t total = header.u64("file size");
  if (total != n) throw_format(who, ": the header declares ", total, " bytes but the file has ", n);
  const std::size_t body = n - 4;
  std::uint32_t stored = 0;
  for (int i = 3; i >= 0; --i) stored = (stored << 8) | bytes[body + static_cast<std::size_t>(i)];
  if (stored != crc32(bytes.data(), body)) throw_format(who, ": checksum mismatch: the file is corrupt");

  ByteReader r(bytes.data(), body, who);
  r.take(24, "header");
  const std::uint64_t B = r.u64("number of streams");
  if (B != static_cast<std::uint64_t>(stream.batch()))
    throw_mismatch(who, ": the file holds ", B, " streams but the stream has ", stream.batch());
  const std::uint32_t arch_len = r.u32("architecture length");
  if (arch_len > kMaxArchitecture) throw_format(who, ": architecture text of ", arch_len, " bytes is too long");
  const unsigned char* arch = r.take(arch_len, "architecture");
  const std::string saved(reinterpret_cast<const char*>(arch), arch_len), ours = architecture(stream.model());
  if (saved != ours)
    throw_mismatch(who, ": the file's stream ran over another architecture: ", first_difference(saved, ours),
                   " (file against this stream's model)");
  std::vector<Index> steps(static_cast<std::size_t>(B));
  for (auto& s : steps) {
    const std::uint64_t v = r.u64("steps");
    if (v > static_cast<std::uint64_t>(stream.max_steps()))
      throw_mismatch(who, ": a stream has seen ", v, " steps, more than this stream can hold (", stream.max_steps(),
                     ", StreamOptions::max_history)");
    s = static_cast<Index>(v);
  }
  Index most_steps = 0;
  for (Index s : steps) most_steps = std::max(most_steps, s);
  StreamStateList<S> state = stream.state();
  const std::uint64_t count = r.u64("number of state tensors");
  if (count != state.size())
    throw_mismatch(who, ": the file has ", count, " state tensors but the stream has ", state.size());
  struct Found {
    const unsigned char* data;
    Index rows;
  };
  std::vector<Found> found(state.size());
  std::map<std::string, std::size_t> index;
  for (std::size_t i = 0; i < state.size(); ++i) index[state[i].name] = i;
  std::vector<bool> seen(state.size(), false);
  for (std::uint64_t k = 0; k < count; ++k) {
    const std::uint32_t len = r.u32("name length");
    if (len == 0 || len > kMaxNameLength)
      throw_format(who, ": state record ", k, ": name length ", len, " outside 1..", kMaxNameLength);
    const std::string name(reinterpret_cast<const char*>(r.take(len, "name")), len);
    const auto it = index.find(name);
    if (it == index.end()) throw_mismatch(who, ": the file has state '", name, "' that the stream does not have");
    if (seen[it->second]) throw_format(who, ": state '", name, "' appears twice");
    seen[it->second] = true;
    const StreamStateTensor<S>& t = state[it->second];
    std::uint64_t dim[3];
    for (auto& d : dim) d = r.u64("dimension");
    const Index rows = t.tensor->dimension(1), cols = t.tensor->dimension(2);
    const bool rows_ok =
        t.grows ? dim[1] >= static_cast<std::uint64_t>(std::max<Index>(1, std::min<Index>(most_steps, t.max_rows))) &&
                      dim[1] <= static_cast<std::uint64_t>(t.max_rows)
                : dim[1] == static_cast<std::uint64_t>(rows);
    if (dim[0] != B || dim[2] != static_cast<std::uint64_t>(cols) || !rows_ok)
      throw_mismatch(who, ": state '", name, "': shape expected (", B, ", ",
                     t.grows ? cat("up to ", t.max_rows) : cat(rows), ", ", cols, ") but found (", dim[0], ", ", dim[1],
                     ", ", dim[2], ")");
    const std::uint64_t values = dim[0] * dim[1] * dim[2];  // each bounded above: no overflow
    if (values > r.remaining() / sizeof(S)) throw_format(who, ": state '", name, "' is truncated");
    found[it->second] =
        Found{r.take(static_cast<std::size_t>(values) * sizeof(S), "values"), static_cast<Index>(dim[1])};
  }
  if (r.remaining() != 0) throw_format(who, ": ", r.remaining(), " unused bytes after the last state record");
  // The growing caches of one layer (its keys and values) grow together: equal capacities.
  for (std::size_t i = 0; i < state.size(); ++i)
    for (std::size_t j = i + 1; j < state.size(); ++j) {
      const auto layer_of = [](const std::string& name) { return name.substr(0, name.rfind('.') + 1); };
      if (state[i].grows && state[j].grows && layer_of(state[i].name) == layer_of(state[j].name) &&
          found[i].rows != found[j].rows)
        throw_format(who, ": state '", state[i].name, "' has ", found[i].rows, " rows but '", state[j].name, "' has ",
                     found[j].rows, " (caches of one layer have the same capacity)");
    }
  for (std::size_t i = 0; i < state.size(); ++i) {
    Tensor3<S>& t = *state[i].tensor;
    if (t.dimension(1) != found[i].rows) t.resize(t.dimension(0), found[i].rows, t.dimension(2));
    copy_little_endian(found[i].data, reinterpret_cast<unsigned char*>(t.data()), static_cast<std::size_t>(t.size()),
                       sizeof(S));
  }
  stream.set_steps(steps);
}

}  // namespace detail::stream_state_format

/// Writes the state of every stream of `stream` to `path` atomically (a crash never leaves a partial file).
template <class S>
void save_state(Stream<S>& stream, const std::string& path) {
  const std::string who = "save_state(" + path + ")";
  const auto bytes = detail::stream_state_format::encode(stream);
  detail::write_file_atomically(path, bytes.data(), bytes.size(), who);
}

/// Restores the state saved by save_state into `stream` (open over the same architecture, same number of
/// streams). On any error the stream is unchanged.
template <class S>
void load_state(Stream<S>& stream, const std::string& path) {
  namespace sf = detail::stream_state_format;
  const std::string who = "load_state(" + path + ")";
  detail::InputFile file(path, who);
  std::vector<unsigned char> bytes;
  file.read(bytes, sf::kHeaderSize);
  if (bytes.size() < sf::kHeaderSize)
    detail::throw_format(who, ": not a seqattn stream state file (", bytes.size(), " bytes)");
  if (std::memcmp(bytes.data(), sf::kMagic, sizeof sf::kMagic) != 0)
    detail::throw_format(who, ": not a seqattn stream state file: it does not start with \"SEQATTNS\"");
  std::uint64_t total = 0;
  for (int i = 7; i >= 0; --i) total = (total << 8) | bytes[16 + static_cast<std::size_t>(i)];
  if (total < sf::kHeaderSize + 4 || (file.regular() && total != file.size()))
    detail::throw_format(who, ": the header declares ", total, " bytes but the file has ",
                         file.regular() ? detail::cat(file.size()) : std::string("another size"));
  if (total > sf::largest_file(stream))  // a pipe or a corrupt size field: never read more than could be valid
    detail::throw_format(who, ": the header declares ", total, " bytes, more than a state of this stream can take (",
                         sf::largest_file(stream), ")");
  file.read(bytes, total - bytes.size());
  if (bytes.size() != total)
    detail::throw_format(who, ": truncated: expected ", total, " bytes but found ", bytes.size());
  if (file.read(bytes, 1) > 0)
    detail::throw_format(who, ": the input goes on after the ", total, " bytes its header declares");
  sf::decode_into(stream, bytes, who);
}

}  // namespace seqattn
