// set_from_torch (io/torch_recurrent.hpp): LSTM, GRU and Bidirectional set from torch.nn.LSTM / torch.nn.GRU
// tensors (tests/data/recurrent.txt, written by tests/reference/gen_recurrent.py with torch 1.13) predict torch's
// outputs (masked batch, return_sequences true and false) in double and float; the errors name the tensor, and
// a failed call leaves the layer unchanged.
#include <gtest/gtest.h>

#include <cmath>
#include <string>

#include "seqattn/io/torch_recurrent.hpp"
#include "seqattn/layers/dense.hpp"
#include "support/reference_data.hpp"

using namespace seqattn;
using seqattn::testing::ReferenceData;

namespace {

const ReferenceData& data() {
  static const ReferenceData d(seqattn::testing::data_path("recurrent.txt"));
  return d;
}

template <class S>
TorchTensors<S> tensors(const std::string& c, const std::string& prefix = "") {
  TorchTensors<S> t;
  for (const char* n : {"weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"})
    for (const char* sfx : {"", "_reverse"}) {
      const std::string key = c + "." + n + sfx;
      bool present = true;
      try {
        data().values(key);
      } catch (const std::exception&) {
        present = false;
      }
      if (present) t[prefix + n + sfx] = data().matrix<S>(key);
    }
  return t;
}

template <class S>
std::unique_ptr<Layer<S>> make(const std::string& c, bool seq) {
  const Index F = 4, U = 3;
  const bool gru = c.find("gru") != std::string::npos, bi = c.compare(0, 2, "bi") == 0;
  if (gru && bi) return std::make_unique<Bidirectional<S>>(F, U, GRUOptions().return_sequences(seq));
  if (bi) return std::make_unique<Bidirectional<S>>(F, U, LSTMOptions().return_sequences(seq));
  if (gru) return std::make_unique<GRU<S>>(F, U, GRUOptions().return_sequences(seq));
  return std::make_unique<LSTM<S>>(F, U, LSTMOptions().return_sequences(seq));
}

template <class S>
double max_diff_to_torch(const std::string& c, bool seq, const std::string& prefix = "") {
  auto layer = make<S>(c, seq);
  set_from_torch(*layer, tensors<S>(c, prefix), prefix);
  std::vector<Index> lengths;
  for (double v : data().values(c + ".lengths")) lengths.push_back(Index(v));
  const Tensor3<S>& y = layer->forward(data().tensor<S>(c + ".x"), Mask(lengths), Mode::Infer);
  const std::vector<double>& e = data().values(c + (seq ? ".seq.y" : ".last.y"));
  EXPECT_EQ(size_t(y.size()), e.size());
  double m = 0;
  for (size_t i = 0; i < e.size(); ++i) m = std::max(m, std::fabs(double(y.data()[i]) - e[i]));
  return m;
}

TEST(TorchRecurrentImport, MatchesTorchOutputs) {
  for (const char* c : {"lstm", "gru", "bilstm", "bigru"})
    for (bool seq : {true, false}) {
      SCOPED_TRACE(std::string(c) + (seq ? " seq" : " last"));
      EXPECT_LE(max_diff_to_torch<double>(c, seq), 1e-12);
      EXPECT_LE(max_diff_to_torch<float>(c, seq), 2e-6);
    }
  EXPECT_LE(max_diff_to_torch<double>("bigru", true, "rnn."), 1e-12);  // state_dict names with a prefix
}

template <class S>
std::string error_of(Layer<S>& layer, const TorchTensors<S>& t) {
  try {
    set_from_torch(layer, t);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(TorchRecurrentImport, ErrorsNameTheTensorAndWriteNothing) {
  GRU<double> gru(4, 3, GRUOptions().seed(1));
  GRU<double> before = gru;
  auto t = tensors<double>("gru");
  t["weight_hh_l0"] = Matrix<double>::Zero(9, 2);
  EXPECT_EQ(error_of(gru, t), "set_from_torch(GRU): 'weight_hh_l0' expected shape (9, 3) but got (9, 2)");
  t = tensors<double>("gru");
  t["bias_ih_l0"] = Matrix<double>::Zero(8, 1);
  EXPECT_EQ(error_of(gru, t), "set_from_torch(GRU): 'bias_ih_l0' expected shape (9) but got (8, 1)");
  t = tensors<double>("gru");
  t.erase("bias_hh_l0");
  EXPECT_EQ(error_of(gru, t), "set_from_torch(GRU): tensor 'bias_hh_l0' is missing");
  EXPECT_TRUE(gru.kernel() == before.kernel() && gru.bias() == before.bias());  // nothing written

  LSTM<double> nobias(4, 3, LSTMOptions().use_bias(false));
  EXPECT_NE(error_of(nobias, tensors<double>("lstm")).find("'bias_ih_l0' given but the layer has use_bias=false"),
            std::string::npos);
  GRU<double> before_reset(4, 3, GRUOptions().reset_after(false));
  EXPECT_NE(error_of(before_reset, tensors<double>("gru")).find("reset_after=false has no torch.nn.GRU equivalent"),
            std::string::npos);
  Bidirectional<double> bi(4, 3, GRUOptions().seed(2));
  const Matrix<double> fwd = static_cast<GRU<double>&>(bi.forward_layer()).kernel();
  EXPECT_EQ(error_of(bi, tensors<double>("gru")), "set_from_torch(GRU): tensor 'weight_ih_l0_reverse' is missing");
  EXPECT_TRUE(static_cast<GRU<double>&>(bi.forward_layer()).kernel() == fwd);  // the forward half untouched
  Dense<double> dense(4, 3);
  EXPECT_NE(error_of(dense, tensors<double>("gru")).find("expected an LSTM, GRU or Bidirectional"), std::string::npos);
}

}  // namespace
