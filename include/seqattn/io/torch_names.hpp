#pragma once
/// \file
/// How seqattn tensors map to PyTorch state_dict tensors, for safetensors import and export
/// (io/safetensors.hpp). A mapping function receives a TensorRef (one seqattn parameter or buffer) and returns
/// a TorchName: the PyTorch tensor it lives in and how it is laid out there.
///
/// Default mapping (default_torch_name). \<p> is the path of Sequential indices ("3", nested "1.0"; empty for a
/// model that is a single layer); the PyTorch model is the same nn.Sequential (nested alike) of the modules below.
///
/// ```unparsed
///   seqattn layer          tensor (shape)                    PyTorch module          tensor                transform
///   dense                  W (in, out)                       nn.Linear               <p>.weight (out, in)  transposed
///                          b (out)                                                   <p>.bias
///   conv1d                 W (k*in, filters)                 nn.Conv1d               <p>.weight (filters, in, k)
///                                                                                      W viewed as (k, in, filters), axes reversed
///                          b (filters)                                               <p>.bias
///   multi_head_attention   Wq, Wk, Wv (d, d)                 nn.MultiheadAttention   <p>.in_proj_weight (3d, d)
///                                                            (batch_first=True)        = [Wq^T; Wk^T; Wv^T]
///                          bq, bk, bv (d)                                            <p>.in_proj_bias (3d) = [bq; bk; bv]
///                          Wo (d, d)                                                 <p>.out_proj.weight   transposed
///                          bo (d)                                                    <p>.out_proj.bias
///   layer_norm             gamma, beta (F)                   nn.LayerNorm            <p>.weight, <p>.bias
///   batch_norm             gamma, beta (F)                   nn.BatchNorm1d          <p>.weight, <p>.bias
///                          running_mean, running_var (F)                             <p>.running_mean, <p>.running_var
///                                                                                    (<p>.num_batches_tracked: ignored
///                                                                                     on import, not exported)
///   embedding              embeddings (vocab, dim)           nn.Embedding            <p>.weight
///   position_embedding     embeddings (max_length, d)        nn.Embedding            <p>.weight
///   transformer_encoder    mha.X                             nn.TransformerEncoder-  <p>.self_attn.<as multi_head_attention>
///                          ln1.X, ln2.X                        Layer (batch_first)   <p>.norm1.<as layer_norm>, <p>.norm2...
///                          ffn1.X, ffn2.X                                            <p>.linear1.<as dense>, <p>.linear2...
///   transformer_decoder    self_mha.X, cross_mha.X           nn.TransformerDecoder-  <p>.self_attn.X, .multihead_attn.X
///                          ln1.X, ln2.X, ln3.X                 Layer (batch_first)   <p>.norm1.X ... <p>.norm3.X
///                          ffn1.X, ffn2.X                    (memory_features = d)   <p>.linear1.X, <p>.linear2.X
///   any other layer        X                                 (no PyTorch twin)       <p>.X                 unchanged
///
/// ```
/// The default assumes self-attention shapes for multi_head_attention (key_features == in_features ==
/// output_features == heads * head_size, as torch's packed in_proj requires); for cross-attention (kdim/vdim)
/// pass a mapping to q_proj_weight, k_proj_weight, v_proj_weight. Layers without a PyTorch twin
/// (seq_self_attention, seq_weighted_attention, feature_attention, temporal_attention) keep their seqattn
/// names and layouts; so do the body tensors of a residual ("\<p>.0.conv1d.W"), whose PyTorch form is custom.
/// Write your own mapping as a function TensorRef -> TorchName, falling back to default_torch_name.
///
/// lstm, gru, bidirectional (layers/lstm.hpp, gru.hpp, bidirectional.hpp) keep their seqattn names too. Their
/// relation to torch.nn.LSTM / torch.nn.GRU (batch_first=True; bidirectional: "forward." \<-> *_l0,
/// "backward." \<-> *_l0_reverse) is not expressible as a TorchName, so there is no default mapping:
///
/// ```unparsed
///   lstm  kernel (F, 4U)           = weight_ih_l0^T   (same gate order: Keras i, f, c, o = torch i, f, g, o)
///         recurrent_kernel (U, 4U) = weight_hh_l0^T
///         bias (4U)                = bias_ih_l0 + bias_hh_l0       (one seqattn tensor is the SUM of two)
///   gru   kernel (F, 3U)           = weight_ih_l0^T with the gate blocks permuted: Keras z, r, h <- torch
///                                    blocks 1, 0, 2 (torch order r, z, n)          (a block permutation)
///         recurrent_kernel (U, 3U) = weight_hh_l0^T, permuted alike
///         bias (2, 3U)             = [bias_ih_l0; bias_hh_l0], each permuted alike (reset_after=True)
/// ```
/// io/torch_recurrent.hpp's set_from_torch(layer, tensors) converts torch's tensors this way (LSTM, GRU
/// reset_after=True, Bidirectional; GRU reset_after=False has no torch twin). Supporting it here needs two
/// TorchName features: a permutation of the `parts` blocks, and an import that sums two tensors (export: the
/// whole bias to bias_ih_l0 and zeros to bias_hh_l0).

#include <string>
#include <vector>

#include "seqattn/core/config.hpp"

