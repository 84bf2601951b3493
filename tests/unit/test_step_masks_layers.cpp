// Step masks (core/mask.hpp: holes, left padding) in the position-wise layers, the norms, the positional
// encodings, Embedding, Masking, the pools and SeqWeightedAttention (docs/step_masks: issue 22). For every layer
// and option, in double, with random step masks:
//   - finite-difference gradients with the step mask;
//   - kept outputs bitwise unchanged when masked input values become garbage (finite up to 1e3, then NaN and
//     Inf); with dy 0 at masked output steps, dx is exactly 0 at masked input steps and dx at kept steps and the
//     parameter gradients are unchanged by (finite) garbage;
//   - independent references: the pools and SeqWeightedAttention on the compacted sequences (kept steps only, as
//     lengths), BatchNorm's statistics over the kept steps, hand-computed windows for MaxPool1D / AvgPool1D;
//   - the layer's error when the step mask was built for another T.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/layers/activation.hpp"
#include "seqattn/layers/batch_norm.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/dropout.hpp"
#include "seqattn/layers/embedding.hpp"
#include "seqattn/layers/layer_norm.hpp"
#include "seqattn/layers/masking.hpp"
#include "seqattn/layers/pooling.hpp"
#include "seqattn/layers/positional_encoding.hpp"
#include "seqattn/layers/rms_norm.hpp"
#include "seqattn/layers/seq_weighted_attention.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::GradCheckOptions;
using seqattn::testing::masked_nonzero;
using seqattn::testing::random_step_mask;
using seqattn::testing::random_tensor;
using seqattn::testing::same_kept_steps;
using seqattn::testing::with_masked_values;

