// Stream forms (core/stream.hpp) of the norms, Embedding, the positional encodings, the global pools,
// SeqWeightedAttention and FeatureAttention: every option against predict (stream_matches_predict: random chunks
// of 1..5 steps, resets at other times per stream), bitwise where the header says so (LayerNorm with its scaled
// path, BatchNorm, Embedding, positional encodings, GlobalMaxPool, GlobalAvgPool, LastStep, the identity pools);
// Embedding's id errors (and id 0 with mask_zero) before anything is written; StreamLimitError past
// PositionEmbedding's max_length; state names and shapes; resets; the refusals of the layers and options that
// read later steps; and steady single steps that allocate nothing (EIGEN_RUNTIME_NO_MALLOC).
#define EIGEN_RUNTIME_NO_MALLOC
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "seqattn/layers/batch_norm.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/embedding.hpp"
#include "seqattn/layers/feature_attention.hpp"
#include "seqattn/layers/layer_norm.hpp"
#include "seqattn/layers/pooling.hpp"
#include "seqattn/layers/positional_encoding.hpp"
#include "seqattn/layers/seq_weighted_attention.hpp"
#include "seqattn/layers/temporal_attention.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/stream_checks.hpp"

using namespace seqattn;
using seqattn::testing::stream_matches_predict;
using seqattn::testing::StreamCheck;

namespace {

constexpr Index kF = 4;  // input features of the test models

// Every parameter uniform in [-1, 1]; BatchNorm's running mean in [-1, 1] and running variance in [0.2, 2].
template <class S>
void randomize(Sequential<S>& model, std::uint64_t seed) {
  Rng rng(seed);
  for (auto& p : model.params())
    for (Index i = 0; i < p.size(); ++i) p.values()(i) = static_cast<S>(rng.uniform(-1.0, 1.0));
  for (auto& p : model.buffers()) {
    const bool var = p.name.find("running_var") != std::string::npos;
    for (Index i = 0; i < p.size(); ++i)
      p.values()(i) = static_cast<S>(var ? rng.uniform(0.2, 2.0) : rng.uniform(-1.0, 1.0));
  }
}

// The tolerance of a check that is not bitwise: 1e-12 in double, 1e-4 in float (relative, see stream_checks.hpp).
template <class S>
double tolerance() {
  return std::is_same<S, double>::value ? 1e-12 : 1e-4;
}

// stream_matches_predict with chunks of at most 1, 3 and 5 steps.
template <class S>
::testing::AssertionResult matches(Sequential<S>& model, double tol, const std::string& recipe, Index vocab = 0,
                                   Index max_sequence = 12) {
  for (Index chunk : {1, 3, 5}) {
    StreamCheck check;
    check.max_chunk = chunk;
    check.vocab = vocab;
    check.max_sequence = max_sequence;
    check.seed = static_cast<std::uint64_t>(chunk) + 10;
    const auto result =
        stream_matches_predict(model, check, tol, " (" + recipe + ", chunks of 1.." + std::to_string(chunk) + ")");
    if (!result) return result;
  }
  return ::testing::AssertionSuccess();
}

// Streams x (B, T, F) in chunks of 1, 2, 3, 4, 5, 1, ... steps and compares every output row with predict(x)
// (which must be a model that keeps time) bitwise.
template <class S>
::testing::AssertionResult stream_equals_predict_bitwise(Sequential<S>& model, const Tensor3<S>& x) {
  const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2), out = model.out_features();
  const Tensor3<S> expected = model.predict(x);
  Stream<S> stream = model.stream(B);
  Index chunk = 1;
  for (Index t = 0; t < T;) {
    const Index n = std::min(chunk, T - t);
    Tensor3<S> xs(B, n, F);
    for (Index b = 0; b < B; ++b)
      for (Index i = 0; i < n; ++i)
        for (Index f = 0; f < F; ++f) xs(b, i, f) = x(b, t + i, f);
    const Tensor3<S>& y = stream.step(xs);
    for (Index b = 0; b < B; ++b)
      for (Index i = 0; i < n; ++i)
        for (Index o = 0; o < out; ++o) {
          const S want = expected(b, t + i, o), got = y(b, i, o);
          if (!(got == want || (std::isnan(got) && std::isnan(want))))
            return ::testing::AssertionFailure()
                   << "stream " << b << " step " << t + i << " output " << o << ": " << got << " but predict " << want;
        }
    t += n;
    chunk = chunk % 5 + 1;
  }
  return ::testing::AssertionSuccess();
}

