// SeqWeightedAttention: finite-difference gradients with masks (lengths 0 and 1), an autograd reference
// (tests/reference/gen_multi_head_attention.py) in float and double, shapes and out_mask, length-0
// sequences, bitwise padding invariance, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "seqattn/layers/seq_weighted_attention.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/reference_data.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_tensor;

namespace {

TEST(SeqWeightedAttention, GradientsMatchFiniteDifferences) {
  for (bool bias : {true, false}) {
    SeqWeightedAttention<double> swa(4, SeqWeightedAttentionOptions().use_bias(bias).seed(3));
    const auto result = check_layer_gradients(swa, random_tensor(4, 5, 4, 1), Mask::from_lengths({5, 2, 0, 1}));
    EXPECT_TRUE(result.passed({"b"})) << result.report();  // b never changes the output (shift invariance)
    const auto unmasked = check_layer_gradients(swa, random_tensor(2, 3, 4, 2));
    EXPECT_TRUE(unmasked.passed({"b"})) << unmasked.report();
  }
}

template <class S>
void compare_with_autograd(const std::string& prefix, bool bias) {
  SCOPED_TRACE(prefix);
  const seqattn::testing::ReferenceData d(seqattn::testing::data_path("seq_weighted_attention.txt"));
  const std::string p = prefix + ".";
  const Tensor3<S> x = d.tensor<S>(p + "x");
  std::vector<Index> lengths;
  for (double v : d.values(p + "lengths")) lengths.push_back(static_cast<Index>(v));
  const Mask mask = Mask::from_lengths(lengths);
  SeqWeightedAttention<S> swa(x.dimension(2), SeqWeightedAttentionOptions().use_bias(bias));
  swa.kernel() = d.matrix<S>(p + "W");
  if (bias) swa.bias()(0) = S(d.values(p + "b")[0]);
  const double tol = sizeof(S) == sizeof(double) ? 1e-12 : 2e-6;
  auto expect_close = [&](const S* a, const std::string& name) {
    const auto& e = d.values(p + name);
    for (size_t i = 0; i < e.size(); ++i) EXPECT_NEAR(double(a[i]), e[i], tol * (1 + std::abs(e[i]))) << name << i;
  };
  const Tensor3<S>& y = swa.forward(x, mask);
  EXPECT_EQ(y.dimensions(), (Eigen::DSizes<Index, 3>(x.dimension(0), 1, x.dimension(2))));
  expect_close(y.data(), "y");
  expect_close(swa.attention().data(), "attention");
  swa.zero_grad();
  expect_close(swa.backward(x, mask, d.tensor<S>(p + "R")).data(), "dx");
  expect_close(swa.params()[0].grad, "dW");
  if (bias) expect_close(swa.params()[1].grad, "db");
}

TEST(SeqWeightedAttention, MatchesAutogradReference) {
  compare_with_autograd<double>("masked", true);
  compare_with_autograd<double>("nobias", false);
  compare_with_autograd<float>("masked", true);
  compare_with_autograd<float>("nobias", false);
}

TEST(SeqWeightedAttention, EmptySequenceGivesZerosAndAllValidOutputMask) {
  SeqWeightedAttention<float> swa(3, SeqWeightedAttentionOptions().bias_init(Init::constant(2.0)));
  const Tensor3<float> x = random_tensor(2, 4, 3, 5).cast<float>();
  const Mask mask = Mask::from_lengths({0, 1});
  const Tensor3<float>& y = swa.forward(x, mask);
  for (Index f = 0; f < 3; ++f) {
    EXPECT_EQ(y(0, 0, f), 0.0f);
    EXPECT_EQ(y(1, 0, f), x(1, 0, f));  // one valid step: weight 1
  }
  EXPECT_EQ(swa.attention().row(0).cwiseAbs().sum(), 0.0f);
  EXPECT_EQ(swa.attention()(1, 0), 1.0f);
  EXPECT_TRUE(swa.out_mask(mask, 4).empty());
  EXPECT_EQ(swa.out_time(4), 1);
  const Tensor3<float>& dx = swa.backward(x, mask, random_tensor(2, 1, 3, 6).cast<float>());
  for (Index t = 0; t < 4; ++t)
    for (Index f = 0; f < 3; ++f) {
      EXPECT_EQ(dx(0, t, f), 0.0f);
      EXPECT_TRUE(std::isfinite(dx(1, t, f)));
    }
}

TEST(SeqWeightedAttention, PaddingNeverChangesValidOutputsBitwise) {
  SeqWeightedAttention<float> swa(5, SeqWeightedAttentionOptions().seed(9));
  const std::vector<Index> lengths{19, 3, 1};
  const Tensor3<float> x = random_tensor(3, 19, 5, 10).cast<float>();
  const Tensor3<float> y0 = swa.forward(x, Mask::from_lengths(lengths));
  for (Index T : {20, 23, 35}) {
    Tensor3<float> xp = random_tensor(3, T, 5, 100 + static_cast<std::uint64_t>(T)).cast<float>();
    for (Index b = 0; b < 3; ++b)
      for (Index t = 0; t < lengths[static_cast<size_t>(b)]; ++t)
        for (Index f = 0; f < 5; ++f) xp(b, t, f) = x(b, t, f);
    const Tensor3<float>& y = swa.forward(xp, Mask::from_lengths(lengths));
    EXPECT_EQ(std::memcmp(y.data(), y0.data(), sizeof(float) * size_t(y0.size())), 0) << "padded to " << T;
  }
}

TEST(SeqWeightedAttention, NamesAndErrors) {
  SeqWeightedAttention<float> swa(4);
  const auto params = swa.params();
  ASSERT_EQ(params.size(), 2u);
  EXPECT_EQ(params[0].name, "W");
  EXPECT_EQ(params[0].shape, (std::vector<Index>{4, 1}));
  EXPECT_EQ(params[1].name, "b");
  EXPECT_EQ(params[1].shape, (std::vector<Index>{1}));
  EXPECT_EQ(swa.name(), "seq_weighted_attention");
  try {
    swa.forward(Tensor3<float>(2, 3, 3).setZero());
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_NE(std::string(e.what()).find("SeqWeightedAttention(): input features expected 4 but got 3"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
