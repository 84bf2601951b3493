#pragma once
// Kernels of SeqSelfAttention for one sample of L valid steps (layers/seq_self_attention.hpp calls them per
// sample, so the valid outputs of a sample never depend on T, on padded values or on the other samples: the
// padding-invariance tests compare them bitwise). Forward and backward sit side by side.
//
// Shapes (one sample): x (L, F); Q, K (L, U); P (L, F); E, A, dA: banded (T, W) row-major raw blocks (see
// seq_self_attention_band.hpp), only rows t < L and the columns of each row's keys are meaningful;
// H (W, U) scratch; y, dy, dx (L, F).
// Bitwise invariance: Eigen peels scalar iterations by address (alignment), and its scalar and SIMD paths can
// round differently (exp, tanh, FMA), and its sums start at the first aligned element. So every product, sum
// or non-trivial elementwise op WRITES or reduces a buffer whose address does not depend on T or b (the
// layer's scratch: H, the row scratch, `square`, dQ, dK, dP, Y and dX scratch), or goes through Eigen's GEMV
// kernels, which use unaligned loads and no address-dependent peeling. Plain copies and additions are exact.
// Step masks (holes, left padding): L is the sample's extent (1 + its last kept step) and `keep` its L keep flags
// (null for lengths masks: the lengths code, unchanged). The layer zeroes the rows of x at masked steps (in a
// copy) before the projections, so every product below reads only finite values; with `keep`, a masked query
// row is skipped (weights 0, score gradients 0) and the softmax of a kept query runs over its kept keys only
// (compacted into the row scratch, the same operations as the lengths code; masked keys get weight exactly 0).

#include <algorithm>
#include <cstdint>

#include "seqattn/detail/head_products.hpp"
#include "seqattn/detail/seq_self_attention_band.hpp"
#include "seqattn/detail/simd.hpp"
#include "seqattn/layers/activation.hpp"