// The ConfigError message of model.stream(), "" when it streams.
template <class S>
std::string refusal(const Sequential<S>& model) {
  try {
    model.stream(2);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// ---------------------------------------------------------------------------------------------------- norms

template <class S>
void check_layer_norm() {
  const std::vector<LayerNormOptions> options = {
      LayerNormOptions(), LayerNormOptions().scale(false), LayerNormOptions().center(false),
      LayerNormOptions().scale(false).center(false), LayerNormOptions().eps(1e-3)};
  for (const auto& o : options) {
    Sequential<S> model(kF);
    model.template add<LayerNorm<S>>(o);
    randomize(model, 3);
    EXPECT_TRUE(matches(model, 0.0, model.layer(0).describe()));  // bitwise
    Sequential<S> deep(kF);
    deep.template add<Dense<S>>(6, DenseOptions().seed(1));
    deep.template add<LayerNorm<S>>(o);
    deep.template add<Dense<S>>(3, DenseOptions().seed(2));
    randomize(deep, 4);
    EXPECT_TRUE(matches(deep, tolerance<S>(), "Dense, " + deep.layer(1).describe() + ", Dense"));
  }
}
TEST(StreamLayers, LayerNormEveryOptionBitwise) {
  check_layer_norm<double>();
  check_layer_norm<float>();
}

// Steps whose sums overflow take LayerNorm's scaled path, in the stream as in forward: the same bits.
template <class S>
void check_layer_norm_huge() {
  const S big = std::is_same<S, float>::value ? S(3e37) : S(1e305);
  Tensor3<S> x(3, 9, kF);
  Rng rng(5);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<S>(rng.uniform(-1.0, 1.0));
  for (Index t = 0; t < 9; t += 2)  // every other step huge (one step of each stream all equal and huge)
    for (Index b = 0; b < 3; ++b)
      for (Index f = 0; f < kF; ++f) x(b, t, f) = t == 4 && b == 1 ? big : x(b, t, f) * big;
  for (const auto& o : {LayerNormOptions(), LayerNormOptions().scale(false).eps(1e-3)}) {
    Sequential<S> model(kF);
    model.template add<LayerNorm<S>>(o);
    randomize(model, 6);
    EXPECT_TRUE(stream_equals_predict_bitwise(model, x)) << model.layer(0).describe();
    const Tensor3<S>& y = model.predict(x);
    EXPECT_TRUE(as_matrix(y).allFinite());
    EXPECT_GT(as_matrix(y).cwiseAbs().maxCoeff(), S(0.5));  // not the zeros of the plain formula
  }
}
TEST(StreamLayers, LayerNormHugeMagnitudesTakeTheScaledPathBitwise) {
  check_layer_norm_huge<double>();
  check_layer_norm_huge<float>();
}

template <class S>
void check_batch_norm() {
  const std::vector<BatchNormOptions> options = {BatchNormOptions(), BatchNormOptions().scale(false),
                                                 BatchNormOptions().center(false).eps(1e-3),
                                                 BatchNormOptions().scale(false).center(false)};
  for (const auto& o : options) {
    Sequential<S> model(kF);
    model.template add<BatchNorm<S>>(o);
    randomize(model, 7);
    EXPECT_TRUE(matches(model, 0.0, model.layer(0).describe()));  // bitwise, running statistics
    Sequential<S> deep(kF);
    deep.template add<Dense<S>>(5, DenseOptions().seed(1));
    deep.template add<BatchNorm<S>>(o);
    randomize(deep, 8);
    EXPECT_TRUE(matches(deep, tolerance<S>(), "Dense, " + deep.layer(1).describe()));
  }
}
TEST(StreamLayers, BatchNormRunningStatisticsBitwise) {
  check_batch_norm<double>();
  check_batch_norm<float>();
}

// The stream reads the running statistics in place: a Train forward that updates them changes the stream's next
// outputs (no copy taken when the stream was opened).
TEST(StreamLayers, BatchNormReadsTheRunningStatisticsInPlace) {
  Sequential<double> model(kF);
  auto& bn = model.add<BatchNorm<double>>();
  randomize(model, 9);
  Stream<double> stream = model.stream(1);
  Tensor3<double> x = seqattn::testing::random_tensor(1, 1, kF, 10);
  const Tensor3<double> before = stream.step(x);
  bn.running_mean().array() += 1.0;
  const Tensor3<double> after = stream.step(x);
  for (Index f = 0; f < kF; ++f) EXPECT_NE(before(0, 0, f), after(0, 0, f));
  EXPECT_TRUE(stream_equals_predict_bitwise(model, x));
}

// ------------------------------------------------------------------------------------------------ Embedding

template <class S>
void check_embedding() {
  Sequential<S> model(1);
  model.template add<Embedding<S>>(9, 5, EmbeddingOptions().seed(1));
  EXPECT_TRUE(matches(model, 0.0, "Embedding", 9));  // bitwise
  Sequential<S> deep(1);
  deep.template add<Embedding<S>>(9, 5, EmbeddingOptions().seed(1));
  deep.template add<Dense<S>>(3, DenseOptions().seed(2).activation(Activation::Tanh));
  EXPECT_TRUE(matches(deep, tolerance<S>(), "Embedding, Dense", 9));
  // id 0 is an ordinary id without mask_zero
  Tensor3<S> ids(2, 4, 1);
  const std::vector<S> values = {0, 3, 0, 0, 8, 0, 1, 0};
  std::copy(values.begin(), values.end(), ids.data());
  EXPECT_TRUE(stream_equals_predict_bitwise(model, ids));
}
TEST(StreamLayers, EmbeddingBitwise) {
  check_embedding<double>();
  check_embedding<float>();
}

// A bad id throws forward's error at (stream, position) before anything is written: the output of the last
// step and the step counts stay, and the stream goes on.
TEST(StreamLayers, EmbeddingChecksEveryIdBeforeWriting) {
  Sequential<double> model(1);
  model.add<Embedding<double>>(7, 3, EmbeddingOptions().seed(1));
  Stream<double> stream = model.stream(2);
  Tensor3<double> x(2, 2, 1);
  x.setValues({{{1}, {2}}, {{3}, {4}}});
  stream.step(x);
  stream.step(x);  // 4 steps seen
  const Tensor3<double> last = stream.step(x);
  // forward over the whole sequences: stream 1's id at position 7 is out of range
  Tensor3<double> whole(2, 8, 1);
  for (Index b = 0; b < 2; ++b)
    for (Index t = 0; t < 8; ++t) whole(b, t, 0) = x(b, t % 2, 0);
  whole(1, 7, 0) = 9;
  std::string forward_error;
  try {
    model.predict(whole);
  } catch (const ShapeError& e) {
    forward_error = e.what();
  }
  EXPECT_NE(forward_error.find("Embedding(vocab=7, dim=3): id 9 at (1, 7) out of range [0, 7)"), std::string::npos)
      << forward_error;
  Tensor3<double> bad = x;
  bad(0, 0, 0) = 5;  // valid ids of stream 0, written first by a stream that does not check first
  bad(0, 1, 0) = 6;
  bad(1, 1, 0) = 9;
  try {
    stream.step(bad);
    ADD_FAILURE() << "no error";
  } catch (const ShapeError& e) {
    EXPECT_EQ(std::string(e.what()), forward_error);
  }
  EXPECT_EQ(stream.steps(0), 6);
  const Tensor3<double>& y = stream.step(x);  // the stream goes on; the failed step wrote nothing before
  bad(1, 1, 0) = 2.5;
  try {
    stream.step(bad);
    ADD_FAILURE() << "no error";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("id 2.5 at (1, 9) is not an integer"), std::string::npos) << e.what();
  }
  for (Index i = 0; i < y.size(); ++i) EXPECT_EQ(y.data()[i], last.data()[i]) << "the failed step wrote output " << i;
}

// mask_zero=true: streams of non-zero ids are exact (bitwise, the mask changes nothing, also for a pool that
// reads it); a zero id throws before anything is written.
TEST(StreamLayers, EmbeddingWithMaskZero) {
  Sequential<double> model(1);
  model.add<Embedding<double>>(7, 3, EmbeddingOptions().mask_zero(true).seed(1));
  EXPECT_TRUE(matches(model, 0.0, "Embedding(mask_zero=true)", 7));
  Sequential<double> pooled(1);
  pooled.add<Embedding<double>>(7, 3, EmbeddingOptions().mask_zero(true).seed(1));
  pooled.add<GlobalAvgPool<double>>();
  EXPECT_TRUE(matches(pooled, 0.0, "Embedding(mask_zero=true), GlobalAvgPool", 7));

  Stream<double> stream = model.stream(2);
  Tensor3<double> x(2, 2, 1);
  x.setValues({{{1}, {2}}, {{3}, {4}}});
  const Tensor3<double>& out = stream.step(x);  // the stream's output buffer
  const Tensor3<double> last = out;
  Tensor3<double> zero = x;
  zero(0, 0, 0) = 5;
  zero(1, 1, 0) = 0;
  try {
    stream.step(zero);
    ADD_FAILURE() << "no error";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("Embedding(vocab=7, dim=3, mask_zero=true): id 0 at (1, 3) in a stream: "
                                         "with mask_zero=true a zero id is a masked step, which a stream"),
              std::string::npos)
        << e.what();
  }
  for (Index i = 0; i < out.size(); ++i) EXPECT_EQ(out.data()[i], last.data()[i]) << "the failed step wrote " << i;
  EXPECT_EQ(stream.steps(1), 2);
  stream.step(x);
  EXPECT_EQ(stream.steps(1), 4);
}

