#pragma once
// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), the checksum of zlib, gzip and PNG:
// crc32("123456789") == 0xCBF43926. Incremental: crc32(b, nb, crc32(a, na)) == crc32(a + b).

#include <array>
#include <cstddef>
#include <cstdint>

namespace seqattn::detail {

inline const std::array<std::uint32_t, 256>& crc32_table() {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1U) ? 0xEDB88320U ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

// CRC-32 of data[0, size), continuing from the CRC `crc` of the bytes before them (0 to start).
inline std::uint32_t crc32(const unsigned char* data, std::size_t size, std::uint32_t crc = 0) {
  const auto& table = crc32_table();
  crc = ~crc;
  for (std::size_t i = 0; i < size; ++i) crc = table[(crc ^ data[i]) & 0xFFU] ^ (crc >> 8);
  return ~crc;
}

}  // namespace seqattn::detail
