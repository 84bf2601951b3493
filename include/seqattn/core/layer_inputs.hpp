#pragma once
/// \file
/// LayerInputs\<S>: the inputs of one call of a layer with several inputs (core/layer.hpp, "Several inputs"): input
/// i is a borrowed tensor x (B, T_i, F_i) and its mask, both owned by the caller and alive for the call. A graph
/// node (model/graph.hpp) builds its list once and reuses it, so a steady run allocates nothing.
///
/// ```unparsed
///   const LayerInputs<float> in = {{&query, &query_mask}, {&memory, &memory_mask}};
///   const Tensor3<float>& y = cross_attention.forward(in, Mode::Train);
/// ```

#include <vector>

#include "seqattn/core/mask.hpp"
#include "seqattn/core/tensor.hpp"

namespace seqattn {

/// One input of a several-input call: the tensor and its mask (pointers, not owned).
template <class S>
struct LayerInput {
  const Tensor3<S>* x = nullptr;  ///< (B, T_i, F_i)
  const Mask* mask = nullptr;  ///< fits (B, T_i); never null
};

/// The inputs of a call, input 0 first.
template <class S>
using LayerInputs = std::vector<LayerInput<S>>;

}  // namespace seqattn
