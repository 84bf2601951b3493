// ScaledDotProductAttention and ResidualScaledDotProductAttention (keras-self-attention's parameter-free attention
// and RealFormer): finite-difference gradients in double of every input (q, k, v, the previous scores, through the
// scores-output gradient) with history_only on and off, lengths and step masks with holes; a naive reference loop;
// torch's fused scaled dot-product attention (tests/reference/gen_scaled_dot_product_attention.py) in float and
// double; the step-mask properties (compaction, garbage at masked steps, NaN included); rows without an allowed
// key; the attention map; streams (history_only); the model-file round trip; errors naming the layer.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <iostream>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "seqattn/layers/scaled_dot_product_attention.hpp"
#include "seqattn/model/attention_maps.hpp"
#include "seqattn/model/layer_registry.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/reference_data.hpp"
#include "support/step_mask_layer_checks.hpp"
#include "support/step_masks.hpp"
#include "support/stream_checks.hpp"

using namespace seqattn;
using seqattn::testing::check_gradients;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::GradTarget;
using seqattn::testing::random_step_mask;
using seqattn::testing::random_tensor;

namespace {

ScaledDotProductAttentionOptions sdpa_opts(bool history, Index value_features = 0) {
  ScaledDotProductAttentionOptions o;
  o.history_only(history);
  if (value_features > 0) o.value_features(value_features);
  return o;
}

std::vector<double> copy_of(const Tensor3<double>& t) { return std::vector<double>(t.data(), t.data() + t.size()); }

double inner(const Tensor3<double>& a, const Tensor3<double>& b) {
  double s = 0;
  for (Index i = 0; i < a.size(); ++i) s += a.data()[i] * b.data()[i];
  return s;
}

// ---------------------------------------------------------------------------------------------- the naive loop
// y, a (and z) of one call by the formulas of the header, written independently: exp over the allowed keys.
struct Naive {
  Tensor3<double> y, a, z;
};

Naive naive(const Tensor3<double>& q, const Mask& mq, const Tensor3<double>& k, const Tensor3<double>& v,
            const Mask& mkv, bool history, const Tensor3<double>* prev) {
  const Index B = q.dimension(0), Tq = q.dimension(1), Tk = k.dimension(1), D = q.dimension(2), Dv = v.dimension(2);
  Naive r;
  r.y = Tensor3<double>(B, Tq, Dv);
  r.a = Tensor3<double>(B, Tq, Tk);
  r.z = Tensor3<double>(B, Tq, Tk);
  r.y.setZero();
  r.a.setZero();
  r.z.setZero();
  for (Index b = 0; b < B; ++b)
    for (Index i = 0; i < Tq; ++i) {
      if (!mq.valid(b, i, Tq)) continue;
      std::vector<Index> keys;
      for (Index j = 0; j < Tk; ++j)
        if (mkv.valid(b, j, Tk) && (!history || j <= i)) keys.push_back(j);
      if (keys.empty()) continue;
      double mx = -std::numeric_limits<double>::infinity();
      for (Index j : keys) {
        double s = 0;
        for (Index f = 0; f < D; ++f) s += q(b, i, f) * k(b, j, f);
        r.z(b, i, j) = s / std::sqrt(double(D)) + (prev ? (*prev)(b, i, j) : 0.0);
        mx = std::max(mx, r.z(b, i, j));
      }
      double sum = 0;
      for (Index j : keys) sum += std::exp(r.z(b, i, j) - mx);
      for (Index j : keys) {
        r.a(b, i, j) = std::exp(r.z(b, i, j) - mx) / sum;
        for (Index f = 0; f < Dv; ++f) r.y(b, i, f) += r.a(b, i, j) * v(b, j, f);
      }
    }
  return r;
}

// The (B, Tq, Tk) weights of the last forward, from attention_map(b) (core/attention_map.hpp).
template <class S>
Tensor3<S> weights_of(const AttentionMap<S>& layer, Index B) {
  const Matrix<S> first = layer.attention_map(0);
  Tensor3<S> w(B, first.rows(), first.cols());
  for (Index b = 0; b < B; ++b) {
    const Matrix<S> m = layer.attention_map(b);
    std::copy(m.data(), m.data() + m.size(), w.data() + b * m.size());
  }
  return w;
}

void expect_near_all(const Tensor3<double>& got, const Tensor3<double>& want, double tol, const char* what) {
  ASSERT_EQ(got.dimensions(), want.dimensions()) << what;
  for (Index i = 0; i < got.size(); ++i) ASSERT_NEAR(got.data()[i], want.data()[i], tol) << what << "[" << i << "]";
}

// ---------------------------------------------------------------------------------------------- gradients
TEST(ScaledDotProductAttention, SelfAttentionGradientsMatchFiniteDifferences) {
  for (const bool history : {false, true}) {
    SCOPED_TRACE(history ? "history_only" : "full");
    ScaledDotProductAttention<double> layer(4, sdpa_opts(history));
    ResidualScaledDotProductAttention<double> residual(4, sdpa_opts(history));
    for (Layer<double>* l : {static_cast<Layer<double>*>(&layer), static_cast<Layer<double>*>(&residual)}) {
      const auto plain = check_layer_gradients(*l, random_tensor(2, 5, 4, 1));
      EXPECT_TRUE(plain.passed()) << plain.report();
      const auto lengths = check_layer_gradients(*l, random_tensor(4, 5, 4, 2), Mask::from_lengths({5, 2, 0, 1}));
      EXPECT_TRUE(lengths.passed()) << lengths.report();
      for (std::uint64_t seed : {11, 12}) {
        const auto steps = check_layer_gradients(*l, random_tensor(6, 6, 4, seed), random_step_mask(6, 6, seed));
        EXPECT_TRUE(steps.passed()) << steps.report();
      }
    }
  }
}

struct CrossCase {
  bool history;
  bool steps;
};

// Cross-attention: q (3, 5, 4), k (3, 6, 4), v (3, 6, 3); every input (and, residual, the previous scores and the
// scores output through dz) checked against central differences of L = sum(y R) [+ sum(scores Rz)].
TEST(ScaledDotProductAttention, CrossAttentionGradientsOfEveryInputMatchFiniteDifferences) {
  double worst = 0;
  for (const CrossCase c :
       {CrossCase{false, false}, CrossCase{true, false}, CrossCase{false, true}, CrossCase{true, true}}) {
    SCOPED_TRACE(std::string(c.history ? "history_only" : "full") + (c.steps ? ", step masks" : ", lengths"));
    constexpr Index B = 3, Tq = 5, Tk = 6, D = 4, Dv = 3;
    Tensor3<double> q = random_tensor(B, Tq, D, 1), k = random_tensor(B, Tk, D, 2), v = random_tensor(B, Tk, Dv, 3);
    Tensor3<double> prev = random_tensor(B, Tq, Tk, 4);
    const Tensor3<double> R = random_tensor(B, Tq, Dv, 5), Rz = random_tensor(B, Tq, Tk, 6);
    const Mask mq =
        c.steps ? Mask::from_steps({{1, 0, 1, 1, 0}, {0, 1, 1, 0, 1}, {1, 1, 1, 1, 1}}) : Mask::from_lengths({5, 3, 1});
    const Mask mkv = c.steps ? Mask::from_steps({{1, 1, 0, 1, 0, 1}, {0, 0, 1, 1, 0, 1}, {0, 1, 0, 0, 1, 1}})
                             : Mask::from_lengths({6, 2, 4});
    ASSERT_EQ(mq.has_holes(), c.steps);
    ScaledDotProductAttention<double> plain(D, sdpa_opts(c.history, Dv));
    {
      auto loss = [&] { return inner(plain.forward(q, mq, k, v, mkv), R); };
      loss();
      const auto dq = copy_of(plain.backward_cross(q, mq, k, v, mkv, R));
      const auto dk = copy_of(plain.key_input_grad()), dv = copy_of(plain.value_input_grad());
      const auto r = check_gradients(loss, {{"q", q.data(), dq.data(), q.size()},
                                            {"k", k.data(), dk.data(), k.size()},
                                            {"v", v.data(), dv.data(), v.size()}});
      EXPECT_TRUE(r.passed()) << r.report();
      worst = std::max(worst, r.worst_ratio);
    }
    ResidualScaledDotProductAttention<double> res(D, sdpa_opts(c.history, Dv));
    auto loss = [&] {
      const double ly = inner(res.forward(q, mq, k, v, mkv, prev), R);
      return ly + inner(res.scores(), Rz);
    };
    loss();
    const auto dq = copy_of(res.backward_cross(q, mq, k, v, mkv, R, Rz));
    const auto dk = copy_of(res.key_input_grad()), dv = copy_of(res.value_input_grad());
    const auto dp = copy_of(res.previous_scores_grad());
    const auto r = check_gradients(loss, {{"q", q.data(), dq.data(), q.size()},
                                          {"k", k.data(), dk.data(), k.size()},
                                          {"v", v.data(), dv.data(), v.size()},
                                          {"prev", prev.data(), dp.data(), prev.size()}});
    EXPECT_TRUE(r.passed()) << r.report();
    // without dz: only the path through the softmax (the scores term left out of the loss)
    auto loss_y = [&] { return inner(res.forward(q, mq, k, v, mkv, prev), R); };
    loss_y();
    const auto dq_y = copy_of(res.backward_cross(q, mq, k, v, mkv, R));
    const auto dp_y = copy_of(res.previous_scores_grad());
    const auto ry = check_gradients(
        loss_y, {{"q", q.data(), dq_y.data(), q.size()}, {"prev", prev.data(), dp_y.data(), prev.size()}});
    EXPECT_TRUE(ry.passed()) << ry.report();
    worst = std::max({worst, r.worst_ratio, ry.worst_ratio});
  }
  std::cout << "worst finite-difference ratio |analytic - numeric| / (1e-8 + 1e-5 max(|a|, |n|)): " << worst << "\n";
}

// Self-attention with previous scores and dz: x feeds q, k and v.
TEST(ResidualScaledDotProductAttention, SelfAttentionWithPreviousScoresGradientsMatchFiniteDifferences) {
  for (const bool history : {false, true}) {
    SCOPED_TRACE(history ? "history_only" : "full");
    constexpr Index B = 4, T = 5, D = 3;
    Tensor3<double> x = random_tensor(B, T, D, 1), prev = random_tensor(B, T, T, 2);
    const Tensor3<double> R = random_tensor(B, T, D, 3), Rz = random_tensor(B, T, T, 4);
    for (const Mask& mask : {Mask::from_lengths({5, 2, 0, 1}), random_step_mask(B, T, 7)}) {
      ResidualScaledDotProductAttention<double> res(D, sdpa_opts(history));
      auto loss = [&] { return inner(res.forward(x, mask, prev), R) + inner(res.scores(), Rz); };
      loss();
      const auto dx = copy_of(res.backward(x, mask, R, Rz));
      const auto dp = copy_of(res.previous_scores_grad());
      const auto r =
          check_gradients(loss, {{"x", x.data(), dx.data(), x.size()}, {"prev", prev.data(), dp.data(), prev.size()}});
      EXPECT_TRUE(r.passed()) << r.report();
    }
  }
}

// ---------------------------------------------------------------------------------------------- references
TEST(ScaledDotProductAttention, MatchesNaiveLoop) {
  for (const bool history : {false, true})
    for (std::uint64_t seed : {1, 2, 3}) {
      SCOPED_TRACE(std::to_string(seed) + (history ? " history_only" : ""));
      const Tensor3<double> q = random_tensor(6, 5, 4, seed), k = random_tensor(6, 7, 4, seed + 10),
                            v = random_tensor(6, 7, 2, seed + 20), prev = random_tensor(6, 5, 7, seed + 30);
      const Mask mq = random_step_mask(6, 5, seed), mkv = random_step_mask(6, 7, seed + 1);
      ScaledDotProductAttention<double> layer(4, sdpa_opts(history, 2));
      const Naive n = naive(q, mq, k, v, mkv, history, nullptr);
      expect_near_all(layer.forward(q, mq, k, v, mkv), n.y, 1e-14, "y");
      expect_near_all(weights_of(layer, 6), n.a, 1e-14, "attention");
      ResidualScaledDotProductAttention<double> res(4, sdpa_opts(history, 2));
      const Naive nr = naive(q, mq, k, v, mkv, history, &prev);
      expect_near_all(res.forward(q, mq, k, v, mkv, prev), nr.y, 1e-14, "residual y");
      expect_near_all(weights_of(res, 6), nr.a, 1e-14, "residual attention");
      expect_near_all(res.scores(), nr.z, 1e-14, "residual scores");
      // self-attention is cross-attention with q = k = v = x
      const Naive ns = naive(q, mq, q, q, mq, history, nullptr);
      ScaledDotProductAttention<double> self(4, sdpa_opts(history));
      expect_near_all(self.forward(q, mq), ns.y, 1e-14, "self y");
    }
}

template <class S>
Mask keep_mask(const seqattn::testing::ReferenceData& d, const std::string& name, Index B, Index T) {
  std::vector<std::uint8_t> keep;
  for (double v : d.values(name)) keep.push_back(v != 0.0);
  return Mask::from_steps(B, T, keep);
}

template <class S>
double compare_with_torch(const std::string& prefix) {
  SCOPED_TRACE(prefix);
  const seqattn::testing::ReferenceData d(seqattn::testing::data_path("scaled_dot_product_attention.txt"));
  const std::string p = prefix + ".";
  const bool cross = d.has(p + "q"), residual = d.has(p + "prev");
  const bool history = prefix.find("history") != std::string::npos;
  const Tensor3<S> q = d.tensor<S>(p + (cross ? "q" : "x"));
  const Tensor3<S> k = cross ? d.tensor<S>(p + "k") : q, v = cross ? d.tensor<S>(p + "v") : q;
  const Index B = q.dimension(0), Tq = q.dimension(1), Tk = k.dimension(1), D = q.dimension(2), Dv = v.dimension(2);
  const Mask mq = keep_mask<S>(d, p + "q_keep", B, Tq), mkv = keep_mask<S>(d, p + "kv_keep", B, Tk);
  const double tol = sizeof(S) == sizeof(double) ? 1e-12 : 2e-6;
  double worst = 0;
  auto expect_close = [&](const Tensor3<S>& a, const std::string& name) {
    const auto& e = d.values(p + name);
    ASSERT_EQ(static_cast<size_t>(a.size()), e.size()) << name;
    for (size_t i = 0; i < e.size(); ++i) {
      const double err = std::abs(double(a.data()[i]) - e[i]);
      worst = std::max(worst, err);
      EXPECT_LE(err, tol * (1 + std::abs(e[i]))) << name << "[" << i << "]: " << a.data()[i] << " vs " << e[i];
    }
  };
  const Tensor3<S> R = d.tensor<S>(p + "R");
  std::unique_ptr<detail::ScaledDotAttentionCore<S>> layer;
  ResidualScaledDotProductAttention<S>* res = nullptr;
  if (residual) {
    auto r = std::make_unique<ResidualScaledDotProductAttention<S>>(D, sdpa_opts(history, Dv));
    res = r.get();
    layer = std::move(r);
  } else {
    layer = std::make_unique<ScaledDotProductAttention<S>>(D, sdpa_opts(history, Dv));
  }
  if (!cross) {
    EXPECT_FALSE(residual);  // (no such case in the file)
    if (mq != mkv) ADD_FAILURE() << "self case with different masks";
    expect_close(layer->forward(q, mq), "y");
    expect_close(weights_of<S>(*layer, B), "attention");
    expect_close(layer->backward(q, mq, R), "dx");
  } else if (!residual) {
    expect_close(layer->forward(q, mq, k, v, mkv), "y");
    expect_close(weights_of<S>(*layer, B), "attention");
    expect_close(layer->backward_cross(q, mq, k, v, mkv, R), "dq");
    expect_close(layer->key_input_grad(), "dk");
    expect_close(layer->value_input_grad(), "dv");
  } else {
    const Tensor3<S> prev = d.tensor<S>(p + "prev"), Rz = d.tensor<S>(p + "Rz");
    expect_close(res->forward(q, mq, k, v, mkv, prev), "y");
    expect_close(weights_of<S>(*res, B), "attention");
    expect_close(res->scores(), "scores");
    expect_close(res->backward_cross(q, mq, k, v, mkv, R, Rz), "dq");
    expect_close(res->key_input_grad(), "dk");
    expect_close(res->value_input_grad(), "dv");
    expect_close(res->previous_scores_grad(), "dprev");
  }
  return worst;
}

template <class S>
double compare_residual_self_with_torch(const std::string& prefix) {
  SCOPED_TRACE(prefix);
  const seqattn::testing::ReferenceData d(seqattn::testing::data_path("scaled_dot_product_attention.txt"));
  const std::string p = prefix + ".";
  const Tensor3<S> x = d.tensor<S>(p + "x"), prev = d.tensor<S>(p + "prev"), R = d.tensor<S>(p + "R"),
                   Rz = d.tensor<S>(p + "Rz");
  const Index B = x.dimension(0), T = x.dimension(1), D = x.dimension(2);
  const Mask mask = keep_mask<S>(d, p + "q_keep", B, T);
  const double tol = sizeof(S) == sizeof(double) ? 1e-12 : 2e-6;
  double worst = 0;
  auto expect_close = [&](const Tensor3<S>& a, const std::string& name) {
    const auto& e = d.values(p + name);
    ASSERT_EQ(static_cast<size_t>(a.size()), e.size()) << name;
    for (size_t i = 0; i < e.size(); ++i) {
      const double err = std::abs(double(a.data()[i]) - e[i]);
      worst = std::max(worst, err);
      EXPECT_LE(err, tol * (1 + std::abs(e[i]))) << name << "[" << i << "]";
    }
  };
  ResidualScaledDotProductAttention<S> res(D, sdpa_opts(prefix.find("history") != std::string::npos));
  expect_close(res.forward(x, mask, prev), "y");
  expect_close(weights_of<S>(res, B), "attention");
  expect_close(res.scores(), "scores");
  expect_close(res.backward(x, mask, R, Rz), "dx");
  expect_close(res.previous_scores_grad(), "dprev");
  return worst;
}

TEST(ScaledDotProductAttention, MatchesTorchFusedScaledDotProductAttention) {
  double worst_double = 0, worst_float = 0;
  for (const char* prefix : {"self", "self_history", "self_lengths", "self_history_steps", "cross_steps",
                             "cross_history_steps", "residual_cross_steps", "residual_cross_history_steps"}) {
    worst_double = std::max(worst_double, compare_with_torch<double>(prefix));
    worst_float = std::max(worst_float, compare_with_torch<float>(prefix));
  }
  worst_double = std::max(worst_double, compare_residual_self_with_torch<double>("residual_self_history_lengths"));
  worst_float = std::max(worst_float, compare_residual_self_with_torch<float>("residual_self_history_lengths"));
  std::cout << "max abs difference from torch (outputs, weights, scores, every gradient): double " << worst_double
            << ", float " << worst_float << "\n";
}

// ---------------------------------------------------------------------------------------------- masks
TEST(ScaledDotProductAttention, StepMasksMatchCompactedLengthsAndIgnoreMaskedValues) {
  for (const bool history : {false, true}) {
    SCOPED_TRACE(history ? "history_only" : "full");
    ScaledDotProductAttention<double> layer(3, sdpa_opts(history));
    ResidualScaledDotProductAttention<double> residual(3, sdpa_opts(history));
    for (Layer<double>* l : {static_cast<Layer<double>*>(&layer), static_cast<Layer<double>*>(&residual)})
      for (std::uint64_t seed : {21, 22, 23}) {
        const Tensor3<double> x = random_tensor(6, 7, 3, seed);
        const Mask mask = random_step_mask(6, 7, seed);
        seqattn::testing::expect_compaction_equivalent(*l, x, mask, seed);
        seqattn::testing::expect_masked_values_ignored(*l, x, mask, seed);
        seqattn::testing::expect_masked_values_ignored(*l, x, Mask::from_lengths({7, 3, 0, 1, 5, 2}), seed);
      }
    seqattn::testing::expect_step_mask_of_other_T_refused(layer, random_tensor(3, 4, 3, 9));
  }
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

// Cross-attention with previous scores: NaN at masked query rows of q, masked key steps of k and v, and at every
// not-allowed entry of the previous scores and of dz changes no kept output, score or gradient (bitwise), and the
// gradients there are exactly 0.
TEST(ResidualScaledDotProductAttention, CrossOutputsAndGradientsIgnoreValuesAtMaskedSteps) {
  for (const bool history : {false, true}) {
    SCOPED_TRACE(history ? "history_only" : "full");
    constexpr Index B = 6, Tq = 5, Tk = 7, D = 4, Dv = 3;
    const Tensor3<double> q = random_tensor(B, Tq, D, 1), k = random_tensor(B, Tk, D, 2),
                          v = random_tensor(B, Tk, Dv, 3), prev = random_tensor(B, Tq, Tk, 4),
                          dy = random_tensor(B, Tq, Dv, 5), dz = random_tensor(B, Tq, Tk, 6);
    const Mask mq = random_step_mask(B, Tq, 8), mkv = random_step_mask(B, Tk, 9);
    auto allowed = [&](Index b, Index i, Index j) {
      return mq.valid(b, i, Tq) && mkv.valid(b, j, Tk) && (!history || j <= i);
    };
    const double nan = std::numeric_limits<double>::quiet_NaN();
    Tensor3<double> qg = seqattn::testing::with_masked_values(q, mq, [&](Index) { return nan; });
    Tensor3<double> kg = seqattn::testing::with_masked_values(k, mkv, [&](Index) { return nan; });
    Tensor3<double> vg = seqattn::testing::with_masked_values(v, mkv, [&](Index) { return nan; });
    Tensor3<double> pg = prev, dzg = dz, dyg = dy;
    for (Index b = 0; b < B; ++b)
      for (Index i = 0; i < Tq; ++i) {
        if (!mq.valid(b, i, Tq))
          for (Index f = 0; f < Dv; ++f) dyg(b, i, f) = nan;
        for (Index j = 0; j < Tk; ++j)
          if (!allowed(b, i, j)) pg(b, i, j) = dzg(b, i, j) = nan;
      }
    ResidualScaledDotProductAttention<double> a(D, sdpa_opts(history, Dv)), g(D, sdpa_opts(history, Dv));
    const Tensor3<double> ya = a.forward(q, mq, k, v, mkv, prev);
    const Tensor3<double> yg = g.forward(qg, mq, kg, vg, mkv, pg);
    for (Index i = 0; i < ya.size(); ++i) ASSERT_TRUE(same_bits(ya.data()[i], yg.data()[i])) << "y " << i;
    for (Index i = 0; i < a.scores().size(); ++i)
      ASSERT_TRUE(same_bits(a.scores().data()[i], g.scores().data()[i])) << "scores " << i;
    const Tensor3<double> wa = weights_of(a, B), wg = weights_of(g, B);
    for (Index i = 0; i < wa.size(); ++i) ASSERT_TRUE(same_bits(wa.data()[i], wg.data()[i])) << "attention " << i;
    const Tensor3<double> dqa = a.backward_cross(q, mq, k, v, mkv, dy, dz);
    const Tensor3<double> dqg = g.backward_cross(qg, mq, kg, vg, mkv, dyg, dzg);
    for (Index i = 0; i < dqa.size(); ++i) ASSERT_TRUE(same_bits(dqa.data()[i], dqg.data()[i])) << "dq " << i;
    for (Index i = 0; i < a.key_input_grad().size(); ++i)
      ASSERT_TRUE(same_bits(a.key_input_grad().data()[i], g.key_input_grad().data()[i])) << "dk " << i;
    for (Index i = 0; i < a.value_input_grad().size(); ++i)
      ASSERT_TRUE(same_bits(a.value_input_grad().data()[i], g.value_input_grad().data()[i])) << "dv " << i;
    for (Index i = 0; i < a.previous_scores_grad().size(); ++i)
      ASSERT_TRUE(same_bits(a.previous_scores_grad().data()[i], g.previous_scores_grad().data()[i])) << "dprev " << i;
    EXPECT_EQ(seqattn::testing::masked_nonzero(dqa, mq), "");
    EXPECT_EQ(seqattn::testing::masked_nonzero(a.key_input_grad(), mkv), "");
    EXPECT_EQ(seqattn::testing::masked_nonzero(a.value_input_grad(), mkv), "");
    for (Index b = 0; b < B; ++b)
      for (Index i = 0; i < Tq; ++i)
        for (Index j = 0; j < Tk; ++j)
          if (!allowed(b, i, j)) {
            ASSERT_EQ(a.previous_scores_grad()(b, i, j), 0.0);
            ASSERT_EQ(a.scores()(b, i, j), 0.0);
            ASSERT_EQ(wa(b, i, j), 0.0);
          }
  }
}

// history_only cross-attention where query 0 is kept but key 0 is masked: that row has no allowed key, outputs 0
// (Keras: uniform weights over all keys; torch: NaN) and passes no gradient; the attention rows of live queries
// sum to 1 and attention_map(b) is sample b's (Tq, Tk) weights.
TEST(ScaledDotProductAttention, RowsWithoutAnAllowedKeyOutputZeroAndAttentionMapsSumToOne) {
  const Tensor3<double> q = random_tensor(2, 4, 3, 1), k = random_tensor(2, 4, 3, 2), v = random_tensor(2, 4, 2, 3);
  const Mask mq = Mask(), mkv = Mask::from_steps({{0, 1, 1, 1}, {1, 1, 0, 1}});
  ScaledDotProductAttention<double> layer(3, sdpa_opts(true, 2));
  const Tensor3<double> y = layer.forward(q, mq, k, v, mkv);
  for (Index f = 0; f < 2; ++f) EXPECT_EQ(y(0, 0, f), 0.0);
  for (Index b = 0; b < 2; ++b) {
    const Matrix<double> map = layer.attention_map(b);
    ASSERT_EQ(map.rows(), 4);
    ASSERT_EQ(map.cols(), 4);
    for (Index i = 0; i < 4; ++i) {
      const double sum = map.row(i).sum();
      if (b == 0 && i == 0)
        EXPECT_EQ(sum, 0.0);
      else
        EXPECT_NEAR(sum, 1.0, 1e-15);
      for (Index j = i + 1; j < 4; ++j) EXPECT_EQ(map(i, j), 0.0);  // history_only
    }
  }
  EXPECT_EQ(layer.attention_map(1)(3, 2), 0.0);  // masked key
  const Tensor3<double>& dq = layer.backward_cross(q, mq, k, v, mkv, random_tensor(2, 4, 2, 4));
  for (Index f = 0; f < 3; ++f) EXPECT_EQ(dq(0, 0, f), 0.0);
  EXPECT_THROW(layer.attention_map(2), ShapeError);
  Sequential<double> model(3);
  model.add<ResidualScaledDotProductAttention<double>>(sdpa_opts(true));
  model.predict(q);
  const auto maps = attention_maps(model);
  ASSERT_EQ(maps.size(), 1u);
  EXPECT_EQ(maps[0].path, "0.residual_scaled_dot_product_attention");
  EXPECT_EQ(maps[0].map->attention_map(1).rows(), 4);
  EXPECT_THROW(ScaledDotProductAttention<double>(3).attention_map(0), UsageError);
}

// The four-input forward with xq = xk = xv and mq = mkv is the self-attention forward, bitwise; so is the residual
// layer without previous scores.
TEST(ScaledDotProductAttention, CrossFormWithOneInputIsSelfAttention) {
  for (const bool history : {false, true}) {
    const Tensor3<double> x = random_tensor(3, 6, 4, 7), dy = random_tensor(3, 6, 4, 8);
    const Mask mask = random_step_mask(3, 6, 3);
    ScaledDotProductAttention<double> self(4, sdpa_opts(history)), cross(4, sdpa_opts(history));
    ResidualScaledDotProductAttention<double> res(4, sdpa_opts(history));
    const Tensor3<double> ys = self.forward(x, mask), yr = res.forward(x, mask);
    const Tensor3<double>& yc = cross.forward(x, mask, x, x, mask);
    for (Index i = 0; i < ys.size(); ++i) {
      ASSERT_TRUE(same_bits(ys.data()[i], yc.data()[i]));
      ASSERT_TRUE(same_bits(ys.data()[i], yr.data()[i]));
    }
    const Tensor3<double> dx = self.backward(x, mask, dy);
    const Tensor3<double> dq = cross.backward_cross(x, mask, x, x, mask, dy);
    for (Index i = 0; i < dx.size(); ++i)
      ASSERT_NEAR(dx.data()[i], dq.data()[i] + cross.key_input_grad().data()[i] + cross.value_input_grad().data()[i],
                  1e-15);
  }
}

// ---------------------------------------------------------------------------------------------- streams
TEST(ScaledDotProductAttention, HistoryOnlyStreamsMatchPredictAndFullAttentionIsRefused) {
  for (const bool residual : {false, true}) {
    Sequential<double> model(4);
    if (residual)
      model.add<ResidualScaledDotProductAttention<double>>(sdpa_opts(true));
    else
      model.add<ScaledDotProductAttention<double>>(sdpa_opts(true));
    seqattn::testing::StreamCheck check;
    check.steps = 40;
    check.max_sequence = 20;
    check.max_chunk = 5;
    check.options.max_history(20);
    EXPECT_TRUE(seqattn::testing::stream_matches_predict(model, check, 1e-12, model.layer(0).describe()));
  }
  try {
    ScaledDotProductAttention<double>(4).open_stream(2, StreamOptions());
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("ScaledDotProductAttention(): cannot be streamed: history_only=false"),
              std::string::npos)
        << e.what();
  }
  try {
    ScaledDotProductAttention<double>(4, sdpa_opts(true, 3)).open_stream(2, StreamOptions());
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("value_features differs from the input features"), std::string::npos)
        << e.what();
  }
}

