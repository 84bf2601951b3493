#pragma once
/// \file
/// Library version (seqattn/version.hpp) and the index type used for every size.

#include <Eigen/Core>
#include <cstdint>

#include "seqattn/version.hpp"

namespace seqattn {

using Index = Eigen::Index;  ///< signed, as Eigen uses for every size

}  // namespace seqattn
