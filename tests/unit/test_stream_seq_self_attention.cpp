// SeqSelfAttention's stream form (detail/seq_self_attention_stream.hpp): every causal configuration (additive
// and multiplicative, every attention activation, with and without the biases, widths 1, 2, 5, above the
// steps and none, history_only or the widths 1 and 2 without it) matches predict in double (1e-12) and float
// over random chunks of 1..5 steps and resets; the growing cache (its limit, a loaded state of another
// capacity), state() shapes, the refusals of the non-causal configurations, and steady steps without
// allocation (EIGEN_RUNTIME_NO_MALLOC).
#define EIGEN_RUNTIME_NO_MALLOC
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/seq_self_attention.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/stream_checks.hpp"

using namespace seqattn;
using seqattn::testing::stream_matches_predict;
using seqattn::testing::StreamCheck;

namespace {

constexpr Index kF = 5, kU = 4;

struct SsaCase {
  AttentionType type = AttentionType::Additive;
  std::optional<Index> width;
  bool history_only = true;
  Activation activation = Activation::Linear;
  bool additive_bias = true;
  bool attention_bias = true;
  std::string recipe() const {
    return std::string(" [") + to_string(type) + ", width " + (width ? std::to_string(*width) : "none") +
           (history_only ? ", history_only" : "") + ", " + to_string(activation) + ", bh " +
           std::to_string(additive_bias) + ", ba " + std::to_string(attention_bias) + "]";
  }
};

SeqSelfAttentionOptions options_of(const SsaCase& c, std::uint64_t seed) {
  SeqSelfAttentionOptions o;
  o.attention_type(c.type).units(kU).history_only(c.history_only).attention_activation(c.activation);
  o.use_additive_bias(c.additive_bias).use_attention_bias(c.attention_bias);
  o.bias_init(Init::uniform(-0.5, 0.5)).seed(seed);                      // non-zero biases, so that a lost bias shows
  o.attention_regularizer_weight(0.1).kernel_regularizer({0.01, 0.01});  // training only: streams the same
  if (c.width) o.attention_width(*c.width);
  return o;
}

template <class S>
Sequential<S> model_of(const SsaCase& c, std::uint64_t seed) {
  Sequential<S> model(kF);
  model.template add<SeqSelfAttention<S>>(options_of(c, seed));
  return model;
}

// Every causal configuration of the layer.
std::vector<SsaCase> causal_configs() {
  std::vector<SsaCase> all;
  const std::vector<std::optional<Index>> widths = {std::nullopt, 1, 2, 5, 50};
  for (const auto type : {AttentionType::Additive, AttentionType::Multiplicative})
    for (const auto& width : widths)
      for (const bool history_only : {true, false}) {
        if (!history_only && !(width && *width <= 2)) continue;  // reads later steps: refused
        for (const auto act :
             {Activation::Linear, Activation::ReLU, Activation::GELU, Activation::Tanh, Activation::Sigmoid})
          for (const bool bh : {true, false})
            for (const bool ba : {true, false}) {
              if (type == AttentionType::Multiplicative && !bh) continue;  // no additive bias there
              all.push_back({type, width, history_only, act, bh, ba});
            }
      }
  return all;
}

template <class S>
void expect_every_config_matches(double tol) {
  Index rows = 0, models = 0;
  std::uint64_t seed = 1;
  for (const SsaCase& c : causal_configs()) {
    Sequential<S> model = model_of<S>(c, seed);
    StreamCheck check;
    check.streams = 3;
    check.steps = 40;
    check.max_sequence = 20;  // sequences of up to 20 steps: the growing cache (16 rows first) grows
    check.max_chunk = 5;      // chunks of 1..5 steps
    check.seed = seed;
    check.options.max_history(20);
    check.rows_checked = &rows;
    EXPECT_TRUE(stream_matches_predict(model, check, tol, c.recipe()));
    check.max_chunk = 1;  // single steps only
    check.seed = seed + 1000;
    EXPECT_TRUE(stream_matches_predict(model, check, tol, c.recipe()));
    ++models;
    ++seed;
  }
  EXPECT_GT(models, 100);
  EXPECT_GT(rows, 100 * 2 * 3 * 40 - 1);
}

// x (B, n, F) from the rows [t0, t0 + n) of each stream's input (B inputs of (1, T, F)).
template <class S>
Tensor3<S> rows_of(const std::vector<Tensor3<S>>& inputs, Index t0, Index n) {
  const Index B = static_cast<Index>(inputs.size()), F = inputs[0].dimension(2);
  Tensor3<S> x(B, n, F);
  for (Index b = 0; b < B; ++b)
    for (Index i = 0; i < n; ++i)
      for (Index f = 0; f < F; ++f) x(b, i, f) = inputs[static_cast<size_t>(b)](0, t0 + i, f);
  return x;
}

// Row t of predict over input[begin, end) (one stream's sequence).
template <class S>
Tensor3<S> predict_range(Sequential<S>& model, const Tensor3<S>& input, Index begin, Index end) {
  Tensor3<S> x(1, end - begin, input.dimension(2));
  for (Index t = begin; t < end; ++t)
    for (Index f = 0; f < input.dimension(2); ++f) x(0, t - begin, f) = input(0, t, f);
  return model.predict(x);
}

Tensor3<float> random_float(Index B, Index T, Index F, std::uint64_t seed) {
  return seqattn::testing::random_tensor(B, T, F, seed).cast<float>();
}

}  // namespace

