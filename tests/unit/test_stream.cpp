// Stream<S> (model/stream.hpp) and save_state / load_state (io/stream_state.hpp): the API, its errors, the
// model-liveness checks, the history limit, and that a restored stream continues exactly.
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "seqattn/seqattn.hpp"
#include "support/stream_checks.hpp"

namespace {

using namespace seqattn;

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no exception)";
}

Tensor3<double> ramp(Index B, Index n, Index F, double offset) {
  Tensor3<double> x(B, n, F);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = std::sin(0.37 * double(i) + offset);
  return x;
}

// A model with carried state in every kind of layer that keeps some: a ring buffer (causal Conv1D), a
// recurrent state (LSTM), a windowed key cache (SeqSelfAttention with a width), a growing one (without), a
// position counter and a running pool.
Sequential<double> stateful_model() {
  Sequential<double> m(3);
  m.add<Conv1D<double>>(4, 3, Conv1DOptions().padding(Padding::Causal).dilation(2).seed(1));
  m.add<SinusoidalPositionalEncoding<double>>();
  m.add<LSTM<double>>(5, LSTMOptions().return_sequences(true).seed(2));
  m.add<SeqSelfAttention<double>>(SeqSelfAttentionOptions().history_only(true).attention_width(3).units(4).seed(3));
  m.add<SeqSelfAttention<double>>(SeqSelfAttentionOptions().history_only(true).units(3).seed(4));
  m.add<GlobalMaxPool<double>>();
  m.add<Dense<double>>(2, DenseOptions().seed(5));
  return m;
}

TEST(Stream, StepChecksTheInputShape) {
  Sequential<double> m(3);
  m.add<Dense<double>>(2);
  Stream<double> s = m.stream(2);
  EXPECT_EQ(message_of([&] { s.step(ramp(3, 1, 3, 0)); }),
            "Stream: step expected x of shape (2, n >= 1, 3) but got (3, 1, 3)");
  EXPECT_THROW(s.step(ramp(2, 1, 4, 0)), ShapeError);
  EXPECT_THROW(s.step(Tensor3<double>(2, 0, 3)), ShapeError);
  EXPECT_EQ(s.steps(0), 0);
  EXPECT_EQ(message_of([&] { s.reset(2); }), "Stream: stream index 2 out of range (the stream has 2 streams)");
  EXPECT_THROW(m.stream(0), ConfigError);
  EXPECT_THROW(m.stream(1, StreamOptions().max_history(0)), ConfigError);
  const Tensor3<double>& y = s.step(ramp(2, 3, 3, 0));
  EXPECT_EQ(y.dimension(0), 2);
  EXPECT_EQ(y.dimension(1), 3);
  EXPECT_EQ(y.dimension(2), 2);
  EXPECT_EQ(s.steps(1), 3);
}

TEST(Stream, RefusesLayersThatReadLaterSteps) {
  Sequential<double> m(3);
  m.add<Dense<double>>(4);
  m.add<Bidirectional<double>>(2, LSTMOptions().return_sequences(true));
  const std::string msg = message_of([&] { m.stream(1); });
  EXPECT_NE(msg.find("Sequential: layer 1 Bidirectional"), std::string::npos) << msg;
  EXPECT_NE(msg.find("cannot be streamed"), std::string::npos) << msg;
  Sequential<double> conv(3);
  conv.add<Conv1D<double>>(2, 3, Conv1DOptions().padding(Padding::Same));
  EXPECT_THROW(conv.stream(1), ConfigError);
  Sequential<double> global(3);
  global.add<SeqSelfAttention<double>>(SeqSelfAttentionOptions().history_only(false));
  EXPECT_THROW(global.stream(1), ConfigError);
}

TEST(Stream, OnlyPerStepLayersMayFollowAPooling) {
  Sequential<double> m(3);
  m.add<GlobalAvgPool<double>>();
  m.add<Dense<double>>(4);
  EXPECT_NO_THROW(m.stream(2));
  m.add<LSTM<double>>(2, LSTMOptions().return_sequences(true));
  const std::string msg = message_of([&] { m.stream(2); });
  EXPECT_NE(msg.find("layer 2 LSTM"), std::string::npos) << msg;
  EXPECT_NE(msg.find("pools time"), std::string::npos) << msg;
}

