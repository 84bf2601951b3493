#pragma once
/// \file
/// Checkpoints: a model, its optimizer's state and the training loop's position in one file, written atomically,
/// so that a job restarted from it continues to the same bits as one that was never interrupted.
/// Not part of the umbrella header: it needs nlohmann-json (io/model_file.hpp).
///
/// ```unparsed
///   save_checkpoint("run.ckpt", model, adam, {epoch, batch, step});   atomic (io/detail/atomic_file.hpp)
///   TrainingProgress p = load_checkpoint("run.ckpt", model, adam);   weights, buffers, moments, step, lr
///
/// ```
/// model: a Sequential\<S> or a Graph\<S>; optimizer: Adam\<S> or SGD\<S> (anything with state() / load_state()).
/// TrainingProgress: where the loop stood (epoch, batch within the epoch, global step: the next step to run) and
/// `extra`, any JSON object of the program's own (its schedule, its best score...).
/// load_checkpoint checks everything before it changes anything: the container (magic, sizes, checksum, a header
/// JSON with integer counts, nesting at most 256 levels: FormatError naming the file), the embedded model file
/// (io/model_file.hpp's checks), that the model in the file has the architecture of `model` (the same parameter
/// and buffer names and shapes: MismatchError naming the first difference) and that the optimizer state fits
/// `optimizer` (ConfigError, optim/optimizer_state.hpp, and the optimizer's own load_state checks). Then it
/// restores the optimizer and copies the weights into `model` with Layer::assign (the optimizer's views of
/// `model` stay valid).
/// encode_checkpoint / decode_checkpoint do the same on bytes (the distributed trainer broadcasts them).
///
/// Format, little-endian: "SEQATTN-CHECKPT\\n" (16 bytes), u64 n, n bytes of JSON {"progress": {...},
/// "optimizer": {"name", "step", "lr", "tensors": [{"name", "size"}...]}, "scalar_bytes": 4 or 8,
/// "model_bytes": m}, the m bytes of a model file, the optimizer tensors' values (scalar_bytes each, in order), and
/// a u64 FNV-1a hash of every byte before it.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "seqattn/detail/fnv1a.hpp"
#include "seqattn/io/detail/atomic_file.hpp"
#include "seqattn/io/detail/byte_io.hpp"
#include "seqattn/io/errors.hpp"
#include "seqattn/io/model_file.hpp"
#include "seqattn/model/graph.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/optim/optimizer_state.hpp"

namespace seqattn {

/// Where a training loop stood when a checkpoint was written, and the program's own state.
struct TrainingProgress {
  std::int64_t epoch = 0;  ///< the epoch the next step belongs to
  std::int64_t batch = 0;  ///< the next batch within that epoch
  std::int64_t global_step = 0;  ///< steps taken so far (the next step's number)
  nlohmann::json extra = nlohmann::json::object();  ///< the program's own state
};

namespace detail::checkpoint {

constexpr char kMagic[17] = "SEQATTN-CHECKPT\n";
constexpr std::uint64_t kMaxJson = 64ULL << 20;
constexpr int kMaxJsonDepth = 256;  ///< nesting of the header JSON (`extra` included): its copies recurse
// The nesting depth of a JSON value (a scalar: 0), stopping once it exceeds `limit` (no deep recursion).
inline int nesting(const nlohmann::json& j, int limit = 1 << 20) {
  if (!j.is_structured() || limit <= 0) return 0;
  int deepest = 0;
  for (const auto& child : j) {
    deepest = std::max(deepest, nesting(child, std::min(limit, kMaxJsonDepth) - 1));
    if (deepest >= kMaxJsonDepth) break;
  }
  return 1 + deepest;
}

using seqattn::detail::fnv1a;  // detail/fnv1a.hpp: the checksum
inline void put_u64(std::vector<unsigned char>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<unsigned char>(v >> (8 * i)));
}
inline std::uint64_t get_u64(const unsigned char* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(p[i]) << (8 * i);
  return v;
}

// An integer field of the header: a JSON integer (not a float: converting one out of range is undefined) in
// [0, 2^64) or [-2^63, 2^63); FormatError otherwise.
inline std::uint64_t get_unsigned(const nlohmann::json& j, const std::string& who, const char* what) {
  if (!j.is_number_unsigned())
    throw_format(who, ": ", what, " must be an integer >= 0 (got a JSON ", j.type_name(), ")");
  return j.get<std::uint64_t>();
}
inline std::int64_t get_signed(const nlohmann::json& j, const std::string& who, const char* what) {
  if (!j.is_number_integer() || (j.is_number_unsigned() && j.get<std::uint64_t>() > std::uint64_t(INT64_MAX)))
    throw_format(who, ": ", what, " must be a 64-bit integer (got a JSON ", j.type_name(), ")");
  return j.get<std::int64_t>();
}

template <class S>
Sequential<S> load_architecture(std::istream& in, const Sequential<S>*) {
  return load_model<S>(in);
}
template <class S>
Graph<S> load_architecture(std::istream& in, const Graph<S>*) {
  return load_graph<S>(in);
}

/// The same names and shapes in the same order, or MismatchError naming the first difference.
template <class S>
void check_same_layout(const ParamList<S>& want, const ParamList<S>& got, const char* kind, const std::string& who) {
  if (want.size() != got.size())
    throw_mismatch(who, ": the model has ", want.size(), " ", kind, " but the checkpoint's has ", got.size());
  for (size_t i = 0; i < want.size(); ++i)
    if (want[i].name != got[i].name || want[i].shape != got[i].shape)
      throw_mismatch(who, ": ", kind, " ", i, " is '", want[i].name, "' ", want[i].shape_string(),
                     " in the model but '", got[i].name, "' ", got[i].shape_string(), " in the checkpoint");
}

}  // namespace detail::checkpoint

