#pragma once
// Naive loops for SeqSelfAttention (tests and benchmarks compare the banded fast path in
// layers/seq_self_attention.hpp with them). Straight from the equations, dense O(B T^2 U), every (t, s) pair
// tested against the key rule written out again here (not shared with the fast path):
//   additive        e[t, s] = sum_u Wa[u] tanh(sum_f x[t, f] Wt[f, u] + sum_f x[s, f] Wx[f, u] + bh[u]) + ba
//   multiplicative  e[t, s] = sum_{f, g} x[t, f] Wa[f, g] x[s, g] + ba
//   A[t, s] = exp(act(e[t, s]) - m_t) / sum over allowed s' (m_t: max over allowed), 0 elsewhere
//   y[t, f] = sum_s A[t, s] x[s, f];  penalty = r / B * sum_b sum_{t, u < len_b} (sum_s A[t,s] A[u,s] - [t==u])^2
// Step masks: a pair (t, s) is allowed only when both steps are kept (mask.valid), the penalty sums over kept t, u,
// and the values of x at masked steps are never read (the sums skip every pair that is not allowed).

#include <algorithm>
#include <cmath>
#include <vector>

#include "seqattn/layers/seq_self_attention.hpp"

namespace seqattn::detail {

template <class S>
struct SeqSelfAttentionReference {
  Tensor3<S> y;  // (B, T, F)
  Tensor3<S> A;  // (B, T, T) dense
  S attention_penalty = S(0);
};

// Whether query t may attend to key s in a sequence of `length` valid steps (width 0: no attention_width).
inline bool reference_key_allowed(Index t, Index s, Index length, Index width, bool history_only) {
  if (t >= length || s >= length || s < 0) return false;
  if (width > 0) {
    if (history_only) return s >= t - width + 1 && s <= t;
    const Index first = t - width / 2;
    return s >= first && s <= first + width - 1;
  }
  return history_only ? s <= t : true;
}

template <class S>
SeqSelfAttentionReference<S> seq_self_attention_reference(const SeqSelfAttention<S>& layer, const Tensor3<S>& x,
                                                          const Mask& mask = Mask()) {
  const auto& o = layer.options();
  const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
  const Index U = layer.additive() ? o.units() : 0, width = o.attention_width().value_or(0);
  const S ba = layer.ba().size() ? layer.ba()(0) : S(0);
  SeqSelfAttentionReference<S> ref;
  ref.y.resize(B, T, F);
  ref.y.setZero();
  ref.A.resize(B, T, T);
  ref.A.setZero();
  std::vector<S> z(static_cast<size_t>(T));
  for (Index b = 0; b < B; ++b) {
    const Index len = mask.length(b, T);
    for (Index t = 0; t < T; ++t) {
      // scores of every allowed key
      bool any = false;
      S mx = S(0);
      const auto allowed = [&](Index s) {
        return reference_key_allowed(t, s, len, width, o.history_only()) && mask.valid(b, t, T) && mask.valid(b, s, T);
      };
      for (Index s = 0; s < T; ++s) {
        if (!allowed(s)) continue;
        S e = ba;
        if (layer.additive()) {
          for (Index u = 0; u < U; ++u) {
            S h = layer.bh().size() ? layer.bh()(u) : S(0);
            for (Index f = 0; f < F; ++f) h += x(b, t, f) * layer.wt()(f, u) + x(b, s, f) * layer.wx()(f, u);
            e += layer.wa()(u, 0) * std::tanh(h);
          }
        } else {
          for (Index f = 0; f < F; ++f)
            for (Index g = 0; g < F; ++g) e += x(b, t, f) * layer.wa()(f, g) * x(b, s, g);
        }
        z[static_cast<size_t>(s)] = activate<S>(o.attention_activation(), e);
        mx = any ? std::max(mx, z[static_cast<size_t>(s)]) : z[static_cast<size_t>(s)];
        any = true;
      }
      if (!any) continue;
      S sum = S(0);
      for (Index s = 0; s < T; ++s)
        if (allowed(s)) {
          ref.A(b, t, s) = std::exp(z[static_cast<size_t>(s)] - mx);
          sum += ref.A(b, t, s);
        }
      for (Index s = 0; s < T; ++s) ref.A(b, t, s) /= sum;
      for (Index s = 0; s < T; ++s)
        if (allowed(s))
          for (Index f = 0; f < F; ++f) ref.y(b, t, f) += ref.A(b, t, s) * x(b, s, f);
    }
    for (Index t = 0; t < len; ++t)
      for (Index u = 0; u < len; ++u) {
        if (!mask.valid(b, t, T) || !mask.valid(b, u, T)) continue;
        S g = t == u ? S(-1) : S(0);
        for (Index s = 0; s < T; ++s) g += ref.A(b, t, s) * ref.A(b, u, s);
        ref.attention_penalty += g * g;
      }
  }
  ref.attention_penalty *= static_cast<S>(o.attention_regularizer_weight()) / static_cast<S>(B);
  return ref;
}

}  // namespace seqattn::detail
