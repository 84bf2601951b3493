// LSTM and GRU behaviour: masks (frozen state, zero padded outputs, length 0, return_sequences=false is the last
// valid step), padding invariance (bitwise in float for the forward; dx and gradients via the shared check),
// initialization (orthogonal recurrent kernel, unit forget bias, seeds), names and shapes, save/load round
// trip, a steady loop that allocates nothing, and error messages.
#define EIGEN_RUNTIME_NO_MALLOC
#include <gtest/gtest.h>

#include <cstring>
#include <sstream>

#include "seqattn/io/weights.hpp"
#include "seqattn/layers/bidirectional.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/model/sequential.hpp"
#include "support/seq_layer_padding_check.hpp"

using namespace seqattn;
using seqattn::testing::random_tensor;

namespace {

template <class L>
struct Opts;
template <class S>
struct Opts<LSTM<S>> {
  using type = LSTMOptions;
};
template <class S>
struct Opts<GRU<S>> {
  using type = GRUOptions;
};

template <class L>
class Recurrent : public ::testing::Test {};
using Layers = ::testing::Types<LSTM<double>, GRU<double>>;
TYPED_TEST_SUITE(Recurrent, Layers);

TYPED_TEST(Recurrent, MaskFreezesStateAndZeroesPaddedOutputs) {
  using O = typename Opts<TypeParam>::type;
  TypeParam seq(3, 4, O().return_sequences(true).seed(2));
  TypeParam last(3, 4, O().return_sequences(false).seed(2));
  const Tensor3<double> x = random_tensor(3, 6, 3, 1);
  const Mask mask = Mask::from_lengths({6, 2, 0});
  const Tensor3<double>& ys = seq.forward(x, mask);
  const Tensor3<double>& yl = last.forward(x, mask);
  ASSERT_EQ(yl.dimension(1), 1);
  const Index lengths[] = {6, 2, 0};
  for (Index b = 0; b < 3; ++b)
    for (Index u = 0; u < 4; ++u) {
      for (Index t = lengths[b]; t < 6; ++t) EXPECT_EQ(ys(b, t, u), 0.0) << "padded output";
      EXPECT_EQ(yl(b, 0, u), lengths[b] ? ys(b, lengths[b] - 1, u) : 0.0) << "last valid state";
      if (lengths[b]) {
        EXPECT_NE(ys(b, lengths[b] - 1, u), 0.0);
      }
    }
  EXPECT_TRUE(last.out_mask(mask, 6).empty());
  EXPECT_EQ(seq.out_mask(mask, 6), mask);
  // no gradient reaches padded steps, even with a non-zero dy there
  const Tensor3<double>& dx = seq.backward(x, mask, random_tensor(3, 6, 4, 3));
  for (Index b = 0; b < 3; ++b)
    for (Index t = lengths[b]; t < 6; ++t)
      for (Index f = 0; f < 3; ++f) EXPECT_EQ(dx(b, t, f), 0.0);
}

TYPED_TEST(Recurrent, PaddingInvariance) {
  using O = typename Opts<TypeParam>::type;
  for (bool rs : {true, false}) {
    TypeParam layer(3, 5, O().return_sequences(rs).seed(4));
    seqattn::testing::expect_padding_invariant(layer, 4, 6, {6, 3, 1, 0}, 5);
  }
}

TEST(RecurrentFloat, ValidOutputsBitwiseIndependentOfPadding) {
  LSTM<float> lstm(5, 20, LSTMOptions().return_sequences(true).seed(9));
  GRU<float> gru(5, 20, GRUOptions().return_sequences(true).seed(9));
  for (Layer<float>* layer : std::initializer_list<Layer<float>*>{&lstm, &gru}) {
    const std::vector<Index> lengths{19, 3, 1, 0, 7};
    const Tensor3<float> x = random_tensor(5, 19, 5, 10).cast<float>();
    const Tensor3<float> y0 = layer->forward(x, Mask(lengths));
    for (Index T : {20, 23, 41}) {
      Tensor3<float> xp = random_tensor(5, T, 5, 100 + std::uint64_t(T)).cast<float>();
      for (Index b = 0; b < 5; ++b)
        for (Index t = 0; t < lengths[size_t(b)]; ++t)
          for (Index f = 0; f < 5; ++f) xp(b, t, f) = x(b, t, f);
      const Tensor3<float>& y = layer->forward(xp, Mask(lengths));
      for (Index b = 0; b < 5; ++b)
        EXPECT_EQ(std::memcmp(&y(b, 0, 0), &y0(b, 0, 0), sizeof(float) * size_t(lengths[size_t(b)] * 20)), 0)
            << layer->describe() << " padded to " << T << ", sequence " << b;
    }
  }
}

TEST(RecurrentInit, OrthogonalRecurrentKernelAndForgetBias) {
  LSTM<double> lstm(3, 6);
  const Matrix<double>& K = lstm.recurrent_kernel();  // (6, 24): orthonormal rows
  EXPECT_LT((K * K.transpose() - Matrix<double>::Identity(6, 6)).cwiseAbs().maxCoeff(), 1e-12);
  for (Index u = 0; u < 24; ++u) EXPECT_EQ(lstm.bias()(u), (u >= 6 && u < 12) ? 1.0 : 0.0);  // i, f, c, o
  Matrix<double> tall(7, 3);
  Rng rng(1);
  Init::orthogonal(2.0).fill(tall, 7, 3, rng);  // orthogonal columns of norm 2
  EXPECT_LT((tall.transpose() * tall - 4 * Matrix<double>::Identity(3, 3)).cwiseAbs().maxCoeff(), 1e-12);
  EXPECT_THROW(Init::orthogonal(0.0), ConfigError);
  GRU<double> g1(3, 4, GRUOptions().seed(5)), g2(3, 4, GRUOptions().seed(5)), g3(3, 4, GRUOptions().seed(6));
  EXPECT_EQ(g1.kernel(), g2.kernel());
  EXPECT_NE(g1.kernel(), g3.kernel());
  EXPECT_EQ(g1.bias(), Matrix<double>::Zero(2, 12));
}

TEST(RecurrentApi, NamesShapesDescribe) {
  LSTM<float> lstm(3, 4);
  auto p = lstm.params();
  ASSERT_EQ(p.size(), 3u);
  EXPECT_EQ(p[0].name, "kernel");
  EXPECT_EQ(p[0].shape, (std::vector<Index>{3, 16}));
  EXPECT_EQ(p[1].name, "recurrent_kernel");
  EXPECT_EQ(p[1].shape, (std::vector<Index>{4, 16}));
  EXPECT_EQ(p[2].name, "bias");
  EXPECT_EQ(p[2].shape, (std::vector<Index>{16}));
  GRU<float> gru(3, 4, GRUOptions().return_sequences(true).recurrent_activation(Activation::Tanh).use_bias(false));
  EXPECT_EQ(gru.params().size(), 2u);
  EXPECT_EQ(gru.describe(), "GRU(units=4, return_sequences=true, recurrent_activation=tanh, use_bias=false)");
  EXPECT_EQ(GRU<float>(2, 3).params()[2].shape, (std::vector<Index>{2, 9}));
  EXPECT_EQ(lstm.name(), "lstm");
  EXPECT_EQ(gru.name(), "gru");
  EXPECT_EQ(lstm.out_time(9), 1);
  EXPECT_EQ(gru.out_time(9), 9);
}

TEST(RecurrentApi, SaveLoadRoundTripInASequential) {
  auto build = [](std::uint64_t seed) {
    Sequential<float> m(3);
    m.add<Bidirectional<float>>(4, LSTMOptions().return_sequences(true).seed(seed));
    m.add<GRU<float>>(5, GRUOptions().seed(seed + 10));
    m.add<Dense<float>>(2);
    return m;
  };
  Sequential<float> a = build(1), b = build(2);
  EXPECT_EQ(a.params()[0].name, "0.bidirectional.forward.kernel");
  EXPECT_EQ(a.params()[6].name, "1.gru.kernel");
  std::stringstream buffer;
  save_weights(a, buffer);
  load_weights(b, buffer);
  const Tensor3<float> x = random_tensor(2, 5, 3, 4).cast<float>();
  const Mask mask = Mask::from_lengths({5, 3});
  const Tensor3<float> ya = a.predict(x, mask);
  const Tensor3<float>& yb = b.predict(x, mask);
  EXPECT_EQ(std::memcmp(ya.data(), yb.data(), sizeof(float) * size_t(ya.size())), 0);
}

TEST(RecurrentApi, SteadyLoopAllocatesNothing) {
  std::vector<std::unique_ptr<Layer<double>>> layers;
  layers.push_back(std::make_unique<LSTM<double>>(4, 8, LSTMOptions().return_sequences(true)));
  layers.push_back(std::make_unique<GRU<double>>(4, 8));
  layers.push_back(std::make_unique<Bidirectional<double>>(4, 8, GRUOptions().return_sequences(true)));
  layers.push_back(std::make_unique<LSTM<double>>(4, 40));  // products through Eigen's GEMM kernel
  for (Index B : {1, 3}) {
    const Tensor3<double> x = random_tensor(B, 6, 4, 1);
    const Mask mask = B == 1 ? Mask::from_lengths({5}) : Mask::from_lengths({6, 2, 0});
    for (auto& layer : layers) {
      const Tensor3<double> dy = random_tensor(B, layer->out_time(6), layer->out_features(), 2);
      layer->forward(x, mask, Mode::Train);
      layer->backward(x, mask, dy);
      Eigen::internal::set_is_malloc_allowed(false);
      layer->forward(x, mask, Mode::Train);
      layer->backward(x, mask, dy);
      Eigen::internal::set_is_malloc_allowed(true);
    }
  }
  SUCCEED();
}

TEST(RecurrentApi, ErrorMessages) {
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message([] { LSTM<float>(3, 0); }), "LSTM: units must be positive but got 0");
  EXPECT_EQ(message([] { GRU<float>(3, -2); }), "GRU: units must be positive but got -2");
  EXPECT_EQ(message([] { LSTM<float>(3, 2, LSTMOptions().activation(Activation::GELU)); }),
            "LSTM(units=2, activation=gelu): activation must be linear, relu, tanh or sigmoid but got gelu (its "
            "derivative is needed from the output)");
  EXPECT_THROW((GRU<float>(3, 2, GRUOptions().recurrent_activation(Activation::Softmax))), ConfigError);
  LSTM<float> lstm(3, 2);
  EXPECT_EQ(message([&] { lstm.forward(Tensor3<float>(2, 4, 5).setZero()); }),
            "LSTM(units=2): input features expected 3 but got 5 (input shape (2, 4, 5))");
  EXPECT_EQ(message([&] { lstm.forward(Tensor3<float>(2, 4, 3).setZero(), Mask::from_lengths({4, 5})); }),
            "LSTM(units=2): mask length of sequence 1 is 5 but the input has only 4 steps");
  lstm.forward(Tensor3<float>(2, 4, 3).setZero());
  EXPECT_EQ(message([&] { lstm.backward(Tensor3<float>(2, 4, 3).setZero(), Mask(), Tensor3<float>(2, 4, 2)); }),
            "LSTM(units=2): output gradient expected (2, 1, 2) but got (2, 4, 2)");
}

}  // namespace
