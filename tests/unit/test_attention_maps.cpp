// AttentionMap (core/attention_map.hpp) and attention_maps(model) (model/attention_maps.hpp): every attention layer
// gives its weights as (rows, columns) maps in which each row is one softmax; the maps equal the layers' own
// accessors; the model walk finds layers inside Residual and nested Sequential with their parameter paths; errors.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "seqattn/layers/feature_attention.hpp"
#include "seqattn/layers/last_step_attention.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/layers/residual.hpp"
#include "seqattn/layers/seq_self_attention.hpp"
#include "seqattn/layers/seq_weighted_attention.hpp"
#include "seqattn/layers/temporal_attention.hpp"
#include "seqattn/layers/transformer_encoder.hpp"
#include "seqattn/model/attention_maps.hpp"
#include "seqattn/model/sequential.hpp"
#include "support/step_masks.hpp"

using namespace seqattn;

namespace {

using seqattn::testing::random_step_mask;

Tensor3<double> random_input(Index B, Index T, Index F, std::uint64_t seed) {
  Rng rng(seed);
  Tensor3<double> x(B, T, F);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = rng.uniform(-1.0, 1.0);
  return x;
}

// Each row of the map sums to 1 (a softmax) or is all 0 (a masked or padded row); at least one row is live.
void expect_rows_are_softmaxes(const Matrix<double>& map) {
  Index live = 0;
  for (Index r = 0; r < map.rows(); ++r) {
    const double sum = map.row(r).sum();
    EXPECT_TRUE(std::abs(sum - 1.0) < 1e-12 || map.row(r).isZero(0.0)) << "row " << r << " sums to " << sum;
    EXPECT_GE(map.row(r).minCoeff(), 0.0);
    live += sum > 0.5;
  }
  EXPECT_GT(live, 0);
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

TEST(AttentionMap, SeqSelfAttentionIsQueryByKey) {
  for (auto width : {std::optional<Index>(), std::optional<Index>(3)}) {
    SeqSelfAttention<double> layer(4, SeqSelfAttentionOptions().units(5).attention_width(width).seed(3));
    const Mask mask = random_step_mask(3, 6, 11);
    layer.forward(random_input(3, 6, 4, 1), mask);
    const Tensor3<double> dense = layer.attention();
    EXPECT_EQ(layer.attention_heads(), 1);
    for (Index b = 0; b < 3; ++b) {
      const Matrix<double> map = layer.attention_map(b);
      ASSERT_EQ(map.rows(), 6);
      ASSERT_EQ(map.cols(), 6);
      for (Index t = 0; t < 6; ++t)
        for (Index s = 0; s < 6; ++s) EXPECT_EQ(map(t, s), dense(b, t, s));
      if (mask.count(b, 6) > 0) expect_rows_are_softmaxes(map);
    }
  }
}

TEST(AttentionMap, PoolsAreOneRowOverTheSteps) {
  SeqWeightedAttention<double> weighted(3, SeqWeightedAttentionOptions().seed(2));
  LastStepAttention<double> last(3, LastStepAttentionOptions().units(4).seed(2));
  const Tensor3<double> x = random_input(2, 5, 3, 4);
  const Mask mask = Mask::from_lengths({5, 3});
  weighted.forward(x, mask);
  last.forward(x, mask);
  for (const AttentionMap<double>* layer : {static_cast<const AttentionMap<double>*>(&weighted),
                                            static_cast<const AttentionMap<double>*>(&last)}) {
    EXPECT_EQ(layer->attention_axes().rows, "pool");
    EXPECT_EQ(layer->attention_axes().columns, "step");
    for (Index b = 0; b < 2; ++b) {
      const Matrix<double> map = layer->attention_map(b);
      ASSERT_EQ(map.rows(), 1);
      ASSERT_EQ(map.cols(), 5);
      expect_rows_are_softmaxes(map);
      EXPECT_EQ(map(0, 4), b == 0 ? map(0, 4) : 0.0);  // padded steps get 0
    }
  }
  EXPECT_EQ(weighted.attention_map(1), Matrix<double>(weighted.attention().row(1)));
  EXPECT_EQ(last.attention_map(0), Matrix<double>(last.attention().row(0)));
}

TEST(AttentionMap, FeatureAndTemporalAttentionNameTheirAxes) {
  FeatureAttention<double> feature(3, FeatureAttentionOptions().seed(5));
  TemporalAttention<double> temporal(3, 4, TemporalAttentionOptions().seed(5));
  const Tensor3<double> x = random_input(2, 4, 3, 6);
  feature.forward(x, Mask::from_lengths({4, 2}));
  temporal.forward(x, Mask::from_lengths({4, 2}));
  EXPECT_EQ(feature.attention_axes().rows, "step");
  EXPECT_EQ(feature.attention_axes().columns, "feature");
  EXPECT_EQ(temporal.attention_axes().rows, "feature");
  EXPECT_EQ(temporal.attention_axes().columns, "step");
  for (Index b = 0; b < 2; ++b) {
    const Matrix<double> f = feature.attention_map(b), t = temporal.attention_map(b);
    ASSERT_EQ(f.rows(), 4);
    ASSERT_EQ(f.cols(), 3);
    ASSERT_EQ(t.rows(), 3);
    ASSERT_EQ(t.cols(), 4);
    expect_rows_are_softmaxes(f);
    expect_rows_are_softmaxes(t);
    for (Index s = 0; s < 4; ++s)
      for (Index c = 0; c < 3; ++c) {
        EXPECT_EQ(f(s, c), feature.attention()(b, s, c));
        EXPECT_EQ(t(c, s), temporal.attention()(b, s, c));
      }
  }
}

TEST(AttentionMap, TransformerBlockGivesEveryHead) {
  TransformerEncoderBlock<double> block(8, 2, 16, TransformerEncoderOptions().causal(true).seed(7));
  block.forward(random_input(2, 5, 8, 8), Mask::from_lengths({5, 4}));
  ASSERT_EQ(block.attention_heads(), 2);
  for (Index b = 0; b < 2; ++b)
    for (Index h = 0; h < 2; ++h) {
      const Matrix<double> map = block.attention_map(b, h);
      EXPECT_EQ(map, Matrix<double>(block.attention_layer().attention(b, h)));
      expect_rows_are_softmaxes(map);
      for (Index t = 0; t < 5; ++t)
        for (Index s = t + 1; s < 5; ++s) EXPECT_EQ(map(t, s), 0.0) << "causal";
    }
}

TEST(AttentionMap, MultiHeadAttentionIsItsPerHeadMaps) {
  MultiHeadAttention<double> layer(6, 3, MultiHeadAttentionOptions().attention_window(2).causal(true).seed(4));
  layer.forward(random_input(2, 5, 6, 3), random_step_mask(2, 5, 21));
  ASSERT_EQ(layer.attention_heads(), 3);
  for (Index b = 0; b < 2; ++b)
    for (Index h = 0; h < 3; ++h) EXPECT_EQ(layer.attention_map(b, h), Matrix<double>(layer.attention(b, h)));
  EXPECT_NE(error_of([&] { layer.attention_map(0, 3); }).find("MultiHeadAttention"), std::string::npos);
  // average_attention_map: the mean of the three heads (torch's average_attn_weights), rows still softmaxes.
  for (Index b = 0; b < 2; ++b) {
    const Matrix<double> mean = layer.average_attention_map(b);
    const Matrix<double> by_hand =
        (layer.attention_map(b, 0) + layer.attention_map(b, 1) + layer.attention_map(b, 2)) / 3.0;
    EXPECT_LT((mean - by_hand).cwiseAbs().maxCoeff(), 1e-15);
    for (Index t = 0; t < mean.rows(); ++t) {
      const double sum = mean.row(t).sum();
      EXPECT_TRUE(sum == 0.0 || std::abs(sum - 1.0) < 1e-12) << "row " << t << " sums to " << sum;
    }
  }
  SeqSelfAttention<double> single(6, SeqSelfAttentionOptions().units(3).seed(6));
  single.forward(random_input(1, 4, 6, 7));
  EXPECT_EQ(single.average_attention_map(0), single.attention_map(0));  // one head: the map itself
  Sequential<double> model(6);
  model.add<MultiHeadAttention<double>>(2, MultiHeadAttentionOptions().seed(5));
  ASSERT_EQ(attention_maps(model).size(), 1u);
  EXPECT_EQ(attention_maps(model)[0].path, "0.multi_head_attention");
}

TEST(AttentionMaps, FindsLayersInsideContainersWithTheirParameterPaths) {
  Sequential<double> model(4);
  model.add<SeqSelfAttention<double>>(SeqSelfAttentionOptions().units(3).seed(1));
  auto& residual = model.add<Residual<double>>();
  residual.body().add<TransformerEncoderBlock<double>>(2, 8, TransformerEncoderOptions().seed(2));
  model.add<SeqWeightedAttention<double>>(SeqWeightedAttentionOptions().seed(3));
  const std::vector<FoundAttentionMap<double>> found = attention_maps(model);
  ASSERT_EQ(found.size(), 3u);
  EXPECT_EQ(found[0].path, "0.seq_self_attention");
  EXPECT_EQ(found[1].path, "1.residual.0.transformer_encoder");
  EXPECT_EQ(found[2].path, "2.seq_weighted_attention");
  // The paths are the prefixes of the layers' parameters.
  for (const auto& f : found) {
    bool named = false;
    for (const auto& p : model.params()) named = named || p.name.rfind(f.path + ".", 0) == 0;
    EXPECT_TRUE(named) << f.path;
  }
  model.predict(random_input(2, 6, 4, 9), Mask::from_lengths({6, 3}));
  EXPECT_EQ(found[1].map->attention_heads(), 2);
  expect_rows_are_softmaxes(found[1].map->attention_map(1, 1));
  EXPECT_EQ(found[2].map->attention_map(1).cols(), 6);
}

TEST(AttentionMap, ErrorsNameTheLayer) {
  SeqSelfAttention<double> layer(4, SeqSelfAttentionOptions().seed(3));
  EXPECT_NE(error_of([&] { layer.attention_map(0); }).find("SeqSelfAttention"), std::string::npos);
  layer.forward(random_input(2, 3, 4, 1));
  EXPECT_EQ(error_of([&] { layer.attention_map(2); }),
            layer.describe() + ": attention_map sequence expected 0 <= b < 2 (the last forward's batch) but got 2");
  EXPECT_EQ(error_of([&] { layer.attention_map(0, 1); }),
            layer.describe() + ": attention_map head expected 0 <= h < 1 but got 1");
  TemporalAttention<double> temporal(3, 4);
  EXPECT_NE(error_of([&] { temporal.attention_map(0); }).find("before any forward"), std::string::npos);
}

}  // namespace
