// Positional encodings in mode expand (keras-pos-embd's MODE_EXPAND: the input holds the positions): the
// sinusoidal formula at real positions (hand-computed, and bitwise the concat mode's rows at integer positions),
// finite-difference gradients of the positions, PositionEmbedding's clipped lookup with hand-computed outputs and
// table gradients, mask_position (keras-pos-embd's mask_zero), step masks, config round trips, streams, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "seqattn/layers/positional_encoding.hpp"
#include "seqattn/model/layer_registry.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/step_mask_layer_checks.hpp"
#include "support/step_masks.hpp"
#include "support/stream_checks.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_step_mask;
using seqattn::testing::random_tensor;

namespace {

template <class E>
void expect_error(const std::function<void()>& f, const std::string& want) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing: " << want;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
  }
}

SinusoidalOptions trig_expand(Index d) { return SinusoidalOptions().mode(PositionMode::Expand).output_dim(d); }
PositionEmbeddingOptions pos_expand(Index d) {
  return PositionEmbeddingOptions().mode(PositionMode::Expand).output_dim(d).seed(3);
}

TEST(PositionExpand, SinusoidalIsTheFormulaAtEachPosition) {
  SinusoidalPositionalEncoding<double> pe(1, trig_expand(5));
  EXPECT_EQ(pe.out_features(), 5);
  Tensor3<double> x(2, 3, 1);
  const double positions[] = {0, 3, -4, 2.5, 1e3, -0.25};
  for (Index i = 0; i < 6; ++i) x.data()[i] = positions[i];
  const Tensor3<double> y = pe.forward(x);
  for (Index i = 0; i < 6; ++i)
    for (Index c = 0; c < 5; ++c) {
      const double angle = positions[i] / std::pow(10000.0, double(c - c % 2) / 5.0);
      EXPECT_NEAR(y(i / 3, i % 3, c), c % 2 == 0 ? std::sin(angle) : std::cos(angle), 1e-15) << i << "," << c;
    }
  // integer positions 0..T-1: bitwise the rows concat mode appends
  SinusoidalPositionalEncoding<double> concat(1, SinusoidalOptions().mode(PositionMode::Concat).output_dim(5));
  Tensor3<double> steps(1, 7, 1);
  for (Index t = 0; t < 7; ++t) steps(0, t, 0) = double(t);
  const Tensor3<double> a = pe.forward(steps);
  const Tensor3<double> b = concat.forward(steps);
  for (Index t = 0; t < 7; ++t)
    for (Index c = 0; c < 5; ++c) EXPECT_EQ(a(0, t, c), b(0, t, 1 + c)) << t << "," << c;
}

TEST(PositionExpand, SinusoidalGradientsOfThePositions) {
  SinusoidalPositionalEncoding<double> pe(1, trig_expand(6));
  Tensor3<double> x = random_tensor(4, 6, 1, 1);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] *= 5;  // positions in [-5, 5]
  const auto lengths = check_layer_gradients(pe, x, Mask::from_lengths({6, 3, 0, 1}));
  EXPECT_TRUE(lengths.passed()) << lengths.report();
  const auto steps = check_layer_gradients(pe, x, random_step_mask(4, 6, 2));
  EXPECT_TRUE(steps.passed()) << steps.report();
}

TEST(PositionExpand, StepMasksNeverReadMaskedPositions) {
  SinusoidalPositionalEncoding<double> trig(1, trig_expand(4));
  PositionEmbedding<double> table(1, 4, pos_expand(3));
  Tensor3<double> ids(6, 7, 1);
  Rng rng(5);
  for (Index i = 0; i < ids.size(); ++i) ids.data()[i] = double(static_cast<Index>(rng.below(13))) - 6;
  for (std::uint64_t seed : {1, 2}) {
    const Mask mask = random_step_mask(6, 7, seed);
    seqattn::testing::expect_masked_values_ignored(trig, ids, mask, seed);
    seqattn::testing::expect_masked_values_ignored(table, ids, mask, seed);
  }
  const Mask mask = random_step_mask(6, 7, 3);
  const Tensor3<double> y = table.forward(ids, mask);
  for (Index b = 0; b < 6; ++b)
    for (Index t = 0; t < 7; ++t) {
      if (mask.valid(b, t, 7)) continue;
      for (Index c = 0; c < 3; ++c) EXPECT_EQ(y(b, t, c), 0.0);
    }
  seqattn::testing::expect_step_mask_of_other_T_refused(trig, ids);
  seqattn::testing::expect_step_mask_of_other_T_refused(table, ids);
}

