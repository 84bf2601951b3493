#pragma once
/// \file
/// ScaledDotProductAttention and ResidualScaledDotProductAttention: keras-self-attention's parameter-free
/// attention layers (CyberZHG/keras-self-attention: scaled_dot_attention.py, and real_former.py for RealFormer,
/// He et al. 2020). No weights: the queries, keys and values are the inputs themselves.
///
/// ```unparsed
///   z[b, i, j] = q[b, i] . k[b, j] / sqrt(d_k)  (+ p[b, i, j], the previous layer's scores, residual only)
///   a[b, i, :] = softmax(z[b, i, :]) over the allowed keys j of query i (every other weight exactly 0)
///   y[b, i]    = sum_j a[b, i, j] v[b, j]
/// ```
/// Shapes: q (B, Tq, d_k), k (B, Tk, d_k), v (B, Tk, d_v) -> y (B, Tq, d_v); a, z, p (B, Tq, Tk). d_k is the layer's
/// in_features, d_v its value_features (default in_features).
/// Allowed keys of query i of sample b: kept key steps j (the key/value mask), and j \<= i with history_only (the
/// query step and the key step are compared as positions, as Keras does, in cross-attention too).
/// Inputs (the multi-input API is MultiHeadAttention's cross-attention API):
///
/// ```unparsed
///   forward(x, mask, mode)                       self-attention, q = k = v = x (Keras' single input; Sequential)
///   forward(xq, mq, xk, xv, mkv, mode)           q = xq (queries masked by mq), k = xk, v = xv (masked by mkv);
///                                                xk and xv have the same B and Tk, xq the same B (ShapeError)
///   backward(x, mask, dy) / backward_cross(xq, mq, xk, xv, mkv, dy)
///                                                return dx (self: dq + dk + dv) / dxq; dxk is key_input_grad(),
///                                                dxv value_input_grad(). Self-attention needs d_v == d_k (the
///                                                default value_features).
/// ```
/// ResidualScaledDotProductAttention (RealFormer) adds an optional previous-scores input p (B, Tq, Tk) before the
/// softmax and exposes its own pre-softmax scores z (p included) for the next layer:
///
/// ```unparsed
///   forward(x, mask, p, mode) / forward(xq, mq, xk, xv, mkv, p, mode)   with previous scores
///   scores()                                       z (B, Tq, Tk) of the last forward (0 where the key is not allowed)
///   backward(x, mask, dy, dz) / backward_cross(xq, mq, xk, xv, mkv, dy, dz)
///                                                  dz (B, Tq, Tk): the gradient of the loss w.r.t. scores() (from
///                                                  the next layer's previous_scores_grad()), added to the gradient
///                                                  through the softmax; the forms without dz take it as 0
///   previous_scores_grad()                         dL/dp (B, Tq, Tk) of the last backward (0 where not allowed)
/// ```
/// Without p it is ScaledDotProductAttention (Sequential's single input). Chain layers as RealFormer does:
/// forward(x1, ..., p = previous.scores()), then backward(..., dz = next.previous_scores_grad()).
/// Masks (lengths and step masks, supports_step_masks()): a masked key gets weight exactly 0 and is never read
/// (its q, k, v, p entries may hold anything, NaN included: kept outputs are bitwise unchanged); a masked query
/// row, or one without an allowed key, outputs exactly 0, has a zero attention row and zero scores, and passes no
/// gradient (nor reads dy or dz there). Gradients at masked steps and not-allowed (i, j) entries are exactly 0.
/// Differences from Keras: Keras subtracts 10000 from the scores of masked and future keys, so its weights there
/// are exp(-10000) (0 in float) and a row without an allowed key gets uniform weights over ALL keys; it also
/// computes outputs at masked query rows (seqattn: 0, its outputs are masked anyway). Keras' `intensity` (the
/// residual's scores) holds those -10000 offsets; scores() holds 0 at not-allowed entries, so chain residual
/// layers with the same masks and history_only. return_attention: read attention_map(b) (AttentionMap) instead.
/// Options: history_only (false), value_features (default in_features; seqattn's: d_v for forward(xq, mq, xk, xv,
/// mkv); Keras infers it from the value input).
/// Streams: history_only self-attention streams with a cache of the past inputs (the keys and values), growing up
/// to StreamOptions::max_history steps (detail/seq_self_attention_stream.hpp, multiplicative form with the kernel
/// I / sqrt(d_k), kept by the layer: d_k^2 values); outputs match predict to rounding. Without history_only every
/// step reads later steps: refused (ConfigError), as is value_features != in_features.
/// Compute: plain loops, O(B Tq Tk (d_k + d_v)), sums in feature and key order (address-independent: outputs
/// are bitwise independent of padding). Memory: the (B, Tq, Tk) weights (and the residual's scores) are kept
/// for backward; cache_bytes() counts them.

