#pragma once
/// \file
/// MeanSquaredError\<S>: mean of (prediction - target)^2 over the valid elements, with its gradient w.r.t.
/// the predictions. Equals torch.nn.functional.mse_loss (mean reduction) over the valid elements.
///
/// ```unparsed
///   S forward(predictions, targets, mask = Mask())   predictions, targets (B, T, F)
///   const Tensor3<S>& grad() const                   dloss/dpredictions (B, T, F), valid until the next forward
///
/// ```
/// loss = sum over valid elements (t \< mask.length(b, T), every feature) of (p - y)^2 / n, n = valid elements.
/// Step masks (holes, left padding): only the kept steps count; masked ones are treated as padded ones.
/// Padded elements are ignored (their targets are not read) and get gradient exactly 0; no valid element
/// gives loss 0 and gradient 0.  grad = 2 (p - y) / n.
/// Errors (ShapeError, naming MeanSquaredError): targets of another shape, a mask that does not fit.
/// No allocation in a steady loop.

#include "seqattn/core/errors.hpp"
#include "seqattn/core/mask.hpp"
#include "seqattn/core/tensor.hpp"
#include "seqattn/loss/loss_checks.hpp"

namespace seqattn {

/// Mean squared error over the kept steps and features; see the file documentation.
template <class S>
class MeanSquaredError {
 public:
  /// predictions (B, T, F), targets (B, T, F) -> loss; grad_ (B, T, F)
  S forward(const Tensor3<S>& predictions, const Tensor3<S>& targets, const Mask& mask = Mask()) {
    detail::check_loss_pair("MeanSquaredError", predictions, targets, mask, "predictions");
    const Index B = predictions.dimension(0), T = predictions.dimension(1), F = predictions.dimension(2);
    ensure_shape(grad_, B, T, F);
    valid_ = detail::valid_steps(mask, B, T) * F;
    const S scale = valid_ > 0 ? S(2) / static_cast<S>(valid_) : S(0);
    double total = 0.0;  // accumulated in double so a float loss over many elements keeps its precision
    // rows [t0, t0 + n) of sample b: d = p - y;  loss += sum d^2;  grad = 2 d / n
    detail::for_each_kept_rows(mask, grad_, [&](Index b, Index t0, Index n) {
      auto P = sample_matrix(predictions, b);
      auto Y = sample_matrix(targets, b);
      auto G = sample_matrix(grad_, b);
      G.middleRows(t0, n) = P.middleRows(t0, n) - Y.middleRows(t0, n);
      total += static_cast<double>(G.middleRows(t0, n).squaredNorm());
      G.middleRows(t0, n) *= scale;
    });
    loss_ = valid_ > 0 ? static_cast<S>(total / static_cast<double>(valid_)) : S(0);
    return loss_;
  }

  /// The gradient of the last forward's loss with respect to the predictions.
  const Tensor3<S>& grad() const { return grad_; }
  /// The loss of the last forward.
  S loss() const { return loss_; }
  Index valid_count() const { return valid_; }  ///< valid elements of the last forward

 private:
  Tensor3<S> grad_;
  S loss_ = S(0);
  Index valid_ = 0;
};

}  // namespace seqattn
