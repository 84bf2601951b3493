#pragma once
// Seeded random models for the property tests (tests/unit/test_property_*.cpp, test_numerical_robustness.cpp).
//   random_model<S>(seed, options, weight_seed)   a random stack of 1..max_layers layers drawn from every layer
//       type of the library with random options (activations, biases, widths, heads, paddings, strides, modes,
//       regularizers, dropout rates, attention windows; Masking with a mask_value random values never hit), nested
//       Sequentials and Residual blocks with random bodies. The structure depends on `seed` only; every layer's weights
//       are seeded from `weight_seed` (default: seed), so two calls with the same seed and different weight seeds give
//       the same architecture with other weights.
//   RandomModelOptions().causal(true)   only layers whose output at step t reads input steps <= t (in
//       Mode::Infer): Dense, activations, Dropout, LayerNorm, RMSNorm, BatchNorm, causal Conv1D (stride 1),
//       positional encodings, history_only SeqSelfAttention, causal MultiHeadAttention and
//       TransformerEncoderBlock, per-step FeatureAttention, LSTM and GRU with return_sequences, Residual and
//       Sequential of those.
//   RandomModelOptions().fixed_time(true)   also TemporalAttention (the input must keep exactly `steps` steps).
//   random_input<S>(model, B, T, seed, valid_lengths)   values in [-1, 1] (or ids when the model starts with an
//       Embedding); random_lengths(...) lengths in [0, T] including 0 and 1, with `full` of them equal to T.
// RandomModel::recipe lists the layers (describe()), for failure messages.

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/random.hpp"
#include "seqattn/layers/batch_norm.hpp"
#include "seqattn/layers/bidirectional.hpp"
#include "seqattn/layers/conv1d.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/layers/dropout.hpp"
#include "seqattn/layers/embedding.hpp"
#include "seqattn/layers/feature_attention.hpp"
#include "seqattn/layers/gated_pooling.hpp"
#include "seqattn/layers/gru.hpp"
#include "seqattn/layers/last_step_attention.hpp"
#include "seqattn/layers/layer_norm.hpp"
#include "seqattn/layers/lstm.hpp"
#include "seqattn/layers/masking.hpp"
#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/layers/pooling.hpp"
#include "seqattn/layers/positional_encoding.hpp"
#include "seqattn/layers/residual.hpp"
#include "seqattn/layers/rms_norm.hpp"
#include "seqattn/layers/seq_self_attention.hpp"
#include "seqattn/layers/seq_weighted_attention.hpp"
#include "seqattn/layers/temporal_attention.hpp"
#include "seqattn/layers/transformer_encoder.hpp"
#include "seqattn/model/sequential.hpp"

namespace seqattn::testing {

struct RandomModelOptions {
  SEQATTN_ARG(bool, causal, false)
  SEQATTN_ARG(bool, fixed_time, false)
  // With causal: sometimes ends the model with a layer that pools time (global max or average pooling, LastStep,
  // SeqWeightedAttention, an LSTM or GRU without return_sequences) and then per-step layers: every model a
  // Stream can run (model/stream.hpp).
  SEQATTN_ARG(bool, pooled_tail, false)
  SEQATTN_ARG(bool, allow_embedding, true)
  SEQATTN_ARG(bool, allow_batch_norm, true)  // false: no BatchNorm (a Train batch of one step is then fine)
  SEQATTN_ARG(Index, steps, 6)        // the T the model is built for (windows and Valid convolutions fit it)
  SEQATTN_ARG(Index, max_layers, 5)
  SEQATTN_ARG(Index, max_features, 8)
};

template <class S>
struct RandomModel {
  Sequential<S> model{1};
  Index vocab = 0;  // > 0: the model starts with an Embedding; inputs are ids in [1, vocab)
  std::string recipe;
};

namespace random_model_detail {

template <class S>
class Builder {
 public:
  Builder(std::uint64_t seed, const RandomModelOptions& o, std::uint64_t weight_seed)
      : rng_(seed * 0x9E3779B97F4A7C15ULL + 1), o_(o), weight_seed_(weight_seed * 1000003ULL) {}

