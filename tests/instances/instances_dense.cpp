// Explicit instantiations for the tests (see include/seqattn/extern_templates.hpp): Dense, activations, Dropout,
// Masking.
#include "seqattn/extern_templates.hpp"

SEQATTN_INSTANTIATE(Dense)
SEQATTN_INSTANTIATE(ActivationLayer)
SEQATTN_INSTANTIATE(Dropout)
SEQATTN_INSTANTIATE(Masking)
