#pragma once
// Masking: Keras' Masking(mask_value) for right-padded batches: the steps after a sequence's last step that
// is not entirely mask_value become padding.
//   x (B, T, F) -> y (B, T, F), y = x on the valid steps, 0 on the padded ones (Keras: x times its mask).
// The new length of sample b is 1 + the index of the last step t < len_b with some x[b, t, f] != mask_value
// (0 when there is none); out_mask(mask, T) returns these lengths and must follow the forward of that batch
// (Sequential calls it after forward), as Embedding's mask_zero. A step of mask_value INSIDE a sequence (before
// a step that is not) is a ShapeError naming the sample and the step: Keras masks such a step on its own
// (recurrent layers skip it, attention ignores it), which a length mask cannot express; the layer refuses it
// rather than computing something else.
// Backward: dx = dy on the valid steps, 0 on the padded ones. No parameters; streams are refused.
// Model files: class_name "Masking", config {"mask_value": v} (Keras' name), registered in model/layer_registry.hpp.

#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "seqattn/core/layer.hpp"
#include "seqattn/core/layer_config.hpp"

namespace seqattn {

template <class S>
class Masking final : public Layer<S> {
 public:
  explicit Masking(Index in_features, double mask_value = 0.0) : Layer<S>(in_features), mask_value_(mask_value) {
    if (!std::isfinite(mask_value))
      detail::throw_config("Masking: mask_value expected a finite number but got ", mask_value);
  }

  Index out_features() const override { return this->in_features(); }
  Mask out_mask(const Mask& mask, Index T) const override {
    if (T < 0) return mask;
    if (T != forward_T_ || (!mask.empty() && mask.batch() != static_cast<Index>(lengths_.size())))
      detail::throw_shape(describe(), ": out_mask(T=", T,
                          ") must follow the forward of the same batch (last forward: ", lengths_.size(),
                          " sequences of ", forward_T_, " steps)");
    return Mask(lengths_);
  }
  std::string name() const override { return "masking"; }
  std::string class_name() const override { return "Masking"; }
  Config config() const override {
    Config c = Config::object();
    c.set("mask_value", mask_value_);
    return c;
  }
  // Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "Masking config");
    const double mask_value = r.read<double>("mask_value");
    r.finish();
    return std::make_unique<Masking>(in_features, mask_value);
  }
  std::string describe() const override { return detail::cat("Masking(mask_value=", mask_value_, ")"); }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<Masking>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const Masking&>(other); }
  double mask_value() const { return mask_value_; }
  std::string stream_refusal() const override {
    return "whether a step is padding depends on the steps after it (use the lengths of a Mask instead)";
  }

 protected:
  // x (B, T, F) -> y (B, T, F): valid steps copied, padded steps 0; lengths_ (B) the new lengths
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
    const S value = static_cast<S>(mask_value_);
    lengths_.assign(static_cast<size_t>(B), 0);
    for (Index b = 0; b < B; ++b) {
      const Index len = mask.length(b, T);
      Index new_len = 0;
      for (Index t = len - 1; t >= 0 && new_len == 0; --t)
        for (Index f = 0; f < F; ++f)
          if (x(b, t, f) != value) {
            new_len = t + 1;
            break;
          }
      for (Index t = 0; t < new_len; ++t) {
        bool all = true;
        for (Index f = 0; f < F && all; ++f) all = x(b, t, f) == value;
        if (all)
          detail::throw_shape(describe(), ": sequence ", b,
                              " expected its mask_value steps only after its last valid step (right padding) but got "
                              "step ",
                              t, " all mask_value before the valid step ", new_len - 1,
                              ": Keras would mask that step alone, a length mask cannot");
      }
      lengths_[static_cast<size_t>(b)] = new_len;
      for (Index t = 0; t < T; ++t)
        for (Index f = 0; f < F; ++f) y(b, t, f) = t < new_len ? x(b, t, f) : S(0);
    }
    forward_T_ = T;
  }

  // dy (B, T, F) -> dx (B, T, F): inverts the copy (dx = dy on valid steps, 0 on padded steps)
  void do_backward(const Tensor3<S>&, const Mask&, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const Index B = dy.dimension(0), T = dy.dimension(1), F = dy.dimension(2);
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < T; ++t)
        for (Index f = 0; f < F; ++f) dx(b, t, f) = t < lengths_[static_cast<size_t>(b)] ? dy(b, t, f) : S(0);
  }

 private:
  double mask_value_;
  std::vector<Index> lengths_;
  Index forward_T_ = -1;
};

}  // namespace seqattn
