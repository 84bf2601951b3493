#pragma once
// Kernels of MultiHeadAttention for one (sample, head): scaled dot-product attention over strided head
// blocks of the projected (B*T, H*dh) matrices, forward and backward side by side. The layer
// (layers/multi_head_attention.hpp) does the projections and calls these per (b, h).
//
// Shapes of one (sample b, head h), with Tq query steps, Tk key steps, lq valid queries, lk valid keys:
//   Q (Tq, dh), K (Tk, dh), V (Tk, dh)   column block h of the projections (row stride H*dh)
//   P (Tq, Tk)                           attention probabilities of the head (row stride Tk), kept unless
//                                        need_weights=false (then null: see "Probabilities not kept")
//   Pd (Tq, Tk)                          P after attention dropout (kept only with dropout, and P kept)
//   ctx (Tq, dh)                         column block h of the concatenated heads (row stride H*dh)
//   panels                               the calling thread's layouts of K, V, K^T, V^T and block buffers
//                                        (detail/head_products.hpp); grow to the largest head, then reused
// Query t < lq may attend keys s < allowed_keys(t): lk, or min(t + 1, lk) when causal. The (lq, lk) scores
// are processed in blocks of query rows (block_rows(): about 128K scores, so a block stays in L2 cache; at
// most 64 rows when causal, whose keys stop at the block's last row, so causal attention costs about half).
// Per block the forward runs scores -> softmax -> context while the block of P is in cache, and the backward
// reads P once. The products are detail/head_products.hpp's register-tiled loops (no GEMM packing per block).
// Everything depends only on (lq, lk) and the values, never on Tq, Tk or addresses, which keeps valid outputs bitwise
// independent of padding. Rows t >= lq of P and ctx are zero.
//
// Probabilities not kept (MultiHeadAttention's need_weights=false, dense and causal kernels): each block of P
// (and Pd) lives only in the thread's panels, (rows, kmax) with rows * kmax <= about kBlockScores (at least
// kRowQuantum rows), so the per-head memory is O(T dh) plus one block instead of O(Tq Tk). The backward computes
// each block's P again with the same kernels on the same values (block_probabilities), replaying the forward's
// dropout draws from a copy of its random state: P and Pd are the forward's bit for bit, so outputs and gradients
// are bitwise those of the kept mode, at the price of the score product and softmax done twice (one product more
// than the kept mode's six, and a second pass of exponentials; the kept mode instead writes and reads B H Tq Tk
// probabilities through memory). Unlike flash attention's online softmax over blocks of keys, each block holds
// all the keys of its rows: the softmax is computed once per row, exactly as in the kept mode.
//
// Sliding window (MultiHeadAttention's attention_window w, always causal): query t < lq attends keys
// [t - w + 1, t] intersected with [0, lk) (window_keys()). P and Pd are then stored banded, (Tq, W) with
// W = min(w, Tk): column j of row t is key Window::start(t) + j (t - w + 1 + j when w < Tk, else j), so memory
// is O(Tq min(w, Tk)) per head. The windowed kernels walk strips of window_block_rows(w) query rows; a strip
// [r0, r0 + rows) reads the rectangle of keys [r0 - w + 1, r0 + rows - 1] (its rows' windows together): the
// scores, softmax and products of that rectangle (w + rows - 1 keys, the keys outside a row's window exactly 0)
// go through the same tiled products as the dense blocks, so time is O(Tq (w + rows) dh), never O(Tq Tk).
// Every output element is still one chain over its keys (or query rows) in increasing order, and the zero
// terms outside a row's window leave a chain's bits unchanged: windowed results do not depend on the strips,
// on Tq, Tk or on addresses either (a window w >= T gives bitwise the results of causal attention). A query
// whose window holds no valid key (cross-attention, t >= lk + w - 1) is dead like a row without keys: its P
// row, ctx row and gradients are 0; the live rows of a head are the prefix window_live_rows().

#include <algorithm>
#include <cstdint>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "seqattn/core/mask.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/core/threads.hpp"
#include "seqattn/detail/head_products.hpp"
#include "seqattn/detail/masked_softmax.hpp"
#include "seqattn/detail/panel_product.hpp"
#include "seqattn/detail/seq_self_attention_band.hpp"
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