namespace {

constexpr Index kB = 6, kT = 7, kF = 4;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN(), kInf = std::numeric_limits<double>::infinity();

struct Case {
  using Make = std::function<std::unique_ptr<Layer<double>>()>;
  Case(std::string n, Make m, Mode mo = Mode::Infer, bool g = true, std::vector<std::string> z = {})
      : name(std::move(n)), make(std::move(m)), mode(mo), grad_check(g), allowed_zero(std::move(z)) {}
  std::string name;
  Make make;
  Mode mode;
  bool grad_check;                        // finite differences (not for Dropout in Train: it redraws)
  std::vector<std::string> allowed_zero;  // parameters whose gradient may be all zero
};

std::vector<Case> cases() {
  std::vector<Case> c;
  for (const Activation a : {Activation::Linear, Activation::Tanh, Activation::Softmax})
    c.push_back({"Dense " + std::to_string(static_cast<int>(a)),
                 [a] { return std::make_unique<Dense<double>>(kF, 3, DenseOptions().activation(a).seed(5)); }});
  c.push_back({"Activation gelu", [] { return std::make_unique<ActivationLayer<double>>(kF, Activation::GELU); }});
  c.push_back({"Dropout infer", [] { return std::make_unique<Dropout<double>>(kF, 0.3, DropoutOptions().seed(3)); }});
  c.push_back({"Dropout train", [] { return std::make_unique<Dropout<double>>(kF, 0.3, DropoutOptions().seed(3)); },
               Mode::Train, false});
  c.push_back({"LayerNorm", [] { return std::make_unique<LayerNorm<double>>(kF); }});
  c.push_back({"RMSNorm", [] { return std::make_unique<RMSNorm<double>>(kF); }});
  c.push_back({"BatchNorm train", [] { return std::make_unique<BatchNorm<double>>(kF); }, Mode::Train});
  c.push_back({"BatchNorm infer", [] {
                 auto bn = std::make_unique<BatchNorm<double>>(kF);
                 bn->running_mean().setConstant(0.2);
                 bn->running_var().setConstant(1.5);
                 return bn;
               }});
  c.push_back({"GlobalMaxPool", [] { return std::make_unique<GlobalMaxPool<double>>(kF); }});
  c.push_back({"GlobalAvgPool", [] { return std::make_unique<GlobalAvgPool<double>>(kF); }});
  c.push_back({"LastStep", [] { return std::make_unique<LastStep<double>>(kF); }});
  for (const bool partial : {false, true})
    for (const Index size : {Index(1), Index(2), Index(3)})
      for (const Index stride : {Index(1), Index(2), Index(3)}) {
        const std::string o = std::to_string(size) + "/" + std::to_string(stride) + (partial ? " partial" : "");
        c.push_back({"MaxPool1D " + o, [=] {
                       return std::make_unique<MaxPool1D<double>>(kF, size,
                                                                   PoolOptions().stride(stride).partial_windows(partial));
                     }});
        c.push_back({"AvgPool1D " + o, [=] {
                       return std::make_unique<AvgPool1D<double>>(kF, size,
                                                                   PoolOptions().stride(stride).partial_windows(partial));
                     }});
      }
  c.push_back({"SeqWeightedAttention",
               [] { return std::make_unique<SeqWeightedAttention<double>>(kF, SeqWeightedAttentionOptions().seed(4)); },
               Mode::Infer, true, {"b"}});  // b shifts every score equally: its gradient is 0 up to rounding
  for (const PositionMode mode : {PositionMode::Add, PositionMode::Concat}) {
    const Index d = mode == PositionMode::Add ? 0 : 3;
    const std::string m = mode == PositionMode::Add ? " add" : " concat";
    c.push_back({"SinusoidalPositionalEncoding" + m, [=] {
                   return std::make_unique<SinusoidalPositionalEncoding<double>>(kF, mode, d);
                 }});
    c.push_back({"PositionEmbedding" + m, [=] {
                   return std::make_unique<PositionEmbedding<double>>(
                       kF, kT, PositionEmbeddingOptions().mode(mode).output_dim(d).seed(6));
                 }});
  }
  c.push_back({"Masking", [] { return std::make_unique<Masking<double>>(kF, 0.5); }});
  c.push_back({"Masking NaN", [] { return std::make_unique<Masking<double>>(kF, kNaN); }});
  return c;
}

// dy with the shape of y, 0 at the masked output steps.
Tensor3<double> masked_dy(const Tensor3<double>& y, const Mask& my, std::uint64_t seed) {
  Tensor3<double> dy = random_tensor(y.dimension(0), y.dimension(1), y.dimension(2), seed);
  return with_masked_values(dy, my, [](Index) { return 0.0; });
}

::testing::AssertionResult same_values(const ParamList<double>& a, const ParamList<double>& b) {
  for (size_t i = 0; i < a.size(); ++i)
    for (Index k = 0; k < a[i].size(); ++k)
      if (!(a[i].grad[k] == b[i].grad[k]))
        return ::testing::AssertionFailure() << "gradient of " << a[i].name << "[" << k << "]: " << a[i].grad[k]
                                             << " vs " << b[i].grad[k];
  return ::testing::AssertionSuccess();
}

}  // namespace

TEST(StepMasksLayers, EveryConvertedLayerSupportsStepMasks) {
  for (const Case& c : cases()) EXPECT_TRUE(c.make()->supports_step_masks()) << c.name;
}

TEST(StepMasksLayers, GradientsMatchFiniteDifferencesWithHoles) {
  for (const Case& c : cases()) {
    if (!c.grad_check) continue;
    for (const std::uint64_t seed : {1u, 2u, 3u}) {
      SCOPED_TRACE(c.name + " seed " + std::to_string(seed));
      auto layer = c.make();
      const Mask mask = random_step_mask(kB, kT, seed);
      ASSERT_TRUE(mask.has_holes());
      Tensor3<double> x = random_tensor(kB, kT, kF, 10 + seed);
      if (c.name == "Masking NaN")  // steps with a NaN at kept steps of the mask (the first steps of sequences 0 and
        x(0, 0, 1) = x(1, kT - 1, 0) = kNaN;  // 1 are kept): masked there, NaN never reaches the loss
      GradCheckOptions options;
      options.mode = c.mode;
      const auto result = check_layer_gradients(*layer, x, mask, options);
      EXPECT_TRUE(result.passed(c.allowed_zero)) << result.report();
    }
  }
}