  RandomModel<S> build() {
    RandomModel<S> out;
    Index F = 1 + static_cast<Index>(rng_.below(static_cast<std::uint64_t>(o_.max_features())));
    if (o_.allow_embedding() && coin(0.12)) {
      out.vocab = 3 + static_cast<Index>(rng_.below(6));
      out.model = Sequential<S>(1);
      F = 2 + static_cast<Index>(rng_.below(5));
      out.model.template add<Embedding<S>>(out.vocab, F, EmbeddingOptions().mask_zero(coin(0.5)).seed(next()));
    } else {
      out.model = Sequential<S>(F);
    }
    T_ = o_.steps();
    has_time_ = true;
    const Index n = 1 + static_cast<Index>(rng_.below(static_cast<std::uint64_t>(o_.max_layers())));
    for (Index i = 0; i < n; ++i) add_random(out.model, /*depth=*/0, /*keep_shape=*/false);
    if (o_.pooled_tail() && coin(0.4)) add_pooled_tail(out.model);
    out.recipe = recipe_of(out.model, "\n  ");
    try {
      out.model.out_time(o_.steps());
    } catch (const Error& e) {  // a bug of the builder: say which model
      throw Error(detail::cat("random_model: the model does not take ", o_.steps(), " steps (", e.what(), "):", out.recipe));
    }
    return out;
  }

 private:
  // One line per layer, nested Sequentials indented.
  static std::string recipe_of(const Sequential<S>& m, const std::string& indent) {
    std::string out;
    for (Index i = 0; i < m.size(); ++i) {
      out += detail::cat(indent, i, " ", m.layer(i).describe());
      if (const auto* inner = dynamic_cast<const Sequential<S>*>(&m.layer(i))) out += recipe_of(*inner, indent + "  ");
    }
    return out;
  }
  bool coin(double p) { return rng_.uniform() < p; }
  Index pick(Index lo, Index hi) { return lo + static_cast<Index>(rng_.below(static_cast<std::uint64_t>(hi - lo + 1))); }
  std::uint64_t next() { return weight_seed_ + counter_++; }
  // Any activation (softmax only when `softmax`): the enum's values in order, softmax being the 6th.
  Activation activation(bool softmax) {
    const Index last = static_cast<Index>(Activation::Mish);
    const Index k = pick(0, softmax ? last : last - 1);
    return static_cast<Activation>(!softmax && k >= static_cast<Index>(Activation::Softmax) ? k + 1 : k);
  }
  Activation elementwise() { return activation(false); }
  Index features_cap(Index F) const { return std::min<Index>(F, o_.max_features()); }

  // A layer that pools time, then 0..2 per-step layers.
  void add_pooled_tail(Sequential<S>& m) {
    const Index k = pick(0, 5);
    if (k == 0) m.template add<GlobalMaxPool<S>>();
    if (k == 1) m.template add<GlobalAvgPool<S>>();
    if (k == 2) m.template add<LastStep<S>>();
    if (k == 3) m.template add<SeqWeightedAttention<S>>(SeqWeightedAttentionOptions().use_bias(coin(0.5)).seed(next()));
    if (k == 4)
      m.template add<LSTM<S>>(pick(1, o_.max_features()), LSTMOptions().return_sequences(false).use_bias(coin(0.8)).seed(next()));
    if (k == 5)
      m.template add<GRU<S>>(pick(1, o_.max_features()), GRUOptions().return_sequences(false).use_bias(coin(0.8)).seed(next()));
    T_ = 1;
    has_time_ = false;
    for (Index i = pick(0, 2); i > 0; --i) {
      const Index kind = pick(0, 3);
      if (kind == 0)
        m.template add<Dense<S>>(pick(1, o_.max_features()), DenseOptions().activation(activation(false)).seed(next()));
      if (kind == 1) m.template add<ActivationLayer<S>>(activation(true));
      if (kind == 2) {
        if (coin(0.3))
          m.template add<RMSNorm<S>>(RMSNormOptions().scale(coin(0.8)));
        else
          m.template add<LayerNorm<S>>(LayerNormOptions().scale(coin(0.8)).center(coin(0.8)));
      }
      if (kind == 3) m.template add<Dropout<S>>(0.3, DropoutOptions().seed(next()));
    }
  }

