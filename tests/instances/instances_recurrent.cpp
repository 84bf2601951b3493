// Explicit instantiations for the tests (see include/seqattn/extern_templates.hpp): LSTM, GRU, Bidirectional.
#include "seqattn/extern_templates.hpp"

SEQATTN_INSTANTIATE(detail::RecurrentBase)
SEQATTN_INSTANTIATE(LSTM)
SEQATTN_INSTANTIATE(GRU)
SEQATTN_INSTANTIATE(Bidirectional)
