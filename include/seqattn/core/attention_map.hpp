#pragma once
/// \file
/// AttentionMap\<S>: the one way to read the attention weights of a layer's last forward, whatever the layer.
/// Every attention layer implements it beside its own accessor (attention(), kept as it was):
///
/// ```unparsed
///   attention_heads()     H: the number of maps per sequence (MultiHeadAttention's heads; 1 for the others)
///   attention_map(b, h)   the weights of head h of sequence b as a (rows, columns) matrix in which EACH ROW IS ONE
///                         SOFTMAX: row r holds the weights that output r spreads over the columns (they sum to 1,
///                         or are all 0 for a masked or padded row). A copy, safe to keep.
///   attention_axes()      what the rows and columns are, for labels: {"query step", "key step"}.
///   average_attention_map(b)  the mean of the H maps of sequence b (torch's average_attn_weights=True); rows
///                         still sum to 1 (or 0 where every head masks the row)
/// ```
/// The maps per layer:
///
/// ```unparsed
///   SeqSelfAttention, MultiHeadAttention, TransformerEncoderBlock  (Tq, Tk)  query step x key step
///   TransformerDecoderBlock                                       (T, T)   its self-attention (cross_attention_map:
///                                                                          (T, Tm), target step x memory step)
///   (Residual)ScaledDotProductAttention                            (Tq, Tk)  query step x key step
///   SeqWeightedAttention, LastStepAttention                         (1, T)    the pool x step
///   FeatureAttention                                                (T, F)    step x feature
///   TemporalAttention                                               (F, T0)   feature x step
/// ```
/// b and h out of range throw ShapeError naming the layer; reading before any forward, or from a layer that keeps no
/// weights (MultiHeadAttention with need_weights false), throws an Error naming the layer.
/// model/attention_maps.hpp finds every AttentionMap in a model (attention_maps(model)).

#include <string>
#include <utility>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/tensor.hpp"

namespace seqattn {

/// The names of an attention map's axes, for plots and summaries.
struct AttentionAxes {
  /// What a row is ("query step").
  std::string rows;
  /// What a column is ("key step").
  std::string columns;
};

/// The interface of the layers whose attention weights can be read after a forward; see the file documentation.
template <class S>
class AttentionMap {
 public:
  virtual ~AttentionMap() = default;
  /// The number of heads whose maps attention_map(b, h) returns (1 for single-head layers).
  virtual Index attention_heads() const { return 1; }
  /// (rows, columns) weights of head h of sequence b of the last forward (see the file comment).
  virtual Matrix<S> attention_map(Index b, Index h = 0) const = 0;
  /// The names of the rows and columns of the maps (default: query step, key step).
  virtual AttentionAxes attention_axes() const { return {"query step", "key step"}; }
  /// Mean over the heads of attention_map(b, h).
  Matrix<S> average_attention_map(Index b) const {
    Matrix<S> mean = attention_map(b, 0);
    const Index heads = attention_heads();
    for (Index h = 1; h < heads; ++h) mean += attention_map(b, h);
    if (heads > 1) mean /= static_cast<S>(heads);
    return mean;
  }

 protected:
  /// ShapeError unless 0 \<= b \< batch and 0 \<= h \< attention_heads(); `who` is the layer's describe().
  void check_map_index(const std::string& who, Index b, Index h, Index batch) const {
    if (b < 0 || b >= batch)
      detail::throw_shape(who, ": attention_map sequence expected 0 <= b < ", batch, " (the last forward's batch) but got ",
                          b);
    if (h < 0 || h >= attention_heads())
      detail::throw_shape(who, ": attention_map head expected 0 <= h < ", attention_heads(), " but got ", h);
  }
};

}  // namespace seqattn