// ------------------------------------------------------------------------------------- positional encodings

template <class S>
void check_positions() {
  std::vector<std::function<void(Sequential<S>&)>> layers = {
      [](Sequential<S>& m) { m.template add<SinusoidalPositionalEncoding<S>>(); },
      [](Sequential<S>& m) { m.template add<SinusoidalPositionalEncoding<S>>(PositionMode::Concat, 3); },
      [](Sequential<S>& m) { m.template add<SinusoidalPositionalEncoding<S>>(PositionMode::Concat, 6); },
      [](Sequential<S>& m) { m.template add<PositionEmbedding<S>>(12, PositionEmbeddingOptions().seed(1)); },
      [](Sequential<S>& m) {
        m.template add<PositionEmbedding<S>>(12, PositionEmbeddingOptions().mode(PositionMode::Concat).output_dim(3));
      },
      [](Sequential<S>& m) {
        m.template add<PositionEmbedding<S>>(
            12, PositionEmbeddingOptions().mode(PositionMode::Add).output_dim(kF).embeddings_init(Init::normal(1.0)));
      },
  };
  for (const auto& add : layers) {
    Sequential<S> model(kF);
    add(model);
    EXPECT_TRUE(matches(model, 0.0, model.layer(0).describe()));  // bitwise
    Sequential<S> deep(kF);
    add(deep);
    deep.template add<Dense<S>>(3, DenseOptions().seed(2));
    EXPECT_TRUE(matches(deep, tolerance<S>(), deep.layer(0).describe() + ", Dense"));
  }
}
TEST(StreamLayers, PositionalEncodingsEveryModeBitwise) {
  check_positions<double>();
  check_positions<float>();
}

