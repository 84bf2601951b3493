#pragma once
/// \file
/// Model files: the architecture (every layer's type and options, nested Sequential and Residual bodies,
/// Bidirectional's layers, the input feature count) and every parameter and buffer in one file, so a deploying
/// program opens one file and runs it. Not in the umbrella header (it needs nlohmann-json, Debian
/// nlohmann-json3-dev, for the architecture's JSON text), as io/safetensors.hpp.
///
/// ```unparsed
///   save_model(model, "model.sqm");                       // atomic, checksummed; ConfigError for a layer type that
///                                                         // cannot be saved (no config(), not registered)
///   Sequential<float> m = load_model<float>("model.sqm"); // validates everything, then builds and loads
///   save_model(model, out_stream);  load_model<float>(in_stream);
///   save_model(graph, "graph.sqm"); Graph<float> g = load_graph<float>("graph.sqm");   // a Graph at the root
///   load_model<double>("model.sqm")                       // a float32 file loads into a double model (and the
///                                                         // reverse): values converted (double -> float rounds to
///                                                         // nearest; a value beyond float's range is refused as Inf)
/// ```
/// Metadata: anything a deploying program needs beside the model (class names, input normalization, the recipe),
/// as a JSON object stored in the file and covered by its checksum:
///
/// ```unparsed
///   save_model(model, "model.sqm", {{"class_names", {"walk", "run"}}, {"input_mean", {0.1, 2.0}}});
///   nlohmann::json meta = load_model_metadata("model.sqm");   // {} for a file saved without metadata
///   Sequential<float> m = load_model<float>("model.sqm", &meta);   // the model and its metadata in one read
/// ```
/// ConfigError (nothing written) when the metadata is not a JSON object. It is stored under "metadata" in the
/// architecture JSON (the file format stays version 1; readers before 0.2 refuse such files).
/// A loaded model predicts bitwise the same as the saved one (same scalar type), describe()s and summary()s
/// identically; the random streams of Dropout restart from their seeds. Layers are rebuilt through the registry
/// (model/layer_registry.hpp): your own layers load once registered with register_layer\<MyLayer>("MyLayer").
/// Weights-only files (io/weights.hpp, "SEQATTNW") keep loading with load_weights.
///
/// Format version 1. Integers are unsigned little-endian; values IEEE-754 little-endian, row-major.
///
/// ```unparsed
///   offset  bytes  field
///   0       8      magic "SEQATTNM"
///   8       4      format version (1)
///   12      4      scalar type: 1 = float32, 2 = float64
///   16      8      total file size in bytes, checksum included
///   24      8      input feature count of the model (1..INT64_MAX)
///   32      8      architecture length A (1..kMaxArchitectureBytes)
///   40      A      architecture, JSON (UTF-8): {"seqattn_version": "0.2.0", "model": {"class_name": "Sequential",
///                  "config": {"layers": [{"class_name": "Dense", "config": {"units": 8, "activation": "relu",
///                  ...}, "in_features": 4}, ...]}, "in_features": 4}}
///   40+A   ...     the tensor records of a weights file (io/detail/tensor_records.hpp): count, then kind, name,
///                  shape and values of every parameter and buffer
///   size-4  4      CRC-32 (zlib's) of every byte before it
///
/// ```
/// Loading checks, before it builds anything: magic, version (a newer version is refused with a message saying
/// so), scalar type, size (from a path: the declared size against the file's before the rest is read, and never
/// more than the declared size), checksum, input feature count, architecture length (bounded by the file and by
/// kMaxArchitectureBytes), every tensor record (as load_weights), the JSON (nesting at most kMaxJsonDepth). Then it
/// builds the layers, each constructor bounded by what the file's tensors justify (a corrupt size cannot make a load
/// allocate more than a small multiple of the file's values: MemoryError), and loads the tensors as load_weights
/// does (names, kinds, shapes, finite values).
/// Errors (io/errors.hpp): FileError (open, read, write, rename), FormatError (invalid bytes, invalid JSON, an
/// architecture that does not build: unknown layer class, a wrong option; the message names the layer and the
/// option), NonFiniteError, MismatchError (tensors that do not fit the architecture), MemoryError; messages start
/// with "save_model(\<path>)" or "load_model(\<path>)".

