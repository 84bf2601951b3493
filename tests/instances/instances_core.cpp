// Explicit instantiations for the tests (see include/seqattn/extern_templates.hpp): Layer, Sequential, Residual, merges, Graph, losses, optimizers.
#include "seqattn/extern_templates.hpp"

SEQATTN_INSTANTIATE(Layer)
SEQATTN_INSTANTIATE(Sequential)
SEQATTN_INSTANTIATE(Residual)
SEQATTN_INSTANTIATE(detail::MergeBase)
SEQATTN_INSTANTIATE(Merge)
SEQATTN_INSTANTIATE(Concatenate)
SEQATTN_INSTANTIATE(Graph)
SEQATTN_INSTANTIATE(SoftmaxCrossEntropy)
SEQATTN_INSTANTIATE(BinaryCrossEntropy)
SEQATTN_INSTANTIATE(MeanSquaredError)
SEQATTN_INSTANTIATE(MeanAbsoluteError)
SEQATTN_INSTANTIATE(Adam)
SEQATTN_INSTANTIATE(SGD)
