// Bidirectional: gradients (LSTM and GRU, concat, sum, ave and mul, return_sequences both ways, masks with lengths 0
// and 1), the backward direction reverses within the valid part only (compared with the inner layer run on
// hand-reversed sequences), the merge modes against concat's halves (describe, config, stream refusal), parameter
// names, clone, padding invariance, errors.
#include <gtest/gtest.h>

#include <cstring>

#include "seqattn/layers/bidirectional.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/model/layer_registry.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/seq_layer_padding_check.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_tensor;

namespace {

TEST(Bidirectional, GradientsMatchFiniteDifferences) {
  const Mask mask = Mask::from_lengths({5, 2, 0, 1});
  for (bool seq : {true, false})
    for (MergeMode merge : {MergeMode::Concat, MergeMode::Sum, MergeMode::Ave, MergeMode::Mul}) {
      SCOPED_TRACE(std::string("return_sequences ") + (seq ? "true" : "false") + ", " + to_string(merge));
      Bidirectional<double> lstm(3, 3, LSTMOptions().return_sequences(seq).bias_init(Init::uniform(-.5, .5)).seed(1),
                                 BidirectionalOptions().merge_mode(merge));
      const auto r1 = check_layer_gradients(lstm, random_tensor(4, 5, 3, 1), mask);
      EXPECT_TRUE(r1.passed()) << r1.report();
      Bidirectional<double> gru(3, 3, GRUOptions().return_sequences(seq).bias_init(Init::uniform(-.5, .5)).seed(2),
                                BidirectionalOptions().merge_mode(merge));
      const auto r2 = check_layer_gradients(gru, random_tensor(4, 5, 3, 2), mask);
      EXPECT_TRUE(r2.passed()) << r2.report();
    }
}

// y = [fwd(x) | rev(bwd(rev(x)))] where rev reverses the valid steps; checked against separate runs per sample.
TEST(Bidirectional, BackwardDirectionReversesWithinTheValidPart) {
  for (bool seq : {true, false}) {
    Bidirectional<double> bi(2, 3, LSTMOptions().return_sequences(seq).seed(5));
    const std::vector<Index> lengths{6, 4, 1};
    const Tensor3<double> x = random_tensor(3, 6, 2, 7);
    const Tensor3<double> y = bi.forward(x, Mask::from_lengths(lengths));
    for (Index b = 0; b < 3; ++b) {
      const Index L = lengths[size_t(b)];
      Tensor3<double> xb(1, L, 2), xr(1, L, 2);
      for (Index t = 0; t < L; ++t)
        for (Index f = 0; f < 2; ++f) {
          xb(0, t, f) = x(b, t, f);
          xr(0, t, f) = x(b, L - 1 - t, f);
        }
      const Tensor3<double> yf = bi.forward_layer().forward(xb);
      const Tensor3<double> yr = bi.backward_layer().forward(xr);
      for (Index t = 0; t < (seq ? L : 1); ++t)
        for (Index u = 0; u < 3; ++u) {
          EXPECT_NEAR(y(b, t, u), yf(0, t, u), 1e-13) << b << "," << t;
          EXPECT_NEAR(y(b, t, 3 + u), yr(0, seq ? L - 1 - t : 0, u), 1e-13) << b << "," << t;
        }
      if (seq) {
        for (Index t = L; t < 6; ++t)
          for (Index u = 0; u < 6; ++u) EXPECT_EQ(y(b, t, u), 0.0) << "padded output";
      }
    }
  }
}

// sum, ave and mul merge the two halves that concat outputs (same seeds, same directions); describe, config and
// the stream refusal name the mode.
TEST(Bidirectional, MergeModesCombineTheTwoDirections) {
  const Tensor3<double> x = random_tensor(3, 5, 2, 8);
  const Mask mask = Mask::from_lengths({5, 3, 0});
  for (bool seq : {true, false}) {
    Bidirectional<double> concat(2, 3, GRUOptions().return_sequences(seq).seed(6));
    const Tensor3<double> yc = concat.forward(x, mask);
    for (MergeMode merge : {MergeMode::Sum, MergeMode::Ave, MergeMode::Mul}) {
      SCOPED_TRACE(to_string(merge));
      Bidirectional<double> bi(2, 3, GRUOptions().return_sequences(seq).seed(6),
                               BidirectionalOptions().merge_mode(merge));
      EXPECT_EQ(bi.out_features(), 3);
      const Tensor3<double>& y = bi.forward(x, mask);
      ASSERT_EQ(y.dimension(2), 3);
      for (Index b = 0; b < 3; ++b)
        for (Index t = 0; t < y.dimension(1); ++t)
          for (Index u = 0; u < 3; ++u) {
            const double f = yc(b, t, u), r = yc(b, t, 3 + u);
            const double want = merge == MergeMode::Sum ? f + r : merge == MergeMode::Ave ? (f + r) / 2 : f * r;
            EXPECT_NEAR(y(b, t, u), want, 1e-15) << b << "," << t << "," << u;
          }
      const std::string name = to_string(merge);
      EXPECT_NE(bi.describe().find("merge_mode=" + name), std::string::npos) << bi.describe();
      EXPECT_EQ(bi.config().find("merge_mode")->as_string(), name);
      EXPECT_EQ(build_layer<double>(layer_entry(bi), 2)->describe(), bi.describe());
      try {
        bi.open_stream(1, StreamOptions());
        ADD_FAILURE() << "expected ConfigError";
      } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("backward layer reads each sequence from its last step"),
                  std::string::npos)
            << e.what();
      }
    }
  }
}

