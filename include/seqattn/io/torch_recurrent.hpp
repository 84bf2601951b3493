#pragma once
/// \file
/// Setting LSTM, GRU and Bidirectional (layers/lstm.hpp, gru.hpp, bidirectional.hpp) from torch.nn.LSTM /
/// torch.nn.GRU tensors (batch_first=True, one layer). io/torch_names.hpp has no default mapping for them (one
/// seqattn tensor is the sum of two torch tensors, the GRU gates are permuted): these helpers do the conversion.
///
/// ```unparsed
///   TorchTensors<S> t = {{"weight_ih_l0", ...}, {"weight_hh_l0", ...}, {"bias_ih_l0", ...}, {"bias_hh_l0", ...}};
///   set_from_torch(lstm, t);          // LSTM<S> or GRU<S>
///   set_from_torch(bidirectional, t); // forward <- *_l0, backward <- *_l0_reverse
///   set_from_torch(layer, t, "rnn."); // names with a prefix (a state_dict entry "rnn.weight_ih_l0")
///
/// ```
/// Shapes (G = 4 for LSTM, 3 for GRU): weight_ih_l0 (G*U, F), weight_hh_l0 (G*U, U), bias_ih_l0 and bias_hh_l0
/// (G*U) given as a (G*U, 1) or (1, G*U) matrix. Biases are required when the layer has use_bias and refused when
/// it has not (torch bias=False). Conversion:
///
/// ```unparsed
///   LSTM  kernel = weight_ih^T, recurrent_kernel = weight_hh^T (same gate order i, f, g, o = Keras i, f, c, o),
///         bias = bias_ih + bias_hh (seqattn keeps the sum: export is not a round trip of the two halves)
///   GRU   (reset_after true only; torch resets after the product) kernel = weight_ih^T and recurrent_kernel =
///         weight_hh^T with the gate blocks permuted (Keras z, r, h <- torch blocks 1, 0, 2 of r, z, n);
///         bias (2, 3U) = [bias_ih; bias_hh], each permuted alike
/// ```
/// Errors (ConfigError / ShapeError) name the tensor: "set_from_torch(GRU): 'weight_hh_l0' expected shape
/// (12, 4) but got (12, 3)"; a missing tensor, a GRU with reset_after(false), a Bidirectional around other
/// layers. Nothing is written unless every tensor fits.

#include <map>
#include <string>

#include "seqattn/core/errors.hpp"
#include "seqattn/layers/bidirectional.hpp"
#include "seqattn/layers/gru.hpp"
#include "seqattn/layers/lstm.hpp"

namespace seqattn {

/// PyTorch tensors by state_dict name.
template <class S>
using TorchTensors = std::map<std::string, Matrix<S>>;

namespace detail {

inline std::string torch_shape_string(Index r, Index c) {
  return "(" + std::to_string(r) + ", " + std::to_string(c) + ")";
}

// The tensor `name` of t, checked to be (rows, cols) (vector: (rows) as either column or row).
template <class S>
const Matrix<S>& torch_tensor(const std::string& who, const TorchTensors<S>& t, const std::string& name, Index rows,
                              Index cols, bool vector) {
  const auto it = t.find(name);
  if (it == t.end()) throw_config(who, ": tensor '", name, "' is missing");
  const Matrix<S>& m = it->second;
  const bool ok =
      vector ? (m.size() == rows && (m.rows() == 1 || m.cols() == 1)) : (m.rows() == rows && m.cols() == cols);
  if (!ok)
    throw_shape(who, ": '", name, "' expected shape ",
                vector ? "(" + std::to_string(rows) + ")" : torch_shape_string(rows, cols), " but got ",
                torch_shape_string(m.rows(), m.cols()));
  return m;
}

// torch (G*U, n) gate rows -> Keras (n, G*U) gate columns; GRU permutes the first two blocks.
template <class S>
Matrix<S> torch_to_keras_gates(const Matrix<S>& w, Index G, bool gru) {
  const Index U = w.rows() / G;
  Matrix<S> k(w.cols(), w.rows());
  for (Index g = 0; g < G; ++g) {
    const Index from = gru && g < 2 ? 1 - g : g;
    k.middleCols(g * U, U) = w.middleRows(from * U, U).transpose();
  }
  return k;
}

// Checks every tensor, then (write) sets the layer.
template <class S>
void set_recurrent_from_torch(Layer<S>& layer, const TorchTensors<S>& t, const std::string& prefix,
                              const std::string& sfx, bool write) {
  auto* lstm = dynamic_cast<LSTM<S>*>(&layer);
  auto* gru = dynamic_cast<GRU<S>*>(&layer);
  if (!lstm && !gru)
    throw_config("set_from_torch: expected an LSTM, GRU or Bidirectional of them but got ", layer.describe());
  const std::string who = std::string("set_from_torch(") + (lstm ? "LSTM" : "GRU") + ")";
  if (gru && !gru->options().reset_after())
    throw_config(who,
                 ": reset_after=false has no torch.nn.GRU equivalent (torch applies the reset gate after the "
                 "recurrent product, as reset_after=true)");
  const Index G = lstm ? 4 : 3, U = lstm ? lstm->units() : gru->units(), F = layer.in_features();
  const bool bias = lstm ? lstm->options().use_bias() : gru->options().use_bias();
  const Matrix<S>& wi = torch_tensor(who, t, prefix + "weight_ih_l0" + sfx, G * U, F, false);
  const Matrix<S>& wh = torch_tensor(who, t, prefix + "weight_hh_l0" + sfx, G * U, U, false);
  const Matrix<S>* bi = nullptr;
  const Matrix<S>* bh = nullptr;
  if (bias) {
    bi = &torch_tensor(who, t, prefix + "bias_ih_l0" + sfx, G * U, 1, true);
    bh = &torch_tensor(who, t, prefix + "bias_hh_l0" + sfx, G * U, 1, true);
  } else {
    for (const char* n : {"bias_ih_l0", "bias_hh_l0"})
      if (t.count(prefix + n + sfx))
        throw_config(who, ": tensor '", prefix, n, sfx, "' given but the layer has use_bias=false");
  }
  if (!write) return;
  auto column = [](const Matrix<S>* v) { return Matrix<S>(Eigen::Map<const Matrix<S>>(v->data(), v->size(), 1)); };
  if (lstm) {
    lstm->kernel() = wi.transpose();
    lstm->recurrent_kernel() = wh.transpose();
    if (bias) lstm->bias() = column(bi) + column(bh);
  } else {
    gru->kernel() = torch_to_keras_gates<S>(wi, 3, true);
    gru->recurrent_kernel() = torch_to_keras_gates<S>(wh, 3, true);
    if (bias) {
      gru->bias().row(0) = torch_to_keras_gates<S>(column(bi), 3, true);
      gru->bias().row(1) = torch_to_keras_gates<S>(column(bh), 3, true);
    }
  }
}

}  // namespace detail

/// Sets an LSTM\<S>, GRU\<S> (reset_after) or a Bidirectional of them from torch tensors (see above).
template <class S>
void set_from_torch(Layer<S>& layer, const TorchTensors<S>& tensors, const std::string& prefix = "") {
  if (auto* bi = dynamic_cast<Bidirectional<S>*>(&layer)) {
    for (bool write : {false, true}) {  // check both directions before writing either
      detail::set_recurrent_from_torch(bi->forward_layer(), tensors, prefix, "", write);
      detail::set_recurrent_from_torch(bi->backward_layer(), tensors, prefix, "_reverse", write);
    }
    return;
  }
  detail::set_recurrent_from_torch(layer, tensors, prefix, "", true);
}

}  // namespace seqattn
