#pragma once
// The five matrix products of one attention head, as register-tiled SIMD loops over operands that are already
// in cache, without Eigen's GEMM. Heads are narrow (dh = 16 or 32 columns): through Eigen's GEMM each of these
// products packs both operands again and zero-fills its output, which took a third of MultiHeadAttention's
// time at (B, T, D, H) = (32, 64, 64, 4). Here the head's K, V and their transposes are laid out once per
// (sample, head) (HeadPanels: O(T dh) copies against O(T^2 dh) work) and the products read them in place.
//
// Every output element is ONE fused multiply-add chain over the inner dimension, in increasing order,
// started from zero, whatever its row, column, tile or address: results depend only on the values and the
// inner length, which keeps MultiHeadAttention's valid outputs bitwise independent of padding. The last
// packet of a row that is not full goes through a local buffer (never a scalar path, whose rounding differs
// from the fused SIMD one).
//
// Layouts (row-major, P = SIMD packet size of S, dhp = dh rounded up to a multiple of P):
//   rows panel (n, dhp)   row s holds a row of dh values, zero-padded when dh is not a multiple of P: the
//                         head's K or V, a block of Q or dctx
//   transposed panel (dh, ldt)  column s holds row s of K or V; ldt = strip_stride(n) >= n, zero-padded
//
//   scores(A, lda, T, ldt, dh, out, ldo, rows, n, alpha)
//       out (rows, n) = alpha * A (rows, dh) * T (dh, n)               Q K^T and dctx V^T
//   rows_times_panel(W, ldw, R, out, ldo, dh, rows, n, accumulate)
//       out (rows, dh) = (or +=) W (rows, n) * R (n, dh)              P V and dS K (and the projections of
//                                                                      detail/panel_product.hpp)
//   add_transposed_times_panel(W, ldw, R, dh, acc, ldacc, rows, n, fresh)
//       acc (n, padded(dh)) += W (rows, n)^T * R (rows, dh)           dV += P^T dctx and dK += dS^T Q (each
//                                                                      acc element's chain continues; rows
//                                                                      s >= fresh start from zero instead)
//   R is a Panel (rows_panel(): the head's own rows when dh is a multiple of P, else a padded copy).

#include <Eigen/Core>
#include <algorithm>
#include <type_traits>

#include "seqattn/core/tensor.hpp"
#include "seqattn/detail/simd.hpp"