// Far positions: the sinusoids computed per step are the table's bits.
TEST(StreamLayers, SinusoidalFarPositionsBitwise) {
  Sequential<float> model(2);
  model.add<SinusoidalPositionalEncoding<float>>(PositionMode::Concat, 7);
  Tensor3<float> x(2, 3000, 2);
  x.setRandom();
  EXPECT_TRUE(stream_equals_predict_bitwise(model, x));
}

// A step past max_length throws StreamLimitError and leaves the stream as it was.
TEST(StreamLayers, PositionEmbeddingStopsAtMaxLength) {
  Sequential<double> model(kF);
  model.add<PositionEmbedding<double>>(5, PositionEmbeddingOptions().seed(1));
  Stream<double> stream = model.stream(2);
  EXPECT_EQ(stream.max_steps(), 5);
  const Tensor3<double> x = seqattn::testing::random_tensor(2, 5, kF, 3);
  Tensor3<double> first(2, 3, kF), rest(2, 2, kF), three(2, 3, kF);
  for (Index b = 0; b < 2; ++b)
    for (Index f = 0; f < kF; ++f) {
      for (Index i = 0; i < 3; ++i) first(b, i, f) = x(b, i, f);
      for (Index i = 0; i < 2; ++i) rest(b, i, f) = x(b, 3 + i, f);
    }
  stream.step(first);
  three.setConstant(7.0);
  EXPECT_THROW(stream.step(three), StreamLimitError);
  EXPECT_EQ(stream.steps(0), 3);
  EXPECT_EQ(stream.steps(1), 3);
  const Tensor3<double>& y = stream.step(rest);  // positions 3 and 4: the last two rows of predict
  const Tensor3<double>& want = model.predict(x);
  for (Index b = 0; b < 2; ++b)
    for (Index i = 0; i < 2; ++i)
      for (Index f = 0; f < kF; ++f) EXPECT_EQ(y(b, i, f), want(b, 3 + i, f));
  Tensor3<double> one(2, 1, kF);
  one.setZero();
  EXPECT_THROW(stream.step(one), StreamLimitError);
  stream.reset(0);
  EXPECT_THROW(stream.step(one), StreamLimitError);  // stream 1 is still full
  stream.reset(1);
  EXPECT_NO_THROW(stream.step(one));
}

// ----------------------------------------------------------------------------------------------- the pools

