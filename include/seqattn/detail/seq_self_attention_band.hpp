#pragma once
// Geometry of SeqSelfAttention: which keys a query may attend to, and the banded storage of the attention
// scores and weights, plus the attention regularizer on that storage.
//
// Key rule (DESIGN.md section 4). For query t of a sequence with `length` valid steps:
//   attention_width w, history_only          keys [t - w + 1, t]
//   attention_width w, not history_only      keys [t - w/2, t - w/2 + w - 1]   (integer division)
//   no width, history_only                   keys [0, t]
//   no width, not history_only               keys [0, length - 1]
// intersected with [0, length). A padded query (t >= length) attends to nothing.
//
// Banded storage: the scores and weights of sample b are a (T, W) row-major block; column j of row t is
// key s = band.start(t) + j. With a width w <= T, W = w and start(t) is the first raw key of the rule above, so
// memory is O(T * w). Without a width, W = T and start(t) = 0: the block is the dense (T, T) matrix. A width
// above T is stored like no width (W = T, start(t) = 0) with its own keys: the keys of a query never span more
// than T steps, so memory is O(T * min(w, T)) for any w (an attention_width of 10^7 on 100 steps once asked
// for B * 100 * 10^7 values).
// Large widths: every width >= T with history_only gives every query the keys [0, t], and every width >= 2T
// without it gives every query all the steps, so make() clamps the width there: the band of any larger width
// is the same object (the same keys, storage and bits), and no arithmetic on the width can overflow.

#include <algorithm>
#include <cstdint>

#include "seqattn/core/config.hpp"
#include "seqattn/core/tensor.hpp"

namespace seqattn::detail {

// Half-open key interval [begin, end).
struct KeyRange {
  Index begin = 0;
  Index end = 0;
  Index size() const { return end > begin ? end - begin : 0; }
  bool empty() const { return end <= begin; }
};

// The keys query t attends to; `width` 0 means no attention_width (global or history-only).
inline KeyRange attention_key_range(Index t, Index length, Index width, bool history_only) {
  if (t < 0 || t >= length) return {0, 0};
  Index lo = 0, hi = 0;  // inclusive, before clipping to [0, length)
  if (width > 0) {
    lo = history_only ? t - width + 1 : t - width / 2;
    hi = history_only ? t : lo + width - 1;
  } else {
    lo = 0;
    hi = history_only ? t : length - 1;
  }
  lo = std::max<Index>(lo, 0);
  hi = std::min<Index>(hi, length - 1);
  return hi < lo ? KeyRange{0, 0} : KeyRange{lo, hi + 1};
}

struct AttentionBand {
  Index width = 0;  // attention_width (clamped by make()), 0 = none
  bool history_only = false;
  Index steps = 0;  // T of the batch

  // The band of attention_width `width` (0 = none) over `steps` steps, the width clamped to the smallest one
  // with the same keys for every query of every length <= steps (see above).
  static AttentionBand make(Index width, bool history_only, Index steps) {
    const Index same_keys = std::max<Index>(1, history_only ? steps : 2 * steps);
    return AttentionBand{width > 0 ? std::min(width, same_keys) : 0, history_only, steps};
  }