namespace seqattn::detail::head {

namespace ei = Eigen::internal;
template <class S>
using Packet = SimdPacket<S>;
template <class S>
inline constexpr Index kPacket = kSimdSize<S>;
// Accumulators a tile may hold: three quarters of the SIMD registers (the rest hold the loaded operands), 12 of
// 16 (AVX2, SSE) or 24 of 32 (AVX-512), as in Eigen's GEMM kernels. With half (8 of 16) the FMA latency was
// exposed: the three products ran at 35-60 GFLOP/s on AVX2 (Zen 2), against 65-88 with 12.
inline constexpr int kAccumulators = EIGEN_ARCH_DEFAULT_NUMBER_OF_REGISTERS * 3 / 4;
// Tiles are kTileRows rows (or keys) by kTilePackets packets of columns: 6 x 2 with 16 registers, 6 x 4 with 32
// (Eigen's AVX-512 GEMM tile is 3 x 8 packets). The remainders take smaller tiles of the same kind. Measured on
// AVX2 against 3 x 4 and 4 x 3: the 6 x 2 tile ran scores at 65 GFLOP/s (50-54) and the row products at 80-92
// (52-75 with 4-packet groups).
inline constexpr int kTileRows = 6;
inline constexpr int kTilePackets = std::max(1, kAccumulators / kTileRows);

template <class S>
Index padded(Index n) {
  return (n + kPacket<S> - 1) / kPacket<S> * kPacket<S>;
}

// Stores the first `count` lanes of p at dst (all of them when count >= P).
template <class S>
inline void store_lanes(S* dst, const Packet<S>& p, Index count) {
  if (count >= kPacket<S>) {
    ei::pstoreu(dst, p);
    return;
  }
  EIGEN_ALIGN_MAX S buf[kPacket<S>];
  ei::pstore(buf, p);
  std::copy(buf, buf + count, dst);
}

// The first `count` lanes at src, zeros beyond (all P lanes when count >= P).
template <class S>
inline Packet<S> load_lanes(const S* src, Index count) {
  if (count >= kPacket<S>) return ei::ploadu<Packet<S>>(src);
  EIGEN_ALIGN_MAX S buf[kPacket<S>] = {};
  std::copy(src, src + count, buf);
  return ei::pload<Packet<S>>(buf);
}

// The operand layouts of one head, reused over its blocks of query rows. Buffers grow to the largest head seen,
// then never reallocate.
template <class S>
struct HeadPanels {
  Vector<S> transposed;    // (dh, ldt): K^T or V^T
  Vector<S> rows;          // (n, dhp): K or V, when dh is not a multiple of P (rows_panel)
  Vector<S> block;         // (rows of one block, dhp): a block of Q or dctx, likewise
  Vector<S> acc_k, acc_v;  // (n, dhp): dK and dV of the head summed over blocks, likewise
  Vector<S> scores;        // (rows of one block, n): dP then dS of a block (backward); windowed: also the scores
  Vector<S> rect;          // (rows of one block, n): a block of the banded Pd as a rectangle (windowed backward)
  // Probabilities not kept (MultiHeadAttention's need_weights=false): the block's P and Pd, computed by the
  // forward and again by the backward, which also needs K^T beside V^T
  Vector<S> probs, probs_dropped;  // (rows of one block, n)
  Vector<S> keys_transposed;       // (dh, ldk): K^T
  Index ldt = 0, ldk = 0;
};

template <class S>
void reserve(Vector<S>& v, Index size) {
  if (v.size() < size) v.resize(size);
}

// transposed (dh, ldt) = M^T of the first n rows of M (n, dh), zero-padded to ldt = strip_stride(n) columns.
// (Eigen's PacketBlock of a SIMD type makes GCC warn that the type's alignment attribute is ignored in the
// template argument; Eigen's own headers silence it the same way.)
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wignored-attributes"
#endif
// Row stride of a row-major buffer of n columns whose column strips the tiles read (a transposed panel, the
// score gradients of a block): padded(n), plus one packet when that is a multiple of 1 KB. A tile reads one
// strip, a line per row: at a 4 KB stride (n = 1024 floats) all of them fall into one L1 set, which holds 8
// lines, and every tile reloaded the strip from L2 (scores at 51 GFLOP/s, against 73 with the extra packet,
// at n = 1024 and dh = 32 on Zen 2).
template <class S>
Index strip_stride(Index n) {
  Index ld = padded<S>(n);
  if ((ld * Index(sizeof(S))) % 1024 == 0) ld += kPacket<S>;
  return ld;
}

template <class S, class M>
void pack_transposed(const M& m, Index n, Vector<S>& out, Index& ldt) {
  const Index dh = m.cols();
  ldt = strip_stride<S>(n);
  reserve(out, dh * ldt);
  S* t = out.data();
  constexpr Index P = kPacket<S>;
  if constexpr (P > 1) {
    if (dh % P == 0) {  // (P, P) blocks transposed in registers; rows s >= n read as zeros
      for (Index s0 = 0; s0 < ldt; s0 += P)
        for (Index d0 = 0; d0 < dh; d0 += P) {
          ei::PacketBlock<Packet<S>, int(P)> block;
          for (Index i = 0; i < P; ++i)
            block.packet[i] = s0 + i < n ? ei::ploadu<Packet<S>>(&m.coeff(s0 + i, d0)) : ei::pset1<Packet<S>>(S(0));
          ei::ptranspose(block);
          for (Index j = 0; j < P; ++j) ei::pstoreu(t + (d0 + j) * ldt + s0, block.packet[j]);
        }
      return;
    }
  }
  for (Index s = 0; s < n; ++s) {  // reads rows of M in order (its rows are strided, its columns are not)
    const S* row = &m.coeff(s, 0);
    for (Index d = 0; d < dh; ++d) t[d * ldt + s] = row[d];
  }
  for (Index d = 0; d < dh; ++d) std::fill(t + d * ldt + n, t + (d + 1) * ldt, S(0));
}
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

// rows (n, dhp) = the first n rows of M (n, dh), zero-padded to dhp = padded(dh) columns.
template <class S, class M>
void pack_rows(const M& m, Index n, Vector<S>& out, Index& dhp) {
  const Index dh = m.cols();
  dhp = padded<S>(dh);
  reserve(out, n * dhp);
  for (Index s = 0; s < n; ++s) {  // a packet at a time: std::copy called memcpy for every row (dh = 16: 64 bytes)
    S* row = out.data() + s * dhp;
    const S* in = &m.coeff(s, 0);
    for (Index d = 0; d < dhp; d += kPacket<S>) ei::pstoreu(row + d, load_lanes<S>(in + d, dh - d));
  }
}

// A rows panel in place: row s at data + s * stride, padded(dh) readable values per row.
template <class S>
struct Panel {
  const S* data;
  Index stride;
};

// The first n rows of M (n, dh) as a rows panel: M itself when dh is a whole number of packets (its rows are read
// in place, no copy), else a zero-padded copy in `buffer`.
template <class S, class M>
Panel<S> rows_panel(const M& m, Index n, Vector<S>& buffer, bool in_place_ok = true) {
  if (in_place_ok && m.cols() % kPacket<S> == 0) return {&m.coeff(0, 0), m.outerStride()};
  Index dhp = 0;
  pack_rows<S>(m, n, buffer, dhp);
  return {buffer.data(), dhp};
}

// Calls f(std::integral_constant<int, count>) for 1 <= count <= N: the tile of a remainder as a template.
template <int N, class F>
void with_count(Index count, F&& f) {
  if constexpr (N >= 1) {
    if (count == N)
      f(std::integral_constant<int, N>{});
    else
      with_count<N - 1>(count, f);
  }
}

// Calls f(c0, std::integral_constant<int, C>) for the groups of C packets that cover the padded(dh) columns of
// a panel row: groups of kTilePackets packets, then one group of those left. Tiles are templates on C.
template <class S, class F>
void for_each_column_group(Index dh, F&& f) {
  constexpr Index P = kPacket<S>;
  constexpr int G = kTilePackets;
  const Index width = padded<S>(dh);
  Index c0 = 0;
  for (; c0 + G * P <= width; c0 += G * P) f(c0, std::integral_constant<int, G>{});
  with_count<G - 1>((width - c0) / P, [&](auto packets) { f(c0, packets); });
}

// ---------------------------------------------------------------------------------------------------------
// scores: out (rows, n) = alpha * A (rows, dh; row stride lda) * T (dh, n; row stride ldt, zero-padded).
// Tiles of R rows by C packets of columns; tails with fewer rows or packets (the same chains).
template <class S, int R, int C>
void scores_tile(const S* A, Index lda, const S* T, Index ldt, Index dh, S* out, Index ldo, Index n, Index s0,
                 S alpha) {
  Packet<S> acc[R][C];
  SEQATTN_UNROLL
  for (int r = 0; r < R; ++r) {
    SEQATTN_UNROLL
    for (int c = 0; c < C; ++c) acc[r][c] = ei::pset1<Packet<S>>(S(0));
  }
  for (Index d = 0; d < dh; ++d) {
    Packet<S> t[C];
    SEQATTN_UNROLL
    for (int c = 0; c < C; ++c) t[c] = ei::ploadu<Packet<S>>(T + d * ldt + s0 + c * kPacket<S>);
    SEQATTN_UNROLL
    for (int r = 0; r < R; ++r) {
      const Packet<S> a = ei::pset1<Packet<S>>(A[r * lda + d]);
      SEQATTN_UNROLL
      for (int c = 0; c < C; ++c) acc[r][c] = ei::pmadd(a, t[c], acc[r][c]);
    }
  }
  const Packet<S> scale = ei::pset1<Packet<S>>(alpha);
  if (s0 + C * kPacket<S> <= n) {  // a full tile: plain stores (keeps the accumulators in registers)
    SEQATTN_UNROLL
    for (int r = 0; r < R; ++r) {
      SEQATTN_UNROLL
      for (int c = 0; c < C; ++c) ei::pstoreu(out + r * ldo + s0 + c * kPacket<S>, ei::pmul(acc[r][c], scale));
    }
    return;
  }
  SEQATTN_UNROLL
  for (int r = 0; r < R; ++r) {
    SEQATTN_UNROLL
    for (int c = 0; c < C; ++c) {
      const Index s = s0 + c * kPacket<S>;
      store_lanes<S>(out + r * ldo + s, ei::pmul(acc[r][c], scale), n - s);
    }
  }
}

template <class S, int R>
void scores_rows(const S* A, Index lda, const S* T, Index ldt, Index dh, S* out, Index ldo, Index n, S alpha) {
  constexpr Index P = kPacket<S>;
  constexpr int C = kTilePackets;
  Index s = 0;
  for (; s + C * P <= n; s += C * P) scores_tile<S, R, C>(A, lda, T, ldt, dh, out, ldo, n, s, alpha);
  with_count<C>((n - s + P - 1) / P, [&](auto packets) {  // up to C packets, the last one partial
    scores_tile<S, R, decltype(packets)::value>(A, lda, T, ldt, dh, out, ldo, n, s, alpha);
  });
}

template <class S>
void scores(const S* A, Index lda, const S* T, Index ldt, Index dh, S* out, Index ldo, Index rows, Index n, S alpha) {
  constexpr int R = kTileRows;
  Index i = 0;
  for (; i + R <= rows; i += R) scores_rows<S, R>(A + i * lda, lda, T, ldt, dh, out + i * ldo, ldo, n, alpha);
  with_count<R - 1>(rows - i, [&](auto count) {
    scores_rows<S, decltype(count)::value>(A + i * lda, lda, T, ldt, dh, out + i * ldo, ldo, n, alpha);
  });
}

// ---------------------------------------------------------------------------------------------------------
// rows_times_panel: out (rows, dh; row stride ldo) = W (rows, n; row stride ldw) * R (n, dh; panel, row stride
// dhp). Tiles of RT rows by C packets of the dh columns.
template <class S, int RT, int C>
void rows_panel_tile(const S* W, Index ldw, const S* Rp, Index ldr, S* out, Index ldo, Index dh, Index n, Index c0,
                     bool accumulate) {
  Packet<S> acc[RT][C];
  SEQATTN_UNROLL
  for (int r = 0; r < RT; ++r) {
    SEQATTN_UNROLL
    for (int c = 0; c < C; ++c) {
      const Index col = c0 + c * kPacket<S>;
      acc[r][c] = accumulate ? load_lanes<S>(out + r * ldo + col, dh - col) : ei::pset1<Packet<S>>(S(0));
    }
  }
  for (Index s = 0; s < n; ++s) {
    Packet<S> v[C];
    SEQATTN_UNROLL
    for (int c = 0; c < C; ++c) v[c] = ei::ploadu<Packet<S>>(Rp + s * ldr + c0 + c * kPacket<S>);
    SEQATTN_UNROLL
    for (int r = 0; r < RT; ++r) {
      const Packet<S> w = ei::pset1<Packet<S>>(W[r * ldw + s]);
      SEQATTN_UNROLL
      for (int c = 0; c < C; ++c) acc[r][c] = ei::pmadd(w, v[c], acc[r][c]);
    }
  }
  if (c0 + C * kPacket<S> <= dh) {  // full packets: plain stores
    SEQATTN_UNROLL
    for (int r = 0; r < RT; ++r) {
      SEQATTN_UNROLL
      for (int c = 0; c < C; ++c) ei::pstoreu(out + r * ldo + c0 + c * kPacket<S>, acc[r][c]);
    }
    return;
  }
  SEQATTN_UNROLL
  for (int r = 0; r < RT; ++r) {
    SEQATTN_UNROLL
    for (int c = 0; c < C; ++c) {
      const Index col = c0 + c * kPacket<S>;
      store_lanes<S>(out + r * ldo + col, acc[r][c], dh - col);
    }
  }
}

template <class S, int C>
void rows_panel_columns(const S* W, Index ldw, const S* Rp, Index ldr, S* out, Index ldo, Index dh, Index rows, Index n,
                        Index c0, bool accumulate) {
  constexpr int RT = std::max(1, kAccumulators / C);
  Index i = 0;
  for (; i + RT <= rows; i += RT)
    rows_panel_tile<S, RT, C>(W + i * ldw, ldw, Rp, ldr, out + i * ldo, ldo, dh, n, c0, accumulate);
  with_count<RT - 1>(rows - i, [&](auto count) {
    rows_panel_tile<S, decltype(count)::value, C>(W + i * ldw, ldw, Rp, ldr, out + i * ldo, ldo, dh, n, c0, accumulate);
  });
}

// accumulate: each chain continues from the value in `out` instead of zero (the same bits as one longer chain).
template <class S>
void rows_times_panel(const S* W, Index ldw, const Panel<S>& R, S* out, Index ldo, Index dh, Index rows, Index n,
                      bool accumulate = false) {
  for_each_column_group<S>(dh, [&](Index c0, auto packets) {
    rows_panel_columns<S, decltype(packets)::value>(W, ldw, R.data, R.stride, out, ldo, dh, rows, n, c0, accumulate);
  });
}

// ---------------------------------------------------------------------------------------------------------
// add_transposed_times_panel: acc (n, dhp) += W (rows, n; row stride ldw)^T * R (rows, dh; panel, row stride
// dhp). Tiles of K keys by C packets of columns. Each tile continues the chains of its acc elements (loads them,
// adds the rows in order, stores them), so acc(s, d) is one chain over every row ever added, in order, whatever
// the blocks the rows came in. Rows s >= fresh of acc start from zero (their first block), so acc needs no
// zeroing beforehand: the chain is the same as from a zeroed acc.
template <class S, int K, int C>
void transposed_panel_tile(const S* W, Index ldw, const S* Rp, Index ldr, S* acc_out, Index ldacc, Index rows, Index s0,
                           Index c0, Index fresh) {
  Packet<S> acc[K][C];
  SEQATTN_UNROLL
  for (int k = 0; k < K; ++k) {
    SEQATTN_UNROLL
    for (int c = 0; c < C; ++c)
      acc[k][c] = s0 + k < fresh ? ei::ploadu<Packet<S>>(acc_out + (s0 + k) * ldacc + c0 + c * kPacket<S>)
                                 : ei::pset1<Packet<S>>(S(0));
  }
  for (Index i = 0; i < rows; ++i) {
    Packet<S> x[C];
    SEQATTN_UNROLL
    for (int c = 0; c < C; ++c) x[c] = ei::ploadu<Packet<S>>(Rp + i * ldr + c0 + c * kPacket<S>);
    SEQATTN_UNROLL
    for (int k = 0; k < K; ++k) {
      const Packet<S> w = ei::pset1<Packet<S>>(W[i * ldw + s0 + k]);
      SEQATTN_UNROLL
      for (int c = 0; c < C; ++c) acc[k][c] = ei::pmadd(w, x[c], acc[k][c]);
    }
  }
  SEQATTN_UNROLL
  for (int k = 0; k < K; ++k) {
    SEQATTN_UNROLL
    for (int c = 0; c < C; ++c) ei::pstoreu(acc_out + (s0 + k) * ldacc + c0 + c * kPacket<S>, acc[k][c]);
  }
}

template <class S, int C>
void transposed_panel_columns(const S* W, Index ldw, const S* Rp, Index ldr, S* acc, Index ldacc, Index rows, Index n,
                              Index c0, Index fresh) {
  constexpr int K = std::max(1, kAccumulators / C);
  Index s = 0;
  for (; s + K <= n; s += K) transposed_panel_tile<S, K, C>(W, ldw, Rp, ldr, acc, ldacc, rows, s, c0, fresh);
  with_count<K - 1>(n - s, [&](auto count) {
    transposed_panel_tile<S, decltype(count)::value, C>(W, ldw, Rp, ldr, acc, ldacc, rows, s, c0, fresh);
  });
}

template <class S>
void add_transposed_times_panel(const S* W, Index ldw, const Panel<S>& R, Index dh, S* acc, Index ldacc, Index rows,
                                Index n, Index fresh) {
  for_each_column_group<S>(dh, [&](Index c0, auto packets) {
    transposed_panel_columns<S, decltype(packets)::value>(W, ldw, R.data, R.stride, acc, ldacc, rows, n, c0, fresh);
  });
}

}  // namespace seqattn::detail::head