TEST(StreamSeqSelfAttention, EveryCausalConfigurationMatchesPredictInDouble) {
  expect_every_config_matches<double>(1e-12);
}

TEST(StreamSeqSelfAttention, EveryCausalConfigurationMatchesPredictInFloat) {
  expect_every_config_matches<float>(1e-4);
}

TEST(StreamSeqSelfAttention, StreamsInsideAModelAndWithLongChunks) {
  for (const auto type : {AttentionType::Additive, AttentionType::Multiplicative})
    for (const std::optional<Index> width : {std::optional<Index>(3), std::optional<Index>()}) {
      SsaCase c;
      c.type = type;
      c.width = width;
      c.activation = Activation::Sigmoid;
      Sequential<double> model(kF);
      model.add<Dense<double>>(6, Activation::Tanh);
      model.add<SeqSelfAttention<double>>(options_of(c, 7));
      model.add<Dense<double>>(2);
      StreamCheck check;
      check.streams = 2;
      check.steps = 120;
      check.max_sequence = 60;
      check.max_chunk = 13;  // chunks longer than the ring
      EXPECT_TRUE(stream_matches_predict(model, check, 1e-12, c.recipe()));
    }
}

TEST(StreamSeqSelfAttention, StateShapes) {
  SsaCase c;
  c.width = 5;
  Sequential<double> additive = model_of<double>(c, 1);
  Stream<double> ring = additive.stream(3);
  auto list = ring.state();
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].name, "0.seq_self_attention.keys");
  EXPECT_EQ(shape_string(*list[0].tensor), shape_string(3, 5, kU));
  EXPECT_EQ(list[1].name, "0.seq_self_attention.values");
  EXPECT_EQ(shape_string(*list[1].tensor), shape_string(3, 5, kF));
  EXPECT_FALSE(list[0].grows);
  EXPECT_EQ(ring.max_steps(), kUnlimitedSteps);
  EXPECT_EQ(ring.state_bytes(), 3u * 5u * (kU + kF) * sizeof(double));
  auto bad = additive.open_stream(3, StreamOptions());  // a ring state of another size than the width: refused
  StreamStateList<double> bad_list;
  bad->state(bad_list, "");
  for (auto& s : bad_list) s.tensor->resize(3, 4, s.tensor->dimension(2));
  Tensor3<double> y(3, 1, kF);
  EXPECT_THROW(bad->step(seqattn::testing::random_tensor(3, 1, kF, 1), {0, 0, 0}, y), ShapeError);

  c.type = AttentionType::Multiplicative;
  c.width = std::nullopt;
  Sequential<double> multiplicative = model_of<double>(c, 2);
  Stream<double> cache = multiplicative.stream(2, StreamOptions().max_history(40));
  EXPECT_EQ(cache.max_steps(), 40);
  list = cache.state();
  ASSERT_EQ(list.size(), 1u);  // the past inputs are the keys and the values
  EXPECT_EQ(list[0].name, "0.seq_self_attention.values");
  EXPECT_TRUE(list[0].grows);
  EXPECT_EQ(list[0].max_rows, 40);
  EXPECT_EQ(shape_string(*list[0].tensor), shape_string(2, 16, kF));
  const Tensor3<double> x = seqattn::testing::random_tensor(2, 17, kF, 3);
  cache.step(x);  // 17 steps: doubled to 32 rows
  EXPECT_EQ(shape_string(*cache.state()[0].tensor), shape_string(2, 32, kF));
  cache.step(x);  // 34 steps: capped at max_history
  EXPECT_EQ(shape_string(*cache.state()[0].tensor), shape_string(2, 40, kF));

  c.width = 50;  // a window beyond max_history: every query sees all its steps until max_history
  Sequential<double> wide = model_of<double>(c, 3);
  Stream<double> limited = wide.stream(1, StreamOptions().max_history(30));
  EXPECT_EQ(limited.max_steps(), 30);
  EXPECT_TRUE(limited.state()[0].grows);
}