  // Appends one random layer to `m`. keep_shape: the layer must keep F and T (Residual bodies).
  void add_random(Sequential<S>& m, int depth, bool keep_shape) {
    const Index F = m.out_features();
    const bool causal = o_.causal();
    for (;;) {
      switch (pick(0, 22)) {
        case 0:
        case 1: {
          const Index units = keep_shape ? F : pick(1, o_.max_features());
          m.template add<Dense<S>>(units, DenseOptions().activation(activation(false)).use_bias(coin(0.8)).seed(next()));
          return;
        }
        case 2:
          m.template add<ActivationLayer<S>>(activation(true));
          return;
        case 3:
          m.template add<Dropout<S>>(0.5 * rng_.uniform(), DropoutOptions().seed(next()));
          return;
        case 4:
          if (coin(0.3)) {
            m.template add<RMSNorm<S>>(RMSNormOptions().eps(coin(0.5) ? 1e-6 : 1e-3).scale(coin(0.8)));
            return;
          }
          m.template add<LayerNorm<S>>(LayerNormOptions().eps(coin(0.5) ? 1e-5 : 1e-3).scale(coin(0.8)).center(coin(0.8)));
          return;
        case 5:
          if (!o_.allow_batch_norm()) break;
          m.template add<BatchNorm<S>>(BatchNormOptions().momentum(0.1 + 0.8 * rng_.uniform()).eps(coin(0.5) ? 1e-5 : 1e-3));
          return;
        case 6: {  // Conv1D
          if (!has_time_ && !coin(0.3)) break;
          const Index kernel = pick(1, 3);
          const Index dilation = kernel > 1 ? pick(1, 2) : 1;
          const Index rf = dilation * (kernel - 1) + 1;
          Padding padding = causal ? Padding::Causal : static_cast<Padding>(pick(0, 2));
          if (padding == Padding::Valid && (keep_shape || rf > T_)) padding = Padding::Same;
          const Index stride = (causal || keep_shape) ? 1 : pick(1, 2);
          const Index filters = keep_shape ? F : pick(1, o_.max_features());
          // residual (act(conv(x) + x)) when the shapes allow it
          const bool residual = filters == F && stride == 1 && padding != Padding::Valid && coin(0.3);
          m.template add<Conv1D<S>>(filters, kernel, Conv1DOptions().stride(stride).dilation(dilation).padding(padding)
                                                        .activation(elementwise()).use_bias(coin(0.8)).seed(next())
                                                        .residual(residual));
          T_ = padding == Padding::Valid ? (T_ - rf) / stride + 1 : (T_ + stride - 1) / stride;
          return;
        }
        case 7: {  // windowed pooling: reads steps after t
          if (causal || keep_shape || T_ < 2) break;
          const Index size = pick(1, std::min<Index>(3, T_));
          const Index stride = pick(1, size);
          const bool partial = coin(0.5);
          const PoolOptions po = PoolOptions().stride(stride).partial_windows(partial);
          if (coin(0.5))
            m.template add<MaxPool1D<S>>(size, po);
          else
            m.template add<AvgPool1D<S>>(size, po);
          T_ = partial ? (T_ + stride - 1) / stride : (T_ - size) / stride + 1;
          return;
        }
        case 8: {  // global pooling: removes time
          if (causal || keep_shape) break;
          const Index k = pick(0, 6);
          if (k == 0) m.template add<GlobalMaxPool<S>>();
          if (k == 1) m.template add<GlobalAvgPool<S>>();
          if (k == 2) m.template add<LastStep<S>>();
          if (k == 3) m.template add<SeqWeightedAttention<S>>(SeqWeightedAttentionOptions().use_bias(coin(0.5)).seed(next()));
          if (k == 5) m.template add<GatedMeanPool<S>>(GatedMeanPoolOptions().seed(next()));
          if (k == 6) m.template add<BertPool<S>>(BertPoolOptions().units(pick(0, o_.max_features())).seed(next()));
          if (k == 4) {
            const AttentionScore score = coin(0.5) ? AttentionScore::Luong : AttentionScore::Bahdanau;
            const Index units = pick(1, o_.max_features());
            m.template add<LastStepAttention<S>>(LastStepAttentionOptions().score(score).units(units).seed(next()));
          }
          T_ = 1;
          has_time_ = false;
          return;
        }
        case 9: {
          const bool concat = !keep_shape && coin(0.5) && F < o_.max_features();
          const Index d = concat ? pick(1, o_.max_features() - F) : 0;
          m.template add<SinusoidalPositionalEncoding<S>>(
              SinusoidalOptions().mode(concat ? PositionMode::Concat : PositionMode::Add).output_dim(d));
          return;
        }
        case 10: {
          const bool concat = !keep_shape && coin(0.5) && F < o_.max_features();
          const Index d = concat ? pick(1, o_.max_features() - F) : 0;
          m.template add<PositionEmbedding<S>>(T_ + pick(0, 2), PositionEmbeddingOptions()
                                                                    .mode(concat ? PositionMode::Concat : PositionMode::Add)
                                                                    .output_dim(d).seed(next()));
          return;
        }
        case 11:
        case 12: {  // SeqSelfAttention
          SeqSelfAttentionOptions so;
          so.units(pick(1, 6)).attention_type(coin(0.5) ? AttentionType::Additive : AttentionType::Multiplicative);
          so.history_only(causal || coin(0.3)).attention_activation(elementwise());
          if (coin(0.5)) so.attention_width(pick(1, 5));
          so.use_additive_bias(coin(0.7)).use_attention_bias(coin(0.7));
          if (coin(0.3)) so.attention_regularizer_weight(0.01 + 0.1 * rng_.uniform());
          if (coin(0.2)) so.kernel_regularizer({0.01, 0.01}).bias_regularizer({0.0, 0.02});
          m.template add<SeqSelfAttention<S>>(so.seed(next()));
          return;
        }
        case 13:
        case 14: {  // MultiHeadAttention
          MultiHeadAttentionOptions mo;
          Index heads = pick(1, 3);
          if (F % heads != 0 || coin(0.3)) mo.head_size(pick(1, 4));
          if (!keep_shape && coin(0.3)) mo.output_features(pick(1, o_.max_features()));
          mo.use_bias(coin(0.8)).causal(causal || coin(0.3)).activation(elementwise());
          if (mo.causal() && coin(0.4)) mo.attention_window(pick(1, T_ + 1));  // w > T: plain causal
          if (coin(0.3)) mo.attention_dropout(0.3 * rng_.uniform());
          m.template add<MultiHeadAttention<S>>(heads, mo.seed(next()));
          return;
        }
        case 15: {  // TransformerEncoderBlock
          Index heads = pick(1, 3);
          while (F % heads != 0) --heads;
          TransformerEncoderOptions to;
          to.dropout(coin(0.5) ? 0.2 * rng_.uniform() : 0.0)
              .attention_dropout(coin(0.3) ? 0.2 * rng_.uniform() : 0.0)
              .activation(coin(0.5) ? Activation::GELU : Activation::ReLU)
              .norm_first(coin(0.5))
              .causal(causal || coin(0.3));
          if (to.causal() && coin(0.4)) to.attention_window(pick(1, T_ + 1));
          m.template add<TransformerEncoderBlock<S>>(heads, pick(1, 8), to.seed(next()));
          return;
        }
        case 16: {  // FeatureAttention: shared averages over every valid step (not causal)
          const bool shared = !causal && coin(0.5);
          m.template add<FeatureAttention<S>>(FeatureAttentionOptions().shared(shared).use_bias(coin(0.7)).seed(next()));
          return;
        }
        case 17: {  // TemporalAttention: a fixed number of steps
          if (causal || !o_.fixed_time() || !has_time_) break;
          m.template add<TemporalAttention<S>>(T_, TemporalAttentionOptions().shared(coin(0.5)).use_bias(coin(0.7)).seed(next()));
          return;
        }
        case 18: {  // Residual around a random body that keeps the shape
          if (depth >= 2) break;
          Sequential<S> body(F);
          const Index n = pick(1, 2);
          for (Index i = 0; i < n; ++i) add_random(body, depth + 1, /*keep_shape=*/true);
          m.template add<Residual<S>>(std::move(body));
          return;
        }
        case 20: {  // LSTM or GRU: causal with return_sequences; without, the state at the last valid step
          const bool sequences = causal || keep_shape || coin(0.6);
          const Index units = keep_shape ? F : pick(1, o_.max_features());
          const Activation act = coin(0.7) ? Activation::Tanh : Activation::Sigmoid;
          if (coin(0.5))
            m.template add<LSTM<S>>(units, LSTMOptions().return_sequences(sequences).activation(act)
                                               .use_bias(coin(0.8)).unit_forget_bias(coin(0.5)).seed(next()));
          else
            m.template add<GRU<S>>(units, GRUOptions().return_sequences(sequences).activation(act).use_bias(coin(0.8)).seed(next()));
          if (!sequences) {
            T_ = 1;
            has_time_ = false;
          }
          return;
        }
        case 21: {  // Bidirectional LSTM or GRU: reads the future
          if (causal) break;
          const bool sequences = keep_shape || coin(0.6);
          const MergeMode merge =
              static_cast<MergeMode>(keep_shape ? pick(1, 3) : pick(0, 3));  // concat, sum, ave, mul
          const bool halves = merge != MergeMode::Concat;
          const Index units = keep_shape ? F : pick(1, std::max<Index>(1, o_.max_features() / (halves ? 1 : 2)));
          const BidirectionalOptions bo = BidirectionalOptions().merge_mode(merge);
          if (coin(0.5))
            m.template add<Bidirectional<S>>(units, LSTMOptions().return_sequences(sequences).seed(next()), bo);
          else
            m.template add<Bidirectional<S>>(units, GRUOptions().return_sequences(sequences).seed(next()), bo);
          if (!sequences) {
            T_ = 1;
            has_time_ = false;
          }
          return;
        }
        case 22: {  // Masking: mask_value 0.3125, which random values never hit exactly (so it keeps the lengths,
                    // zeroes the padded steps); it reads later steps
          if (causal || !has_time_) break;
          m.template add<Masking<S>>(0.3125);
          return;
        }
        case 19: {  // a nested Sequential
          if (depth >= 2) break;
          Sequential<S> inner(F);
          const Index n = pick(1, 3);
          for (Index i = 0; i < n; ++i) add_random(inner, depth + 1, keep_shape);
          m.add(inner.clone());
          return;
        }
      }
    }
  }

