#pragma once
/// \file
/// Positional encodings: x (B, T, F) -> y (B, T, F) in mode Add, or (B, T, F + d) in mode Concat; mode Expand
/// reads positions instead: x (B, T, 1) -> y (B, T, d).
///
/// SinusoidalPositionalEncoding\<S>(in_features, SinusoidalOptions().mode(..).output_dim(d))
///
/// ```unparsed
///   keras-pos-embd's TrigPosEmbedding, fixed (no parameters):
///       PE[p, 2i]   = sin(p / 10000^(2i / d))
///       PE[p, 2i+1] = cos(p / 10000^(2i / d))          p = 0 at the first step
///   An odd d is allowed (the last column is a sin column; keras-pos-embd rejects odd d).
///   The table is computed in double, cached as a member and recomputed only when T grows.
///
/// ```
/// PositionEmbedding\<S>(in_features, max_length, PositionEmbeddingOptions().mode(..).output_dim(d))
///
/// ```unparsed
///   keras-pos-embd's PositionEmbedding (modes add and concat): a learned table E (max_length, d), parameter
///   "embeddings", initialized uniform(-0.05, 0.05) (Keras' 'uniform') unless embeddings_init says otherwise.
///   PE[p] = E[p]. A VALID step at position >= max_length throws ShapeError; padded steps past max_length are
///   allowed (they never read the table), so growing the padding never breaks a batch.
///
/// ```
/// Modes (both layers):
///
/// ```unparsed
///   Add     d = in_features (output_dim must be 0 or in_features):   y[b, t] = x[b, t] + PE[t]
///   Concat  d = output_dim (required, > 0):                          y[b, t] = [x[b, t], PE[t]]  (x first,
///           as keras-pos-embd)
///   Expand  d = output_dim (required, > 0), in_features must be 1:   y[b, t] = PE(x[b, t])  (keras-pos-embd's
///           MODE_EXPAND: the input holds one position per step, negative allowed, e.g. relative positions)
///     Sinusoidal: PE(p) is the formula above at the real number p (Keras casts the position to floatx); an
///       integer p gives bitwise the row PE[p] of the other modes. dx[b, t] = sum_c dy[b, t, c] dPE(p)_c / dp
///       (cos and -sin times the column's frequency), as Keras' autodiff.
///     PositionEmbedding: max_length is keras-pos-embd's input_dim, the largest absolute position; the table E has
///       2 max_length + 1 rows and PE(p) = E[clip(p, -max_length, max_length) + max_length] (positions beyond the
///       table are clipped to its ends, as keras-pos-embd). A kept position must be an integer (ShapeError naming
///       the layer, the value and (b, t) otherwise; NaN and Inf too). dx = 0 (a lookup); dE[row] += dy[b, t].
///       Option mask_position (model-file key "mask_zero", keras-pos-embd's mask_zero: "the index that
///       represents padding", a position VALUE such as 10000, not row 0): a step holding that position outputs 0,
///       adds nothing to dE and is dropped by out_mask (a step mask; out_mask must follow the forward of the same
///       batch). Only in Expand mode (ConfigError otherwise).
///     Masked and padded steps output 0 in Expand mode, are never read (any value, NaN included) and get dx = 0.
/// ```
/// Masks: the encoding is applied to valid steps (t \< length) only. A padded step passes x through unchanged
/// (Add) or gives [x[b, t], 0] (Concat), so valid outputs never depend on padding and padding never reaches
/// the gradient of "embeddings". backward: dx = dy (Add) or the first F columns of dy (Concat) at every step;
/// dE[t] += sum over the sequences where t is valid of the PE columns of dy[b, t].
/// Step masks (holes, left padding; supports_step_masks()): the position is the step index t (positions count
/// steps, not kept steps: a hole does not shift the positions after it, and the first kept step after left padding
/// of p steps gets PE[p]); a masked step is treated as a padded one. PositionEmbedding's max_length applies to the
/// last kept step.
///
/// Streams (core/stream.hpp): in Expand mode each step reads its position from the input (bitwise the forward's
/// row; PositionEmbedding with mask_position refuses to stream: a stream has no mask to drop that step from). In
/// the other modes the step of stream b at position p = start[b] + i gets PE[p], bitwise the forward's row; no state
/// (the position is the stream's step count). Sinusoidal computes its row on the fly (the table's angles in double, so
/// memory does not grow with the position): columns 2i and 2i + 1 share their angle, and GCC computes both with one
/// sincos (glibc's gives the bits of sin and cos: about 0.45 us per step for d = 64); a stream of B > 1 keeps the last
/// min(B, 64) rows it computed (streams in lockstep share them). PositionEmbedding reads E[p] in place and holds
/// max_length steps: a longer stream throws StreamLimitError.

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/init.hpp"
#include "seqattn/core/layer.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/core/threads.hpp"
#include "seqattn/detail/step_runs.hpp"