TEST(Bidirectional, NamesShapesAndClone) {
  Bidirectional<float> bi(4, 5, GRUOptions().return_sequences(true).seed(3));
  const auto params = bi.params();
  ASSERT_EQ(params.size(), 6u);
  EXPECT_EQ(params[0].name, "forward.kernel");
  EXPECT_EQ(params[1].name, "forward.recurrent_kernel");
  EXPECT_EQ(params[2].name, "forward.bias");
  EXPECT_EQ(params[3].name, "backward.kernel");
  EXPECT_EQ(params[5].shape, (std::vector<Index>{2, 15}));
  EXPECT_EQ(bi.name(), "bidirectional");
  EXPECT_EQ(bi.describe(), "Bidirectional(GRU(units=5, return_sequences=true))");
  EXPECT_EQ(bi.out_features(), 10);
  // the two directions get different initial weights (seed and seed + 1)
  EXPECT_NE(params[0].values()(0), params[3].values()(0));
  Bidirectional<float> sum(4, 5, LSTMOptions(), BidirectionalOptions().merge_mode(MergeMode::Sum));
  EXPECT_EQ(sum.out_features(), 5);
  EXPECT_EQ(sum.out_time(9), 1);
  EXPECT_TRUE(sum.out_mask(Mask::from_lengths({3}), 9).empty());

  const Tensor3<float> x = random_tensor(2, 4, 4, 9).cast<float>();
  const Mask mask = Mask::from_lengths({4, 2});
  auto copy = bi.clone();
  const Tensor3<float> y1 = bi.forward(x, mask);
  const Tensor3<float> y2 = copy->forward(x, mask);
  EXPECT_EQ(std::memcmp(y1.data(), y2.data(), sizeof(float) * size_t(y1.size())), 0);
  copy->params()[0].values()(0) += 1.0f;  // a deep copy: the original is unchanged
  const Tensor3<float> y3 = bi.forward(x, mask);
  EXPECT_EQ(std::memcmp(y1.data(), y3.data(), sizeof(float) * size_t(y1.size())), 0);
}

TEST(Bidirectional, PaddingInvariance) {
  for (bool seq : {true, false}) {
    Bidirectional<double> lstm(3, 4, LSTMOptions().return_sequences(seq).seed(4));
    seqattn::testing::expect_padding_invariant(lstm, 4, 5, {5, 3, 1, 0}, 4);
    Bidirectional<double> gru(3, 4, GRUOptions().return_sequences(seq).seed(5),
                              BidirectionalOptions().merge_mode(MergeMode::Sum));
    seqattn::testing::expect_padding_invariant(gru, 4, 5, {5, 3, 1, 0}, 4);
  }
}

TEST(Bidirectional, Errors) {
  try {
    Bidirectional<float> bad(3, std::make_unique<LSTM<float>>(3, 4), std::make_unique<LSTM<float>>(3, 5));
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("output features differ: 4 vs 5"), std::string::npos) << e.what();
  }
  try {
    Bidirectional<float> bad(3, std::make_unique<LSTM<float>>(3, 4, LSTMOptions().return_sequences(true)),
                             std::make_unique<LSTM<float>>(3, 4));
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("both keep the steps or both return one step"), std::string::npos)
        << e.what();
  }
  try {
    Bidirectional<float> bad(3, std::make_unique<LSTM<float>>(2, 4), std::make_unique<LSTM<float>>(2, 4));
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("inner layers expect 2 and 2 input features but the input has 3"),
              std::string::npos)
        << e.what();
  }
  Bidirectional<float> bi(3, 4, LSTMOptions());
  try {
    bi.forward(Tensor3<float>(2, 3, 2).setZero());
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("Bidirectional(LSTM(units=4)): input features expected 3 but got 2"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
