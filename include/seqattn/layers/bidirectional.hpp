#pragma once
/// \file
/// Bidirectional (Keras' Bidirectional): a forward and a backward recurrent layer over the same input.
///
/// ```unparsed
///   x (B, T, F) -> forward layer on x            -> yf (B, T', U)
///               -> backward layer on rev(x)      -> yr (B, T', U), re-reversed when it keeps the steps
///   y = [yf | rev(yr)] (concat, (B, T', 2U), the default), yf + rev(yr) (sum), (yf + rev(yr)) / 2 (ave) or
///   yf * rev(yr) elementwise (mul), the last three (B, T', U): Keras' merge modes.
/// ```
/// rev() reverses the kept steps of each sequence: for a length mask WITHIN its valid part, rev(x)[b, t] =
/// x[b, len_b - 1 - t] for t \< len_b; for a step mask (holes, left padding) the k-th kept step of n takes the
/// value of the (n-1-k)-th kept step. Masked steps stay where they are, so rev is its own inverse and rev(x) has
/// the mask of x: the backward layer runs over the kept steps from last to first (Keras' go_backwards with a
/// mask). With return_sequences(false) inner layers (T' = 1) the backward layer's output is its state after
/// reading the first kept step, as in Keras, and is not reversed.
/// The two layers must have the same in_features, out_features, out_time and out_mask (checked); usually an
/// LSTM or GRU pair, built by the convenience constructors from one options struct (the backward layer gets
/// seed + 1 when a seed is given, else the next seed).
/// Parameters: the inner layers' with prefixes "forward." and "backward.": "forward.kernel", "backward.bias".
/// Masks: out_mask is the inner layers' (the input mask, or empty for T' = 1); masked and padded outputs are 0
/// (as Keras' Bidirectional, which zeroes masked outputs). Step masks are honored when both inner layers honor
/// them (LSTM, GRU): the kept outputs equal those of the compacted sequence (kept steps only, as a length mask)
/// and are bitwise independent of the values at masked steps.
/// Streams: refused (ConfigError): the backward layer reads each sequence from its last step, so every output
/// depends on later input steps; stream a (forward) LSTM or GRU instead.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <typeinfo>
#include <utility>
#include <vector>

#include "seqattn/core/layer.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/layers/gru.hpp"
#include "seqattn/layers/lstm.hpp"

namespace seqattn {

/// How Bidirectional combines the forward and backward outputs (Keras merge_mode).
enum class MergeMode { Concat, Sum, Ave, Mul };

/// The model-file name of a merge mode ("concat").
inline std::string to_string(MergeMode m) {
  switch (m) {
    case MergeMode::Concat: return "concat";
    case MergeMode::Sum: return "sum";
    case MergeMode::Ave: return "ave";
    case MergeMode::Mul: return "mul";
  }
  return "?";
}

/// Model-file names (core/layer_config.hpp): Keras' merge modes.
inline const std::vector<std::pair<MergeMode, const char*>>& config_names(MergeMode) {
  static const std::vector<std::pair<MergeMode, const char*>> names = {
      {MergeMode::Concat, "concat"}, {MergeMode::Sum, "sum"}, {MergeMode::Ave, "ave"}, {MergeMode::Mul, "mul"}};
  return names;
}

/// Options of Bidirectional (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct BidirectionalOptions {
  /// How the two directions' outputs are combined (concat doubles the features).
  SEQATTN_ARG(MergeMode, merge_mode, MergeMode::Concat)

  /// The fields with their model-file keys (core/layer_config.hpp).
  template <class Self, class V>
  static void visit_options(Self& o, V&& v) {
    v("merge_mode", o.merge_mode_);
  }
};