namespace seqattn {

/// How a position encoding combines with the input: added, concatenated, or used alone (keras-pos-embd modes).
enum class PositionMode { Add, Concat, Expand };

/// The model-file name of a mode ("add").
inline const char* to_string(PositionMode mode) {
  return mode == PositionMode::Add ? "add" : mode == PositionMode::Concat ? "concat" : "expand";
}

/// Model-file names (core/layer_config.hpp): keras-pos-embd's modes.
inline const std::vector<std::pair<PositionMode, const char*>>& config_names(PositionMode) {
  static const std::vector<std::pair<PositionMode, const char*>> names = {
      {PositionMode::Add, "add"}, {PositionMode::Concat, "concat"}, {PositionMode::Expand, "expand"}};
  return names;
}

/// Options of SinusoidalPositionalEncoding (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct SinusoidalOptions {
  /// Add, Concat or Expand.
  SEQATTN_ARG(PositionMode, mode, PositionMode::Add)
  SEQATTN_ARG(Index, output_dim, 0)  ///< d; required in Concat mode, 0 or in_features in Add mode

  /// The fields with their model-file keys (core/layer_config.hpp).
  template <class Self, class V>
  static void visit_options(Self& o, V&& v) {
    v("mode", o.mode_);
    v("output_dim", o.output_dim_);
  }
};

/// Options of PositionEmbedding (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct PositionEmbeddingOptions {
  /// Add, Concat or Expand.
  SEQATTN_ARG(PositionMode, mode, PositionMode::Add)
  SEQATTN_ARG(Index, output_dim, 0)  ///< d; required in Concat mode, 0 or in_features in Add mode
  /// Initializer of the position embeddings.
  SEQATTN_ARG(Init, embeddings_init, Init::uniform(-0.05, 0.05))
  /// Seed of the layer's random numbers (default: next_seed()).
  SEQATTN_ARG(std::optional<std::uint64_t>, seed, std::nullopt)
  /// Expand only: the position value of padding. Model files: key "mask_zero", written only when set.
  SEQATTN_ARG(std::optional<Index>, mask_position, std::nullopt)

  /// The fields with their model-file keys (core/layer_config.hpp).
  template <class Self, class V>
  static void visit_options(Self& o, V&& v) {
    v("mode", o.mode_);
    v("output_dim", o.output_dim_);
    v("embeddings_initializer", o.embeddings_init_);
    v("seed", o.seed_);
  }
};

