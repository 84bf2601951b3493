// Embedding: finite-difference gradient of the table (repeated ids scatter-add), no gradient to ids, PyTorch
// references in float and double (plain and mask_zero), mask_zero lengths, padding invariance,
// forward_ids, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "seqattn/layers/embedding.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/reference_data.hpp"

using namespace seqattn;
using seqattn::testing::check_gradients;
using seqattn::testing::data_path;
using seqattn::testing::GradTarget;
using seqattn::testing::random_tensor;
using seqattn::testing::ReferenceData;

namespace {

Tensor3<double> ids_tensor(const std::vector<std::vector<double>>& rows) {
  Tensor3<double> x(static_cast<Index>(rows.size()), static_cast<Index>(rows[0].size()), 1);
  for (size_t b = 0; b < rows.size(); ++b)
    for (size_t t = 0; t < rows[b].size(); ++t) x(static_cast<Index>(b), static_cast<Index>(t), 0) = rows[b][t];
  return x;
}

std::vector<Index> to_lengths(const std::vector<double>& v) {
  std::vector<Index> out;
  for (double d : v) out.push_back(static_cast<Index>(d));
  return out;
}

std::string message_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const ShapeError& e) {
    return std::string("ShapeError: ") + e.what();
  } catch (const ConfigError& e) {
    return std::string("ConfigError: ") + e.what();
  }
  return "no exception";
}

}  // namespace

// The ids are not differentiable, so the standard checker (which perturbs x) does not apply: the table is
// checked against finite differences of L = sum(y * R), and the backward contract is checked by hand.
TEST(EmbeddingGradient, TableMatchesFiniteDifferencesAndIdsGetNone) {
  for (bool mask_zero : {false, true}) {
    Embedding<double> emb(1, 6, 3, EmbeddingOptions().mask_zero(mask_zero).seed(4));
    // Repeated ids (2 three times), interior and trailing zeros, lengths 5, 3, 1 and 0.
    const auto x = ids_tensor({{2, 0, 2, 5, 0}, {2, 1, 0, 0, 4}, {3, 3, 3, 3, 3}, {1, 1, 1, 1, 1}});
    const Mask mask = Mask::from_lengths({5, 3, 1, 0});
    const auto R = random_tensor(4, 5, 3, 8);
    auto loss = [&] {
      const auto& y = emb.forward(x, mask, Mode::Train);
      double l = 0;
      for (Index i = 0; i < y.size(); ++i) l += y.data()[i] * R.data()[i];
      return l;
    };
    loss();
    emb.zero_grad();
    const Tensor3<double> dx = emb.backward(x, mask, R);
    const auto p = emb.params();
    ASSERT_EQ(p.size(), 1u);
    EXPECT_EQ(p[0].name, "embeddings");
    const std::vector<double> grad(p[0].grad, p[0].grad + p[0].size());
    const auto result = check_gradients(loss, {GradTarget{"embeddings", p[0].value, grad.data(), p[0].size()}});
    EXPECT_TRUE(result.passed()) << result.report();
    for (Index i = 0; i < dx.size(); ++i) EXPECT_EQ(dx.data()[i], 0.0);
    // Rows never looked up get no gradient: 4 is padding in sample 1, and 3 only appears at the valid step of
    // sample 2 (so it does get one); with mask_zero, every id 0 is masked and row 0 gets no gradient.
    const Eigen::Map<const Matrix<double>> G(grad.data(), 6, 3);
    EXPECT_EQ(G.row(4).cwiseAbs().maxCoeff(), 0.0);
    EXPECT_GT(G.row(3).cwiseAbs().maxCoeff(), 0.0);
    EXPECT_EQ(G.row(0).cwiseAbs().maxCoeff() == 0.0, mask_zero);
    EXPECT_NEAR(G(2, 0), R(0, 0, 0) + R(0, 2, 0) + R(1, 0, 0), 1e-15);
    // Contract: a second backward adds into the gradient and overwrites dx.
    emb.backward(x, mask, R);
    for (Index i = 0; i < p[0].size(); ++i) EXPECT_NEAR(p[0].grad[i], 2 * grad[static_cast<size_t>(i)], 1e-15);
  }
}

