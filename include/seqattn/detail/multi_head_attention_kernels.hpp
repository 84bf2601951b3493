#pragma once
// Kernels of MultiHeadAttention for one (sample, head): scaled dot-product attention over strided head
// blocks of the projected (B*T, H*dh) matrices, forward and backward side by side. The layer
// (layers/multi_head_attention.hpp) does the projections and calls these per (b, h).
//
// Shapes of one (sample b, head h), with Tq query steps, Tk key steps, lq valid queries, lk valid keys:
//   Q (Tq, dh), K (Tk, dh), V (Tk, dh)   column block h of the projections (row stride H*dh)
//   P (Tq, Tk)                           attention probabilities of the head (row stride Tk), kept
//   Pd (Tq, Tk)                          P after attention dropout (kept only with dropout)
//   ctx (Tq, dh)                         column block h of the concatenated heads (row stride H*dh)
//   scratch                              (rows, kmax) score gradients of one block in backward, contiguous
//                                        (cache resident); grows to the largest block, then never reallocates
// Query t < lq may attend keys s < allowed_keys(t): lk, or min(t + 1, lk) when causal. The (lq, lk) scores
// are processed in blocks of query rows (block_rows(): about 128K scores, so a block stays in L2 cache; at
// most 64 rows when causal, whose keys stop at the block's last row, so causal attention costs about half).
// Per block the forward runs scores GEMM -> softmax -> context GEMM while the block of P is in cache, and the
// backward reads P once. Everything depends only on (lq, lk) and the values, never on Tq, Tk or
// addresses, which keeps valid outputs bitwise independent of padding. Rows t >= lq of P and ctx are zero.

#include <algorithm>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "seqattn/core/random.hpp"
#include "seqattn/core/threads.hpp"
#include "seqattn/detail/masked_softmax.hpp"
#include "seqattn/detail/stable_product.hpp"
#include "seqattn/layers/activation.hpp"

