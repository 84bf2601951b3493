// LSTM, GRU and Bidirectional against torch.nn.LSTM / torch.nn.GRU (tests/reference/gen_recurrent.py, masked
// batch through pack_padded_sequence): outputs with return_sequences true and false, dx and every parameter
// gradient, in double and float. The torch weights are mapped with the documented gate orders:
//   LSTM  torch i, f, g, o = Keras i, f, c, o: kernel = weight_ih^T, recurrent_kernel = weight_hh^T,
//         bias = bias_ih + bias_hh
//   GRU   torch r, z, n -> Keras z, r, h (blocks permuted), bias row 0 = bias_ih, row 1 = bias_hh (permuted)
// GRU reset_after=false (gru_rb, bigru_rb): Keras' equations as a torch autograd loop, weights in Keras' layout.
#include <gtest/gtest.h>

#include <cmath>

#include "seqattn/layers/bidirectional.hpp"
#include "support/reference_data.hpp"

using namespace seqattn;
using seqattn::testing::ReferenceData;

namespace {

// Torch (G*U, n) gate-row blocks -> Keras (n, G*U) column blocks: keras block k = torch block order[k].
template <class S>
Matrix<S> to_keras(const Matrix<S>& torch_w, bool gru) {
  const Index G = gru ? 3 : 4, U = torch_w.rows() / G;
  const Index order[4] = {gru ? 1 : 0, gru ? 0 : 1, 2, 3};  // GRU: z <- torch 1 (z), r <- torch 0 (r)
  Matrix<S> k(torch_w.cols(), torch_w.rows());
  for (Index g = 0; g < G; ++g) k.middleCols(g * U, U) = torch_w.middleRows(order[g] * U, U).transpose();
  return k;
}

template <class S>
void load(Layer<S>& layer, const ReferenceData& d, const std::string& c, const std::string& sfx, bool gru) {
  auto params = layer.params();  // kernel, recurrent_kernel, bias
  auto set = [](const Param<S>& p, const Matrix<S>& m) {
    ASSERT_EQ(p.size(), m.size()) << p.name;
    p.values() = Eigen::Map<const Vector<S>>(m.data(), m.size());
  };
  set(params[0], to_keras<S>(d.matrix<S>(c + ".weight_ih_l0" + sfx), gru));
  set(params[1], to_keras<S>(d.matrix<S>(c + ".weight_hh_l0" + sfx), gru));
  const Matrix<S> bi = to_keras<S>(d.matrix<S>(c + ".bias_ih_l0" + sfx), gru);  // (1, G*U)
  const Matrix<S> bh = to_keras<S>(d.matrix<S>(c + ".bias_hh_l0" + sfx), gru);
  if (gru) {
    Matrix<S> b(2, bi.cols());
    b.row(0) = bi;
    b.row(1) = bh;
    set(params[2], b);
  } else {
    set(params[2], bi + bh);
  }
}

template <class S>
void expect_close(const S* a, const Matrix<S>& e, double tol, const std::string& what) {
  for (Index i = 0; i < e.size(); ++i)
    ASSERT_NEAR(double(a[i]), double(e.data()[i]), tol * (1 + std::abs(double(e.data()[i])))) << what << "[" << i << "]";
}

template <class S>
void run_case(const std::string& c, bool seq) {
  SCOPED_TRACE(c + (seq ? " seq" : " last"));
  const ReferenceData d(seqattn::testing::data_path("recurrent.txt"));
  const bool gru = c.find("gru") != std::string::npos, bi = c.compare(0, 2, "bi") == 0;
  const Tensor3<S> x = d.tensor<S>(c + ".x");
  std::vector<Index> lengths;
  for (double v : d.values(c + ".lengths")) lengths.push_back(Index(v));
  const Mask mask(lengths);
  const Index F = x.dimension(2), U = 3;
  std::unique_ptr<Layer<S>> layer;
  if (gru && bi) layer = std::make_unique<Bidirectional<S>>(F, U, GRUOptions().return_sequences(seq));
  if (!gru && bi) layer = std::make_unique<Bidirectional<S>>(F, U, LSTMOptions().return_sequences(seq));
  if (gru && !bi) layer = std::make_unique<GRU<S>>(F, U, GRUOptions().return_sequences(seq));
  if (!gru && !bi) layer = std::make_unique<LSTM<S>>(F, U, LSTMOptions().return_sequences(seq));
  std::vector<Layer<S>*> inner{layer.get()};
  if (bi) {
    auto* b = static_cast<Bidirectional<S>*>(layer.get());
    inner = {&b->forward_layer(), &b->backward_layer()};
  }
  for (size_t k = 0; k < inner.size(); ++k) load(*inner[k], d, c, k ? "_reverse" : "", gru);

  const double tol = sizeof(S) == sizeof(double) ? 1e-12 : 2e-5;
  const std::string p = c + (seq ? ".seq." : ".last.");
  const Tensor3<S>& y = layer->forward(x, mask, Mode::Train);
  ASSERT_EQ(y.size(), Index(d.values(p + "y").size()));
  expect_close(y.data(), d.matrix<S>(p + "y"), tol, "y");
  layer->zero_grad();
  const Tensor3<S>& dx = layer->backward(x, mask, d.tensor<S>(p + "R"));
  expect_close(dx.data(), d.matrix<S>(p + "dx"), tol, "dx");
  for (size_t k = 0; k < inner.size(); ++k) {
    const std::string sfx = k ? "_reverse" : "";
    auto params = inner[k]->params();
    expect_close(params[0].grad, to_keras<S>(d.matrix<S>(p + "dweight_ih_l0" + sfx), gru), tol, "dkernel" + sfx);
    expect_close(params[1].grad, to_keras<S>(d.matrix<S>(p + "dweight_hh_l0" + sfx), gru), tol,
                 "drecurrent_kernel" + sfx);
    const Matrix<S> dbi = to_keras<S>(d.matrix<S>(p + "dbias_ih_l0" + sfx), gru);
    const Matrix<S> dbh = to_keras<S>(d.matrix<S>(p + "dbias_hh_l0" + sfx), gru);
    if (gru) {
      Matrix<S> db(2, dbi.cols());
      db.row(0) = dbi;
      db.row(1) = dbh;
      expect_close(params[2].grad, db, tol, "dbias" + sfx);
    } else {
      expect_close(params[2].grad, dbi, tol, "dbias" + sfx);  // torch's two biases get the same gradient
      expect_close(params[2].grad, dbh, tol, "dbias" + sfx);
    }
  }
}

TEST(RecurrentTorchReference, LSTMDouble) {
  run_case<double>("lstm", true);
  run_case<double>("lstm", false);
}
TEST(RecurrentTorchReference, GRUDouble) {
  run_case<double>("gru", true);
  run_case<double>("gru", false);
}
TEST(RecurrentTorchReference, BidirectionalDouble) {
  for (const char* c : {"bilstm", "bigru"}) {
    run_case<double>(c, true);
    run_case<double>(c, false);
  }
}
TEST(RecurrentTorchReference, Float) {
  for (const char* c : {"lstm", "gru", "bilstm", "bigru"}) {
    run_case<float>(c, true);
    run_case<float>(c, false);
  }
}

// Keras GRU reset_after=False: the reference holds Keras-layout weights (bias (3U)) and autograd gradients.
template <class S>
void run_reset_before(const std::string& c, bool seq) {
  SCOPED_TRACE(c + (seq ? " seq" : " last"));
  const ReferenceData d(seqattn::testing::data_path("recurrent.txt"));
  const bool bi = c.compare(0, 2, "bi") == 0;
  const Tensor3<S> x = d.tensor<S>(c + ".x");
  std::vector<Index> lengths;
  for (double v : d.values(c + ".lengths")) lengths.push_back(Index(v));
  const Mask mask(lengths);
  const Index F = x.dimension(2), U = 3;
  const GRUOptions o = GRUOptions().return_sequences(seq).reset_after(false);
  std::unique_ptr<Layer<S>> layer;
  if (bi)
    layer = std::make_unique<Bidirectional<S>>(F, U, o);
  else
    layer = std::make_unique<GRU<S>>(F, U, o);
  std::vector<Layer<S>*> inner{layer.get()};
  if (bi) {
    auto* b = static_cast<Bidirectional<S>*>(layer.get());
    inner = {&b->forward_layer(), &b->backward_layer()};
  }
  const char* names[3] = {"kernel", "recurrent_kernel", "bias"};
  for (size_t k = 0; k < inner.size(); ++k) {
    auto params = inner[k]->params();
    ASSERT_EQ(params.size(), 3u);
    for (int i = 0; i < 3; ++i) {
      const Matrix<S> m = d.matrix<S>(c + "." + names[i] + (k ? "_reverse" : ""));
      ASSERT_EQ(params[i].size(), m.size()) << params[i].name;
      params[i].values() = Eigen::Map<const Vector<S>>(m.data(), m.size());
    }
  }
  const double tol = sizeof(S) == sizeof(double) ? 1e-12 : 2e-5;
  const std::string p = c + (seq ? ".seq." : ".last.");
  const Tensor3<S>& y = layer->forward(x, mask, Mode::Train);
  ASSERT_EQ(y.size(), Index(d.values(p + "y").size()));
  expect_close(y.data(), d.matrix<S>(p + "y"), tol, "y");
  layer->zero_grad();
  const Tensor3<S>& dx = layer->backward(x, mask, d.tensor<S>(p + "R"));
  expect_close(dx.data(), d.matrix<S>(p + "dx"), tol, "dx");
  for (size_t k = 0; k < inner.size(); ++k) {
    auto params = inner[k]->params();
    for (int i = 0; i < 3; ++i) {
      const std::string n = std::string("d") + names[i] + (k ? "_reverse" : "");
      expect_close(params[i].grad, d.matrix<S>(p + n), tol, n);
    }
  }
}

TEST(RecurrentTorchReference, GRUResetBefore) {
  for (const char* c : {"gru_rb", "bigru_rb"})
    for (bool seq : {true, false}) {
      run_reset_before<double>(c, seq);
      run_reset_before<float>(c, seq);
    }
}

}  // namespace