  // No width: dense keys (and the GEMM paths of the kernels).
  bool dense() const { return width == 0; }
  // Stored keys per query: W <= T.
  Index cols() const { return width > 0 ? std::min(width, steps) : steps; }
  // Key of band column 0 for query t (may be negative: columns before key 0 are never used).
  Index start(Index t) const {
    if (width == 0 || width > steps) return 0;
    return history_only ? t - width + 1 : t - width / 2;
  }
  KeyRange keys(Index t, Index length) const { return attention_key_range(t, length, width, history_only); }
  // The valid queries t' whose keys can overlap those of query t (for the regularizer's A A^T).
  KeyRange neighbours(Index t, Index length) const {
    if (width == 0) return {0, length};
    return {std::max<Index>(0, t - width + 1), std::min<Index>(length, t + width)};
  }
};

// G[t, u] = sum_s A[t, s] A[u, s] of one sample, from its banded weights A (T, W) (valid rows t, u < length).
template <class S>
S band_gram(const S* A, const AttentionBand& band, Index length, Index t, Index u) {
  const KeyRange rt = band.keys(t, length), ru = band.keys(u, length);
  const Index lo = std::max(rt.begin, ru.begin), hi = std::min(rt.end, ru.end);
  if (hi <= lo) return S(0);
  const Index W = band.cols();
  const S* at = A + t * W + (lo - band.start(t));
  const S* au = A + u * W + (lo - band.start(u));
  S g = S(0);
  for (Index k = 0; k < hi - lo; ++k) g += at[k] * au[k];  // plain loop: the order never depends on addresses
  return g;
}

// D = G - I over the kept rows (step masks: keep, null for lengths): the identity only on kept steps, so the
// masked rows and columns of D (all-zero rows of A) are 0 and the penalty sums over kept rows and columns only.
template <class M>
void subtract_identity(M& g, const std::uint8_t* keep) {
  if (!keep) {
    g.diagonal().array() -= typename M::Scalar(1);
    return;
  }
  for (Index t = 0; t < g.rows(); ++t)
    if (keep[t]) g(t, t) -= typename M::Scalar(1);
}

// Attention regularizer of one sample: sum over valid t, u of (G[t, u] - [t == u])^2, G = A A^T.
// A: (T, W) banded weights. Dense bands use one GEMM into G (scratch of at least length^2 values, used as a
// contiguous (length, length) matrix so the result never depends on T); windowed bands O(T w^2).
// keep (step masks): the sample's `length` keep flags (null: lengths); only kept rows and columns count.
template <class S>
S attention_regularizer_forward(const S* A, const AttentionBand& band, Index length, S* G,
                                const std::uint8_t* keep = nullptr) {
  if (length == 0) return S(0);
  const Index W = band.cols();
  if (band.dense()) {
    const Eigen::Map<const Matrix<S>, 0, Eigen::OuterStride<>> a(A, length, length, Eigen::OuterStride<>(W));
    Eigen::Map<Matrix<S>> g(G, length, length);
    g.noalias() = a * a.transpose();
    subtract_identity(g, keep);
    return g.squaredNorm();
  }
  S total = S(0);
  for (Index t = 0; t < length; ++t) {
    if (keep && !keep[t]) continue;  // a masked row of A is 0: D[t, u] = 0
    const KeyRange nb = band.neighbours(t, length);
    for (Index u = nb.begin; u < nb.end; ++u) {
      if (keep && !keep[u]) continue;
      const S d = band_gram(A, band, length, t, u) - (t == u ? S(1) : S(0));
      total += d * d;
    }
  }
  return total;
}

// Gradient of scale * attention_regularizer_forward with respect to A, added into dA (T, W) banded:
//   dA[t, s] += 4 * scale * sum_u D[t, u] A[u, s],   D = A A^T - I (symmetric).
// G, square: scratch of at least length^2 values each (dense bands only).
// keep (step masks): the sample's `length` keep flags, null for lengths masks; masked rows of A must be 0.
template <class S>
void attention_regularizer_backward(const S* A, const AttentionBand& band, Index length, S scale, S* G, S* square,
                                    S* dA, const std::uint8_t* keep = nullptr) {
  if (length == 0) return;
  const Index W = band.cols();
  if (band.dense()) {
    const Eigen::Map<const Matrix<S>, 0, Eigen::OuterStride<>> a(A, length, length, Eigen::OuterStride<>(W));
    Eigen::Map<Matrix<S>, 0, Eigen::OuterStride<>> da(dA, length, length, Eigen::OuterStride<>(W));
    Eigen::Map<Matrix<S>> g(G, length, length), grad(square, length, length);
    g.noalias() = a * a.transpose();
    subtract_identity(g, keep);
    grad.noalias() = (S(4) * scale) * g * a;
    da += grad;
    return;
  }
  for (Index t = 0; t < length; ++t) {
    if (keep && !keep[t]) continue;
    const KeyRange rt = band.keys(t, length);
    const KeyRange nb = band.neighbours(t, length);
    for (Index u = nb.begin; u < nb.end; ++u) {
      if (keep && !keep[u]) continue;
      const S d = band_gram(A, band, length, t, u) - (t == u ? S(1) : S(0));
      const KeyRange ru = band.keys(u, length);
      const Index lo = std::max(rt.begin, ru.begin), hi = std::min(rt.end, ru.end);
      if (hi <= lo || d == S(0)) continue;
      S* dat = dA + t * W + (lo - band.start(t));
      const S* au = A + u * W + (lo - band.start(u));
      const S c = S(4) * scale * d;
      for (Index k = 0; k < hi - lo; ++k) dat[k] += c * au[k];  // plain loop: the bits never depend on addresses
    }
  }
}

}  // namespace seqattn::detail
