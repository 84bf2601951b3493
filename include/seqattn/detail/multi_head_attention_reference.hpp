#pragma once
// Naive loop reference of MultiHeadAttention (forward and backward), written from the equations with no
// GEMMs, no strided maps and no blocking. Tests compare the fast layer with it; benchmarks may time it.
// Same semantics as layers/multi_head_attention.hpp:
//   q = act(xq Wq + bq), k = act(xkv Wk + bk), v = act(xkv Wv + bv)
//   A[b,h,t,s] = softmax_s(q[b,t,h,:] . k[b,s,h,:] / sqrt(dh)) over s < len_kv(b) (and s <= t if causal,
//                and s >= t - window + 1 with a window)
//   ctx[b,t,h,:] = sum_s A[b,h,t,s] v[b,s,h,:],  y = ctx Wo + bo
// Query rows t >= len_q(b), and rows without an allowed key, are dead: y = 0, A = 0, no gradient.
// Step masks (holes, left padding): a masked query row is dead, a masked key is never allowed (mq.valid,
// mkv.valid; with lengths masks these are the rules above).
// A is the dense (B*H, Tq, Tk) map also with a window.
// For self-attention pass xkv = xq, mkv = mq; the input gradient is then dxq + dxkv.

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "seqattn/core/mask.hpp"
#include "seqattn/core/tensor.hpp"
#include "seqattn/layers/activation.hpp"

