// Explicit instantiations for the tests (see include/seqattn/extern_templates.hpp): FeatureAttention, TemporalAttention, SeqWeightedAttention, LastStepAttention,
// ScaledDotProductAttention, ResidualScaledDotProductAttention.
#include "seqattn/extern_templates.hpp"

SEQATTN_INSTANTIATE(FeatureAttention)
SEQATTN_INSTANTIATE(TemporalAttention)
SEQATTN_INSTANTIATE(SeqWeightedAttention)
SEQATTN_INSTANTIATE(LastStepAttention)
SEQATTN_INSTANTIATE(detail::ScaledDotAttentionCore)
SEQATTN_INSTANTIATE(ScaledDotProductAttention)
SEQATTN_INSTANTIATE(ResidualScaledDotProductAttention)
