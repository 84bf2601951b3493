// SeqSelfAttention: a steady training loop (same shapes, forward + backward) allocates nothing, for both
// attention types, global and windowed, history_only, with activation, regularizers and a mask.
#define EIGEN_RUNTIME_NO_MALLOC
#include <gtest/gtest.h>

#include "seqattn/layers/seq_self_attention.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;

TEST(SeqSelfAttentionNoMalloc, SteadyForwardBackwardAllocatesNothing) {
  const auto xd = seqattn::testing::random_tensor(3, 12, 8, 1);
  Tensor3<float> x(3, 12, 8);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(xd.data()[i]);
  const Tensor3<float> dy = x;
  const Mask mask = Mask::from_lengths({12, 7, 0});
  for (const auto type : {AttentionType::Additive, AttentionType::Multiplicative})
    for (const Index width : {0, 1, 4, 5})
      for (const bool history_only : {false, true}) {
        SeqSelfAttentionOptions o;
        o.attention_type(type).units(6).history_only(history_only).attention_activation(Activation::Sigmoid);
        o.attention_regularizer_weight(0.1).kernel_regularizer({0.01, 0.01}).bias_regularizer({0.0, 0.01});
        if (width > 0) o.attention_width(width);
        SeqSelfAttention<float> layer(8, o);
        layer.forward(x, mask, Mode::Train);  // sizes every buffer
        layer.backward(x, mask, dy);
        Eigen::internal::set_is_malloc_allowed(false);
        for (int step = 0; step < 2; ++step) {
          layer.forward(x, mask, Mode::Train);
          layer.backward(x, mask, dy);
          (void)layer.regularization_loss();
        }
        Eigen::internal::set_is_malloc_allowed(true);
        SUCCEED() << layer.describe();
      }
}