TEST(Stream, DetectsADestroyedOrReassignedModel) {
  auto m = std::make_unique<Sequential<double>>(3);
  m->add<Dense<double>>(2);
  Stream<double> s = m->stream(1);
  s.step(ramp(1, 1, 3, 0));
  Sequential<double> other(3);
  other.add<Dense<double>>(2);
  *m = other;
  EXPECT_THROW(s.step(ramp(1, 1, 3, 0)), UsageError);
  Stream<double> t = m->stream(1);
  m.reset();
  EXPECT_EQ(message_of([&] { t.step(ramp(1, 1, 3, 0)); }),
            "Stream: its model no longer exists (it was destroyed); open a new stream");
}

TEST(Stream, ResetRestartsOneStreamOnly) {
  Sequential<double> m = stateful_model();
  Stream<double> s = m.stream(2);
  const Tensor3<double> a = ramp(2, 4, 3, 0.0), b = ramp(2, 4, 3, 1.0);
  s.step(a);
  s.reset(1);
  EXPECT_EQ(s.steps(0), 4);
  EXPECT_EQ(s.steps(1), 0);
  const Tensor3<double> y = s.step(b);
  Stream<double> fresh = m.stream(2);
  const Tensor3<double> y1 = fresh.step(b);  // stream 1 as new
  Stream<double> cont = m.stream(2);
  cont.step(a);
  const Tensor3<double> y0 = cont.step(b);  // stream 0 going on
  for (Index o = 0; o < y.dimension(2); ++o)
    for (Index i = 0; i < 4; ++i) {
      EXPECT_EQ(y(1, i, o), y1(1, i, o));
      EXPECT_EQ(y(0, i, o), y0(0, i, o));
    }
}

TEST(Stream, HistoryLimitThrowsAndLeavesTheStreamUnchanged) {
  Sequential<double> m(2);
  m.add<SeqSelfAttention<double>>(SeqSelfAttentionOptions().history_only(true).units(3).seed(1));
  Stream<double> s = m.stream(2, StreamOptions().max_history(5));
  EXPECT_EQ(s.max_steps(), 5);
  s.step(ramp(2, 4, 2, 0));
  EXPECT_THROW(s.step(ramp(2, 2, 2, 0)), StreamLimitError);
  EXPECT_EQ(s.steps(0), 4);
  const Tensor3<double> last = s.step(ramp(2, 1, 2, 0.5));  // exactly at the limit
  EXPECT_EQ(s.steps(1), 5);
  EXPECT_THROW(s.step(ramp(2, 1, 2, 0)), StreamLimitError);
  s.reset(0);
  s.reset(1);
  EXPECT_NO_THROW(s.step(ramp(2, 5, 2, 0)));
  // A windowed layer has no limit.
  Sequential<double> w(2);
  w.add<SeqSelfAttention<double>>(SeqSelfAttentionOptions().history_only(true).attention_width(2).units(3));
  EXPECT_EQ(w.stream(1, StreamOptions().max_history(5)).max_steps(), kUnlimitedSteps);
  // PositionEmbedding holds max_len positions.
  Sequential<double> p(2);
  p.add<PositionEmbedding<double>>(6);
  Stream<double> ps = p.stream(1);
  EXPECT_EQ(ps.max_steps(), 6);
  ps.step(ramp(1, 6, 2, 0));
  EXPECT_THROW(ps.step(ramp(1, 1, 2, 0)), StreamLimitError);
}

TEST(Stream, StatefulModelMatchesPredict) {
  Sequential<double> m = stateful_model();
  seqattn::testing::StreamCheck check;
  check.streams = 3;
  check.steps = 40;
  EXPECT_TRUE(seqattn::testing::stream_matches_predict(m, check, 1e-12));
}

TEST(Stream, StateBytesCountTheCarriedState) {
  Sequential<double> m = stateful_model();
  Stream<double> s = m.stream(4);
  std::size_t expected = 0;
  for (const auto& t : s.state()) expected += static_cast<std::size_t>(t.tensor->size()) * sizeof(double);
  EXPECT_EQ(s.state_bytes(), expected);
  EXPECT_GT(s.state_bytes(), 0u);
  const std::size_t before = s.state_bytes();
  s.step(ramp(4, 40, 3, 0));  // the growing cache of the second attention layer grows
  EXPECT_GT(s.state_bytes(), before);
}

