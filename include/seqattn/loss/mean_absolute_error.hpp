#pragma once
/// \file
/// MeanAbsoluteError\<S>: mean of |prediction - target| over the valid elements, with its (sub)gradient w.r.t. the
/// predictions. Equals torch.nn.functional.l1_loss (mean reduction) over the valid elements, and Keras'
/// MeanAbsoluteError / loss="mae" over the unmasked steps (Keras averages the features, then the kept steps: the
/// same mean when every step has F features).
///
/// ```unparsed
///   S forward(predictions, targets, mask = Mask())   predictions, targets (B, T, F)
///   const Tensor3<S>& grad() const                   dloss/dpredictions (B, T, F), valid until the next forward
///
/// ```
/// loss = sum over valid elements (t \< mask.length(b, T), every feature) of |p - y| / n, n = valid elements.
/// grad = sign(p - y) / n, with the subgradient 0 where p == y (torch's choice: the gradient of abs at 0 is 0;
/// tests/reference/gen_losses.py checks it on exact ties); a NaN prediction gives a NaN loss and gradient.
/// Step masks (holes, left padding): only the kept steps count; masked ones are treated as padded ones.
/// Padded elements are ignored (their targets are not read) and get gradient exactly 0; no valid element
/// gives loss 0 and gradient 0.
/// Errors (ShapeError, naming MeanAbsoluteError): targets of another shape, a mask that does not fit.
/// No allocation in a steady loop.

#include "seqattn/core/errors.hpp"
#include "seqattn/core/mask.hpp"
#include "seqattn/core/tensor.hpp"
#include "seqattn/loss/loss_checks.hpp"

namespace seqattn {

/// Mean absolute error over the kept steps and features; see the file documentation.
template <class S>
class MeanAbsoluteError {
 public:
  /// predictions (B, T, F), targets (B, T, F) -> loss; grad_ (B, T, F)
  S forward(const Tensor3<S>& predictions, const Tensor3<S>& targets, const Mask& mask = Mask()) {
    detail::check_loss_pair("MeanAbsoluteError", predictions, targets, mask, "predictions");
    const Index B = predictions.dimension(0), T = predictions.dimension(1), F = predictions.dimension(2);
    ensure_shape(grad_, B, T, F);
    valid_ = detail::valid_steps(mask, B, T) * F;
    const S scale = valid_ > 0 ? S(1) / static_cast<S>(valid_) : S(0);
    double total = 0.0;  // accumulated in double so a float loss over many elements keeps its precision
    // rows [t0, t0 + n) of sample b: d = p - y;  loss += sum |d|;  grad = sign(d) / n (0 where d == 0; a NaN d
    // stays NaN, as in torch)
    const auto rows = [&](Index b, Index t0, Index n) {
      auto P = sample_matrix(predictions, b);
      auto Y = sample_matrix(targets, b);
      auto G = sample_matrix(grad_, b);
      G.middleRows(t0, n) = P.middleRows(t0, n) - Y.middleRows(t0, n);
      total += static_cast<double>(G.middleRows(t0, n).cwiseAbs().sum());
      G.middleRows(t0, n) = G.middleRows(t0, n).unaryExpr(
          [scale](S d) { return d > S(0) ? scale : d < S(0) ? -scale : d == S(0) ? S(0) : d; });
    };
    detail::for_each_kept_rows(mask, grad_, rows);
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
