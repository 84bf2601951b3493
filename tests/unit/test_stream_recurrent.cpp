// Stream forms of LSTM, GRU and causal Conv1D (issue 20): every output row of a stream equals predict over that
// stream's sequence so far (double to 1e-12, float to 1e-4 relative) for every option of the layers, in chunks of
// 1 and of 1..5 steps, with several streams reset at different times; reset(b) leaves the other streams
// bitwise alone; the carried state's names, shapes and values; the refusals of the configurations that read
// later steps (Conv1D same / valid padding, stride > 1, Bidirectional); steady steps allocate nothing.
#define EIGEN_RUNTIME_NO_MALLOC
#include <gtest/gtest.h>

#include <string>
#include <type_traits>
#include <vector>

#include "seqattn/layers/bidirectional.hpp"
#include "seqattn/layers/conv1d.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/gru.hpp"
#include "seqattn/layers/lstm.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/model/stream.hpp"
#include "support/stream_checks.hpp"

using namespace seqattn;
using seqattn::testing::stream_matches_predict;
using seqattn::testing::StreamCheck;

namespace {

const Activation kCellActivations[] = {Activation::Tanh, Activation::Sigmoid, Activation::ReLU, Activation::Linear};
const Activation kConvActivations[] = {Activation::Linear, Activation::ReLU,    Activation::GELU,
                                       Activation::Tanh,   Activation::Sigmoid, Activation::Softmax};

template <class S>
double tolerance() {
  return std::is_same<S, double>::value ? 1e-12 : 1e-4;
}

// stream_matches_predict with chunks of 1 step, then of 1..5 steps; 3 streams of sequences up to max_sequence.
template <class S>
void expect_stream_exact(Sequential<S>& model, const std::string& recipe, Index steps = 30, Index max_sequence = 12,
                         std::uint64_t seed = 1) {
  for (Index chunk : {1, 5}) {
    StreamCheck check;
    check.streams = 3;
    check.steps = steps;
    check.max_sequence = max_sequence;
    check.max_chunk = chunk;
    check.seed = seed + static_cast<std::uint64_t>(chunk);
    Index rows = 0;
    check.rows_checked = &rows;
    EXPECT_TRUE(stream_matches_predict(model, check, tolerance<S>(),
                                       " [" + recipe + ", chunks of 1.." + std::to_string(chunk) + "]"));
    EXPECT_EQ(rows, check.streams * check.steps);  // every output row of every stream was compared
  }
}

template <class S>
Tensor3<S> random_steps(Index B, Index n, Index F, std::uint64_t seed) {
  Rng rng(seed);
  Tensor3<S> x(B, n, F);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<S>(rng.uniform(-1.0, 1.0));
  return x;
}

template <class S>
class StreamRecurrent : public ::testing::Test {};
using Scalars = ::testing::Types<double, float>;
TYPED_TEST_SUITE(StreamRecurrent, Scalars);

TYPED_TEST(StreamRecurrent, LSTMMatchesPredictForEveryOption) {
  using S = TypeParam;
  std::uint64_t seed = 10;
  for (bool sequences : {true, false})
    for (Activation act : kCellActivations)
      for (Activation ra : kCellActivations)
        for (bool bias : {true, false}) {
          Sequential<S> model(3);
          model.template add<LSTM<S>>(5, LSTMOptions()
                                             .return_sequences(sequences)
                                             .activation(act)
                                             .recurrent_activation(ra)
                                             .use_bias(bias)
                                             .bias_init(Init::uniform(-0.5, 0.5))
                                             .seed(++seed));
          expect_stream_exact(model, model.layer(0).describe(), 30, 12, seed);
        }
}

TYPED_TEST(StreamRecurrent, GRUMatchesPredictForEveryOption) {
  using S = TypeParam;
  std::uint64_t seed = 100;
  for (bool sequences : {true, false})
    for (Activation act : kCellActivations)
      for (Activation ra : kCellActivations)
        for (bool bias : {true, false})
          for (bool after : {true, false}) {
            Sequential<S> model(3);
            model.template add<GRU<S>>(5, GRUOptions()
                                              .return_sequences(sequences)
                                              .reset_after(after)
                                              .activation(act)
                                              .recurrent_activation(ra)
                                              .use_bias(bias)
                                              .bias_init(Init::uniform(-0.5, 0.5))
                                              .seed(++seed));
            expect_stream_exact(model, model.layer(0).describe(), 30, 12, seed);
          }
}

TYPED_TEST(StreamRecurrent, CausalConv1DMatchesPredictForEveryOption) {
  using S = TypeParam;
  std::uint64_t seed = 200;
  for (Index kernel : {1, 2, 3, 5})
    for (Index dilation : {1, 2, 3})
      for (Activation act : kConvActivations)
        for (bool bias : {true, false}) {
          if (kernel == 1 && dilation > 1) continue;  // the same layer
          Sequential<S> model(3);
          model.template add<Conv1D<S>>(4, kernel,
                                        Conv1DOptions()
                                            .padding(Padding::Causal)
                                            .dilation(dilation)
                                            .activation(act)
                                            .use_bias(bias)
                                            .bias_init(Init::uniform(-0.5, 0.5))
                                            .seed(++seed));
          // sequences up to 25 steps: the ring (up to 12 rows) wraps around several times
          expect_stream_exact(model, model.layer(0).describe(), 40, 25, seed);
        }
}

// A one-step window reads only its own step whatever the padding: it streams, as a per-step layer (so it may
// follow a layer that pools time).
TYPED_TEST(StreamRecurrent, OneStepConv1DStreamsWithAnyPadding) {
  using S = TypeParam;
  for (Padding padding : {Padding::Valid, Padding::Same, Padding::Causal}) {
    Sequential<S> model(3);
    model.template add<LSTM<S>>(4, LSTMOptions().seed(5));  // pools time
    model.template add<Conv1D<S>>(2, 1, Conv1DOptions().padding(padding).activation(Activation::Tanh).seed(6));
    expect_stream_exact(model, model.layer(1).describe());
  }
}

TYPED_TEST(StreamRecurrent, StackedLayersMatchPredict) {
  using S = TypeParam;
  Sequential<S> model(3);
  model.template add<Conv1D<S>>(6, 3, Conv1DOptions().padding(Padding::Causal).dilation(2).seed(1));
  model.template add<LSTM<S>>(5, LSTMOptions().return_sequences(true).seed(2));
  model.template add<GRU<S>>(4, GRUOptions().return_sequences(true).seed(3));
  model.template add<Conv1D<S>>(4, 2, Conv1DOptions().padding(Padding::Causal).activation(Activation::ReLU).seed(4));
  model.template add<LSTM<S>>(3, LSTMOptions().seed(5));  // pools time: each step gives h over the prefix
  model.template add<Dense<S>>(2, DenseOptions().activation(Activation::Softmax).seed(6));
  expect_stream_exact(model, "Conv1D, LSTM, GRU, Conv1D, LSTM (pooling), Dense", 40, 20);
}

// Without return_sequences the recurrent layers pool time; a causal window is not per-step, a one-step one is.
TYPED_TEST(StreamRecurrent, PoolingRecurrentLayerReportsPoolsTime) {
  using S = TypeParam;
  for (bool sequences : {true, false}) {
    LSTM<S> lstm(3, 4, LSTMOptions().return_sequences(sequences).seed(1));
    GRU<S> gru(3, 4, GRUOptions().return_sequences(sequences).seed(1));
    EXPECT_EQ(lstm.open_stream(2, StreamOptions())->pools_time(), !sequences);
    EXPECT_EQ(gru.open_stream(2, StreamOptions())->pools_time(), !sequences);
    EXPECT_FALSE(lstm.open_stream(2, StreamOptions())->per_step());
  }
  Conv1D<S> conv(3, 2, 3, Conv1DOptions().padding(Padding::Causal));
  EXPECT_FALSE(conv.open_stream(2, StreamOptions())->per_step());
  EXPECT_FALSE(conv.open_stream(2, StreamOptions())->pools_time());
  Conv1D<S> pointwise(3, 2, 1);
  EXPECT_TRUE(pointwise.open_stream(2, StreamOptions())->per_step());
}

// reset(1) in the middle: streams 0 and 2 go on bitwise as in a stream without the reset, stream 1 gives
// bitwise what a fresh stream gives for the steps after the reset.
TEST(StreamRecurrentReset, ResetOneStreamLeavesTheOthersAlone) {
  Sequential<double> model(3);
  model.add<Conv1D<double>>(4, 3, Conv1DOptions().padding(Padding::Causal).dilation(2).seed(1));
  model.add<LSTM<double>>(5, LSTMOptions().return_sequences(true).seed(2));
  model.add<GRU<double>>(3, GRUOptions().return_sequences(true).seed(3));
  const Tensor3<double> first = random_steps<double>(3, 6, 3, 7), second = random_steps<double>(3, 4, 3, 8);
  Stream<double> with_reset = model.stream(3), without = model.stream(3), fresh = model.stream(3);
  with_reset.step(first);
  without.step(first);
  with_reset.reset(1);
  for (const auto& s : with_reset.state())  // stream 1's state is zero, the others' is not
    for (Index r = 0; r < s.tensor->dimension(1); ++r)
      for (Index c = 0; c < s.tensor->dimension(2); ++c) {
        EXPECT_EQ((*s.tensor)(1, r, c), 0.0) << s.name;
        EXPECT_NE((*s.tensor)(0, r, c), 0.0) << s.name;
      }
  EXPECT_EQ(with_reset.steps(1), 0);
  EXPECT_EQ(with_reset.steps(0), 6);
  const Tensor3<double> y = with_reset.step(second);
  const Tensor3<double>& y_without = without.step(second);
  const Tensor3<double>& y_fresh = fresh.step(second);
  for (Index i = 0; i < 4; ++i)
    for (Index o = 0; o < 3; ++o) {
      EXPECT_EQ(y(0, i, o), y_without(0, i, o));
      EXPECT_EQ(y(2, i, o), y_without(2, i, o));
      EXPECT_EQ(y(1, i, o), y_fresh(1, i, o));
      EXPECT_NE(y(1, i, o), y_without(1, i, o));
    }
}

TEST(StreamRecurrentState, NamesShapesAndValues) {
  Sequential<float> model(3);
  model.add<LSTM<float>>(5, LSTMOptions().return_sequences(true).seed(1));
  model.add<GRU<float>>(4, GRUOptions().return_sequences(true).seed(2));
  model.add<Conv1D<float>>(2, 3, Conv1DOptions().padding(Padding::Causal).dilation(2).seed(3));
  model.add<Conv1D<float>>(2, 1, Conv1DOptions().seed(4));  // no state
  Stream<float> stream = model.stream(2);
  const auto state = stream.state();
  const std::vector<std::string> names = {"0.lstm.h", "0.lstm.c", "1.gru.h", "2.conv1d.past"};
  const std::vector<std::vector<Index>> shapes = {{2, 1, 5}, {2, 1, 5}, {2, 1, 4}, {2, 4, 4}};
  ASSERT_EQ(state.size(), names.size());
  for (size_t i = 0; i < state.size(); ++i) {
    EXPECT_EQ(state[i].name, names[i]);
    EXPECT_FALSE(state[i].grows);
    const auto& t = *state[i].tensor;
    EXPECT_EQ(std::vector<Index>({t.dimension(0), t.dimension(1), t.dimension(2)}), shapes[i]) << names[i];
  }
  EXPECT_EQ(stream.state_bytes(), sizeof(float) * 2 * (5 + 5 + 4 + 4 * 4));
  EXPECT_EQ(stream.max_steps(), kUnlimitedSteps);

  // The LSTM's h is its last output; the ring holds the Conv1D's last 4 inputs, step p at row p % 4.
  Sequential<float> lstm_only(3);
  lstm_only.add<LSTM<float>>(5, LSTMOptions().return_sequences(true).seed(1));
  Sequential<float> to_conv(3);
  to_conv.add<LSTM<float>>(5, LSTMOptions().return_sequences(true).seed(1));
  to_conv.add<GRU<float>>(4, GRUOptions().return_sequences(true).seed(2));
  const Tensor3<float> x = random_steps<float>(2, 7, 3, 9);
  stream.step(x);
  const Tensor3<float>& h = lstm_only.predict(x);
  const Tensor3<float>& conv_in = to_conv.predict(x);
  for (Index b = 0; b < 2; ++b) {
    for (Index u = 0; u < 5; ++u) EXPECT_NEAR((*state[0].tensor)(b, 0, u), h(b, 6, u), 1e-5);
    for (Index u = 0; u < 4; ++u) EXPECT_NEAR((*state[2].tensor)(b, 0, u), conv_in(b, 6, u), 1e-5);
    for (Index p = 3; p < 7; ++p)
      for (Index f = 0; f < 4; ++f) EXPECT_NEAR((*state[3].tensor)(b, p % 4, f), conv_in(b, p, f), 1e-5);
  }
}

// ConfigError from model.stream(), before any step, naming the layer and why.
template <class Build>
std::string refusal(Build build) {
  Sequential<float> model(3);
  build(model);
  try {
    model.stream(2);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no ConfigError)";
}

TEST(StreamRecurrentRefusals, LayersThatReadLaterStepsAreRefusedWithTheReason) {
  EXPECT_EQ(refusal([](Sequential<float>& m) { m.add<Conv1D<float>>(2, 3, Conv1DOptions().padding(Padding::Same)); }),
            "Sequential: layer 0 Conv1D(filters=2, kernel_size=3, padding=same): cannot be streamed: padding=same "
            "centers each window, so an output step reads the next 1 input step(s); use padding=causal");
  EXPECT_EQ(refusal([](Sequential<float>& m) {
              m.add<Conv1D<float>>(2, 3, Conv1DOptions().padding(Padding::Same).dilation(3));
            }),
            "Sequential: layer 0 Conv1D(filters=2, kernel_size=3, dilation=3, padding=same): cannot be streamed: "
            "padding=same centers each window, so an output step reads the next 3 input step(s); use padding=causal");
  EXPECT_EQ(refusal([](Sequential<float>& m) { m.add<Conv1D<float>>(2, 3, Conv1DOptions().dilation(2)); }),
            "Sequential: layer 0 Conv1D(filters=2, kernel_size=3, dilation=2, padding=valid): cannot be streamed: "
            "padding=valid makes output step t read input steps t .. t + 4 (later steps, and 4 fewer outputs than "
            "inputs); use padding=causal");
  EXPECT_EQ(refusal([](Sequential<float>& m) {
              m.add<Dense<float>>(3);
              m.add<Conv1D<float>>(2, 3, Conv1DOptions().padding(Padding::Causal).stride(2));
            }),
            "Sequential: layer 1 Conv1D(filters=2, kernel_size=3, stride=2, padding=causal): cannot be streamed: "
            "stride=2 gives one output step per 2 input steps, but a stream gives one output per input step; use "
            "stride 1");
  EXPECT_EQ(refusal([](Sequential<float>& m) {
              m.add<Conv1D<float>>(2, 2, Conv1DOptions().padding(Padding::Same).stride(3));
            }),
            "Sequential: layer 0 Conv1D(filters=2, kernel_size=2, stride=3, padding=same): cannot be streamed: "
            "stride=3 gives one output step per 3 input steps, but a stream gives one output per input step; use "
            "stride 1; padding=same centers each window, so an output step reads later input steps; use "
            "padding=causal");
  EXPECT_EQ(refusal([](Sequential<float>& m) { m.add<Conv1D<float>>(2, 1, Conv1DOptions().stride(2)); }),
            "Sequential: layer 0 Conv1D(filters=2, kernel_size=1, stride=2, padding=valid): cannot be streamed: "
            "stride=2 gives one output step per 2 input steps, but a stream gives one output per input step; use "
            "stride 1");
  for (bool sequences : {true, false}) {
    const std::string lstm = refusal(
        [&](Sequential<float>& m) { m.add<Bidirectional<float>>(4, LSTMOptions().return_sequences(sequences)); });
    EXPECT_EQ(lstm, std::string("Sequential: layer 0 Bidirectional(LSTM(units=4") +
                        (sequences ? ", return_sequences=true" : "") +
                        ")): cannot be streamed: its backward layer reads each sequence from its last step, so every "
                        "output depends on later input steps (the future of a stream); stream a forward LSTM or GRU "
                        "instead");
  }
  EXPECT_NE(refusal([](Sequential<float>& m) {
              m.add<Bidirectional<float>>(4, GRUOptions());
            }).find("Bidirectional(GRU(units=4)): cannot be streamed: its backward layer reads each sequence"),
            std::string::npos);
  // Only per-step layers may follow a layer that pools time (Sequential's rule): a causal window may not.
  EXPECT_NE(refusal([](Sequential<float>& m) {
              m.add<GRU<float>>(4);
              m.add<Conv1D<float>>(2, 2, Conv1DOptions().padding(Padding::Causal));
            }).find("layer 1 Conv1D(filters=2, kernel_size=2, padding=causal): cannot be streamed after layer 0 GRU"),
            std::string::npos);
}

// A receptive field too large for memory is refused before anything is allocated.
TEST(StreamRecurrentRefusals, HugeReceptiveFieldThrowsMemoryError) {
  Sequential<float> model(3);
  model.add<Conv1D<float>>(2, 2, Conv1DOptions().padding(Padding::Causal).dilation(Index(1) << 50));
  try {
    model.stream(2);
    ADD_FAILURE() << "no MemoryError";
  } catch (const MemoryError& e) {
    EXPECT_NE(std::string(e.what()).find("Conv1D(filters=2, kernel_size=2, dilation=1125899906842624, padding=causal): "
                                         "2 streams keep the last 1125899906842624 input steps each"),
              std::string::npos)
        << e.what();
  }
}

// Steady steps allocate nothing: single steps of 1 and 3 streams, and steady chunks of 4 steps.
TEST(StreamRecurrentNoAlloc, SteadyStepsAllocateNothing) {
  Sequential<float> model(8);
  model.add<Conv1D<float>>(8, 3, Conv1DOptions().padding(Padding::Causal).dilation(2).activation(Activation::ReLU));
  model.add<Conv1D<float>>(8, 1);
  model.add<LSTM<float>>(16, LSTMOptions().return_sequences(true));
  model.add<GRU<float>>(16, GRUOptions().return_sequences(true).activation(Activation::ReLU));
  model.add<LSTM<float>>(8, LSTMOptions());
  model.add<Dense<float>>(2);
  for (Index B : {1, 3})
    for (Index n : {1, 4}) {
      Stream<float> stream = model.stream(B);
      const Tensor3<float> x = random_steps<float>(B, n, 8, 3);
      stream.step(x);  // warm-up sizes every buffer
      Eigen::internal::set_is_malloc_allowed(false);
      for (int i = 0; i < 5; ++i) stream.step(x);
      stream.reset(0);
      stream.step(x);
      Eigen::internal::set_is_malloc_allowed(true);
    }
  SUCCEED();
}

}  // namespace