  Rng rng_;
  RandomModelOptions o_;
  std::uint64_t weight_seed_;
  std::uint64_t counter_ = 0;
  Index T_ = 0;
  bool has_time_ = true;
};

}  // namespace random_model_detail

template <class S>
RandomModel<S> random_model(std::uint64_t seed, const RandomModelOptions& options = RandomModelOptions()) {
  return random_model_detail::Builder<S>(seed, options, seed).build();
}
template <class S>
RandomModel<S> random_model(std::uint64_t seed, const RandomModelOptions& options, std::uint64_t weight_seed) {
  return random_model_detail::Builder<S>(seed, options, weight_seed).build();
}

// B lengths in [0, T], the first `full` of them T (so BatchNorm in Mode::Train always sees two valid steps),
// and 0 and 1 among the others when B allows.
inline std::vector<Index> random_lengths(Index B, Index T, std::uint64_t seed, Index full = 2) {
  Rng rng(seed);
  std::vector<Index> lengths(static_cast<size_t>(B));
  for (Index b = 0; b < B; ++b)
    lengths[static_cast<size_t>(b)] = b < full ? T : static_cast<Index>(rng.below(static_cast<std::uint64_t>(T + 1)));
  if (B > full) lengths[static_cast<size_t>(full)] = 0;
  if (B > full + 1) lengths[static_cast<size_t>(full + 1)] = std::min<Index>(1, T);
  return lengths;
}

// (B, T, in_features) of values in [-1, 1], or ids in [1, vocab) when the model starts with an Embedding.
template <class S>
Tensor3<S> random_input(const RandomModel<S>& m, Index B, Index T, std::uint64_t seed) {
  Tensor3<S> x(B, T, m.model.in_features());
  Rng rng(seed);
  for (Index i = 0; i < x.size(); ++i)
    x.data()[i] = m.vocab > 0 ? static_cast<S>(1 + rng.below(static_cast<std::uint64_t>(m.vocab - 1)))
                              : static_cast<S>(rng.uniform(-1.0, 1.0));
  return x;
}

}  // namespace seqattn::testing