// ---------------------------------------------------------------------------------------------- files, errors
TEST(ScaledDotProductAttention, ConfigRoundTripRebuildsTheSameLayer) {
  const std::vector<ScaledDotProductAttentionOptions> all = {sdpa_opts(false), sdpa_opts(true), sdpa_opts(true, 5)};
  for (const auto& o : all) {
    const std::vector<std::shared_ptr<Layer<double>>> layers = {
        std::make_shared<ScaledDotProductAttention<double>>(3, o),
        std::make_shared<ResidualScaledDotProductAttention<double>>(3, o)};
    for (const auto& layer : layers) {
      const Config entry = layer_entry(*layer);
      ASSERT_TRUE(LayerRegistry<double>::instance().contains(layer->class_name()));
      const std::unique_ptr<Layer<double>> rebuilt = build_layer<double>(entry, 3);
      EXPECT_EQ(layer_entry(*rebuilt), entry) << entry.dump();
      EXPECT_EQ(rebuilt->describe(), layer->describe());
      EXPECT_EQ(rebuilt->out_features(), layer->out_features());
      EXPECT_NE(entry.dump().find("\"history_only\""), std::string::npos) << entry.dump();
    }
  }
  Config bad = ScaledDotProductAttention<double>(3).config();
  bad.set("history_onyl", Config(true));
  try {
    ScaledDotProductAttention<double>::from_config(3, bad);
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("ScaledDotProductAttention config"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("history_onyl"), std::string::npos) << e.what();
  }
}

