#pragma once
// MultiHeadAttention with an explicit attention mask (torch's attn_mask; layers/multi_head_attention.hpp,
// set_attention_mask): plain loops for one (sample, head), forward and backward, on the layer's storage of P (the
// dense (Tq, Tk) map or the band of attention_window, detail::mha::Window). Used only while a mask is set: the
// tiled kernels (multi_head_attention_kernels.hpp) keep the speed of every call without one.
//
// Key s is allowed for query t when the layer's rules allow it (t valid, s < lk, causal: s <= t, window:
// s >= t - w + 1, step masks: both steps kept) AND the explicit mask does: a boolean mask allows it where it
// is false (torch's convention: true = not allowed); an additive mask allows it where it is not -inf and adds
// its value to the scaled score. The softmax runs over the allowed keys only (a key that is not allowed has
// weight exactly 0 and its values are never read); a query without an allowed key is dead in this head: its
// P row and context row are 0 and it passes no gradient. Every sum runs over the allowed keys in increasing
// order (the query rows in increasing order for dK and dV), independent of Tq, Tk and addresses.
//
// Extra keys (torch's add_bias_kv / add_zero_attn, ExtraKeys): E key/value rows after the Tk keys, allowed for
// every valid (kept) query whatever the rules and the explicit mask say (torch pads attn_mask and key_padding_mask
// with an allowed column for each); their weights are the columns W, ..., W + E - 1 of P (W = win.cols()), after
// the keys of the window. With them every valid query row has an allowed key: it is live.
// Also used without an explicit mask (ExplicitMask with neither array: the layer's rules only).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "seqattn/detail/multi_head_attention_kernels.hpp"

