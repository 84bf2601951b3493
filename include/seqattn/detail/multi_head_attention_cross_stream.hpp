#pragma once
// The stream form of multi-head cross-attention (layers/multi_head_attention.hpp with 2 or 3 inputs; core/stream.hpp,
// "Several inputs"): the queries step, the keys and values come from a context (the memory: an encoder's output)
// fixed while the streams step.
//   set_context({memory, mask} [, {values, mask}]): the key and value projections of every memory step, once:
//     K = act(memory Wk + bk), V = act(values Wv + bv) (values = memory with 2 inputs). Only the KEPT steps of each
//     stream are stored, in order: K (B, hd, C) transposed (feature d of kept key c at d * C + c) and V (B, C, hd),
//     C the most kept steps of any stream, with kept_before[b] (Tm_b + 1), the kept steps before each position.
//   set_stream_context(b, ...): the same for stream b alone (batch-1 tensors; its memory may have another length;
//     C grows when it keeps more steps than any stream before).
//   step(x (B, n, d), start) -> y (B, n, out): q = act(x Wq + bq) over all B*n rows; the query at position p of
//     stream b attends to the kept keys whose positions are in its range [lo, hi): [0, Tm), with causal
//     [0, min(p + 1, Tm)), with an attention_window w also from p - w + 1 (the layer's rule: cross-attention with
//     causal aligns query step t with key step t). Those are the stored keys kept_before[lo] .. kept_before[hi] - 1,
//     contiguous: the one-query kernels of detail/multi_head_attention_stream.hpp. y = act_o(ctx Wo + bo); a query
//     with no kept key in its range outputs exactly 0, as the layer does.
// A step costs O(kept keys) per query and head, with no projection of the memory; it allocates nothing.

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/layer_inputs.hpp"
#include "seqattn/core/memory_limit.hpp"
#include "seqattn/core/stream.hpp"
#include "seqattn/detail/multi_head_attention_stream.hpp"

namespace seqattn::detail {

template <class S>
class CrossAttentionStream final : public LayerStream<S> {
 public:
  // inputs: 2 (keys and values from one memory) or 3 (separate values); causal: the layer's causal option.
  CrossAttentionStream(const AttentionWeights<S>& w, Index batch, Index inputs, bool causal, std::string who)
      : w_(w), batch_(batch), inputs_(inputs), causal_(causal), who_(std::move(who)), heads_(w.heads, w.head_size, 1) {}

  Index context_inputs() const override { return inputs_ - 1; }

  // context[0]: the memory (B, Tm, key_features) and its mask; context[1] (3 inputs): the values (B, Tm, value_features)
  void set_context(const LayerInputs<S>& context) override {
    const Index B = check_context(context, batch_);
    Index C = 1;
    for (Index b = 0; b < B; ++b) C = std::max(C, kept_steps(*context[0].mask, b, context[0].x->dimension(1)));
    checked_parameter<S>(who_, "the projected memory of a stream", {B, C, 2 * w_.heads * w_.head_size});
    zero_state(K_, B, C, w_.heads * w_.head_size);
    zero_state(V_, B, C, w_.heads * w_.head_size);
    kept_before_.assign(static_cast<std::size_t>(B), {});
    memory_steps_.assign(static_cast<std::size_t>(B), 0);
    store(context, 0, B);
  }
  // The context of stream b only: tensors of batch 1 (the other streams keep theirs).
  void set_stream_context(Index b, const LayerInputs<S>& context) override {
    check_context(context, 1);
    if (kept_before_.empty()) {  // no context yet: every other stream has none
      zero_state(K_, batch_, 1, w_.heads * w_.head_size);
      zero_state(V_, batch_, 1, w_.heads * w_.head_size);
      kept_before_.assign(static_cast<std::size_t>(batch_), {});
      memory_steps_.assign(static_cast<std::size_t>(batch_), 0);
    }
    const Index kept = kept_steps(*context[0].mask, 0, context[0].x->dimension(1));
    if (kept > K_.dimension(1)) grow(kept);
    zero_stream(K_, b);
    zero_stream(V_, b);
    store(context, b, 1);
  }

  // x (B, n, d) -> y (B, n, out)
  void step(const Tensor3<S>& x, const std::vector<Index>& start, Tensor3<S>& y) override {
    if (memory_steps_.empty()) throw_usage(who_, ": step before set_context (the stream has no memory)");
    const Index B = x.dimension(0), n = x.dimension(1), hd = w_.heads * w_.head_size;
    const Index C = K_.dimension(1);
    ensure_shape(q_, B * n, hd);
    ensure_shape(ctx_, B * n, hd);
    dead_.resize(static_cast<std::size_t>(B * n));
    project_rows(w_, as_matrix(x), *w_.Wq, *w_.bq, q_);
    const S scale = S(1) / std::sqrt(static_cast<S>(w_.head_size));
    for (Index b = 0; b < B; ++b) {
      const Index Tm = memory_steps_[static_cast<std::size_t>(b)];
      const std::vector<Index>& kb = kept_before_[static_cast<std::size_t>(b)];
      const S* K = K_.data() + b * C * hd;
      const S* V = V_.data() + b * C * hd;
      for (Index i = 0; i < n; ++i) {
        const Index p = start[static_cast<std::size_t>(b)] + i, r = b * n + i;
        const Index hi = causal_ ? std::min(p + 1, Tm) : Tm;
        const Index lo = w_.window > 0 ? std::min(hi, std::max<Index>(0, p - w_.window + 1)) : 0;
        const Index first = kb[static_cast<std::size_t>(lo)], keys = kb[static_cast<std::size_t>(hi)] - first;
        dead_[static_cast<std::size_t>(r)] = keys == 0;
        if (keys == 0) {
          std::fill(&ctx_(r, 0), &ctx_(r, 0) + hd, S(0));
          continue;
        }
        heads_.attend(K + first, V + first * hd, C, keys, &q_(r, 0), &ctx_(r, 0), scale);
      }
    }
    project_output(w_, ctx_, y);
    MatrixMap<S> Y = as_matrix(y);
    for (Index r = 0; r < B * n; ++r)
      if (dead_[static_cast<std::size_t>(r)]) Y.row(r).setZero();
  }