namespace seqattn::detail {

template <class S>
struct MhaReferenceParams {
  Index heads = 1, head_size = 1;
  bool causal = false;
  Index window = 0;  // attention_window (0: none)
  Activation activation = Activation::Linear;
  Matrix<S> Wq, Wk, Wv, Wo;  // (in, hd), (key_features, hd), (key_features, hd), (hd, out)
  Vector<S> bq, bk, bv, bo;  // empty: no bias
};

template <class S>
struct MhaReferenceGrads {
  Tensor3<S> dxq, dxkv;
  Matrix<S> dWq, dWk, dWv, dWo;
  Vector<S> dbq, dbk, dbv, dbo;  // empty without bias
};

// Intermediate values of the naive forward.
template <class S>
struct MhaReferenceCache {
  Matrix<S> zq, q, zk, k, zv, v, ctx;  // (B*Tq, hd), (B*Tk, hd) x 4, (B*Tq, hd)
  Tensor3<S> A;                        // (B*H, Tq, Tk)
};

// X (R, f) [as a (B, T, f) tensor] -> z = X W + b, out = act(z)
template <class S>
void reference_projection(const Tensor3<S>& x, const Matrix<S>& W, const Vector<S>& b, Activation act, Matrix<S>& z,
                          Matrix<S>& out) {
  const Index R = x.dimension(0) * x.dimension(1), F = x.dimension(2), n = W.cols();
  z.resize(R, n);
  out.resize(R, n);
  for (Index r = 0; r < R; ++r)
    for (Index j = 0; j < n; ++j) {
      S acc = b.size() ? b(j) : S(0);
      for (Index f = 0; f < F; ++f) acc += x.data()[r * F + f] * W(f, j);
      z(r, j) = acc;
      out(r, j) = activate<S>(act, acc);
    }
}

// Allowed keys [lo, hi) of query t (t valid) for a key/value length lk; empty when hi <= lo.
template <class S>
std::pair<Index, Index> reference_keys(const MhaReferenceParams<S>& p, Index t, Index lk) {
  const Index hi = p.causal ? std::min(t + 1, lk) : lk;
  const Index lo = p.window > 0 ? std::max<Index>(0, t - p.window + 1) : 0;
  return {lo, hi};
}

// A query row is live when it is kept and has at least one allowed kept key.
template <class S>
bool reference_row_live(const MhaReferenceParams<S>& p, const Mask& mq, const Mask& mkv, Index b, Index t, Index Tq,
                        Index Tk) {
  if (t >= mq.length(b, Tq) || !mq.valid(b, t, Tq)) return false;
  const auto [lo, hi] = reference_keys(p, t, mkv.length(b, Tk));
  for (Index s = lo; s < hi; ++s)
    if (mkv.valid(b, s, Tk)) return true;
  return false;
}

template <class S>
MhaReferenceCache<S> mha_reference_cache(const MhaReferenceParams<S>& p, const Tensor3<S>& xq, const Mask& mq,
                                         const Tensor3<S>& xkv, const Mask& mkv) {
  const Index B = xq.dimension(0), Tq = xq.dimension(1), Tk = xkv.dimension(1), H = p.heads, dh = p.head_size;
  MhaReferenceCache<S> c;
  reference_projection(xq, p.Wq, p.bq, p.activation, c.zq, c.q);
  reference_projection(xkv, p.Wk, p.bk, p.activation, c.zk, c.k);
  reference_projection(xkv, p.Wv, p.bv, p.activation, c.zv, c.v);
  c.A.resize(B * H, Tq, Tk);
  c.A.setZero();
  c.ctx = Matrix<S>::Zero(B * Tq, H * dh);
  const S scale = S(1) / std::sqrt(S(dh));
  for (Index b = 0; b < B; ++b) {
    const Index lq = mq.length(b, Tq), lk = mkv.length(b, Tk);
    for (Index h = 0; h < H; ++h)
      for (Index t = 0; t < lq; ++t) {
        if (!reference_row_live(p, mq, mkv, b, t, Tq, Tk)) continue;
        const auto [lo, n] = reference_keys(p, t, lk);
        S mx = -std::numeric_limits<S>::infinity();
        for (Index s = lo; s < n; ++s) {
          if (!mkv.valid(b, s, Tk)) continue;
          S e = 0;
          for (Index d = 0; d < dh; ++d) e += c.q(b * Tq + t, h * dh + d) * c.k(b * Tk + s, h * dh + d);
          c.A(b * H + h, t, s) = e * scale;
          mx = std::max(mx, e * scale);
        }
        S sum = 0;
        for (Index s = lo; s < n; ++s)
          if (mkv.valid(b, s, Tk)) sum += (c.A(b * H + h, t, s) = std::exp(c.A(b * H + h, t, s) - mx));
        for (Index s = lo; s < n; ++s) c.A(b * H + h, t, s) /= sum;
        for (Index d = 0; d < dh; ++d) {
          S acc = 0;
          for (Index s = lo; s < n; ++s)
            if (mkv.valid(b, s, Tk)) acc += c.A(b * H + h, t, s) * c.v(b * Tk + s, h * dh + d);
          c.ctx(b * Tq + t, h * dh + d) = acc;
        }
      }
  }
  return c;
}

// y (B, Tq, out) and A (B*H, Tq, Tk).
template <class S>
void mha_reference_forward(const MhaReferenceParams<S>& p, const Tensor3<S>& xq, const Mask& mq, const Tensor3<S>& xkv,
                           const Mask& mkv, Tensor3<S>& y, Tensor3<S>& A) {
  const MhaReferenceCache<S> c = mha_reference_cache(p, xq, mq, xkv, mkv);
  const Index B = xq.dimension(0), Tq = xq.dimension(1), Tk = xkv.dimension(1), hd = p.Wo.rows(), O = p.Wo.cols();
  y.resize(B, Tq, O);
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < Tq; ++t)
      for (Index o = 0; o < O; ++o) {
        S acc = 0;
        if (reference_row_live<S>(p, mq, mkv, b, t, Tq, Tk)) {
          acc = p.bo.size() ? p.bo(o) : S(0);
          for (Index j = 0; j < hd; ++j) acc += c.ctx(b * Tq + t, j) * p.Wo(j, o);
        }
        y(b, t, o) = acc;
      }
  A = c.A;
}

