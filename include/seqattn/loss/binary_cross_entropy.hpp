#pragma once
/// \file
/// BinaryCrossEntropy\<S>: sigmoid followed by binary cross entropy, on logits, in the stable form
///
/// ```unparsed
///     l(z, y) = max(z, 0) - z * y + log(1 + exp(-|z|))        (= -y log s(z) - (1 - y) log(1 - s(z)))
/// ```
/// Equals torch.nn.functional.binary_cross_entropy_with_logits (mean reduction) over the valid elements.
///
/// ```unparsed
///   S forward(logits, targets, mask = Mask())   logits, targets (B, T, F); targets in [0, 1]
///   const Tensor3<S>& grad() const              dloss/dlogits (B, T, F), valid until the next forward
///
/// ```
/// loss = mean of l over valid elements (t \< mask.length(b, T), every feature); padded elements are ignored
/// (their targets are not read) and get gradient exactly 0; no valid element gives loss 0 and gradient 0.
/// grad = (sigmoid(z) - y) / (number of valid elements). Step masks (holes, left padding): masked steps are treated
/// as padded ones (their targets are not read or checked).
/// Errors (ShapeError, naming BinaryCrossEntropy): targets of another shape, a target outside [0, 1] at a
/// valid element (naming its position and value), a mask that does not fit. No allocation in a steady loop.

#include <cmath>
#include <string>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/mask.hpp"
#include "seqattn/core/tensor.hpp"
#include "seqattn/loss/loss_checks.hpp"

namespace seqattn {

/// Binary cross-entropy on logits (sigmoid inside), averaged over the valid elements; see the file documentation.
template <class S>
class BinaryCrossEntropy {
 public:
  /// logits (B, T, F), targets (B, T, F) -> loss; grad_ (B, T, F)
  S forward(const Tensor3<S>& logits, const Tensor3<S>& targets, const Mask& mask = Mask()) {
    detail::check_loss_pair("BinaryCrossEntropy", logits, targets, mask, "logits");
    const Index B = logits.dimension(0), T = logits.dimension(1), F = logits.dimension(2);
    const bool holes = mask.has_holes();
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < mask.length(b, T); ++t)
        for (Index f = 0; f < F && detail::kept_step(mask, holes, b, t, T); ++f) {
          const S y = targets(b, t, f);
          if (!(y >= S(0) && y <= S(1)))
            detail::throw_shape("BinaryCrossEntropy: target at (", b, ", ", t, ", ", f, ") is ", y,
                                " but expected a value in [0, 1]");
        }
    ensure_shape(grad_, B, T, F);
    valid_ = detail::valid_steps(mask, B, T) * F;
    const S inv_n = valid_ > 0 ? S(1) / static_cast<S>(valid_) : S(0);
    double total = 0.0;
    // rows [t0, t0 + n) of sample b, element by element in step order
    detail::for_each_kept_rows(mask, grad_, [&](Index b, Index t0, Index n) {
      const S* z = logits.data() + (b * T + t0) * F;
      const S* y = targets.data() + (b * T + t0) * F;
      S* g = grad_.data() + (b * T + t0) * F;
      for (Index i = 0; i < n * F; ++i) {
        // e = exp(-|z|) never overflows; l = max(z, 0) - z y + log1p(e)
        const S e = std::exp(-std::abs(z[i]));
        total += static_cast<double>((z[i] > S(0) ? z[i] : S(0)) - z[i] * y[i] + std::log1p(e));
        // dl/dz = sigmoid(z) - y, sigmoid from e without overflow on either side
        const S sig = z[i] >= S(0) ? S(1) / (S(1) + e) : e / (S(1) + e);
        g[i] = (sig - y[i]) * inv_n;
      }
    });
    loss_ = valid_ > 0 ? static_cast<S>(total / static_cast<double>(valid_)) : S(0);
    return loss_;
  }

  /// The gradient of the last forward's loss with respect to the logits.
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
