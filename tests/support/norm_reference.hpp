#pragma once
// Long double references of LayerNorm and BatchNorm (forward, backward, parameter gradients, statistics), for
// the tests of inputs of extreme magnitude: x86's long double has the range of 1e+-4932, so the squares of any
// float or double input are exact enough and never overflow. The formulas are the layers' documented ones.
//   layer_norm_reference(x, mask, gamma, beta, scale, center, eps, dy)
//   batch_norm_reference(x, mask, gamma, beta, scale, center, eps, dy, train, running_mean, running_var)
//   max_abs(values), expect_matches(got, want, tolerance, what, floor): |got - want| <= tolerance *
//   max(max|want|, floor) everywhere (floor: the natural scale of values that may cancel to about 0, as
//   NormReference::dx_scale, the largest rstd * |gamma * dy|)

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "seqattn/core/denormals.hpp"
#include "seqattn/core/mask.hpp"
#include "seqattn/core/tensor.hpp"

namespace seqattn::testing {

using Real = long double;

struct NormReference {
  std::vector<Real> y, dx;          // (B * T * F), padded steps 0
  std::vector<Real> dgamma, dbeta;  // (F)
  std::vector<Real> mean, var;      // BatchNorm: (F) the statistics used (batch ones in Train)
  Real dx_scale = 0;                // largest rstd * |gamma * dy| over the valid values
};

// x, dy (B, T, F); gamma, beta (F) (ignored when scale / center are off).
template <class S>
NormReference layer_norm_reference(const Tensor3<S>& x, const Mask& mask, const Vector<S>& gamma, const Vector<S>& beta,
                                   bool scale, bool center, double eps, const Tensor3<S>& dy) {
  const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
  NormReference r;
  r.y.assign(static_cast<size_t>(B * T * F), 0);
  r.dx = r.y;
  r.dgamma.assign(static_cast<size_t>(F), 0);
  r.dbeta = r.dgamma;
  std::vector<Real> xhat(static_cast<size_t>(F)), g(static_cast<size_t>(F));
  for (Index b = 0; b < B; ++b)
    for (Index t = 0; t < mask.length(b, T); ++t) {
      const Index row = (b * T + t) * F;
      Real mu = 0, var = 0;
      for (Index f = 0; f < F; ++f) mu += static_cast<Real>(x.data()[row + f]);
      mu /= F;
      for (Index f = 0; f < F; ++f) var += (x.data()[row + f] - mu) * (x.data()[row + f] - mu);
      var /= F;
      const Real rstd = 1 / std::sqrt(var + static_cast<Real>(eps));
      Real mean_g = 0, mean_gx = 0;
      for (Index f = 0; f < F; ++f) {
        const size_t i = static_cast<size_t>(f);
        xhat[i] = (x.data()[row + f] - mu) * rstd;
        const Real ga = scale ? static_cast<Real>(gamma(f)) : 1;
        r.y[static_cast<size_t>(row + f)] = xhat[i] * ga + (center ? static_cast<Real>(beta(f)) : 0);
        g[i] = static_cast<Real>(dy.data()[row + f]) * ga;
        r.dx_scale = std::max(r.dx_scale, rstd * std::abs(g[i]));
        mean_g += g[i] / F;
        mean_gx += g[i] * xhat[i] / F;
        r.dgamma[i] += static_cast<Real>(dy.data()[row + f]) * xhat[i];
        r.dbeta[i] += static_cast<Real>(dy.data()[row + f]);
      }
      for (Index f = 0; f < F; ++f) {
        const size_t i = static_cast<size_t>(f);
        r.dx[static_cast<size_t>(row + f)] = rstd * (g[i] - mean_g - xhat[i] * mean_gx);
      }
    }
  return r;
}

// train: batch statistics over the valid steps (and gradients through them); else the running ones.
template <class S>
NormReference batch_norm_reference(const Tensor3<S>& x, const Mask& mask, const Vector<S>& gamma, const Vector<S>& beta,
                                   bool scale, bool center, double eps, const Tensor3<S>& dy, bool train,
                                   const Vector<S>& running_mean, const Vector<S>& running_var) {
  const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
  NormReference r;
  r.y.assign(static_cast<size_t>(B * T * F), 0);
  r.dx = r.y;
  r.dgamma.assign(static_cast<size_t>(F), 0);
  r.dbeta = r.dgamma;
  r.mean = r.dgamma;
  r.var = r.dgamma;
  Index count = 0;
  for (Index b = 0; b < B; ++b) count += mask.length(b, T);
  auto at = [&](Index b, Index t, Index f) { return static_cast<size_t>((b * T + t) * F + f); };
  for (Index f = 0; f < F; ++f) {
    const size_t j = static_cast<size_t>(f);
    Real mu = running_mean(f), var = running_var(f);
    if (train) {
      mu = 0;
      for (Index b = 0; b < B; ++b)
        for (Index t = 0; t < mask.length(b, T); ++t) mu += static_cast<Real>(x.data()[at(b, t, f)]);
      mu /= count;
      var = 0;
      for (Index b = 0; b < B; ++b)
        for (Index t = 0; t < mask.length(b, T); ++t) {
          const Real d = x.data()[at(b, t, f)] - mu;
          var += d * d;
        }
      var /= count;
    }
    r.mean[j] = mu;
    r.var[j] = var;
    const Real rstd = 1 / std::sqrt(var + static_cast<Real>(eps));
    const Real ga = scale ? static_cast<Real>(gamma(f)) : 1, be = center ? static_cast<Real>(beta(f)) : 0;
    Real sum_g = 0, sum_gx = 0;
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < mask.length(b, T); ++t) {
        const size_t i = at(b, t, f);
        const Real xhat = (x.data()[i] - mu) * rstd;
        r.y[i] = xhat * ga + be;
        sum_g += static_cast<Real>(dy.data()[i]);
        r.dx_scale = std::max(r.dx_scale, rstd * std::abs(ga * static_cast<Real>(dy.data()[i])));
        sum_gx += static_cast<Real>(dy.data()[i]) * xhat;
      }
    r.dgamma[j] = sum_gx;
    r.dbeta[j] = sum_g;
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < mask.length(b, T); ++t) {
        const size_t i = at(b, t, f);
        const Real xhat = (x.data()[i] - mu) * rstd;
        r.dx[i] = train ? ga * rstd * (dy.data()[i] - sum_g / count - xhat * sum_gx / count)
                        : ga * rstd * static_cast<Real>(dy.data()[i]);
      }
  }
  return r;
}