namespace seqattn::detail {

template <class S>
using StridedMap = Eigen::Map<Matrix<S>, 0, Eigen::OuterStride<>>;
template <class S>
using ConstStridedMap = Eigen::Map<const Matrix<S>, 0, Eigen::OuterStride<>>;

// The dense (L, L) top-left block of a banded (T, T) sample block (bands without a width).
template <class S>
ConstStridedMap<S> dense_block(const S* band_data, Index L, Index W) {
  return ConstStridedMap<S>(band_data, L, L, Eigen::OuterStride<>(W));
}
template <class S>
StridedMap<S> dense_block(S* band_data, Index L, Index W) {
  return StridedMap<S>(band_data, L, L, Eigen::OuterStride<>(W));
}

// ---------------------------------------------------------------------------------------------------------
// Additive scores. Q = x Wt + bh, K = x Wx are precomputed (L, U); wa (U); ba scalar (0 without bias).
// The tanh block of query t over its n keys, H[j] = tanh(Q_t + K_{begin + j}) (n, U): one contiguous,
// vectorized row at a time (Eigen's rowwise() broadcast is not vectorized), elementwise only, so the values
// never depend on where the rows sit in memory.
template <class S>
void additive_tanh_block(const ConstMatrixMap<S>& Q, const ConstMatrixMap<S>& K, Index t, const KeyRange& r,
                         Matrix<S>& H) {
  const Index U = Q.cols();
  const Eigen::Map<const Eigen::Array<S, 1, Eigen::Dynamic>> q(Q.data() + t * U, U);
  for (Index j = 0; j < r.size(); ++j) {
    const Eigen::Map<const Eigen::Array<S, 1, Eigen::Dynamic>> k(K.data() + (r.begin + j) * U, U);
    Eigen::Map<Eigen::Array<S, 1, Eigen::Dynamic>> h(H.data() + j * U, U);
    h = (q + k).tanh();
  }
}

// forward:  e[t, s] = wa . tanh(Q_t + K_s) + ba, one (n, U) tanh block and one GEMV per query.
template <class S>
void additive_scores_forward(const ConstMatrixMap<S>& Q, const ConstMatrixMap<S>& K,
                             const Eigen::Map<const Vector<S>>& wa, S ba, Index L, const AttentionBand& band, S* E,
                             Matrix<S>& H, const std::uint8_t* keep = nullptr) {
  const Index W = band.cols();
  for (Index t = 0; t < L; ++t) {
    if (keep && !keep[t]) continue;  // masked query: its scores are never used
    const KeyRange r = band.keys(t, L);
    const Index n = r.size();
    if (n == 0) continue;
    additive_tanh_block(Q, K, t, r, H);
    Eigen::Map<Vector<S>> e(E + t * W + (r.begin - band.start(t)), n);
    e.noalias() = H.topRows(n) * wa;  // (n)
    if (ba != S(0)) e.array() += ba;
  }
}

// backward (inverts the forward above, recomputing each tanh block instead of storing B*T*T*U values):
//   h = tanh(Q_t + K_s);  dwa += de h;  dba += de;  g = de * wa * (1 - h^2);  dQ_t = sum_s g;  dK_s += g.
// dE: (T, W) banded gradient of the scores; dQ, dK (L, U): dQ is overwritten row by row, dK must start at 0.
// One pass per SIMD packet of the U columns, with dQ_t and dwa held in registers over the keys: every element
// takes the same operations in the same order as the row-by-row Eigen expressions this replaced, which loaded
// and stored dwa, dQ_t and h again for each key (this function now takes about a third less time, the layer's
// forward + backward about 9% less on Zen 2). The last packet of a row goes through a zero-padded local
// buffer, so no value depends on an address.
template <class S>
void additive_scores_backward(const ConstMatrixMap<S>& Q, const ConstMatrixMap<S>& K,
                              const Eigen::Map<const Vector<S>>& wa, const S* dE, Index L, const AttentionBand& band,
                              Matrix<S>& H, MatrixMap<S>& dQ, MatrixMap<S>& dK, Eigen::Map<Vector<S>>& dwa, S* dba,
                              const std::uint8_t* keep = nullptr) {
  namespace ei = Eigen::internal;
  using Packet = SimdPacket<S>;
  constexpr Index P = kSimdSize<S>;
  const Index W = band.cols(), U = Q.cols();
  const Packet one = ei::pset1<Packet>(S(1));
  for (Index t = 0; t < L; ++t) {
    const KeyRange r = band.keys(t, L);
    const Index n = r.size();
    S* dq = dQ.data() + t * U;
    if (n == 0 || (keep && !keep[t])) {  // no key, or a masked query (its score gradients are 0)
      std::fill(dq, dq + U, S(0));
      continue;
    }
    additive_tanh_block(Q, K, t, r, H);  // as forward
    const S* de = dE + t * W + (r.begin - band.start(t));
    if (dba)
      for (Index j = 0; j < n; ++j) *dba += de[j];  // inverts + ba
    for (Index c = 0; c < U; c += P) {
      const Index count = std::min(P, U - c);
      const Packet wa_c = head::load_lanes<S>(wa.data() + c, count);
      Packet dwa_c = head::load_lanes<S>(dwa.data() + c, count);
      Packet dq_c = ei::pset1<Packet>(S(0));
      for (Index j = 0; j < n; ++j) {
        const Packet h = head::load_lanes<S>(H.data() + j * U + c, count);
        const Packet dej = ei::pset1<Packet>(de[j]);
        dwa_c = ei::padd(dwa_c, ei::pmul(dej, h));                               // inverts e = h . wa
        const Packet g = ei::pmul(ei::pmul(dej, wa_c), ei::psub(one, ei::pmul(h, h)));  // inverts the tanh
        dq_c = ei::padd(dq_c, g);  // inverts the broadcast of Q_t over the keys
        S* dk = dK.data() + (r.begin + j) * U + c;
        head::store_lanes<S>(dk, ei::padd(head::load_lanes<S>(dk, count), g), count);  // and of K_s over queries
      }
      head::store_lanes<S>(dwa.data() + c, dwa_c, count);
      head::store_lanes<S>(dq + c, dq_c, count);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Multiplicative scores. P = x Wa is precomputed (L, F).
// forward:  e[t, s] = P_t . x_s + ba. Dense bands: one GEMM E = P x^T (computed in `square`, L * L scratch
// values, then copied); windowed: one GEMV per query.
template <class S>
void multiplicative_scores_forward(const ConstMatrixMap<S>& P, const ConstMatrixMap<S>& X, S ba, Index L,
                                   const AttentionBand& band, S* E, S* square) {
  const Index W = band.cols();
  if (band.dense()) {
    MatrixMap<S> e(square, L, L);
    e.noalias() = P * X.transpose();  // (L, L)
    if (ba != S(0)) e.array() += ba;
    dense_block(E, L, W) = e;
    return;
  }
  for (Index t = 0; t < L; ++t) {
    const KeyRange r = band.keys(t, L);
    const Index n = r.size();
    if (n == 0) continue;
    Eigen::Map<Vector<S>> e(E + t * W + (r.begin - band.start(t)), n);
    e.noalias() = X.middleRows(r.begin, n) * P.row(t).transpose();  // (n)
    if (ba != S(0)) e.array() += ba;
  }
}

// backward:  dP_t = sum_s de[t, s] x_s;  dx_s += de[t, s] P_t;  dba += sum de.  dE must be zero outside each
// row's keys (attention_rows_backward guarantees it). dP (L, F) is overwritten; dX (L, F) is added into.
template <class S>
void multiplicative_scores_backward(const ConstMatrixMap<S>& P, const ConstMatrixMap<S>& X, const S* dE, Index L,
                                    const AttentionBand& band, MatrixMap<S>& dP, MatrixMap<S>& dX, S* dba) {
  const Index W = band.cols();
  if (band.dense()) {
    const ConstStridedMap<S> de = dense_block(dE, L, W);
    dP.noalias() = de * X;               // inverts P x^T (through P)
    dX.noalias() += de.transpose() * P;  // inverts P x^T (through x)
    if (dba) *dba += de.sum();
    return;
  }
  for (Index t = 0; t < L; ++t) {
    const KeyRange r = band.keys(t, L);
    const Index n = r.size();
    if (n == 0) {
      dP.row(t).setZero();
      continue;
    }
    const Eigen::Map<const Vector<S>> de(dE + t * W + (r.begin - band.start(t)), n);
    dP.row(t).noalias() = de.transpose() * X.middleRows(r.begin, n);
    dX.middleRows(r.begin, n).noalias() += de * P.row(t);
    if (dba)  // a plain loop: Eigen's sum() starts at the first aligned element, and de's address depends on T
      for (Index j = 0; j < n; ++j) *dba += de(j);  // when the width is above T (rows of T columns)
  }
}

// ---------------------------------------------------------------------------------------------------------
// Attention weights from scores, per query over its keys only (other columns stay exactly 0). Each row is
// copied to the start of aligned scratch vectors and computed there: Eigen peels scalar iterations by address
// (its scalar and SIMD exp/tanh differ in the last bit, and its sums start at the first aligned element), so
// computing in place would make a row's rounding depend on T and on the sample's position in the batch.
template <class S>
struct RowScratch {
  Vector<S> a, b, c;
  void ensure(Index W) {
    ensure_shape(a, W);
    ensure_shape(b, W);
    ensure_shape(c, W);
  }
};

//   forward:  A[t, keys] = softmax(act(e[t, keys]))   (max-subtracted; A must be zeroed by the caller)
template <class S>
void attention_rows_forward(Activation act, const S* E, S* A, Index L, const AttentionBand& band,
                            RowScratch<S>& scratch, const std::uint8_t* keep = nullptr) {
  const Index W = band.cols();
  for (Index t = 0; t < L; ++t) {
    if (keep && !keep[t]) continue;  // masked query: weights 0
    const KeyRange r = band.keys(t, L);
    const Index n = r.size();
    if (n == 0) continue;
    const Index j0 = r.begin - band.start(t);
    if (keep) {  // the kept keys only, compacted (a kept query keeps at least itself)
      const std::uint8_t* k = keep + r.begin;
      Index m = 0;
      for (Index j = 0; j < n; ++j)
        if (k[j]) scratch.a(m++) = E[t * W + j0 + j];
      Eigen::Map<Vector<S>> z(scratch.a.data(), m);
      activation_forward<S>(act, z, z);
      const S mx = z.maxCoeff();
      z = (z.array() - mx).exp().matrix();
      z /= z.sum();
      m = 0;
      for (Index j = 0; j < n; ++j) A[t * W + j0 + j] = k[j] ? z(m++) : S(0);
      continue;
    }
    Eigen::Map<Vector<S>> z(scratch.a.data(), n);
    z = Eigen::Map<const Vector<S>>(E + t * W + j0, n);
    activation_forward<S>(act, z, z);
    const S mx = z.maxCoeff();
    z = (z.array() - mx).exp().matrix();
    z /= z.sum();
    Eigen::Map<Vector<S>>(A + t * W + j0, n) = z;
  }
}

// backward: dA (T, W) in, dE out in place: dz = a * (da - a . da) (softmax), de = dz * act'(e). Columns
// outside each row's keys are set to 0.
template <class S>
void attention_rows_backward(Activation act, const S* E, const S* A, Index L, const AttentionBand& band, S* dA,
                             RowScratch<S>& scratch, const std::uint8_t* keep = nullptr) {
  const Index W = band.cols();
  for (Index t = 0; t < L; ++t) {
    Eigen::Map<Vector<S>> row(dA + t * W, W);
    const KeyRange r = band.keys(t, L);
    const Index n = r.size();
    if (n == 0 || (keep && !keep[t])) {  // no key, or a masked query: no gradient
      row.setZero();
      continue;
    }
    const Index j0 = r.begin - band.start(t);
    if (keep) {  // the kept keys only, compacted as in the forward; masked keys get 0
      const std::uint8_t* k = keep + r.begin;
      Index m = 0;
      for (Index j = 0; j < n; ++j)
        if (k[j]) {
          scratch.a(m) = A[t * W + j0 + j];
          scratch.b(m) = row(j0 + j);
          scratch.c(m++) = E[t * W + j0 + j];
        }
      Eigen::Map<Vector<S>> a(scratch.a.data(), m), d(scratch.b.data(), m), e(scratch.c.data(), m);
      const S dot = a.dot(d);
      d = (a.array() * (d.array() - dot)).matrix();
      if (act != Activation::Linear) {
        activation_forward<S>(act, e, a);
        activation_backward<S>(act, e, a, d, d);
      }
      row.setZero();
      m = 0;
      for (Index j = 0; j < n; ++j)
        if (k[j]) row(j0 + j) = d(m++);
      continue;
    }
    Eigen::Map<Vector<S>> a(scratch.a.data(), n), d(scratch.b.data(), n);
    a = Eigen::Map<const Vector<S>>(A + t * W + j0, n);
    d = row.segment(j0, n);
    const S dot = a.dot(d);
    d = (a.array() * (d.array() - dot)).matrix();  // inverts the softmax
    if (act != Activation::Linear) {               // inverts the activation
      Eigen::Map<Vector<S>> e(scratch.c.data(), n);
      e = Eigen::Map<const Vector<S>>(E + t * W + j0, n);
      activation_forward<S>(act, e, a);  // a = act(e), the softmax input
      activation_backward<S>(act, e, a, d, d);
    }
    row.head(j0).setZero();
    row.segment(j0, n) = d;
    row.tail(W - j0 - n).setZero();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Output:  forward  y_t = sum_s A[t, s] x_s      (dense: one GEMM; windowed: one GEMV per query; Y scratch)
template <class S>
void attention_output_forward(const S* A, const ConstMatrixMap<S>& X, Index L, const AttentionBand& band,
                              MatrixMap<S>& Y) {
  const Index W = band.cols();
  if (band.dense()) {
    Y.noalias() = dense_block(A, L, W) * X;
    return;
  }
  for (Index t = 0; t < L; ++t) {
    const KeyRange r = band.keys(t, L);
    const Index n = r.size();
    if (n == 0) {
      Y.row(t).setZero();
      continue;
    }
    const Eigen::Map<const Vector<S>> a(A + t * W + (r.begin - band.start(t)), n);
    Y.row(t).noalias() = a.transpose() * X.middleRows(r.begin, n);
  }
}

// backward: dA[t, s] = dy_t . x_s (written for each row's keys; dense: the whole (L, L) block, computed in
//           `square`, L * L scratch values); dx_s += A[t, s] dy_t (added into the dX scratch).
template <class S>
void attention_output_backward(const S* A, const ConstMatrixMap<S>& X, const ConstMatrixMap<S>& dY, Index L,
                               const AttentionBand& band, S* dA, MatrixMap<S>& dX, S* square) {
  const Index W = band.cols();
  if (band.dense()) {
    MatrixMap<S> da(square, L, L);
    da.noalias() = dY * X.transpose();
    dense_block(dA, L, W) = da;
    dX.noalias() += dense_block(A, L, W).transpose() * dY;
    return;
  }
  for (Index t = 0; t < L; ++t) {
    const KeyRange r = band.keys(t, L);
    const Index n = r.size();
    if (n == 0) continue;
    const Index j0 = r.begin - band.start(t);
    const Eigen::Map<const Vector<S>> a(A + t * W + j0, n);
    Eigen::Map<Vector<S>> da(dA + t * W + j0, n);
    da.noalias() = X.middleRows(r.begin, n) * dY.row(t).transpose();
    dX.middleRows(r.begin, n).noalias() += a * dY.row(t);
  }
}

}  // namespace seqattn::detail