#include <cmath>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "seqattn/core/attention_map.hpp"
#include "seqattn/core/layer.hpp"
#include "seqattn/core/layer_config.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/detail/masked_softmax.hpp"
#include "seqattn/detail/seq_self_attention_stream.hpp"

namespace seqattn {

/// Options of ScaledDotProductAttention (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct ScaledDotProductAttentionOptions {
  SEQATTN_ARG(bool, history_only, false)  ///< key j allowed for query i only when j \<= i
  SEQATTN_ARG(std::optional<Index>, value_features, std::nullopt)  ///< d_v, default in_features

  /// The fields with their model-file keys (core/layer_config.hpp).
  template <class Self, class V>
  static void visit_options(Self& o, V&& v) {
    v("history_only", o.history_only_);
    v("value_features", o.value_features_);
  }
};

namespace detail {

// The shared machinery of ScaledDotProductAttention and ResidualScaledDotProductAttention (see the file comment).
template <class S>
class ScaledDotAttentionCore : public Layer<S>, public AttentionMap<S> {
 public:
  using Layer<S>::forward;
  using Layer<S>::backward;

  // Cross-attention: xq (B, Tq, d_k), xk (B, Tk, d_k), xv (B, Tk, d_v) -> y (B, Tq, d_v).
  const Tensor3<S>& forward(const Tensor3<S>& xq, const Mask& mq, const Tensor3<S>& xk, const Tensor3<S>& xv,
                            const Mask& mkv, Mode mode = Mode::Infer) {
    const InUseGuard in_use = this->enter("forward");
    return cross_forward(xq, mq, xk, xv, mkv, nullptr, mode);
  }
  // Follows forward(xq, mq, xk, xv, mkv) with the same inputs; dy (B, Tq, d_v). Returns dxq (B, Tq, d_k); dxk is
  // key_input_grad(), dxv value_input_grad().
  const Tensor3<S>& backward_cross(const Tensor3<S>& xq, const Mask& mq, const Tensor3<S>& xk, const Tensor3<S>& xv,
                                   const Mask& mkv, const Tensor3<S>& dy) {
    const InUseGuard in_use = this->enter("backward");
    return cross_backward(xq, mq, xk, xv, mkv, dy, nullptr);
  }

  Index out_features() const override { return value_features_; }
  std::string class_name() const override {
    return residual_ ? "ResidualScaledDotProductAttention" : "ScaledDotProductAttention";
  }
  bool supports_step_masks() const override { return true; }
  Config config() const override {
    Config c = Config::object();
    write_options(c, options_);
    return c;
  }
  std::string describe() const override {
    std::string s = class_name() + "(";
    std::string sep;
    if (options_.history_only()) s += "history_only=true", sep = ", ";
    if (options_.value_features()) s += sep + "value_features=" + std::to_string(*options_.value_features());
    return s + ")";
  }
  const ScaledDotProductAttentionOptions& options() const { return options_; }
  Index value_features() const { return value_features_; }

  // history_only self-attention: a cache of the past inputs (see the file comment).
  std::unique_ptr<LayerStream<S>> open_stream(Index batch, const StreamOptions& options) const override {
    if (!options_.history_only() || value_features_ != this->in_features())
      return Layer<S>::open_stream(batch, options);
    SeqSelfAttentionStreamSpec<S> spec;
    spec.layer = describe();
    spec.additive = false;
    spec.features = this->in_features();
    spec.Wa = &stream_kernel_;
    spec.ba = &stream_bias_;
    return std::make_unique<SeqSelfAttentionStream<S>>(spec, batch, options);
  }
  std::string stream_refusal() const override {
    if (value_features_ != this->in_features())
      return "value_features differs from the input features: a cross-attention layer (its values come from "
             "another input) has no stream form";
    return "history_only=false: every step attends to the whole sequence, later steps included; set history_only "
           "(keys [0, t]) to stream";
  }