namespace seqattn::detail::mha {

// The explicit mask of one (sample, head): row t of (Tq, Tk) at blocked + t * Tk or bias + t * Tk (one of them).
template <class S>
struct ExplicitMask {
  const std::uint8_t* blocked = nullptr;  // boolean mask: nonzero = not allowed
  const S* bias = nullptr;                // additive mask: -inf = not allowed
  Index keys = 0;                         // Tk, the row stride
};

// Extra key/value rows of one head (count rows of head_size at k + e * stride, v + e * stride), after the Tk keys.
// backward writes their gradients to dk, dv (count rows of head_size, contiguous).
template <class S>
struct ExtraKeys {
  const S* k = nullptr;
  const S* v = nullptr;
  Index stride = 0;
  Index count = 0;
  S* dk = nullptr;
  S* dv = nullptr;
};

// Whether key s may be attended by query t under the explicit mask (the layer's rules are checked by the caller).
template <class S>
inline bool explicit_allows(const ExplicitMask<S>& m, const StepKeep& steps, Index t, Index s) {
  if (steps.keys && !steps.keys[s]) return false;
  if (m.blocked) return m.blocked[t * m.keys + s] == 0;
  if (!m.bias) return true;
  return m.bias[t * m.keys + s] != -std::numeric_limits<S>::infinity();
}

// Keys [lo, hi) of query t under the layer's rules (empty for an invalid or masked query).
inline KeyRange layer_keys(Index t, Index lq, Index lk, bool causal, const Window& win, const StepKeep& steps) {
  if (t >= lq || (steps.queries && !steps.queries[t])) return {0, 0};
  const Index hi = causal ? std::min(t + 1, lk) : lk, lo = win.width > 0 ? std::max<Index>(0, t - win.width + 1) : 0;
  return hi > lo ? KeyRange{lo, hi} : KeyRange{0, 0};
}

// Whether query t is valid (inside the length, kept): it then sees the extra keys.
inline bool query_valid(Index t, Index lq, const StepKeep& steps) {
  return t < lq && (!steps.queries || steps.queries[t]);
}

// forward of one (sample, head): P (Tq, win.cols()) and ctx (Tq, dh) written everywhere; with dropout, Pd too
// (drawn for the allowed keys in increasing order). live[t] = 1 when query t has an allowed key, else 0.
template <class S>
void explicit_attention_forward(const ConstHeadMap<S>& Q, const ConstHeadMap<S>& K, const ConstHeadMap<S>& V,
                                HeadMap<S>& P, HeadMap<S>& ctx, Index lq, Index lk, bool causal, const Window& win,
                                S scale, const AttentionDropout<S>& dropout, const StepKeep& steps,
                                const ExplicitMask<S>& mask, std::uint8_t* live, const ExtraKeys<S>& extra = {}) {
  const Index Tq = P.rows(), W = P.cols(), dh = Q.cols(), band = win.cols();
  const S keep_scale = dropout.rng ? S(1.0 / (1.0 - dropout.rate)) : S(0);
  P.setZero();
  ctx.setZero();
  if (dropout.rng) std::fill(dropout.dropped, dropout.dropped + Tq * W, S(0));
  for (Index t = 0; t < Tq; ++t) {
    live[t] = 0;
    const KeyRange keys = layer_keys(t, lq, lk, causal, win, steps);
    const Index off = win.start(t);
    S* p = &P.coeffRef(t, 0);
    S mx = -std::numeric_limits<S>::infinity();
    for (Index s = keys.begin; s < keys.end; ++s) {  // scores of the allowed keys, in the row of P
      if (!explicit_allows(mask, steps, t, s)) continue;
      S e = S(0);
      for (Index d = 0; d < dh; ++d) e += Q(t, d) * K(s, d);
      e *= scale;
      if (mask.bias) e += mask.bias[t * mask.keys + s];
      p[s - off] = e;
      mx = std::max(mx, e);
      live[t] = 1;
    }
    const Index ne = query_valid(t, lq, steps) ? extra.count : 0;  // extra keys: columns band + e
    for (Index e = 0; e < ne; ++e) {
      S x = S(0);
      for (Index d = 0; d < dh; ++d) x += Q(t, d) * extra.k[e * extra.stride + d];
      p[band + e] = x * scale;
      mx = std::max(mx, p[band + e]);
      live[t] = 1;
    }
    if (!live[t]) continue;
    S sum = S(0);
    for (Index s = keys.begin; s < keys.end; ++s)
      if (explicit_allows(mask, steps, t, s)) sum += p[s - off] = std::exp(p[s - off] - mx);
    for (Index e = 0; e < ne; ++e) sum += p[band + e] = std::exp(p[band + e] - mx);
    const S inv = S(1) / sum;
    for (Index s = keys.begin; s < keys.end; ++s)
      if (explicit_allows(mask, steps, t, s)) p[s - off] *= inv;
    for (Index e = 0; e < ne; ++e) p[band + e] *= inv;
    const S* weights = p;
    if (dropout.rng) {
      S* pd = dropout.dropped + t * W;
      for (Index s = keys.begin; s < keys.end; ++s)
        if (explicit_allows(mask, steps, t, s))
          pd[s - off] = dropout.rng->uniform() >= dropout.rate ? p[s - off] * keep_scale : S(0);
      for (Index e = 0; e < ne; ++e)
        pd[band + e] = dropout.rng->uniform() >= dropout.rate ? p[band + e] * keep_scale : S(0);
      weights = pd;
    }
    for (Index s = keys.begin; s < keys.end; ++s)  // ctx_t = sum_s Pd_ts V_s
      if (explicit_allows(mask, steps, t, s)) {
        const S a = weights[s - off];
        for (Index d = 0; d < dh; ++d) ctx(t, d) += a * V(s, d);
      }
    for (Index e = 0; e < ne; ++e) {
      const S a = weights[band + e];
      for (Index d = 0; d < dh; ++d) ctx(t, d) += a * extra.v[e * extra.stride + d];
    }
  }
}

// backward of one (sample, head): inverts explicit_attention_forward. dctx (Tq, dh) in; dQ (Tq, dh), dK, dV
// (Tk, dh) OVERWRITTEN. keep_scale = 1 / (1 - rate) with dropout, else 0 (then Pd is P).
template <class S>
void explicit_attention_backward(const ConstHeadMap<S>& Q, const ConstHeadMap<S>& K, const ConstHeadMap<S>& V,
                                 const ConstHeadMap<S>& P, const ConstHeadMap<S>& Pd, const ConstHeadMap<S>& dctx,
                                 HeadMap<S>& dQ, HeadMap<S>& dK, HeadMap<S>& dV, Index lq, Index lk, bool causal,
                                 const Window& win, S scale, S keep_scale, const StepKeep& steps,
                                 const ExplicitMask<S>& mask, std::vector<S>& dP, const ExtraKeys<S>& extra = {}) {
  const Index Tq = dQ.rows(), dh = Q.cols(), band = win.cols();
  dQ.setZero();
  dK.setZero();
  dV.setZero();
  if (extra.count > 0) {
    std::fill(extra.dk, extra.dk + extra.count * dh, S(0));
    std::fill(extra.dv, extra.dv + extra.count * dh, S(0));
  }
  if (static_cast<Index>(dP.size()) < P.cols()) dP.resize(static_cast<size_t>(P.cols()));
  for (Index t = 0; t < Tq; ++t) {
    const KeyRange keys = layer_keys(t, lq, lk, causal, win, steps);
    const Index off = win.start(t);
    const S* p = &P.coeff(t, 0);
    const S* pd = &Pd.coeff(t, 0);
    S dot = S(0);
    for (Index s = keys.begin; s < keys.end; ++s) {  // dPd = dctx_t . V_s, dP = dPd * keep / (1 - rate)
      if (!explicit_allows(mask, steps, t, s)) continue;
      S g = S(0);
      for (Index d = 0; d < dh; ++d) g += dctx(t, d) * V(s, d);
      if (keep_scale != S(0)) g = pd[s - off] != S(0) ? g * keep_scale : S(0);
      dP[static_cast<size_t>(s - off)] = g;
      dot += p[s - off] * g;
    }
    const Index ne = query_valid(t, lq, steps) ? extra.count : 0;
    for (Index e = 0; e < ne; ++e) {
      S g = S(0);
      for (Index d = 0; d < dh; ++d) g += dctx(t, d) * extra.v[e * extra.stride + d];
      if (keep_scale != S(0)) g = pd[band + e] != S(0) ? g * keep_scale : S(0);
      dP[static_cast<size_t>(band + e)] = g;
      dot += p[band + e] * g;
    }
    for (Index s = keys.begin; s < keys.end; ++s) {
      if (!explicit_allows(mask, steps, t, s)) continue;
      const S ds = scale * p[s - off] * (dP[static_cast<size_t>(s - off)] - dot);  // inverts the softmax
      const S a = pd[s - off];
      for (Index d = 0; d < dh; ++d) {
        dQ(t, d) += ds * K(s, d);
        dK(s, d) += ds * Q(t, d);
        dV(s, d) += a * dctx(t, d);
      }
    }
    for (Index e = 0; e < ne; ++e) {
      const S ds = scale * p[band + e] * (dP[static_cast<size_t>(band + e)] - dot);
      const S a = pd[band + e];
      for (Index d = 0; d < dh; ++d) {
        dQ(t, d) += ds * extra.k[e * extra.stride + d];
        extra.dk[e * dh + d] += ds * Q(t, d);
        extra.dv[e * dh + d] += a * dctx(t, d);
      }
    }
  }
}

}  // namespace seqattn::detail::mha
