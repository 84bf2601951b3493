#pragma once
/// \file
/// attention_maps(model): every layer of a model whose attention weights can be read (core/attention_map.hpp), in
/// the order of the forward, each with the path that names it in params(): "2.seq_self_attention",
/// "1.residual.0.multi_head_attention", "3.transformer_encoder". Looks inside Sequential and Residual;
/// TransformerEncoderBlock and TransformerDecoderBlock are found as leaves (their map is their self-attention's;
/// the decoder's cross_attention_map(b, h) is read from the block). After a forward, plot or log them:
///
/// ```unparsed
///   for (const auto& found : attention_maps(model))
///     for (Index h = 0; h < found.map->attention_heads(); ++h) save(found.path, found.map->attention_map(b, h));
/// ```

#include <string>
#include <vector>

#include "seqattn/core/attention_map.hpp"
#include "seqattn/layers/residual.hpp"
#include "seqattn/model/sequential.hpp"

namespace seqattn {

/// One layer of a model whose attention weights can be read.
template <class S>
struct FoundAttentionMap {
  std::string path;  ///< "2.seq_self_attention"
  const AttentionMap<S>* map;  ///< valid while the model lives
};

namespace detail {
template <class S>
void collect_attention_maps(const Sequential<S>& model, const std::string& prefix,
                            std::vector<FoundAttentionMap<S>>& found) {
  for (Index i = 0; i < model.size(); ++i) {
    const Layer<S>& layer = model.layer(i);
    const std::string path = prefix + std::to_string(i) + "." + layer.name();
    if (const auto* map = dynamic_cast<const AttentionMap<S>*>(&layer)) found.push_back({path, map});
    if (const auto* nested = dynamic_cast<const Sequential<S>*>(&layer)) collect_attention_maps(*nested, path + ".", found);
    if (const auto* residual = dynamic_cast<const Residual<S>*>(&layer))
      collect_attention_maps(residual->body(), path + ".", found);
  }
}
}  // namespace detail

/// Every layer of `model` whose attention weights can be read, in forward order (see the file documentation).
template <class S>
std::vector<FoundAttentionMap<S>> attention_maps(const Sequential<S>& model) {
  std::vector<FoundAttentionMap<S>> found;
  detail::collect_attention_maps(model, "", found);
  return found;
}

}  // namespace seqattn