  // The (B, Tq, Tk) weights, the residual's scores and their gradient.
  std::size_t cache_bytes(Index B, Index T) const override {
    const Index Tk = k_in_ ? k_in_->dimension(1) : T;
    const std::size_t maps = saturating_bytes(sizeof(S), {B, T, Tk});
    return residual_ ? saturating_add(maps, saturating_add(maps, maps)) : maps;
  }
  std::string memory_remedy(Index, Index) const override {
    return "it keeps batch x Tq x Tk attention weights for backward: use a smaller batch or cut the sequences into "
           "shorter windows";
  }

  // AttentionMap (core/attention_map.hpp): sample b's (Tq, Tk) weights of the last forward (0 at not-allowed keys
  // and at dead query rows). (No layer-specific attention() accessor: those are deprecated, CHANGELOG.)
  Matrix<S> attention_map(Index b, Index h = 0) const override {
    if (a_.size() == 0) throw_usage(describe(), ": attention_map before any forward");
    this->check_map_index(describe(), b, h, a_.dimension(0));
    const Index Tq = a_.dimension(1), Tk = a_.dimension(2);
    return Eigen::Map<const Matrix<S>>(a_.data() + b * Tq * Tk, Tq, Tk);
  }

  // dxk of the last backward_cross, (B, Tk, d_k); dxv, (B, Tk, d_v).
  const Tensor3<S>& key_input_grad() const { return dk_; }
  const Tensor3<S>& value_input_grad() const { return dv_; }

 protected:
  ScaledDotAttentionCore(Index in_features, ScaledDotProductAttentionOptions options, bool residual)
      : Layer<S>(in_features), options_(options), residual_(residual) {
    value_features_ = options.value_features().value_or(in_features);
    if (value_features_ <= 0)
      throw_config(describe(), ": value_features expected a positive integer but got ", value_features_);
    scale_ = S(1) / std::sqrt(S(in_features));
    if (options.history_only() && value_features_ == in_features) {  // the stream's kernel: scores x_t I/sqrt(d) x_s
      checked_parameter<S>(describe(), "the stream kernel", {in_features, in_features});
      stream_kernel_ = Matrix<S>::Identity(in_features, in_features) * scale_;
    }
  }