TEST(StreamSeqSelfAttention, MaxHistoryThrowsAndResetMakesTheStreamUsable) {
  for (const auto type : {AttentionType::Additive, AttentionType::Multiplicative}) {
    SsaCase c;
    c.type = type;
    c.activation = Activation::Tanh;
    Sequential<double> model = model_of<double>(c, 4);
    std::vector<Tensor3<double>> inputs = {seqattn::testing::random_tensor(1, 20, kF, 5),
                                           seqattn::testing::random_tensor(1, 20, kF, 6)};
    Stream<double> stream = model.stream(2, StreamOptions().max_history(6));
    stream.step(rows_of(inputs, 0, 2));
    stream.reset(1);  // stream 1's sequence starts at step 2
    stream.step(rows_of(inputs, 2, 4));
    EXPECT_THROW(stream.step(rows_of(inputs, 6, 1)), StreamLimitError);  // stream 0 holds 6 steps
    EXPECT_THROW(stream.step(rows_of(inputs, 6, 3)), StreamLimitError);
    EXPECT_EQ(stream.steps(0), 6);
    EXPECT_EQ(stream.steps(1), 4);
    // Without Stream's check, the layer's stream refuses too (and changes nothing).
    auto raw = model.open_stream(1, StreamOptions().max_history(6));
    Tensor3<double> y(1, 7, kF);
    EXPECT_THROW(raw->step(rows_of<double>({inputs[0]}, 0, 7), {0}, y), StreamLimitError);
    try {
      raw->step(rows_of<double>({inputs[0]}, 0, 7), {0}, y);
    } catch (const StreamLimitError& e) {
      EXPECT_NE(std::string(e.what()).find("SeqSelfAttention("), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("max_history is 6"), std::string::npos) << e.what();
    }
    // reset(0): stream 0 starts again at step 6, stream 1 goes on; both match predict.
    stream.reset(0);
    const Tensor3<double>& y2 = stream.step(rows_of(inputs, 6, 2));
    const Tensor3<double> want0 = predict_range(model, inputs[0], 6, 8);
    const Tensor3<double> want1 = predict_range(model, inputs[1], 2, 8);
    for (Index i = 0; i < 2; ++i)
      for (Index f = 0; f < kF; ++f) {
        EXPECT_NEAR(y2(0, i, f), want0(0, i, f), 1e-12);
        EXPECT_NEAR(y2(1, i, f), want1(0, 4 + i, f), 1e-12);
      }
  }
}