namespace detail {

// The encoding size d of a positional layer; throws ConfigError naming `who` for a bad output_dim.
inline Index position_dim(const std::string& who, Index in_features, PositionMode mode, Index output_dim) {
  if (mode == PositionMode::Add) {
    if (output_dim != 0 && output_dim != in_features)
      throw_config(who, ": output_dim must be 0 or the input features ", in_features, " in add mode but got ",
                   output_dim);
    return in_features;
  }
  if (mode == PositionMode::Expand && in_features != 1)
    throw_config(who, ": input features expected 1 (one position per step) in expand mode but got ", in_features);
  if (output_dim <= 0)
    throw_config(who, ": output_dim must be positive in ", to_string(mode), " mode but got ", output_dim);
  if (output_dim > std::numeric_limits<Index>::max() - in_features)
    throw_config(who, ": input features + output_dim = ", in_features, " + ", output_dim, " overflows");
  return output_dim;
}

// x (B, T, F), table (>= max valid length, d) -> y (B, T, F) (Add, d = F) or (B, T, F + d) (Concat).
// Valid steps get table row t; padded steps pass x through (Add) or get zeros in the PE columns (Concat).
template <class S>
void position_forward(const Tensor3<S>& x, const Mask& mask, const Matrix<S>& table, PositionMode mode, Tensor3<S>& y) {
  const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
  const Index d = table.cols();
  // samples are independent: shared by the threads (core/threads.hpp)
  parallel_for(B, parallel_threads(B, double(B) * double(T) * double(F + d)), [&](Index b) {
    const Index len = mask.length(b, T);
    ConstMatrixMap<S> X = sample_matrix(x, b);  // (T, F)
    MatrixMap<S> Y = sample_matrix(y, b);       // (T, F) or (T, F + d)
    if (mask.has_holes()) {  // step mask: table row t at the kept steps (runs), masked steps as padded ones
      Y.leftCols(F) = X;
      if (mode == PositionMode::Concat) Y.rightCols(d).setZero();
      for_each_kept_run(mask, b, T, [&](Index t0, Index n) {
        if (mode == PositionMode::Add)
          Y.middleRows(t0, n) += table.middleRows(t0, n);
        else
          Y.block(t0, F, n, d) = table.middleRows(t0, n);
      });
      return;
    }
    if (mode == PositionMode::Add) {
      Y = X;
      Y.topRows(len) += table.topRows(len);
    } else {
      Y.leftCols(F) = X;
      Y.block(0, F, len, d) = table.topRows(len);
      Y.block(len, F, T - len, d).setZero();
    }
  });
}

// dy (B, T, F or F + d) -> dx (B, T, F); if dtable is given, dtable[t] += PE columns of dy[b, t] (t valid).
// Inverts position_forward: the copy of x passes dy through, the table rows collect dy of valid steps.
template <class S>
void position_backward(const Tensor3<S>& dy, const Mask& mask, PositionMode mode, Tensor3<S>& dx, Matrix<S>* dtable) {
  const Index B = dx.dimension(0), T = dx.dimension(1), F = dx.dimension(2);
  if (!dtable) {  // dx only: samples are independent, shared by the threads
    parallel_for(B, parallel_threads(B, double(B) * double(T) * double(dy.dimension(2))), [&](Index b) {
      MatrixMap<S> DX = sample_matrix(dx, b);
      if (mode == PositionMode::Add)
        DX = sample_matrix(dy, b);
      else
        DX = sample_matrix(dy, b).leftCols(F);
    });
    return;
  }
  for (Index b = 0; b < B; ++b) {  // dtable sums over the samples in order
    const Index len = mask.length(b, T);
    ConstMatrixMap<S> DY = sample_matrix(dy, b);
    MatrixMap<S> DX = sample_matrix(dx, b);
    if (mask.has_holes()) {  // step mask: dtable from the kept runs
      DX = DY.leftCols(F);
      for_each_kept_run(mask, b, T, [&](Index t0, Index n) {
        dtable->middleRows(t0, n) += DY.block(t0, mode == PositionMode::Add ? 0 : F, n, dtable->cols());
      });
      continue;
    }
    if (mode == PositionMode::Add) {
      DX = DY;
      if (dtable) dtable->topRows(len) += DY.topRows(len);
    } else {
      DX = DY.leftCols(F);
      if (dtable) dtable->topRows(len) += DY.block(0, F, len, dtable->cols());
    }
  }
}

// One step of a positional stream: x (F) and its encoding row pe (d) -> y (F) = x + pe (Add) or (F + d) = [x, pe]
// (Concat); the forward's elementwise operations.
template <class S, class XR, class PR, class YR>
void position_row(const XR& x, const PR& pe, PositionMode mode, YR&& y) {
  const Index F = x.size();
  if (mode == PositionMode::Add) {
    y = x;
    y += pe;
  } else {
    y.head(F) = x;
    y.tail(pe.size()) = pe;
  }
}

}  // namespace detail