TEST(StepMasksLayers, MaskedInputValuesNeverReachKeptOutputsOrGradients) {
  for (const Case& c : cases()) {
    for (const std::uint64_t seed : {1u, 2u, 3u, 4u, 5u}) {
      SCOPED_TRACE(c.name + " seed " + std::to_string(seed));
      const auto base = c.make();
      const Mask mask = random_step_mask(kB, kT, 100 + seed);
      const Tensor3<double> x = random_tensor(kB, kT, kF, 200 + seed);
      auto ref = base->clone();
      const Tensor3<double> y = ref->forward(x, mask, c.mode);
      const Mask my = ref->out_mask(mask, kT);
      const Tensor3<double> dy = masked_dy(y, my, 300 + seed);
      ref->zero_grad();
      const Tensor3<double> dx = ref->backward(x, mask, dy);
      EXPECT_EQ(masked_nonzero(dx, mask), "");

      Rng rng(400 + seed);
      const Tensor3<double> finite = with_masked_values(x, mask, [&](Index) { return rng.uniform(-1e3, 1e3); });
      const Tensor3<double> nonfinite = with_masked_values(x, mask, [](Index i) {
        return i % 3 == 0 ? kNaN : i % 3 == 1 ? kInf : -kInf;
      });
      for (const Tensor3<double>* xg : {&finite, &nonfinite}) {
        auto other = base->clone();
        const Tensor3<double>& y2 = other->forward(*xg, mask, c.mode);
        EXPECT_TRUE(same_kept_steps(y, my, y2, other->out_mask(mask, kT)));
        if (xg != &finite) continue;
        other->zero_grad();
        const Tensor3<double>& dx2 = other->backward(*xg, mask, dy);
        EXPECT_TRUE(same_kept_steps(dx, mask, dx2, mask));
        EXPECT_EQ(masked_nonzero(dx2, mask), "");
        EXPECT_TRUE(same_values(ref->params(), other->params()));
      }
    }
  }
}

TEST(StepMasksLayers, AStepMaskForAnotherTIsRefusedNamingTheLayer) {
  const Mask mask = random_step_mask(kB, kT + 1, 9);
  for (const Case& c : cases()) {
    auto layer = c.make();
    try {
      layer->forward(random_tensor(kB, kT, kF, 1), mask, c.mode);
      ADD_FAILURE() << c.name << ": no error";
    } catch (const ShapeError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find(layer->describe()), std::string::npos) << m;
      EXPECT_NE(m.find("step mask has 8 steps but the input has 7"), std::string::npos) << m;
    }
  }
}

