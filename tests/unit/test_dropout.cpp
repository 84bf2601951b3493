// Dropout: identity in Infer, keep rate and scaling in Train, seeded masks, backward through the mask,
// gradient checks, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "seqattn/layers/dropout.hpp"
#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;
using seqattn::testing::check_gradients;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::GradCheckOptions;
using seqattn::testing::random_tensor;

namespace {

Tensor3<float> ones(Index B, Index T, Index F) {
  Tensor3<float> t(B, T, F);
  t.setConstant(1.0f);
  return t;
}

}  // namespace

TEST(Dropout, InferIsIdentityForwardAndBackward) {
  Dropout<double> drop(5, 0.5, DropoutOptions().seed(3));
  const auto x = random_tensor(2, 3, 5, 1);
  const auto dy = random_tensor(2, 3, 5, 2);
  const Tensor3<double> y = drop.forward(x, Mask(), Mode::Infer);
  const Tensor3<double>& dx = drop.backward(x, Mask(), dy);
  for (Index i = 0; i < x.size(); ++i) {
    EXPECT_EQ(y.data()[i], x.data()[i]);
    EXPECT_EQ(dx.data()[i], dy.data()[i]);
  }
}

TEST(Dropout, TrainKeepsOneMinusRateScaledByItsInverse) {
  const double rate = 0.3;
  Dropout<float> drop(40, rate, DropoutOptions().seed(11));
  const auto x = ones(5, 50, 40);  // 10000 values: the kept fraction has stddev 0.0046
  const auto& y = drop.forward(x, Mask(), Mode::Train);
  Index kept = 0;
  for (Index i = 0; i < y.size(); ++i) {
    if (y.data()[i] != 0.0f) {
      ++kept;
      EXPECT_FLOAT_EQ(y.data()[i], static_cast<float>(1.0 / (1.0 - rate)));
    }
  }
  const double fraction = static_cast<double>(kept) / static_cast<double>(y.size());
  EXPECT_NEAR(fraction, 1.0 - rate, 0.02);
  // Inverted dropout keeps the expected value: the mean output is close to the mean input.
  double sum = 0.0;
  for (Index i = 0; i < y.size(); ++i) sum += y.data()[i];
  EXPECT_NEAR(sum / static_cast<double>(y.size()), 1.0, 0.03);
}

TEST(Dropout, SameSeedGivesTheSameMasksAndDrawsANewMaskEachForward) {
  Dropout<float> a(8, 0.5, DropoutOptions().seed(42));
  Dropout<float> b(8, 0.5, DropoutOptions().seed(42));
  Dropout<float> c(8, 0.5, DropoutOptions().seed(43));
  const auto x = ones(3, 10, 8);
  const Tensor3<float> ya = a.forward(x, Mask(), Mode::Train);
  const Tensor3<float> yb = b.forward(x, Mask(), Mode::Train);
  const Tensor3<float> yc = c.forward(x, Mask(), Mode::Train);
  const Tensor3<float> ya2 = a.forward(x, Mask(), Mode::Train);
  Index differ_seed = 0, differ_step = 0;
  for (Index i = 0; i < x.size(); ++i) {
    EXPECT_EQ(ya.data()[i], yb.data()[i]);
    differ_seed += ya.data()[i] != yc.data()[i];
    differ_step += ya.data()[i] != ya2.data()[i];
  }
  EXPECT_GT(differ_seed, 50);  // 240 values, about half differ
  EXPECT_GT(differ_step, 50);
}

TEST(Dropout, CloneDrawsTheSameMasksAsTheOriginal) {
  Dropout<float> a(4, 0.25, DropoutOptions().seed(9));
  const auto x = ones(2, 6, 4);
  a.forward(x, Mask(), Mode::Train);
  auto b = a.clone();
  const Tensor3<float> ya = a.forward(x, Mask(), Mode::Train);
  const Tensor3<float>& yb = b->forward(x, Mask(), Mode::Train);
  for (Index i = 0; i < x.size(); ++i) EXPECT_EQ(ya.data()[i], yb.data()[i]);
}

