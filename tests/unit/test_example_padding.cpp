// The time-series classifier example on variable-length data (task 4): predictions do not depend on how far
// a batch is padded, on what the padding holds, or on which other sequences share the batch.
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>

#include "time_series_classifier/data.hpp"
#include "time_series_classifier/model.hpp"
#include "time_series_classifier/train.hpp"

using namespace tsc;

namespace {

// Logits of sequences order[0, n) of d in one batch padded to pad_to (0: the batch's longest) with pad_value.
seqattn::Tensor3<float> logits_of(Classifier& model, const Dataset& d, const std::vector<Index>& order, Index pad_to,
                                  float pad_value) {
  seqattn::Tensor3<float> x;
  seqattn::Mask mask;
  std::vector<int> labels;
  make_batch(d, order, 0, static_cast<Index>(order.size()), x, mask, labels, pad_to, pad_value);
  return model.net().predict(x, mask);
}

float max_diff(const seqattn::Tensor3<float>& a, const seqattn::Tensor3<float>& b) {
  float diff = 0;
  for (Index k = 0; k < a.size(); ++k) diff = std::max(diff, std::abs(a.data()[k] - b.data()[k]));
  return diff;
}

}  // namespace

class ExamplePadding : public ::testing::TestWithParam<std::tuple<AttentionKind, Pooling, bool>> {};

TEST_P(ExamplePadding, PredictionsDoNotDependOnPadding) {
  const auto [attention, pooling, residual] = GetParam();
  const Dataset train_set = make_task(Task::Multivariate, 200, 24, 1), test_set = make_task(Task::Multivariate, 40, 24, 2);
  ModelConfig c;
  c.features = 3;
  c.classes = 3;
  c.d_model = 16;
  c.heads = 2;
  c.units = 8;
  c.attention = attention;
  c.pooling = pooling;
  c.residual = residual;
  c.ffn = 16;
  Classifier model(c);
  TrainOptions options;
  options.epochs = 2;
  train(model, train_set, options);  // trained weights, not just the initial ones

  std::vector<Index> order(static_cast<size_t>(test_set.size()));
  std::iota(order.begin(), order.end(), Index{0});
  ASSERT_LT(test_set.max_length(), 30);
  ASSERT_LT(*std::min_element(test_set.lengths.begin(), test_set.lengths.end()), test_set.max_length());
  const auto own = logits_of(model, test_set, order, 0, 0.0f);           // padded to its own longest
  const auto longer = logits_of(model, test_set, order, 45, 0.0f);      // padded to 45 steps
  const auto garbage = logits_of(model, test_set, order, 37, -123.5f);  // padding full of garbage
  EXPECT_LE(max_diff(own, longer), 1e-5f);
  EXPECT_LE(max_diff(own, garbage), 1e-5f);
  EXPECT_EQ(seqattn::argmax_labels(own), seqattn::argmax_labels(longer));
  EXPECT_EQ(seqattn::argmax_labels(own), seqattn::argmax_labels(garbage));

  // Every sequence alone (no padding at all) gives its row of the batch.
  for (Index i = 0; i < test_set.size(); i += 7) {
    const auto alone = logits_of(model, test_set, {i}, 0, 0.0f);
    for (Index c2 = 0; c2 < alone.dimension(2); ++c2) EXPECT_NEAR(alone(0, 0, c2), own(i, 0, c2), 1e-5f);
  }
  // Evaluation in batches of 7 (each padded differently) and of 64 agrees.
  EXPECT_EQ(evaluate(model.net(), test_set, 7).predicted, evaluate(model.net(), test_set, 64).predicted);
}

INSTANTIATE_TEST_SUITE_P(Configurations, ExamplePadding,
                         ::testing::Values(std::make_tuple(AttentionKind::MultiHead, Pooling::Max, true),
                                           std::make_tuple(AttentionKind::MultiHead, Pooling::Weighted, false),
                                           std::make_tuple(AttentionKind::SelfAttention, Pooling::Mean, true),
                                           std::make_tuple(AttentionKind::SelfAttention, Pooling::Weighted, true)));

TEST(ExampleData, MakeBatchPadsAndMasks) {
  const Dataset d = make_task(Task::Multivariate, 5, 12, 3);
  std::vector<Index> order{4, 2};
  seqattn::Tensor3<float> x;
  seqattn::Mask mask;
  std::vector<int> labels;
  make_batch(d, order, 0, 2, x, mask, labels, 15, 7.0f);
  ASSERT_EQ(x.dimension(0), 2);
  EXPECT_EQ(x.dimension(1), 15);
  EXPECT_EQ(mask.lengths(), (std::vector<Index>{d.lengths[4], d.lengths[2]}));
  EXPECT_EQ(labels, (std::vector<int>{d.labels[4], d.labels[2]}));
  EXPECT_EQ(x(0, 0, 1), d.x(4, 0, 1));
  EXPECT_EQ(x(1, d.lengths[2] - 1, 2), d.x(2, d.lengths[2] - 1, 2));
  EXPECT_EQ(x(1, 14, 0), 7.0f);
}

TEST(ExampleData, TasksHaveTheDocumentedValues) {
  const Dataset u = make_task(Task::Uniform, 50, 10, 1), h = make_task(Task::Halves, 50, 10, 1),
                s = make_task(Task::Signal, 50, 10, 1);
  const Index k = default_signal_step(10);
  for (Index i = 0; i < 50; ++i)
    for (Index t = 0; t < 10; ++t) {
      const float lo_u = static_cast<float>(u.labels[static_cast<size_t>(i)]);
      EXPECT_TRUE(u.x(i, t, 0) >= lo_u && u.x(i, t, 0) <= lo_u + 1);
      const bool first_low = (t < 5) == (h.labels[static_cast<size_t>(i)] == 0);
      EXPECT_EQ(h.x(i, t, 0) >= 1.0f, !first_low) << i << " " << t;
      if (t == k) {
        EXPECT_EQ(s.x(i, t, 0) >= 1.0f, s.labels[static_cast<size_t>(i)] == 1);
      }
      EXPECT_TRUE(s.x(i, t, 0) >= 0 && s.x(i, t, 0) <= 2);
    }
  EXPECT_THROW(parse_task("5"), DataError);
  EXPECT_EQ(parse_task("signal"), Task::Signal);
  EXPECT_THROW(make_task(Task::Uniform, 0, 10, 1), DataError);
}
