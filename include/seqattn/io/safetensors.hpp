#pragma once
/// \file
/// safetensors import and export (the format PyTorch models are shared in), with a mapping of seqattn names
/// to PyTorch state_dict names. Not part of the umbrella header: it needs nlohmann-json (Debian package
/// nlohmann-json3-dev; CMake: find_package(nlohmann_json) and link nlohmann_json::nlohmann_json).
///
/// ```unparsed
///   save_safetensors(model, "model.safetensors");   // atomic, like save_weights
///   load_safetensors(model, "model.safetensors");   // validates everything first; on error the model is unchanged
///   // PyTorch:  model.load_state_dict(safetensors.torch.load_file("model.safetensors"))
///
/// ```
/// The mapping (io/torch_names.hpp has the full table): Dense W (in, out) \<-> "\<i>.weight" (out, in), b \<-> bias;
/// MultiHeadAttention Wq, Wk, Wv \<-> in_proj_weight = [Wq^T; Wk^T; Wv^T], bq, bk, bv \<-> in_proj_bias,
/// Wo \<-> out_proj.weight = Wo^T, bo \<-> out_proj.bias; Conv1D W \<-> weight (filters, in, k); LayerNorm and
/// BatchNorm gamma, beta \<-> weight, bias (running_mean, running_var keep their names); Embedding and
/// PositionEmbedding embeddings \<-> weight. Replace it with SafetensorsOptions().name_map(f), f: TensorRef ->
/// TorchName (usually falling back to default_torch_name).
///
/// Export writes F32 for float models and F64 for double models, tensors in model order, the header padded
/// with spaces to a multiple of 8 bytes, metadata {"format": "pt"} by default. Import accepts F32, F64, F16 and
/// BF16 tensors (converted to the model's scalar type) and checks, before it modifies the model: the container
/// (io/detail/safetensors_format.hpp: header JSON, dtypes, offsets tiling the buffer, truncation, trailing
/// bytes: FormatError), that every PyTorch tensor the model maps to is present with the expected shape and a
/// floating dtype, and that the file has no other tensor except those options.ignore() accepts (by default
/// "*num_batches_tracked"): MismatchError; last, that every value it loads is finite in the model's scalar type
/// (a NaN or Inf in any float dtype, or an F64 value beyond float's range for a float model): NonFiniteError (a
/// FormatError) naming the file, the PyTorch tensor, the seqattn tensors it maps to, the element of the file's
/// tensor and the value. Export refuses to write a model holding a NaN or Inf (such a file would not load by
/// default). SafetensorsOptions().allow_non_finite(true) passes them through in both directions. Dimensions are
/// at most INT64_MAX and their product a 64-bit count (FormatError with the unsigned value). An inconsistent
/// mapping (two tensors in one place, parts of different shapes) is a ConfigError. Messages start with
/// "load_safetensors(\<path>)" / "save_safetensors(..)".
/// Loading from a path reads the 8-byte header size first (at most 100 MB, and within a regular file's size),
/// then the header, and checks the data size its offsets imply against the file's size before reading the data:
/// /dev/zero, a large file that is not safetensors or a pipe cost no more than they declare. Saving to a path is
/// atomic like save_weights (follows symbolic links, keeps the file's permission bits, refuses a file without
/// write permission).

#include <cmath>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "seqattn/core/layer.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/io/detail/atomic_file.hpp"
#include "seqattn/io/detail/non_finite.hpp"
#include "seqattn/io/detail/safetensors_format.hpp"
#include "seqattn/io/torch_names.hpp"
#include "seqattn/model/sequential.hpp"

namespace seqattn {

/// The __metadata__ of a safetensors file: string keys and values.
using SafetensorsMetadata = std::map<std::string, std::string>;

/// Options of save_safetensors and load_safetensors (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct SafetensorsOptions {
  /// The PyTorch name of each seqattn tensor (io/torch_names.hpp).
  SEQATTN_ARG(std::function<TorchName(const TensorRef&)>, name_map, default_torch_name)
  SEQATTN_ARG(std::function<bool(const std::string&)>, ignore, default_torch_ignore)  ///< import: skipped tensors
  SEQATTN_ARG(SafetensorsMetadata, metadata, {{"format", "pt"}})  ///< export: __metadata__
  /// false (default): import refuses a NaN or Inf value (also a finite F64 value out of the float range of a
  /// float model) and export refuses a model holding one (NonFiniteError); true: both pass them through.
  SEQATTN_ARG(bool, allow_non_finite, false)
};

