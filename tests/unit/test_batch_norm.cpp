// BatchNorm: torch.nn.BatchNorm1d reference on the valid steps (Train output, running statistics after one
// step, Infer output) with PyTorch's and Keras' momentum/eps in float and double; masked gradients in Train and
// Infer for every scale/center combination; statistics over valid steps only; padding invariance; errors.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "seqattn/layers/batch_norm.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/reference_data.hpp"
#include "support/seq_layer_padding_check.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::GradCheckOptions;
using seqattn::testing::random_tensor;

namespace {

const seqattn::testing::ReferenceData& ref() {
  static const seqattn::testing::ReferenceData data(seqattn::testing::data_path("sequence_layers.txt"));
  return data;
}

Mask reference_mask() {
  std::vector<Index> lengths;
  for (double v : ref().values("bn_lengths")) lengths.push_back(static_cast<Index>(v));
  return Mask(lengths);
}

template <class S>
void expect_near(const S* got, const S* want, Index n, double tolerance, const std::string& what) {
  for (Index i = 0; i < n; ++i)
    EXPECT_NEAR(got[i], want[i], tolerance * (1.0 + std::abs(double(want[i])))) << what << " at " << i;
}

template <class S>
class BatchNormReference : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(BatchNormReference, Scalars);

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TYPED_TEST(BatchNormReference, MatchesTorchBatchNorm1dWithTorchAndKerasConventions) {
  using S = TypeParam;
  const double tol = std::is_same<S, float>::value ? 2e-5 : 1e-12;
  const Tensor3<S> x = ref().tensor<S>("bn_x");
  const Mask mask = reference_mask();
  for (const std::string tag : {"torch", "keras"}) {
    BatchNormOptions options;
    if (tag == "keras") options.momentum(0.01).eps(1e-3);  // Keras' momentum 0.99, eps 1e-3
    BatchNorm<S> bn(3, options);
    bn.gamma() = ref().matrix<S>("bn_gamma");
    bn.beta() = ref().matrix<S>("bn_beta");
    bn.running_mean() = ref().matrix<S>("bn_rm0");
    bn.running_var() = ref().matrix<S>("bn_rv0");
    const Tensor3<S> y_train = bn.forward(x, mask, Mode::Train);
    EXPECT_EQ(bn.valid_steps(), 10);
    const Tensor3<S> want_train = ref().tensor<S>("bn_" + tag + "_train_y");
    expect_near(y_train.data(), want_train.data(), x.size(), tol, tag + " train y");
    const Matrix<S> rm = ref().matrix<S>("bn_" + tag + "_running_mean");
    const Matrix<S> rv = ref().matrix<S>("bn_" + tag + "_running_var");
    expect_near(bn.running_mean().data(), rm.data(), 3, tol, tag + " running_mean");
    expect_near(bn.running_var().data(), rv.data(), 3, tol, tag + " running_var");
    const Vector<S> rm_after_train = bn.running_mean();
    const Tensor3<S> y_infer = bn.forward(x, mask, Mode::Infer);
    const Tensor3<S> want_infer = ref().tensor<S>("bn_" + tag + "_infer_y");
    expect_near(y_infer.data(), want_infer.data(), x.size(), tol, tag + " infer y");
    EXPECT_EQ(bn.running_mean(), rm_after_train) << "Infer must not change running_mean";
  }
}

class BatchNormGradient : public ::testing::TestWithParam<std::tuple<Mode, bool, bool>> {};

TEST_P(BatchNormGradient, MatchesFiniteDifferencesWithMask) {
  const auto [mode, scale, center] = GetParam();
  BatchNorm<double> bn(4, BatchNormOptions().scale(scale).center(center));
  bn.gamma().setRandom();
  bn.beta().setRandom();
  bn.running_mean().setRandom();
  bn.running_var() = Vector<double>::Random(4).cwiseAbs() + Vector<double>::Constant(4, 0.5);
  GradCheckOptions options;
  options.mode = mode;
  const auto result = check_layer_gradients(bn, random_tensor(4, 5, 4, 11), Mask::from_lengths({5, 0, 1, 3}), options);
  EXPECT_TRUE(result.passed()) << result.report();
  EXPECT_EQ(bn.params().size(), size_t(scale) + size_t(center));
}

INSTANTIATE_TEST_SUITE_P(ModesScaleCenter, BatchNormGradient,
                         ::testing::Combine(::testing::Values(Mode::Train, Mode::Infer), ::testing::Bool(),
                                            ::testing::Bool()));

TEST(BatchNorm, StatisticsUseValidStepsOnlyAndPaddedStepsOutputZero) {
  Tensor3<double> x(2, 3, 1);
  x.setValues({{{1.0}, {3.0}, {100.0}}, {{5.0}, {-7.0}, {-7.0}}});
  const Mask mask = Mask::from_lengths({2, 1});
  BatchNorm<double> bn(1, BatchNormOptions().momentum(0.5));
  const Tensor3<double> y = bn.forward(x, mask, Mode::Train);
  EXPECT_DOUBLE_EQ(bn.mean()(0), 3.0);               // (1 + 3 + 5) / 3
  EXPECT_DOUBLE_EQ(bn.var()(0), 8.0 / 3.0);          // biased: (4 + 0 + 4) / 3
  EXPECT_DOUBLE_EQ(bn.running_mean()(0), 1.5);       // 0.5 * 0 + 0.5 * 3
  EXPECT_DOUBLE_EQ(bn.running_var()(0), 0.5 + 2.0);  // 0.5 * 1 + 0.5 * (8 / 2) (unbiased)
  EXPECT_NEAR(y(0, 0, 0), -2.0 / std::sqrt(8.0 / 3.0 + 1e-5), 1e-12);
  EXPECT_EQ(y(0, 2, 0), 0.0);
  EXPECT_EQ(y(1, 1, 0), 0.0);
  EXPECT_EQ(y(1, 2, 0), 0.0);
  ParamList<double> buffers = bn.buffers();
  ASSERT_EQ(buffers.size(), 2u);
  EXPECT_EQ(buffers[0].name, "running_mean");
  EXPECT_EQ(buffers[1].name, "running_var");
  EXPECT_EQ(buffers[0].grad, nullptr);
  EXPECT_EQ(buffers[1].values()(0), 2.5);
}

TEST(BatchNorm, PaddingInvarianceOfOutputsGradientsAndRunningStatistics) {
  for (Mode mode : {Mode::Train, Mode::Infer})
    for (Index extra : {0, 3}) {
      BatchNorm<double> bn(3);
      bn.gamma().setRandom();
      bn.beta().setRandom();
      bn.running_mean().setRandom();
      seqattn::testing::expect_padding_invariant(bn, 4, 5, {5, 0, 1, 3}, extra, mode);
    }
}

TEST(BatchNorm, InferWithNoValidStepOutputsZeros) {
  BatchNorm<double> bn(2);
  const auto x = random_tensor(2, 3, 2, 1);
  const Mask mask = Mask::from_lengths({0, 0});
  const Tensor3<double>& y = bn.forward(x, mask, Mode::Infer);
  for (Index i = 0; i < y.size(); ++i) EXPECT_EQ(y.data()[i], 0.0);
  Tensor3<double> dy(2, 3, 2);
  dy.setConstant(1.0);
  const Tensor3<double>& dx = bn.backward(x, mask, dy);
  for (Index i = 0; i < dx.size(); ++i) EXPECT_EQ(dx.data()[i], 0.0);
}

TEST(BatchNorm, TrainForwardWithoutTwoValidStepsThrows) {
  BatchNorm<float> bn(2);
  Tensor3<float> x(2, 3, 2);
  x.setRandom();
  EXPECT_EQ(error_of([&] {
              bn.forward(x, Mask::from_lengths({0, 0}), Mode::Train);
            }),
            "BatchNorm(momentum=0.1, eps=1e-05): a Train forward needs at least 2 valid steps to compute batch "
            "statistics but got 0 (input (2, 3, 2))");
  EXPECT_NE(error_of([&] {
              bn.forward(x, Mask::from_lengths({0, 1}), Mode::Train);
            }).find("but got 1"),
            std::string::npos);
  EXPECT_THROW(bn.forward(x, Mask::from_lengths({1, 0}), Mode::Train), ShapeError);
  EXPECT_EQ(bn.running_mean(), Vector<float>::Zero(2));  // untouched by the failed forwards
  EXPECT_NO_THROW(bn.forward(x, Mask::from_lengths({1, 1}), Mode::Train));
}

TEST(BatchNorm, RejectsBadOptionsNamingTheLayer) {
  EXPECT_EQ(error_of([] { BatchNorm<float>(3, BatchNormOptions().momentum(1.5)); }),
            "BatchNorm(momentum=1.5, eps=1e-05): momentum must be in [0, 1] but got 1.5");
  EXPECT_EQ(error_of([] { BatchNorm<float>(3, BatchNormOptions().eps(0.0)); }),
            "BatchNorm(momentum=0.1, eps=0): eps must be positive and finite but got 0");
  EXPECT_THROW(BatchNorm<float>(3, BatchNormOptions().momentum(-0.1)), ConfigError);
}
