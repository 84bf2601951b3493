#pragma once
/// \file
/// Masking: Keras' Masking(mask_value): a step whose features all equal mask_value is masked.
///
/// ```unparsed
///   x (B, T, F) -> y (B, T, F), y = x on the kept steps, 0 on the masked ones (Keras: x times its mask).
/// ```
/// out_mask(mask, T) returns the steps the input mask keeps minus the masked ones (Mask::intersect of the input
/// mask and Mask::from_value); it must follow the forward of that batch (Sequential calls it after forward), as
/// Embedding's mask_zero. Steps of mask_value after a sequence's last other step become padding: when every
/// sequence's kept steps are a prefix, the mask is lengths (the fast path); a step of mask_value INSIDE a sequence
/// (a sensor dropout) or at its start gives a step mask (holes, left padding; core/mask.hpp), which the following
/// layers honor or refuse (Layer::supports_step_masks, ConfigError naming the layer).
/// mask_value = NaN (std::nan("") or `std::numeric_limits<double>::quiet_NaN()`): a step with ANY NaN feature is
///
/// ```unparsed
///   masked (Mask::from_missing), the path for missing observations; its output is 0, so NaNs never flow on.
///   (A finite mask_value masks a step only when EVERY feature equals it, as Keras.) +-Inf is a ConfigError.
/// ```
/// Backward: dx = dy on the kept steps, 0 on the masked and padded ones. No parameters; streams are refused.
/// The layer itself honors step masks (supports_step_masks()): an input step mask's masked steps stay masked.
/// Model files: class_name "Masking", config {"mask_value": v} (Keras' name), registered in model/layer_registry.hpp;
///
/// ```unparsed
///   NaN, which JSON cannot hold, is stored as the string "NaN".
/// ```

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "seqattn/core/layer.hpp"
#include "seqattn/core/layer_config.hpp"
#include "seqattn/detail/step_runs.hpp"

namespace seqattn {

/// Masks the steps whose features all equal mask_value (Keras Masking); see the file documentation.
template <class S>
class Masking final : public Layer<S> {
 public:
  /// Masking of inputs of `in_features` features; mask_value may be NaN.
  explicit Masking(Index in_features, double mask_value = 0.0) : Layer<S>(in_features), mask_value_(mask_value) {
    if (std::isinf(mask_value))
      detail::throw_config("Masking: mask_value expected a finite number (or NaN for missing values) but got ",
                           mask_value);
  }

  Index out_features() const override { return this->in_features(); }
  Mask out_mask(const Mask& mask, Index T) const override {
    if (T < 0) return mask;
    const Index B = static_cast<Index>(lengths_.size());
    if (T != forward_T_ || (!mask.empty() && mask.batch() != B))
      detail::throw_shape(describe(), ": out_mask(T=", T,
                          ") must follow the forward of the same batch (last forward: ", lengths_.size(),
                          " sequences of ", forward_T_, " steps)");
    return Mask::from_steps(B, T, keep_);  // lengths when the kept steps are a prefix of every sequence
  }
  bool supports_step_masks() const override { return true; }
  std::string name() const override { return "masking"; }
  std::string class_name() const override { return "Masking"; }
  Config config() const override {
    Config c = Config::object();
    if (std::isnan(mask_value_))
      c.set("mask_value", std::string("NaN"));  // JSON has no NaN
    else
      c.set("mask_value", mask_value_);
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "Masking config");
    const Config& v = r.get("mask_value");
    double mask_value = 0.0;
    if (v.kind() == Config::Kind::String) {
      if (v.as_string() != "NaN") r.fail("mask_value", "a number or \"NaN\"", v);
      mask_value = std::numeric_limits<double>::quiet_NaN();
    } else {
      mask_value = r.read<double>("mask_value");
    }
    r.finish();
    return std::make_unique<Masking>(in_features, mask_value);
  }
  std::string describe() const override {
    if (std::isnan(mask_value_)) return "Masking(mask_value=NaN)";
    return detail::cat("Masking(mask_value=", mask_value_, ")");
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<Masking>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const Masking&>(other); }
  /// The value that marks a masked step.
  double mask_value() const { return mask_value_; }
  std::string stream_refusal() const override {
    return "whether a step is padding depends on the steps after it (use a Mask instead)";
  }

 protected:
  /// x (B, T, F) -> y (B, T, F): kept steps copied, masked and padded steps 0; keep_ (B*T) the kept steps,
  /// lengths_ (B) the extents (1 + the last kept step)
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
    const bool holes = mask.has_holes(), missing = std::isnan(mask_value_);
    const S value = static_cast<S>(mask_value_);
    lengths_.assign(static_cast<size_t>(B), 0);
    keep_.assign(static_cast<size_t>(B * T), 0);
    for (Index b = 0; b < B; ++b) {
      for (Index t = 0; t < mask.length(b, T); ++t) {
        if (!detail::kept_step(mask, holes, b, t, T)) continue;  // an input mask's masked steps are not read
        bool masked = !missing;
        for (Index f = 0; f < F; ++f)
          if (missing ? std::isnan(x(b, t, f)) : x(b, t, f) != value) {
            masked = missing;
            break;
          }
        if (masked) continue;
        keep_[static_cast<size_t>(b * T + t)] = 1;
        lengths_[static_cast<size_t>(b)] = t + 1;
      }
      for (Index t = 0; t < T; ++t) {
        const bool kept = keep_[static_cast<size_t>(b * T + t)] != 0;
        for (Index f = 0; f < F; ++f) y(b, t, f) = kept ? x(b, t, f) : S(0);
      }
    }
    forward_T_ = T;
  }

  /// dy (B, T, F) -> dx (B, T, F): inverts the copy (dx = dy on kept steps, 0 on masked and padded steps)
  void do_backward(const Tensor3<S>&, const Mask&, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const Index B = dy.dimension(0), T = dy.dimension(1), F = dy.dimension(2);
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < T; ++t) {
        const bool kept = keep_[static_cast<size_t>(b * T + t)] != 0;
        for (Index f = 0; f < F; ++f) dx(b, t, f) = kept ? dy(b, t, f) : S(0);
      }
  }

 private:
  double mask_value_;
  std::vector<Index> lengths_;      // (B) extents of the last forward
  std::vector<std::uint8_t> keep_;  // (B*T) kept steps of the last forward
  Index forward_T_ = -1;
};

}  // namespace seqattn