TEST(PositionExpand, PositionEmbeddingLooksUpClippedPositions) {
  PositionEmbedding<double> pe(1, 3, pos_expand(2));
  ASSERT_EQ(pe.embeddings().rows(), 7);  // 2 * max_length + 1 (keras-pos-embd)
  EXPECT_EQ(pe.out_features(), 2);
  Tensor3<double> x(2, 4, 1);
  const double positions[] = {0, -3, 3, -9, 8, 1, -1, 2};
  const Index rows[] = {3, 0, 6, 0, 6, 4, 2, 5};  // clip(p, -3, 3) + 3
  for (Index i = 0; i < 8; ++i) x.data()[i] = positions[i];
  const Mask mask = Mask::from_lengths({4, 3});
  const Tensor3<double> y = pe.forward(x, mask);
  for (Index i = 0; i < 8; ++i)
    for (Index c = 0; c < 2; ++c) {
      const double want = i == 7 ? 0.0 : pe.embeddings()(rows[i], c);  // (1, 3) is padding
      EXPECT_EQ(y(i / 4, i % 4, c), want) << i;
    }
  // dE[row] = sum of dy over the kept steps reading it; dx = 0
  const Tensor3<double> dy = random_tensor(2, 4, 2, 9);
  pe.zero_grad();
  const Tensor3<double> dx = pe.backward(x, mask, dy);
  Matrix<double> want = Matrix<double>::Zero(7, 2);
  for (Index i = 0; i < 7; ++i)
    for (Index c = 0; c < 2; ++c) want(rows[i], c) += dy(i / 4, i % 4, c);
  const auto params = pe.params();
  ASSERT_EQ(params.size(), 1u);
  for (Index r = 0; r < 7; ++r)
    for (Index c = 0; c < 2; ++c) EXPECT_NEAR(params[0].grad[r * 2 + c], want(r, c), 1e-15) << r << "," << c;
  for (Index i = 0; i < dx.size(); ++i) EXPECT_EQ(dx.data()[i], 0.0);
}

TEST(PositionExpand, MaskPositionMasksThoseSteps) {
  PositionEmbedding<double> pe(1, 4, pos_expand(2).mask_position(100));
  Tensor3<double> x(2, 3, 1);
  const double positions[] = {1, 100, 2, 100, 100, -1};
  for (Index i = 0; i < 6; ++i) x.data()[i] = positions[i];
  const Tensor3<double> y = pe.forward(x);
  const Mask out = pe.out_mask(Mask(), 3);
  EXPECT_EQ(out, Mask::from_steps({{1, 0, 1}, {0, 0, 1}}));
  for (Index c = 0; c < 2; ++c) {
    EXPECT_EQ(y(0, 1, c), 0.0);
    EXPECT_EQ(y(1, 0, c), 0.0);
    EXPECT_EQ(y(0, 0, c), pe.embeddings()(5, c));
    EXPECT_EQ(y(1, 2, c), pe.embeddings()(3, c));
  }
  pe.zero_grad();
  pe.backward(x, Mask(), random_tensor(2, 3, 2, 4));
  const double* dE = pe.params()[0].grad;
  for (Index r : {0, 1, 2, 4, 7, 8})  // rows nobody read: 100 is masked, never clipped to row 8
    for (Index c = 0; c < 2; ++c) EXPECT_EQ(dE[r * 2 + c], 0.0) << r;
  EXPECT_NE(dE[5 * 2], 0.0);
  // the masks meet: an input-masked step stays masked
  pe.forward(x, Mask::from_lengths({1, 3}));
  EXPECT_EQ(pe.out_mask(Mask::from_lengths({1, 3}), 3), Mask::from_steps({{1, 0, 0}, {0, 0, 1}}));
  expect_error<ShapeError>([&] { pe.out_mask(Mask(), 4); }, "must follow the forward of the same batch");
  expect_error<ConfigError>([&] { pe.open_stream(2, StreamOptions()); }, "cannot be streamed: a step at the padding");
}