/// The checkpoint's bytes (format above). The model must be one a model file can hold (ConfigError otherwise).
template <class Model, class Optimizer>
std::vector<unsigned char> encode_checkpoint(Model& model, const Optimizer& optimizer,
                                             const TrainingProgress& progress) {
  namespace ck = detail::checkpoint;
  using S = std::remove_reference_t<decltype(*optimizer.params()[0].value)>;
  if (ck::nesting(progress.extra) > ck::kMaxJsonDepth - 3)  // inside {"progress": {"extra": ...}}
    detail::throw_config("save_checkpoint: TrainingProgress::extra nests deeper than ", ck::kMaxJsonDepth - 3,
                         " levels (a checkpoint's header may nest at most ", ck::kMaxJsonDepth, ")");
  std::ostringstream model_bytes;
  save_model(model, model_bytes);
  const std::string mb = model_bytes.str();
  const OptimizerState<S> state = optimizer.state();
  nlohmann::json tensors = nlohmann::json::array();
  for (const auto& [name, value] : state.tensors) tensors.push_back({{"name", name}, {"size", value.size()}});
  const nlohmann::json head = {
      {"progress",
       {{"epoch", progress.epoch}, {"batch", progress.batch}, {"global_step", progress.global_step},
        {"extra", progress.extra}}},
      {"optimizer", {{"name", state.optimizer}, {"step", state.step}, {"lr", state.lr}, {"tensors", tensors}}},
      {"scalar_bytes", sizeof(S)},
      {"model_bytes", mb.size()}};
  const std::string js = head.dump();
  std::vector<unsigned char> out(ck::kMagic, ck::kMagic + 16);
  ck::put_u64(out, js.size());
  out.insert(out.end(), js.begin(), js.end());
  out.insert(out.end(), mb.begin(), mb.end());
  for (const auto& t : state.tensors) {
    const auto* p = reinterpret_cast<const unsigned char*>(t.second.data());
    out.insert(out.end(), p, p + sizeof(S) * static_cast<std::size_t>(t.second.size()));
  }
  ck::put_u64(out, ck::fnv1a(out.data(), out.size()));
  return out;
}