 private:
  // ShapeError unless the context is (memory [, values]) of `batch` sequences with the layer's widths; returns B.
  Index check_context(const LayerInputs<S>& context, Index batch) const {
    if (static_cast<Index>(context.size()) != inputs_ - 1)
      throw_shape(who_, ": set_context expected ", inputs_ - 1, " context input(s) but got ", context.size());
    const Tensor3<S>& memory = *context[0].x;
    const Tensor3<S>& values = inputs_ == 3 ? *context[1].x : memory;
    if (memory.dimension(0) != batch || values.dimension(0) != batch || memory.dimension(1) <= 0 ||
        values.dimension(1) != memory.dimension(1))
      throw_shape(who_, ": set_context expected a memory of ", batch, " sequence(s) (and values of its shape) but got ",
                  shape_string(memory), " and ", shape_string(values));
    if (memory.dimension(2) != w_.Wk->rows() || values.dimension(2) != w_.Wv->rows())
      throw_shape(who_, ": set_context expected key features ", w_.Wk->rows(), " and value features ", w_.Wv->rows(),
                  " but got ", shape_string(memory), " and ", shape_string(values));
    context[0].mask->check(batch, memory.dimension(1), who_ + " memory");
    return batch;
  }
  static Index kept_steps(const Mask& mask, Index b, Index Tm) {
    Index kept = 0;
    for (Index t = 0; t < Tm; ++t) kept += mask.valid(b, t, Tm) ? 1 : 0;
    return kept;
  }
  // The projections of the kept steps of context sequences 0 .. count - 1 into streams first .. first + count - 1.
  void store(const LayerInputs<S>& context, Index first, Index count) {
    const Tensor3<S>& memory = *context[0].x;
    const Tensor3<S>& values = inputs_ == 3 ? *context[1].x : memory;
    const Mask& mask = *context[0].mask;
    const Index Tm = memory.dimension(1), hd = w_.heads * w_.head_size, C = K_.dimension(1);
    Matrix<S> k(count * Tm, hd), v(count * Tm, hd);
    project_rows(w_, as_matrix(memory), *w_.Wk, *w_.bk, k);
    project_rows(w_, as_matrix(values), *w_.Wv, *w_.bv, v);
    for (Index i = 0; i < count; ++i) {
      const Index b = first + i;
      std::vector<Index>& kb = kept_before_[static_cast<std::size_t>(b)];
      kb.assign(static_cast<std::size_t>(Tm + 1), 0);
      S* K = K_.data() + b * C * hd;
      S* V = V_.data() + b * C * hd;
      Index c = 0;
      for (Index t = 0; t < Tm; ++t) {
        kb[static_cast<std::size_t>(t + 1)] = c + (mask.valid(i, t, Tm) ? 1 : 0);
        if (!mask.valid(i, t, Tm)) continue;
        const Index r = i * Tm + t;
        for (Index d = 0; d < hd; ++d) K[d * C + c] = k(r, d);  // keys transposed: row d, column c
        std::copy(&v(r, 0), &v(r, 0) + hd, V + c * hd);
        ++c;
      }
      memory_steps_[static_cast<std::size_t>(b)] = Tm;
    }
    heads_.reserve(C);
  }
  // Room for `rows` kept steps per stream (keys transposed: each row d of C slots moves to a row of `rows` slots).
  void grow(Index rows) {
    const Index B = K_.dimension(0), C = K_.dimension(1), hd = K_.dimension(2);
    checked_parameter<S>(who_, "the projected memory of a stream", {B, rows, 2 * hd});
    Tensor3<S> keys(B, rows, hd), values(B, rows, hd);
    keys.setZero();
    values.setZero();
    for (Index b = 0; b < B; ++b) {
      std::copy(V_.data() + b * C * hd, V_.data() + (b + 1) * C * hd, values.data() + b * rows * hd);
      for (Index d = 0; d < hd; ++d)
        std::copy(K_.data() + b * C * hd + d * C, K_.data() + b * C * hd + (d + 1) * C,
                  keys.data() + b * rows * hd + d * rows);
    }
    K_ = std::move(keys);
    V_ = std::move(values);
  }

  AttentionWeights<S> w_;
  Index batch_, inputs_;
  bool causal_;
  std::string who_;
  CachedHeadAttention<S> heads_;
  std::vector<Index> memory_steps_;               // (B): Tm of each stream's context; empty before set_context
  std::vector<std::vector<Index>> kept_before_;   // (B, Tm_b + 1): kept steps before each position
  Tensor3<S> K_, V_;                              // (B, C, hd): keys transposed per stream, values
  Matrix<S> q_, ctx_;
  std::vector<unsigned char> dead_;  // (B*n): the query has no kept key in its range
};

}  // namespace seqattn::detail
