#pragma once
/// \file
/// train_step / evaluate_loss: the objective a model trains on, with its regularization folded in, so a training
/// loop cannot forget it (Keras adds model.losses to the loss the same way).
///
/// ```unparsed
///   const StepLoss<float> l = train_step(model, loss, x, mask, labels);   forward (Mode::Train), loss, backward
///   adam.step();  adam.zero_grad();                                       the optimizer stays the caller's
///   l.total()  = l.data + l.regularization
///   evaluate_loss(model, loss, x, mask, labels)                          the same objective in Mode::Infer, no
///                                                                          backward (validation)
///
///   data             loss.forward(y, target, model.output_mask()): any seqattn loss (MeanSquaredError,
///                    SoftmaxCrossEntropy, BinaryCrossEntropy) or a user type with that forward and grad()
///   regularization   model.regularization_loss() after the forward: the L1/L2 weight penalties of every layer
///                    (core/weight_rules.hpp) and the attention regularizers (SeqSelfAttention), whose gradients
///                    the backward has already added into the parameter gradients
/// ```
/// Gradients are added into the parameters' (zero them between steps: optimizer.zero_grad() or model.zero_grad()).
/// Errors are those of the model and the loss (shapes, masks), unchanged.

#include "seqattn/core/mask.hpp"
#include "seqattn/core/tensor.hpp"
#include "seqattn/model/sequential.hpp"

namespace seqattn {

/// The loss of one training step, split into the data loss and the regularization.
template <class S>
struct StepLoss {
  S data = S(0);  ///< the loss of the predictions
  S regularization = S(0);  ///< model.regularization_loss()
  /// data + regularization.
  S total() const { return data + regularization; }
};

/// x (B, T, in_features), mask of x, target as `loss` takes it -> the step's objective; gradients accumulated.
template <class S, class Loss, class Target>
StepLoss<S> train_step(Sequential<S>& model, Loss& loss, const Tensor3<S>& x, const Mask& mask, const Target& target) {
  const Tensor3<S>& y = model.forward(x, mask, Mode::Train);
  StepLoss<S> step;
  step.data = loss.forward(y, target, model.output_mask());
  model.backward(loss.grad());
  step.regularization = model.regularization_loss();
  return step;
}

/// The objective of a prediction (Mode::Infer: no dropout, batch norm's running statistics), no backward.
template <class S, class Loss, class Target>
StepLoss<S> evaluate_loss(Sequential<S>& model, Loss& loss, const Tensor3<S>& x, const Mask& mask,
                          const Target& target) {
  const Tensor3<S>& y = model.forward(x, mask, Mode::Infer);
  StepLoss<S> step;
  step.data = loss.forward(y, target, model.output_mask());
  step.regularization = model.regularization_loss();
  return step;
}

}  // namespace seqattn
