// Explicit instantiations for the tests (see include/seqattn/extern_templates.hpp): positional encodings.
#include "seqattn/extern_templates.hpp"

SEQATTN_INSTANTIATE(SinusoidalPositionalEncoding)
SEQATTN_INSTANTIATE(PositionEmbedding)
