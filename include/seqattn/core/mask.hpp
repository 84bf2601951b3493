#pragma once
/// \file
/// Mask: which steps of a (B, T) batch are valid. Two forms:
///
/// ```unparsed
///   lengths (the fast path)  sequence b keeps its first length_b steps (right padding). Mask(lengths),
///                            from_lengths; an empty Mask keeps every step of every sequence.
///   steps                    any pattern of kept steps: holes inside a sequence (a sensor dropped out, Keras'
///                            per-step masks) and left padding. from_steps (a B x T keep array), from_value (Keras'
///                            Masking: a step whose features all equal a value), from_missing (a step with a NaN).
///                            A step mask is tied to its T.
/// ```
/// Builders store a step pattern whose kept steps are a prefix of every sequence as lengths, so the fast path is
/// taken whenever it exists: has_holes() is true only for patterns lengths cannot express.
/// The mask travels beside the data: layers receive it with x, and layers that change the number of steps
/// (pooling, strided conv) return a new one from out_mask(). Layers that do not handle step masks refuse them
/// (Layer::supports_step_masks, core/layer.hpp) with a ConfigError naming the layer.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/config.hpp"
#include "seqattn/core/errors.hpp"
#include "seqattn/core/tensor.hpp"

namespace seqattn {

/// Which steps of each sequence are valid: lengths (right padding) or a step mask (holes, left padding); see
/// the file documentation.
class Mask {
 public:
  Mask() = default;  ///< every step valid
  /// The lengths form: sequence b has lengths[b] valid steps (ShapeError for a negative length).
  explicit Mask(std::vector<Index> lengths) : lengths_(std::move(lengths)) {
    for (Index len : lengths_)
      if (len < 0) detail::throw_shape("Mask: lengths must be >= 0 but got ", len);
  }
  /// Mask(lengths).
  static Mask from_lengths(std::vector<Index> lengths) { return Mask(std::move(lengths)); }
  /// Mask(): every step valid.
  static Mask all_valid() { return Mask(); }

  /// keep: B*T entries, row-major (keep[b * T + t] != 0 keeps step t of sequence b).
  static Mask from_steps(Index B, Index T, std::vector<std::uint8_t> keep) {
    if (B <= 0 || T <= 0) detail::throw_shape("Mask::from_steps: B and T must be positive but got B=", B, ", T=", T);
    if (static_cast<Index>(keep.size()) != B * T)
      detail::throw_shape("Mask::from_steps: keep expected B*T = ", B * T, " entries (B=", B, ", T=", T,
                          ") but got ", keep.size());
    for (auto& k : keep) k = k != 0;
    Mask mask;
    mask.lengths_.assign(static_cast<size_t>(B), 0);
    bool prefix = true;
    for (Index b = 0; b < B; ++b) {
      const std::uint8_t* row = keep.data() + b * T;
      Index extent = T;
      while (extent > 0 && !row[extent - 1]) --extent;
      mask.lengths_[static_cast<size_t>(b)] = extent;
      prefix = prefix && std::all_of(row, row + extent, [](std::uint8_t k) { return k != 0; });
    }
    if (prefix) return mask;  // right padding only: lengths
    mask.keep_ = std::move(keep);
    mask.steps_ = T;
    return mask;
  }
  /// Nested rows, one per sequence: Mask::from_steps({{1, 0, 1}, {1, 1, 0}}).
  static Mask from_steps(std::initializer_list<std::initializer_list<int>> rows) {
    const Index B = static_cast<Index>(rows.size());
    const Index T = B > 0 ? static_cast<Index>(rows.begin()->size()) : 0;
    std::vector<std::uint8_t> keep;
    keep.reserve(static_cast<size_t>(B * T));
    Index b = 0;
    for (const auto& row : rows) {
      if (static_cast<Index>(row.size()) != T)
        detail::throw_shape("Mask::from_steps: row ", b, " has ", row.size(), " steps but row 0 has ", T);
      for (int k : row) keep.push_back(k != 0);
      ++b;
    }
    return from_steps(B, T, std::move(keep));
  }
  /// Keras' Masking(mask_value): a step of x (B, T, F) is masked when every feature equals `value` (finite).
  template <class S>
  static Mask from_value(const Tensor3<S>& x, double value) {
    if (!std::isfinite(value))
      detail::throw_config("Mask::from_value: value expected a finite number but got ", value,
                           " (NaN marks missing values: Mask::from_missing)");
    const S v = static_cast<S>(value);
    return from_step_rule(x, "Mask::from_value", [v](const S* row, Index F) {
      return !std::all_of(row, row + F, [v](S e) { return e == v; });
    });
  }
  /// Missing observations: a step of x (B, T, F) is masked when any of its features is NaN.
  template <class S>
  static Mask from_missing(const Tensor3<S>& x) {
    return from_step_rule(x, "Mask::from_missing", [](const S* row, Index F) {
      return std::none_of(row, row + F, [](S e) { return std::isnan(e); });
    });
  }
  /// The steps both masks keep, for a (B, T) batch (both must fit it).
  static Mask intersect(const Mask& a, const Mask& b, Index B, Index T) {
    if (a.empty()) return b;
    if (b.empty()) return a;
    a.check(B, T, "Mask::intersect (first mask)");
    b.check(B, T, "Mask::intersect (second mask)");
    if (!a.has_holes() && !b.has_holes()) {
      std::vector<Index> lengths(static_cast<size_t>(B));
      for (Index s = 0; s < B; ++s) lengths[static_cast<size_t>(s)] = std::min(a.length(s, T), b.length(s, T));
      return Mask(std::move(lengths));
    }
    std::vector<std::uint8_t> keep(static_cast<size_t>(B * T));
    for (Index s = 0; s < B; ++s)
      for (Index t = 0; t < T; ++t) keep[static_cast<size_t>(s * T + t)] = a.valid(s, t, T) && b.valid(s, t, T);
    return from_steps(B, T, std::move(keep));
  }

