#pragma once
// One query of one head against a key/value cache (detail/multi_head_attention_stream.hpp): the attention of a
// stream step, where the query is a single row and the keys and values sit in the stream's cache.
//   head_scores(q, Kt, ldk, dh, m, alpha, out)      out (m) = alpha * q (dh) Kt (dh, m; row stride ldk)
//   weighted_rows(w, m, V, ldv, dh, inv_sum, out)   out (dh) = inv_sum * w (m) V (m, dh; row stride ldv)
//   weighted_rows_heads(w, ldw, m, V, ldv, H, dh, inv_sum, out)   the same for H heads at once, one pass over V
// Both are register-tiled SIMD loops that read the cache once, in order (it is the step's largest memory
// traffic: 64 KiB per stream for 128 keys of 64 features), with enough independent accumulators to hide the
// FMA latency. Through Eigen's matrix-vector products, w V of a head of dh = 16 was one chain of m dependent
// FMAs on a single packet, and the two products took half of a batched stream step.
// head_scores reads only the m columns given (the last packet of a row through a buffer); weighted_rows needs
// dh to be a whole number of SIMD packets (supports_weighted_rows): callers fall back to Eigen otherwise.

#include <algorithm>

#include "seqattn/core/tensor.hpp"
#include "seqattn/detail/head_products.hpp"
#include "seqattn/detail/simd.hpp"

