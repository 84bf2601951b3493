// Explicit instantiations for the tests (see include/seqattn/extern_templates.hpp): global and windowed pooling.
#include "seqattn/extern_templates.hpp"

SEQATTN_INSTANTIATE(detail::GlobalPoolBase)
SEQATTN_INSTANTIATE(GlobalMaxPool)
SEQATTN_INSTANTIATE(GlobalAvgPool)
SEQATTN_INSTANTIATE(LastStep)
SEQATTN_INSTANTIATE(detail::WindowPoolBase)
SEQATTN_INSTANTIATE(MaxPool1D)
SEQATTN_INSTANTIATE(AvgPool1D)
SEQATTN_INSTANTIATE(GatedMeanPool)
SEQATTN_INSTANTIATE(BertPool)
