#pragma once
// Eigen's SIMD packet of a scalar type, for the kernels that call Eigen's packet functions directly so that
// every element takes the same SIMD path whatever its address (masked_softmax.hpp, ordered_sum.hpp,
// head_products.hpp). Without vectorization the packet is the scalar itself (size 1).

#include <Eigen/Core>

#include "seqattn/core/tensor.hpp"

// SEQATTN_UNROLL before a loop over a tile's rows or packets (compile-time counts) asks the compiler to unroll it
// fully, so that the tile's accumulators live in registers. GCC 12 left the 24-row loop of a one-packet tile
// rolled (its accumulators on the stack: a load and a store around every FMA), which ran the head products
// of dh = 16 at AVX-512 (Zen 5) at about half speed.
#if defined(__GNUC__) || defined(__clang__)
#define SEQATTN_UNROLL _Pragma("GCC unroll 32")
#else
#define SEQATTN_UNROLL
#endif

namespace seqattn::detail {

template <class S>
using SimdPacket = typename Eigen::internal::packet_traits<S>::type;
template <class S>
inline constexpr Index kSimdSize = Eigen::internal::unpacket_traits<SimdPacket<S>>::size;

}  // namespace seqattn::detail