  // Cross forward with optional previous scores p (B, Tq, Tk); the caller holds the in-use guard.
  const Tensor3<S>& cross_forward(const Tensor3<S>& xq, const Mask& mq, const Tensor3<S>& xk, const Tensor3<S>& xv,
                                  const Mask& mkv, const Tensor3<S>* prev, Mode mode) {
    this->check_input(xq, mq);
    check_key_value(xq, xk, xv, mkv);
    if (prev) check_map(*prev, xq.dimension(0), xq.dimension(1), xk.dimension(1), "previous scores");
    Scope scope(*this, &xk, &xv, &mkv, prev, nullptr);
    return this->forward_entered(xq, mq, mode);
  }
  // Self forward with previous scores (B, T, T); the caller holds the guard.
  const Tensor3<S>& self_forward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& prev, Mode mode) {
    this->check_input(x, mask);
    check_map(prev, x.dimension(0), x.dimension(1), x.dimension(1), "previous scores");
    Scope scope(*this, nullptr, nullptr, nullptr, &prev, nullptr);
    return this->forward_entered(x, mask, mode);
  }
  const Tensor3<S>& cross_backward(const Tensor3<S>& xq, const Mask& mq, const Tensor3<S>& xk, const Tensor3<S>& xv,
                                   const Mask& mkv, const Tensor3<S>& dy, const Tensor3<S>* dz) {
    if (!last_cross_) throw_shape(describe(), ": backward_cross called after a self-attention forward");
    if (xk.dimensions() != k_dims_ || xv.dimensions() != v_dims_)
      throw_shape(describe(), ": backward key and value inputs expected ",
                  shape_string(k_dims_[0], k_dims_[1], k_dims_[2]), " and ",
                  shape_string(v_dims_[0], v_dims_[1], v_dims_[2]), " (the inputs of the last forward) but got ",
                  shape_string(xk), " and ", shape_string(xv));
    mkv.check(xk.dimension(0), xk.dimension(1), describe() + " key/value");
    if (dz) check_map(*dz, xq.dimension(0), xq.dimension(1), xk.dimension(1), "scores gradient");
    Scope scope(*this, &xk, &xv, &mkv, nullptr, dz);
    return this->backward_entered(xq, mq, dy);
  }
  const Tensor3<S>& self_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, const Tensor3<S>& dz) {
    check_map(dz, x.dimension(0), x.dimension(1), x.dimension(1), "scores gradient");
    Scope scope(*this, nullptr, nullptr, nullptr, nullptr, &dz);
    return this->backward_entered(x, mask, dy);
  }

  // xq (B, Tq, d_k) [, xk (B, Tk, d_k), xv (B, Tk, d_v)] -> a, z (B, Tq, Tk) -> y (B, Tq, d_v)
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    const bool cross = k_in_ != nullptr;
    if (!cross && value_features_ != this->in_features())
      throw_config(describe(), ": self-attention needs value_features == input features (", this->in_features(),
                   ") but value_features is ", value_features_, "; call forward(xq, mq, xk, xv, mkv, mode)");
    const Tensor3<S>& xk = cross ? *k_in_ : x;
    const Tensor3<S>& xv = cross ? *v_in_ : x;
    const Mask& mkv = cross ? *kv_mask_ : mask;
    last_cross_ = cross;
    k_dims_ = xk.dimensions();
    v_dims_ = xv.dimensions();
    const Index B = x.dimension(0), Tq = x.dimension(1), Tk = xk.dimension(1), D = x.dimension(2), Dv = value_features_;
    ensure_shape(a_, B, Tq, Tk);
    a_.setZero();
    if (residual_) {
      ensure_shape(z_, B, Tq, Tk);
      z_.setZero();
    }
    ensure_shape(row_, Tk);
    y.setZero();
    for (Index b = 0; b < B; ++b) {
      gather(mkv, b, Tk, keys_);
      const S* Q = x.data() + b * Tq * D;
      const S* K = xk.data() + b * Tk * D;
      const S* V = xv.data() + b * Tk * Dv;
      for (Index i = 0; i < Tq; ++i) {
        if (!mask.valid(b, i, Tq)) continue;  // a masked query row: y = 0
        const Index n = allowed(i);
        if (n == 0) continue;  // no allowed key: y = 0
        // z_j = q_i . k_j / sqrt(d_k) (+ p_ij)
        for (Index m = 0; m < n; ++m) {
          const Index j = key(m);
          row_(m) = dot(Q + i * D, K + j * D, D) * scale_;
          if (prev_) row_(m) += (*prev_)(b, i, j);
        }
        if (residual_)
          for (Index m = 0; m < n; ++m) z_(b, i, key(m)) = row_(m);
        // a = softmax(z) over the allowed keys
        masked_softmax_row(row_.data(), n, n);
        for (Index m = 0; m < n; ++m) a_(b, i, key(m)) = row_(m);
        // y_i = sum_j a_ij v_j
        S* yi = y.data() + (b * Tq + i) * Dv;
        for (Index m = 0; m < n; ++m) {
          const S w = row_(m);
          const S* vj = V + key(m) * Dv;
          for (Index f = 0; f < Dv; ++f) yi[f] += w * vj[f];
        }
      }
    }
  }

  // dy (B, Tq, d_v) [, dz (B, Tq, Tk)] -> dx (B, Tq, d_k) (self: dq + dk + dv), dk_, dv_, dprev_
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const bool cross = k_in_ != nullptr;
    if (cross != last_cross_)
      throw_shape(describe(), cross ? ": backward_cross called after a self-attention forward"
                                    : ": backward called after a cross-attention forward (call backward_cross)");
    const Tensor3<S>& xk = cross ? *k_in_ : x;
    const Tensor3<S>& xv = cross ? *v_in_ : x;
    const Mask& mkv = cross ? *kv_mask_ : mask;
    const Index B = x.dimension(0), Tq = x.dimension(1), Tk = xk.dimension(1), D = x.dimension(2), Dv = value_features_;
    // self-attention: dq, dk, dv all land in dx
    Tensor3<S>& dk = cross ? (ensure_shape(dk_, B, Tk, D), dk_) : dx;
    Tensor3<S>& dv = cross ? (ensure_shape(dv_, B, Tk, Dv), dv_) : dx;
    dx.setZero();
    dk.setZero();
    dv.setZero();
    if (residual_) {
      ensure_shape(dprev_, B, Tq, Tk);
      dprev_.setZero();
    }
    ensure_shape(row_, Tk);
    ensure_shape(drow_, Tk);
    for (Index b = 0; b < B; ++b) {
      gather(mkv, b, Tk, keys_);
      const S* Q = x.data() + b * Tq * D;
      const S* K = xk.data() + b * Tk * D;
      const S* V = xv.data() + b * Tk * Dv;
      S* DQ = dx.data() + b * Tq * D;
      S* DK = dk.data() + b * Tk * D;
      S* DV = dv.data() + b * Tk * Dv;
      for (Index i = 0; i < Tq; ++i) {
        if (!mask.valid(b, i, Tq)) continue;
        const Index n = allowed(i);
        if (n == 0) continue;
        const S* dyi = dy.data() + (b * Tq + i) * Dv;
        // inverts y_i = sum_j a_ij v_j:  da_j = dy_i . v_j,  dv_j += a_ij dy_i
        for (Index m = 0; m < n; ++m) {
          const Index j = key(m);
          row_(m) = a_(b, i, j);
          drow_(m) = dot(dyi, V + j * Dv, Dv);
          S* dvj = DV + j * Dv;
          for (Index f = 0; f < Dv; ++f) dvj[f] += row_(m) * dyi[f];
        }
        // inverts a = softmax(z): dz = a * (da - a . da)  (+ the gradient of scores(), residual)
        masked_softmax_row_backward(row_.data(), drow_.data(), n, n, S(1));
        if (dz_ext_)
          for (Index m = 0; m < n; ++m) drow_(m) += (*dz_ext_)(b, i, key(m));
        // inverts z_j = q_i . k_j / sqrt(d_k) + p_ij:  dp_ij = dz_j,  dq_i += dz_j k_j / sqrt,  dk_j += dz_j q_i / sqrt
        S* dqi = DQ + i * D;
        for (Index m = 0; m < n; ++m) {
          const Index j = key(m);
          if (residual_) dprev_(b, i, j) = drow_(m);
          const S g = drow_(m) * scale_;
          const S* kj = K + j * D;
          const S* qi = Q + i * D;
          S* dkj = DK + j * D;
          for (Index f = 0; f < D; ++f) {
            dqi[f] += g * kj[f];
            dkj[f] += g * qi[f];
          }
        }
      }
    }
  }

  ScaledDotProductAttentionOptions options_;
  bool residual_ = false;
  Tensor3<S> z_, dprev_;  // residual: the scores of the last forward and the gradient of the previous scores

 private:
  // Sets the key/value inputs, the previous scores and the scores gradient for one call.
  struct Scope {
    Scope(ScaledDotAttentionCore& l, const Tensor3<S>* k, const Tensor3<S>* v, const Mask* mkv, const Tensor3<S>* p,
          const Tensor3<S>* dz)
        : layer(l) {
      l.k_in_ = k;
      l.v_in_ = v;
      l.kv_mask_ = mkv;
      l.prev_ = p;
      l.dz_ext_ = dz;
    }
    ~Scope() {
      layer.k_in_ = layer.v_in_ = layer.prev_ = layer.dz_ext_ = nullptr;
      layer.kv_mask_ = nullptr;
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;
    ScaledDotAttentionCore& layer;
  };

  void check_key_value(const Tensor3<S>& xq, const Tensor3<S>& xk, const Tensor3<S>& xv, const Mask& mkv) const {
    if (xk.dimension(0) != xq.dimension(0))
      throw_shape(describe(), ": key batch expected ", xq.dimension(0), " (the query batch) but got ", xk.dimension(0),
                  " (key shape ", shape_string(xk), ")");
    if (xk.dimension(1) <= 0)
      throw_shape(describe(), ": key input expected at least one step but got ", shape_string(xk));
    if (xk.dimension(2) != this->in_features())
      throw_shape(describe(), ": key features expected ", this->in_features(), " (the query features d_k) but got ",
                  xk.dimension(2), " (key shape ", shape_string(xk), ")");
    if (xv.dimension(0) != xk.dimension(0) || xv.dimension(1) != xk.dimension(1))
      throw_shape(describe(), ": value input expected the batch and steps of the key input ", shape_string(xk),
                  " but got ", shape_string(xv));
    if (xv.dimension(2) != value_features_)
      throw_shape(describe(), ": value features expected ", value_features_, " (value_features) but got ",
                  xv.dimension(2), " (value shape ", shape_string(xv), ")");
    mkv.check(xk.dimension(0), xk.dimension(1), describe() + " key/value");
  }
  void check_map(const Tensor3<S>& m, Index B, Index Tq, Index Tk, const char* what) const {
    if (m.dimension(0) != B || m.dimension(1) != Tq || m.dimension(2) != Tk)
      throw_shape(describe(), ": ", what, " expected ", shape_string(B, Tq, Tk),
                  " (batch, query steps, key steps) but got ", shape_string(m));
  }

  // keys_ = the kept key steps of sample b, in order.
  static void gather(const Mask& mask, Index b, Index T, std::vector<Index>& keys) {
    keys.clear();
    if (!mask.has_holes()) {
      for (Index t = 0; t < mask.length(b, T); ++t) keys.push_back(t);
    } else {
      for (Index t = 0; t < T; ++t)
        if (mask.valid(b, t, T)) keys.push_back(t);
    }
  }
  // The number of allowed keys of query i: a prefix of keys_ (all of them without history_only).
  Index allowed(Index i) const {
    const Index n = static_cast<Index>(keys_.size());
    if (!options_.history_only()) return n;
    Index m = 0;
    while (m < n && keys_[static_cast<size_t>(m)] <= i) ++m;
    return m;
  }
  Index key(Index m) const { return keys_[static_cast<size_t>(m)]; }
  // a . b over n entries in order (the same bits whatever the other steps hold).
  static S dot(const S* a, const S* b, Index n) {
    S s(0);
    for (Index f = 0; f < n; ++f) s += a[f] * b[f];
    return s;
  }

  Index value_features_ = 0;
  S scale_ = S(1);
  Matrix<S> stream_kernel_;  // history_only: I / sqrt(d_k) (d_k, d_k), the stream's score kernel
  Vector<S> stream_bias_;    // empty: no score bias
  Tensor3<S> a_;             // (B, Tq, Tk) weights of the last forward
  Tensor3<S> dk_, dv_;       // cross backward: (B, Tk, d_k), (B, Tk, d_v)
  Vector<S> row_, drow_;     // one query's scores / weights and their gradients (Tk)
  std::vector<Index> keys_;  // the kept key steps of one sample
  bool last_cross_ = false;
  Eigen::DSizes<Index, 3> k_dims_{0, 0, 0}, v_dims_{0, 0, 0};
  const Tensor3<S>* k_in_ = nullptr;  // set during a cross call
  const Tensor3<S>* v_in_ = nullptr;
  const Mask* kv_mask_ = nullptr;
  const Tensor3<S>* prev_ = nullptr;    // previous scores during a residual forward
  const Tensor3<S>* dz_ext_ = nullptr;  // scores gradient during a residual backward
};

}  // namespace detail