/// Runs a recurrent layer forward in time and another backward in time and merges their outputs (Keras
/// Bidirectional); see the file documentation.
template <class S>
class Bidirectional final : public Layer<S> {
 public:
  /// Wraps the two given layers (the backward one runs on the reversed valid steps).
  Bidirectional(Index in_features, std::unique_ptr<Layer<S>> forward_layer, std::unique_ptr<Layer<S>> backward_layer,
                BidirectionalOptions options = BidirectionalOptions())
      : Layer<S>(in_features), fwd_(std::move(forward_layer)), bwd_(std::move(backward_layer)), options_(options) {
    check_inner();
  }
  /// Two LSTM(in_features, units, o), one per direction.
  Bidirectional(Index in_features, Index units, LSTMOptions o, BidirectionalOptions options = BidirectionalOptions())
      : Bidirectional(in_features, make_pair<LSTM<S>>(in_features, units, o), options) {}
  /// Two GRU(in_features, units, o), one per direction.
  Bidirectional(Index in_features, Index units, GRUOptions o, BidirectionalOptions options = BidirectionalOptions())
      : Bidirectional(in_features, make_pair<GRU<S>>(in_features, units, o), options) {}

  /// A deep copy (both directions cloned).
  Bidirectional(const Bidirectional& other)
      : Layer<S>(other), fwd_(other.fwd_->clone()), bwd_(other.bwd_->clone()), options_(other.options_) {}
  /// Each direction is assigned in place when it has the same type (Layer::assign keeps its tensors when their
  /// shapes match), else replaced by a copy.
  Bidirectional& operator=(const Bidirectional& other) {
    if (this == &other) return *this;
    auto fwd = typeid(*fwd_) == typeid(*other.fwd_) ? nullptr : other.fwd_->clone();
    auto bwd = typeid(*bwd_) == typeid(*other.bwd_) ? nullptr : other.bwd_->clone();
    if (fwd) fwd_ = std::move(fwd);
    else fwd_->assign(*other.fwd_);
    if (bwd) bwd_ = std::move(bwd);
    else bwd_->assign(*other.bwd_);
    options_ = other.options_;
    Layer<S>::operator=(other);
    return *this;
  }

  /// The layer that reads the sequence forward.
  Layer<S>& forward_layer() { return *fwd_; }
  /// The layer that reads the sequence backward.
  Layer<S>& backward_layer() { return *bwd_; }
  /// The options the layer was built with.
  const BidirectionalOptions& options() const { return options_; }