/// Fixed sine/cosine position encodings (Vaswani et al.); see the file documentation.
template <class S>
class SinusoidalPositionalEncoding final : public Layer<S> {
 public:
  /// Sinusoidal encoding of inputs of `in_features` features.
  explicit SinusoidalPositionalEncoding(Index in_features, SinusoidalOptions options = SinusoidalOptions())
      : Layer<S>(in_features),
        options_(options),
        dim_(detail::position_dim(describe_with(options, options.output_dim()), in_features, options.mode(),
                                  options.output_dim())) {
    const std::size_t bytes = detail::saturating_bytes(sizeof(double), {dim_}), limit = memory_limit();
    if (bytes > limit)  // the column frequencies: refuse a size the memory limit cannot hold before allocating
      throw MemoryError(detail::cat(describe(), ": its ", dim_, " column frequencies need ", format_bytes(bytes),
                                    ", above the memory limit of ", format_bytes(limit), " (seqattn::set_memory_limit)"));
    inv_freq_.reserve(static_cast<size_t>(dim_));
    for (Index c = 0; c < dim_; ++c) inv_freq_.push_back(inverse_frequency(c, dim_));
  }
  /// SinusoidalPositionalEncoding with SinusoidalOptions().mode(mode).output_dim(output_dim).
  SinusoidalPositionalEncoding(Index in_features, PositionMode mode, Index output_dim = 0)
      : SinusoidalPositionalEncoding(in_features, SinusoidalOptions().mode(mode).output_dim(output_dim)) {}

