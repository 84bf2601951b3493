#pragma once
// Optional: compile seqattn's class templates once instead of in every translation unit.
//
// seqattn is header-only, so every .cpp that uses a layer instantiates its forward and backward (heavy Eigen
// products) again. A program with many translation units (a test suite, say) can instead:
//   - include <seqattn/extern_templates.hpp> instead of <seqattn/seqattn.hpp>: it declares every class template
//     below `extern` for float and double, so using them instantiates nothing;
//   - compile exactly one .cpp that includes <seqattn/instantiate_templates.hpp> (defines them all), or several
//     that each say SEQATTN_INSTANTIATE(Dense) and so on for a part of the list, to build them in parallel.
// Compile every translation unit with the same flags and macros (OpenMP, EIGEN_* macros), or the instances
// and their users disagree. Function templates (losses' helpers, metrics) stay header-only; they are light.
// seqattn's own tests use this (tests/instances/): a test that took 19 s to compile takes 4 s.
//
// SEQATTN_EACH_CLASS_TEMPLATE(X) calls X(name) for every class template of the library (a new class template
// goes here; tests/instances/ must instantiate it, or the tests fail to link).

#include "seqattn/seqattn.hpp"

#define SEQATTN_EACH_CLASS_TEMPLATE(X)                                                                 \
  X(Layer) X(Sequential) X(Dense) X(ActivationLayer) X(Dropout) X(Conv1D) X(Embedding)                 \
  X(FeatureAttention) X(TemporalAttention) X(BatchNorm) X(LayerNorm) X(RMSNorm) X(detail::GlobalPoolBase) \
  X(GlobalMaxPool) X(GlobalAvgPool) X(LastStep) X(detail::WindowPoolBase) X(MaxPool1D) X(AvgPool1D)     \
  X(SinusoidalPositionalEncoding) X(PositionEmbedding) X(Residual) X(SeqSelfAttention)                 \
  X(MultiHeadAttention) X(SeqWeightedAttention) X(TransformerEncoderBlock) X(TransformerDecoderBlock)  \
  X(SoftmaxCrossEntropy) X(BinaryCrossEntropy) X(MeanSquaredError) X(MeanAbsoluteError) X(Adam) X(SGD)  \
  X(detail::RecurrentBase)                                                                             \
  X(LSTM) X(GRU) X(Bidirectional) X(Masking) X(LastStepAttention) X(GatedMeanPool) X(BertPool) X(MultiHead) \
  X(detail::ScaledDotAttentionCore) X(ScaledDotProductAttention) X(ResidualScaledDotProductAttention)          \
  X(detail::MergeBase) X(Merge) X(Concatenate) X(Graph)

// Explicit instantiation definitions of one class template for float and double (in one translation unit).
#define SEQATTN_INSTANTIATE(Class)         \
  template class seqattn::Class<float>;  \
  template class seqattn::Class<double>;

#define SEQATTN_DECLARE_EXTERN_(Class)            \
  extern template class seqattn::Class<float>;  \
  extern template class seqattn::Class<double>;
SEQATTN_EACH_CLASS_TEMPLATE(SEQATTN_DECLARE_EXTERN_)
#undef SEQATTN_DECLARE_EXTERN_
