// MaxPool1D, AvgPool1D: F.max_pool1d / F.avg_pool1d on each unpadded sequence (complete windows; partial
// windows = ceil_mode for size <= stride) in float and double, output lengths (out_mask), masked gradients for
// every configuration, partial windows with overlap, padding invariance, errors.
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "seqattn/layers/pooling.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/reference_data.hpp"
#include "support/seq_layer_padding_check.hpp"

using namespace seqattn;
using seqattn::testing::check_layer_gradients;
using seqattn::testing::random_tensor;

namespace {

const seqattn::testing::ReferenceData& ref() {
  static const seqattn::testing::ReferenceData data(seqattn::testing::data_path("sequence_layers.txt"));
  return data;
}

std::vector<Index> lengths_of(const std::string& name) {
  std::vector<Index> lengths;
  for (double v : ref().values(name)) lengths.push_back(static_cast<Index>(v));
  return lengths;
}

struct PoolCase {
  Index size, stride;
  bool partial;
  std::string suffix() const {
    return "_k" + std::to_string(size) + "_s" + std::to_string(stride) + (partial ? "_ceil" : "");
  }
};
const std::vector<PoolCase> kConfigs = {{2, 2, false}, {3, 1, false}, {3, 2, false}, {2, 2, true}, {2, 3, true}};

template <class S>
std::unique_ptr<Layer<S>> make(bool max, Index F, const PoolCase& c) {
  PoolOptions options = PoolOptions().partial_windows(c.partial);
  if (c.stride != c.size) options.stride(c.stride);
  if (max) return std::make_unique<MaxPool1D<S>>(F, c.size, options);
  return std::make_unique<AvgPool1D<S>>(F, c.size, options);
}

template <class S>
class PoolReference : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(PoolReference, Scalars);

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace

TYPED_TEST(PoolReference, MatchesTorchPool1dOnUnpaddedSequences) {
  using S = TypeParam;
  const double tol = std::is_same<S, float>::value ? 1e-6 : 1e-13;
  const Tensor3<S> x = ref().tensor<S>("pool_x");
  const Mask mask(lengths_of("pool_lengths"));
  for (const PoolCase& c : kConfigs)
    for (bool max : {true, false}) {
      const std::string name = std::string(max ? "pool_max" : "pool_avg") + c.suffix();
      auto layer = make<S>(max, 2, c);
      const Tensor3<S>& y = layer->forward(x, mask);
      const Tensor3<S> want = ref().tensor<S>(name);
      ASSERT_EQ(y.dimensions(), want.dimensions()) << name;
      for (Index i = 0; i < y.size(); ++i) EXPECT_NEAR(y.data()[i], want.data()[i], tol) << name << " at " << i;
      EXPECT_EQ(layer->out_mask(mask, 7).lengths(), lengths_of(name + "_lengths")) << name;
      EXPECT_EQ(layer->out_time(7), want.dimension(1)) << name;
      EXPECT_TRUE(layer->out_mask(Mask(), 7).empty()) << name;
    }
}

TEST(Pooling, GradientsMatchFiniteDifferencesForEveryConfiguration) {
  const std::vector<PoolCase> configs = {{2, 2, false}, {3, 1, false}, {3, 2, false}, {2, 2, true}, {3, 2, true}};
  for (const PoolCase& c : configs)
    for (bool max : {true, false}) {
      auto layer = make<double>(max, 3, c);
      const auto result = check_layer_gradients(*layer, random_tensor(4, 7, 3, 21), Mask::from_lengths({7, 0, 1, 4}));
      EXPECT_TRUE(result.passed()) << (max ? "max" : "avg") << c.suffix() << ": " << result.report();
    }
}

TEST(Pooling, OverlappingPartialWindowsAggregateOnlyValidSteps) {
  Tensor3<double> x(1, 6, 1);
  x.setValues({{{1.0}, {2.0}, {4.0}, {8.0}, {100.0}, {-100.0}}});
  const Mask mask = Mask::from_lengths({4});
  AvgPool1D<double> avg(1, 3, PoolOptions().stride(2).partial_windows(true));
  MaxPool1D<double> mx(1, 3, PoolOptions().stride(2).partial_windows(true));
  EXPECT_EQ(avg.out_time(6), 3);
  EXPECT_EQ(avg.out_mask(mask, 6).lengths(), std::vector<Index>{2});  // windows starting at 0 and 2
  const Tensor3<double> ya = avg.forward(x, mask);
  EXPECT_DOUBLE_EQ(ya(0, 0, 0), 7.0 / 3.0);
  EXPECT_DOUBLE_EQ(ya(0, 1, 0), 6.0);  // (4 + 8) / 2: step 4 is padding
  EXPECT_EQ(ya(0, 2, 0), 0.0);
  const Tensor3<double> ym = mx.forward(x, mask);
  EXPECT_EQ(ym(0, 1, 0), 8.0);
  // Complete windows only: one window [0, 3) fits in 4 valid steps.
  AvgPool1D<double> full(1, 3, PoolOptions().stride(2));
  EXPECT_EQ(full.out_mask(mask, 6).lengths(), std::vector<Index>{1});
  EXPECT_EQ(full.forward(x, mask)(0, 1, 0), 0.0);
}

TEST(Pooling, MaxGradientsOfOverlappingWindowsAdd) {
  Tensor3<double> x(1, 4, 1);
  x.setValues({{{0.0}, {5.0}, {1.0}, {2.0}}});
  MaxPool1D<double> pool(1, 2, PoolOptions().stride(1));
  pool.forward(x);
  Tensor3<double> dy(1, 3, 1);
  dy.setConstant(1.0);
  const Tensor3<double>& dx = pool.backward(x, Mask(), dy);
  EXPECT_EQ(dx(0, 1, 0), 2.0);  // maximum of windows 0 and 1
  EXPECT_EQ(dx(0, 3, 0), 1.0);
  EXPECT_EQ(dx(0, 0, 0) + dx(0, 2, 0), 0.0);
}

TEST(Pooling, PaddingInvariance) {
  for (const PoolCase& c : kConfigs)
    for (bool max : {true, false})
      for (Index extra : {0, 3}) {
        SCOPED_TRACE((max ? "max" : "avg") + c.suffix() + " extra " + std::to_string(extra));
        seqattn::testing::expect_padding_invariant(*make<double>(max, 3, c), 4, 7, {7, 0, 1, 4}, extra);
      }
}

TEST(Pooling, ErrorsNameTheLayer) {
  EXPECT_EQ(error_of([] { MaxPool1D<float>(2, 0); }), "MaxPool1D(size=0, stride=0): size must be positive but got 0");
  EXPECT_EQ(error_of([] { AvgPool1D<float>(2, 2, PoolOptions().stride(-1)); }),
            "AvgPool1D(size=2, stride=-1): stride must be positive (or 0 for size) but got -1");
  MaxPool1D<float> pool(2, 3);
  Tensor3<float> x(1, 2, 2);
  x.setZero();
  try {
    pool.forward(x);
    FAIL() << "expected ShapeError";
  } catch (const ShapeError& e) {
    EXPECT_EQ(std::string(e.what()), "MaxPool1D(size=3, stride=3): input of 2 steps gives no output step");
  }
  EXPECT_EQ(pool.out_time(-1), -1);
  EXPECT_EQ(AvgPool1D<float>(2, 3, PoolOptions().partial_windows(true)).describe(),
            "AvgPool1D(size=3, stride=3, partial_windows=true)");
  EXPECT_EQ(MaxPool1D<float>(2, 3).name(), "max_pool1d");
}
