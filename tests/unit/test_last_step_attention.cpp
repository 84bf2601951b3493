// LastStepAttention (keras-attention's Attention, luong and bahdanau scores): finite-difference gradients with
// lengths and step masks, an autograd re-implementation of keras-attention (tests/reference/
// gen_last_step_attention.py) in float and double (output, weights, scores, context vectors, gradients), the
// step-mask properties (compaction, garbage at masked steps), sequences with no kept step, the model-file round
// trip, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "seqattn/layers/last_step_attention.hpp"
#include "seqattn/model/layer_registry.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/reference_data.hpp"
#include "support/step_mask_layer_checks.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_step_mask;
using seqattn::testing::random_tensor;

namespace {

LastStepAttentionOptions opts(AttentionScore score, Index units, std::uint64_t seed) {
  return LastStepAttentionOptions().score(score).units(units).seed(seed);
}

TEST(LastStepAttention, GradientsMatchFiniteDifferences) {
  for (AttentionScore score : {AttentionScore::Luong, AttentionScore::Bahdanau}) {
    SCOPED_TRACE(to_string(score));
    LastStepAttention<double> layer(4, opts(score, 3, 3));
    const auto masked = check_layer_gradients(layer, random_tensor(4, 5, 4, 1), Mask::from_lengths({5, 2, 0, 1}));
    EXPECT_TRUE(masked.passed()) << masked.report();
    const auto unmasked = check_layer_gradients(layer, random_tensor(2, 3, 4, 2));
    EXPECT_TRUE(unmasked.passed()) << unmasked.report();
    for (std::uint64_t seed : {11, 12}) {
      const auto steps = check_layer_gradients(layer, random_tensor(6, 6, 4, seed), random_step_mask(6, 6, seed));
      EXPECT_TRUE(steps.passed()) << steps.report();
    }
  }
}

template <class S>
void compare_with_reference(const std::string& prefix, AttentionScore score) {
  SCOPED_TRACE(prefix);
  const seqattn::testing::ReferenceData d(seqattn::testing::data_path("last_step_attention.txt"));
  const std::string p = prefix + ".";
  const Tensor3<S> x = d.tensor<S>(p + "x");
  const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
  const std::vector<double>& keep_values = d.values(p + "keep");
  std::vector<std::uint8_t> keep;
  for (double v : keep_values) keep.push_back(v != 0.0);
  const Mask mask = Mask::from_steps(B, T, keep);
  const Matrix<S> Wc = d.matrix<S>(p + "attention_vector");
  LastStepAttention<S> layer(F, LastStepAttentionOptions().score(score).units(Wc.cols()));
  layer.output_kernel() = Wc;
  if (score == AttentionScore::Luong) {
    layer.kernel() = d.matrix<S>(p + "luong_w");
  } else {
    layer.kernel() = d.matrix<S>(p + "bahdanau_w1");
    layer.kernel_w2() = d.matrix<S>(p + "bahdanau_w2");
    layer.kernel_v() = d.matrix<S>(p + "bahdanau_v");
  }
  const double tol = sizeof(S) == sizeof(double) ? 1e-12 : 2e-6;
  auto expect_close = [&](const S* a, const std::string& name) {
    const auto& e = d.values(p + name);
    for (size_t i = 0; i < e.size(); ++i) EXPECT_NEAR(double(a[i]), e[i], tol * (1 + std::abs(e[i]))) << name << i;
  };
  const Tensor3<S>& y = layer.forward(x, mask);
  EXPECT_EQ(y.dimensions(), (Eigen::DSizes<Index, 3>(B, 1, Wc.cols())));
  expect_close(y.data(), "y");
  expect_close(layer.attention().data(), "attention");
  expect_close(layer.scores().data(), "score");
  const Matrix<S> context = layer.context();  // (B, F), row-major as the file
  EXPECT_EQ(context.rows(), B);
  EXPECT_EQ(context.cols(), F);
  expect_close(context.data(), "context");
  layer.zero_grad();
  expect_close(layer.backward(x, mask, d.tensor<S>(p + "R")).data(), "dx");
  for (const auto& param : layer.params()) expect_close(param.grad, "d" + param.name);
}

TEST(LastStepAttention, MatchesAutogradReimplementationOfKerasAttention) {
  for (const char* prefix : {"luong", "luong_steps", "luong_lengths"}) {
    compare_with_reference<double>(prefix, AttentionScore::Luong);
    compare_with_reference<float>(prefix, AttentionScore::Luong);
  }
  for (const char* prefix : {"bahdanau", "bahdanau_steps", "bahdanau_lengths"}) {
    compare_with_reference<double>(prefix, AttentionScore::Bahdanau);
    compare_with_reference<float>(prefix, AttentionScore::Bahdanau);
  }
}

TEST(LastStepAttention, StepMasksMatchCompactedLengthsAndIgnoreMaskedValues) {
  for (AttentionScore score : {AttentionScore::Luong, AttentionScore::Bahdanau}) {
    SCOPED_TRACE(to_string(score));
    LastStepAttention<double> layer(3, opts(score, 4, 5));
    for (std::uint64_t seed : {21, 22, 23}) {
      const Tensor3<double> x = random_tensor(6, 7, 3, seed);
      const Mask mask = random_step_mask(6, 7, seed);
      seqattn::testing::expect_compaction_equivalent(layer, x, mask, seed);
      seqattn::testing::expect_masked_values_ignored(layer, x, mask, seed);
      seqattn::testing::expect_masked_values_ignored(layer, x, Mask::from_lengths({7, 3, 0, 1, 5, 2}), seed);
    }
    seqattn::testing::expect_step_mask_of_other_T_refused(layer, random_tensor(3, 4, 3, 9));
  }
}

// The query is the last KEPT step: moving a masked step after it changes nothing; the weights sum to 1 over the
// kept steps and are 0 elsewhere; a sequence with no kept step gives zeros and no gradient.
TEST(LastStepAttention, QueryIsTheLastKeptStepAndEmptySequencesGiveZeros) {
  LastStepAttention<double> layer(3, opts(AttentionScore::Bahdanau, 2, 7));
  const Tensor3<double> x = random_tensor(3, 4, 3, 8);
  const Mask mask = Mask::from_steps({{1, 0, 1, 0}, {0, 0, 0, 0}, {0, 1, 1, 1}});
  const Tensor3<double> y = layer.forward(x, mask);
  // sequence 0 keeps steps 0 and 2: the same as a 3-step sequence of length 3 whose step 1 is masked
  Tensor3<double> x0(1, 2, 3);
  for (Index f = 0; f < 3; ++f) {
    x0(0, 0, f) = x(0, 0, f);
    x0(0, 1, f) = x(0, 2, f);
  }
  const Tensor3<double> y0 = layer.forward(x0, Mask());
  for (Index u = 0; u < 2; ++u) {
    EXPECT_EQ(y(0, 0, u), y0(0, 0, u));
    EXPECT_EQ(y(1, 0, u), 0.0);
  }
  layer.forward(x, mask);
  EXPECT_NEAR(layer.attention()(0, 0) + layer.attention()(0, 2), 1.0, 1e-15);
  EXPECT_EQ(layer.attention()(0, 1), 0.0);
  EXPECT_EQ(layer.attention()(0, 3), 0.0);
  EXPECT_EQ(layer.attention().row(1).cwiseAbs().sum(), 0.0);
  EXPECT_EQ(layer.attention()(2, 0), 0.0);
  EXPECT_TRUE(layer.out_mask(mask, 4).empty());
  EXPECT_EQ(layer.out_time(4), 1);
  const Tensor3<double>& dx = layer.backward(x, mask, random_tensor(3, 1, 2, 9));
  for (Index t = 0; t < 4; ++t)
    for (Index f = 0; f < 3; ++f) EXPECT_EQ(dx(1, t, f), 0.0);
}

TEST(LastStepAttention, ConfigRoundTripRebuildsTheSameLayer) {
  for (AttentionScore score : {AttentionScore::Luong, AttentionScore::Bahdanau}) {
    LastStepAttention<double> layer(
        3, LastStepAttentionOptions().score(score).units(5).kernel_init(Init::he_uniform()).seed(17));
    const Config entry = layer_entry(layer);
    ASSERT_TRUE(LayerRegistry<double>::instance().contains("LastStepAttention"));
    const std::unique_ptr<Layer<double>> rebuilt = build_layer<double>(entry, 3);
    EXPECT_EQ(layer_entry(*rebuilt), entry) << entry.dump();
    EXPECT_EQ(rebuilt->describe(), layer.describe());
    EXPECT_EQ(entry.dump().find(score == AttentionScore::Luong ? "\"luong\"" : "\"bahdanau\"") != std::string::npos,
              true)
        << entry.dump();
    const Tensor3<double> x = random_tensor(2, 4, 3, 3);
    const Tensor3<double> a = layer.forward(x, Mask::from_lengths({4, 2}));
    const Tensor3<double> b = rebuilt->forward(x, Mask::from_lengths({4, 2}));
    for (Index i = 0; i < a.size(); ++i) EXPECT_EQ(a.data()[i], b.data()[i]);  // same seed, same weights
  }
  Config bad = LastStepAttention<double>(3, opts(AttentionScore::Luong, 2, 1)).config();
  bad.set("score", Config(std::string("general")));
  try {
    LastStepAttention<double>::from_config(3, bad);
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("LastStepAttention config"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("general"), std::string::npos) << e.what();
  }
}

TEST(LastStepAttention, ErrorsNameTheLayer) {
  try {
    LastStepAttention<double>(3, LastStepAttentionOptions().units(0));
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("LastStepAttention: units expected a positive integer but got 0"),
              std::string::npos)
        << e.what();
  }
  LastStepAttention<double> layer(3, opts(AttentionScore::Luong, 2, 1));
  try {
    layer.forward(random_tensor(2, 4, 5, 1));
    ADD_FAILURE() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("LastStepAttention(luong, units=2)"), std::string::npos) << e.what();
  }
  try {
    layer.open_stream(2, StreamOptions());
    ADD_FAILURE() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("LastStepAttention(luong, units=2): cannot be streamed: its query is the last "
                                         "step"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
