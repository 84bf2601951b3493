// Explicit instantiations for the tests (see include/seqattn/extern_templates.hpp): SeqSelfAttention.
#include "seqattn/extern_templates.hpp"

SEQATTN_INSTANTIATE(SeqSelfAttention)
