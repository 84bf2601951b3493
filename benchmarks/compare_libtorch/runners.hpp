#pragma once
// The two sides of compare_libtorch: one Runner per (row, library) holds a layer or model with its inputs
// and runs ONE iteration per run() call (forward + backward, a training step, or an inference).
//   seqattn: x (B, T, F) row-major, as the library stores sequences.
//   libtorch: the layout each torch module wants and is fastest with: torch::nn::MultiheadAttention takes
//   (T, B, D) (libtorch 1.13 has no batch_first), so the MHA rows and the torch classifier keep (T, B, .)
//   throughout; the additive formula uses (B, T, F).
// Parameter and input gradients are computed on both sides (x.requires_grad on torch's), and parameter
// gradients are zeroed every iteration on both sides (seqattn zero_grad(); torch Module::zero_grad()).

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <vector>

#include "classifier_model.hpp"
#include "seqattn/layers/lstm.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/layers/seq_self_attention.hpp"

namespace compare {

using seqattn::Index;
using seqattn::Tensor3;

class Runner {
 public:
  virtual ~Runner() = default;
  virtual void run() = 0;
};

inline Tensor3<float> uniform_input(Index B, Index T, Index F, std::uint64_t seed) {
  seqattn::Rng rng(seed);
  Tensor3<float> x(B, T, F);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
  return x;
}

// A torch tensor uniform in [-1, 1).
inline torch::Tensor torch_uniform(std::vector<int64_t> shape, std::uint64_t seed) {
  torch::manual_seed(seed);
  return torch::rand(shape) * 2 - 1;
}

// ---------------------------------------------------------------------------------------------------------
// seqattn side

// Forward (Train) + backward of one layer: zero_grad, forward, backward.
class SeqattnLayer final : public Runner {
 public:
  SeqattnLayer(std::unique_ptr<seqattn::Layer<float>> layer, Index B, Index T)
      : layer_(std::move(layer)),
        x_(uniform_input(B, T, layer_->in_features(), 1)),
        dy_(uniform_input(B, T, layer_->out_features(), 2)) {}
  void run() override {
    layer_->zero_grad();
    layer_->forward(x_, seqattn::Mask(), seqattn::Mode::Train);
    layer_->backward(x_, seqattn::Mask(), dy_);
  }

 private:
  std::unique_ptr<seqattn::Layer<float>> layer_;
  Tensor3<float> x_, dy_;
};

// One training step of the classifier (classifier_model.hpp), or one inference (predict).
class SeqattnClassifier final : public Runner {
 public:
  SeqattnClassifier(Index B, Index T, bool train) : train_(train), x_(uniform_input(B, T, 8, 1)) {
    for (Index b = 0; b < B; ++b) labels_.push_back(static_cast<int>(b % 2));
  }
  void run() override {
    if (train_)
      trainer_.step(x_, seqattn::Mask(), labels_);
    else
      trainer_.model.predict(x_);
  }

 private:
  bool train_;
  seqattn_bench::ClassifierTrainer trainer_;
  Tensor3<float> x_;
  std::vector<int> labels_;
};

// One new step of one stream of the classifier made causal (attention_window = window), after a warm-up of
// 1,000 steps: what a live service runs per sample (model/stream.hpp).
class SeqattnClassifierStream final : public Runner {
 public:
  explicit SeqattnClassifierStream(Index window)
      : model_(seqattn_bench::make_classifier(shape(window))), stream_(model_.stream(1)), x_(uniform_input(1, 1, 8, 3)) {
    const Tensor3<float> chunk = uniform_input(1, 100, 8, 4);
    for (int i = 0; i < 10; ++i) stream_.step(chunk);
  }
  void run() override { stream_.step(x_); }

 private:
  static seqattn_bench::ClassifierShape shape(Index window) {
    seqattn_bench::ClassifierShape s;
    s.causal_window = window;
    return s;
  }
  seqattn::Sequential<float> model_;
  seqattn::Stream<float> stream_;
  Tensor3<float> x_;
};

// Forward alone (Mode::Infer) of one layer.
class SeqattnForward final : public Runner {
 public:
  SeqattnForward(std::unique_ptr<seqattn::Layer<float>> layer, Index B, Index T)
      : layer_(std::move(layer)), x_(uniform_input(B, T, layer_->in_features(), 1)) {}
  void run() override { layer_->forward(x_, seqattn::Mask(), seqattn::Mode::Infer); }

