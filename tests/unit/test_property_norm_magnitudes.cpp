// Property: LayerNorm and BatchNorm at every magnitude. Random layers (features 1..16, eps, scale, center,
// gamma, beta, momentum) on random masked batches (lengths including 0 and 1; NaN, Inf and the largest finite
// value at every padded step) with inputs s * p, p a random pattern (centred, or all of one sign so that sums
// overflow first), for s = 1e-30, 1e-20, ..., 1e30 and 3.3e38 in float (1e-300, ..., 1e300 and 1.7e308 in
// double):
//   - outputs, input gradients and parameter gradients are finite and match a long double reference of the
//     layer's formula (tests/support/norm_reference.hpp) to rounding; padded steps output 0 and get dx = 0;
//   - for s >= 1, outputs and s * dx equal (to rounding) those of the same layer at magnitude 1 with eps / s^2:
//     layer norm is scale invariant up to eps;
//   - BatchNorm Train: when the reference's running variance would overflow S (a variance beyond the range of
//     S and momentum > 0), the forward throws seqattn::Error and the running statistics keep their bits;
//     otherwise they match the reference. BatchNorm Infer runs with running statistics of magnitude s (s^2).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "seqattn/core/random.hpp"
#include "seqattn/layers/batch_norm.hpp"
#include "seqattn/layers/layer_norm.hpp"
#include "support/norm_reference.hpp"
#include "support/random_model.hpp"

using namespace seqattn;
using namespace seqattn::testing;

