#pragma once
/// \file
/// Embedding: a lookup table, as Keras' Embedding / torch.nn.Embedding.
///
/// ```unparsed
///   ids x (B, T, 1), each value an integer id in [0, vocab_size) -> y (B, T, dim),  y[b, t] = E[x[b, t]]
/// ```
/// Parameter "embeddings" E (vocab_size, dim) (Keras' name), initialized by EmbeddingOptions().init()
/// (default uniform(-0.05, 0.05), as Keras). in_features must be 1 (the id); forward_ids() takes the ids as
/// a std::vector\<int> (row-major (B, T)) instead.
/// Backward: dE[x[b, t]] += dy[b, t] (scatter-add, rows of repeated ids add up); ids get no gradient (dx = 0).
/// Masks: steps t >= len_b are padding: their ids are neither read nor checked and their output is 0. Step masks
/// (holes, left padding; supports_step_masks()): the same for every masked step.
/// mask_zero (default false): id 0 is masked, as Keras' mask_zero: a step whose id is 0 outputs 0, adds nothing
/// to the gradient of the table, and out_mask(mask, T) drops it from the input mask. Trailing zeros become
/// padding (lengths, the fast path, when every sequence's zeros are trailing); a zero INSIDE a sequence or at its
/// start gives a step mask (holes, left padding; core/mask.hpp), which the following layers honor or refuse
/// (Layer::supports_step_masks). (Before issue 22 a zero inside a sequence looked up row 0 as a valid step.)
/// out_mask must follow the forward of that batch (Sequential calls it after forward); ShapeError otherwise.
/// Errors: ConfigError for in_features != 1, vocab_size or dim \< 1; ShapeError naming the position for an id
/// that is not an integer or is out of range:
///
/// ```unparsed
///   "Embedding(vocab=100, dim=8): id 123 at (1, 4) out of range [0, 100)"
/// ```
/// Ids are stored as S, exact up to 2^digits (2^24 for float): a larger vocab_size is a ConfigError (use double).
/// Stream (core/stream.hpp): per step, no state: y = E[id], bitwise the forward's rows. Every id of a step is
///
/// ```unparsed
///   checked first, with forward's errors at (stream, position), so a bad id throws before anything is written.
///   With mask_zero=true a zero id throws too (ShapeError): in forward a zero is a masked step, which a stream
///   (one output per step, no mask) cannot express: a zero row passed on would be a kept step downstream (a
///   recurrent layer would update its state there, where forward carries it across), so the stream refuses
///   rather than differ from forward. Streams of non-zero ids (padding is what reset() replaces) are exact:
///   mask_zero then changes nothing.
/// ```

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "seqattn/core/init.hpp"
#include "seqattn/core/layer.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/detail/step_runs.hpp"

namespace seqattn {

/// Options of Embedding (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct EmbeddingOptions {
  /// Id 0 is masked (Keras mask_zero): its step outputs 0 and is masked downstream.
  SEQATTN_ARG(bool, mask_zero, false)
  /// Initializer of the embeddings E.
  SEQATTN_ARG(Init, init, Init::uniform(-0.05, 0.05))
  /// Seed of the layer's random numbers (default: next_seed()).
  SEQATTN_ARG(std::optional<std::uint64_t>, seed, std::nullopt)

  /// The fields with their model-file keys (core/layer_config.hpp).
  template <class Self, class V>
  static void visit_options(Self& o, V&& v) {
    v("mask_zero", o.mask_zero_);
    v("embeddings_initializer", o.init_);
    v("seed", o.seed_);
  }
};

/// Maps integer ids (one feature per step) to learned vectors (Keras Embedding); see the file documentation.
template <class S>
class Embedding final : public Layer<S> {
 public:
  /// Embeddings of `dim` features for ids in [0, vocab_size); in_features must be 1.
  Embedding(Index in_features, Index vocab_size, Index dim, EmbeddingOptions options = EmbeddingOptions())
      : Layer<S>(in_features), vocab_(vocab_size), dim_(dim), options_(options) {
    if (vocab_size <= 0) detail::throw_config(describe(), ": vocab_size must be positive but got ", vocab_size);
    if (dim <= 0) detail::throw_config(describe(), ": dim must be positive but got ", dim);
    constexpr Index max_vocab = Index(1) << std::numeric_limits<S>::digits;  // ids exact as S up to here
    if (vocab_size > max_vocab)
      detail::throw_config(describe(), ": vocab_size above ", max_vocab, " cannot be stored exactly as ids of this ",
                           "scalar type (use double)");
    if (in_features != 1)
      detail::throw_config(describe(), ": input features expected 1 (one id per step) but got ", in_features);
    detail::checked_parameter<S>(describe(), "table E", {vocab_size, dim});
    Rng rng(options.seed().value_or(next_seed()));
    E_.resize(vocab_size, dim);
    options.init().fill(E_, vocab_size, dim, rng);
    dE_ = Matrix<S>::Zero(vocab_size, dim);
  }