/// Parameter-free scaled dot-product attention (keras-self-attention's ScaledDotProductAttention); see the
/// file documentation.
///
/// Also public, from its implementation base: the cross-attention forward(xq, mq, xk, xv, mkv, mode) and
/// backward_cross(xq, mq, xk, xv, mkv, dy), options(), value_features(), key_input_grad() and value_input_grad()
/// (the file documentation gives the shapes).
/// \extends Layer
/// \extends AttentionMap
template <class S>
class ScaledDotProductAttention final : public detail::ScaledDotAttentionCore<S> {
 public:
  /// Self-attention over inputs of `in_features` features.
  explicit ScaledDotProductAttention(Index in_features,
                                     ScaledDotProductAttentionOptions options = ScaledDotProductAttentionOptions())
      : detail::ScaledDotAttentionCore<S>(in_features, options, false) {}

  std::string name() const override { return "scaled_dot_product_attention"; }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "ScaledDotProductAttention config");
    const auto options = read_options<ScaledDotProductAttentionOptions>(r);
    r.finish();
    return std::make_unique<ScaledDotProductAttention>(in_features, options);
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<ScaledDotProductAttention>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const ScaledDotProductAttention&>(other); }
};

/// Scaled dot-product attention that adds the previous layer's scores (RealFormer residual attention); see the
/// file documentation.
///
/// Also public, from its implementation base: the cross-attention forward(xq, mq, xk, xv, mkv, mode) and
/// backward_cross(xq, mq, xk, xv, mkv, dy), options(), value_features(), key_input_grad() and value_input_grad()
/// (the file documentation gives the shapes).
/// \extends Layer
/// \extends AttentionMap
template <class S>
class ResidualScaledDotProductAttention final : public detail::ScaledDotAttentionCore<S> {
  using Core = detail::ScaledDotAttentionCore<S>;

