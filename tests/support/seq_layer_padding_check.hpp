#pragma once
// Padding invariance check for any layer (test-only helper).
// Runs two clones of `proto` on the same valid steps, the second with `extra` more padded steps and different
// (random) values in every padded step, and a random output gradient that also differs at padded output
// steps. Expects equal: the valid output steps (as given by out_mask), the number of valid output steps, dx at
// valid input steps, every parameter gradient and every buffer (e.g. batch-norm running statistics).

#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "seqattn/core/layer.hpp"
#include "seqattn/testing/gradient_check.hpp"

namespace seqattn::testing {

inline void expect_padding_invariant(const Layer<double>& proto, Index B, Index T, const std::vector<Index>& lengths,
                                     Index extra, Mode mode = Mode::Train, double tol = 1e-12) {
  std::unique_ptr<Layer<double>> a = proto.clone(), b = proto.clone();
  const Index F = proto.in_features();
  const Mask mask(lengths);
  const Tensor3<double> x1 = random_tensor(B, T, F, 101);
  Tensor3<double> x2 = random_tensor(B, T + extra, F, 202);  // padded steps: other random values
  for (Index s = 0; s < B; ++s)
    for (Index t = 0; t < mask.length(s, T); ++t)
      for (Index f = 0; f < F; ++f) x2(s, t, f) = x1(s, t, f);

  const Tensor3<double> y1 = a->forward(x1, mask, mode);
  const Tensor3<double> y2 = b->forward(x2, mask, mode);
  const Mask m1 = a->out_mask(mask, T), m2 = b->out_mask(mask, T + extra);
  const Index To1 = y1.dimension(1), To2 = y2.dimension(1), Fo = y1.dimension(2);
  ASSERT_EQ(Fo, y2.dimension(2));

  Tensor3<double> dy1 = random_tensor(B, To1, Fo, 303);
  Tensor3<double> dy2 = random_tensor(B, To2, Fo, 404);  // padded output steps: other random values
  for (Index s = 0; s < B; ++s) {
    const Index n = m1.length(s, To1);
    ASSERT_EQ(n, m2.length(s, To2)) << "valid output steps of sequence " << s << " changed with padding";
    for (Index t = 0; t < n; ++t)
      for (Index f = 0; f < Fo; ++f) {
        EXPECT_NEAR(y1(s, t, f), y2(s, t, f), tol) << "y at (" << s << ", " << t << ", " << f << ")";
        dy2(s, t, f) = dy1(s, t, f);
      }
  }

  a->zero_grad();
  b->zero_grad();
  const Tensor3<double> dx1 = a->backward(x1, mask, dy1);
  const Tensor3<double> dx2 = b->backward(x2, mask, dy2);
  for (Index s = 0; s < B; ++s)
    for (Index t = 0; t < mask.length(s, T); ++t)
      for (Index f = 0; f < F; ++f)
        EXPECT_NEAR(dx1(s, t, f), dx2(s, t, f), tol) << "dx at (" << s << ", " << t << ", " << f << ")";

  auto compare = [&](const ParamList<double>& p1, const ParamList<double>& p2, bool grads) {
    ASSERT_EQ(p1.size(), p2.size());
    for (size_t k = 0; k < p1.size(); ++k)
      for (Index i = 0; i < p1[k].size(); ++i) {
        const double v1 = grads ? p1[k].grad[i] : p1[k].value[i];
        const double v2 = grads ? p2[k].grad[i] : p2[k].value[i];
        EXPECT_NEAR(v1, v2, tol) << (grads ? "gradient of " : "buffer ") << p1[k].name << "[" << i << "]";
      }
  };
  compare(a->params(), b->params(), true);
  compare(a->buffers(), b->buffers(), false);
}

}  // namespace seqattn::testing