// The pools and SeqWeightedAttention over the kept steps equal the same layer on the compacted sequences (the
// kept steps moved to the front, as lengths): bitwise, the same additions in the same order.
TEST(StepMasksLayers, PoolsEqualTheCompactedSequences) {
  std::vector<std::function<std::unique_ptr<Layer<double>>()>> makers = {
      [] { return std::make_unique<GlobalMaxPool<double>>(kF); },
      [] { return std::make_unique<GlobalAvgPool<double>>(kF); },
      [] { return std::make_unique<LastStep<double>>(kF); },
      [] { return std::make_unique<SeqWeightedAttention<double>>(kF, SeqWeightedAttentionOptions().seed(4)); }};
  for (size_t i = 0; i < makers.size(); ++i)
    for (const std::uint64_t seed : {1u, 2u, 3u, 4u}) {
      const Mask mask = random_step_mask(kB, kT, 50 + seed);
      const Tensor3<double> x = random_tensor(kB, kT, kF, 60 + seed);
      Tensor3<double> compact(kB, kT, kF);
      compact.setConstant(kNaN);  // padding of the compacted batch
      std::vector<Index> lengths;
      for (Index b = 0; b < kB; ++b) {
        Index n = 0;
        for (Index t = 0; t < kT; ++t)
          if (mask.valid(b, t, kT)) {
            for (Index f = 0; f < kF; ++f) compact(b, n, f) = x(b, t, f);
            ++n;
          }
        lengths.push_back(n);
      }
      auto a = makers[i](), c = makers[i]();
      const Tensor3<double> y = a->forward(x, mask);
      const Tensor3<double>& yc = c->forward(compact, Mask(lengths));
      SCOPED_TRACE(a->describe() + " seed " + std::to_string(seed));
      EXPECT_TRUE(same_kept_steps(y, Mask(), yc, Mask()));
      // gradients: dx at the kept steps equals the compacted dx moved back, 0 elsewhere
      const Tensor3<double> dy = random_tensor(kB, 1, kF, 70 + seed);
      a->zero_grad();
      c->zero_grad();
      const Tensor3<double> dx = a->backward(x, mask, dy);
      const Tensor3<double>& dxc = c->backward(compact, Mask(lengths), dy);
      for (Index b = 0; b < kB; ++b) {
        Index n = 0;
        for (Index t = 0; t < kT; ++t)
          for (Index f = 0; f < kF; ++f) {
            if (!mask.valid(b, t, kT)) {
              EXPECT_EQ(dx(b, t, f), 0.0);
              continue;
            }
            EXPECT_NEAR(dx(b, t, f), dxc(b, n, f), 1e-15) << b << " " << t << " " << f;
            if (f + 1 == kF) ++n;
          }
      }
      const ParamList<double> pa = a->params(), pc = c->params();
      for (size_t k = 0; k < pa.size(); ++k)
        for (Index e = 0; e < pa[k].size(); ++e) EXPECT_NEAR(pa[k].grad[e], pc[k].grad[e], 1e-14) << pa[k].name;
    }
}

// BatchNorm in Train: the statistics of the kept steps only (and the running statistics from them).
TEST(StepMasksLayers, BatchNormStatisticsUseTheKeptStepsOnly) {
  const Mask mask = Mask::from_steps({{0, 1, 1, 0, 1}, {1, 0, 0, 1, 0}, {0, 0, 0, 0, 0}});
  const Tensor3<double> x = random_tensor(3, 5, 2, 8);
  BatchNorm<double> bn(2);
  bn.forward(x, mask, Mode::Train);
  EXPECT_EQ(bn.valid_steps(), 5);
  for (Index f = 0; f < 2; ++f) {
    const double v[] = {x(0, 1, f), x(0, 2, f), x(0, 4, f), x(1, 0, f), x(1, 3, f)};
    double mean = 0, var = 0;
    for (double e : v) mean += e / 5;
    for (double e : v) var += (e - mean) * (e - mean) / 5;
    EXPECT_NEAR(bn.mean()(f), mean, 1e-15);
    EXPECT_NEAR(bn.var()(f), var, 1e-15);
    EXPECT_NEAR(bn.running_var()(f), 0.9 + 0.1 * var * 5 / 4, 1e-15);
    EXPECT_NEAR(bn.output()(0, 1, f), (x(0, 1, f) - mean) / std::sqrt(var + 1e-5), 1e-12);
    EXPECT_EQ(bn.output()(0, 0, f), 0.0);
    EXPECT_EQ(bn.output()(1, 1, f), 0.0);
  }
  // a Train batch with a single kept step is refused as with lengths
  EXPECT_THROW(bn.forward(x, Mask::from_steps({{0, 1, 0, 0, 0}, {0, 0, 0, 0, 0}, {0, 0, 0, 0, 0}}), Mode::Train),
               ShapeError);
}