 public:
  /// Residual attention over inputs of `in_features` features.
  explicit ResidualScaledDotProductAttention(
      Index in_features, ScaledDotProductAttentionOptions options = ScaledDotProductAttentionOptions())
      : Core(in_features, options, true) {}

  using Core::backward;
  using Core::backward_cross;
  using Core::forward;

  /// Self-attention with previous scores p (B, T, T).
  const Tensor3<S>& forward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& prev, Mode mode = Mode::Infer) {
    const detail::InUseGuard in_use = this->enter("forward");
    return this->self_forward(x, mask, prev, mode);
  }
  /// Cross-attention with previous scores p (B, Tq, Tk).
  const Tensor3<S>& forward(const Tensor3<S>& xq, const Mask& mq, const Tensor3<S>& xk, const Tensor3<S>& xv,
                            const Mask& mkv, const Tensor3<S>& prev, Mode mode = Mode::Infer) {
    const detail::InUseGuard in_use = this->enter("forward");
    return this->cross_forward(xq, mq, xk, xv, mkv, &prev, mode);
  }
  /// Self-attention backward with dz (B, T, T), the gradient w.r.t. scores().
  const Tensor3<S>& backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, const Tensor3<S>& dz) {
    const detail::InUseGuard in_use = this->enter("backward");
    return this->self_backward(x, mask, dy, dz);
  }
  /// Cross-attention backward with dz (B, Tq, Tk).
  const Tensor3<S>& backward_cross(const Tensor3<S>& xq, const Mask& mq, const Tensor3<S>& xk, const Tensor3<S>& xv,
                                   const Mask& mkv, const Tensor3<S>& dy, const Tensor3<S>& dz) {
    const detail::InUseGuard in_use = this->enter("backward");
    return this->cross_backward(xq, mq, xk, xv, mkv, dy, &dz);
  }

  /// z (B, Tq, Tk): the pre-softmax scores of the last forward, previous scores included (0 where not allowed).
  const Tensor3<S>& scores() const { return this->z_; }
  /// dL/dp (B, Tq, Tk) of the last backward (0 where not allowed).
  const Tensor3<S>& previous_scores_grad() const { return this->dprev_; }

  std::string name() const override { return "residual_scaled_dot_product_attention"; }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "ResidualScaledDotProductAttention config");
    const auto options = read_options<ScaledDotProductAttentionOptions>(r);
    r.finish();
    return std::make_unique<ResidualScaledDotProductAttention>(in_features, options);
  }
  std::unique_ptr<Layer<S>> clone() const override {
    return std::make_unique<ResidualScaledDotProductAttention>(*this);
  }
  void copy_from(const Layer<S>& other) override {
    *this = static_cast<const ResidualScaledDotProductAttention&>(other);
  }
};

}  // namespace seqattn
