// Explicit instantiations for the tests (see include/seqattn/extern_templates.hpp): MultiHeadAttention, TransformerEncoderBlock,
// TransformerDecoderBlock.
#include "seqattn/extern_templates.hpp"

SEQATTN_INSTANTIATE(MultiHeadAttention)
SEQATTN_INSTANTIATE(TransformerEncoderBlock)
SEQATTN_INSTANTIATE(TransformerDecoderBlock)