#include <cmath>
#include <cstdint>
#include <istream>
#include <memory>
#include <ostream>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "seqattn/core/layer_config.hpp"
#include "seqattn/core/memory_limit.hpp"
#include "seqattn/io/detail/atomic_file.hpp"
#include "seqattn/io/detail/byte_io.hpp"
#include "seqattn/io/detail/crc32.hpp"
#include "seqattn/io/detail/file_frame.hpp"
#include "seqattn/io/detail/tensor_records.hpp"
#include "seqattn/io/errors.hpp"
#include "seqattn/io/weights.hpp"
#include "seqattn/model/graph.hpp"
#include "seqattn/model/layer_registry.hpp"
#include "seqattn/model/sequential.hpp"

namespace seqattn {

inline constexpr std::uint64_t kMaxArchitectureBytes = std::uint64_t{64} << 20;  ///< 64 MiB of JSON
inline constexpr int kMaxJsonDepth = 4 * kMaxLayerDepth + 16;  ///< an entry nests 3 levels per layer level

namespace detail::model_format {

inline constexpr char kMagic[8] = {'S', 'E', 'Q', 'A', 'T', 'T', 'N', 'M'};
inline constexpr std::uint32_t kVersion = 1;
inline constexpr std::size_t kHeaderSize = 40;  ///< magic .. architecture length
inline constexpr std::uint64_t kMinFileSize = kHeaderSize + 1 + 8 + 4;

/// Config -> JSON; numbers must be finite (JSON has no NaN or Inf).
inline nlohmann::json to_json(const Config& c, const std::string& who) {
  switch (c.kind()) {
    case Config::Kind::Null: return nullptr;
    case Config::Kind::Bool: return c.as_bool();
    case Config::Kind::Int: return c.as_int();
    case Config::Kind::Double:
      if (!std::isfinite(c.as_double()))
        throw_config(who, ": a layer option is ", c.as_double(), ": a model file stores finite numbers only");
      return c.as_double();
    case Config::Kind::String: return c.as_string();
    case Config::Kind::Array: {
      nlohmann::json j = nlohmann::json::array();
      for (const Config& e : c.elements()) j.push_back(to_json(e, who));
      return j;
    }
    case Config::Kind::Object: {
      nlohmann::json j = nlohmann::json::object();
      for (std::size_t i = 0; i < c.size(); ++i) j[c.keys()[i]] = to_json(c.elements()[i], who);
      return j;
    }
  }
  return nullptr;
}

/// JSON -> Config (objects keep the file's key order: nlohmann sorts keys, so the order is that of the text
/// only for ordered_json, used here).
inline Config from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::json::value_t::null: return Config();
    case nlohmann::json::value_t::boolean: return Config(j.get<bool>());
    case nlohmann::json::value_t::number_integer: return Config(j.get<std::int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      const std::uint64_t v = j.get<std::uint64_t>();
      if (v <= std::uint64_t(INT64_MAX)) return Config(static_cast<std::int64_t>(v));
      return Config(static_cast<double>(v));  // refused by the typed reads that expect an integer
    }
    case nlohmann::json::value_t::number_float: return Config(j.get<double>());
    case nlohmann::json::value_t::string: return Config(j.get<std::string>());
    case nlohmann::json::value_t::array: {
      Config c = Config::array();
      for (const auto& e : j) c.push_back(from_json(e));
      return c;
    }
    case nlohmann::json::value_t::object: {
      Config c = Config::object();
      for (const auto& [key, value] : j.items()) c.set(key, from_json(value));
      return c;
    }
    default: break;
  }
  return Config();  // binary values cannot come from JSON text
}

