#pragma once
// Step-mask checks shared by layer tests (LSTM, GRU, Bidirectional, Conv1D), in double:
//   compact_kept(x, mask)                        (xc, lengths): each sequence's kept steps moved to its front, in
//                                                order (the rest 0), and their counts as a length mask
//   expect_compaction_equivalent(layer, x, mask) the layer on (x, step mask) and on the compacted batch (length
//                                                mask) gives bitwise the same kept outputs (or final state), 0 at
//                                                masked output steps, and, for the same dy at corresponding steps,
//                                                the same parameter gradients and dx at kept steps; dx is exactly
//                                                0 at masked steps
//   expect_masked_values_ignored(layer, x, mask) kept outputs bitwise unchanged when the masked input values are
//                                                finite garbage, NaN, +Inf or -Inf; with finite garbage also the
//                                                parameter gradients and dx (exactly 0 at masked steps)
//   expect_step_mask_of_other_T_refused(layer, x) a step mask built for T + 1 steps: ShapeError naming the layer

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/layer.hpp"
#include "seqattn/core/mask.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/step_masks.hpp"

namespace seqattn::testing {

// Kept step indices of sequence b.
inline std::vector<Index> kept_steps(const Mask& mask, Index b, Index T) {
  std::vector<Index> kept;
  for (Index t = 0; t < T; ++t)
    if (mask.valid(b, t, T)) kept.push_back(t);
  return kept;
}

inline std::pair<Tensor3<double>, Mask> compact_kept(const Tensor3<double>& x, const Mask& mask) {
  const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
  Tensor3<double> xc(B, T, F);
  xc.setZero();
  std::vector<Index> lengths;
  for (Index b = 0; b < B; ++b) {
    const std::vector<Index> kept = kept_steps(mask, b, T);
    for (size_t k = 0; k < kept.size(); ++k)
      for (Index f = 0; f < F; ++f) xc(b, Index(k), f) = x(b, kept[k], f);
    lengths.push_back(Index(kept.size()));
  }
  return {xc, Mask(lengths)};
}

inline bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

struct GradientRun {
  Tensor3<double> y, dx;
  std::vector<std::vector<double>> grads;
};

inline GradientRun run_with_gradients(Layer<double>& layer, const Tensor3<double>& x, const Mask& mask,
                                      const Tensor3<double>& dy) {
  GradientRun run;
  run.y = layer.forward(x, mask);
  layer.zero_grad();
  run.dx = layer.backward(x, mask, dy);
  for (const auto& p : layer.params()) run.grads.emplace_back(p.grad, p.grad + p.size());
  return run;
}

inline void expect_compaction_equivalent(Layer<double>& layer, const Tensor3<double>& x, const Mask& mask,
                                         std::uint64_t seed) {
  const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
  const Index To = layer.out_time(T), U = layer.out_features();
  const bool seq = To == T;
  const auto [xc, mc] = compact_kept(x, mask);
  // dy random everywhere; the compacted run gets the same dy at corresponding kept steps
  const Tensor3<double> dy = random_tensor(B, To, U, seed);
  Tensor3<double> dyc = random_tensor(B, To, U, seed + 1);
  if (!seq) dyc = dy;
  for (Index b = 0; seq && b < B; ++b) {
    const std::vector<Index> kept = kept_steps(mask, b, T);
    for (size_t k = 0; k < kept.size(); ++k)
      for (Index u = 0; u < U; ++u) dyc(b, Index(k), u) = dy(b, kept[k], u);
  }
  const GradientRun a = run_with_gradients(layer, x, mask, dy);
  const GradientRun c = run_with_gradients(layer, xc, mc, dyc);
  EXPECT_EQ(layer.out_mask(mask, T), seq ? mask : Mask());
  for (Index b = 0; b < B; ++b) {
    SCOPED_TRACE("sequence " + std::to_string(b));
    const std::vector<Index> kept = kept_steps(mask, b, T);
    if (seq) {
      for (Index t = 0; t < T; ++t) {
        if (mask.valid(b, t, T)) continue;
        for (Index u = 0; u < U; ++u) EXPECT_EQ(a.y(b, t, u), 0.0) << "output at masked step " << t;
      }
      for (size_t k = 0; k < kept.size(); ++k)
        for (Index u = 0; u < U; ++u)
          EXPECT_TRUE(same_bits(a.y(b, kept[k], u), c.y(b, Index(k), u)))
              << "kept step " << kept[k] << " (compacted " << k << "), unit " << u << ": " << a.y(b, kept[k], u)
              << " vs " << c.y(b, Index(k), u);
    } else {
      for (Index u = 0; u < U; ++u)
        EXPECT_TRUE(same_bits(a.y(b, 0, u), c.y(b, 0, u)))
            << "final state, unit " << u << ": " << a.y(b, 0, u) << " vs " << c.y(b, 0, u);
    }
    for (size_t k = 0; k < kept.size(); ++k)
      for (Index f = 0; f < F; ++f)
        EXPECT_NEAR(a.dx(b, kept[k], f), c.dx(b, Index(k), f), 1e-13 * (1 + std::abs(c.dx(b, Index(k), f))))
            << "dx at kept step " << kept[k];
  }
  EXPECT_EQ(masked_nonzero(a.dx, mask), "");
  ASSERT_EQ(a.grads.size(), c.grads.size());
  const auto params = layer.params();
  for (size_t i = 0; i < a.grads.size(); ++i) {
    double scale = 0;
    for (double g : c.grads[i]) scale = std::max(scale, std::abs(g));
    EXPECT_GT(scale, 0.0) << params[i].name << ": all-zero gradient";
    for (size_t j = 0; j < a.grads[i].size(); ++j)
      EXPECT_NEAR(a.grads[i][j], c.grads[i][j], 1e-12 * (1 + scale)) << params[i].name << "[" << j << "]";
  }
}

inline void expect_masked_values_ignored(Layer<double>& layer, const Tensor3<double>& x, const Mask& mask,
                                         std::uint64_t seed) {
  const Index B = x.dimension(0), T = x.dimension(1);
  const Mask out_mask = layer.out_mask(mask, T);
  // dy is 0 at masked output steps (the property's condition)
  Tensor3<double> dy = random_tensor(B, layer.out_time(T), layer.out_features(), seed);
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < dy.dimension(1); ++t)
      if (!out_mask.valid(b, t, dy.dimension(1)))
        for (Index u = 0; u < dy.dimension(2); ++u) dy(b, t, u) = 0;
  const GradientRun clean = run_with_gradients(layer, x, mask, dy);
  Rng rng(seed + 7);
  std::vector<double> big(static_cast<size_t>(x.size()));
  for (double& v : big) v = rng.uniform(-1e3, 1e3);
  const double inf = std::numeric_limits<double>::infinity();
  const std::pair<const char*, double> fills[] = {
      {"finite garbage", 0.0}, {"NaN", std::numeric_limits<double>::quiet_NaN()}, {"+Inf", inf}, {"-Inf", -inf}};
  for (const auto& [what, fill] : fills) {
    SCOPED_TRACE(what);
    const bool finite = std::string(what) == "finite garbage";
    const double v = fill;
    const Tensor3<double> xg =
        with_masked_values(x, mask, [&](Index i) { return finite ? big[static_cast<size_t>(i)] : v; });
    const Tensor3<double> y = layer.forward(xg, mask);
    EXPECT_TRUE(same_kept_steps(clean.y, out_mask, y, out_mask));
    if (!finite) continue;
    const GradientRun g = run_with_gradients(layer, xg, mask, dy);
    EXPECT_TRUE(same_kept_steps(clean.dx, mask, g.dx, mask)) << "dx at kept steps";
    EXPECT_EQ(masked_nonzero(g.dx, mask), "");
    for (size_t i = 0; i < g.grads.size(); ++i)
      for (size_t j = 0; j < g.grads[i].size(); ++j)
        ASSERT_TRUE(same_bits(clean.grads[i][j], g.grads[i][j]))
            << "parameter gradient " << i << "[" << j << "]: " << clean.grads[i][j] << " vs " << g.grads[i][j];
  }
}

inline void expect_step_mask_of_other_T_refused(Layer<double>& layer, const Tensor3<double>& x) {
  const Index B = x.dimension(0), T = x.dimension(1);
  const Mask wrong = random_step_mask(B, T + 1, 5);
  ASSERT_TRUE(wrong.has_holes());
  try {
    layer.forward(x, wrong);
    ADD_FAILURE() << "expected ShapeError";
  } catch (const ShapeError& e) {
    const std::string want =
        layer.describe() + ": step mask has " + std::to_string(T + 1) + " steps but the input has " + std::to_string(T);
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
  }
}

}  // namespace seqattn::testing
