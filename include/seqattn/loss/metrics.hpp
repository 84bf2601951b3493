#pragma once
/// \file
/// Classification metrics on logits (B, T, C), with the label conventions of SoftmaxCrossEntropy: one label
/// per sequence (labels.size() == B, requires T == 1) or one per step (B * T, row-major); padded steps ignored.
///
/// ```unparsed
///   argmax_labels(logits, mask = Mask())       the predicted class of every step, size B * T, row-major;
///                                              -1 at padded steps; ties go to the lowest class index
///   argmax_labels(logits, mask, out)           the same into `out` (no allocation once it has the size)
///   accuracy(logits, labels, mask = Mask())    fraction of valid steps whose argmax equals the label, in
///                                              [0, 1]; 0 when there is no valid step
/// ```
/// Step masks (holes, left padding): masked steps are treated as padded ones (-1, not counted).
/// Errors (ShapeError naming accuracy): as SoftmaxCrossEntropy (label count, label range, mask).

#include <vector>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/mask.hpp"
#include "seqattn/core/tensor.hpp"
#include "seqattn/loss/loss_checks.hpp"

namespace seqattn {

namespace detail {
// logits row r of a (N, C) view -> the index of its largest value (first one on ties)
template <class S>
int argmax_row(const ConstMatrixMap<S>& Z, Index r) {
  Index best = 0;
  for (Index c = 1; c < Z.cols(); ++c)
    if (Z(r, c) > Z(r, best)) best = c;
  return static_cast<int>(best);
}
}  // namespace detail

/// logits (B, T, C) -> out (B*T): argmax over C at valid steps, -1 at padded ones
template <class S>
void argmax_labels(const Tensor3<S>& logits, const Mask& mask, std::vector<int>& out) {
  const Index B = logits.dimension(0), T = logits.dimension(1);
  if (B <= 0 || T <= 0 || logits.dimension(2) <= 0)
    detail::throw_shape("argmax_labels: logits expected (batch, steps, classes) with each at least 1 but got ",
                        shape_string(logits));
  detail::check_mask_fits(mask, B, T, "argmax_labels");
  out.resize(static_cast<size_t>(B * T));
  auto Z = as_matrix(logits);
  const bool holes = mask.has_holes();
  for (Index b = 0; b < B; ++b) {
    const Index len = mask.length(b, T);
    for (Index t = 0; t < T; ++t)
      out[static_cast<size_t>(b * T + t)] =
          (holes ? mask.valid(b, t, T) : t < len) ? detail::argmax_row<S>(Z, b * T + t) : -1;
  }
}

/// The argmax label of every step (-1 at masked steps), row-major over (B, T).
template <class S>
std::vector<int> argmax_labels(const Tensor3<S>& logits, const Mask& mask = Mask()) {
  std::vector<int> out;
  argmax_labels(logits, mask, out);
  return out;
}

/// logits (B, T, C), labels (B) with T == 1 or (B*T) -> correct valid steps / valid steps
template <class S>
double accuracy(const Tensor3<S>& logits, const std::vector<int>& labels, const Mask& mask = Mask()) {
  detail::check_class_labels("accuracy", logits, labels, mask);
  const Index B = logits.dimension(0), T = logits.dimension(1);
  auto Z = as_matrix(logits);
  Index correct = 0, valid = 0;
  const bool holes = mask.has_holes();
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < mask.length(b, T); ++t) {
      if (!detail::kept_step(mask, holes, b, t, T)) continue;
      ++valid;
      if (detail::argmax_row<S>(Z, b * T + t) == labels[static_cast<size_t>(b * T + t)]) ++correct;
    }
  return valid > 0 ? static_cast<double>(correct) / static_cast<double>(valid) : 0.0;
}

}  // namespace seqattn
