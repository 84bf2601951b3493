#pragma once
// Mask: the valid length of every sequence of a batch (right padding: steps t < length are valid).
// An empty Mask means every step of every sequence is valid. The mask travels beside the data:
// layers receive it with x, and layers that change the number of steps (pooling, strided conv) return a
// new one from out_mask().

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/config.hpp"
#include "seqattn/core/errors.hpp"

namespace seqattn {

class Mask {
 public:
  Mask() = default;  // every step valid
  explicit Mask(std::vector<Index> lengths) : lengths_(std::move(lengths)) {
    for (Index len : lengths_)
      if (len < 0) detail::throw_shape("Mask: lengths must be >= 0 but got ", len);
  }
  static Mask from_lengths(std::vector<Index> lengths) { return Mask(std::move(lengths)); }
  static Mask all_valid() { return Mask(); }

  bool empty() const { return lengths_.empty(); }
  Index batch() const { return static_cast<Index>(lengths_.size()); }
  const std::vector<Index>& lengths() const { return lengths_; }

  // Valid steps of sample b in a batch padded to T steps.
  Index length(Index b, Index T) const { return empty() ? T : lengths_[static_cast<size_t>(b)]; }
  bool valid(Index b, Index t, Index T) const { return t < length(b, T); }
  // True when the mask marks some step of a (B, T) batch as padding.
  bool has_padding(Index T) const {
    return std::any_of(lengths_.begin(), lengths_.end(), [T](Index len) { return len < T; });
  }

  // True when the mask fits a batch of B sequences of T steps (allocation-free; check() explains why not).
  bool fits(Index B, Index T) const {
    if (empty()) return true;
    if (batch() != B) return false;
    return std::all_of(lengths_.begin(), lengths_.end(), [T](Index len) { return len <= T; });
  }

  // Throws ShapeError naming `who` unless the mask fits a batch of B sequences of T steps.
  void check(Index B, Index T, const std::string& who) const {
    if (empty()) return;
    if (batch() != B)
      detail::throw_shape(who, ": mask has ", batch(), " lengths but the batch has ", B, " sequences");
    for (Index b = 0; b < B; ++b)
      if (lengths_[static_cast<size_t>(b)] > T)
        detail::throw_shape(who, ": mask length of sequence ", b, " is ", lengths_[static_cast<size_t>(b)],
                            " but the input has only ", T, " steps");
  }

  friend bool operator==(const Mask& a, const Mask& b) { return a.lengths_ == b.lengths_; }
  friend bool operator!=(const Mask& a, const Mask& b) { return !(a == b); }

 private:
  std::vector<Index> lengths_;
};

}  // namespace seqattn
