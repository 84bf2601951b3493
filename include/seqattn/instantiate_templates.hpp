#pragma once
// Include in exactly one .cpp of a program whose other files include <seqattn/extern_templates.hpp>: defines
// every class template of seqattn for float and double (see extern_templates.hpp).

#include "seqattn/extern_templates.hpp"

SEQATTN_EACH_CLASS_TEMPLATE(SEQATTN_INSTANTIATE)