  /// True for the all-valid mask Mask().
  bool empty() const { return lengths_.empty(); }
  /// The number of sequences (0 for the all-valid mask).
  Index batch() const { return static_cast<Index>(lengths_.size()); }
  /// True for a step mask that lengths cannot express (holes or left padding).
  bool has_holes() const { return !keep_.empty(); }
  /// The T a step mask was built for (0 for lengths).
  Index steps() const { return steps_; }
  /// Lengths form: the valid lengths. Step form: the extents (1 + the last kept step; 0 when none is kept).
  const std::vector<Index>& lengths() const { return lengths_; }

  /// Lengths form: valid steps of sample b in a batch padded to T steps. Step form: the extent of sample b
  /// (every kept step is below it; steps below it may be masked: test valid()).
  Index length(Index b, Index T) const { return empty() ? T : lengths_[static_cast<size_t>(b)]; }
  /// First kept step of sample b (length(b, T) when none is kept).
  Index first(Index b, Index T) const {
    if (!has_holes()) return length(b, T) > 0 ? 0 : length(b, T);
    const std::uint8_t* row = keep_row(b);
    const Index extent = lengths_[static_cast<size_t>(b)];
    Index t = 0;
    while (t < extent && !row[t]) ++t;
    return t;
  }
  /// Whether step t of sequence b (of T steps) is kept.
  bool valid(Index b, Index t, Index T) const {
    if (has_holes()) return keep_[static_cast<size_t>(b * steps_ + t)] != 0;
    return t < length(b, T);
  }
  /// Kept steps of sample b.
  Index count(Index b, Index T) const {
    if (!has_holes()) return length(b, T);
    const std::uint8_t* row = keep_row(b);
    return static_cast<Index>(std::count(row, row + steps_, std::uint8_t{1}));
  }
  /// Step form only: the steps() keep flags (0 or 1) of sample b.
  const std::uint8_t* keep_row(Index b) const { return keep_.data() + b * steps_; }
  /// True when the mask marks some step of a (B, T) batch as padding.
  bool has_padding(Index T) const {
    return has_holes() || std::any_of(lengths_.begin(), lengths_.end(), [T](Index len) { return len < T; });
  }

  /// True when the mask fits a batch of B sequences of T steps (allocation-free; check() explains why not).
  bool fits(Index B, Index T) const {
    if (empty()) return true;
    if (batch() != B) return false;
    if (has_holes()) return steps_ == T;
    return std::all_of(lengths_.begin(), lengths_.end(), [T](Index len) { return len <= T; });
  }

  /// Throws ShapeError naming `who` unless the mask fits a batch of B sequences of T steps.
  void check(Index B, Index T, const std::string& who) const {
    if (empty()) return;
    if (batch() != B)
      detail::throw_shape(who, ": mask has ", batch(), has_holes() ? " rows" : " lengths", " but the batch has ", B,
                          " sequences");
    if (has_holes()) {
      if (steps_ != T) detail::throw_shape(who, ": step mask has ", steps_, " steps but the input has ", T);
      return;
    }
    for (Index b = 0; b < B; ++b)
      if (lengths_[static_cast<size_t>(b)] > T)
        detail::throw_shape(who, ": mask length of sequence ", b, " is ", lengths_[static_cast<size_t>(b)],
                            " but the input has only ", T, " steps");
  }

  /// Same form, lengths and kept steps.
  friend bool operator==(const Mask& a, const Mask& b) {
    return a.lengths_ == b.lengths_ && a.keep_ == b.keep_ && a.steps_ == b.steps_;
  }
  /// Not equal.
  friend bool operator!=(const Mask& a, const Mask& b) { return !(a == b); }

 private:
  template <class S, class KeepStep>
  static Mask from_step_rule(const Tensor3<S>& x, const char* who, KeepStep keep_step) {
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
    if (B <= 0 || T <= 0 || F <= 0)
      detail::throw_shape(who, ": input expected at least one sequence, step and feature but got ", shape_string(x));
    std::vector<std::uint8_t> keep(static_cast<size_t>(B * T));
    for (Index r = 0; r < B * T; ++r) keep[static_cast<size_t>(r)] = keep_step(x.data() + r * F, F);
    return from_steps(B, T, std::move(keep));
  }

  std::vector<Index> lengths_;
  std::vector<std::uint8_t> keep_;  // step form: B * steps_ flags
  Index steps_ = 0;
};

}  // namespace seqattn