// Gradients of L = sum(y * dy): every field of g is overwritten.
template <class S>
void mha_reference_backward(const MhaReferenceParams<S>& p, const Tensor3<S>& xq, const Mask& mq, const Tensor3<S>& xkv,
                            const Mask& mkv, const Tensor3<S>& dy, MhaReferenceGrads<S>& g) {
  const MhaReferenceCache<S> c = mha_reference_cache(p, xq, mq, xkv, mkv);
  const Index B = xq.dimension(0), Tq = xq.dimension(1), Tk = xkv.dimension(1), H = p.heads, dh = p.head_size;
  const Index hd = H * dh, O = p.Wo.cols(), Fq = xq.dimension(2), Fk = xkv.dimension(2);
  const S scale = S(1) / std::sqrt(S(dh));
  // inverts y = ctx Wo + bo on live rows
  Matrix<S> dctx = Matrix<S>::Zero(B * Tq, hd);
  g.dWo = Matrix<S>::Zero(hd, O);
  g.dbo = Vector<S>::Zero(p.bo.size());
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < Tq; ++t) {
      if (!reference_row_live<S>(p, mq, mkv, b, t, Tq, Tk)) continue;
      const Index r = b * Tq + t;
      for (Index o = 0; o < O; ++o) {
        const S d = dy(b, t, o);
        if (p.bo.size()) g.dbo(o) += d;
        for (Index j = 0; j < hd; ++j) {
          g.dWo(j, o) += c.ctx(r, j) * d;
          dctx(r, j) += d * p.Wo(j, o);
        }
      }
    }
  // inverts ctx = A v and A = softmax(q k^T * scale)
  Matrix<S> dq = Matrix<S>::Zero(B * Tq, hd), dk = Matrix<S>::Zero(B * Tk, hd), dv = Matrix<S>::Zero(B * Tk, hd);
  for (Index b = 0; b < B; ++b) {
    const Index lq = mq.length(b, Tq), lk = mkv.length(b, Tk);
    for (Index h = 0; h < H; ++h)
      for (Index t = 0; t < lq; ++t) {
        if (!reference_row_live(p, mq, mkv, b, t, Tq, Tk)) continue;
        const auto [lo, n] = reference_keys(p, t, lk);
        Vector<S> da = Vector<S>::Zero(n);
        for (Index s = lo; s < n; ++s)
          for (Index d = 0; d < dh && mkv.valid(b, s, Tk); ++d) {
            da(s) += dctx(b * Tq + t, h * dh + d) * c.v(b * Tk + s, h * dh + d);
            dv(b * Tk + s, h * dh + d) += c.A(b * H + h, t, s) * dctx(b * Tq + t, h * dh + d);
          }
        S dot = 0;
        for (Index s = lo; s < n; ++s)
          if (mkv.valid(b, s, Tk)) dot += c.A(b * H + h, t, s) * da(s);
        for (Index s = lo; s < n; ++s) {
          if (!mkv.valid(b, s, Tk)) continue;
          const S de = c.A(b * H + h, t, s) * (da(s) - dot) * scale;
          for (Index d = 0; d < dh; ++d) {
            dq(b * Tq + t, h * dh + d) += de * c.k(b * Tk + s, h * dh + d);
            dk(b * Tk + s, h * dh + d) += de * c.q(b * Tq + t, h * dh + d);
          }
        }
      }
  }
  // inverts the activations and the projections
  auto input_grads = [&](const Tensor3<S>& x, const Matrix<S>& z, const Matrix<S>& a, Matrix<S>& d, Matrix<S>& dW,
                         Vector<S>& db, bool has_bias) {
    const Index R = d.rows(), F = x.dimension(2);
    for (Index r = 0; r < R; ++r)
      for (Index j = 0; j < hd; ++j) d(r, j) *= activation_derivative<S>(p.activation, z(r, j), a(r, j));
    dW = Matrix<S>::Zero(F, hd);
    db = Vector<S>::Zero(has_bias ? hd : 0);
    for (Index r = 0; r < R; ++r)
      for (Index j = 0; j < hd; ++j) {
        if (has_bias) db(j) += d(r, j);
        for (Index f = 0; f < F; ++f) dW(f, j) += x.data()[r * F + f] * d(r, j);
      }
  };
  input_grads(xq, c.zq, c.q, dq, g.dWq, g.dbq, p.bq.size() > 0);
  input_grads(xkv, c.zk, c.k, dk, g.dWk, g.dbk, p.bk.size() > 0);
  input_grads(xkv, c.zv, c.v, dv, g.dWv, g.dbv, p.bv.size() > 0);
  g.dxq.resize(B, Tq, Fq);
  g.dxkv.resize(B, Tk, Fk);
  for (Index r = 0; r < B * Tq; ++r)
    for (Index f = 0; f < Fq; ++f) {
      S acc = 0;
      for (Index j = 0; j < hd; ++j) acc += dq(r, j) * p.Wq(f, j);
      g.dxq.data()[r * Fq + f] = acc;
    }
  for (Index r = 0; r < B * Tk; ++r)
    for (Index f = 0; f < Fk; ++f) {
      S acc = 0;
      for (Index j = 0; j < hd; ++j) acc += dk(r, j) * p.Wk(f, j) + dv(r, j) * p.Wv(f, j);
      g.dxkv.data()[r * Fk + f] = acc;
    }
}

}  // namespace seqattn::detail