template <class S>
void check_pools() {
  std::vector<std::function<void(Sequential<S>&)>> pools = {
      [](Sequential<S>& m) { m.template add<GlobalMaxPool<S>>(); },
      [](Sequential<S>& m) { m.template add<GlobalAvgPool<S>>(); },
      [](Sequential<S>& m) { m.template add<LastStep<S>>(); },
  };
  for (const auto& pool : pools) {
    Sequential<S> alone(kF);
    pool(alone);
    EXPECT_TRUE(matches(alone, 0.0, alone.layer(0).describe()));  // bitwise
    Sequential<S> deep(kF);
    deep.template add<Dense<S>>(6, DenseOptions().seed(1).activation(Activation::ReLU));
    pool(deep);
    deep.template add<Dense<S>>(3, DenseOptions().seed(2));
    EXPECT_TRUE(matches(deep, tolerance<S>(), "Dense, " + deep.layer(1).describe() + ", Dense"));
    Sequential<S> normed(kF);
    normed.template add<LayerNorm<S>>();
    pool(normed);
    normed.template add<LayerNorm<S>>();
    randomize(normed, 3);
    EXPECT_TRUE(matches(normed, 0.0, "LayerNorm, " + normed.layer(1).describe() + ", LayerNorm"));  // bitwise
  }
}
TEST(StreamLayers, GlobalPoolsOverThePrefixBitwise) {
  check_pools<double>();
  check_pools<float>();
}

// GlobalMaxPool's running max takes forward's selections: ties, signed zeros and NaN (which never replaces a
// maximum, unless it comes first), bitwise.
TEST(StreamLayers, GlobalMaxPoolTiesZerosAndNaN) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor3<double> x(1, 6, kF);
  x.setValues({{{0.0, 1.0, nan, -1.0},
                {-0.0, 1.0, 2.0, nan},
                {0.0, nan, 3.0, -2.0},
                {-0.0, 1.0, 0.0, -0.5},
                {2.0, 5.0, -1.0, -0.5},
                {2.0, 0.0, 9.0, 0.0}}});
  Sequential<double> model(kF);
  model.add<GlobalMaxPool<double>>();
  Stream<double> stream = model.stream(1);
  for (Index t = 0; t < 6; ++t) {
    Tensor3<double> step(1, 1, kF), prefix(1, t + 1, kF);
    for (Index f = 0; f < kF; ++f) {
      step(0, 0, f) = x(0, t, f);
      for (Index i = 0; i <= t; ++i) prefix(0, i, f) = x(0, i, f);
    }
    const Tensor3<double> y = stream.step(step);
    const Tensor3<double>& want = model.predict(prefix);
    for (Index f = 0; f < kF; ++f) {
      EXPECT_TRUE(std::isnan(want(0, 0, f))
                      ? std::isnan(y(0, 0, f))
                      : y(0, 0, f) == want(0, 0, f) && std::signbit(y(0, 0, f)) == std::signbit(want(0, 0, f)))
          << "step " << t << " feature " << f << ": " << y(0, 0, f) << " but predict " << want(0, 0, f);
    }
  }
}

template <class S>
void check_seq_weighted_attention() {
  for (const bool bias : {true, false}) {
    const auto options = SeqWeightedAttentionOptions().use_bias(bias).seed(4);
    Sequential<S> alone(kF);
    alone.template add<SeqWeightedAttention<S>>(options);
    randomize(alone, 5);
    EXPECT_TRUE(matches(alone, tolerance<S>(), alone.layer(0).describe()));
    Sequential<S> deep(kF);
    deep.template add<Dense<S>>(6, DenseOptions().seed(1).activation(Activation::Tanh));
    deep.template add<SeqWeightedAttention<S>>(options);
    deep.template add<Dense<S>>(3, DenseOptions().seed(2));
    randomize(deep, 6);
    EXPECT_TRUE(matches(deep, tolerance<S>(), "Dense, " + deep.layer(1).describe() + ", Dense"));
    // scores of several hundred: exp(z) alone overflows; the running maximum keeps every term <= 1
    Sequential<S> sharp(kF);
    auto& att = sharp.template add<SeqWeightedAttention<S>>(options);
    randomize(sharp, 7);
    att.kernel() *= S(400);
    EXPECT_TRUE(matches(sharp, tolerance<S>(), "SeqWeightedAttention with scores of several hundred"));
  }
}
TEST(StreamLayers, SeqWeightedAttentionRunningSoftmax) {
  check_seq_weighted_attention<double>();
  check_seq_weighted_attention<float>();
}

