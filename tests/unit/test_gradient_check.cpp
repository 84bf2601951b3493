// Self-test of the gradient checker: it must FAIL on wrong gradients, report all-zero gradients and catch
// backward-contract violations. A correct test-local layer passes, so each failure below is caused by the
// one defect that layer has.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "seqattn/testing/gradient_check.hpp"

using namespace seqattn;
using seqattn::testing::check_gradients;
using seqattn::testing::check_inputs_gradients;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_tensor;

namespace {

enum class Defect {
  None,
  ScaledInputGrad,     // dx off by a factor 1.01
  ScaledParamGrad,     // dw off by a factor 1.01
  UnusedParam,         // a parameter that does not change the output (gradient legitimately 0)
  AccumulatesDx,       // adds into dx instead of overwriting it
  OverwritesParamGrad  // overwrites the parameter gradient instead of adding into it
};

// y = w * x * x, elementwise with one weight per feature: dx = 2 w x dy, dw = sum over (b, t) of x^2 dy.
class TestLayer final : public Layer<double> {
 public:
  TestLayer(Index features, Defect defect) : Layer<double>(features), defect_(defect) {
    w_ = Vector<double>::LinSpaced(features, 0.5, 1.5);
    dw_ = Vector<double>::Zero(features);
    u_ = Vector<double>::Constant(features, 0.3);
    du_ = Vector<double>::Zero(features);
  }
  Index out_features() const override { return in_features(); }
  std::string name() const override { return "test_layer"; }
  std::string describe() const override { return "TestLayer"; }
  std::unique_ptr<Layer<double>> clone() const override { return std::make_unique<TestLayer>(*this); }

 protected:
  void do_forward(const Tensor3<double>& x, const Mask&, Mode, Tensor3<double>& y) override {
    auto Y = as_matrix(y);
    auto X = as_matrix(x);
    Y.array() = X.array().square().rowwise() * w_.transpose().array();
  }
  void do_backward(const Tensor3<double>& x, const Mask&, const Tensor3<double>& dy, Tensor3<double>& dx) override {
    auto X = as_matrix(x);
    auto DY = as_matrix(dy);
    auto DX = as_matrix(dx);
    const double dx_factor = defect_ == Defect::ScaledInputGrad ? 1.01 : 1.0;
    const double dw_factor = defect_ == Defect::ScaledParamGrad ? 1.01 : 1.0;
    if (defect_ == Defect::AccumulatesDx) {
      // The bug: a private accumulator, zeroed once when sized, that every backward adds into.
      if (acc_.rows() != X.rows() || acc_.cols() != X.cols()) acc_ = Matrix<double>::Zero(X.rows(), X.cols());
      acc_.array() += 2.0 * X.array() * (DY.array().rowwise() * w_.transpose().array());
      DX = acc_;
    } else {
      DX.array() = dx_factor * 2.0 * X.array() * (DY.array().rowwise() * w_.transpose().array());
    }
    const Vector<double> g = dw_factor * (X.array().square() * DY.array()).colwise().sum().transpose().matrix();
    if (defect_ == Defect::OverwritesParamGrad)
      dw_ = g;
    else
      dw_ += g;
  }
  void collect_params(ParamList<double>& list) override {
    list.push_back(vector_param<double>("w", w_, &dw_));
    if (defect_ == Defect::UnusedParam) list.push_back(vector_param<double>("u", u_, &du_));
  }

 private:
  Defect defect_;
  Vector<double> w_, dw_, u_, du_;
  Matrix<double> acc_;
};

// Two inputs (check_inputs_gradients): y = w * a * b, elementwise with one weight per feature: da = w b dy,
// db = w a dy, dw = sum over (b, t) of a b dy. The defects act on the second input's gradient (ScaledInputGrad,
// AccumulatesDx) and on dw (ScaledParamGrad, OverwritesParamGrad).
class TestPairLayer final : public Layer<double> {
 public:
  TestPairLayer(Index features, Defect defect) : Layer<double>(features), defect_(defect) {
    w_ = Vector<double>::LinSpaced(features, 0.5, 1.5);
    dw_ = Vector<double>::Zero(features);
  }
  Index min_inputs() const override { return 2; }
  Index max_inputs() const override { return 2; }
  Index input_features(Index, Index) const override { return in_features(); }
  Index out_features() const override { return in_features(); }
  std::string name() const override { return "test_pair_layer"; }
  std::string describe() const override { return "TestPairLayer"; }
  std::unique_ptr<Layer<double>> clone() const override { return std::make_unique<TestPairLayer>(*this); }

