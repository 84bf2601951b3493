// A user program: one Dense layer through the umbrella header. Prints "consumer ok" when y = x W + b.
#include <seqattn/seqattn.hpp>

#include <cmath>
#include <cstdio>

int main() {
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