// A NaN score, or a score of +Inf (exp(inf - inf) in the forward), makes the outputs NaN from that step on, as
// predict over the prefix; at the first step too.
TEST(StreamLayers, SeqWeightedAttentionNaNOrInfiniteScore) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), huge = 1e308;
  Sequential<double> model(2);
  auto& att = model.add<SeqWeightedAttention<double>>(SeqWeightedAttentionOptions().seed(1));
  att.kernel().setConstant(1.0);  // z = x0 + x1 + b
  Tensor3<double> x(4, 4, 2);     // stream 0: NaN at step 1; 1: NaN at step 0; 2: +Inf score at step 2; 3: at 0
  x.setValues({{{0.5, -0.25}, {0.5, nan}, {0.5, 1.0}, {-1.0, 0.0}},
               {{nan, -0.25}, {0.5, 0.0}, {0.5, 1.0}, {-1.0, 0.0}},
               {{0.5, -0.25}, {0.5, 0.0}, {huge, huge}, {-1.0, 0.0}},
               {{huge, huge}, {0.5, 0.0}, {0.5, 1.0}, {-1.0, 0.0}}});
  Stream<double> stream = model.stream(4);
  for (Index t = 0; t < 4; ++t) {
    Tensor3<double> step(4, 1, 2);
    for (Index b = 0; b < 4; ++b)
      for (Index f = 0; f < 2; ++f) step(b, 0, f) = x(b, t, f);
    const Tensor3<double> y = stream.step(step);
    for (Index b = 0; b < 4; ++b) {
      Tensor3<double> prefix(1, t + 1, 2);
      for (Index i = 0; i <= t; ++i)
        for (Index f = 0; f < 2; ++f) prefix(0, i, f) = x(b, i, f);
      const Tensor3<double>& want = model.predict(prefix);
      for (Index f = 0; f < 2; ++f) {
        const bool nan_expected = (b == 0 && t >= 1) || b == 1 || (b == 2 && t >= 2) || b == 3;
        EXPECT_EQ(std::isnan(want(0, 0, f)), nan_expected) << "predict, stream " << b << " step " << t;
        EXPECT_EQ(std::isnan(y(b, 0, f)), nan_expected) << "stream " << b << " step " << t;
        if (!nan_expected) {
          EXPECT_NEAR(y(b, 0, f), want(0, 0, f), 1e-12);
        }
      }
    }
  }
}

// ------------------------------------------------------------------------------------------ FeatureAttention

template <class S>
void check_feature_attention() {
  for (const bool bias : {true, false}) {
    Sequential<S> model(kF);
    model.template add<FeatureAttention<S>>(FeatureAttentionOptions().use_bias(bias).seed(3));
    randomize(model, 4);
    EXPECT_TRUE(matches(model, tolerance<S>(), model.layer(0).describe()));
    Sequential<S> pooled(kF);
    pooled.template add<FeatureAttention<S>>(FeatureAttentionOptions().use_bias(bias).seed(3));
    pooled.template add<GlobalAvgPool<S>>();
    pooled.template add<Dense<S>>(2, DenseOptions().seed(5));
    randomize(pooled, 4);
    EXPECT_TRUE(matches(pooled, tolerance<S>(), pooled.layer(0).describe() + ", GlobalAvgPool, Dense"));
  }
}
TEST(StreamLayers, FeatureAttentionPerStep) {
  check_feature_attention<double>();
  check_feature_attention<float>();
}

// -------------------------------------------------------------------------------------- everything together

template <class S>
void check_pipeline() {
  Sequential<S> model(1);
  model.template add<Embedding<S>>(11, 6, EmbeddingOptions().seed(1));
  model.template add<SinusoidalPositionalEncoding<S>>();
  model.template add<PositionEmbedding<S>>(16, PositionEmbeddingOptions().mode(PositionMode::Concat).output_dim(2));
  model.template add<LayerNorm<S>>();
  model.template add<FeatureAttention<S>>(FeatureAttentionOptions().seed(2));
  model.template add<BatchNorm<S>>();
  model.template add<MaxPool1D<S>>(1, PoolOptions().stride(1));
  model.template add<SeqWeightedAttention<S>>(SeqWeightedAttentionOptions().seed(3));
  model.template add<Dense<S>>(3, DenseOptions().seed(4));
  model.template add<LastStep<S>>();
  randomize(model, 5);
  EXPECT_TRUE(matches(model, tolerance<S>(), "pipeline", 11, 16));
}
TEST(StreamLayers, PipelineOfEveryLayer) {
  check_pipeline<double>();
  check_pipeline<float>();
}

TEST(StreamLayers, IdentityWindowPoolsBitwise) {
  Sequential<double> model(kF);
  model.add<MaxPool1D<double>>(1, PoolOptions().stride(1));
  model.add<AvgPool1D<double>>(1, PoolOptions().stride(1).partial_windows(true));
  EXPECT_TRUE(matches(model, 0.0, "MaxPool1D(1), AvgPool1D(1)"));
}

