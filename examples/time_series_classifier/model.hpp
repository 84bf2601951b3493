#pragma once
// The classifier of the example, built from command-line choices:
//
//   x (B, T, features)
//   front end, one of:
//     dense  Dense(d_model)                     projection of every step
//     conv   [Conv1D(d_model, k, same, no bias), BatchNorm, ReLU] for each k in conv_kernels (7, 5, 3: the
//            front end of FCN, Wang et al. 2017): local shapes of the series, at every step
//   AvgPool1D(downsample)                       only when downsample > 1: T -> ceil(T / downsample) steps for the
//                                               attention (partial last window kept), so long series stay cheap
//   SinusoidalPositionalEncoding (add)          unless positional = false
//   blocks times:
//     Residual(attention)  or  attention        MultiHeadAttention(heads) or SeqSelfAttention(additive, units)
//     LayerNorm
//     [Residual(Dense(ffn, ReLU), Dense(d_model)), LayerNorm]    only when ffn > 0
//   Dropout(dropout)                            only when dropout > 0
//   pooling over the valid steps                GlobalMaxPool, GlobalAvgPool or SeqWeightedAttention -> (B, 1, d)
//   Dense(classes)                              logits (B, 1, classes)
//
// Every layer is permutation equivariant over time except the positional encoding, and every pooling is
// permutation invariant: without positional encoding the model cannot tell the order of the steps.
// After a forward, attention_map(b) (of the first block) is the attention of sequence b (query steps x key steps, heads
// averaged; head h alone with attention_map(b, h)), and pooling_weights(b) the weights of weighted pooling.

#include <seqattn/layers/activation.hpp>
#include <seqattn/layers/batch_norm.hpp>
#include <seqattn/layers/conv1d.hpp>
#include <seqattn/layers/dense.hpp>
#include <seqattn/layers/dropout.hpp>
#include <seqattn/layers/global_pooling.hpp>
#include <seqattn/layers/layer_norm.hpp>
#include <seqattn/layers/multi_head_attention.hpp>
#include <seqattn/layers/pooling.hpp>
#include <seqattn/layers/positional_encoding.hpp>
#include <seqattn/layers/residual.hpp>
#include <seqattn/layers/seq_self_attention.hpp>
#include <seqattn/layers/seq_weighted_attention.hpp>
#include <seqattn/model/sequential.hpp>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace tsc {

using seqattn::Index;

enum class AttentionKind { MultiHead, SelfAttention };
enum class Pooling { Max, Mean, Weighted };
enum class FrontEnd { Dense, Conv };

inline const char* to_string(AttentionKind a) { return a == AttentionKind::MultiHead ? "mha" : "self"; }
inline const char* to_string(Pooling p) { return p == Pooling::Max ? "max" : p == Pooling::Mean ? "mean" : "weighted"; }

inline const char* to_string(FrontEnd f) { return f == FrontEnd::Dense ? "dense" : "conv"; }

inline FrontEnd parse_front_end(const std::string& s) {
  if (s == "dense") return FrontEnd::Dense;
  if (s == "conv") return FrontEnd::Conv;
  throw std::invalid_argument("unknown front end '" + s + "' (expected dense or conv)");
}
inline AttentionKind parse_attention(const std::string& s) {
  if (s == "mha") return AttentionKind::MultiHead;
  if (s == "self") return AttentionKind::SelfAttention;
  throw std::invalid_argument("unknown attention '" + s + "' (expected mha or self)");
}
inline Pooling parse_pooling(const std::string& s) {
  if (s == "max") return Pooling::Max;
  if (s == "mean") return Pooling::Mean;
  if (s == "weighted") return Pooling::Weighted;
  throw std::invalid_argument("unknown pooling '" + s + "' (expected max, mean or weighted)");
}

struct ModelConfig {
  Index features = 1;
  Index classes = 2;
  Index d_model = 32;
  AttentionKind attention = AttentionKind::MultiHead;
  Index heads = 4;   // MultiHeadAttention
  Index units = 32;  // SeqSelfAttention (additive)
  Index width = 0;   // SeqSelfAttention attention_width (0: global)
  bool positional = true;
  Pooling pooling = Pooling::Max;
  bool residual = true;
  Index ffn = 0;  // hidden units of the feed-forward block, 0: no block
  FrontEnd front_end = FrontEnd::Dense;
  std::vector<Index> conv_kernels{7, 5, 3};  // FrontEnd::Conv: one convolution block per kernel size
  Index downsample = 1;                      // average pooling of this size before the attention (1: none)
  Index blocks = 1;                          // attention (+ feed-forward) blocks
  double dropout = 0.0;                      // before the pooling (Train only)
  std::uint64_t seed = 1;
};

class Classifier {
 public:
  using Net = seqattn::Sequential<float>;
  using MHA = seqattn::MultiHeadAttention<float>;
  using SSA = seqattn::SeqSelfAttention<float>;