// Fixture of the magnitude tests: near the largest S, rstd and the gradients are near the smallest normal S, which
// the layers' flush-to-zero (core/denormals.hpp, on by default) would make 0. These tests check the scaled-moment
// arithmetic against the long double reference down to those values, so they compute with IEEE-754 denormals.
class IeeeDenormalsTest : public ::testing::Test {
 protected:
  void SetUp() override { set_flush_denormals(false); }
  void TearDown() override { set_flush_denormals(true); }
};

inline Real max_abs(const std::vector<Real>& v) {
  Real m = 0;
  for (Real a : v) m = std::max(m, std::abs(a));
  return m;
}

// |got - want| <= tolerance * max(max|want|, floor) for every value (got finite).
template <class S>
void expect_matches(const S* got, const std::vector<Real>& want, Real tolerance, const std::string& what,
                    Real floor = 0) {
  const Real bound = tolerance * std::max(max_abs(want), floor);
  int failures = 0;
  for (size_t i = 0; i < want.size() && failures < 5; ++i) {
    const bool ok = std::isfinite(got[i]) && std::abs(static_cast<Real>(got[i]) - want[i]) <= bound;
    if (!ok) ++failures;
    EXPECT_TRUE(ok) << what << " at " << i << ": got " << got[i] << ", want " << static_cast<double>(want[i])
                    << " (bound " << static_cast<double>(bound) << ")";
  }
}

}  // namespace seqattn::testing
