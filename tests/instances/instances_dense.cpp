// Explicit instantiations for the tests (see include/seqattn/extern_templates.hpp): Dense, activations, Dropout.
#include "seqattn/extern_templates.hpp"

SEQATTN_INSTANTIATE(Dense)
SEQATTN_INSTANTIATE(ActivationLayer)
SEQATTN_INSTANTIATE(Dropout)
