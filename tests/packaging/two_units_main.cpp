// Links two translation units that both include <seqattn/seqattn.hpp> (a non-inline free function in any
// header fails this link) and checks that both run the same code and share the library's global state.
#include <seqattn/seqattn.hpp>

#include <cmath>
#include <cstdio>

#include "two_units.hpp"

int main() {
  int failures = 0;
  auto expect = [&failures](bool ok, const char* what) {
    if (!ok) {
      std::printf("FAILED: %s\n", what);
      ++failures;
    }
  };
  seqattn::manual_seed(42);
  const UnitResult a = run_unit_a();
  const UnitResult b = run_unit_b();
  expect(a.dense_float == b.dense_float, "Dense<float> gives the same result in both translation units");
  expect(a.dense_double == b.dense_double, "Dense<double> gives the same result in both translation units");
  expect(std::abs(a.dense_float - a.dense_double) < 1e-4, "Dense<float> and Dense<double> agree");
  expect(a.dense_double != 0.0, "the layers computed something");
  expect(a.describe == b.describe, "describe() is the same in both translation units");
  // One seed sequence for the whole program: the units draw consecutive seeds, not the same one.
  expect(a.seed != b.seed, "next_seed() state is shared by both translation units");
  seqattn::manual_seed(42);
  expect(run_unit_b().seed == a.seed, "manual_seed() from main resets the sequence both units use");
  std::printf("two translation units: float %.9g, double %.17g, %s\n", a.dense_float, a.dense_double,
              failures == 0 ? "ok" : "FAILED");
  return failures == 0 ? 0 : 1;
}