/// Restores `model` and `optimizer` from checkpoint bytes (every check first; see the file comment) and returns
/// the progress. `who` starts the error messages.
template <class Model, class Optimizer>
TrainingProgress decode_checkpoint(const std::vector<unsigned char>& bytes, Model& model, Optimizer& optimizer,
                                   const std::string& who = "load_checkpoint") {
  namespace ck = detail::checkpoint;
  using S = std::remove_reference_t<decltype(*optimizer.params()[0].value)>;
  if (bytes.size() < 32 || std::memcmp(bytes.data(), ck::kMagic, 16) != 0)
    detail::throw_format(who, ": not a seqattn checkpoint (expected the 16-byte magic \"SEQATTN-CHECKPT\\n\" and at "
                         "least 32 bytes; got ", bytes.size(), " bytes)");
  const std::uint64_t stored = ck::get_u64(bytes.data() + bytes.size() - 8);
  if (stored != ck::fnv1a(bytes.data(), bytes.size() - 8))
    detail::throw_format(who, ": checksum mismatch: the file is damaged or truncated");
  const std::uint64_t n = ck::get_u64(bytes.data() + 16);
  if (n > ck::kMaxJson || n > bytes.size() - 32)
    detail::throw_format(who, ": header of ", n, " bytes does not fit in a file of ", bytes.size(), " bytes");
  nlohmann::json head;
  std::uint64_t model_size = 0;
  OptimizerState<S> state;
  TrainingProgress progress;
  std::size_t values = 0;
  if (detail::model_format::json_depth(reinterpret_cast<const char*>(bytes.data()) + 24, static_cast<std::size_t>(n),
                                      ck::kMaxJsonDepth) > ck::kMaxJsonDepth)
    detail::throw_format(who, ": the header JSON nests deeper than ", ck::kMaxJsonDepth, " levels");
  try {
    head = nlohmann::json::parse(bytes.begin() + 24, bytes.begin() + 24 + static_cast<std::ptrdiff_t>(n));
    const std::uint64_t scalar_bytes = ck::get_unsigned(head.at("scalar_bytes"), who, "scalar_bytes");
    if (scalar_bytes != sizeof(S))
      detail::throw_format(who, ": the checkpoint holds ", scalar_bytes, "-byte values but the model's are ",
                           sizeof(S), "-byte");
    model_size = ck::get_unsigned(head.at("model_bytes"), who, "model_bytes");
    const auto& p = head.at("progress");
    progress.epoch = ck::get_signed(p.at("epoch"), who, "progress.epoch");
    progress.batch = ck::get_signed(p.at("batch"), who, "progress.batch");
    progress.global_step = ck::get_signed(p.at("global_step"), who, "progress.global_step");
    progress.extra = p.at("extra");
    const auto& o = head.at("optimizer");
    state.optimizer = o.at("name").get<std::string>();
    state.step = ck::get_signed(o.at("step"), who, "optimizer.step");
    state.lr = o.at("lr").get<double>();
    for (const auto& t : o.at("tensors")) {
      const std::uint64_t size = ck::get_unsigned(t.at("size"), who, "optimizer tensor size");
      // All the tensors together (values <= bytes.size() / sizeof(S) here): allocates at most the file's size.
      if (size > bytes.size() / sizeof(S) - values)
        detail::throw_format(who, ": optimizer tensors of more values than the file holds (", values, " + ", size,
                             " values in ", bytes.size(), " bytes)");
      state.tensors.emplace_back(t.at("name").get<std::string>(), Vector<S>(static_cast<Index>(size)));
      values += static_cast<std::size_t>(size);
    }
  } catch (const nlohmann::json::exception& e) {
    detail::throw_format(who, ": malformed header: ", e.what());
  }
  const std::uint64_t expected = 24 + n + model_size + values * sizeof(S) + 8;
  if (model_size > bytes.size() || expected != bytes.size())
    detail::throw_format(who, ": the header declares ", expected, " bytes but the file has ", bytes.size());
  const unsigned char* model_begin = bytes.data() + 24 + n;
  std::istringstream model_in(std::string(reinterpret_cast<const char*>(model_begin), model_size));
  Model loaded = ck::load_architecture(model_in, static_cast<const Model*>(nullptr));
  const unsigned char* v = model_begin + model_size;
  for (auto& t : state.tensors) {
    std::memcpy(t.second.data(), v, sizeof(S) * static_cast<std::size_t>(t.second.size()));
    v += sizeof(S) * static_cast<std::size_t>(t.second.size());
  }
  ck::check_same_layout(model.params(), loaded.params(), "parameters", who);
  ck::check_same_layout(model.buffers(), loaded.buffers(), "buffers", who);
  detail::check_optimizer_state(optimizer.state(), state);
  if (progress.epoch < 0 || progress.batch < 0 || progress.global_step < 0)
    detail::throw_format(who, ": negative progress (epoch ", progress.epoch, ", batch ", progress.batch, ", step ",
                         progress.global_step, ")");
  // The optimizer first: load_state makes its own checks (the lr, SGD's momentum_started values) before it
  // changes anything; then the model, whose layout was checked (and, should assign fail, the optimizer back).
  const OptimizerState<S> previous = optimizer.state();
  optimizer.load_state(state);
  try {
    model.assign(loaded);
  } catch (...) {
    optimizer.load_state(previous);
    throw;
  }
  return progress;
}

/// Writes the checkpoint at `path` atomically: `path` always names a complete checkpoint, old or new.
template <class Model, class Optimizer>
void save_checkpoint(const std::string& path, Model& model, const Optimizer& optimizer,
                     const TrainingProgress& progress) {
  const auto bytes = encode_checkpoint(model, optimizer, progress);
  detail::write_file_atomically(path, bytes.data(), bytes.size(), "save_checkpoint(" + path + ")");
}

/// The bytes of the checkpoint file at `path` (a regular file; FileError otherwise).
inline std::vector<unsigned char> read_checkpoint_bytes(const std::string& path) {
  const std::string who = "load_checkpoint(" + path + ")";
  detail::InputFile file(path, who);
  if (!file.regular()) detail::throw_file(who, ": not a checkpoint: empty or not a regular file");
  std::vector<unsigned char> bytes;
  bytes.reserve(static_cast<std::size_t>(file.size()));
  file.read(bytes, file.size());
  return bytes;
}

/// Restores `model` and `optimizer` from the checkpoint at `path` and returns where the loop stood.
template <class Model, class Optimizer>
TrainingProgress load_checkpoint(const std::string& path, Model& model, Optimizer& optimizer) {
  return decode_checkpoint(read_checkpoint_bytes(path), model, optimizer, "load_checkpoint(" + path + ")");
}

}  // namespace seqattn