// ---------------------------------------------------------------------------------------------------------
// Sliding window. w >= 1 is attention_window (kernels clamp it to lq, which gives every query the same keys).

// Keys [begin, end) of query t: [t - w + 1, t] within [0, lk); none for a query that is not valid.
inline KeyRange window_keys(Index t, Index lq, Index lk, Index w) {
  if (t >= lq) return {0, 0};
  const KeyRange k{std::max<Index>(0, t - w + 1), std::min(t + 1, lk)};
  return k.empty() ? KeyRange{0, 0} : k;
}

// Queries [0, live) have at least one key in their window: all valid ones, except in cross-attention those
// past the last key's window (t >= lk + w - 1). No overflow for any w (w >= lq: every valid query sees key 0).
inline Index window_live_rows(Index lq, Index lk, Index w) {
  if (lk <= 0 || lq <= 0) return 0;
  return w >= lq ? lq : std::min(lq, lk + w - 1);
}

// Banded storage of P (Tq, cols()): column j of row t is key start(t) + j. width: attention_window (0: none,
// the dense (Tq, Tk) layout), keys: Tk.
struct Window {
  Index width = 0;
  Index keys = 0;
  Index cols() const { return width > 0 ? std::min(width, keys) : keys; }
  Index start(Index t) const { return width > 0 && width < keys ? t - width + 1 : 0; }
};

// Query rows per strip of the windowed kernels, a function of w only: about w / 4 (a strip reads w + rows - 1
// keys: a quarter more than its windows), a multiple of the 6-row tiles, in [12, 48]. At w = 128 (T = 8192,
// dh = 16, AVX2) strips of 12, 24, 36 and 48 rows ran forward + backward within 4% of each other.
inline Index window_block_rows(Index w) { return std::min<Index>(48, std::max<Index>(12, w / 4 / 12 * 12)); }

// The widest rectangle of keys of a strip: rows - 1 + w keys, at most lk.
inline Index window_strip_keys(Index w, Index lk) { return std::min(window_block_rows(w) - 1 + w, lk); }

// Step masks (core/mask.hpp: holes, left padding) of one sample: the keep flags of its Tq queries and Tk keys;
// null (the default) for lengths masks. The forward kernels then take the softmax of a query over the kept keys of
// its range only (masked_softmax_row_kept) and give a masked query an all-zero row. The caller zeroes the rows of
// Q, K and V at masked steps first, so that the products over the ranges never read a masked value (their
// weights are exactly 0, and 0 times a finite value adds nothing); the backward kernels then need no flags: the
// probabilities of masked keys and masked queries are exactly 0, and so are their score gradients.
struct StepKeep {
  const std::uint8_t* queries = nullptr;  // (Tq)
  const std::uint8_t* keys = nullptr;     // (Tk)
};

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

// Sizes the first `threads` panels for the largest head of the batch, before a parallel (b, h) loop: the dynamic
// schedule may hand any pair to any thread, so a buffer grown inside the loop would allocate in a steady
// training loop whenever a thread first meets a larger head. mq, mkv: query and key masks; (Tq, Tk, dh) sizes;
// `backward`: also the score-gradient buffer.
// `window`: attention_window (0: none), whose kernels also need the scores in the forward and the rectangles
// of Pd in the backward. `kept`: false when the probabilities are not kept (need_weights=false), which needs the
// blocks of P (and Pd with `dropout`) in the panels, and K^T in the backward.
template <class S>
void reserve_panels(std::vector<head::HeadPanels<S>>& panels, int threads, const Mask& mq, const Mask& mkv, Index B,
                    Index Tq, Index Tk, Index dh, bool causal, bool backward, Index window = 0, bool kept = true,
                    bool dropout = false) {
  if (panels.size() < static_cast<size_t>(threads)) panels.resize(static_cast<size_t>(threads));
  Index block = 0, scores = 0;  // the most rows of a block, the most scores of a block
  for (Index b = 0; b < B; ++b) {
    const Index lq = mq.length(b, Tq), lk = mkv.length(b, Tk);
    if (lq == 0 || lk == 0) continue;
    if (window > 0) {
      const Index w = std::min(window, lq), rows = window_block_rows(w);
      block = std::max(block, rows);
      scores = std::max(scores, rows * head::strip_stride<S>(window_strip_keys(w, lk)));
      continue;
    }
    const Index rows = block_rows(lq, lk, causal);
    block = std::max(block, rows);
    scores = std::max(scores, rows * head::strip_stride<S>(lk));
  }
  const Index dhp = head::padded<S>(dh);
  const bool padded_rows = dh % head::kPacket<S> != 0;  // block panels and dK, dV sums are copies
  for (int i = 0; i < threads; ++i) {                   // a panel no thread of this call uses is left as it is
    head::HeadPanels<S>& p = panels[static_cast<size_t>(i)];
    // windowed: a strip's scores read up to a packet past its last key (see windowed_attention_forward)
    head::reserve(p.transposed, dh * head::strip_stride<S>(Tk) + (window > 0 ? head::kPacket<S> : 0));
    head::reserve(p.rows, Tk * dhp);  // K or V: always a copy
    if (backward || window > 0) head::reserve(p.scores, scores);
    if (backward && window > 0) head::reserve(p.rect, scores);
    if (!kept) {
      head::reserve(p.probs, scores);
      if (dropout) head::reserve(p.probs_dropped, scores);
      if (backward) head::reserve(p.keys_transposed, dh * head::strip_stride<S>(Tk));
    }
    if (padded_rows) {
      head::reserve(p.block, block * dhp);
      head::reserve(p.acc_k, Tk * dhp);
      head::reserve(p.acc_v, Tk * dhp);
    }
  }
}