template <class S>
void check_against_pytorch(double tol) {
  const ReferenceData ref(data_path("conv_embedding.txt"));
  const Tensor3<S> ids = ref.tensor<S>("emb_ids").reshape(Eigen::DSizes<Index, 3>(4, 6, 1));
  const Mask mask(to_lengths(ref.values("emb_lengths")));
  for (const std::string tag : {"plain", "mz"}) {
    Embedding<S> emb(1, 7, 3, EmbeddingOptions().mask_zero(tag == "mz"));
    emb.embeddings() = ref.matrix<S>("emb_E");
    const Tensor3<S>& y = emb.forward(ids, mask);
    const auto& y_ref = ref.values("emb_" + tag + "_y");
    ASSERT_EQ(y.size(), static_cast<Index>(y_ref.size()));
    for (Index i = 0; i < y.size(); ++i) ASSERT_NEAR(y.data()[i], y_ref[static_cast<size_t>(i)], tol) << tag;
    EXPECT_EQ(emb.out_mask(mask, 6).lengths(), to_lengths(ref.values("emb_" + tag + "_lengths"))) << tag;
    emb.zero_grad();
    emb.backward(ids, mask, ref.tensor<S>("emb_" + tag + "_dy"));
    const auto& dE = ref.values("emb_" + tag + "_dE");
    for (Index i = 0; i < 21; ++i) ASSERT_NEAR(emb.params()[0].grad[i], dE[static_cast<size_t>(i)], tol) << tag;
  }
}

TEST(EmbeddingReference, MatchesPyTorchInDouble) { check_against_pytorch<double>(1e-15); }
TEST(EmbeddingReference, MatchesPyTorchInFloat) { check_against_pytorch<float>(1e-6); }

TEST(EmbeddingMask, MaskZeroLengthsComeFromTheLastNonZeroIdWithinTheIncomingLength) {
  Embedding<double> emb(1, 10, 2, EmbeddingOptions().mask_zero(true));
  const auto x = ids_tensor({{3, 0, 4, 0, 0}, {0, 0, 0, 0, 0}, {1, 2, 3, 4, 5}, {7, 0, 0, 0, 9}});
  emb.forward(x);
  EXPECT_EQ(emb.out_mask(Mask(), 5).lengths(), (std::vector<Index>{3, 0, 5, 5}));
  emb.forward(x, Mask::from_lengths({5, 5, 2, 4}));  // min with the incoming mask
  EXPECT_EQ(emb.out_mask(Mask::from_lengths({5, 5, 2, 4}), 5).lengths(), (std::vector<Index>{3, 0, 2, 1}));
  // Issue 22: the interior zero of sample 0 is a masked step (a step mask, Keras' mask_zero), output 0, as the
  // trailing ones; before, it looked up row 0 as a valid step.
  const auto& y = emb.forward(x);
  EXPECT_EQ(y(0, 1, 1), 0.0);
  EXPECT_EQ(y(0, 3, 0), 0.0);
  EXPECT_EQ(emb.out_mask(Mask(), 5),
            Mask::from_steps({{1, 0, 1, 0, 0}, {0, 0, 0, 0, 0}, {1, 1, 1, 1, 1}, {1, 0, 0, 0, 1}}));
  // Without mask_zero the incoming mask passes through.
  Embedding<double> plain(1, 10, 2);
  plain.forward(x, Mask::from_lengths({1, 2, 3, 4}));
  EXPECT_EQ(plain.out_mask(Mask::from_lengths({1, 2, 3, 4}), 5).lengths(), (std::vector<Index>{1, 2, 3, 4}));
  EXPECT_TRUE(plain.out_mask(Mask(), 5).empty());
}

TEST(EmbeddingMask, PaddedIdsAreNeverReadOrChecked) {
  Embedding<double> emb(1, 5, 3, EmbeddingOptions().seed(1));
  const Mask mask = Mask::from_lengths({2, 0, 3});
  const auto x = ids_tensor({{1, 4, 0, 0}, {2, 2, 2, 2}, {3, 1, 0, 1}});
  const Tensor3<double> y = emb.forward(x, mask);
  // Garbage at padded steps (out of range, negative, fractional, NaN) and more padding.
  const auto x_big =
      ids_tensor({{1, 4, 99, -1, 2.5}, {std::numeric_limits<double>::quiet_NaN(), 7, 7, 7, 7}, {3, 1, 0, -3, 1e9}});
  const Tensor3<double>& y_big = emb.forward(x_big, mask);
  for (Index b = 0; b < 3; ++b)
    for (Index t = 0; t < 5; ++t)
      for (Index f = 0; f < 3; ++f) {
        const double expected = t < mask.length(b, 4) ? y(b, t, f) : 0.0;
        ASSERT_EQ(y_big(b, t, f), expected) << b << " " << t;
      }
  // Gradients at padded output steps are ignored.
  Tensor3<double> dy(3, 5, 3);
  dy.setConstant(1.0);
  emb.zero_grad();
  emb.backward(x_big, mask, dy);
  const Eigen::Map<const Matrix<double>> G(emb.params()[0].grad, 5, 3);
  EXPECT_EQ(G(1, 0), 2.0);  // sample 0 step 0 and sample 2 step 1
  EXPECT_EQ(G(2, 0), 0.0);  // only in padding
  EXPECT_EQ(G(0, 0), 1.0);  // sample 2 step 2
}