TEST(Dropout, BackwardUsesTheMaskOfTheLastTrainForward) {
  const double rate = 0.4;
  Dropout<double> drop(6, rate, DropoutOptions().seed(5));
  const auto x = random_tensor(3, 4, 6, 7);
  const auto dy = random_tensor(3, 4, 6, 8);
  const Tensor3<double> y = drop.forward(x, Mask(), Mode::Train);
  const Tensor3<double>& m = drop.keep_mask();
  const Tensor3<double>& dx = drop.backward(x, Mask(), dy);
  Index dropped = 0;
  for (Index i = 0; i < x.size(); ++i) {
    ASSERT_TRUE(m.data()[i] == 0.0 || m.data()[i] == 1.0);
    dropped += m.data()[i] == 0.0;
    EXPECT_DOUBLE_EQ(y.data()[i], x.data()[i] * m.data()[i] / (1.0 - rate));
    EXPECT_DOUBLE_EQ(dx.data()[i], dy.data()[i] * m.data()[i] / (1.0 - rate));
  }
  EXPECT_GT(dropped, 0);
  EXPECT_LT(dropped, x.size());
}

TEST(Dropout, GradientCheckWithRateZeroInTrainAndAnyRateInInfer) {
  const auto x = random_tensor(3, 4, 5, 21);
  const Mask mask = Mask::from_lengths({4, 1, 0});
  Dropout<double> none(5, 0.0, DropoutOptions().seed(1));
  const auto train = check_layer_gradients(none, x, mask);
  EXPECT_TRUE(train.passed()) << train.report();

  Dropout<double> half(5, 0.5, DropoutOptions().seed(1));
  GradCheckOptions infer;
  infer.mode = Mode::Infer;
  const auto result = check_layer_gradients(half, x, mask, infer);
  EXPECT_TRUE(result.passed()) << result.report();
}

TEST(Dropout, GradientCheckWithAFixedMask) {
  // With the mask of one Train forward held fixed, y = x * m / (1 - rate) is a function of x alone;
  // its finite differences must match backward.
  const double rate = 0.5;
  Dropout<double> drop(5, rate, DropoutOptions().seed(17));
  auto x = random_tensor(2, 3, 5, 31);
  const auto R = random_tensor(2, 3, 5, 32);
  drop.forward(x, Mask(), Mode::Train);
  const Tensor3<double> m = drop.keep_mask();
  const Tensor3<double> dx = drop.backward(x, Mask(), R);
  auto loss = [&]() {
    double l = 0.0;
    for (Index i = 0; i < x.size(); ++i) l += x.data()[i] * m.data()[i] / (1.0 - rate) * R.data()[i];
    return l;
  };
  const auto result = check_gradients(loss, {{"x", x.data(), dx.data(), x.size()}});
  EXPECT_TRUE(result.passed()) << result.report();
}

TEST(Dropout, RejectsRateOutsideZeroToOne) {
  for (double rate : {-0.1, 1.0, 1.5, std::numeric_limits<double>::quiet_NaN()}) {
    try {
      Dropout<float> drop(4, rate);
      FAIL() << "expected ConfigError for rate " << rate;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("Dropout: rate must be in [0, 1) but got"), std::string::npos) << e.what();
    }
  }
  try {
    Dropout<float> drop(4, 1.0);
    FAIL() << "expected ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), "Dropout: rate must be in [0, 1) but got 1");
  }
}

TEST(Dropout, RejectsWrongFeatureSizeNamingTheLayer) {
  Dropout<float> drop(4, 0.5);
  Tensor3<float> x(2, 3, 3);
  x.setZero();
  try {
    drop.forward(x, Mask(), Mode::Train);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("Dropout(rate=0.5): input features expected 4 but got 3"), std::string::npos)
        << e.what();
  }
}
