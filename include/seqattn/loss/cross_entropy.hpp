#pragma once
/// \file
/// SoftmaxCrossEntropy\<S>: softmax over the classes followed by the negative log-likelihood, fused and
/// numerically stable (log-sum-exp with the row maximum subtracted), with its gradient w.r.t. the logits.
/// Equals torch.nn.functional.cross_entropy (mean reduction; padded steps as ignore_index).
///
/// ```unparsed
///   S forward(logits, labels, mask = Mask())    logits (B, T, C), returns the loss and stores grad()
///   const Tensor3<S>& grad() const              dloss/dlogits, (B, T, C), valid until the next forward
///
/// ```
/// Labels (class indices in [0, C)), one of two conventions:
///
/// ```unparsed
///   one per sequence  labels.size() == B, requires T == 1 (e.g. after global pooling): labels[b]
///   one per step      labels.size() == B * T, row-major: labels[b * T + t]
/// ```
/// loss = mean over valid steps (t \< mask.length(b, T)) of  logsumexp(z[b, t, :]) - z[b, t, label].
/// Step masks (holes, left padding): masked steps are treated as padded ones.
/// Padded steps are ignored: their label is not read (any value, e.g. -1) and their gradient is exactly 0.
/// With no valid step the loss is 0 and the gradient is 0.
/// grad = (softmax(z) - onehot(label)) / (number of valid steps) at valid steps.
/// Label smoothing (SoftmaxCrossEntropy(eps), eps in [0, 1), as torch's cross_entropy(label_smoothing=eps)): the
/// target is (1 - eps) * onehot(label) + eps / C, so
///
/// ```unparsed
///   loss_r = (1 - eps) * (logsumexp(z) - z_label) + eps / C * sum_c (logsumexp(z) - z_c)
///   grad   = (softmax(z) - (1 - eps) * onehot(label) - eps / C) / n.
/// ```
/// It keeps a classifier from driving its logits to infinity on a small training set (a regularizer).
/// Errors (ShapeError): a wrong number of labels, a label out of range (naming its index and value), a mask
/// that does not fit the logits. Buffers are members: a steady loop allocates nothing.

#include <cmath>
#include <string>
#include <vector>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/mask.hpp"
#include "seqattn/core/tensor.hpp"
#include "seqattn/loss/loss_checks.hpp"

namespace seqattn {

/// Softmax cross-entropy on logits with integer labels and optional label smoothing, averaged over the kept
/// steps; see the file documentation.
template <class S>
class SoftmaxCrossEntropy {
 public:
  /// label_smoothing in [0, 1) (ConfigError otherwise).
  explicit SoftmaxCrossEntropy(double label_smoothing = 0.0) : smoothing_(label_smoothing) {
    if (!(label_smoothing >= 0.0 && label_smoothing < 1.0))
      detail::throw_config("SoftmaxCrossEntropy: expected label_smoothing in [0, 1) but got ", label_smoothing);
  }
  /// The label smoothing.
  double label_smoothing() const { return smoothing_; }

  /// logits (B, T, C), labels (B) with T == 1 or (B*T) -> loss; grad_ (B, T, C)
  S forward(const Tensor3<S>& logits, const std::vector<int>& labels, const Mask& mask = Mask()) {
    detail::check_class_labels("SoftmaxCrossEntropy", logits, labels, mask);
    const Index B = logits.dimension(0), T = logits.dimension(1), C = logits.dimension(2);
    ensure_shape(grad_, B, T, C);
    valid_ = detail::valid_steps(mask, B, T);
    const S inv_n = valid_ > 0 ? S(1) / static_cast<S>(valid_) : S(0);
    auto Z = as_matrix(logits);
    auto G = as_matrix(grad_);
    double total = 0.0;  // accumulated in double so a float loss over many steps keeps its precision
    const bool holes = mask.has_holes();
    const S keep = static_cast<S>(1.0 - smoothing_), spread = static_cast<S>(smoothing_ / static_cast<double>(C));
    for (Index b = 0; b < B; ++b) {
      const Index len = mask.length(b, T);
      for (Index t = 0; t < T; ++t) {
        const Index r = b * T + t;
        if (holes ? !mask.valid(b, t, T) : t >= len) {
          G.row(r).setZero();  // padded or masked step: no loss, no gradient
          continue;
        }
        const int label = labels[static_cast<size_t>(r)];
        // p = exp(z - max) / sum;  loss_r = log(sum) - (z_label - max) = logsumexp(z) - z_label
        const S mx = Z.row(r).maxCoeff();
        G.row(r) = (Z.row(r).array() - mx).exp().matrix();
        const S sum = G.row(r).sum();
        const S lse = std::log(sum);  // logsumexp(z) - max
        total += static_cast<double>(keep * (lse - (Z(r, label) - mx)));
        if (smoothing_ > 0.0)  // eps / C * sum_c (logsumexp(z) - z_c)
          total += static_cast<double>(spread * (static_cast<S>(C) * lse - (Z.row(r).array() - mx).sum()));
        // dloss/dz = (p - (1 - eps) onehot(label) - eps / C) / n
        G.row(r) *= inv_n / sum;
        G(r, label) -= keep * inv_n;
        if (smoothing_ > 0.0) G.row(r).array() -= spread * inv_n;
      }
    }
    loss_ = valid_ > 0 ? static_cast<S>(total / static_cast<double>(valid_)) : S(0);
    return loss_;
  }

  /// The gradient of the last forward's loss with respect to the logits.
  const Tensor3<S>& grad() const { return grad_; }
  /// The loss of the last forward.
  S loss() const { return loss_; }
  Index valid_count() const { return valid_; }  ///< valid steps of the last forward

 private:
  double smoothing_ = 0.0;
  Tensor3<S> grad_;
  S loss_ = S(0);
  Index valid_ = 0;
};

}  // namespace seqattn
