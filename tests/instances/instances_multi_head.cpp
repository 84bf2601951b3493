// Explicit instantiations for the tests (see include/seqattn/extern_templates.hpp): MultiHead.
#include "seqattn/extern_templates.hpp"

SEQATTN_INSTANTIATE(MultiHead)
