// Explicit instantiations for the tests (see include/seqattn/extern_templates.hpp): Conv1D, Embedding.
#include "seqattn/extern_templates.hpp"

SEQATTN_INSTANTIATE(Conv1D)
SEQATTN_INSTANTIATE(Embedding)