  explicit Classifier(const ModelConfig& config) : config_(config), net_(config.features) {
    using namespace seqattn;
    manual_seed(config.seed);  // the same weights for the same configuration and seed
    if (config.blocks < 1) throw std::invalid_argument("Classifier: expected blocks >= 1 but got " + std::to_string(config.blocks));
    if (config.front_end == FrontEnd::Dense) {
      net_.add<Dense<float>>(config.d_model);
    } else {
      if (config.conv_kernels.empty()) throw std::invalid_argument("Classifier: the conv front end needs kernel sizes");
      for (const Index k : config.conv_kernels) {
        net_.add<Conv1D<float>>(config.d_model, k, Conv1DOptions().padding(Padding::Same).use_bias(false));
        net_.add<BatchNorm<float>>();
        net_.add<ActivationLayer<float>>(Activation::ReLU);
      }
    }
    if (config.downsample > 1)
      net_.add<AvgPool1D<float>>(config.downsample, PoolOptions().partial_windows(true));
    if (config.positional) net_.add<SinusoidalPositionalEncoding<float>>();
    attention_index_ = net_.size();
    for (Index block = 0; block < config.blocks; ++block) {
      Net attention(config.d_model);
      if (config.attention == AttentionKind::MultiHead)
        attention.add<MHA>(config.heads);
      else
        attention.add<SSA>(config.width > 0 ? SeqSelfAttentionOptions().units(config.units).attention_width(config.width)
                                            : SeqSelfAttentionOptions().units(config.units));
      if (config.residual)
        net_.add<Residual<float>>(std::move(attention));
      else
        net_.add(attention.layer(0).clone());
      net_.add<LayerNorm<float>>();
      if (config.ffn > 0) {
        Net ffn(config.d_model);
        ffn.add<Dense<float>>(config.ffn, Activation::ReLU);
        ffn.add<Dense<float>>(config.d_model);
        net_.add<Residual<float>>(std::move(ffn));
        net_.add<LayerNorm<float>>();
      }
    }
    if (config.dropout > 0) net_.add<Dropout<float>>(config.dropout);
    pooling_index_ = net_.size();
    if (config.pooling == Pooling::Max) net_.add<GlobalMaxPool<float>>();
    if (config.pooling == Pooling::Mean) net_.add<GlobalAvgPool<float>>();
    if (config.pooling == Pooling::Weighted) net_.add<SeqWeightedAttention<float>>();
    net_.add<Dense<float>>(config.classes);
  }

  Net& net() { return net_; }
  const ModelConfig& config() const { return config_; }
  Index heads() const { return config_.attention == AttentionKind::MultiHead ? config_.heads : 1; }

  // Attention of sequence b in the last forward, (T, T): head h, or the mean of the heads when h < 0.
  seqattn::Matrix<float> attention_map(Index b, Index h = -1) {
    seqattn::Layer<float>& layer = attention_layer();
    if (auto* mha = dynamic_cast<MHA*>(&layer)) {
      if (h >= 0) return mha->attention(b, h);
      seqattn::Matrix<float> mean = mha->attention(b, 0);
      for (Index k = 1; k < mha->heads(); ++k) mean += mha->attention(b, k);
      return mean / static_cast<float>(mha->heads());
    }
    const auto& ssa = dynamic_cast<SSA&>(layer);
    const auto& A = ssa.attention_band();  // (B, T, W): column j of row t is key band().start(t) + j
    const Index T = A.dimension(1), W = A.dimension(2);
    if (b < 0 || b >= A.dimension(0)) throw std::out_of_range("attention_map: no sequence " + std::to_string(b));
    seqattn::Matrix<float> m = seqattn::Matrix<float>::Zero(T, T);
    for (Index t = 0; t < T; ++t)
      for (Index j = 0; j < W; ++j) {
        const Index s = ssa.band().start(t) + j;
        if (s >= 0 && s < T) m(t, s) = A(b, t, j);
      }
    return m;
  }

  // Weights of weighted pooling for sequence b in the last forward, (T); empty for max and mean pooling.
  std::vector<float> pooling_weights(Index b) {
    std::vector<float> w;
    if (config_.pooling != Pooling::Weighted) return w;
    const auto& a = net_.layer_as<seqattn::SeqWeightedAttention<float>>(pooling_index_).attention();  // (B, T)
    if (b < 0 || b >= a.rows()) throw std::out_of_range("pooling_weights: no sequence " + std::to_string(b));
    for (Index t = 0; t < a.cols(); ++t) w.push_back(a(b, t));
    return w;
  }

 private:
  seqattn::Layer<float>& attention_layer() {
    if (config_.residual) return net_.layer_as<seqattn::Residual<float>>(attention_index_).body().layer(0);
    return net_.layer(attention_index_);
  }

  ModelConfig config_;
  Net net_;
  Index attention_index_ = 0, pooling_index_ = 0;
};

}  // namespace tsc