  Index out_features() const override {
    if (options_.mode() == PositionMode::Expand) return dim_;
    return options_.mode() == PositionMode::Add ? this->in_features() : this->in_features() + dim_;
  }
  std::string name() const override { return "sinusoidal_positional_encoding"; }
  std::string class_name() const override { return "SinusoidalPositionalEncoding"; }
  bool supports_step_masks() const override { return true; }
  Config config() const override {
    Config c = Config::object();
    write_options(c, options_);
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "SinusoidalPositionalEncoding config");
    const SinusoidalOptions options = read_options<SinusoidalOptions>(r);
    r.finish();
    return std::make_unique<SinusoidalPositionalEncoding>(in_features, options);
  }
  std::string describe() const override { return describe_with(options_, dim_); }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<SinusoidalPositionalEncoding>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const SinusoidalPositionalEncoding&>(other); }

  /// The options the layer was built with.
  const SinusoidalOptions& options() const { return options_; }
  /// The features of the encoding (d).
  Index encoding_dim() const { return dim_; }
  /// The cached table: at least the steps of the longest input seen so far, d columns.
  const Matrix<S>& table() const { return table_; }

  /// The table PE (steps, d) computed in double, as defined in the header comment.
  static Matrix<S> compute_table(Index steps, Index d) {
    Matrix<S> pe(steps, d);
    for (Index c = 0; c < d; ++c) {
      const double inv_freq = inverse_frequency(c, d);
      for (Index p = 0; p < steps; ++p) pe(p, c) = encoding(p, c, inv_freq);
    }
    return pe;
  }
  /// Column c of d: 1 / 10000^(2i / d) with 2i = c - c % 2.
  static double inverse_frequency(Index c, Index d) {
    return 1.0 / std::pow(10000.0, static_cast<double>(c - c % 2) / static_cast<double>(d));
  }
  /// PE[p, c], c of frequency inv_freq: sin (c even) or cos (c odd) of p * inv_freq, in double.
  static S encoding(Index p, Index c, double inv_freq) { return encoding_at(static_cast<double>(p), c, inv_freq); }
  /// PE(p, c) at a real position p (Expand mode; an integer p gives encoding()'s bits).
  static S encoding_at(double p, Index c, double inv_freq) {
    const double angle = p * inv_freq;
    return static_cast<S>(c % 2 == 0 ? std::sin(angle) : std::cos(angle));
  }
  /// Per step: PE[start[b] + i] computed for the step (compute_table's angles: bitwise the forward's rows).
  std::unique_ptr<LayerStream<S>> open_stream(Index batch, const StreamOptions&) const override {
    return std::make_unique<SinusoidalStream>(*this, batch);
  }

 protected:
  /// x (B, T, F) -> y (B, T, F) or (B, T, F + d); the table grows only when T does.
  /// Expand: x (B, T, 1) positions -> y (B, T, d), y[b, t, c] = PE(x[b, t], c) at kept steps, 0 elsewhere.
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    if (options_.mode() == PositionMode::Expand) return expand_forward(x, mask, y);
    if (table_.rows() < x.dimension(1)) table_ = compute_table(x.dimension(1), dim_);
    detail::position_forward(x, mask, table_, options_.mode(), y);
  }
  /// dy -> dx (no parameters). Expand: dx[b, t] = sum_c dy[b, t, c] dPE(p, c)/dp at kept steps, 0 elsewhere.
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    if (options_.mode() == PositionMode::Expand) return expand_backward(x, mask, dy, dx);
    detail::position_backward<S>(dy, mask, options_.mode(), dx, nullptr);
  }

 private:
  static std::string describe_with(const SinusoidalOptions& options, Index d) {
    if (options.mode() == PositionMode::Add) return "SinusoidalPositionalEncoding(mode=add)";
    return detail::cat("SinusoidalPositionalEncoding(mode=", to_string(options.mode()), ", output_dim=", d, ")");
  }
  void expand_forward(const Tensor3<S>& x, const Mask& mask, Tensor3<S>& y) {
    const Index B = x.dimension(0), T = x.dimension(1), d = dim_;
    const bool holes = mask.has_holes();
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < T; ++t) {
        S* out = &y(b, t, 0);
        if (!detail::kept_step(mask, holes, b, t, T)) {
          std::fill(out, out + d, S(0));
          continue;
        }
        const double p = static_cast<double>(x(b, t, 0));
        for (Index c = 0; c < d; ++c) out[c] = encoding_at(p, c, inv_freq_[static_cast<size_t>(c)]);
      }
  }
  // inverts y = PE(p): d sin(p w)/dp = w cos(p w), d cos(p w)/dp = -w sin(p w)
  void expand_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) {
    const Index B = x.dimension(0), T = x.dimension(1), d = dim_;
    const bool holes = mask.has_holes();
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < T; ++t) {
        dx(b, t, 0) = S(0);
        if (!detail::kept_step(mask, holes, b, t, T)) continue;
        const double p = static_cast<double>(x(b, t, 0));
        double g = 0;
        for (Index c = 0; c < d; ++c) {
          const double w = inv_freq_[static_cast<size_t>(c)];
          g += static_cast<double>(dy(b, t, c)) * (c % 2 == 0 ? w * std::cos(p * w) : -w * std::sin(p * w));
        }
        dx(b, t, 0) = static_cast<S>(g);
      }
  }

  // x (B, n, F) -> y (B, n, F or F + d): step i of stream b gets PE[start[b] + i], from a small table of the
  // rows computed last: a direct-mapped cache of `slots` rows (position p in slot p % slots, tagged with p).
  // B streams stepping in lockstep compute each row once instead of B times (sincos took 12% of a step of
  // 256 streams of the bench classifier); a single stream has one slot (no reuse to find). Bounded: at most 64
  // rows, allocated when the stream opens.
  struct SinusoidalStream final : LayerStream<S> {
    PositionMode mode;
    std::vector<double> inv_freq;  // (d) inverse_frequency of every column
    Matrix<S> rows;                // (slots, d) the encoding rows of the positions in `tags`
    std::vector<Index> tags;       // (slots) the position held by each slot, -1 if none
    SinusoidalStream(const SinusoidalPositionalEncoding& l, Index batch) : mode(l.options_.mode()) {
      for (Index c = 0; c < l.dim_; ++c) inv_freq.push_back(inverse_frequency(c, l.dim_));
      Index slots = 1;
      while (slots < std::min<Index>(batch, 64)) slots *= 2;
      rows.resize(slots, l.dim_);
      tags.assign(static_cast<size_t>(slots), -1);
    }
    // PE[p], computed unless its slot holds it (the bits of compute_table's row p).
    const S* row(Index p) {
      const Index slot = p & (rows.rows() - 1);
      S* pe = &rows(slot, 0);
      if (tags[static_cast<size_t>(slot)] == p) return pe;
      const Index d = rows.cols();
      for (Index c = 0; c < d; c += 2) {  // columns 2i and 2i + 1 share their angle: one sincos
        const double angle = static_cast<double>(p) * inv_freq[static_cast<size_t>(c)];
        pe[c] = static_cast<S>(std::sin(angle));
        if (c + 1 < d) pe[c + 1] = static_cast<S>(std::cos(angle));
      }
      tags[static_cast<size_t>(slot)] = p;
      return pe;
    }
    void step(const Tensor3<S>& x, const std::vector<Index>& start, Tensor3<S>& y) override {
      const Index B = x.dimension(0), n = x.dimension(1), d = rows.cols();
      ConstMatrixMap<S> X = as_matrix(x);
      MatrixMap<S> Y = as_matrix(y);
      if (mode == PositionMode::Expand) {  // the position is the input: PE(x), the forward's function
        for (Index r = 0; r < B * n; ++r)
          for (Index c = 0; c < d; ++c)
            Y(r, c) = encoding_at(static_cast<double>(X(r, 0)), c, inv_freq[static_cast<size_t>(c)]);
        return;
      }
      for (Index b = 0; b < B; ++b)
        for (Index i = 0; i < n; ++i) {
          const Eigen::Map<const RowVector<S>> pe(row(start[static_cast<size_t>(b)] + i), d);
          detail::position_row<S>(X.row(b * n + i), pe, mode, Y.row(b * n + i));
        }
    }
  };

  SinusoidalOptions options_;
  Index dim_;
  std::vector<double> inv_freq_;  // (d) inverse_frequency of every column
  Matrix<S> table_;               // (cached steps, d)
};

