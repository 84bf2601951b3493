// Compiles the umbrella header with -Wall -Wextra -Wpedantic -Werror (tests/packaging/CMakeLists.txt) and
// explicitly instantiates every member function of the public class templates in float and double, so a
// warning anywhere in a layer, loss or optimizer fails the tests build. Add new public class templates here.
#include <seqattn/seqattn.hpp>

#define SEQATTN_INSTANTIATE(Class)      \
  template class seqattn::Class<float>; \
  template class seqattn::Class<double>;

// Layers and models
SEQATTN_INSTANTIATE(Dense)
SEQATTN_INSTANTIATE(ActivationLayer)
SEQATTN_INSTANTIATE(Dropout)
SEQATTN_INSTANTIATE(Conv1D)
SEQATTN_INSTANTIATE(Embedding)
SEQATTN_INSTANTIATE(FeatureAttention)
SEQATTN_INSTANTIATE(TemporalAttention)
SEQATTN_INSTANTIATE(BatchNorm)
SEQATTN_INSTANTIATE(GlobalMaxPool)
SEQATTN_INSTANTIATE(GlobalAvgPool)
SEQATTN_INSTANTIATE(LastStep)
SEQATTN_INSTANTIATE(LayerNorm)
SEQATTN_INSTANTIATE(MaxPool1D)
SEQATTN_INSTANTIATE(AvgPool1D)
SEQATTN_INSTANTIATE(SinusoidalPositionalEncoding)
SEQATTN_INSTANTIATE(PositionEmbedding)
SEQATTN_INSTANTIATE(SeqSelfAttention)
SEQATTN_INSTANTIATE(SeqWeightedAttention)
SEQATTN_INSTANTIATE(MultiHeadAttention)
SEQATTN_INSTANTIATE(Residual)
SEQATTN_INSTANTIATE(LSTM)
SEQATTN_INSTANTIATE(GRU)
SEQATTN_INSTANTIATE(Bidirectional)
SEQATTN_INSTANTIATE(Sequential)
// Losses and optimizers
SEQATTN_INSTANTIATE(SoftmaxCrossEntropy)
SEQATTN_INSTANTIATE(BinaryCrossEntropy)
SEQATTN_INSTANTIATE(MeanSquaredError)
SEQATTN_INSTANTIATE(Adam)
SEQATTN_INSTANTIATE(SGD)