/// The deepest nesting of [ and { in JSON text (outside strings), stopping once it exceeds `limit`.
inline int json_depth(const char* text, std::size_t n, int limit) {
  int depth = 0, deepest = 0;
  bool in_string = false, escaped = false;
  for (std::size_t i = 0; i < n && deepest <= limit; ++i) {
    const char c = text[i];
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      deepest = std::max(deepest, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return deepest;
}

/// Every class name in the entries of `entry` (itself, children in "layers", "layer", "backward_layer", ...)
/// must be registered for S: a save never writes a file that its own program cannot load.
template <class S>
void check_registered(const Config& c, const std::string& who) {
  if (c.is_object() && c.find("class_name") && c.find("in_features") && c.find("config")) {
    const Config& type = *c.find("class_name");
    if (type.kind() == Config::Kind::String && !LayerRegistry<S>::instance().contains(type.as_string()))
      throw_config(who, ": layer class '", type.as_string(),
                   "' is not registered, so the file would not load "
                   "(register_layer<",
                   type.as_string(), ">(\"", type.as_string(), "\"), model/layer_registry.hpp)");
  }
  for (const Config& e : c.elements()) check_registered<S>(e, who);
}

/// model: a Sequential\<S> or a Graph\<S> (the root of the architecture).
template <class S>
std::vector<unsigned char> encode(Layer<S>& model, const WeightsOptions& options, const std::string& who,
                                  const nlohmann::json* metadata = nullptr) {
  if (metadata && !metadata->is_object())
    throw_config(who, ": the metadata must be a JSON object but got a ", metadata->type_name());
  Config entry;
  try {
    entry = layer_entry(model);
  } catch (const ConfigError& e) {
    throw_config(who, ": ", e.what());
  }
  check_registered<S>(entry, who);
  nlohmann::json arch = nlohmann::json::object();
  arch["seqattn_version"] = version_string();
  arch["model"] = to_json(entry, who);
  if (metadata && !metadata->empty()) arch["metadata"] = *metadata;
  std::string text;
  try {
    text = arch.dump();
  } catch (const nlohmann::json::exception& e) {
    throw_config(who, ": the architecture cannot be written as JSON (", e.what(), ")");
  }
  if (text.size() > kMaxArchitectureBytes)
    throw_config(who, ": the architecture takes ", text.size(), " bytes of JSON, more than the maximum ",
                 kMaxArchitectureBytes);
  ByteWriter w;
  w.raw(kMagic, sizeof kMagic);
  w.u32(kVersion);
  w.u32(tensor_records::ScalarCode<S>::value);
  w.u64(0);  // total size, patched below
  w.u64(static_cast<std::uint64_t>(model.in_features()));
  w.u64(text.size());
  w.raw(text.data(), text.size());
  tensor_records::write_records(w, model, options.allow_non_finite(), who);
  w.patch_u64(16, w.size() + 4);
  w.u32(crc32(w.bytes().data(), w.size()));
  return std::move(w.bytes());
}

inline std::uint64_t check_header(const std::vector<unsigned char>& b, std::uint64_t actual, const std::string& who) {
  return check_frame_header(b.data(), b.size(), actual, kMagic, "seqattn model file", kVersion, 0, "", kMinFileSize,
                            who)
      .total;
}

/// Model: Sequential\<S> or Graph\<S>, whose class_name the architecture's root must have.
template <class S, class Model = Sequential<S>>
Model decode(const std::vector<unsigned char>& bytes, const WeightsOptions& options, const std::string& who,
             nlohmann::json* metadata = nullptr) {
  const std::size_t n = bytes.size();
  const FrameHeader header =
      check_frame_header(bytes.data(), n, n, kMagic, "seqattn model file", kVersion, 0, "", kMinFileSize, who);
  check_crc(bytes, who);
  ByteReader r(bytes.data(), n - 4, who);
  r.take(24, "header");
  const std::uint64_t in_features = r.u64("input feature count");
  if (in_features == 0 || in_features > std::uint64_t(INT64_MAX))
    throw_format(who, ": input feature count expected 1..", INT64_MAX, " but found ", in_features);
  const std::uint64_t length = r.u64("architecture length");
  if (length == 0 || length > kMaxArchitectureBytes || length > r.remaining())
    throw_format(who, ": architecture length ", length, " outside 1..",
                 std::min<std::uint64_t>(kMaxArchitectureBytes, r.remaining()), " (the bytes that remain in the ", n,
                 "-byte file, at most ", kMaxArchitectureBytes, ")");
  const char* text = reinterpret_cast<const char*>(r.take(static_cast<std::size_t>(length), "architecture"));
  const std::size_t width = tensor_records::scalar_width(header.scalar);
  const std::vector<tensor_records::Record> records = tensor_records::read_records(r, width, n, who);

  if (json_depth(text, static_cast<std::size_t>(length), kMaxJsonDepth) > kMaxJsonDepth)
    throw_format(who, ": the architecture JSON nests deeper than ", kMaxJsonDepth, " levels");
  Config arch;
  try {
    nlohmann::ordered_json parsed = nlohmann::ordered_json::parse(text, text + length);
    if (parsed.is_object() && parsed.contains("metadata")) {
      if (!parsed["metadata"].is_object()) throw_format(who, ": the metadata is not a JSON object");
      if (metadata) *metadata = nlohmann::json::parse(parsed["metadata"].dump());
      parsed.erase("metadata");
    } else if (metadata) {
      *metadata = nlohmann::json::object();
    }
    arch = from_json(parsed);
  } catch (const nlohmann::json::exception& e) {
    throw_format(who, ": the architecture is not valid JSON: ", e.what());
  }

  // The constructors may take, for their tensors and gradients, a few times what the file's values justify.
  std::size_t values = 0;
  for (const auto& rec : records) values += rec.count;  // bounded by the file size
  const std::size_t budget = saturating_add(saturating_bytes(8 * sizeof(S), {static_cast<Index>(values)}), 1u << 20);
  std::unique_ptr<Layer<S>> built;
  try {
    ConfigReader top(arch, "architecture");
    top.read<std::string>("seqattn_version");
    const Config& entry = top.get("model");
    top.finish();
    const Config* type = entry.find("class_name");
    const std::string root = std::is_same<Model, Graph<S>>::value ? "Graph" : "Sequential";
    if (!type || type->kind() != Config::Kind::String || type->as_string() != root)
      throw_config("architecture: 'model' expected a ", root, " but got ", entry.dump(80),
                   root == "Graph" ? " (load_model reads a Sequential)" : " (load_graph reads a Graph)");
    const ScopedParameterBudget scope(budget, "the tensors of the model file justify (a corrupt size?)");
    built = build_layer<S>(entry, static_cast<Index>(in_features));
  } catch (const MemoryError& e) {
    throw MemoryError(cat(who, ": ", e.what()));
  } catch (const Error& e) {
    throw_format(who, ": ", e.what());
  }
  auto* typed = dynamic_cast<Model*>(built.get());
  if (!typed) throw_format(who, ": the class registered as its root built ", built->describe());
  Model model = std::move(*typed);
  tensor_records::apply_records(model, records, width, options.allow_non_finite(), who);
  return model;
}

}  // namespace detail::model_format

/// Writes the architecture and every parameter and buffer of `model` to `out` (format above). ConfigError
/// (nothing written) for a layer that cannot be saved; NonFiniteError for a NaN or Inf weight unless
/// options.allow_non_finite(); FileError when the stream fails.
template <class S>
void save_model(Sequential<S>& model, std::ostream& out, const WeightsOptions& options = WeightsOptions()) {
  const auto bytes = detail::model_format::encode(model, options, "save_model(stream)");
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  out.flush();
  if (!out) detail::throw_file("save_model(stream): writing ", bytes.size(), " bytes failed");
}

/// Writes the model file at `path` atomically (as save_weights: a temporary file beside it, fsync, rename).
template <class S>
void save_model(Sequential<S>& model, const std::string& path, const WeightsOptions& options = WeightsOptions()) {
  const std::string who = "save_model(" + path + ")";
  const auto bytes = detail::model_format::encode(model, options, who);
  detail::write_file_atomically(path, bytes.data(), bytes.size(), who);
}

/// The same with `metadata` (a JSON object) stored in the file (see "Metadata" above).
template <class S>
void save_model(Sequential<S>& model, const std::string& path, const nlohmann::json& metadata,
                const WeightsOptions& options = WeightsOptions()) {
  const std::string who = "save_model(" + path + ")";
  const auto bytes = detail::model_format::encode(model, options, who, &metadata);
  detail::write_file_atomically(path, bytes.data(), bytes.size(), who);
}

/// Reads one model file from `in` (exactly its bytes) and returns the model, in S whichever scalar type the file
/// holds (values converted).
template <class S>
Sequential<S> load_model(std::istream& in, const WeightsOptions& options = WeightsOptions()) {
  namespace mf = detail::model_format;
  const std::string who = "load_model(stream)";
  const auto bytes = detail::read_framed(
      in, mf::kHeaderSize,
      [&](const std::vector<unsigned char>& b, std::uint64_t actual) { return mf::check_header(b, actual, who); });
  return mf::decode<S>(bytes, options, who);
}

/// Reads the model file at `path` (the header first, then never more than its declared size).
/// With `metadata`: also its metadata ({} when it has none).
template <class S>
Sequential<S> load_model(const std::string& path, nlohmann::json* metadata,
                         const WeightsOptions& options = WeightsOptions()) {
  namespace mf = detail::model_format;
  const std::string who = "load_model(" + path + ")";
  const auto bytes = detail::read_framed(
      path, mf::kHeaderSize,
      [&](const std::vector<unsigned char>& b, std::uint64_t actual) { return mf::check_header(b, actual, who); }, who);
  return mf::decode<S>(bytes, options, who, metadata);
}
/// load_model(path, nullptr, options): the model only, without its metadata.
template <class S>
Sequential<S> load_model(const std::string& path, const WeightsOptions& options = WeightsOptions()) {
  return load_model<S>(path, nullptr, options);
}

/// The metadata of the model file at `path` ({} when it has none), after the checks of a load; the model is not
/// built. Works for Sequential and Graph files alike.
inline nlohmann::json load_model_metadata(const std::string& path) {
  namespace mf = detail::model_format;
  const std::string who = "load_model_metadata(" + path + ")";
  const auto bytes = detail::read_framed(
      path, mf::kHeaderSize,
      [&](const std::vector<unsigned char>& b, std::uint64_t actual) { return mf::check_header(b, actual, who); }, who);
  detail::check_crc(bytes, who);
  detail::ByteReader r(bytes.data(), bytes.size() - 4, who);
  r.take(32, "header");
  const std::uint64_t length = r.u64("architecture length");
  if (length == 0 || length > kMaxArchitectureBytes || length > r.remaining())
    detail::throw_format(who, ": architecture length ", length, " outside 1..", r.remaining());
  const char* text = reinterpret_cast<const char*>(r.take(static_cast<std::size_t>(length), "architecture"));
  if (mf::json_depth(text, static_cast<std::size_t>(length), kMaxJsonDepth) > kMaxJsonDepth)
    detail::throw_format(who, ": the architecture JSON nests deeper than ", kMaxJsonDepth, " levels");
  try {
    const nlohmann::json arch = nlohmann::json::parse(text, text + length);
    if (!arch.is_object() || !arch.contains("metadata")) return nlohmann::json::object();
    if (!arch["metadata"].is_object()) detail::throw_format(who, ": the metadata is not a JSON object");
    return arch["metadata"];
  } catch (const nlohmann::json::exception& e) {
    detail::throw_format(who, ": the architecture is not valid JSON: ", e.what());
  }
}

/// Graphs (model/graph.hpp): the same file format with a Graph at the root; the header's input feature count is the
/// graph's first input's. save_model(graph, ...) writes one, load_graph\<S>(...) reads one (load_model refuses it,
/// and the reverse, saying which to call).
template <class S>
void save_model(Graph<S>& model, std::ostream& out, const WeightsOptions& options = WeightsOptions()) {
  const auto bytes = detail::model_format::encode<S>(model, options, "save_model(stream)");
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  out.flush();
  if (!out) detail::throw_file("save_model(stream): writing ", bytes.size(), " bytes failed");
}
/// Writes the graph to `path` atomically (temporary file, fsync, rename).
template <class S>
void save_model(Graph<S>& model, const std::string& path, const WeightsOptions& options = WeightsOptions()) {
  const std::string who = "save_model(" + path + ")";
  const auto bytes = detail::model_format::encode<S>(model, options, who);
  detail::write_file_atomically(path, bytes.data(), bytes.size(), who);
}
/// Writes the graph and `metadata` (a JSON object) to `path` atomically.
template <class S>
void save_model(Graph<S>& model, const std::string& path, const nlohmann::json& metadata,
                const WeightsOptions& options = WeightsOptions()) {
  const std::string who = "save_model(" + path + ")";
  const auto bytes = detail::model_format::encode<S>(model, options, who, &metadata);
  detail::write_file_atomically(path, bytes.data(), bytes.size(), who);
}
/// Reads a graph model file from `in`.
template <class S>
Graph<S> load_graph(std::istream& in, const WeightsOptions& options = WeightsOptions()) {
  namespace mf = detail::model_format;
  const std::string who = "load_graph(stream)";
  const auto bytes = detail::read_framed(
      in, mf::kHeaderSize,
      [&](const std::vector<unsigned char>& b, std::uint64_t actual) { return mf::check_header(b, actual, who); });
  return mf::decode<S, Graph<S>>(bytes, options, who);
}
/// Reads the graph model file at `path` and its metadata into *metadata (when not null).
template <class S>
Graph<S> load_graph(const std::string& path, nlohmann::json* metadata, const WeightsOptions& options = WeightsOptions()) {
  namespace mf = detail::model_format;
  const std::string who = "load_graph(" + path + ")";
  const auto bytes = detail::read_framed(
      path, mf::kHeaderSize,
      [&](const std::vector<unsigned char>& b, std::uint64_t actual) { return mf::check_header(b, actual, who); }, who);
  return mf::decode<S, Graph<S>>(bytes, options, who, metadata);
}
/// Reads the graph model file at `path`.
template <class S>
Graph<S> load_graph(const std::string& path, const WeightsOptions& options = WeightsOptions()) {
  return load_graph<S>(path, nullptr, options);
}

}  // namespace seqattn