/// Learned position embeddings for up to max_length positions (keras-pos-embd PositionEmbedding); see the file
/// documentation.
template <class S>
class PositionEmbedding final : public Layer<S> {
 public:
  /// Position embeddings for `max_length` positions over inputs of `in_features` features.
  PositionEmbedding(Index in_features, Index max_length, PositionEmbeddingOptions options = PositionEmbeddingOptions())
      : Layer<S>(in_features), max_length_(max_length), options_(options) {
    const std::string who = describe_with(max_length, options, options.output_dim());
    if (max_length <= 0) detail::throw_config(who, ": max_length must be positive but got ", max_length);
    dim_ = detail::position_dim(who, in_features, options.mode(), options.output_dim());
    if (options.mask_position() && !expand())
      detail::throw_config(who, ": mask_zero (mask_position) expected mode expand but got mode ",
                           to_string(options.mode()));
    if (expand() && max_length > (std::numeric_limits<Index>::max() - 1) / 2)
      detail::throw_config(who, ": max_length ", max_length, " overflows the expand table of 2 max_length + 1 rows");
    const Index rows = expand() ? 2 * max_length + 1 : max_length;
    detail::checked_parameter<S>(who, "table E", {rows, dim_});
    Rng rng(options.seed().value_or(next_seed()));
    E_.resize(rows, dim_);
    options.embeddings_init().fill(E_, rows, dim_, rng);
    dE_ = Matrix<S>::Zero(rows, dim_);
  }