 private:
  std::unique_ptr<seqattn::Layer<float>> layer_;
  Tensor3<float> x_;
};

// ---------------------------------------------------------------------------------------------------------
// libtorch side

// Copies of a seqattn layer's parameters as torch tensors, in params() order and their shapes (Keras: kernels
// (in, out)).
inline std::vector<torch::Tensor> parameter_tensors(seqattn::Layer<float>& layer) {
  std::vector<torch::Tensor> w;
  for (auto& p : layer.params()) {
    std::vector<int64_t> shape(p.shape.begin(), p.shape.end());
    w.push_back(torch::from_blob(p.value, shape, torch::kFloat32).clone());
  }
  return w;
}

// torch::nn::LSTM(F, U, batch_first) on x (B, T, F): the output sequence (B, T, U), then (train) its backward
// with dy; forward alone under c10::InferenceMode otherwise.
class TorchLstm final : public Runner {
 public:
  TorchLstm(Index B, Index T, Index F, Index U, bool train)
      : lstm_(torch::nn::LSTMOptions(F, U).batch_first(true)), train_(train),
        x_(torch_uniform({B, T, F}, 1).requires_grad_(train)), dy_(torch_uniform({B, T, U}, 2)) {}
  torch::Tensor forward(const torch::Tensor& x) { return std::get<0>(lstm_->forward(x)); }
  void run() override {
    if (!train_) {
      c10::InferenceMode guard;
      forward(x_);
      return;
    }
    lstm_->zero_grad();
    x_.mutable_grad() = torch::Tensor();
    forward(x_).backward(dy_);
  }
  // Copies a seqattn LSTM (Keras layout; the same gate order i, f, g, o): weight_ih = kernel^T,
  // weight_hh = recurrent_kernel^T, bias_ih = bias, bias_hh = 0.
  void copy_weights(seqattn::LSTM<float>& layer) {
    torch::NoGradGuard guard;
    auto from = [](seqattn::Matrix<float>& m) {
      return torch::from_blob(m.data(), {static_cast<int64_t>(m.rows()), static_cast<int64_t>(m.cols())},
                              torch::kFloat32);
    };
    lstm_->named_parameters()["weight_ih_l0"].copy_(from(layer.kernel()).t());
    lstm_->named_parameters()["weight_hh_l0"].copy_(from(layer.recurrent_kernel()).t());
    lstm_->named_parameters()["bias_ih_l0"].copy_(
        torch::from_blob(layer.bias().data(), {static_cast<int64_t>(layer.bias().size())}, torch::kFloat32));
    lstm_->named_parameters()["bias_hh_l0"].zero_();
  }

 private:
  torch::nn::LSTM lstm_;
  bool train_;
  torch::Tensor x_, dy_;
};

// torch::nn::MultiheadAttention(D, H) forward (need_weights = false: torch skips averaging the attention
// maps) + backward. x (T, B, D).
class TorchMha final : public Runner {
 public:
  TorchMha(Index B, Index T, Index D, Index H)
      : mha_(torch::nn::MultiheadAttentionOptions(D, H)),
        x_(torch_uniform({T, B, D}, 1).requires_grad_(true)),
        dy_(torch_uniform({T, B, D}, 2)) {}
  void run() override {
    mha_->zero_grad();
    x_.mutable_grad() = torch::Tensor();
    torch::Tensor y = std::get<0>(mha_->forward(x_, x_, x_, torch::Tensor(), /*need_weights=*/false));
    y.backward(dy_);
  }
  torch::nn::MultiheadAttention& module() { return mha_; }