// MultiHeadAttention's key/value cache: every head count, window (none, shorter and longer than the chunks and
// sequences), activation and bias; chunks of up to 7 steps, longer than the smaller windows.
TEST(Stream, MultiHeadAttentionMatchesPredict) {
  Index rows = 0;
  for (Index heads : {1, 2, 3})
    for (Index window : {0, 1, 3, 50})
      for (Activation act : {Activation::Linear, Activation::Tanh})
        for (bool bias : {true, false}) {
          MultiHeadAttentionOptions o;
          o.causal(true).activation(act).use_bias(bias).head_size(2).output_features(4).seed(11);
          if (window > 0) o.attention_window(window);
          Sequential<double> m(5);
          m.add<MultiHeadAttention<double>>(heads, o);
          seqattn::testing::StreamCheck check;
          check.steps = 30;
          check.max_chunk = 7;
          check.max_sequence = 20;
          check.seed = static_cast<std::uint64_t>(heads * 100 + window);
          check.rows_checked = &rows;
          check.options = StreamOptions().max_history(24);  // the growing cache grows from 16 rows
          ASSERT_TRUE(seqattn::testing::stream_matches_predict(m, check, 1e-12, m.layer(0).describe()));
          Sequential<float> f(5);
          f.add<MultiHeadAttention<float>>(heads, o);
          ASSERT_TRUE(seqattn::testing::stream_matches_predict(f, check, 2e-5, f.layer(0).describe()));
        }
  EXPECT_GT(rows, 1000);
}

// The one-query kernels of detail/cached_attention.hpp take different paths by head size and key count: every
// head in one pass over V (H * dh at most 8 SIMD packets), one head at a time (wider), Eigen's product (dh not
// a whole number of packets), and score tiles that are full (8 packets of keys), partial or a single lane.
// Head sizes 1 to 32 and windows of 40 and 150 steps cover all of them in float and double at SSE2, AVX2 and
// AVX-512 (./build.sh native).
TEST(Stream, MultiHeadAttentionKernelPathsMatchPredict) {
  Index rows = 0;
  for (Index heads : {1, 4})
    for (Index dh : {1, 3, 8, 16, 32})
      for (Index window : {0, 40, 150}) {
        MultiHeadAttentionOptions o;
        o.causal(true).head_size(dh).output_features(3).seed(static_cast<std::uint64_t>(dh + 7 * window));
        if (window > 0) o.attention_window(window);
        seqattn::testing::StreamCheck check;
        check.streams = 2;
        check.steps = 170;
        check.max_chunk = 3;
        check.max_sequence = 170;
        check.seed = static_cast<std::uint64_t>(heads * 1000 + dh * 10 + window);
        check.rows_checked = &rows;
        check.options = StreamOptions().max_history(200);
        Sequential<double> m(4);
        m.add<MultiHeadAttention<double>>(heads, o);
        ASSERT_TRUE(seqattn::testing::stream_matches_predict(m, check, 1e-12, m.layer(0).describe()));
        Sequential<float> f(4);
        f.add<MultiHeadAttention<float>>(heads, o);
        ASSERT_TRUE(seqattn::testing::stream_matches_predict(f, check, 2e-5, f.layer(0).describe()));
      }
  EXPECT_GT(rows, 10000);
}

TEST(Stream, TransformerEncoderBlockMatchesPredict) {
  for (bool pre : {false, true})
    for (Index window : {0, 2, 9}) {
      TransformerEncoderOptions o;
      o.causal(true).norm_first(pre).dropout(0.3).attention_dropout(0.2).seed(5);
      if (window > 0) o.attention_window(window);
      Sequential<double> m(4);
      m.add<TransformerEncoderBlock<double>>(2, 6, o);
      m.add<TransformerEncoderBlock<double>>(1, 3, o);
      seqattn::testing::StreamCheck check;
      check.max_chunk = 5;
      EXPECT_TRUE(seqattn::testing::stream_matches_predict(m, check, 1e-12, m.layer(0).describe()));
    }
  Sequential<double> global(4);
  global.add<TransformerEncoderBlock<double>>(2, 6);
  EXPECT_THROW(global.stream(1), ConfigError);
  Sequential<double> mha(4);
  mha.add<MultiHeadAttention<double>>(2);
  const std::string msg = message_of([&] { mha.stream(1); });
  EXPECT_NE(msg.find("set causal"), std::string::npos) << msg;
}

