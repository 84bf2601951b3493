// A user program: one Dense layer through the umbrella header. Prints "consumer ok" when y = x W + b and the
// version macros and seqattn::version() say the version the build reports (SEQATTN_EXPECTED_MAJOR, _MINOR, _PATCH,
// _STRING: set by consumer/CMakeLists.txt from the CMake package, or by run_consumer.cmake for the pkg-config build).
#include <seqattn/seqattn.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>

#if !defined(SEQATTN_EXPECTED_MAJOR) || !defined(SEQATTN_EXPECTED_MINOR) || !defined(SEQATTN_EXPECTED_PATCH) || \
    !defined(SEQATTN_EXPECTED_STRING)
#error "define SEQATTN_EXPECTED_MAJOR, _MINOR, _PATCH and _STRING (-D...): the version the build reports"
#endif
static_assert(SEQATTN_VERSION_MAJOR == SEQATTN_EXPECTED_MAJOR && SEQATTN_VERSION_MINOR == SEQATTN_EXPECTED_MINOR &&
                  SEQATTN_VERSION_PATCH == SEQATTN_EXPECTED_PATCH,
              "SEQATTN_VERSION_MAJOR/MINOR/PATCH differ from the version the build reports");
static_assert(seqattn::version().major == SEQATTN_EXPECTED_MAJOR &&
                  seqattn::version().minor == SEQATTN_EXPECTED_MINOR &&
                  seqattn::version().patch == SEQATTN_EXPECTED_PATCH,
              "seqattn::version() differs from the version the build reports");
static_assert(SEQATTN_VERSION_AT_LEAST(SEQATTN_EXPECTED_MAJOR, SEQATTN_EXPECTED_MINOR, SEQATTN_EXPECTED_PATCH) &&
                  !SEQATTN_VERSION_AT_LEAST(SEQATTN_EXPECTED_MAJOR, SEQATTN_EXPECTED_MINOR + 1, 0),
              "SEQATTN_VERSION_AT_LEAST");

int main() {
  if (std::strcmp(SEQATTN_VERSION_STRING, SEQATTN_EXPECTED_STRING) != 0 ||
      std::strcmp(seqattn::version_string(), SEQATTN_EXPECTED_STRING) != 0) {
    std::printf("consumer FAILED: SEQATTN_VERSION_STRING \"%s\", version_string() \"%s\", expected \"%s\"\n",
                SEQATTN_VERSION_STRING, seqattn::version_string(), SEQATTN_EXPECTED_STRING);
    return 1;
  }
  seqattn::Dense<float> dense(2, 3, seqattn::DenseOptions().seed(1));
  dense.kernel() << 1, 2, 3, 4, 5, 6;  // W (2, 3)
  dense.bias() << 0.5f, -0.5f, 1;      // b (3)
  seqattn::Tensor3<float> x(1, 2, 2);  // (B, T, F)
  x.setValues({{{1, 0}, {1, 1}}});
  const seqattn::Tensor3<float>& y = dense.forward(x);
  const float expected[2][3] = {{1.5f, 1.5f, 4.0f}, {5.5f, 6.5f, 10.0f}};
  for (int t = 0; t < 2; ++t)
    for (int j = 0; j < 3; ++j)
      if (std::abs(y(0, t, j) - expected[t][j]) > 1e-6f) {
        std::printf("consumer FAILED: y(0, %d, %d) = %g, expected %g\n", t, j, y(0, t, j), expected[t][j]);
        return 1;
      }
  std::printf("consumer ok: seqattn %s, %s output %s\n", seqattn::version_string(), dense.describe().c_str(),
              seqattn::shape_string(y).c_str());
  return 0;
}
