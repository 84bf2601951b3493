// Translation unit A: includes the umbrella header and instantiates float and double layers (see two_units.hpp).
#include <seqattn/seqattn.hpp>

#include "two_units.hpp"
#include "two_units_body.hpp"

UnitResult run_unit_a() { return run_unit_body(); }