 protected:
  void do_forward(const Tensor3<double>&, const Mask&, Mode, Tensor3<double>&) override {
    detail::throw_usage(describe(), ": takes two inputs");
  }
  void do_backward(const Tensor3<double>&, const Mask&, const Tensor3<double>&, Tensor3<double>&) override {
    detail::throw_usage(describe(), ": takes two inputs");
  }
  void do_forward_inputs(const LayerInputs<double>& in, Mode, Tensor3<double>& y) override {
    auto Y = as_matrix(y);
    Y.array() = (as_matrix(*in[0].x).array() * as_matrix(*in[1].x).array()).rowwise() * w_.transpose().array();
  }
  void do_backward_inputs(const LayerInputs<double>& in, const Tensor3<double>& dy) override {
    auto A = as_matrix(*in[0].x);
    auto B = as_matrix(*in[1].x);
    auto DY = as_matrix(dy);
    auto DA = as_matrix(input_grad_buffer(0));
    auto DB = as_matrix(input_grad_buffer(1));
    const Matrix<double> wdy = DY.array().rowwise() * w_.transpose().array();
    DA.array() = B.array() * wdy.array();
    const double db_factor = defect_ == Defect::ScaledInputGrad ? 1.01 : 1.0;
    if (defect_ == Defect::AccumulatesDx) {
      if (acc_.rows() != A.rows() || acc_.cols() != A.cols()) acc_ = Matrix<double>::Zero(A.rows(), A.cols());
      acc_.array() += A.array() * wdy.array();
      DB = acc_;
    } else {
      DB.array() = db_factor * A.array() * wdy.array();
    }
    const double dw_factor = defect_ == Defect::ScaledParamGrad ? 1.01 : 1.0;
    const Vector<double> g = dw_factor * (A.array() * B.array() * DY.array()).colwise().sum().transpose().matrix();
    if (defect_ == Defect::OverwritesParamGrad)
      dw_ = g;
    else
      dw_ += g;
  }
  void collect_params(ParamList<double>& list) override { list.push_back(vector_param<double>("w", w_, &dw_)); }

 private:
  Defect defect_;
  Vector<double> w_, dw_;
  Matrix<double> acc_;
};

const Mask kMask = Mask::from_lengths({3, 1, 0});

}  // namespace

TEST(GradientCheck, CorrectLayerPasses) {
  TestLayer layer(4, Defect::None);
  const auto result = check_layer_gradients(layer, random_tensor(3, 3, 4, 1), kMask);
  EXPECT_TRUE(result.passed()) << result.report();
  EXPECT_TRUE(result.ok);
  EXPECT_TRUE(result.zero_gradients.empty());
  EXPECT_TRUE(result.contract_failures.empty());
  EXPECT_LE(result.worst_ratio, 1.0);
}

TEST(GradientCheck, InputGradientOffByOnePercentFails) {
  TestLayer layer(4, Defect::ScaledInputGrad);
  const auto result = check_layer_gradients(layer, random_tensor(3, 3, 4, 1), kMask);
  EXPECT_FALSE(result.ok) << result.report();
  EXPECT_FALSE(result.passed());
  EXPECT_GT(result.worst_ratio, 1.0);
  EXPECT_EQ(result.worst.rfind("x[", 0), 0u) << result.worst;
  EXPECT_NE(result.report().find("GRADIENT MISMATCH"), std::string::npos) << result.report();
}

TEST(GradientCheck, ParameterGradientOffByOnePercentFails) {
  TestLayer layer(4, Defect::ScaledParamGrad);
  const auto result = check_layer_gradients(layer, random_tensor(3, 3, 4, 1), kMask);
  EXPECT_FALSE(result.passed()) << result.report();
  EXPECT_EQ(result.worst.rfind("w[", 0), 0u) << result.worst;
}

TEST(GradientCheck, AllZeroGradientIsReportedAndOnlyPassesWhenAllowed) {
  TestLayer layer(4, Defect::UnusedParam);
  const auto result = check_layer_gradients(layer, random_tensor(3, 3, 4, 1), kMask);
  EXPECT_TRUE(result.ok) << result.report();    // zeros compared with zeros match...
  ASSERT_EQ(result.zero_gradients.size(), 1u);  // ...but are reported
  EXPECT_EQ(result.zero_gradients[0], "u");
  EXPECT_TRUE(result.zero("u"));
  EXPECT_FALSE(result.passed());
  EXPECT_TRUE(result.passed({"u"}));
  EXPECT_NE(result.report().find("all-zero gradient: u"), std::string::npos) << result.report();
}

