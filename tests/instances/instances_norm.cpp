// Explicit instantiations for the tests (see include/seqattn/extern_templates.hpp): LayerNorm, RMSNorm, BatchNorm.
#include "seqattn/extern_templates.hpp"

SEQATTN_INSTANTIATE(LayerNorm)
SEQATTN_INSTANTIATE(RMSNorm)
SEQATTN_INSTANTIATE(BatchNorm)
