#pragma once
// Eigen's SIMD packet of a scalar type, for the kernels that call Eigen's packet functions directly so that
// every element takes the same SIMD path whatever its address (masked_softmax.hpp, ordered_sum.hpp,
// head_products.hpp). Without vectorization the packet is the scalar itself (size 1).

#include <Eigen/Core>

#include "seqattn/core/tensor.hpp"

namespace seqattn::detail {

template <class S>
using SimdPacket = typename Eigen::internal::packet_traits<S>::type;
template <class S>
inline constexpr Index kSimdSize = Eigen::internal::unpacket_traits<SimdPacket<S>>::size;

}  // namespace seqattn::detail