// ------------------------------------------------------------------------------------------ state and reset

TEST(StreamLayers, StateNamesAndShapes) {
  Sequential<double> model(kF);
  model.add<LayerNorm<double>>();
  model.add<BatchNorm<double>>();
  model.add<SinusoidalPositionalEncoding<double>>();
  model.add<FeatureAttention<double>>();
  model.add<Dense<double>>(5);
  model.add<GlobalMaxPool<double>>();
  Stream<double> max_stream = model.stream(3);
  auto state = max_stream.state();
  ASSERT_EQ(state.size(), 1u);  // the per-step layers carry nothing
  EXPECT_EQ(state[0].name, "5.global_max_pool.max");
  EXPECT_EQ(state[0].tensor->dimensions(), (Eigen::DSizes<Index, 3>(3, 1, 5)));
  EXPECT_FALSE(state[0].grows);
  EXPECT_EQ(max_stream.state_bytes(), 15 * sizeof(double));

  Sequential<double> avg(kF);
  avg.add<GlobalAvgPool<double>>();
  Stream<double> avg_stream = avg.stream(2);
  state = avg_stream.state();
  ASSERT_EQ(state.size(), 1u);
  EXPECT_EQ(state[0].name, "0.global_avg_pool.sum");
  EXPECT_EQ(state[0].tensor->dimensions(), (Eigen::DSizes<Index, 3>(2, 1, kF)));

  Sequential<double> last(kF);
  last.add<PositionEmbedding<double>>(4);
  last.add<LastStep<double>>();
  EXPECT_TRUE(last.stream(2).state().empty());

  Sequential<double> weighted(kF);
  weighted.add<SeqWeightedAttention<double>>();
  Stream<double> weighted_stream = weighted.stream(2);
  state = weighted_stream.state();
  ASSERT_EQ(state.size(), 3u);
  EXPECT_EQ(state[0].name, "0.seq_weighted_attention.max_score");
  EXPECT_EQ(state[0].tensor->dimensions(), (Eigen::DSizes<Index, 3>(2, 1, 1)));
  EXPECT_EQ(state[1].name, "0.seq_weighted_attention.exp_sum");
  EXPECT_EQ(state[1].tensor->dimensions(), (Eigen::DSizes<Index, 3>(2, 1, 1)));
  EXPECT_EQ(state[2].name, "0.seq_weighted_attention.weighted_sum");
  EXPECT_EQ(state[2].tensor->dimensions(), (Eigen::DSizes<Index, 3>(2, 1, kF)));
}

// reset(b) zeroes stream b's state and no other's; the next step starts a new prefix.
TEST(StreamLayers, ResetForgetsOneStream) {
  for (int which = 0; which < 3; ++which) {
    Sequential<double> model(kF);
    if (which == 0) model.add<GlobalMaxPool<double>>();
    if (which == 1) model.add<GlobalAvgPool<double>>();
    if (which == 2) model.add<SeqWeightedAttention<double>>(SeqWeightedAttentionOptions().seed(1));
    Stream<double> stream = model.stream(2);
    const Tensor3<double> x = seqattn::testing::random_tensor(2, 3, kF, 4);
    stream.step(x);
    stream.reset(1);
    for (const auto& s : stream.state()) {
      const Index block = s.tensor->dimension(1) * s.tensor->dimension(2);
      for (Index i = 0; i < block; ++i) {
        EXPECT_EQ(s.tensor->data()[block + i], 0.0) << s.name;
        EXPECT_NE(s.tensor->data()[i], 0.0) << s.name;
      }
    }
    const Tensor3<double> y = stream.step(x);  // stream 1 sees x as a new sequence, stream 0 goes on
    Tensor3<double> x1(1, 3, kF), x0(1, 6, kF);
    for (Index i = 0; i < 3; ++i)
      for (Index f = 0; f < kF; ++f) {
        x1(0, i, f) = x(1, i, f);
        x0(0, i, f) = x0(0, 3 + i, f) = x(0, i, f);
      }
    const Tensor3<double> y1 = model.predict(x1);  // the whole new sequence of stream 1: its last step
    const Tensor3<double> y0 = model.predict(x0);
    for (Index f = 0; f < kF; ++f) {
      EXPECT_NEAR(y(1, 2, f), y1(0, 0, f), 1e-12) << model.layer(0).describe();
      EXPECT_NEAR(y(0, 2, f), y0(0, 0, f), 1e-12) << model.layer(0).describe();
    }
  }
}

// ------------------------------------------------------------------------------------------------ refusals

