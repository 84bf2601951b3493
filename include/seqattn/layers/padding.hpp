#pragma once
/// \file
/// Padding modes of the sliding-window layers (Conv1D) and their geometry, with Keras' definitions.
/// For a window of `kernel_size` taps spaced `dilation` apart (receptive field rf = dilation*(kernel_size-1)+1)
/// moved by `stride` over a sequence of L steps:
///
/// ```unparsed
///   Valid   no padding;               out = floor((L - rf) / stride) + 1, or 0 when L < rf
///   Same    zeros on both sides;      out = ceil(L / stride),
///           pad_total = max((out - 1) * stride + rf - L, 0), pad_left = pad_total / 2 (the extra one on the
///           right), as TensorFlow's 'SAME'
///   Causal  dilation*(kernel_size-1) zeros on the left only; out = ceil(L / stride). Output t sees input steps
///           <= t * stride only.
/// ```
/// Output step t reads input steps p = t * stride + j * dilation - pad_left, j = 0..kernel_size-1; steps
/// outside [0, L) read zeros.

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/config.hpp"
#include "seqattn/core/errors.hpp"

namespace seqattn {

/// How a window layer pads the sequence (Keras padding): none, both ends, or the start only.
enum class Padding { Valid, Same, Causal };

/// The model-file name of a padding ("valid").
inline std::string to_string(Padding p) {
  switch (p) {
    case Padding::Valid: return "valid";
    case Padding::Same: return "same";
    case Padding::Causal: return "causal";
  }
  return "?";
}

/// Parses Keras names: "valid", "same", "causal".
inline Padding padding_from_string(const std::string& name) {
  if (name == "valid") return Padding::Valid;
  if (name == "same") return Padding::Same;
  if (name == "causal") return Padding::Causal;
  detail::throw_config("padding: unknown name '", name, "' (expected valid, same or causal)");
}

/// Model-file names (core/layer_config.hpp): Keras' names.
inline const std::vector<std::pair<Padding, const char*>>& config_names(Padding) {
  static const std::vector<std::pair<Padding, const char*>> names = {
      {Padding::Valid, "valid"}, {Padding::Same, "same"}, {Padding::Causal, "causal"}};
  return names;
}

/// The window geometry of one layer (sizes already validated: all >= 1, dilation * (kernel_size - 1) + 1 fits in
/// Index: Conv1D checks it).
struct WindowGeometry {
  Index kernel_size = 1;  ///< Steps in a window.
  Index stride = 1;  ///< Steps between two windows.
  Index dilation = 1;  ///< Steps between two taps of a window.
  Padding padding = Padding::Valid;  ///< Valid, Same or Causal.

  /// The steps a window spans: dilation * (kernel_size - 1) + 1.
  Index receptive_field() const { return dilation * (kernel_size - 1) + 1; }

  /// Output steps for a sequence of L >= 0 steps (0 when L is too short for valid padding).
  Index out_length(Index L) const {
    if (padding == Padding::Valid) return L >= receptive_field() ? (L - receptive_field()) / stride + 1 : 0;
    return L <= 0 ? 0 : (L - 1) / stride + 1;  // ceil(L / stride) without overflow for any stride
  }

  /// The input step output step t is aligned with: the window's last step t * stride + rf - 1 for valid padding,
  /// t * stride for same and causal (causal: the window's last step; same with stride 1: its center). Output t of
  /// a sequence of L steps exists (t \< out_length(L)) exactly when aligned_step(t) \< L, so "output t is kept when
  /// its aligned input step is kept" maps step masks and reduces to out_length for lengths.
  Index aligned_step(Index t) const { return t * stride + (padding == Padding::Valid ? receptive_field() - 1 : 0); }

  /// Zeros added before the first step of a sequence of L steps.
  Index pad_left(Index L) const {
    switch (padding) {
      case Padding::Valid: return 0;
      case Padding::Causal: return dilation * (kernel_size - 1);
      case Padding::Same: {
        const Index out = out_length(L);
        const Index total = std::max<Index>((out - 1) * stride + receptive_field() - L, 0);
        return total / 2;
      }
    }
    return 0;
  }
};

}  // namespace seqattn