namespace seqattn {

/// One seqattn tensor, as the mapping function sees it.
struct TensorRef {
  std::string name;  ///< full seqattn name: "3.multi_head_attention.Wq"
  std::string path;  ///< Sequential indices: "3" ("1.0" nested; "" for a single-layer model)
  std::string layer;  ///< layer type name (Layer::name()): "multi_head_attention"
  std::string param;  ///< the layer's own tensor name: "Wq"
  std::vector<Index> shape;  ///< seqattn shape: (d, d)
  Index in_features = 0;  ///< the layer's input features (Conv1D: k = shape[0] / in_features)
  bool buffer = false;  ///< a buffer (not trained), e.g. running_mean
};

/// Where a seqattn tensor lives in the PyTorch state_dict.
struct TorchName {
  std::string name;  ///< PyTorch tensor name: "3.in_proj_weight"
  std::vector<Index> view;  ///< the seqattn values viewed with this shape first (same count; empty: own shape)
  bool reverse_axes = false;  ///< then stored with the axes reversed (2-d: transposed)
  ///@{
  /// Block `part` of `parts` equal blocks along the PyTorch tensor's first axis.
  int part = 0, parts = 1;
  ///@}
};

namespace detail {

// The mapping of one tensor `param` of a layer of type `layer`; `p` prefixes the PyTorch name.
inline TorchName torch_leaf_name(const std::string& p, const std::string& layer, const std::string& param,
                                 const std::vector<Index>& shape, Index in_features) {
  TorchName out;
  out.name = p + param;  // default: unchanged
  auto is = [&](const char* l, const char* q) { return layer == l && param == q; };
  if (is("dense", "W") || is("conv1d", "W")) {
    out.name = p + "weight";
    out.reverse_axes = true;
    if (layer == "conv1d" && shape.size() == 2 && in_features > 0 && shape[0] % in_features == 0)
      out.view = {shape[0] / in_features, in_features, shape[1]};
  } else if (is("dense", "b") || is("conv1d", "b")) {
    out.name = p + "bias";
  } else if (layer == "multi_head_attention") {
    if (param == "Wq" || param == "Wk" || param == "Wv" || param == "bq" || param == "bk" || param == "bv") {
      out.name = p + (param[0] == 'W' ? "in_proj_weight" : "in_proj_bias");
      out.reverse_axes = param[0] == 'W';
      out.part = param[1] == 'q' ? 0 : param[1] == 'k' ? 1 : 2;
      out.parts = 3;
    } else if (param == "Wo") {
      out.name = p + "out_proj.weight";
      out.reverse_axes = true;
    } else if (param == "bo") {
      out.name = p + "out_proj.bias";
    }
  } else if (layer == "layer_norm" || layer == "batch_norm") {
    if (param == "gamma") out.name = p + "weight";
    if (param == "beta") out.name = p + "bias";
  } else if (is("embedding", "embeddings") || is("position_embedding", "embeddings")) {
    out.name = p + "weight";
  } else if (layer == "transformer_encoder") {
    // "mha.Wq" -> self_attn.in_proj_weight, "ln1.gamma" -> norm1.weight, "ffn1.W" -> linear1.weight, ...
    static const struct {
      const char *ours, *layer, *theirs;
    } parts[] = {{"mha.", "multi_head_attention", "self_attn."}, {"ln1.", "layer_norm", "norm1."},
                 {"ln2.", "layer_norm", "norm2."},           {"ffn1.", "dense", "linear1."},
                 {"ffn2.", "dense", "linear2."}};
    for (const auto& part : parts) {
      const std::string prefix = part.ours;
      if (param.compare(0, prefix.size(), prefix) == 0)
        return torch_leaf_name(p + part.theirs, part.layer, param.substr(prefix.size()), shape, in_features);
    }
  } else if (layer == "transformer_decoder") {
    // "self_mha.Wq" -> self_attn.in_proj_weight, "cross_mha.Wk" -> multihead_attn.in_proj_weight, "ln3.gamma" ->
    // norm3.weight, "ffn1.W" -> linear1.weight, ...
    static const struct {
      const char *ours, *layer, *theirs;
    } parts[] = {{"self_mha.", "multi_head_attention", "self_attn."},
                 {"cross_mha.", "multi_head_attention", "multihead_attn."},
                 {"ln1.", "layer_norm", "norm1."},
                 {"ln2.", "layer_norm", "norm2."},
                 {"ln3.", "layer_norm", "norm3."},
                 {"ffn1.", "dense", "linear1."},
                 {"ffn2.", "dense", "linear2."}};
    for (const auto& part : parts) {
      const std::string prefix = part.ours;
      if (param.compare(0, prefix.size(), prefix) == 0)
        return torch_leaf_name(p + part.theirs, part.layer, param.substr(prefix.size()), shape, in_features);
    }
  }
  return out;
}

}  // namespace detail

/// The PyTorch state_dict name of a seqattn tensor (torch.nn names of the equivalent modules).
inline TorchName default_torch_name(const TensorRef& t) {
  return detail::torch_leaf_name(t.path.empty() ? "" : t.path + ".", t.layer, t.param, t.shape, t.in_features);
}

/// Default import filter: PyTorch tensors that have no seqattn counterpart and are skipped.
inline bool default_torch_ignore(const std::string& torch_name) {
  const std::string suffix = "num_batches_tracked";
  return torch_name.size() >= suffix.size() &&
         torch_name.compare(torch_name.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace seqattn