// Rows [r0, r0 + n) of the projection of the forward: X (R, f; row stride ldx) -> z = X W + b (R, n) -> out =
// act(z); without an activation z is `out` itself (z untouched). z and out are already (R, W.cols()). Each row
// depends only on its own values (detail/panel_product.hpp), so a chunk's rows do not depend on the chunking
// and valid rows not on padding.
template <class S>
void projection_forward_rows(const S* X, Index ldx, const WeightPanel<S>& W, const Vector<S>& b, bool use_bias,
                             Activation act, Matrix<S>& z, Matrix<S>& out, Index r0, Index n) {
  auto target = (act == Activation::Linear ? out : z).middleRows(r0, n);
  panel_product<S>(X + r0 * ldx, ldx, n, W, target.data(), target.outerStride(), false);
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
// The probabilities of one block of query rows [r0, r0 + rows) over keys [0, kmax): P (rows, total; row stride
// ldp) = softmax of each row of scale * Q K^T over its allowed keys (step masks: its kept ones; none for a
// masked query), 0 up to `total` columns; with dropout, Pd (rows, total; row stride ldd) = P * keep / (1 - rate),
// drawn in row and key order (n draws for a row of n allowed keys). Kt: K^T (dh, ldt). The forward calls it
// once per block; without stored probabilities (need_weights=false) the backward calls it again on the same
// values with a copy of the forward's random state, which gives P and Pd bit for bit (every score is the same
// chain, every softmax the same address-independent kernels).
template <class S>
void block_probabilities(const ConstHeadMap<S>& Q, const S* Kt, Index ldt, Index r0, Index rows, Index kmax, Index lq,
                         Index lk, bool causal, S scale, const StepKeep& steps, S* Pb, Index ldp, Index total,
                         const AttentionDropout<S>& dropout, S* Pdb, Index ldd) {
  head::scores<S>(&Q.coeff(r0, 0), Q.outerStride(), Kt, ldt, Q.cols(), Pb, ldp, rows, kmax, scale);
  if (!steps.keys) {
    for (Index i = 0; i < rows; ++i) masked_softmax_row(Pb + i * ldp, allowed_keys(r0 + i, lq, lk, causal), total);
  } else {  // step masks: only the kept keys of the range, none for a masked query
    for (Index i = 0; i < rows; ++i) {
      const Index t = r0 + i;
      masked_softmax_row_kept(Pb + i * ldp, steps.keys, steps.queries[t] ? allowed_keys(t, lq, lk, causal) : 0, total);
    }
  }
  if (!dropout.rng) return;
  const S keep_scale = S(1.0 / (1.0 - dropout.rate));  // inverted dropout: Pd = P * keep / (1 - rate)
  for (Index i = 0; i < rows; ++i) {
    const Index n = allowed_keys(r0 + i, lq, lk, causal);
    const S* p = Pb + i * ldp;
    S* pd = Pdb + i * ldd;
    for (Index s = 0; s < n; ++s) pd[s] = dropout.rng->uniform() >= dropout.rate ? p[s] * keep_scale : S(0);
    std::fill(pd + n, pd + total, S(0));
  }
}

// forward: P = softmax_allowed(scale * Q K^T), Pd = dropout(P), ctx = Pd V. ctx (Tq, dh): every element written.
// P (Tq, Tk; row stride Tk), and with dropout Pd (dropout.dropped, likewise): kept when P is not null (every
// element written; each block of P is written in place and reused from cache by the context product); when P is
// null (need_weights=false) each block goes through panels.probs (and panels.probs_dropped) only, and memory is
// O(block) instead of O(Tq Tk). K^T and V are laid out once in `panels` (the calling thread's).
template <class S>
void attention_forward(const ConstHeadMap<S>& Q, const ConstHeadMap<S>& K, const ConstHeadMap<S>& V, S* P,
                       HeadMap<S>& ctx, Index lq, Index lk, bool causal, S scale, const AttentionDropout<S>& dropout,
                       head::HeadPanels<S>& panels, const StepKeep& steps = StepKeep()) {
  const Index Tq = Q.rows(), Tk = K.rows(), dh = Q.cols();
  const bool kept = P != nullptr;
  if (lq == 0 || lk == 0) {
    if (kept) std::fill(P, P + Tq * Tk, S(0));
    ctx.setZero();
    if (kept && dropout.rng) std::fill(dropout.dropped, dropout.dropped + Tq * Tk, S(0));
    return;
  }
  head::pack_transposed<S>(K, lk, panels.transposed, panels.ldt);  // K^T (dh, ldt)
  const head::Panel<S> Vp = head::rows_panel<S>(V, lk, panels.rows, false);
  for_each_block(lq, lk, causal, [&](Index r0, Index rows, Index kmax) {
    S *Pb, *Pdb = nullptr;
    Index ldp, total;
    if (kept) {
      Pb = P + r0 * Tk;
      if (dropout.rng) Pdb = dropout.dropped + r0 * Tk;
      ldp = total = Tk;
    } else {
      ldp = head::strip_stride<S>(kmax);
      total = kmax;
      head::reserve(panels.probs, rows * ldp);
      Pb = panels.probs.data();
      if (dropout.rng) {
        head::reserve(panels.probs_dropped, rows * ldp);
        Pdb = panels.probs_dropped.data();
      }
    }
    block_probabilities<S>(Q, panels.transposed.data(), panels.ldt, r0, rows, kmax, lq, lk, causal, scale, steps, Pb,
                           ldp, total, dropout, Pdb, ldp);
    // ctx = Pd V
    head::rows_times_panel<S>(dropout.rng ? Pdb : Pb, ldp, Vp, &ctx.coeffRef(r0, 0), ctx.outerStride(), dh, rows, kmax);
  });
  if (kept) {
    std::fill(P + lq * Tk, P + Tq * Tk, S(0));  // padded queries
    if (dropout.rng) std::fill(dropout.dropped + lq * Tk, dropout.dropped + Tq * Tk, S(0));
  }
  if (lq < Tq) ctx.bottomRows(Tq - lq).setZero();
}

// What the backward needs to compute the probabilities again when the forward did not keep them: the step masks
// and the attention dropout of the forward, with its random state as it was when the forward drew this head.
template <class S>
struct Recompute {
  StepKeep steps;
  AttentionDropout<S> dropout;  // rng: a copy of the forward's state (advanced as the draws are made again)
};

// backward (inverts the forward block by block). dctx (Tq, dh) in; dQ (Tq, dh), dK, dV (Tk, dh) OVERWRITTEN.
// P, Pd (Tq, Tk; row stride Tk): the forward's kept probabilities (Pd is P without dropout), or both null when
// it kept none: then each block's P and Pd are computed again from Q, K and `again` (block_probabilities),
// which costs the forward's score product and softmax once more. keep_scale = 1 / (1 - rate) with dropout,
// else 0. `panels`: the calling thread's.
template <class S>
void attention_backward(const ConstHeadMap<S>& Q, const ConstHeadMap<S>& K, const ConstHeadMap<S>& V, const S* P,
                        const S* Pd, const ConstHeadMap<S>& dctx, HeadMap<S>& dQ, HeadMap<S>& dK, HeadMap<S>& dV,
                        Index lq, Index lk, bool causal, S scale, S keep_scale, head::HeadPanels<S>& panels,
                        const Recompute<S>& again = Recompute<S>()) {
  const Index Tq = Q.rows(), Tk = K.rows(), dh = Q.cols();
  const bool kept = P != nullptr;
  if (lq == 0 || lk == 0) {
    dQ.setZero();
    dK.setZero();
    dV.setZero();
    return;
  }
  // Rows t < lq of dQ are written by the blocks, rows s < lk of dK and dV summed from zero from their first
  // block on (`fresh`); the rest are zero. (A setZero of the whole heads cost 3% of a training step of the
  // example classifier at dh = 16: Eigen called memset for every 64-byte row.)
  if (lq < Tq) dQ.bottomRows(Tq - lq).setZero();
  if (lk < Tk) {
    dK.bottomRows(Tk - lk).setZero();
    dV.bottomRows(Tk - lk).setZero();
  }
  head::pack_transposed<S>(V, lk, panels.transposed, panels.ldt);                  // V^T (dh, ldt)
  if (!kept) head::pack_transposed<S>(K, lk, panels.keys_transposed, panels.ldk);  // K^T (dh, ldk)
  const head::Panel<S> Kp = head::rows_panel<S>(K, lk, panels.rows, false);
  // dK and dV are summed over the blocks in place, or in padded buffers when dh is not a multiple of the packet
  const bool in_place = dh % head::kPacket<S> == 0;
  const Index width = head::padded<S>(dh);
  S* acc_k = &dK.coeffRef(0, 0);
  S* acc_v = &dV.coeffRef(0, 0);
  Index ldacc = dK.outerStride();
  if (!in_place) {
    head::reserve(panels.acc_k, lk * width);
    head::reserve(panels.acc_v, lk * width);
    acc_k = panels.acc_k.data();
    acc_v = panels.acc_v.data();
    ldacc = width;
  }
  Index fresh = 0;  // keys [0, fresh) of dK and dV hold the sums of the blocks before
  for_each_block(lq, lk, causal, [&](Index r0, Index rows, Index kmax) {
    const Index lds = head::strip_stride<S>(kmax);
    head::reserve(panels.scores, rows * lds);
    S* dS = panels.scores.data();  // (rows, kmax), row stride lds
    // the block's P and Pd (row stride ldp): the kept ones, or computed again as the forward did
    const S *Pb, *Pdb;
    Index ldp;
    if (kept) {
      Pb = P + r0 * Tk;
      Pdb = Pd + r0 * Tk;
      ldp = Tk;
    } else {
      ldp = lds;
      head::reserve(panels.probs, rows * ldp);
      S* probs = panels.probs.data();
      S* dropped = nullptr;
      if (again.dropout.rng) {
        head::reserve(panels.probs_dropped, rows * ldp);
        dropped = panels.probs_dropped.data();
      }
      block_probabilities<S>(Q, panels.keys_transposed.data(), panels.ldk, r0, rows, kmax, lq, lk, causal, scale,
                             again.steps, probs, ldp, kmax, again.dropout, dropped, ldp);
      Pb = probs;
      Pdb = dropped ? dropped : probs;
    }
    // inverts ctx = Pd V:  dPd = dctx V^T (here),  dV += Pd^T dctx (after the rows below have brought the
    // block of P, written long ago by the forward, into cache in order: read first by columns it stalls)
    head::scores<S>(&dctx.coeff(r0, 0), dctx.outerStride(), panels.transposed.data(), panels.ldt, dh, dS, lds, rows,
                    kmax, S(1));
    for (Index i = 0; i < rows; ++i) {
      const Index t = r0 + i, n = allowed_keys(t, lq, lk, causal);
      S* d = dS + i * lds;
      // inverts Pd = P * keep / (1 - rate): dP = dPd * keep / (1 - rate); keep is Pd != 0 where P != 0,
      // and where P == 0 the softmax gradient below is 0 whatever dP is.
      if (keep_scale != S(0)) {
        const S* pd = Pdb + i * ldp;
        for (Index s = 0; s < n; ++s) d[s] = pd[s] != S(0) ? d[s] * keep_scale : S(0);
      }
      // inverts P = softmax(scale * Q K^T): dS = scale * P * (dP - P . dP), 0 beyond the allowed keys
      masked_softmax_row_backward(Pb + i * ldp, d, n, kmax, scale);
    }
    const head::Panel<S> dctx_b = head::rows_panel<S>(dctx.middleRows(r0, rows), rows, panels.block);
    head::add_transposed_times_panel<S>(Pdb, ldp, dctx_b, dh, acc_v, ldacc, rows, kmax, fresh);
    // inverts the scores: dQ = dS K,  dK += dS^T Q
    head::rows_times_panel<S>(dS, lds, Kp, &dQ.coeffRef(r0, 0), dQ.outerStride(), dh, rows, kmax);
    const head::Panel<S> Q_b = head::rows_panel<S>(Q.middleRows(r0, rows), rows, panels.block);
    head::add_transposed_times_panel<S>(dS, lds, Q_b, dh, acc_k, ldacc, rows, kmax, fresh);
    fresh = kmax;
  });
  for (Index s = fresh; s < lk; ++s) {  // keys no allowed query reaches (causal, lq < lk)
    std::fill(acc_k + s * ldacc, acc_k + s * ldacc + dh, S(0));
    std::fill(acc_v + s * ldacc, acc_v + s * ldacc + dh, S(0));
  }
  if (!in_place)
    for (Index s = 0; s < lk; ++s)
      for (Index d = 0; d < dh; ++d) {
        dK(s, d) = panels.acc_k[s * width + d];
        dV(s, d) = panels.acc_v[s * width + d];
      }
}

// ---------------------------------------------------------------------------------------------------------
// Windowed forward: P = softmax over each query's window of scale * Q K^T (stored banded), Pd = dropout(P)
// (banded), ctx = Pd V. P, Pd (Tq, W = win.cols()) and ctx (Tq, dh): every element written. Per strip of query
// rows, the scores of its rectangle of keys go to panels.scores, become the rows' probabilities there (0 outside
// each window; Pd with dropout), are copied into the band and multiplied by the rectangle's rows of V.
template <class S>
void windowed_attention_forward(const ConstHeadMap<S>& Q, const ConstHeadMap<S>& K, const ConstHeadMap<S>& V,
                                HeadMap<S>& P, HeadMap<S>& ctx, Index lq, Index lk, const Window& win, S scale,
                                const AttentionDropout<S>& dropout, head::HeadPanels<S>& panels,
                                const StepKeep& steps = StepKeep()) {
  const Index Tq = P.rows(), W = P.cols(), dh = Q.cols();
  const Index w = std::min(win.width, std::max<Index>(lq, 1));
  const Index live = window_live_rows(lq, lk, w);
  if (live == 0) {
    P.setZero();
    ctx.setZero();
    if (dropout.rng) std::fill(dropout.dropped, dropout.dropped + Tq * W, S(0));
    return;
  }
  // K^T (dh, ldt). A strip's scores start at its first key lo and read whole packets, up to P - 1 columns
  // past key lk - 1: the zero padding of the row, or the next row's keys (discarded), or the slack after the
  // last row reserved here.
  const Index ldt = head::strip_stride<S>(lk);
  head::reserve(panels.transposed, dh * ldt + head::kPacket<S>);
  head::pack_transposed<S>(K, lk, panels.transposed, panels.ldt);
  const head::Panel<S> Vp = head::rows_panel<S>(V, lk, panels.rows, false);
  const Index R = window_block_rows(w), lds = head::strip_stride<S>(window_strip_keys(w, lk));
  head::reserve(panels.scores, R * lds);
  S* E = panels.scores.data();  // (rows, n) scores, then weights, of a strip; row stride lds
  const S keep_scale = dropout.rng ? S(1.0 / (1.0 - dropout.rate)) : S(0);
  for (Index r0 = 0; r0 < live; r0 += R) {
    const Index rows = std::min(R, live - r0);
    const Index lo = std::max<Index>(0, r0 - w + 1), hi = std::min(r0 + rows, lk), n = hi - lo;
    // scores of the strip's rectangle: queries [r0, r0 + rows) x keys [lo, hi)
    head::scores<S>(&Q.coeff(r0, 0), Q.outerStride(), panels.transposed.data() + lo, panels.ldt, dh, E, lds, rows, n,
                    scale);
    for (Index i = 0; i < rows; ++i) {
      const Index t = r0 + i;
      const KeyRange keys = window_keys(t, lq, lk, w);  // not empty: t < live
      const Index a = keys.begin - lo, m = keys.size(), off = keys.begin - win.start(t);
      S* e = E + i * lds;
      // softmax over the window (step masks: its kept keys, none for a masked query); the rectangle's other keys 0
      if (!steps.keys)
        masked_softmax_row(e + a, m, m);
      else
        masked_softmax_row_kept(e + a, steps.keys + keys.begin, steps.queries[t] ? m : 0, m);
      std::fill(e, e + a, S(0));
      std::fill(e + a + m, e + n, S(0));
      // the band row: key keys.begin + s at column off + s
      S* p = &P.coeffRef(t, 0);
      std::fill(p, p + off, S(0));
      std::copy(e + a, e + a + m, p + off);
      std::fill(p + off + m, p + W, S(0));
      if (dropout.rng) {  // inverted dropout: Pd = P * keep / (1 - rate), drawn in key order; the rectangle holds Pd
        S* pd = dropout.dropped + t * W;
        std::fill(pd, pd + W, S(0));
        for (Index s = 0; s < m; ++s) {
          pd[off + s] = dropout.rng->uniform() >= dropout.rate ? e[a + s] * keep_scale : S(0);
          e[a + s] = pd[off + s];
        }
      }
    }
    // ctx = Pd V over the rectangle
    head::rows_times_panel<S>(E, lds, head::Panel<S>{Vp.data + lo * Vp.stride, Vp.stride}, &ctx.coeffRef(r0, 0),
                              ctx.outerStride(), dh, rows, n);
  }
  for (Index t = live; t < Tq; ++t) {  // padded or dead queries
    std::fill(&P.coeffRef(t, 0), &P.coeffRef(t, 0) + W, S(0));
    if (dropout.rng) std::fill(dropout.dropped + t * W, dropout.dropped + (t + 1) * W, S(0));
  }
  if (live < Tq) ctx.bottomRows(Tq - live).setZero();
}

// Windowed backward (inverts windowed_attention_forward strip by strip). P, Pd (Tq, W) banded (Pd is P without
// dropout; keep_scale = 1 / (1 - rate) with dropout, else 0); dctx (Tq, dh) in; dQ (Tq, dh), dK, dV (Tk, dh)
// OVERWRITTEN. The dP, dS and Pd of a strip are rectangles of its keys (0 outside each row's window), so dK and
// dV sum over query rows in increasing order exactly as attention_backward does.
template <class S>
void windowed_attention_backward(const ConstHeadMap<S>& Q, const ConstHeadMap<S>& K, const ConstHeadMap<S>& V,
                                 const ConstHeadMap<S>& P, const ConstHeadMap<S>& Pd, const ConstHeadMap<S>& dctx,
                                 HeadMap<S>& dQ, HeadMap<S>& dK, HeadMap<S>& dV, Index lq, Index lk, const Window& win,
                                 S scale, S keep_scale, head::HeadPanels<S>& panels) {
  const Index Tq = dQ.rows(), Tk = dK.rows(), dh = Q.cols();
  const Index w = std::min(win.width, std::max<Index>(lq, 1));
  const Index live = window_live_rows(lq, lk, w);
  if (live == 0) {
    dQ.setZero();
    dK.setZero();
    dV.setZero();
    return;
  }
  // rows t < live of dQ are written by the strips, rows s < lk of dK and dV summed from their first strip on
  if (live < Tq) dQ.bottomRows(Tq - live).setZero();
  if (lk < Tk) {
    dK.bottomRows(Tk - lk).setZero();
    dV.bottomRows(Tk - lk).setZero();
  }
  const Index ldt = head::strip_stride<S>(lk);
  head::reserve(panels.transposed, dh * ldt + head::kPacket<S>);   // as in the forward
  head::pack_transposed<S>(V, lk, panels.transposed, panels.ldt);  // V^T (dh, ldt)
  const head::Panel<S> Kp = head::rows_panel<S>(K, lk, panels.rows, false);
  const bool in_place = dh % head::kPacket<S> == 0;
  const Index width = head::padded<S>(dh);
  S* acc_k = &dK.coeffRef(0, 0);
  S* acc_v = &dV.coeffRef(0, 0);
  Index ldacc = dK.outerStride();
  if (!in_place) {
    head::reserve(panels.acc_k, lk * width);
    head::reserve(panels.acc_v, lk * width);
    acc_k = panels.acc_k.data();
    acc_v = panels.acc_v.data();
    ldacc = width;
  }
  const Index R = window_block_rows(w), lds = head::strip_stride<S>(window_strip_keys(w, lk));
  head::reserve(panels.scores, R * lds);
  head::reserve(panels.rect, R * lds);
  S* dS = panels.scores.data();  // (rows, n): dPd, then dS, of a strip
  S* Pr = panels.rect.data();    // (rows, n): Pd of a strip as a rectangle
  Index fresh = 0;               // keys [0, fresh) of dK and dV hold the sums of the strips before
  for (Index r0 = 0; r0 < live; r0 += R) {
    const Index rows = std::min(R, live - r0);
    const Index lo = std::max<Index>(0, r0 - w + 1), hi = std::min(r0 + rows, lk), n = hi - lo;
    // inverts ctx = Pd V:  dPd = dctx V^T (here),  dV += Pd^T dctx (below)
    head::scores<S>(&dctx.coeff(r0, 0), dctx.outerStride(), panels.transposed.data() + lo, panels.ldt, dh, dS, lds,
                    rows, n, S(1));
    for (Index i = 0; i < rows; ++i) {
      const Index t = r0 + i;
      const KeyRange keys = window_keys(t, lq, lk, w);
      const Index a = keys.begin - lo, m = keys.size(), off = keys.begin - win.start(t);
      S* d = dS + i * lds;
      const S* pd = &Pd.coeff(t, off);
      // inverts Pd = P * keep / (1 - rate) (see attention_backward)
      if (keep_scale != S(0))
        for (Index s = 0; s < m; ++s) d[a + s] = pd[s] != S(0) ? d[a + s] * keep_scale : S(0);
      // inverts P = softmax(scale * Q K^T) over the window: dS = scale * P * (dP - P . dP), 0 outside it
      masked_softmax_row_backward(&P.coeff(t, off), d + a, m, m, scale);
      std::fill(d, d + a, S(0));
      std::fill(d + a + m, d + n, S(0));
      S* pr = Pr + i * lds;
      std::fill(pr, pr + a, S(0));
      std::copy(pd, pd + m, pr + a);
      std::fill(pr + a + m, pr + n, S(0));
    }
    const Index started = std::max<Index>(0, fresh - lo);  // keys of the rectangle whose sums have begun
    const head::Panel<S> dctx_b = head::rows_panel<S>(dctx.middleRows(r0, rows), rows, panels.block);
    head::add_transposed_times_panel<S>(Pr, lds, dctx_b, dh, acc_v + lo * ldacc, ldacc, rows, n, started);
    // inverts the scores: dQ = dS K,  dK += dS^T Q
    head::rows_times_panel<S>(dS, lds, head::Panel<S>{Kp.data + lo * Kp.stride, Kp.stride}, &dQ.coeffRef(r0, 0),
                              dQ.outerStride(), dh, rows, n);
    const head::Panel<S> Q_b = head::rows_panel<S>(Q.middleRows(r0, rows), rows, panels.block);
    head::add_transposed_times_panel<S>(dS, lds, Q_b, dh, acc_k + lo * ldacc, ldacc, rows, n, started);
    fresh = hi;
  }
  for (Index s = fresh; s < lk; ++s) {  // keys no live query reaches (lq < lk)
    std::fill(acc_k + s * ldacc, acc_k + s * ldacc + dh, S(0));
    std::fill(acc_v + s * ldacc, acc_v + s * ldacc + dh, S(0));
  }
  if (!in_place)
    for (Index s = 0; s < lk; ++s)
      for (Index d = 0; d < dh; ++d) {
        dK(s, d) = panels.acc_k[s * width + d];
        dV(s, d) = panels.acc_v[s * width + d];
      }
}

}  // namespace seqattn::detail::mha