TEST(GradientCheck, AddingIntoDxIsAContractFailure) {
  TestLayer layer(4, Defect::AccumulatesDx);
  const auto result = check_layer_gradients(layer, random_tensor(3, 3, 4, 1), kMask);
  EXPECT_TRUE(result.ok) << result.report();  // the first backward is right; only the contract check sees it
  ASSERT_FALSE(result.contract_failures.empty());
  EXPECT_NE(result.contract_failures[0].find("dx changed on a second backward"), std::string::npos) << result.report();
  EXPECT_FALSE(result.passed());
}

TEST(GradientCheck, OverwritingParameterGradientsIsAContractFailure) {
  TestLayer layer(4, Defect::OverwritesParamGrad);
  const auto result = check_layer_gradients(layer, random_tensor(3, 3, 4, 1), kMask);
  EXPECT_TRUE(result.ok) << result.report();
  ASSERT_EQ(result.contract_failures.size(), 1u) << result.report();
  EXPECT_NE(result.contract_failures[0].find("w gradient not accumulated"), std::string::npos) << result.report();
  EXPECT_FALSE(result.passed());
}

TEST(GradientCheck, FunctionCheckFailsOnAWrongGradientAndOnNaN) {
  // f(a) = sum a_i^3, gradient 3 a_i^2.
  std::vector<double> a = {0.5, -1.0, 2.0};
  auto f = [&]() { return a[0] * a[0] * a[0] + a[1] * a[1] * a[1] + a[2] * a[2] * a[2]; };
  std::vector<double> right = {0.75, 3.0, 12.0};
  std::vector<double> wrong = {0.75, 3.0, 12.1};
  std::vector<double> nan = {0.75, std::numeric_limits<double>::quiet_NaN(), 12.0};
  EXPECT_TRUE(check_gradients(f, {{"a", a.data(), right.data(), 3}}).passed());
  const auto bad = check_gradients(f, {{"a", a.data(), wrong.data(), 3}});
  EXPECT_FALSE(bad.passed());
  EXPECT_EQ(bad.worst.rfind("a[2]", 0), 0u) << bad.worst;
  const auto with_nan = check_gradients(f, {{"a", a.data(), nan.data(), 3}});
  EXPECT_FALSE(with_nan.passed());
  EXPECT_EQ(with_nan.worst.rfind("a[1]", 0), 0u) << with_nan.worst;
  EXPECT_EQ(a, (std::vector<double>{0.5, -1.0, 2.0}));  // values restored after perturbation
}

// check_inputs_gradients (several inputs: graphs, merges, the decoder block) fails as check_layer_gradients does.
TEST(GradientCheck, InputsCheckPassesACorrectLayerAndFailsEachDefect) {
  const std::vector<Tensor3<double>> xs = {random_tensor(3, 3, 4, 1), random_tensor(3, 3, 4, 2)};
  const std::vector<Mask> masks = {kMask, Mask::from_lengths({2, 3, 1})};
  {
    TestPairLayer layer(4, Defect::None);
    const auto result = check_inputs_gradients(layer, xs, masks);
    EXPECT_TRUE(result.passed()) << result.report();
    EXPECT_EQ(result.checked, 3 * 3 * 4 * 2 + 4);  // x0, x1 and w, every coordinate
  }
  {
    TestPairLayer layer(4, Defect::ScaledInputGrad);
    const auto result = check_inputs_gradients(layer, xs, masks);
    EXPECT_FALSE(result.ok) << result.report();
    EXPECT_EQ(result.worst.rfind("x1[", 0), 0u) << result.worst;
  }
  {
    TestPairLayer layer(4, Defect::ScaledParamGrad);
    const auto result = check_inputs_gradients(layer, xs, masks);
    EXPECT_FALSE(result.passed()) << result.report();
    EXPECT_EQ(result.worst.rfind("w[", 0), 0u) << result.worst;
  }
  {
    TestPairLayer layer(4, Defect::AccumulatesDx);
    const auto result = check_inputs_gradients(layer, xs, masks);
    EXPECT_TRUE(result.ok) << result.report();
    ASSERT_EQ(result.contract_failures.size(), 1u) << result.report();
    EXPECT_NE(result.contract_failures[0].find("input 1 gradient changed on a second backward"), std::string::npos)
        << result.report();
    EXPECT_FALSE(result.passed());
  }
  {
    TestPairLayer layer(4, Defect::OverwritesParamGrad);
    const auto result = check_inputs_gradients(layer, xs, masks);
    EXPECT_TRUE(result.ok) << result.report();
    ASSERT_EQ(result.contract_failures.size(), 1u) << result.report();
    EXPECT_NE(result.contract_failures[0].find("w gradient not accumulated"), std::string::npos) << result.report();
  }
}