// Hand-computed windows: sequence 0 keeps {1, 2, 4, 5} of 6 (left padding, a hole), sequence 1 {0, 2}.
TEST(StepMasksLayers, WindowPoolsHandComputed) {
  const Mask mask = Mask::from_steps({{0, 1, 1, 0, 1, 1}, {1, 0, 1, 0, 0, 0}});
  Tensor3<double> x(2, 6, 1);
  x.setValues({{{9}, {1}, {2}, {9}, {4}, {6}}, {{3}, {9}, {5}, {9}, {9}, {9}}});
  {
    // size 2, stride 2, complete windows: window 0 = [0, 2) starts before sequence 0's first kept step (masked);
    // windows 1 and 2 lie inside its span; sequence 1 spans [0, 3): window 0 (pools step 0) only.
    AvgPool1D<double> avg(1, 2);
    MaxPool1D<double> max(1, 2);
    const Tensor3<double> ya = avg.forward(x, mask), ym = max.forward(x, mask);
    EXPECT_EQ(avg.out_mask(mask, 6), Mask::from_steps({{0, 1, 1}, {1, 0, 0}}));
    const double want_avg[2][3] = {{0, 2, 5}, {3, 0, 0}}, want_max[2][3] = {{0, 2, 6}, {3, 0, 0}};
    for (Index b = 0; b < 2; ++b)
      for (Index j = 0; j < 3; ++j) {
        EXPECT_EQ(ya(b, j, 0), want_avg[b][j]) << b << " " << j;
        EXPECT_EQ(ym(b, j, 0), want_max[b][j]) << b << " " << j;
      }
    Tensor3<double> dy(2, 3, 1);
    dy.setValues({{{10}, {20}, {30}}, {{40}, {50}, {60}}});
    const Tensor3<double> dxa = avg.backward(x, mask, dy), dxm = max.backward(x, mask, dy);
    const double want_dxa[2][6] = {{0, 0, 20, 0, 15, 15}, {40, 0, 0, 0, 0, 0}};
    const double want_dxm[2][6] = {{0, 0, 20, 0, 0, 30}, {40, 0, 0, 0, 0, 0}};
    for (Index b = 0; b < 2; ++b)
      for (Index t = 0; t < 6; ++t) {
        EXPECT_EQ(dxa(b, t, 0), want_dxa[b][t]) << b << " " << t;
        EXPECT_EQ(dxm(b, t, 0), want_dxm[b][t]) << b << " " << t;
      }
  }
  {
    // partial windows, size 3, stride 2: windows [0,3) [2,5) [4,6); kept when one of their steps is kept
    AvgPool1D<double> avg(1, 3, PoolOptions().stride(2).partial_windows(true));
    const Tensor3<double> ya = avg.forward(x, mask);
    EXPECT_EQ(avg.out_mask(mask, 6), Mask::from_steps({{1, 1, 1}, {1, 1, 0}}));
    EXPECT_EQ(avg.out_mask(mask, 6), Mask::from_lengths({3, 2}));  // a prefix: lengths
    const double want[2][3] = {{1.5, 3, 5}, {4, 5, 0}};
    for (Index b = 0; b < 2; ++b)
      for (Index j = 0; j < 3; ++j) EXPECT_EQ(ya(b, j, 0), want[b][j]) << b << " " << j;
  }
  // a length mask keeps today's mapping
  AvgPool1D<double> avg(1, 2);
  EXPECT_EQ(avg.out_mask(Mask::from_lengths({6, 3}), 6), Mask::from_lengths({3, 1}));
}

