// Explicit instantiations for the tests (see include/seqattn/extern_templates.hpp): FeatureAttention, TemporalAttention, SeqWeightedAttention, LastStepAttention.
#include "seqattn/extern_templates.hpp"

SEQATTN_INSTANTIATE(FeatureAttention)
SEQATTN_INSTANTIATE(TemporalAttention)
SEQATTN_INSTANTIATE(SeqWeightedAttention)
SEQATTN_INSTANTIATE(LastStepAttention)