namespace {

constexpr int kLayers = 30;

template <class S>
std::vector<double> magnitudes() {
  if (std::is_same<S, float>::value) return {1e-30, 1e-20, 1e-10, 1.0, 1e10, 1e20, 1e30, 3.3e38};
  return {1e-300, 1e-200, 1e-100, 1.0, 1e100, 1e200, 1e300, 1.7e308};
}

// eps / s^2, the eps of the magnitude-1 layer equivalent to magnitude s (at least the smallest positive double)
double unit_eps(double eps, double s) { return std::max(eps / s / s, std::numeric_limits<double>::denorm_min()); }

template <class S>
Real tolerance() {
  return std::is_same<S, float>::value ? 2e-5L : 1e-12L;
}

// A random masked problem: pattern p (B, T, F) in [-1, 1] (or [0.8, 1]: one sign), lengths, dy, gamma, beta.
template <class S>
struct Problem {
  Index B = 0, T = 0, F = 0;
  Tensor3<double> p;
  std::vector<Index> lengths;
  Tensor3<S> dy;
  Vector<S> gamma, beta;
  double eps = 1e-5;
  bool scale = true, center = true;
};

template <class S>
Problem<S> random_problem(std::uint64_t seed) {
  Rng rng(seed);
  Problem<S> q;
  q.B = 2 + static_cast<Index>(rng.below(3));
  q.T = 1 + static_cast<Index>(rng.below(5));
  q.F = 1 + static_cast<Index>(rng.below(16));
  const bool one_sign = rng.uniform() < 0.3;
  q.p = Tensor3<double>(q.B, q.T, q.F);
  for (Index i = 0; i < q.p.size(); ++i) q.p.data()[i] = one_sign ? rng.uniform(0.8, 1.0) : rng.uniform(-1.0, 1.0);
  q.lengths = random_lengths(q.B, q.T, seed + 1);  // two full sequences: BatchNorm Train has >= 2 valid steps
  q.dy = Tensor3<S>(q.B, q.T, q.F);
  for (Index i = 0; i < q.dy.size(); ++i) q.dy.data()[i] = static_cast<S>(rng.uniform(-1.0, 1.0));
  q.gamma = Vector<S>(q.F);
  q.beta = Vector<S>(q.F);
  for (Index f = 0; f < q.F; ++f) {
    q.gamma(f) = static_cast<S>(rng.uniform(-2.0, 2.0));
    q.beta(f) = static_cast<S>(rng.uniform(-2.0, 2.0));
  }
  const double eps[] = {1e-5, 1e-3, 0.1};
  q.eps = eps[rng.below(3)];
  q.scale = rng.uniform() < 0.8;
  q.center = rng.uniform() < 0.8;
  return q;
}

// s * p in S, with NaN, Inf, -Inf and the largest finite value at the padded steps.
template <class S>
Tensor3<S> input(const Problem<S>& q, double s) {
  Tensor3<S> x(q.B, q.T, q.F);
  const S specials[] = {std::numeric_limits<S>::quiet_NaN(), std::numeric_limits<S>::infinity(),
                        -std::numeric_limits<S>::infinity(), std::numeric_limits<S>::max()};
  for (Index b = 0; b < q.B; ++b)
    for (Index t = 0; t < q.T; ++t)
      for (Index f = 0; f < q.F; ++f)
        x(b, t, f) = t < q.lengths[size_t(b)] ? static_cast<S>(s * q.p(b, t, f)) : specials[(b + t + f) % 4];
  return x;
}

template <class S>
std::string name_of(const Layer<S>& layer, const Problem<S>& q, double s) {
  return detail::cat(layer.describe(), " F=", q.F, " T=", q.T, " magnitude ", s);
}

template <class S>
void expect_padding_zero(const Tensor3<S>& y, const Tensor3<S>& dx, const Problem<S>& q) {
  for (Index b = 0; b < q.B; ++b)
    for (Index t = q.lengths[size_t(b)]; t < q.T; ++t)
      for (Index f = 0; f < q.F; ++f) {
        ASSERT_EQ(y(b, t, f), S(0));
        ASSERT_EQ(dx(b, t, f), S(0));
      }
}

// Compares y, dx and the parameter gradients of `layer` (after forward and backward) with the reference.
template <class S>
void expect_reference(Layer<S>& layer, const Tensor3<S>& y, const Tensor3<S>& dx, const NormReference& want,
                      const Problem<S>& q) {
  const Real tol = tolerance<S>();
  expect_matches(y.data(), want.y, tol, "y", Real(1));
  expect_matches(dx.data(), want.dx, 4 * tol, "dx", want.dx_scale);
  Index rows = 0;
  for (Index len : q.lengths) rows += len;
  const Real grad_scale = Real(rows) * std::sqrt(Real(rows + q.F));  // |dy| <= 1, |xhat| <= sqrt(F) or sqrt(rows)
  const ParamList<S> params = layer.params();
  for (const auto& param : params)
    expect_matches(param.grad, param.name == "gamma" ? want.dgamma : want.dbeta, tol, param.name, grad_scale);
}

template <class S>
void layer_norm_property(std::uint64_t seed) {
  const Problem<S> q = random_problem<S>(seed);
  const Mask mask(q.lengths);
  for (double s : magnitudes<S>()) {
    LayerNorm<S> ln(q.F, LayerNormOptions().eps(q.eps).scale(q.scale).center(q.center));
    ln.gamma() = q.gamma;
    ln.beta() = q.beta;
    SCOPED_TRACE(name_of<S>(ln, q, s));
    const Tensor3<S> x = input(q, s);
    const Tensor3<S> y = ln.forward(x, mask, Mode::Train);
    const Tensor3<S> dx = ln.backward(x, mask, q.dy);
    expect_padding_zero(y, dx, q);
    expect_reference<S>(ln, y, dx, layer_norm_reference(x, mask, q.gamma, q.beta, q.scale, q.center, q.eps, q.dy), q);
    if (s >= 1.0 && q.F > 1) {  // the magnitude-1 layer with eps / s^2 (F = 1: var = 0, no scale to compare)
      LayerNorm<S> unit(q.F, LayerNormOptions().eps(unit_eps(q.eps, s)).scale(q.scale).center(q.center));
      unit.gamma() = q.gamma;
      unit.beta() = q.beta;
      const Tensor3<S> x1 = input(q, 1.0);
      const Tensor3<S> y1 = unit.forward(x1, mask, Mode::Train);
      const Tensor3<S>& dx1 = unit.backward(x1, mask, q.dy);
      const Real tol = tolerance<S>();
      Real dx_scale = 0;
      for (Index i = 0; i < dx1.size(); ++i) dx_scale = std::max(dx_scale, std::abs(Real(dx1.data()[i])));
      for (Index i = 0; i < y.size(); ++i) {
        ASSERT_NEAR(Real(y.data()[i]), Real(y1.data()[i]), tol * (1 + std::abs(Real(y1.data()[i])))) << i;
        ASSERT_NEAR(Real(dx.data()[i]) * s, Real(dx1.data()[i]), 4 * tol * std::max(dx_scale, Real(1))) << i;
      }
    }
  }
}

template <class S>
void batch_norm_property(std::uint64_t seed) {
  const Problem<S> q = random_problem<S>(seed);
  const Mask mask(q.lengths);
  Rng rng(seed + 2);
  const double momentum = rng.uniform() < 0.3 ? 0.0 : rng.uniform();
  const Vector<S> rm0 = Vector<S>::Constant(q.F, S(0.25)), rv0 = Vector<S>::Constant(q.F, S(2));
  Index count = 0;
  for (Index len : q.lengths) count += len;
  for (double s : magnitudes<S>()) {
    BatchNorm<S> bn(q.F, BatchNormOptions().momentum(momentum).eps(q.eps).scale(q.scale).center(q.center));
    bn.gamma() = q.gamma;
    bn.beta() = q.beta;
    bn.running_mean() = rm0;
    bn.running_var() = rv0;
    SCOPED_TRACE(name_of<S>(bn, q, s));
    const Tensor3<S> x = input(q, s);
    // Train
    const NormReference want =
        batch_norm_reference(x, mask, q.gamma, q.beta, q.scale, q.center, q.eps, q.dy, true, rm0, rv0);
    Real largest_rv = 0;
    std::vector<Real> rm(size_t(q.F)), rv(size_t(q.F));
    for (Index f = 0; f < q.F; ++f) {
      rm[size_t(f)] = (1 - Real(momentum)) * rm0(f) + Real(momentum) * want.mean[size_t(f)];
      rv[size_t(f)] = (1 - Real(momentum)) * rv0(f) + Real(momentum) * want.var[size_t(f)] * count / (count - 1);
      largest_rv = std::max(largest_rv, rv[size_t(f)]);
    }
    const Real top = std::numeric_limits<S>::max();
    if (largest_rv > 2 * top) {
      EXPECT_THROW(bn.forward(x, mask, Mode::Train), Error);
      EXPECT_EQ(bn.running_mean(), rm0);
      EXPECT_EQ(bn.running_var(), rv0);
    } else if (largest_rv < top / 2) {
      const Tensor3<S> y = bn.forward(x, mask, Mode::Train);
      const Tensor3<S> dx = bn.backward(x, mask, q.dy);
      expect_padding_zero(y, dx, q);
      expect_reference<S>(bn, y, dx, want, q);
      expect_matches(bn.running_mean().data(), rm, tolerance<S>(), "running_mean");
      expect_matches(bn.running_var().data(), rv, tolerance<S>(), "running_var");
      if (s >= 1.0) {  // the magnitude-1 layer with eps / s^2
        BatchNorm<S> unit(
            q.F, BatchNormOptions().momentum(momentum).eps(unit_eps(q.eps, s)).scale(q.scale).center(q.center));
        unit.gamma() = q.gamma;
        unit.beta() = q.beta;
        const Tensor3<S> x1 = input(q, 1.0);
        const Tensor3<S> y1 = unit.forward(x1, mask, Mode::Train);
        const Tensor3<S>& dx1 = unit.backward(x1, mask, q.dy);
        const Real tol = tolerance<S>();
        for (Index i = 0; i < y.size(); ++i) {
          ASSERT_NEAR(Real(y.data()[i]), Real(y1.data()[i]), tol * (1 + std::abs(Real(y1.data()[i])))) << i;
          ASSERT_NEAR(Real(dx.data()[i]) * s, Real(dx1.data()[i]), 4 * tol * std::max(want.dx_scale * s, Real(1))) << i;
        }
      }
    }
    // Infer, with running statistics of the magnitude of the batch (the variance where it fits S)
    const Real var_s = Real(s) * Real(s);
    if (var_s < top / 4) {
      Vector<S> rm_s(q.F), rv_s(q.F);
      for (Index f = 0; f < q.F; ++f) {
        rm_s(f) = static_cast<S>(s * (f % 2 ? 0.5 : -0.5));
        rv_s(f) = static_cast<S>(var_s * (0.5 + 0.1 * Real(f)));
      }
      BatchNorm<S> infer(bn);
      infer.running_mean() = rm_s;
      infer.running_var() = rv_s;
      const Tensor3<S> y = infer.forward(x, mask, Mode::Infer);
      infer.zero_grad();
      const Tensor3<S> dx = infer.backward(x, mask, q.dy);
      expect_padding_zero(y, dx, q);
      expect_reference<S>(
          infer, y, dx,
          batch_norm_reference(x, mask, q.gamma, q.beta, q.scale, q.center, q.eps, q.dy, false, rm_s, rv_s), q);
    }
  }
}

using PropertyNormMagnitudes = IeeeDenormalsTest;  // IEEE-754 denormals (norm_reference.hpp)

}  // namespace

TEST_F(PropertyNormMagnitudes, LayerNormFloat) {
  for (int i = 0; i < kLayers; ++i) layer_norm_property<float>(81000 + std::uint64_t(i));
}
TEST_F(PropertyNormMagnitudes, LayerNormDouble) {
  for (int i = 0; i < kLayers; ++i) layer_norm_property<double>(82000 + std::uint64_t(i));
}
TEST_F(PropertyNormMagnitudes, BatchNormFloat) {
  for (int i = 0; i < kLayers; ++i) batch_norm_property<float>(83000 + std::uint64_t(i));
}
TEST_F(PropertyNormMagnitudes, BatchNormDouble) {
  for (int i = 0; i < kLayers; ++i) batch_norm_property<double>(84000 + std::uint64_t(i));
}