namespace seqattn::detail::mha {

template <class S>
using HeadMap = Eigen::Map<Matrix<S>, 0, Eigen::OuterStride<>>;
template <class S>
using ConstHeadMap = Eigen::Map<const Matrix<S>, 0, Eigen::OuterStride<>>;

inline constexpr Index kBlockScores = 131072;  // scores per block (512 KB of float)
inline constexpr Index kCausalBlockRows = 64;

// Keys [0, allowed_keys) are allowed for query t (0 for a query that is not valid).
inline Index allowed_keys(Index t, Index lq, Index lk, bool causal) {
  if (t >= lq) return 0;
  return causal ? std::min(t + 1, lk) : lk;
}

// Query rows per block: a multiple of kRowQuantum, a function of (lq, lk) only.
inline Index block_rows(Index lq, Index lk, bool causal) {
  Index rows = std::max<Index>(kRowQuantum, kBlockScores / std::max<Index>(lk, 1) / kRowQuantum * kRowQuantum);
  if (causal) rows = std::min(rows, kCausalBlockRows);
  return std::min(rows, std::max<Index>(lq, 1));
}

// Calls f(r0, rows, kmax) for the row blocks of the (lq, lk) scores; columns [0, kmax) hold every allowed
// key of the block's rows.
template <class F>
void for_each_block(Index lq, Index lk, bool causal, F&& f) {
  if (lq == 0 || lk == 0) return;
  const Index step = block_rows(lq, lk, causal);
  for (Index r0 = 0; r0 < lq; r0 += step) {
    const Index rows = std::min(step, lq - r0);
    f(r0, rows, causal ? std::min(r0 + rows, lk) : lk);
  }
}

// Attention dropout of the forward: keep with probability 1 - rate, scale kept weights by 1 / (1 - rate).
template <class S>
struct AttentionDropout {
  Rng* rng = nullptr;  // null: no dropout
  double rate = 0.0;
  S* dropped = nullptr;  // Pd (Tq, Tk), row stride Tk
};

// Threads for the (b, h) loops: seqattn::num_threads() (1 without OpenMP or inside a parallel region), at most
// one per pair, one for a small batch.
inline int attention_threads(Index pairs, double work) { return parallel_threads(pairs, work); }
inline int thread_index() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Rows [r0, r0 + n) of the projection of the forward: X (R, f) -> z = X W + b (R, n) -> out = act(z); without an
// activation z is `out` itself (z untouched). z and out are already (R, W.cols()). Row-stable and
// address-independent (padding invariance), so the rows of one chunk do not depend on the chunking; only the
// last chunk of a matrix may use the scratch (rows beyond a multiple of kRowQuantum).
template <class S, class XM>
void projection_forward_rows(const XM& X, const Matrix<S>& W, const Vector<S>& b, bool use_bias, Activation act,
                             Matrix<S>& z, Matrix<S>& out, RowStableScratch<S>& scratch, Index r0, Index n) {
  auto target = (act == Activation::Linear ? out : z).middleRows(r0, n);
  row_stable_product<S>(target, X.middleRows(r0, n), W, scratch);
  if (use_bias) target.rowwise() += b.transpose();
  if (act == Activation::Linear) return;
  auto O = out.middleRows(r0, n);
  if (act == Activation::Tanh) {
    O = target;
    stable_tanh<S>(O);
  } else {
    activation_forward<S>(act, target, O);  // relu, gelu, sigmoid: elementwise scalar code, address-independent
  }
}

// ---------------------------------------------------------------------------------------------------------
// forward: P = softmax_allowed(scale * Q K^T) (stored), Pd = dropout(P), ctx = Pd V.
// P (Tq, Tk) and ctx (Tq, dh): every element written. Each block of P is written in place and reused from
// cache by the context GEMM.
template <class S>
void attention_forward(const ConstHeadMap<S>& Q, const ConstHeadMap<S>& K, const ConstHeadMap<S>& V, HeadMap<S>& P,
                       HeadMap<S>& ctx, Index lq, Index lk, bool causal, S scale, const AttentionDropout<S>& dropout) {
  const Index Tq = P.rows(), Tk = P.cols();
  for_each_block(lq, lk, causal, [&](Index r0, Index rows, Index kmax) {
    auto Pb = P.block(r0, 0, rows, kmax);
    // scores of the block, then the softmax of each row over its allowed keys (zeros up to Tk)
    stable_product(Pb, Q.middleRows(r0, rows), K.topRows(kmax).transpose(), scale);
    for (Index i = 0; i < rows; ++i)
      masked_softmax_row(&P.coeffRef(r0 + i, 0), allowed_keys(r0 + i, lq, lk, causal), Tk);
    if (dropout.rng) {  // inverted dropout: Pd = P * keep / (1 - rate)
      const S keep_scale = S(1.0 / (1.0 - dropout.rate));
      HeadMap<S> Pd(dropout.dropped, Tq, Tk, Eigen::OuterStride<>(Tk));
      for (Index i = 0; i < rows; ++i) {
        const Index t = r0 + i, n = allowed_keys(t, lq, lk, causal);
        for (Index s = 0; s < n; ++s) Pd(t, s) = dropout.rng->uniform() >= dropout.rate ? P(t, s) * keep_scale : S(0);
        std::fill(&Pd.coeffRef(t, 0) + n, &Pd.coeffRef(t, 0) + Tk, S(0));
      }
      stable_product(ctx.middleRows(r0, rows), Pd.block(r0, 0, rows, kmax), V.topRows(kmax), S(1));
    } else {
      stable_product(ctx.middleRows(r0, rows), Pb, V.topRows(kmax), S(1));  // ctx = P V
    }
  });
  const Index live = lk > 0 ? lq : 0;  // rows without a block: no valid query or no valid key
  for (Index t = live; t < Tq; ++t) {
    std::fill(&P.coeffRef(t, 0), &P.coeffRef(t, 0) + Tk, S(0));
    if (dropout.rng) std::fill(dropout.dropped + t * Tk, dropout.dropped + (t + 1) * Tk, S(0));
  }
  if (live < Tq) ctx.bottomRows(Tq - live).setZero();
}

// backward (inverts the forward block by block). dctx (Tq, dh) in; dQ (Tq, dh), dK, dV (Tk, dh) OVERWRITTEN.
// Pd is P without dropout; keep_scale = 1 / (1 - rate) with dropout, else 0.
template <class S>
void attention_backward(const ConstHeadMap<S>& Q, const ConstHeadMap<S>& K, const ConstHeadMap<S>& V,
                        const ConstHeadMap<S>& P, const ConstHeadMap<S>& Pd, const ConstHeadMap<S>& dctx,
                        HeadMap<S>& dQ, HeadMap<S>& dK, HeadMap<S>& dV, Index lq, Index lk, bool causal, S scale,
                        S keep_scale, Vector<S>& scratch) {
  dQ.setZero();
  dK.setZero();
  dV.setZero();
  for_each_block(lq, lk, causal, [&](Index r0, Index rows, Index kmax) {
    if (scratch.size() < rows * kmax) scratch.resize(rows * kmax);
    Eigen::Map<Matrix<S>> dS(scratch.data(), rows, kmax);
    const auto dctx_b = dctx.middleRows(r0, rows);
    // inverts ctx = Pd V:  dPd = dctx V^T,  dV += Pd^T dctx
    gemm(dS, dctx_b, V.topRows(kmax).transpose(), S(1));
    gemm(dV.topRows(kmax), Pd.block(r0, 0, rows, kmax).transpose(), dctx_b, S(1), true);
    for (Index i = 0; i < rows; ++i) {
      const Index t = r0 + i, n = allowed_keys(t, lq, lk, causal);
      // inverts Pd = P * keep / (1 - rate): dP = dPd * keep / (1 - rate); keep is Pd != 0 where P != 0,
      // and where P == 0 the softmax gradient below is 0 whatever dP is.
      if (keep_scale != S(0)) {
        auto d = dS.row(i).head(n).array();
        d = (Pd.row(t).head(n).array() != S(0)).select(d * keep_scale, S(0));
      }
      // inverts P = softmax(scale * Q K^T): dS = scale * P * (dP - P . dP), 0 beyond the allowed keys
      masked_softmax_row_backward(&P.coeff(t, 0), &dS(i, 0), n, kmax, scale);
    }
    // inverts the scores: dQ = dS K,  dK += dS^T Q
    gemm(dQ.middleRows(r0, rows), dS, K.topRows(kmax), S(1));
    gemm(dK.topRows(kmax), dS.transpose(), Q.middleRows(r0, rows), S(1), true);
  });
}

}  // namespace seqattn::detail::mha
