#pragma once
// The stream form of causal multi-head self-attention (layers/multi_head_attention.hpp, core/stream.hpp): a
// key/value cache per stream.
//   State: K and V (B, C, H*dh), the activated key and value projections of the last C steps of each stream,
//   step p in slot p % C: V row by row, K transposed (each stream's block is an (H*dh, C) matrix: feature d of
//   the key of slot c at d * C + c, so the scores of a head are AXPYs over the keys, not short dot products).
//   With an attention window w, C = w (a ring buffer: its rows are exactly the keys query p
//   may see once p >= w - 1); without one, C grows by doubling up to StreamOptions::max_history (rows 0..p).
//   A chunk x (B, n, in): the q, k, v projections of all B*n rows at once; then per stream, row by row, the new
//   key and value are written and the query attends to the valid rows 0 .. min(p + 1, C) - 1 of the cache
//   (every head: scores = K_h q_h / sqrt(dh), a max-subtracted softmax, ctx_h = V_h^T a, with the one-query
//   kernels of detail/cached_attention.hpp: one pass over the keys, one over the rows of V for all heads); last,
//   y = act_o(ctx Wo + bo) over all B*n rows (act_o: output_activation). The projections are Eigen's products on
//   the weights in place. A steady stream allocates nothing.

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "seqattn/core/memory_limit.hpp"
#include "seqattn/core/stream.hpp"
#include "seqattn/core/tensor.hpp"
#include "seqattn/detail/cached_attention.hpp"
#include "seqattn/detail/masked_softmax.hpp"
#include "seqattn/detail/stream_product.hpp"
#include "seqattn/layers/activation.hpp"

namespace seqattn::detail {

// What the stream reads from its layer: the weights (in place) and the shape of the heads.
template <class S>
struct AttentionWeights {
  const Matrix<S>* Wq;
  const Vector<S>* bq;
  const Matrix<S>* Wk;
  const Vector<S>* bk;
  const Matrix<S>* Wv;
  const Vector<S>* bv;
  const Matrix<S>* Wo;
  const Vector<S>* bo;
  bool use_bias;
  Activation activation;
  Index heads, head_size;
  Index window;  // 0: none (a growing cache)
  Activation output_activation = Activation::Linear;  // y = act(ctx Wo + bo)
};

// The attention of one query over cached keys and values, every head (streams: this file and
// detail/multi_head_attention_cross_stream.hpp). K (hd, C) holds the keys transposed (feature d of slot c at d * C + c),
// V (C, hd) the values; reserve(keys) before attend() with that many keys (allocates only when it grows).
template <class S>
class CachedHeadAttention {
 public:
  CachedHeadAttention(Index heads, Index head_size, Index rows) : heads_(heads), dh_(head_size) {
    reserve(rows);
    inv_sums_.resize(heads);
  }
  void reserve(Index keys) {
    if (keys <= rows_) return;
    rows_ = keys;
    scores_.resize(heads_ * rows_);
  }
  // ctx (hd) = the attention of query q (hd) over the first `keys` slots of K and V (row stride C of K, hd of V):
  // every head h: softmax(K_h^T q_h * scale) weighting the rows of V_h.
  void attend(const S* K, const S* V, Index C, Index keys, const S* q, S* ctx, S scale) {
    const Index hd = heads_ * dh_, dh = dh_, ldw = rows_;
    for (Index h = 0; h < heads_; ++h) {
      S* s = scores_.data() + h * ldw;
      cached::head_scores<S>(q + h * dh, K + h * dh * C, C, dh, keys, scale, s);
      inv_sums_[h] = S(1) / exp_shift_sum<S>(s, keys, row_max<S>(s, keys));
    }
    if (cached::fits_all_heads<S>(heads_, dh)) {  // one pass over the rows of V for every head
      cached::weighted_rows_heads<S>(scores_.data(), ldw, keys, V, hd, heads_, dh, inv_sums_.data(), ctx);
      return;
    }
    for (Index h = 0; h < heads_; ++h) {
      const S* s = scores_.data() + h * ldw;
      if (cached::supports_weighted_rows<S>(dh)) {
        cached::weighted_rows<S>(s, keys, V + h * dh, hd, dh, inv_sums_[h], ctx + h * dh);
      } else {  // heads that are not a whole number of packets: Eigen's product
        using Block = Eigen::Map<const Matrix<S>, 0, Eigen::OuterStride<>>;
        const Block Vh(V + h * dh, keys, dh, Eigen::OuterStride<>(hd));
        Eigen::Map<RowVector<S>> out(ctx + h * dh, dh);
        out.noalias() = Eigen::Map<const RowVector<S>>(s, keys) * Vh;
        out *= inv_sums_[h];
      }
    }
  }

