#pragma once
// fnv1a(data, n): the 64-bit FNV-1a hash of n bytes. A checksum against damage (checkpoints) and a fingerprint of
// layouts (the distributed trainer), not a defence against a forger.

#include <cstddef>
#include <cstdint>

namespace seqattn::detail {

inline std::uint64_t fnv1a(const unsigned char* data, std::size_t n) {
  std::uint64_t h = 1469598103934665603ULL;
  for (std::size_t i = 0; i < n; ++i) h = (h ^ data[i]) * 1099511628211ULL;
  return h;
}

}  // namespace seqattn::detail