TEST(Embedding, ForwardIdsEqualsTheTensorForm) {
  Embedding<float> a(1, 8, 4, EmbeddingOptions().seed(3));
  const std::vector<int> ids = {1, 2, 7, 0, 5, -1};  // -1 is padding of sample 1 (length 2)
  const Mask mask = Mask::from_lengths({3, 2});
  const Tensor3<float> y = a.forward_ids(ids, 2, 3, mask);
  EXPECT_EQ(a.ids_tensor()(1, 1, 0), 5.0f);
  for (Index t = 0; t < 3; ++t)
    for (Index f = 0; f < 4; ++f) {
      EXPECT_EQ(y(0, t, f), a.embeddings()(ids[static_cast<size_t>(t)], f));
      EXPECT_EQ(y(1, t, f), t < 2 ? a.embeddings()(ids[static_cast<size_t>(3 + t)], f) : 0.0f);
    }
  EXPECT_EQ(message_of([&] { a.forward_ids(ids, 2, 2); }),
            "ShapeError: Embedding(vocab=8, dim=4): forward_ids expected B*T = 2*2 = 4 ids but got 6");
  EXPECT_EQ(message_of([&] {
              a.forward_ids({1, 8}, 1, 2);
            }),
            "ShapeError: Embedding(vocab=8, dim=4): id 8 at (0, 1) out of range [0, 8)");
}

TEST(EmbeddingErrors, MessagesNameTheLayerThePositionAndTheRange) {
  Embedding<double> emb(1, 100, 8);
  Tensor3<double> x(2, 5, 1);
  x.setConstant(3.0);
  x(1, 4, 0) = 123;
  EXPECT_EQ(message_of([&] { emb.forward(x); }),
            "ShapeError: Embedding(vocab=100, dim=8): id 123 at (1, 4) out of range [0, 100)");
  x(1, 4, 0) = -1;
  EXPECT_EQ(message_of([&] { emb.forward(x); }),
            "ShapeError: Embedding(vocab=100, dim=8): id -1 at (1, 4) out of range [0, 100)");
  x(1, 4, 0) = 2.5;
  EXPECT_EQ(message_of([&] { emb.forward(x); }),
            "ShapeError: Embedding(vocab=100, dim=8): id 2.5 at (1, 4) is not an integer");
  Tensor3<double> x2(2, 5, 2);
  x2.setZero();
  EXPECT_NE(message_of([&] { emb.forward(x2); }).find("input features expected 1 but got 2"), std::string::npos);
  EXPECT_EQ(message_of([] { Embedding<float>(3, 10, 4); }),
            "ConfigError: Embedding(vocab=10, dim=4): input features expected 1 (one id per step) but got 3");
  EXPECT_EQ(message_of([] { Embedding<float>(1, 0, 4); }),
            "ConfigError: Embedding(vocab=0, dim=4): vocab_size must be positive but got 0");
  EXPECT_EQ(message_of([] { Embedding<float>(1, 3, -4); }),
            "ConfigError: Embedding(vocab=3, dim=-4): dim must be positive but got -4");
  EXPECT_EQ(message_of([] { Embedding<float>(1, (1 << 24) + 1, 2); }),
            "ConfigError: Embedding(vocab=16777217, dim=2): vocab_size above 16777216 cannot be stored exactly as "
            "ids of this scalar type (use double)");
  Embedding<double> mz(1, 10, 2, EmbeddingOptions().mask_zero(true));
  Tensor3<double> ids(2, 3, 1);
  ids.setConstant(1.0);
  mz.forward(ids);
  EXPECT_NE(message_of([&] { mz.out_mask(Mask(), 4); }).find("must follow the forward of the same batch"),
            std::string::npos);
}

TEST(Embedding, DefaultInitIsKerasUniform) {
  Embedding<double> emb(1, 50, 20, EmbeddingOptions().seed(9));
  EXPECT_LE(emb.embeddings().cwiseAbs().maxCoeff(), 0.05);
  EXPECT_GT(emb.embeddings().cwiseAbs().maxCoeff(), 0.04);
  EXPECT_EQ(emb.params()[0].shape, (std::vector<Index>{50, 20}));
}
