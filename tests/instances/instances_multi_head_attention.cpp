// Explicit instantiations for the tests (see include/seqattn/extern_templates.hpp): MultiHeadAttention, TransformerEncoderBlock.
#include "seqattn/extern_templates.hpp"

SEQATTN_INSTANTIATE(MultiHeadAttention)
SEQATTN_INSTANTIATE(TransformerEncoderBlock)