 private:
  torch::nn::MultiheadAttention mha_;
  torch::Tensor x_, dy_;
};

#if TORCH_VERSION_MAJOR >= 2
// The same multi-head attention written out around torch's fused kernel (libtorch 2.x only), x (B, T, D):
//   q = x Wq^T + bq, k = x Wk^T + bk, v = x Wv^T + bv      (B, T, D) -> view (B, T, H, dh) -> (B, H, T, dh)
//   o = scaled_dot_product_attention(q, k, v)              (B, H, T, dh): softmax(q k^T / sqrt(dh)) v, fused
//   y = o (B, T, D) Wo^T + bo                              (transpose back, reshape)
// forward + backward, as TorchMha (the weights are torch::nn::Linear's default initialization).
class TorchSdpa final : public Runner {
 public:
  TorchSdpa(Index B, Index T, Index D, Index H)
      : B_(B), T_(T), D_(D), H_(H), q_(D, D), k_(D, D), v_(D, D), o_(D, D),
        x_(torch_uniform({B, T, D}, 1).requires_grad_(true)), dy_(torch_uniform({B, T, D}, 2)) {}
  torch::Tensor forward(const torch::Tensor& x) {
    auto heads = [&](const torch::Tensor& t) { return t.view({B_, T_, H_, D_ / H_}).transpose(1, 2); };
    const torch::Tensor o = at::scaled_dot_product_attention(heads(q_->forward(x)), heads(k_->forward(x)),
                                                             heads(v_->forward(x)));
    return o_->forward(o.transpose(1, 2).reshape({B_, T_, D_}));
  }
  void run() override {
    for (auto* l : {&q_, &k_, &v_, &o_}) (*l)->zero_grad();
    x_.mutable_grad() = torch::Tensor();
    forward(x_).backward(dy_);
  }
  // Copies a seqattn MultiHeadAttention's weights (Keras shapes: Wq bq Wk bk Wv bv Wo bo, kernels (in, out)).
  void copy_weights(seqattn::MultiHeadAttention<float>& layer) {
    torch::NoGradGuard guard;
    const std::vector<torch::Tensor> w = parameter_tensors(layer);
    int i = 0;
    for (auto* l : {&q_, &k_, &v_, &o_}) {
      (*l)->weight.copy_(w[i].t());
      (*l)->bias.copy_(w[i + 1]);
      i += 2;
    }
  }

 private:
  int64_t B_, T_, D_, H_;
  torch::nn::Linear q_, k_, v_, o_;
  torch::Tensor x_, dy_;
};
#endif

// keras-self-attention's additive formula with torch ops, x (B, T, F):
//   e = tanh(x Wt [:, :, None] + x Wx [:, None] + bh) @ Wa + ba     (B, T, T, U) -> (B, T, T)
//   A = softmax(e) over the keys (with a width: masked_fill(-inf) outside the band, then softmax)
//   y = A x
// The (B, T, T, U) tensor is materialized (and kept by autograd for tanh's backward): that is the formula.
class TorchAdditive final : public Runner {
 public:
  TorchAdditive(Index B, Index T, Index F, Index U, std::optional<Index> width)
      : Wt_(torch_uniform({F, U}, 3) * 0.2), Wx_(torch_uniform({F, U}, 4) * 0.2), bh_(torch::zeros({U})),
        Wa_(torch_uniform({U, 1}, 5) * 0.2), ba_(torch::zeros({1})),
        x_(torch_uniform({B, T, F}, 1).requires_grad_(true)), dy_(torch_uniform({B, T, F}, 2)) {
    for (auto* p : {&Wt_, &Wx_, &bh_, &Wa_, &ba_}) p->requires_grad_(true);
    if (width) {  // allowed keys of query t: [t - w/2, t - w/2 + w - 1]
      const torch::Tensor t = torch::arange(T).unsqueeze(1), s = torch::arange(T).unsqueeze(0);
      const torch::Tensor offset = s - t + *width / 2;
      banned_ = (offset < 0).logical_or(offset >= *width);
    }
  }
  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor h = torch::tanh(torch::matmul(x, Wt_).unsqueeze(2) + torch::matmul(x, Wx_).unsqueeze(1) + bh_);
    torch::Tensor e = torch::matmul(h, Wa_).squeeze(-1) + ba_;  // (B, T, T)
    if (banned_.defined()) e = e.masked_fill(banned_, -std::numeric_limits<float>::infinity());
    return torch::bmm(torch::softmax(e, -1), x);
  }
  void run() override {
    for (auto* p : {&Wt_, &Wx_, &bh_, &Wa_, &ba_})
      if (p->grad().defined()) p->mutable_grad().zero_();
    x_.mutable_grad() = torch::Tensor();
    forward(x_).backward(dy_);
  }
  // Copies the weights of a seqattn additive SeqSelfAttention (Keras names and shapes).
  void copy_weights(seqattn::SeqSelfAttention<float>& layer) {
    torch::NoGradGuard guard;
    auto copy = [](torch::Tensor& dst, const float* src) {
      dst.copy_(torch::from_blob(const_cast<float*>(src), dst.sizes(), torch::kFloat32));
    };
    copy(Wt_, layer.wt().data());
    copy(Wx_, layer.wx().data());
    copy(bh_, layer.bh().data());
    copy(Wa_, layer.wa().data());
    copy(ba_, layer.ba().data());
  }