template <class Call>
void expect_error(Call call, const std::string& want) {
  try {
    call();
    ADD_FAILURE() << "expected an error containing: " << want;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
  }
}

TEST(ScaledDotProductAttention, ErrorsNameTheLayerTheExpectedAndTheReceivedShape) {
  const Tensor3<double> q = random_tensor(2, 3, 4, 1), k = random_tensor(2, 5, 4, 2), v = random_tensor(2, 5, 3, 3);
  const Mask none;
  ScaledDotProductAttention<double> layer(4, sdpa_opts(false, 3));
  expect_error([&] { layer.forward(q, none, random_tensor(2, 5, 6, 1), v, none); },
               "ScaledDotProductAttention(value_features=3): key features expected 4 (the query features d_k) but got "
               "6 (key shape (2, 5, 6))");
  expect_error([&] { layer.forward(q, none, random_tensor(3, 5, 4, 1), v, none); },
               "ScaledDotProductAttention(value_features=3): key batch expected 2 (the query batch) but got 3");
  expect_error([&] { layer.forward(q, none, k, random_tensor(2, 4, 3, 1), none); },
               "value input expected the batch and steps of the key input (2, 5, 4) but got (2, 4, 3)");
  expect_error([&] { layer.forward(q, none, k, random_tensor(2, 5, 2, 1), none); },
               "value features expected 3 (value_features) but got 2 (value shape (2, 5, 2))");
  expect_error(
      [&] {
        layer.forward(q, none, k, v, Mask::from_lengths({5, 6}));
      },
      "ScaledDotProductAttention(value_features=3) key/value: mask length of sequence 1 is 6 but the input "
      "has only 5 steps");
  expect_error([&] { layer.forward(random_tensor(2, 3, 5, 1), none, k, v, none); },
               "ScaledDotProductAttention(value_features=3): input features expected 4 but got 5");
  expect_error([&] { layer.forward(q); },
               "ScaledDotProductAttention(value_features=3): self-attention needs value_features == input features "
               "(4) but value_features is 3");
  layer.forward(q, none, k, v, none);
  expect_error(
      [&] {
        layer.backward_cross(q, none, random_tensor(2, 4, 4, 1), random_tensor(2, 4, 3, 1), none,
                             random_tensor(2, 3, 3, 1));
      },
      "backward key and value inputs expected (2, 5, 4) and (2, 5, 3) (the inputs of the last forward) but "
      "got (2, 4, 4) and (2, 4, 3)");
  expect_error([&] { layer.backward(q, none, random_tensor(2, 3, 3, 1)); },
               "ScaledDotProductAttention(value_features=3): backward called after a cross-attention forward (call "
               "backward_cross)");
  ScaledDotProductAttention<double> self(4);
  self.forward(q);
  expect_error([&] { self.backward_cross(q, none, k, random_tensor(2, 5, 4, 1), none, random_tensor(2, 3, 4, 1)); },
               "ScaledDotProductAttention(): backward_cross called after a self-attention forward");
  expect_error([&] { ScaledDotProductAttention<double>(4, ScaledDotProductAttentionOptions().value_features(-2)); },
               "ScaledDotProductAttention(value_features=-2): value_features expected a positive integer but got -2");

  ResidualScaledDotProductAttention<double> res(4, sdpa_opts(true, 3));
  expect_error([&] { res.forward(q, none, k, v, none, random_tensor(2, 3, 4, 1)); },
               "ResidualScaledDotProductAttention(history_only=true, value_features=3): previous scores expected "
               "(2, 3, 5) (batch, query steps, key steps) but got (2, 3, 4)");
  res.forward(q, none, k, v, none, random_tensor(2, 3, 5, 1));
  expect_error([&] { res.backward_cross(q, none, k, v, none, random_tensor(2, 3, 3, 1), random_tensor(2, 5, 3, 1)); },
               "ResidualScaledDotProductAttention(history_only=true, value_features=3): scores gradient expected "
               "(2, 3, 5) (batch, query steps, key steps) but got (2, 5, 3)");
  ResidualScaledDotProductAttention<double> res_self(4);
  expect_error([&] { res_self.forward(q, none, random_tensor(2, 4, 3, 1)); },
               "ResidualScaledDotProductAttention(): previous scores expected (2, 3, 3)");
}

}  // namespace
