#pragma once
// The seed stride of the property tests over random models and graphs: environment variable
// SEQATTN_PROPERTY_STRIDE = N (a whole number 1..1000; unset: 1). A test that runs seeds 1..n runs every N-th of
// them (1, 1 + N, 1 + 2N, ...: a spread of the same seeds, so a failure names a seed that fails at stride 1 too),
// and its thresholds that count models scale with property_count(n). ./build.sh sanitize sets 4: under ASan +
// UBSan the layers run far slower, and the sanitizers look for memory errors and undefined behaviour, which a
// quarter of the models still reach in every layer type; ./build.sh test runs every seed. Another value (0, text)
// fails the test that reads it.
//   property_stride()      N
//   property_count(n)      how many of seeds 1..n run: ceil(n / N)
//   for (int seed = 1; seed <= n; seed += property_stride())

#include <cstdlib>
#include <stdexcept>
#include <string>

namespace seqattn::testing {

inline int property_stride() {
  static const int stride = [] {
    const char* text = std::getenv("SEQATTN_PROPERTY_STRIDE");
    if (!text || !*text) return 1;
    char* end = nullptr;
    const long n = std::strtol(text, &end, 10);
    if (*end != '\0' || n < 1 || n > 1000)
      throw std::invalid_argument(std::string("SEQATTN_PROPERTY_STRIDE expected a whole number in [1, 1000] but got '") +
                                  text + "'");
    return static_cast<int>(n);
  }();
  return stride;
}

inline int property_count(int n) { return (n + property_stride() - 1) / property_stride(); }

}  // namespace seqattn::testing