 private:
  torch::Tensor Wt_, Wx_, bh_, Wa_, ba_, x_, dy_, banned_;
};

// The classifier of classifier_model.hpp in torch, on x (T, B, 8):
//   Linear(8, 64) + sinusoidal PE -> MultiheadAttention(64, 4) -> LayerNorm(64) -> max over T -> Linear(64, 2)
//   causal: a (T, T) attention mask of -inf above the diagonal (the causal model over the last T steps).
struct TorchClassifierImpl : torch::nn::Module {
  explicit TorchClassifierImpl(Index T, bool causal = false) {
    if (causal) mask = torch::full({T, T}, -std::numeric_limits<float>::infinity()).triu(1);
    input = register_module("input", torch::nn::Linear(8, 64));
    mha = register_module("mha", torch::nn::MultiheadAttention(torch::nn::MultiheadAttentionOptions(64, 4)));
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({64})));
    output = register_module("output", torch::nn::Linear(64, 2));
    torch::Tensor table = torch::zeros({T, 1, 64});  // PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(..)
    for (Index p = 0; p < T; ++p)
      for (Index j = 0; j < 64; ++j) {
        const double angle = static_cast<double>(p) / std::pow(10000.0, static_cast<double>(j - j % 2) / 64.0);
        table[p][0][j] = static_cast<float>(j % 2 == 0 ? std::sin(angle) : std::cos(angle));
      }
    pe = register_buffer("pe", table);
  }
  torch::Tensor forward(const torch::Tensor& x) {
    const torch::Tensor h = input->forward(x) + pe;
    const torch::Tensor a = std::get<0>(mha->forward(h, h, h, torch::Tensor(), /*need_weights=*/false, mask));
    return output->forward(std::get<0>(norm->forward(a).max(0)));
  }
  torch::nn::Linear input{nullptr}, output{nullptr};
  torch::nn::MultiheadAttention mha{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  torch::Tensor pe, mask;
};
TORCH_MODULE(TorchClassifier);

// One training step (zero_grad, forward, cross_entropy, backward, Adam lr 1e-3), or one inference under
// c10::InferenceMode (torch's fastest no-autograd mode).
class TorchClassifierRun final : public Runner {
 public:
  TorchClassifierRun(Index B, Index T, bool train, bool causal = false)
      : train_(train), model_(T, causal), adam_(model_->parameters(), torch::optim::AdamOptions(1e-3)),
        x_(torch_uniform({T, B, 8}, 1)), labels_(torch::arange(B) % 2) {}
  void run() override {
    if (train_) {
      adam_.zero_grad();
      torch::Tensor loss = torch::nn::functional::cross_entropy(model_->forward(x_), labels_);
      loss.backward();
      adam_.step();
    } else {
      c10::InferenceMode guard;
      model_->forward(x_);
    }
  }

 private:
  bool train_;
  TorchClassifier model_;
  torch::optim::Adam adam_;
  torch::Tensor x_, labels_;
};

}  // namespace compare
