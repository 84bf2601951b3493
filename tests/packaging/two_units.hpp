#pragma once
// Two translation units (two_units_a.cpp, two_units_b.cpp) both include <seqattn/seqattn.hpp> and run the
// same float and double layers; two_units_main.cpp links them into one program and compares.

#include <cstdint>
#include <string>

struct UnitResult {
  double dense_float = 0;   // sum of a Dense<float> forward and backward
  double dense_double = 0;  // sum of a Dense<double> forward and backward
  std::string describe;     // describe() of the layers used
  std::uint64_t seed = 0;   // seqattn::next_seed() drawn by this unit
};

UnitResult run_unit_a();
UnitResult run_unit_b();