  Index out_features() const override { return dim_; }
  bool supports_step_masks() const override { return true; }
  Mask out_mask(const Mask& mask, Index T) const override {
    if (!options_.mask_zero() || T < 0) return mask;
    if (T != forward_T_ || (!mask.empty() && mask.batch() != static_cast<Index>(lengths_.size())))
      detail::throw_shape(describe(), ": out_mask(T=", T, ", batch=", mask.empty() ? Index(-1) : mask.batch(),
                          ") must follow the forward of the same batch (last forward: ", lengths_.size(),
                          " sequences of ", forward_T_, " steps)");
    // lengths when the kept steps are a prefix of every sequence (Mask::from_steps normalizes)
    return Mask::from_steps(static_cast<Index>(lengths_.size()), T, keep_);
  }

  std::string name() const override { return "embedding"; }
  std::string class_name() const override { return "Embedding"; }
  Config config() const override {
    Config c = Config::object();
    c.set("input_dim", vocab_);
    c.set("output_dim", dim_);
    write_options(c, options_);
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "Embedding config");
    const Index vocab = r.read_size("input_dim"), dim = r.read_size("output_dim");
    const EmbeddingOptions options = read_options<EmbeddingOptions>(r);
    r.finish();
    return std::make_unique<Embedding>(in_features, vocab, dim, options);
  }
  std::string describe() const override {
    std::string s = detail::cat("Embedding(vocab=", vocab_, ", dim=", dim_);
    if (options_.mask_zero()) s += ", mask_zero=true";
    return s + ")";
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<Embedding>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const Embedding&>(other); }
  /// Per step: y = E[id] (bitwise the forward's rows); with mask_zero=true, id 0 throws (see the header comment).
  std::unique_ptr<LayerStream<S>> open_stream(Index, const StreamOptions&) const override {
    return std::make_unique<EmbeddingStream>(*this);
  }

  /// The number of ids.
  Index vocab_size() const { return vocab_; }
  /// The number of features of an embedding.
  Index dim() const { return dim_; }
  /// The options the layer was built with.
  const EmbeddingOptions& options() const { return options_; }
  Matrix<S>& embeddings() { return E_; }  ///< (vocab_size, dim)
  /// Valid lengths computed by the last forward (the incoming ones, or the mask_zero ones; with a step mask the
  /// extents: 1 + the last kept step).
  const std::vector<Index>& lengths() const { return lengths_; }

  /// ids (B*T, row-major (B, T)) -> y (B, T, dim). The ids are kept in ids_tensor() for backward.
  const Tensor3<S>& forward_ids(const std::vector<int>& ids, Index B, Index T, const Mask& mask = Mask(),
                                Mode mode = Mode::Infer) {
    if (B <= 0 || T <= 0 || static_cast<Index>(ids.size()) != B * T)
      detail::throw_shape(describe(), ": forward_ids expected B*T = ", B, "*", T, " = ", B * T, " ids but got ",
                          ids.size());
    mask.check(B, T, describe());
    ensure_shape(ids_, B, T, Index(1));
    const bool holes = mask.has_holes();
    for (Index i = 0; i < B * T; ++i) {
      const int id = ids[static_cast<size_t>(i)];
      const bool valid = detail::kept_step(mask, holes, i / T, i % T, T);  // padded ids (often -1) are not checked
      if (valid && (id < 0 || id >= vocab_)) throw_out_of_range(i / T, i % T, std::to_string(id));
      ids_.data()[i] = static_cast<S>(id);
    }
    return this->forward(ids_, mask, mode);
  }
  /// The (B, T, 1) ids tensor of the last forward_ids() (pass it to backward()).
  const Tensor3<S>& ids_tensor() const { return ids_; }

 protected:
  /// x (B, T, 1) ids -> y (B, T, dim): y[b, t] = E[x[b, t]] for t \< new len_b, else 0
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    const Index B = x.dimension(0), T = x.dimension(1);
    lengths_.resize(static_cast<size_t>(B));
    forward_T_ = T;
    steps_ = mask.has_holes() || options_.mask_zero();
    if (steps_) return forward_steps(x, mask, y);
    for (Index b = 0; b < B; ++b) {  // lengths, no mask_zero: the valid steps t < len_b
      const Index L = mask.length(b, T);
      for (Index t = 0; t < L; ++t) check_id(x(b, t, 0), b, t);
      lengths_[static_cast<size_t>(b)] = L;
      auto Y = sample_matrix(y, b);
      for (Index t = 0; t < L; ++t) Y.row(t) = E_.row(static_cast<Index>(x(b, t, 0)));
      if (L < T) Y.bottomRows(T - L).setZero();
    }
  }

  /// dy (B, T, dim) -> dE[x[b, t]] += dy[b, t] for t \< new len_b   (inverts the lookup);  dx = 0 (ids)
  void do_backward(const Tensor3<S>& x, const Mask&, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const Index B = x.dimension(0), T = x.dimension(1);
    for (Index b = 0; b < B; ++b) {
      auto DY = sample_matrix(dy, b);
      for (Index t = 0; t < lengths_[static_cast<size_t>(b)]; ++t)
        if (!steps_ || keep_[static_cast<size_t>(b * T + t)]) dE_.row(static_cast<Index>(x(b, t, 0))) += DY.row(t);
    }
    dx.setZero();
  }

  void collect_params(ParamList<S>& list) override {
    list.push_back(matrix_param<S>("embeddings", E_, &dE_, ParamRole::Embeddings));
  }

 private:
  // A step mask in, or mask_zero: keep_ (B*T) the kept steps (the input mask's, minus zero ids with mask_zero),
  // lengths_ their extents; y = E[id] at kept steps, 0 elsewhere. Masked ids are neither read nor checked.
  void forward_steps(const Tensor3<S>& x, const Mask& mask, Tensor3<S>& y) {
    const Index B = x.dimension(0), T = x.dimension(1);
    const bool holes = mask.has_holes();
    keep_.assign(static_cast<size_t>(B * T), 0);
    for (Index b = 0; b < B; ++b) {
      Index new_len = 0;
      auto Y = sample_matrix(y, b);
      Y.setZero();
      for (Index t = 0; t < mask.length(b, T); ++t) {
        if (!detail::kept_step(mask, holes, b, t, T)) continue;
        const S v = x(b, t, 0);
        check_id(v, b, t);
        if (options_.mask_zero() && v == S(0)) continue;
        keep_[static_cast<size_t>(b * T + t)] = 1;
        new_len = t + 1;
        Y.row(t) = E_.row(static_cast<Index>(v));
      }
      lengths_[static_cast<size_t>(b)] = new_len;
    }
  }

  [[noreturn]] void throw_out_of_range(Index b, Index t, const std::string& id) const {
    detail::throw_shape(describe(), ": id ", id, " at (", b, ", ", t, ") out of range [0, ", vocab_, ")");
  }
  // The id v at sequence b, step t: an integer in [0, vocab), ShapeError otherwise.
  void check_id(S v, Index b, Index t) const {
    if (!(v >= S(0) && v < static_cast<S>(vocab_))) throw_out_of_range(b, t, detail::cat(v));
    if (std::floor(v) != v) detail::throw_shape(describe(), ": id ", v, " at (", b, ", ", t, ") is not an integer");
  }

  // Per step: y = E[id] on the B*n new rows, after every id was checked (forward's errors at (stream b,
  // position start[b] + i); with mask_zero, id 0 too).
  struct EmbeddingStream final : LayerStream<S> {
    const Embedding& layer;
    explicit EmbeddingStream(const Embedding& l) : layer(l) {}
    // x (B, n, 1) ids -> y (B, n, dim)
    void step(const Tensor3<S>& x, const std::vector<Index>& start, Tensor3<S>& y) override {
      const Index B = x.dimension(0), n = x.dimension(1);
      for (Index b = 0; b < B; ++b)
        for (Index i = 0; i < n; ++i) {
          const S v = x(b, i, 0);
          const Index t = start[static_cast<size_t>(b)] + i;
          layer.check_id(v, b, t);
          if (v == S(0) && layer.options_.mask_zero())
            detail::throw_shape(layer.describe(), ": id 0 at (", b, ", ", t,
                                ") in a stream: with mask_zero=true a zero id is a masked step, which a stream (one "
                                "output per step, no mask) cannot express (streams hold no padding: reset() the "
                                "stream where a new sequence starts)");
        }
      MatrixMap<S> Y = as_matrix(y);
      for (Index r = 0; r < B * n; ++r) Y.row(r) = layer.E_.row(static_cast<Index>(x.data()[r]));
    }
    bool per_step() const override { return true; }
  };

  Index vocab_, dim_;
  EmbeddingOptions options_;
  Matrix<S> E_, dE_;
  Tensor3<S> ids_;              // ids of the last forward_ids()
  std::vector<Index> lengths_;  // valid lengths of the last forward
  bool steps_ = false;          // the last forward kept keep_ (a step mask in, or mask_zero)
  std::vector<std::uint8_t> keep_;  // (B*T) kept steps of the last forward when steps_
  Index forward_T_ = -1;
};

}  // namespace seqattn