 private:
  Index heads_, dh_, rows_ = 0;
  Vector<S> scores_;    // (H, rows_): the scores, then the weights, of one query for every head
  Vector<S> inv_sums_;  // (H) 1 / the sum of each head's weights
};

// Z = act(X W + b) over all rows: a q, k or v projection of a stream.
template <class S>
void project_rows(const AttentionWeights<S>& w, const ConstMatrixMap<S>& X, const Matrix<S>& W, const Vector<S>& bias,
                  Matrix<S>& Z) {
  stream_product(Z, X, W);
  if (w.use_bias) Z.rowwise() += bias.transpose();
  activation_forward<S>(w.activation, Z, Z);
}

// y = act_o(ctx Wo + bo) over all rows: the output projection of a stream.
template <class S>
void project_output(const AttentionWeights<S>& w, const Matrix<S>& ctx, Tensor3<S>& y) {
  MatrixMap<S> Y = as_matrix(y);
  stream_product(Y, ctx, *w.Wo);
  if (w.use_bias) Y.rowwise() += w.bo->transpose();
  if (w.output_activation != Activation::Linear) activation_forward<S>(w.output_activation, Y, Y);
}

template <class S>
class MultiHeadAttentionStream final : public LayerStream<S> {
 public:
  MultiHeadAttentionStream(const AttentionWeights<S>& w, Index batch, const StreamOptions& options,
                           const std::string& who)
      : w_(w), max_history_(options.max_history()), who_(who),
        heads_(w.heads, w.head_size, w.window > 0 ? w.window : std::min<Index>(16, max_history_)) {
    const Index hd = w.heads * w.head_size;
    const Index rows = w.window > 0 ? w.window : std::min<Index>(16, max_history_);
    detail::checked_parameter<S>(who, "the key/value cache of a stream", {batch, rows, hd});
    zero_state(K_, batch, rows, hd);
    zero_state(V_, batch, rows, hd);
  }

  // x (B, n, in) -> y (B, n, out)
  void step(const Tensor3<S>& x, const std::vector<Index>& start, Tensor3<S>& y) override {
    const Index B = x.dimension(0), n = x.dimension(1), hd = w_.heads * w_.head_size, dh = w_.head_size;
    if (w_.window == 0) grow_for(start, n);
    const Index C = K_.dimension(1);
    ConstMatrixMap<S> X = as_matrix(x);
    ensure_shape(q_, B * n, hd);
    ensure_shape(k_, B * n, hd);
    ensure_shape(v_, B * n, hd);
    ensure_shape(ctx_, B * n, hd);
    project_rows(w_, X, *w_.Wq, *w_.bq, q_);
    project_rows(w_, X, *w_.Wk, *w_.bk, k_);
    project_rows(w_, X, *w_.Wv, *w_.bv, v_);
    const S scale = S(1) / std::sqrt(static_cast<S>(dh));
    for (Index b = 0; b < B; ++b) {
      S* K = K_.data() + b * C * hd;
      S* V = V_.data() + b * C * hd;
      for (Index i = 0; i < n; ++i) {
        const Index p = start[static_cast<size_t>(b)] + i, r = b * n + i;
        const Index slot = p % C;
        for (Index d = 0; d < hd; ++d) K[d * C + slot] = k_(r, d);  // keys transposed: row d, column slot
        std::copy(&v_(r, 0), &v_(r, 0) + hd, V + slot * hd);
        const Index keys = std::min<Index>(p + 1, C);
        heads_.reserve(C);  // a growing cache grew: room for every head's scores (allocates only then)
        heads_.attend(K, V, C, keys, &q_(r, 0), &ctx_(r, 0), scale);
      }
    }
    project_output(w_, ctx_, y);
  }

  void reset(Index b) override {
    zero_stream(K_, b);
    zero_stream(V_, b);
  }
  void state(StreamStateList<S>& list, const std::string& prefix) override {
    const bool grows = w_.window == 0;
    list.push_back({prefix + "keys", &K_, grows, grows ? max_history_ : K_.dimension(1)});
    list.push_back({prefix + "values", &V_, grows, grows ? max_history_ : V_.dimension(1)});
  }
  Index max_steps() const override { return w_.window > 0 ? kUnlimitedSteps : max_history_; }

 private:
  // A growing cache: room for the longest stream after this chunk (doubling, at most max_history rows).
  void grow_for(const std::vector<Index>& start, Index n) {
    Index need = 0;
    for (Index s : start) need = std::max(need, s + n);
    const Index C = K_.dimension(1);
    if (need <= C) return;
    Index rows = C;
    while (rows < need) rows = std::min<Index>(2 * rows, max_history_);
    const Index B = K_.dimension(0), hd = K_.dimension(2);
    detail::checked_parameter<S>(who_, "the key/value cache of a stream", {B, rows, hd});
    Tensor3<S> keys(B, rows, hd), values(B, rows, hd);
    keys.setZero();
    values.setZero();
    for (Index b = 0; b < B; ++b) {
      std::copy(V_.data() + b * C * hd, V_.data() + (b + 1) * C * hd, values.data() + b * rows * hd);
      for (Index d = 0; d < hd; ++d)  // keys transposed: each row d of C slots moves to a row of `rows` slots
        std::copy(K_.data() + b * C * hd + d * C, K_.data() + b * C * hd + (d + 1) * C,
                  keys.data() + b * rows * hd + d * rows);
    }
    K_ = std::move(keys);
    V_ = std::move(values);
  }

  AttentionWeights<S> w_;
  Index max_history_;
  std::string who_;
  Tensor3<S> K_, V_;
  CachedHeadAttention<S> heads_;
  Matrix<S> q_, k_, v_, ctx_;
};

}  // namespace seqattn::detail
