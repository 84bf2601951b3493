#pragma once
// Layer<S>: the base of every layer. Contract (tests check it for every layer):
//   forward(x, mask, mode)   x (B, T, in_features), mask fits (B, T). Checks shapes, sizes the output
//                            buffer (only when the shape changes) and returns y (B, out_time(T),
//                            out_features()). The reference stays valid until the next forward.
//   backward(x, mask, dy)    follows the forward with the same x and mask; dy has y's shape. OVERWRITES
//                            and returns dx (x's shape), ADDS INTO the parameter gradients (zero_grad()
//                            is explicit) and adds the gradient of regularization_loss().
//   out_mask(mask, T)        the mask of y (layers that change the number of steps return a new one).
//   params()                 trainable tensors with their gradients; buffers(): saved, not trained.
//   regularization_loss()    extra loss of the last forward (attention and weight regularizers), 0 if none.
// Padded steps (t >= length) never change valid outputs; a layer's dx at padded steps is zero whenever dy
// is zero there. Layers are copyable through clone() (one model copy per inference thread).

#include <memory>
#include <string>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/mask.hpp"
#include "seqattn/core/param.hpp"
#include "seqattn/core/tensor.hpp"
#include "seqattn/core/threads.hpp"  // every layer: Eigen's GEMMs single-threaded (determinism)

namespace seqattn {

enum class Mode { Train, Infer };

inline const char* to_string(Mode mode) { return mode == Mode::Train ? "train" : "infer"; }

template <class S>
class Layer {
 public:
  explicit Layer(Index in_features) : in_features_(in_features) {
    if (in_features <= 0) detail::throw_config("Layer: input features must be positive but got ", in_features);
  }
  virtual ~Layer() = default;

  // x: (B, T, in_features) -> y: (B, out_time(T), out_features())
  const Tensor3<S>& forward(const Tensor3<S>& x, const Mask& mask = Mask(), Mode mode = Mode::Infer) {
    check_input(x, mask);
    const Index out_t = out_time(x.dimension(1));
    if (out_t <= 0)
      detail::throw_shape(describe(), ": input of ", x.dimension(1), " steps gives no output step");
    ensure_shape(y_, x.dimension(0), out_t, out_features());
    has_forward_ = false;  // a forward that throws leaves nothing for backward to use
    do_forward(x, mask, mode, y_);
    last_mode_ = mode;
    forward_dims_ = x.dimensions();
    has_forward_ = true;
    return y_;
  }

  // dy: (B, out_time(T), out_features()) -> dx: (B, T, in_features)
  const Tensor3<S>& backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy) {
    if (!has_forward_) detail::throw_shape(describe(), ": backward called before forward");
    if (x.dimensions() != forward_dims_)
      detail::throw_shape(describe(), ": backward input expected ",
                          shape_string(forward_dims_[0], forward_dims_[1], forward_dims_[2]),
                          " (the shape of the last forward) but got ", shape_string(x));
    if (dy.dimensions() != y_.dimensions())
      detail::throw_shape(describe(), ": output gradient expected ", shape_string(y_), " but got ", shape_string(dy));
    if (!mask.fits(x.dimension(0), x.dimension(1))) mask.check(x.dimension(0), x.dimension(1), describe());
    ensure_shape(dx_, x.dimension(0), x.dimension(1), x.dimension(2));
    do_backward(x, mask, dy, dx_);
    return dx_;
  }

  Index in_features() const { return in_features_; }
  virtual Index out_features() const = 0;
  // Output steps for an input of T steps; T < 0 means unknown (summary) and gives -1 unless fixed.
  virtual Index out_time(Index T) const { return T; }
  virtual Mask out_mask(const Mask& mask, Index /*T*/) const { return mask; }

  // Snake-case type name, used in parameter names and summaries: "dense".
  virtual std::string name() const = 0;
  // Type and configuration, used in error messages: "Dense(units=8)".
  virtual std::string describe() const = 0;
  virtual std::unique_ptr<Layer<S>> clone() const = 0;

  ParamList<S> params() {
    ParamList<S> list;
    collect_params(list);
    return list;
  }
  ParamList<S> buffers() {
    ParamList<S> list;
    collect_buffers(list);
    return list;
  }
  Index param_count() { return count_values(params()); }
  void zero_grad() {
    for (auto& p : params()) p.grads().setZero();
  }
  virtual S regularization_loss() const { return S(0); }

  const Tensor3<S>& output() const { return y_; }
  const Tensor3<S>& input_grad() const { return dx_; }
  Mode last_mode() const { return last_mode_; }

 protected:
  Layer(const Layer&) = default;
  Layer& operator=(const Layer&) = default;

  // y is already sized (B, out_time(T), out_features()); write every element.
  virtual void do_forward(const Tensor3<S>& x, const Mask& mask, Mode mode, Tensor3<S>& y) = 0;
  // dx is already sized like x; overwrite every element, add into parameter gradients.
  virtual void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) = 0;
  virtual void collect_params(ParamList<S>& /*list*/) {}
  virtual void collect_buffers(ParamList<S>& /*list*/) {}

  // Shared input check: (B, T, in_features) with B, T >= 1 and a mask that fits.
  void check_input(const Tensor3<S>& x, const Mask& mask) const {
    if (x.dimension(0) <= 0 || x.dimension(1) <= 0)
      detail::throw_shape(describe(), ": input expected at least one sequence and one step but got ", shape_string(x));
    if (x.dimension(2) != in_features_)
      detail::throw_shape(describe(), ": input features expected ", in_features_, " but got ", x.dimension(2),
                          " (input shape ", shape_string(x), ")");
    if (!mask.fits(x.dimension(0), x.dimension(1))) mask.check(x.dimension(0), x.dimension(1), describe());
  }

 private:
  Index in_features_;
  Tensor3<S> y_, dx_;
  Eigen::DSizes<Index, 3> forward_dims_{0, 0, 0};
  Mode last_mode_ = Mode::Infer;
  bool has_forward_ = false;
};

}  // namespace seqattn