TEST(PositionExpand, StreamsMatchPredict) {
  seqattn::testing::StreamCheck check;
  check.vocab = 12;  // positions 1..11, some past max_length (clipped)
  {
    Sequential<double> model(1);
    model.add<PositionEmbedding<double>>(6, pos_expand(3));
    EXPECT_TRUE(seqattn::testing::stream_matches_predict(model, check, 0.0));
  }
  {
    Sequential<double> model(1);
    model.add<SinusoidalPositionalEncoding<double>>(trig_expand(4));
    EXPECT_TRUE(seqattn::testing::stream_matches_predict(model, check, 0.0));
  }
}

TEST(PositionExpand, ConfigRoundTrip) {
  auto round_trip = [](const Layer<double>& layer) {
    SCOPED_TRACE(layer.describe());
    const Config entry = layer_entry(layer);
    const std::unique_ptr<Layer<double>> rebuilt = build_layer<double>(entry, layer.in_features());
    EXPECT_EQ(layer_entry(*rebuilt), entry) << entry.dump();
    EXPECT_EQ(rebuilt->describe(), layer.describe());
    EXPECT_NE(entry.dump().find("\"expand\""), std::string::npos) << entry.dump();
  };
  round_trip(SinusoidalPositionalEncoding<double>(1, trig_expand(6)));
  round_trip(PositionEmbedding<double>(1, 5, pos_expand(4)));
  const PositionEmbedding<double> masked(1, 5, pos_expand(4).mask_position(10000));
  round_trip(masked);
  EXPECT_EQ(masked.describe(), "PositionEmbedding(max_length=5, mode=expand, output_dim=4, mask_zero=10000)");
  const Config masked_config = masked.config();  // find() points into it: keep it alive
  const Config* mask_zero = masked_config.find("mask_zero");
  ASSERT_NE(mask_zero, nullptr);
  EXPECT_EQ(*mask_zero, Config(10000));
  // not written when unset: model files of earlier PositionEmbeddings stay byte for byte the same
  EXPECT_EQ(PositionEmbedding<double>(1, 5, pos_expand(4)).config().find("mask_zero"), nullptr);
}

TEST(PositionExpand, Errors) {
  expect_error<ConfigError>([] { SinusoidalPositionalEncoding<double>(3, trig_expand(4)); },
                            "SinusoidalPositionalEncoding(mode=expand, output_dim=4): input features expected 1 (one "
                            "position per step) in expand mode but got 3");
  expect_error<ConfigError>([] { SinusoidalPositionalEncoding<double>(1, trig_expand(0)); },
                            "output_dim must be positive in expand mode but got 0");
  expect_error<ConfigError>([] { PositionEmbedding<double>(2, 4, pos_expand(3)); },
                            "PositionEmbedding(max_length=4, mode=expand, output_dim=3): input features expected 1");
  expect_error<ConfigError>(
      [] {
        PositionEmbedding<double>(3, 4,
                                  PositionEmbeddingOptions().mode(PositionMode::Concat).output_dim(2).mask_position(0));
      },
      "mask_zero (mask_position) expected mode expand but got mode concat");
  PositionEmbedding<double> pe(1, 4, pos_expand(2));
  Tensor3<double> x(1, 3, 1);
  x.setValues({{{1}, {2.5}, {0}}});
  expect_error<ShapeError>([&] { pe.forward(x); },
                           "PositionEmbedding(max_length=4, mode=expand, output_dim=2): position 2.5 at (0, 1) is not "
                           "an integer");
  x(0, 1, 0) = std::numeric_limits<double>::quiet_NaN();
  expect_error<ShapeError>([&] { pe.forward(x); }, "at (0, 1) is not an integer");
  pe.forward(x, Mask::from_lengths({1}));  // a padded NaN is never read
}

}  // namespace