/// Any safetensors file, decoded (for inspection and tests). values: every element as double (floating and
/// integer dtypes; empty for F8 dtypes), row-major.
struct SafetensorsTensor {
  std::string dtype;  ///< The safetensors dtype: "F32", "BF16", "I64", ...
  std::vector<Index> shape;  ///< The tensor's shape.
  std::vector<double> values;  ///< Every element as double, row-major (empty for F8 dtypes).
};
/// Every tensor of a safetensors file with its metadata (read_safetensors).
struct SafetensorsContents {
  std::map<std::string, SafetensorsTensor> tensors;  ///< The tensors by name.
  SafetensorsMetadata metadata;  ///< The file's __metadata__.
};

namespace detail::safetensors {

/// One PyTorch tensor of the mapping and the seqattn tensors that make it up (one per part).
template <class S>
struct Group {
  std::string name;
  std::vector<Index> shape;  ///< PyTorch shape
  std::vector<Index> part_shape;
  std::size_t part_count = 0;  ///< elements per part
  std::vector<Param<S>> parts;  ///< indexed by part
  std::vector<TensorRef> refs;
  std::vector<TorchName> slots;
  std::string describe() const {  // "'0.dense.W' transposed"
    std::string s;
    for (std::size_t i = 0; i < refs.size(); ++i)
      if (!refs[i].name.empty())
        s += cat(s.empty() ? "" : ", ", "'", refs[i].name, "'", transform(i));
    return s;
  }
  std::string transform(std::size_t i) const {
    if (!slots[i].reverse_axes) return "";
    return (slots[i].view.empty() ? refs[i].shape.size() : slots[i].view.size()) == 2 ? " transposed" : " axes reversed";
  }
};

template <class S>
void walk(Layer<S>& layer, const std::string& path, const std::string& prefix, std::map<std::string, TensorRef>& out) {
  if (auto* seq = dynamic_cast<Sequential<S>*>(&layer)) {
    for (Index i = 0; i < seq->size(); ++i) {
      Layer<S>& child = seq->layer(i);
      const std::string index = std::to_string(i);
      walk(child, path.empty() ? index : path + "." + index, prefix + index + "." + child.name() + ".", out);
    }
    return;
  }
  for (const bool buffer : {false, true})
    for (const auto& p : buffer ? layer.buffers() : layer.params())
      out[prefix + p.name] = TensorRef{prefix + p.name, path, layer.name(), p.name, p.shape, layer.in_features(), buffer};
}

inline std::vector<Index> reversed(std::vector<Index> v) { return {v.rbegin(), v.rend()}; }

/// positions[i] = where element i (row-major over `view`) goes in the part (row-major over the reversed view).
inline std::vector<std::size_t> positions(const std::vector<Index>& view, std::size_t count) {
  const std::size_t D = view.size();
  std::vector<std::size_t> rstride(D, 1);  // stride in the reversed tensor of axis k of the view
  for (std::size_t k = 1; k < D; ++k) rstride[k] = rstride[k - 1] * static_cast<std::size_t>(view[k - 1]);
  std::vector<std::size_t> pos(count), idx(D, 0);
  for (std::size_t i = 0; i < count; ++i) {
    std::size_t at = 0;
    for (std::size_t k = 0; k < D; ++k) at += idx[k] * rstride[k];
    pos[i] = at;
    for (std::size_t k = D; k-- > 0;) {
      if (++idx[k] < static_cast<std::size_t>(view[k])) break;
      idx[k] = 0;
    }
  }
  return pos;
}

/// Maps every tensor of the model; ConfigError when the mapping is inconsistent.
template <class S>
std::vector<Group<S>> plan(Layer<S>& model, const SafetensorsOptions& options, const std::string& who) {
  std::map<std::string, TensorRef> refs;
  walk(model, "", "", refs);
  std::vector<Group<S>> groups;
  std::map<std::string, std::size_t> index;
  for (const bool buffer : {false, true})
    for (const auto& p : buffer ? model.buffers() : model.params()) {
      auto found = refs.find(p.name);
      const TensorRef ref = found != refs.end() ? found->second : TensorRef{p.name, "", model.name(), p.name, p.shape,
                                                                            model.in_features(), buffer};
      const TorchName slot = options.name_map()(ref);
      const std::string at = cat(who, ": mapping of '", p.name, "' to '", slot.name, "'");
      if (slot.name.empty()) throw_config(at, ": empty PyTorch name");
      if (slot.parts < 1 || slot.part < 0 || slot.part >= slot.parts)
        throw_config(at, ": part ", slot.part, " of ", slot.parts, " is out of range");
      std::vector<Index> view = slot.view.empty() ? p.shape : slot.view;
      Param<S> v;
      v.shape = view;
      // The view's element count, without overflow (-1 for a negative or too large view): it must equal p.size().
      Index count = 1;
      for (Index d : view) count = (count < 0 || d < 0) ? -1 : count * (d > 0 ? 1 : 0);
      for (Index d : view)
        if (count > 0) count = count > p.size() / d ? -1 : count * d;
      if (count != p.size())
        throw_config(at, ": view ", v.shape_string(), " does not have the ", p.size(), " elements of the tensor ",
                     p.shape_string());
      std::vector<Index> part_shape = slot.reverse_axes ? reversed(view) : view;
      if (slot.parts > 1 && part_shape.empty()) throw_config(at, ": a scalar cannot be one of ", slot.parts, " parts");
      auto it = index.find(slot.name);
      if (it == index.end()) {
        it = index.emplace(slot.name, groups.size()).first;
        Group<S> g;
        g.name = slot.name;
        g.part_shape = part_shape;
        g.part_count = static_cast<std::size_t>(p.size());
        g.shape = part_shape;
        if (!g.shape.empty()) g.shape[0] *= slot.parts;
        g.parts.resize(static_cast<std::size_t>(slot.parts));
        g.refs.resize(g.parts.size());
        g.slots.resize(g.parts.size());
        groups.push_back(std::move(g));
      }
      Group<S>& g = groups[it->second];
      if (static_cast<int>(g.parts.size()) != slot.parts || g.part_shape != part_shape) {
        Param<S> mine, theirs;
        mine.shape = part_shape;
        theirs.shape = g.part_shape;
        throw_config(at, ": its part shape ", mine.shape_string(), " x ", slot.parts, " differs from that of ",
                     g.describe(), ": ", theirs.shape_string(), " x ", g.parts.size());
      }
      const auto k = static_cast<std::size_t>(slot.part);
      if (g.parts[k].value) throw_config(at, ": part ", slot.part, " is already taken by '", g.refs[k].name, "'");
      g.parts[k] = p;
      g.refs[k] = ref;
      g.slots[k] = slot;
    }
  for (const auto& g : groups)
    for (std::size_t k = 0; k < g.parts.size(); ++k)
      if (!g.parts[k].value && g.part_count > 0)
        throw_config(who, ": PyTorch tensor '", g.name, "' has no seqattn tensor for part ", k, " of ", g.parts.size(),
                     " (mapped: ", g.describe(), ")");
  return groups;
}

template <class S>
std::vector<unsigned char> encode(Layer<S>& model, const SafetensorsOptions& options, const std::string& who) {
  using json = nlohmann::ordered_json;
  const auto groups = plan(model, options, who);
  json header = json::object();
  if (!options.metadata().empty()) header["__metadata__"] = options.metadata();
  ByteWriter data;
  std::vector<S> buf;
  for (const auto& g : groups) {
    buf.assign(g.part_count * g.parts.size(), S(0));
    for (std::size_t k = 0; k < g.parts.size(); ++k) {
      const Param<S>& p = g.parts[k];
      if (!p.value) continue;
      const std::size_t bad = first_non_finite(p.value, g.part_count);
      if (!options.allow_non_finite() && bad < g.part_count)
        throw_non_finite(who, ": tensor '", g.refs[k].name, "' (shape ", p.shape_string(), ", PyTorch '", g.name,
                         "') holds ", value_text(static_cast<double>(p.value[bad])), " at ", element_text(bad, p.shape),
                         ": a file with it would not load by default, so it is not written "
                         "(SafetensorsOptions().allow_non_finite(true) writes it)");
      const TorchName& slot = g.slots[k];
      const auto pos = positions(slot.view.empty() ? p.shape : slot.view, g.part_count);
      for (std::size_t i = 0; i < g.part_count; ++i)
        buf[k * g.part_count + (slot.reverse_axes ? pos[i] : i)] = p.value[i];
    }
    const std::size_t begin = data.size();
    data.scalars(buf.data(), buf.size());
    header[g.name] = {{"dtype", sizeof(S) == 4 ? "F32" : "F64"}, {"shape", g.shape}, {"data_offsets", {begin, data.size()}}};
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const nlohmann::json::exception& e) {
    throw_config(who, ": cannot write the header (names and metadata must be valid UTF-8): ", e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  ByteWriter out;
  out.u64(text.size());
  out.raw(text.data(), text.size());
  out.raw(data.bytes().data(), data.size());
  return std::move(out.bytes());
}

template <class S>
void apply(Layer<S>& model, const std::vector<unsigned char>& bytes, const SafetensorsOptions& options,
           const std::string& who) {
  const File file = decode(bytes, who);
  const auto groups = plan(model, options, who);
  std::map<std::string, const Entry*> entries;
  for (const auto& e : file.header.entries) entries[e.name] = &e;
  std::vector<const Entry*> sources;
  std::string missing;
  std::size_t n_missing = 0;
  for (const auto& g : groups) {
    const auto it = entries.find(g.name);
    sources.push_back(it == entries.end() ? nullptr : it->second);
    if (it == entries.end()) {
      if (n_missing++ < 8) missing += cat(n_missing > 1 ? "; " : "", "'", g.name, "' (from ", g.describe(), ")");
      continue;
    }
    const Entry& e = *it->second;
    if (!is_float_dtype(e.dtype))
      throw_mismatch(who, ": tensor '", g.name, "' (from ", g.describe(), "): dtype expected F32, F64, F16 or BF16 but found ",
                     e.dtype);
    std::vector<std::uint64_t> want(g.shape.begin(), g.shape.end());
    if (want != e.shape)
      throw_mismatch(who, ": tensor '", g.name, "' (from ", g.describe(), "): shape expected ", shape_text(want),
                     " but found ", shape_text(e.shape));
  }
  if (n_missing > 0)
    throw_mismatch(who, ": ", n_missing, n_missing == 1 ? " tensor is" : " tensors are", " missing from the file: ",
                   missing, n_missing > 8 ? "; ..." : "");
  std::set<std::string> used;
  for (const auto& g : groups) used.insert(g.name);
  for (const auto& e : file.header.entries)
    if (!used.count(e.name) && !options.ignore()(e.name))
      throw_mismatch(who, ": the file has tensor '", e.name, "' (", e.dtype, ", shape ", shape_text(e.shape),
                     ") that no model tensor maps to");
  if (!options.allow_non_finite())
    for (std::size_t gi = 0; gi < groups.size(); ++gi) {
      const auto& g = groups[gi];
      const Entry& e = *sources[gi];
      const std::size_t n = g.part_count * g.parts.size();
      for (std::size_t i = 0; i < n; ++i) {
        const double v = float_element(file.data + e.begin, e.dtype, i);
        if (std::isfinite(static_cast<S>(v))) continue;
        throw_non_finite(who, ": tensor '", g.name, "' (", e.dtype, ", shape ", shape_text(e.shape), ", to ",
                         g.describe(), ") holds ", value_text(v), " at ", element_text(i, e.shape),
                         std::isfinite(v) ? cat(", out of the range of ", sizeof(S) == 4 ? "float32" : "float64") : "",
                         ": non-finite weights are refused (SafetensorsOptions().allow_non_finite(true) loads them)");
      }
    }
  for (std::size_t gi = 0; gi < groups.size(); ++gi) {
    const auto& g = groups[gi];
    const Entry& e = *sources[gi];
    for (std::size_t k = 0; k < g.parts.size(); ++k) {
      const Param<S>& p = g.parts[k];
      const TorchName& slot = g.slots[k];
      const auto pos = positions(slot.view.empty() ? p.shape : slot.view, g.part_count);
      for (std::size_t i = 0; i < g.part_count; ++i)
        p.value[i] = static_cast<S>(
            float_element(file.data + e.begin, e.dtype, k * g.part_count + (slot.reverse_axes ? pos[i] : i)));
    }
  }
}

/// Element i of any non-F8 dtype as double.
inline double element(const unsigned char* data, const std::string& dtype, std::size_t i) {
  if (is_float_dtype(dtype)) return float_element(data, dtype, i);
  const std::size_t w = dtype_size(dtype);
  std::uint64_t bits = 0;
  for (std::size_t k = w; k-- > 0;) bits = (bits << 8) | data[i * w + k];
  if (dtype[0] == 'I' && w < 8 && (bits >> (8 * w - 1)) != 0) bits |= ~std::uint64_t{0} << (8 * w);  // sign-extend
  return dtype[0] == 'I' ? static_cast<double>(static_cast<std::int64_t>(bits)) : static_cast<double>(bits);
}

inline SafetensorsContents contents(const std::vector<unsigned char>& bytes, const std::string& who) {
  const File file = decode(bytes, who);
  SafetensorsContents out;
  out.metadata = file.header.metadata;
  for (const auto& e : file.header.entries) {
    SafetensorsTensor& t = out.tensors[e.name];
    t.dtype = e.dtype;
    for (auto d : e.shape) t.shape.push_back(static_cast<Index>(d));
    if (e.dtype.compare(0, 2, "F8") == 0) continue;
    t.values.resize(static_cast<std::size_t>(e.count()));
    for (std::size_t i = 0; i < t.values.size(); ++i) t.values[i] = element(file.data + e.begin, e.dtype, i);
  }
  return out;
}

}  // namespace detail::safetensors

/// Writes the model's parameters and buffers as a PyTorch state_dict in safetensors format to `out`.
template <class S>
void save_safetensors(Layer<S>& model, std::ostream& out, const SafetensorsOptions& options = SafetensorsOptions()) {
  const auto bytes = detail::safetensors::encode(model, options, "save_safetensors(stream)");
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  out.flush();
  if (!out) detail::throw_file("save_safetensors(stream): writing ", bytes.size(), " bytes failed");
}

/// Atomic (temporary file, fsync, rename), like save_weights.
template <class S>
void save_safetensors(Layer<S>& model, const std::string& path, const SafetensorsOptions& options = SafetensorsOptions()) {
  const std::string who = "save_safetensors(" + path + ")";
  const auto bytes = detail::safetensors::encode(model, options, who);
  detail::write_file_atomically(path, bytes.data(), bytes.size(), who);
}

/// Reads exactly one safetensors file from `in`. On any error the model is unchanged.
template <class S>
void load_safetensors(Layer<S>& model, std::istream& in, const SafetensorsOptions& options = SafetensorsOptions()) {
  const std::string who = "load_safetensors(stream)";
  detail::safetensors::apply(model, detail::safetensors::read_stream(in, who), options, who);
}

/// Reads the safetensors file at `path` into the model. On any error the model is unchanged.
template <class S>
void load_safetensors(Layer<S>& model, const std::string& path, const SafetensorsOptions& options = SafetensorsOptions()) {
  const std::string who = "load_safetensors(" + path + ")";
  detail::safetensors::apply(model, detail::safetensors::read_file(path, who), options, who);
}

/// Decodes one safetensors file from `in` (any tensors; for inspection and tests).
inline SafetensorsContents read_safetensors(std::istream& in) {
  const std::string who = "read_safetensors(stream)";
  return detail::safetensors::contents(detail::safetensors::read_stream(in, who), who);
}
/// Decodes the safetensors file at `path` (any tensors; for inspection and tests).
inline SafetensorsContents read_safetensors(const std::string& path) {
  const std::string who = "read_safetensors(" + path + ")";
  return detail::safetensors::contents(detail::safetensors::read_file(path, who), who);
}

}  // namespace seqattn
