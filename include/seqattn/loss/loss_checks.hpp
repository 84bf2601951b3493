#pragma once
/// \file
/// Input checks shared by the losses and metrics (seqattn::detail): class labels against (B, T, C) logits,
/// prediction/target pairs of one shape, and the number of valid steps of a masked batch; and the loop of the
/// elementwise losses over the kept steps (for_each_kept_rows). Step masks (holes, left padding, core/mask.hpp): the
/// losses and metrics use the kept steps only; a masked step is never read.
/// `who` is a C string so that a check that passes allocates nothing (a steady loop allocates nothing).

#include <string>
#include <vector>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/mask.hpp"
#include "seqattn/core/tensor.hpp"
#include "seqattn/detail/step_runs.hpp"

namespace seqattn::detail {

// Throws unless the mask fits a (B, T) batch; Mask::check (which builds the message) runs only when it does not.
inline void check_mask_fits(const Mask& mask, Index B, Index T, const char* who) {
  if (!mask.fits(B, T)) mask.check(B, T, who);
}

// Checks logits (B, T, C) against class labels (shared by SoftmaxCrossEntropy and accuracy): one label per
// sequence (labels.size() == B, requires T == 1) or one per step (B * T, row-major). Only the labels of
// valid steps are range-checked, so padded steps may hold any value. Throws ShapeError naming `who`.
template <class S>
void check_class_labels(const char* who, const Tensor3<S>& logits, const std::vector<int>& labels, const Mask& mask) {
  const Index B = logits.dimension(0), T = logits.dimension(1), C = logits.dimension(2);
  if (B <= 0 || T <= 0 || C <= 0)
    throw_shape(who, ": logits expected (batch, steps, classes) with each at least 1 but got ", shape_string(logits));
  const Index n = static_cast<Index>(labels.size());
  if (n != B && n != B * T) {
    if (T == 1) throw_shape(who, ": labels expected ", B, " (one per sequence) but got ", n);
    throw_shape(who, ": labels expected ", B, " (one per sequence) or ", B * T, " (one per step) but got ", n);
  }
  if (n != B * T)
    throw_shape(who, ": one label per sequence (", B, " labels) requires logits with 1 step but got ",
                shape_string(logits), "; pass ", B * T, " labels (one per step) or pool over time first");
  check_mask_fits(mask, B, T, who);
  const bool holes = mask.has_holes();
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < mask.length(b, T); ++t) {
      if (!kept_step(mask, holes, b, t, T)) continue;  // a masked step's label is not read
      const int label = labels[static_cast<size_t>(b * T + t)];
      if (label < 0 || label >= C) {
        if (T == 1) throw_shape(who, ": label ", b, " is ", label, " but expected a class in [0, ", C, ")");
        throw_shape(who, ": label ", b * T + t, " (sequence ", b, ", step ", t, ") is ", label,
                    " but expected a class in [0, ", C, ")");
      }
    }
}

// Number of valid (kept) steps of a (B, T) batch.
inline Index valid_steps(const Mask& mask, Index B, Index T) {
  Index n = 0;
  for (Index b = 0; b < B; ++b) n += mask.count(b, T);
  return n;
}

// Shared check of the elementwise losses: prediction and target of one shape (each dimension >= 1), mask fits.
template <class S>
void check_loss_pair(const char* who, const Tensor3<S>& pred, const Tensor3<S>& target, const Mask& mask,
                     const char* pred_name) {
  if (pred.dimension(0) <= 0 || pred.dimension(1) <= 0 || pred.dimension(2) <= 0)
    throw_shape(who, ": ", pred_name, " expected at least one sequence, step and feature but got ", shape_string(pred));
  if (!same_shape(pred, target))
    throw_shape(who, ": targets expected ", shape_string(pred), " (the shape of the ", pred_name, ") but got ",
                shape_string(target));
  check_mask_fits(mask, pred.dimension(0), pred.dimension(1), who);
}

// The loop of the elementwise losses (MeanSquaredError, MeanAbsoluteError, BinaryCrossEntropy): for every sequence
// b of grad (B, T, F), calls rows(b, t0, n) on each run [t0, t0 + n) of kept steps, in step order (lengths form: the
// one run [0, length) when length > 0), and sets grad's rows of every other step to 0. A loss accumulates its total
// in that order, so each keeps the bits of its former loop.
template <class S, class Rows>
void for_each_kept_rows(const Mask& mask, Tensor3<S>& grad, Rows&& rows) {
  const Index B = grad.dimension(0), T = grad.dimension(1);
  if (mask.has_holes()) {  // step mask: the kept runs of each sequence; 0 elsewhere
    for (Index b = 0; b < B; ++b) {
      sample_matrix(grad, b).setZero();
      for_each_kept_run(mask, b, T, [&](Index t0, Index n) { rows(b, t0, n); });
    }
    return;
  }
  for (Index b = 0; b < B; ++b) {
    const Index len = mask.length(b, T);  // rows t >= len are padding
    if (len > 0) rows(b, Index(0), len);
    if (len < T) sample_matrix(grad, b).bottomRows(T - len).setZero();
  }
}

}  // namespace seqattn::detail