  Index out_features() const override {
    return options_.merge_mode() == MergeMode::Concat ? 2 * fwd_->out_features() : fwd_->out_features();
  }
  Index out_time(Index T) const override { return fwd_->out_time(T); }
  Mask out_mask(const Mask& mask, Index T) const override { return fwd_->out_mask(mask, T); }
  std::string name() const override { return "bidirectional"; }
  std::string class_name() const override { return "Bidirectional"; }
  /// {"merge_mode": .., "layer": the forward layer's entry, "backward_layer": the backward one's} (Keras' names).
  Config config() const override {
    Config c = Config::object();
    write_options(c, options_);
    c.set("layer", layer_entry(*fwd_));
    c.set("backward_layer", layer_entry(*bwd_));
    return c;
  }
  /// Rebuilds the layer from config(), its two layers with `build` (model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config, const LayerBuilder<S>& build) {
    ConfigReader r(config, "Bidirectional config");
    const BidirectionalOptions options = read_options<BidirectionalOptions>(r);
    auto fwd = build(r.get("layer"), in_features);
    auto bwd = build(r.get("backward_layer"), in_features);
    r.finish();
    return std::make_unique<Bidirectional>(in_features, std::move(fwd), std::move(bwd), options);
  }
  std::string describe() const override {
    std::string s = "Bidirectional(" + fwd_->describe();
    if (options_.merge_mode() != MergeMode::Concat) s += ", merge_mode=" + to_string(options_.merge_mode());
    return s + ")";
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<Bidirectional>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const Bidirectional&>(other); }
  std::size_t cache_bytes(Index B, Index T) const override {
    return detail::saturating_add(fwd_->cache_bytes(B, T), bwd_->cache_bytes(B, T));
  }
  S extra_regularization_loss() const override { return fwd_->regularization_loss() + bwd_->regularization_loss(); }
  /// Step masks: when both directions honor them (LSTM, GRU do).
  bool supports_step_masks() const override { return fwd_->supports_step_masks() && bwd_->supports_step_masks(); }
  std::string step_mask_refusal() const override {
    const Layer<S>& refuses = fwd_->supports_step_masks() ? *bwd_ : *fwd_;
    return detail::cat("its ", &refuses == fwd_.get() ? "forward" : "backward", " layer (", refuses.describe(),
                       ") refuses it: ", refuses.step_mask_refusal());
  }
  std::string stream_refusal() const override {
    return "its backward layer reads each sequence from its last step, so every output depends on later input "
           "steps (the future of a stream); stream a forward LSTM or GRU instead";
  }

 protected:
  /// x (B, T, F) -> xr = rev(x) -> yf = fwd(x), yr = bwd(xr) (B, T', U) -> y (B, T', 2U or U)
  /// (mul keeps copies of yf and yb for the backward)
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode mode, Tensor3<S>& y) override {
    reverse_valid(x, mask, xr_);                                   // (1) xr = rev(x)
    const Tensor3<S>& yf = fwd_->forward(x, mask, mode);           // (2) yf = fwd(x)
    const Tensor3<S>& yr = bwd_->forward(xr_, mask, mode);         // (3) yr = bwd(xr)
    const bool keeps_time = out_time(2) == 2;
    const Tensor3<S>* yb = &yr;
    if (keeps_time) {
      reverse_valid(yr, mask, yrr_);  // (4) yb = rev(yr) when the output keeps the steps
      yb = &yrr_;
    }
    const Index U = fwd_->out_features();
    auto Y = as_matrix(y);
    switch (options_.merge_mode()) {  // (5) y = [yf | yb], yf + yb, (yf + yb) / 2 or yf * yb
      case MergeMode::Concat:
        Y.leftCols(U) = as_matrix(yf);
        Y.rightCols(U) = as_matrix(*yb);
        break;
      case MergeMode::Sum: Y.noalias() = as_matrix(yf) + as_matrix(*yb); break;
      case MergeMode::Ave: Y.noalias() = S(0.5) * (as_matrix(yf) + as_matrix(*yb)); break;
      case MergeMode::Mul:
        ensure_shape(yf_, yf.dimension(0), yf.dimension(1), U);
        ensure_shape(yb_, yf.dimension(0), yf.dimension(1), U);
        as_matrix(yf_) = as_matrix(yf);
        as_matrix(yb_) = as_matrix(*yb);
        Y.array() = as_matrix(yf).array() * as_matrix(*yb).array();
        break;
    }
  }

  /// dy (B, T', 2U or U) -> dx (B, T, F); inner parameter gradients added into.
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const Index B = dy.dimension(0), To = dy.dimension(1), U = fwd_->out_features();
    ensure_shape(dyf_, B, To, U);
    ensure_shape(dyb_, B, To, U);
    auto DY = as_matrix(dy);
    switch (options_.merge_mode()) {  // inverts (5)
      case MergeMode::Concat:
        as_matrix(dyf_) = DY.leftCols(U);
        as_matrix(dyb_) = DY.rightCols(U);
        break;
      case MergeMode::Sum:
        as_matrix(dyf_) = DY;
        as_matrix(dyb_) = DY;
        break;
      case MergeMode::Ave:
        as_matrix(dyf_) = S(0.5) * DY;
        as_matrix(dyb_) = S(0.5) * DY;
        break;
      case MergeMode::Mul:  // d(yf * yb) = dy * yb, dy * yf
        as_matrix(dyf_).array() = DY.array() * as_matrix(yb_).array();
        as_matrix(dyb_).array() = DY.array() * as_matrix(yf_).array();
        break;
    }
    const bool keeps_time = out_time(2) == 2;
    const Tensor3<S>* dyr = &dyb_;
    if (keeps_time) {
      reverse_valid(dyb_, mask, dyr_);  // inverts (4): rev is its own inverse
      dyr = &dyr_;
    }
    const Tensor3<S>& dxf = fwd_->backward(x, mask, dyf_);     // inverts (2)
    const Tensor3<S>& dxr = bwd_->backward(xr_, mask, *dyr);   // inverts (3)
    reverse_valid(dxr, mask, dxb_);                            // inverts (1)
    as_matrix(dx).noalias() = as_matrix(dxf) + as_matrix(dxb_);
  }

  void collect_params(ParamList<S>& list) override {
    for (auto& p : fwd_->params()) list.push_back(prefixed("forward.", p));
    for (auto& p : bwd_->params()) list.push_back(prefixed("backward.", p));
  }
  void collect_buffers(ParamList<S>& list) override {
    for (auto& p : fwd_->buffers()) list.push_back(prefixed("forward.", p));
    for (auto& p : bwd_->buffers()) list.push_back(prefixed("backward.", p));
  }

 private:
  using LayerPair = std::pair<std::unique_ptr<Layer<S>>, std::unique_ptr<Layer<S>>>;
  Bidirectional(Index in_features, LayerPair layers, BidirectionalOptions options)
      : Bidirectional(in_features, std::move(layers.first), std::move(layers.second), options) {}
  // Two layers of type L from one options struct: seeds s (forward) and s + 1 (backward), s = seed or next_seed().
  template <class L, class O>
  static LayerPair make_pair(Index in_features, Index units, O o) {
    const std::uint64_t seed = o.seed().value_or(next_seed());
    O of = o, ob = o;
    of.seed(seed);
    ob.seed(seed + 1);
    return {std::make_unique<L>(in_features, units, of), std::make_unique<L>(in_features, units, ob)};
  }
  static Param<S> prefixed(const char* prefix, Param<S> p) {
    p.name = prefix + p.name;
    return p;
  }

  // out (B, T, F) = rev(in): each sequence's kept steps in reverse order (length mask: its valid part reversed),
  // masked steps copied in place. Kept steps map onto kept steps, so the mask of rev(in) is the mask of in.
  static void reverse_valid(const Tensor3<S>& in, const Mask& mask, Tensor3<S>& out) {
    const Index B = in.dimension(0), T = in.dimension(1), F = in.dimension(2);
    ensure_shape(out, B, T, F);
    if (mask.has_holes()) {
      for (Index b = 0; b < B; ++b) {
        const std::uint8_t* keep = mask.keep_row(b);
        auto I = sample_matrix(in, b);
        auto O = sample_matrix(out, b);
        // i walks the kept steps forward, j backward: out[i] = in[j]
        Index j = mask.length(b, T);
        for (Index i = 0; i < T; ++i) {
          if (!keep[i]) {
            O.row(i) = I.row(i);
            continue;
          }
          do --j;
          while (!keep[j]);
          O.row(i) = I.row(j);
        }
      }
      return;
    }
    for (Index b = 0; b < B; ++b) {
      const Index L = mask.length(b, T);
      auto I = sample_matrix(in, b);
      auto O = sample_matrix(out, b);
      for (Index t = 0; t < L; ++t) O.row(t) = I.row(L - 1 - t);
      if (L < T) O.bottomRows(T - L) = I.bottomRows(T - L);
    }
  }

  void check_inner() const {
    if (!fwd_ || !bwd_) detail::throw_config("Bidirectional: the forward and backward layers must not be null");
    const std::string who = "Bidirectional(" + fwd_->describe() + ", " + bwd_->describe() + ")";
    if (fwd_->in_features() != this->in_features() || bwd_->in_features() != this->in_features())
      detail::throw_shape(who, ": inner layers expect ", fwd_->in_features(), " and ", bwd_->in_features(),
                          " input features but the input has ", this->in_features());
    if (fwd_->out_features() != bwd_->out_features())
      detail::throw_config(who, ": forward and backward output features differ: ", fwd_->out_features(), " vs ",
                           bwd_->out_features());
    if (fwd_->out_time(7) != bwd_->out_time(7) || (fwd_->out_time(7) != 7 && fwd_->out_time(7) != 1))
      detail::throw_config(who, ": forward and backward layers must both keep the steps or both return one step");
  }

  std::unique_ptr<Layer<S>> fwd_, bwd_;
  BidirectionalOptions options_;
  Tensor3<S> xr_, yrr_;             // (B, T, F) rev(x); (B, T, U) rev(yr)
  Tensor3<S> dyf_, dyb_, dyr_, dxb_;  // backward scratch
  Tensor3<S> yf_, yb_;                // mul: the two directions' outputs of the last forward (B, T', U)
};

}  // namespace seqattn