  Index out_features() const override {
    if (options_.mode() == PositionMode::Expand) return dim_;
    return options_.mode() == PositionMode::Add ? this->in_features() : this->in_features() + dim_;
  }
  Mask out_mask(const Mask& mask, Index T) const override {
    if (!options_.mask_position() || T < 0) return mask;
    if (T != forward_T_ || (!mask.empty() && mask.batch() != forward_B_))
      detail::throw_shape(describe(), ": out_mask(T=", T, ", batch=", mask.empty() ? Index(-1) : mask.batch(),
                          ") must follow the forward of the same batch (last forward: ", forward_B_, " sequences of ",
                          forward_T_, " steps)");
    std::vector<std::uint8_t> keep(static_cast<size_t>(forward_B_ * T));
    for (size_t i = 0; i < keep.size(); ++i) keep[i] = rows_[i] >= 0;
    return Mask::from_steps(forward_B_, T, std::move(keep));
  }
  std::string name() const override { return "position_embedding"; }
  std::string class_name() const override { return "PositionEmbedding"; }
  bool supports_step_masks() const override { return true; }
  Config config() const override {
    Config c = Config::object();
    c.set("max_length", max_length_);
    write_options(c, options_);
    if (options_.mask_position()) c.set("mask_zero", *options_.mask_position());
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "PositionEmbedding config");
    const Index max_length = r.read_size("max_length");
    PositionEmbeddingOptions options = read_options<PositionEmbeddingOptions>(r);
    std::optional<Index> mask_position;
    r.read_into("mask_zero", mask_position);
    options.mask_position(mask_position);
    r.finish();
    return std::make_unique<PositionEmbedding>(in_features, max_length, options);
  }
  std::string describe() const override { return describe_with(max_length_, options_, dim_); }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<PositionEmbedding>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const PositionEmbedding&>(other); }

  /// The number of positions.
  Index max_length() const { return max_length_; }
  /// The features of an embedding (d).
  Index encoding_dim() const { return dim_; }
  /// The options the layer was built with.
  const PositionEmbeddingOptions& options() const { return options_; }
  /// The embeddings (max_length, d), in place.
  Matrix<S>& embeddings() { return E_; }
  /// Per step: E[start[b] + i] read in place (bitwise the forward's rows); max_steps() = max_length.
  /// Expand: E[row of x] per step; with mask_position it refuses (see the header comment).
  std::unique_ptr<LayerStream<S>> open_stream(Index, const StreamOptions&) const override {
    if (options_.mask_position())
      detail::throw_config(describe(), ": cannot be streamed: a step at the padding position ",
                           *options_.mask_position(), " (mask_zero) would be masked, and a stream takes no mask");
    return std::make_unique<PositionEmbeddingStream>(*this);
  }

 protected:
  /// x (B, T, F) -> y (B, T, F) or (B, T, F + d); E (max_length, d). Throws when a valid step is past max_length.
  /// Expand: x (B, T, 1) positions -> y (B, T, d), y[b, t] = E[row(x[b, t])] at kept steps, 0 elsewhere.
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    if (expand()) return expand_forward(x, mask, y);
    const Index T = x.dimension(1);
    for (Index b = 0; b < x.dimension(0); ++b) {
      const Index len = mask.length(b, T);
      if (len <= max_length_) continue;
      if (mask.empty()) detail::throw_shape(describe(), ": input has ", T, " steps but max_length is ", max_length_);
      detail::throw_shape(describe(), ": sequence ", b, " has ", len, " valid steps but max_length is ", max_length_,
                          " (steps past max_length must be padding)");
    }
    detail::position_forward(x, mask, E_, options_.mode(), y);
  }
  /// dy -> dx;  dE[t] += dy[b, t] (PE columns) for valid t: inverts y = x + E[t] / [x, E[t]]
  /// Expand: dx = 0 (a lookup);  dE[row(x[b, t])] += dy[b, t] at the steps the forward read.
  void do_backward(const Tensor3<S>&, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    if (expand()) {
      dx.setZero();
      const Index B = dy.dimension(0), T = dy.dimension(1);
      for (Index b = 0; b < B; ++b)  // in order: the same bits whatever the other steps hold
        for (Index t = 0; t < T; ++t) {
          const Index r = rows_[static_cast<size_t>(b * T + t)];
          if (r >= 0) dE_.row(r) += sample_matrix(dy, b).row(t);
        }
      return;
    }
    detail::position_backward<S>(dy, mask, options_.mode(), dx, &dE_);
  }

  void collect_params(ParamList<S>& list) override {
    list.push_back(matrix_param<S>("embeddings", E_, &dE_, ParamRole::Embeddings));
  }

 private:
  static std::string describe_with(Index max_length, const PositionEmbeddingOptions& options, Index d) {
    std::string s = detail::cat("PositionEmbedding(max_length=", max_length, ", mode=", to_string(options.mode()));
    if (options.mode() != PositionMode::Add) s += detail::cat(", output_dim=", d);
    if (options.mask_position()) s += detail::cat(", mask_zero=", *options.mask_position());
    return s + ")";
  }
  bool expand() const { return options_.mode() == PositionMode::Expand; }
  // The table row of position v at (b, t): clip(v, -max_length, max_length) + max_length; -1 for mask_position.
  Index expand_row(S v, Index b, Index t) const {
    if (!std::isfinite(v) || std::floor(v) != v)
      detail::throw_shape(describe(), ": position ", v, " at (", b, ", ", t, ") is not an integer");
    if (options_.mask_position() && v == static_cast<S>(*options_.mask_position())) return -1;
    const S L = static_cast<S>(max_length_);
    return static_cast<Index>(std::min(std::max(v, -L), L)) + max_length_;
  }
  void expand_forward(const Tensor3<S>& x, const Mask& mask, Tensor3<S>& y) {
    const Index B = x.dimension(0), T = x.dimension(1);
    const bool holes = mask.has_holes();
    rows_.assign(static_cast<size_t>(B * T), -1);
    for (Index b = 0; b < B; ++b)  // every position checked before anything is written
      for (Index t = 0; t < T; ++t)
        if (detail::kept_step(mask, holes, b, t, T))
          rows_[static_cast<size_t>(b * T + t)] = expand_row(x(b, t, 0), b, t);
    forward_B_ = B;
    forward_T_ = T;
    for (Index b = 0; b < B; ++b) {
      MatrixMap<S> Y = sample_matrix(y, b);  // (T, d)
      for (Index t = 0; t < T; ++t) {
        const Index r = rows_[static_cast<size_t>(b * T + t)];
        if (r >= 0)
          Y.row(t) = E_.row(r);
        else
          Y.row(t).setZero();
      }
    }
  }

  // x (B, n, F) -> y (B, n, F or F + d): step i of stream b gets E[start[b] + i] (Stream keeps it < max_length).
  struct PositionEmbeddingStream final : LayerStream<S> {
    const PositionEmbedding& layer;
    explicit PositionEmbeddingStream(const PositionEmbedding& l) : layer(l) {}
    void step(const Tensor3<S>& x, const std::vector<Index>& start, Tensor3<S>& y) override {
      const Index B = x.dimension(0), n = x.dimension(1);
      if (layer.expand()) {  // E[row of the step's position], checked before anything is written
        ConstMatrixMap<S> X = as_matrix(x);
        for (Index r = 0; r < B * n; ++r) layer.expand_row(X(r, 0), r / n, start[static_cast<size_t>(r / n)] + r % n);
        MatrixMap<S> Y = as_matrix(y);
        for (Index r = 0; r < B * n; ++r)
          Y.row(r) = layer.E_.row(layer.expand_row(X(r, 0), r / n, start[static_cast<size_t>(r / n)] + r % n));
        return;
      }
      for (Index b = 0; b < B; ++b)  // Stream checks max_steps() before any layer steps; a direct caller gets this
        if (start[static_cast<size_t>(b)] > layer.max_length_ - n)
          throw StreamLimitError(detail::cat(layer.describe(), ": stream ", b, " has seen ",
                                             start[static_cast<size_t>(b)], " steps and a step of ", n,
                                             " more would pass max_length ", layer.max_length_));
      ConstMatrixMap<S> X = as_matrix(x);
      MatrixMap<S> Y = as_matrix(y);
      for (Index b = 0; b < B; ++b)
        for (Index i = 0; i < n; ++i) {
          const Index p = start[static_cast<size_t>(b)] + i;
          detail::position_row<S>(X.row(b * n + i), layer.E_.row(p), layer.options_.mode(), Y.row(b * n + i));
        }
    }
    Index max_steps() const override { return layer.expand() ? kUnlimitedSteps : layer.max_length_; }
  };

  Index max_length_;
  PositionEmbeddingOptions options_;
  Index dim_ = 0;
  Matrix<S> E_, dE_;                      // (max_length, d); Expand: (2 max_length + 1, d)
  std::vector<Index> rows_;               // Expand: (B*T) the table row each step read in the last forward, -1 if none
  Index forward_B_ = 0, forward_T_ = -1;  // Expand: the batch of the last forward (out_mask follows it)
};

}  // namespace seqattn