// A loaded state may have another capacity than the stream's (io/stream_state.hpp): the stream goes on.
TEST(StreamSeqSelfAttention, GrowingCacheContinuesFromAStateOfAnotherCapacity) {
  for (const auto type : {AttentionType::Additive, AttentionType::Multiplicative}) {
    SsaCase c;
    c.type = type;
    c.activation = Activation::GELU;
    Sequential<double> model = model_of<double>(c, 8);
    const std::vector<Tensor3<double>> inputs = {seqattn::testing::random_tensor(1, 40, kF, 9)};
    Stream<double> stream = model.stream(1, StreamOptions().max_history(64));
    stream.step(rows_of(inputs, 0, 10));
    for (const auto& s : stream.state()) {  // 16 rows -> 21 rows, the same first 16
      Tensor3<double> other(1, 21, s.tensor->dimension(2));
      other.setConstant(99.0);
      for (Index r = 0; r < 16; ++r)
        for (Index k = 0; k < other.dimension(2); ++k) other(0, r, k) = (*s.tensor)(0, r, k);
      *s.tensor = other;
    }
    const Tensor3<double> want = predict_range(model, inputs[0], 0, 40);
    for (Index t = 10; t < 40; t += 3) {
      const Index n = std::min<Index>(3, 40 - t);
      const Tensor3<double>& y = stream.step(rows_of(inputs, t, n));
      for (Index i = 0; i < n; ++i)
        for (Index f = 0; f < kF; ++f) ASSERT_NEAR(y(0, i, f), want(0, t + i, f), 1e-12) << "step " << t + i;
    }
    EXPECT_EQ(stream.state()[0].tensor->dimension(1), 42);  // 21 doubled
  }
}

TEST(StreamSeqSelfAttention, NonCausalConfigurationsAreRefusedWithTheReason) {
  const auto message = [](SeqSelfAttentionOptions o) {
    Sequential<float> model(kF);
    model.add<SeqSelfAttention<float>>(o.units(kU));
    try {
      model.stream(2);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message(SeqSelfAttentionOptions()),
            "Sequential: layer 0 SeqSelfAttention(additive, units=4): cannot be streamed: history_only=false: every "
            "step attends to the whole sequence, later steps included; set history_only (keys [0, t]) to stream");
  EXPECT_EQ(message(SeqSelfAttentionOptions().attention_type(AttentionType::Multiplicative).attention_width(3)),
            "Sequential: layer 0 SeqSelfAttention(multiplicative, width=3): cannot be streamed: attention_width=3 "
            "without history_only: step t attends to the steps up to t + 1; set history_only (keys [t - 2, t]) to "
            "stream");
  EXPECT_NE(message(SeqSelfAttentionOptions().attention_width(8)).find("steps up to t + 3"), std::string::npos);
  EXPECT_EQ(message(SeqSelfAttentionOptions().attention_width(2)), "no error");  // keys [t - 1, t]
}

// Steady steps allocate nothing: single steps through Stream (ring and grown cache), and chunks of any size up
// to the largest seen through the layer's stream.
TEST(StreamSeqSelfAttention, SteadyStepsAllocateNothing) {
  for (const auto type : {AttentionType::Additive, AttentionType::Multiplicative})
    for (const std::optional<Index> width : {std::optional<Index>(4), std::optional<Index>()}) {
      SsaCase c;
      c.type = type;
      c.width = width;
      c.activation = Activation::Sigmoid;
      Sequential<float> model = model_of<float>(c, 11);
      Stream<float> stream = model.stream(3, StreamOptions().max_history(64));
      Tensor3<float> x(3, 1, kF);
      x.setConstant(0.25f);
      for (int t = 0; t < 20; ++t) stream.step(x);  // the ring wraps; the cache grows to 32 rows
      Eigen::internal::set_is_malloc_allowed(false);
      for (int t = 0; t < 10; ++t) stream.step(x);
      Eigen::internal::set_is_malloc_allowed(true);

      auto raw = model.layer(0).open_stream(3, StreamOptions().max_history(64));
      const Tensor3<float> chunk = random_float(3, 5, kF, 12);
      Tensor3<float> y(3, 5, kF);
      std::vector<Index> start(3, 0);
      raw->step(chunk, start, y);  // sizes the scratch for 5 steps
      for (auto& s : start) s += 5;
      for (Index n : {1, 3, 5, 2}) {
        const Tensor3<float> xn = random_float(3, n, kF, 13);
        Tensor3<float> yn(3, n, kF);
        Eigen::internal::set_is_malloc_allowed(false);
        raw->step(xn, start, yn);
        Eigen::internal::set_is_malloc_allowed(true);
        for (auto& s : start) s += n;
      }
      SUCCEED() << c.recipe();
    }
}
