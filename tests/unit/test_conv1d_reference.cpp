// Conv1D against PyTorch (tests/reference/gen_conv_embedding.py: F.conv1d on each sample with explicit
// valid / same (TensorFlow split) / causal padding) in float and double, and the im2col fast path against
// the naive loops of detail/conv1d_reference.hpp.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "seqattn/detail/conv1d_reference.hpp"
#include "seqattn/layers/conv1d.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/reference_data.hpp"

using namespace seqattn;
using seqattn::testing::data_path;
using seqattn::testing::random_tensor;
using seqattn::testing::ReferenceData;

namespace {

const std::vector<std::string> kCases = {"same_k3",      "same_k3_s2",   "same_k4_s3", "same_k2_d3",
                                         "causal_k2_d2", "causal_k3_s2", "valid_k3",   "valid_k3_s2_d2"};

template <class S, class A, class B>
void expect_close(const A& actual, const B& expected, Index n, double tol, const std::string& what) {
  for (Index i = 0; i < n; ++i)
    ASSERT_NEAR(static_cast<double>(actual[i]), static_cast<double>(expected[i]), tol) << what << " at " << i;
}

template <class S>
void check_against_pytorch(double tol) {
  const ReferenceData ref(data_path("conv_embedding.txt"));
  const Tensor3<S> x = ref.tensor<S>("conv_x");
  std::vector<Index> lengths;
  for (double v : ref.values("conv_lengths")) lengths.push_back(static_cast<Index>(v));
  const Mask mask(lengths);
  for (const auto& name : kCases) {
    const std::string p = "conv_" + name + "_";
    const auto& cfg = ref.values(p + "cfg");
    const Padding padding[] = {Padding::Valid, Padding::Same, Padding::Causal};
    const Activation act[] = {Activation::Linear, Activation::ReLU, Activation::Tanh};
    const bool use_bias = cfg[5] != 0.0;
    Conv1D<S> conv(x.dimension(2), 5, static_cast<Index>(cfg[0]),
                   Conv1DOptions()
                       .stride(static_cast<Index>(cfg[1]))
                       .dilation(static_cast<Index>(cfg[2]))
                       .padding(padding[static_cast<int>(cfg[3])])
                       .activation(act[static_cast<int>(cfg[4])])
                       .use_bias(use_bias));
    conv.kernel() = ref.matrix<S>(p + "W");
    if (use_bias) conv.bias() = ref.matrix<S>(p + "b");
    const Tensor3<S>& y = conv.forward(x, mask);
    const Tensor3<S> y_ref = ref.tensor<S>(p + "y");
    ASSERT_EQ(y.dimensions(), y_ref.dimensions()) << name;
    expect_close<S>(y.data(), y_ref.data(), y.size(), tol, name + " y");
    conv.zero_grad();
    const Tensor3<S>& dx = conv.backward(x, mask, ref.tensor<S>(p + "dy"));
    expect_close<S>(dx.data(), ref.values(p + "dx").data(), dx.size(), tol, name + " dx");
    const auto params = conv.params();
    expect_close<S>(params[0].grad, ref.values(p + "dW").data(), params[0].size(), tol, name + " dW");
    if (use_bias) expect_close<S>(params[1].grad, ref.values(p + "db").data(), params[1].size(), tol, name + " db");
  }
}

}  // namespace

TEST(Conv1DReference, MatchesPyTorchInDouble) { check_against_pytorch<double>(1e-12); }
TEST(Conv1DReference, MatchesPyTorchInFloat) { check_against_pytorch<float>(2e-5); }

// The fast path equals the naive loops (forward with every activation, backward of the linear map) for many
// geometries and masked batches.
TEST(Conv1DReference, FastPathEqualsNaiveLoops) {
  const std::vector<Index> lengths = {11, 7, 3, 1, 0};
  int configs = 0;
  for (Padding padding : {Padding::Valid, Padding::Same, Padding::Causal})
    for (Index k : {1, 2, 3, 5})
      for (Index stride : {1, 2, 3})
        for (Index dilation : {1, 2, 3}) {
          const Activation act = configs % 3 == 0 ? Activation::Tanh : Activation::Linear;
          Conv1D<double> conv(3, 4, k,
                              Conv1DOptions().padding(padding).stride(stride).dilation(dilation).activation(act).seed(
                                  static_cast<std::uint64_t>(configs)));
          conv.bias().setRandom();
          const auto x = random_tensor(5, 11, 3, 100 + static_cast<std::uint64_t>(configs));
          ++configs;
          if (padding == Padding::Valid && conv.geometry().receptive_field() > 11) continue;
          const Tensor3<double> y = conv.forward(x, Mask(lengths));
          const Tensor3<double> y_ref =
              detail::conv1d_forward_reference(x, lengths, conv.kernel(), conv.bias(), conv.geometry(), act);
          ASSERT_EQ(y.dimensions(), y_ref.dimensions()) << conv.describe();
          for (Index i = 0; i < y.size(); ++i) ASSERT_NEAR(y.data()[i], y_ref.data()[i], 1e-13) << conv.describe();
          if (act != Activation::Linear) continue;
          const auto dy = random_tensor(y.dimension(0), y.dimension(1), y.dimension(2), 7);
          conv.zero_grad();
          const Tensor3<double> dx = conv.backward(x, Mask(lengths), dy);
          Matrix<double> dW = Matrix<double>::Zero(conv.kernel().rows(), conv.kernel().cols());
          Vector<double> db = Vector<double>::Zero(conv.bias().size());
          const Tensor3<double> dx_ref =
              detail::conv1d_backward_reference(x, lengths, conv.kernel(), dy, conv.geometry(), dW, db);
          const auto params = conv.params();
          for (Index i = 0; i < dx.size(); ++i) ASSERT_NEAR(dx.data()[i], dx_ref.data()[i], 1e-13) << conv.describe();
          for (Index i = 0; i < dW.size(); ++i) ASSERT_NEAR(params[0].grad[i], dW.data()[i], 1e-13) << conv.describe();
          for (Index i = 0; i < db.size(); ++i) ASSERT_NEAR(params[1].grad[i], db.data()[i], 1e-13) << conv.describe();
        }
  EXPECT_EQ(configs, 108);
}