// A steady stream of the benchmark's causal classifier (sinusoidal positions, windowed multi-head attention,
// LayerNorm, running max pool) allocates nothing per step, for one stream and for several.
TEST(Stream, ASteadyStreamAllocatesNothing) {
  Sequential<float> m(8);
  m.add<Dense<float>>(16, DenseOptions().seed(1));
  m.add<SinusoidalPositionalEncoding<float>>();
  m.add<MultiHeadAttention<float>>(4, MultiHeadAttentionOptions().causal(true).attention_window(8).seed(2));
  m.add<LayerNorm<float>>();
  m.add<GlobalMaxPool<float>>();
  m.add<Dense<float>>(2, DenseOptions().seed(3));
  for (Index B : {1, 3}) {
    Stream<float> s = m.stream(B);
    Tensor3<float> x(B, 1, 8);
    x.setConstant(0.25f);
    for (int k = 0; k < 20; ++k) s.step(x);  // the ring buffer is full
    Eigen::internal::set_is_malloc_allowed(false);
    for (int k = 0; k < 20; ++k) {
      x(0, 0, k % 8) += 0.5f;
      s.step(x);
    }
    Eigen::internal::set_is_malloc_allowed(true);
  }
}

class StreamStateFile : public ::testing::Test {
 protected:
  void TearDown() override { std::remove(path.c_str()); }
  std::string path = ::testing::TempDir() + "seqattn_stream_state_test.sqs";
};

TEST_F(StreamStateFile, ARestoredStreamContinuesExactly) {
  Sequential<double> m = stateful_model();
  Stream<double> s = m.stream(3);
  s.step(ramp(3, 7, 3, 0.0));
  s.reset(1);
  s.step(ramp(3, 2, 3, 0.3));
  save_state(s, path);
  const Tensor3<double> next = ramp(3, 5, 3, 0.9);
  const Tensor3<double> want = s.step(next);

  Sequential<double> copy = m;  // another process: the same architecture and weights
  Stream<double> r = copy.stream(3);
  load_state(r, path);
  EXPECT_EQ(r.steps(0), 9);
  EXPECT_EQ(r.steps(1), 2);
  const Tensor3<double>& got = r.step(next);
  for (Index i = 0; i < want.size(); ++i) EXPECT_EQ(got.data()[i], want.data()[i]) << i;
}

TEST_F(StreamStateFile, RefusesAnotherModelBatchOrScalarAndLeavesTheStreamUnchanged) {
  Sequential<double> m = stateful_model();
  Stream<double> s = m.stream(2);
  s.step(ramp(2, 3, 3, 0));
  save_state(s, path);

  Stream<double> other_batch = m.stream(3);
  EXPECT_EQ(message_of([&] { load_state(other_batch, path); }),
            "load_state(" + path + "): the file holds 2 streams but the stream has 3");
  Sequential<double> other(3);
  other.add<Conv1D<double>>(4, 3, Conv1DOptions().padding(Padding::Causal).dilation(1));
  Stream<double> o = other.stream(2);
  EXPECT_THROW(load_state(o, path), MismatchError);
  EXPECT_EQ(o.steps(0), 0);
  Sequential<float> f(3);
  f.add<Dense<float>>(2);
  Stream<float> fs = f.stream(2);
  EXPECT_THROW(load_state(fs, path), MismatchError);

  // Every corruption is refused (checksum, size), the stream unchanged.
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  Stream<double> target = m.stream(2);
  target.step(ramp(2, 1, 3, 0));
  for (std::size_t at : {std::size_t{9}, std::size_t{30}, bytes.size() / 2, bytes.size() - 1}) {
    std::string bad = bytes;
    bad[at] = static_cast<char>(bad[at] ^ 0x40);
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bad;
    EXPECT_THROW(load_state(target, path), Error) << at;
    EXPECT_EQ(target.steps(0), 1);
  }
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() - 5);
  EXPECT_THROW(load_state(target, path), FormatError);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  EXPECT_NO_THROW(load_state(target, path));
  EXPECT_EQ(target.steps(0), 3);
}

}  // namespace
