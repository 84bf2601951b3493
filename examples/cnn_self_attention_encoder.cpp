// The CNN self-attention encoder: a Conv1D stack (kernel width 8, tanh) with residual connections, two
// transformer encoder blocks (hidden 128, 8 heads, intermediate 512) and attention pooling
// (SeqWeightedAttention, the "weighted_mean" pool), then a classifier. Builds the model, prints its summary
// and runs it on a padded batch of variable-length sequences.
#include <iostream>

#include "seqattn/seqattn.hpp"
#include "seqattn/layers/seq_weighted_attention.hpp"
#include "seqattn/layers/transformer_encoder.hpp"

using namespace seqattn;

int main() {
  const Index features = 6, hidden = 128, classes = 4;
  manual_seed(42);

  Sequential<float> model(features);
  const auto conv = [] { return Conv1DOptions().padding(Padding::Same).activation(Activation::Tanh); };
  model.add<Conv1D<float>>(hidden, 8, conv());  // project to the hidden size
  for (int i = 0; i < 2; ++i) {                 // residual conv blocks: x + tanh(conv(x))
    Sequential<float> body(hidden);
    body.add<Conv1D<float>>(hidden, 8, conv());
    model.add<Residual<float>>(std::move(body));
  }
  for (int i = 0; i < 2; ++i) model.add<TransformerEncoderBlock<float>>(8, 512);
  model.add<SeqWeightedAttention<float>>();  // (B, T, 128) -> (B, 1, 128)
  model.add<Dense<float>>(classes);
  std::cout << model.summary();

  // A batch of 3 sequences padded to 50 steps, with 50, 31 and 12 valid steps.
  Tensor3<float> x(3, 50, features);
  Rng rng(7);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.normal());
  const Mask mask = Mask::from_lengths({50, 31, 12});
  const Tensor3<float>& logits = model.predict(x, mask);
  std::cout << "\nlogits " << shape_string(logits) << ":\n";
  for (Index b = 0; b < logits.dimension(0); ++b) {
    std::cout << "  sequence " << b << " (" << mask.length(b, 50) << " steps):";
    for (Index c = 0; c < classes; ++c) std::cout << ' ' << logits(b, 0, c);
    std::cout << '\n';
  }
  const auto& pool = model.layer_as<SeqWeightedAttention<float>>(5);
  std::cout << "attention pooling weights of sequence 2: " << pool.attention().row(2).head(12).sum()
            << " on its 12 valid steps, " << pool.attention().row(2).tail(38).sum() << " on padding\n";
  return 0;
}
