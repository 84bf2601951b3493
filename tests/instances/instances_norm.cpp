// Explicit instantiations for the tests (see include/seqattn/extern_templates.hpp): LayerNorm, BatchNorm.
#include "seqattn/extern_templates.hpp"

SEQATTN_INSTANTIATE(LayerNorm)
SEQATTN_INSTANTIATE(BatchNorm)
