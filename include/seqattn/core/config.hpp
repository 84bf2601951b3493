#pragma once
// Library version and the index type used for every size.

#include <Eigen/Core>
#include <cstdint>

#define SEQATTN_VERSION_MAJOR 0
#define SEQATTN_VERSION_MINOR 1
#define SEQATTN_VERSION_PATCH 0

namespace seqattn {

using Index = Eigen::Index;  // signed, as Eigen uses for every size

inline constexpr const char* version_string() { return "0.1.0"; }

}  // namespace seqattn