TEST(StreamLayers, RefusalsNameTheLayerAndTheReason) {
  {
    Sequential<double> model(kF);
    model.add<Dense<double>>(kF);
    model.add<FeatureAttention<double>>(FeatureAttentionOptions().shared(true));
    EXPECT_NE(refusal(model).find("Sequential: layer 1 FeatureAttention(features=4, shared=true): cannot be "
                                  "streamed: shared=true weights every step by the mean of the softmax weights over "
                                  "the whole sequence, later steps included"),
              std::string::npos)
        << refusal(model);
  }
  {
    Sequential<double> model(kF);
    model.add<TemporalAttention<double>>(8);
    EXPECT_NE(refusal(model).find("Sequential: layer 0 TemporalAttention(time_steps=8): cannot be streamed: it "
                                  "works on windows of exactly time_steps=8 steps as a whole"),
              std::string::npos)
        << refusal(model);
  }
  {
    Sequential<double> model(kF);
    model.add<MaxPool1D<double>>(2);
    EXPECT_NE(refusal(model).find("Sequential: layer 0 MaxPool1D(size=2, stride=2): cannot be streamed: strided "
                                  "pooling changes the number of steps (stride=2: one output step per 2 input "
                                  "steps)"),
              std::string::npos)
        << refusal(model);
  }
  {
    Sequential<double> model(kF);
    model.add<AvgPool1D<double>>(3, PoolOptions().stride(1).partial_windows(true));
    EXPECT_NE(refusal(model).find("Sequential: layer 0 AvgPool1D(size=3, stride=1, partial_windows=true): cannot "
                                  "be streamed: output step j pools the input steps [j, j + 3), the 2 after j "
                                  "included"),
              std::string::npos)
        << refusal(model);
  }
  {
    Sequential<double> model(kF);
    model.add<MaxPool1D<double>>(1, PoolOptions().stride(3));
    EXPECT_NE(refusal(model).find("MaxPool1D(size=1, stride=3): cannot be streamed: strided pooling"),
              std::string::npos)
        << refusal(model);
  }
  {  // a pooled sequence is one step: only per-step layers may follow a pool (Sequential), LastStep among them
    Sequential<double> model(kF);
    model.add<GlobalAvgPool<double>>();
    model.add<LastStep<double>>();
    model.add<LayerNorm<double>>();
    EXPECT_EQ(refusal(model), "");
    model.add<GlobalMaxPool<double>>();
    EXPECT_NE(refusal(model).find("layer 3 GlobalMaxPool(): cannot be streamed after layer 0 GlobalAvgPool()"),
              std::string::npos)
        << refusal(model);
  }
}

// ------------------------------------------------------------------------------------------------ allocation

// Steady single steps (and steady chunks) of models of these layers allocate nothing once warmed up.
TEST(StreamLayers, SteadyStepsAllocateNothing) {
  Sequential<float> ids(1);
  ids.add<Embedding<float>>(11, 6, EmbeddingOptions().seed(1));
  ids.add<SinusoidalPositionalEncoding<float>>();
  ids.add<PositionEmbedding<float>>(1000, PositionEmbeddingOptions().mode(PositionMode::Concat).output_dim(2));
  ids.add<LayerNorm<float>>();
  ids.add<FeatureAttention<float>>(FeatureAttentionOptions().seed(2));
  ids.add<BatchNorm<float>>();
  ids.add<MaxPool1D<float>>(1, PoolOptions().stride(1));
  ids.add<GlobalAvgPool<float>>();
  ids.add<Dense<float>>(3, DenseOptions().seed(3));
  ids.add<LastStep<float>>();
  Sequential<float> max_pool(kF);
  max_pool.add<LayerNorm<float>>();
  max_pool.add<GlobalMaxPool<float>>();
  Sequential<float> weighted(kF);
  weighted.add<SeqWeightedAttention<float>>(SeqWeightedAttentionOptions().seed(4));
  weighted.add<BatchNorm<float>>();
  for (Sequential<float>* model : {&ids, &max_pool, &weighted}) {
    for (Index n : {1, 3}) {
      Stream<float> stream = model->stream(2);
      Tensor3<float> x(2, n, model->in_features());
      x.setConstant(1.0f);
      stream.step(x);  // warm-up sizes every buffer
      stream.reset(1);
      Eigen::internal::set_is_malloc_allowed(false);
      for (int s = 0; s < 20; ++s) {
        x.setConstant(static_cast<float>(1 + s % 7));
        stream.step(x);
      }
      stream.reset(0);
      stream.step(x);
      Eigen::internal::set_is_malloc_allowed(true);
    }
  }
  SUCCEED();
}