namespace seqattn::detail::cached {

namespace ei = Eigen::internal;
using head::kPacket;
using head::Packet;

// Packets of keys per score tile: 8 accumulators (128 float keys at AVX-512), fewer on 16-register machines.
inline constexpr int kScorePackets = head::kAccumulators >= 8 ? 8 : head::kAccumulators;

// out[s0, s0 + C P) (or up to m) = alpha * q (dh) Kt[:, s0 ...]. Full: every lane is a key below m.
template <class S, int C, bool Full>
void scores_tile(const S* q, const S* Kt, Index ldk, Index dh, Index m, Index s0, S alpha, S* out) {
  Packet<S> acc[C];
  SEQATTN_UNROLL
  for (int c = 0; c < C; ++c) acc[c] = ei::pset1<Packet<S>>(S(0));
  for (Index d = 0; d < dh; ++d) {
    const Packet<S> a = ei::pset1<Packet<S>>(q[d]);
    const S* row = Kt + d * ldk + s0;
    SEQATTN_UNROLL
    for (int c = 0; c < C; ++c) {
      const Packet<S> k = Full ? ei::ploadu<Packet<S>>(row + c * kPacket<S>)
                               : head::load_lanes<S>(row + c * kPacket<S>, m - s0 - c * kPacket<S>);
      acc[c] = ei::pmadd(a, k, acc[c]);
    }
  }
  const Packet<S> scale = ei::pset1<Packet<S>>(alpha);
  SEQATTN_UNROLL
  for (int c = 0; c < C; ++c) {
    if (Full)
      ei::pstoreu(out + s0 + c * kPacket<S>, ei::pmul(acc[c], scale));
    else
      head::store_lanes<S>(out + s0 + c * kPacket<S>, ei::pmul(acc[c], scale), m - s0 - c * kPacket<S>);
  }
}

// out (m) = alpha * q (dh) Kt (dh, m; row stride ldk): each score one FMA chain over d in increasing order.
template <class S>
void head_scores(const S* q, const S* Kt, Index ldk, Index dh, Index m, S alpha, S* out) {
  constexpr Index P = kPacket<S>;
  constexpr int C = kScorePackets;
  Index s = 0;
  for (; s + C * P <= m; s += C * P) scores_tile<S, C, true>(q, Kt, ldk, dh, m, s, alpha, out);
  if (s == m) return;
  head::with_count<C>((m - s + P - 1) / P, [&](auto packets) {  // the last packet partial when m % P != 0
    scores_tile<S, decltype(packets)::value, false>(q, Kt, ldk, dh, m, s, alpha, out);
  });
}

inline bool supports_weighted_rows_impl(Index dh, Index P) { return dh % P == 0; }
template <class S>
bool supports_weighted_rows(Index dh) {
  return supports_weighted_rows_impl(dh, kPacket<S>);
}

// out[c0, c0 + G P) = inv_sum * sum over s < m of w[s] V[s, c0 ...]: U chains per packet (keys s = u mod U),
// added at the end, so U * G accumulators are in flight.
template <class S, int G>
void weighted_tile(const S* w, Index m, const S* V, Index ldv, Index c0, S inv_sum, S* out) {
  constexpr int U = G <= 2 ? 4 : G <= 4 ? 2 : 1;
  Packet<S> acc[U][G];
  SEQATTN_UNROLL
  for (int u = 0; u < U; ++u) {
    SEQATTN_UNROLL
    for (int g = 0; g < G; ++g) acc[u][g] = ei::pset1<Packet<S>>(S(0));
  }
  Index s = 0;
  for (; s + U <= m; s += U) {
    SEQATTN_UNROLL
    for (int u = 0; u < U; ++u) {
      const Packet<S> a = ei::pset1<Packet<S>>(w[s + u]);
      const S* row = V + (s + u) * ldv + c0;
      SEQATTN_UNROLL
      for (int g = 0; g < G; ++g) acc[u][g] = ei::pmadd(a, ei::ploadu<Packet<S>>(row + g * kPacket<S>), acc[u][g]);
    }
  }
  for (; s < m; ++s) {
    const Packet<S> a = ei::pset1<Packet<S>>(w[s]);
    SEQATTN_UNROLL
    for (int g = 0; g < G; ++g)
      acc[0][g] = ei::pmadd(a, ei::ploadu<Packet<S>>(V + s * ldv + c0 + g * kPacket<S>), acc[0][g]);
  }
  const Packet<S> scale = ei::pset1<Packet<S>>(inv_sum);
  SEQATTN_UNROLL
  for (int g = 0; g < G; ++g) {
    Packet<S> total = acc[0][g];
    SEQATTN_UNROLL
    for (int u = 1; u < U; ++u) total = ei::padd(total, acc[u][g]);
    ei::pstoreu(out + c0 + g * kPacket<S>, ei::pmul(total, scale));
  }
}

// All heads in one pass over V, when a row of V is at most 8 packets (e.g. 64 floats at AVX-512):
// out[h dh, (h + 1) dh) = inv_sum[h] * w_h (m) V_h (m, dh), w_h = w + h * ldw. T = H * dh / P packets per row,
// U chains per packet; every row of V is read once, whole.
template <class S, int T>
void weighted_rows_all_heads(const S* w, Index ldw, Index m, const S* V, Index ldv, Index dh, const S* inv_sum,
                             S* out) {
  constexpr int U = T <= 2 ? 4 : T <= 4 ? 2 : 1;
  const Index G = dh / kPacket<S>;  // packets per head
  Index head_of[T];
  SEQATTN_UNROLL
  for (int t = 0; t < T; ++t) head_of[t] = t / G;
  Packet<S> acc[U][T];
  SEQATTN_UNROLL
  for (int u = 0; u < U; ++u) {
    SEQATTN_UNROLL
    for (int t = 0; t < T; ++t) acc[u][t] = ei::pset1<Packet<S>>(S(0));
  }
  Index s = 0;
  for (; s + U <= m; s += U) {
    SEQATTN_UNROLL
    for (int u = 0; u < U; ++u) {
      const S* row = V + (s + u) * ldv;
      SEQATTN_UNROLL
      for (int t = 0; t < T; ++t) {
        const Packet<S> a = ei::pset1<Packet<S>>(w[head_of[t] * ldw + s + u]);
        acc[u][t] = ei::pmadd(a, ei::ploadu<Packet<S>>(row + t * kPacket<S>), acc[u][t]);
      }
    }
  }
  for (; s < m; ++s) {
    SEQATTN_UNROLL
    for (int t = 0; t < T; ++t) {
      const Packet<S> a = ei::pset1<Packet<S>>(w[head_of[t] * ldw + s]);
      acc[0][t] = ei::pmadd(a, ei::ploadu<Packet<S>>(V + s * ldv + t * kPacket<S>), acc[0][t]);
    }
  }
  SEQATTN_UNROLL
  for (int t = 0; t < T; ++t) {
    Packet<S> total = acc[0][t];
    SEQATTN_UNROLL
    for (int u = 1; u < U; ++u) total = ei::padd(total, acc[u][t]);
    ei::pstoreu(out + t * kPacket<S>, ei::pmul(total, ei::pset1<Packet<S>>(inv_sum[head_of[t]])));
  }
}

// Whether weighted_rows_all_heads takes rows of H heads of dh.
template <class S>
bool fits_all_heads(Index heads, Index dh) {
  return dh % kPacket<S> == 0 && heads * dh <= 8 * kPacket<S>;
}

// out (H dh) = the attention outputs of every head (fits_all_heads): see weighted_rows_all_heads.
template <class S>
void weighted_rows_heads(const S* w, Index ldw, Index m, const S* V, Index ldv, Index heads, Index dh,
                         const S* inv_sum, S* out) {
  head::with_count<8>(heads * dh / kPacket<S>, [&](auto packets) {
    weighted_rows_all_heads<S, decltype(packets)::value>(w, ldw, m, V, ldv, dh, inv_sum, out);
  });
}

// out (dh) = inv_sum * w (m) V (m, dh; row stride ldv); dh a whole number of packets (supports_weighted_rows).
template <class S>
void weighted_rows(const S* w, Index m, const S* V, Index ldv, Index dh, S inv_sum, S* out) {
  constexpr Index P = kPacket<S>;
  constexpr int G = 4;
  Index c0 = 0;
  for (; c0 + G * P <= dh; c0 += G * P) weighted_tile<S, G>(w, m, V, ldv, c0, inv_sum, out);
  head::with_count<G - 1>((dh - c0) / P, [&](auto packets) {
    weighted_tile<S, decltype(packets)::value>(w, m, V, ldv, c0, inv_sum, out);
  });
}

}  // namespace seqattn::detail::cached