// Positions count steps, not kept steps: a kept step t gets PE[t] whatever is masked before it.
TEST(StepMasksLayers, PositionalEncodingUsesTheStepIndex) {
  const Mask mask = Mask::from_steps({{0, 0, 1, 0, 1}, {1, 1, 1, 1, 1}});
  Tensor3<double> x(2, 5, 2);
  x.setZero();
  SinusoidalPositionalEncoding<double> pe(2, PositionMode::Concat, 2);
  const Tensor3<double>& y = pe.forward(x, mask);
  for (const Index t : {Index(2), Index(4)})
    for (Index c = 2; c < 4; ++c) EXPECT_EQ(y(0, t, c), y(1, t, c)) << t << " " << c;
  EXPECT_EQ(y(0, 0, 2), 0.0);
  EXPECT_EQ(y(0, 3, 3), 0.0);  // masked: as padded, no encoding
  EXPECT_EQ(y(1, 0, 3), 1.0);  // cos(0)
  // PositionEmbedding: max_length applies to the last kept step
  PositionEmbedding<double> emb(2, 3, PositionEmbeddingOptions().seed(1));
  EXPECT_NO_THROW(emb.forward(x, Mask::from_steps({{0, 1, 1, 0, 0}, {1, 0, 1, 0, 0}})));
  EXPECT_THROW(emb.forward(x, Mask::from_steps({{0, 1, 0, 1, 0}, {1, 0, 1, 0, 0}})), ShapeError);
}

// Embedding: an id 0 inside a sequence with mask_zero is a masked step (Keras), not a lookup of row 0.
TEST(StepMasksLayers, EmbeddingMaskZeroGivesAStepMask) {
  Embedding<double> emb(1, 5, 3, EmbeddingOptions().mask_zero(true).seed(2));
  Tensor3<double> ids(3, 5, 1);
  ids.setValues({{{1}, {0}, {2}, {0}, {0}}, {{0}, {0}, {3}, {4}, {0}}, {{1}, {2}, {3}, {4}, {4}}});
  const Tensor3<double> y = emb.forward(ids, Mask());
  const Mask out = emb.out_mask(Mask(), 5);
  EXPECT_EQ(out, Mask::from_steps({{1, 0, 1, 0, 0}, {0, 0, 1, 1, 0}, {1, 1, 1, 1, 1}}));
  EXPECT_TRUE(out.has_holes());
  for (Index f = 0; f < 3; ++f) {
    EXPECT_EQ(y(0, 1, f), 0.0);
    EXPECT_EQ(y(1, 0, f), 0.0);
    EXPECT_EQ(y(0, 2, f), emb.embeddings()(2, f));
  }
  // trailing zeros only: lengths, as before
  Tensor3<double> trailing = ids;
  trailing(0, 1, 0) = 1;
  trailing(1, 0, 0) = trailing(1, 1, 0) = 2;
  emb.forward(trailing, Mask());
  EXPECT_EQ(emb.out_mask(Mask(), 5), Mask::from_lengths({3, 4, 5}));
  // gradients of the table: the kept steps only (row 0 gets nothing)
  emb.forward(ids, Mask());
  const Tensor3<double> dy = random_tensor(3, 5, 3, 4);
  emb.zero_grad();
  emb.backward(ids, Mask(), dy);
  const Eigen::Map<Matrix<double>> dE(emb.params()[0].grad, 5, 3);
  Matrix<double> want = Matrix<double>::Zero(5, 3);
  for (Index b = 0; b < 3; ++b)
    for (Index t = 0; t < 5; ++t)
      if (out.valid(b, t, 5))
        for (Index f = 0; f < 3; ++f) want(static_cast<Index>(ids(b, t, 0)), f) += dy(b, t, f);
  EXPECT_TRUE(dE.isApprox(want, 1e-15)) << dE << "\n\n" << want;
  EXPECT_EQ(dE.row(0).squaredNorm(), 0.0);
  // an incoming step mask: masked ids are neither read nor checked
  Tensor3<double> bad = ids;
  bad(2, 1, 0) = 99;
  EXPECT_NO_THROW(emb.forward(bad, Mask::from_steps({{1, 1, 1, 1, 1}, {1, 1, 1, 1, 1}, {1, 0, 1, 1, 1}})));
  EXPECT_THROW(emb.forward(bad, Mask()), ShapeError);
}
