#pragma once
/// \file
/// Activations: the functions (used by Dense, Conv1D, MultiHeadAttention, SeqSelfAttention, ...) and a layer.
/// Model-file names are Keras' (config_names below; activation_from_string accepts the same names).
///
/// ```unparsed
///   linear        y = z
///   relu          y = max(z, 0)                        (derivative 0 at z = 0)
///   gelu          y = z * Phi(z) = 0.5 z (1 + erf(z / sqrt 2))   (exact, as torch.nn.GELU() and Keras' "gelu")
///   gelu_tanh     y = 0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))   (the approximation of BERT and
///                 keras-transformer; torch.nn.GELU(approximate='tanh'), Keras gelu(x, approximate=True))
///   tanh          y = tanh z
///   sigmoid       y = 1 / (1 + exp(-z))
///   softmax       y_j = exp(z_j) / sum_k exp(z_k) over the features of each step (not elementwise)
///   elu           y = z if z > 0, else exp(z) - 1            (alpha 1, as Keras and torch.nn.ELU())
///   selu          y = scale * (z if z > 0, else alpha (exp(z) - 1)), scale 1.0507009873554805,
///                 alpha 1.6732632423543772 (torch.nn.SELU, Keras "selu")
///   silu          y = z * sigmoid(z); "swish" is read as silu (Keras 3 writes "silu"; torch.nn.SiLU)
///   leaky_relu    y = z if z > 0, else negative_slope * z. As an activation option (Dense, Conv1D, ...) the
///                 slope is kLeakyReluSlope = 0.2, what Keras 3's "leaky_relu" string means. Another slope
///                 (torch.nn.LeakyReLU's default 0.01, Keras' LeakyReLU layer's 0.3): ActivationLayer's
///                 negative_slope (model-file key "negative_slope").
///   softplus      y = log(1 + exp(z)), computed as max(z, 0) + log1p(exp(-|z|)) (exact for every z; torch's
///                 F.softplus returns z itself above its threshold 20, a difference below 2.1e-9)
///   hard_sigmoid  y = relu6(z + 3) / 6 = clip(z / 6 + 1/2, 0, 1) (Keras 3 and torch.nn.Hardsigmoid; Keras 2
///                 used clip(0.2 z + 0.5, 0, 1)); derivative 1/6 on (-3, 3), else 0
///   mish          y = z * tanh(softplus(z)) (torch.nn.Mish, Keras "mish")
/// ```
/// Every function is evaluated in forms that stay finite for every finite z (no exp overflow into inf - inf or
/// inf * 0). Derivatives are taken at the input z (activation_derivative), except tanh and sigmoid, which use
/// the output.

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/layer.hpp"
#include "seqattn/detail/masked_softmax.hpp"

namespace seqattn {

/// The elementwise activations (Keras names in config_names) and softmax over the features.
enum class Activation {
  Linear,
  ReLU,
  GELU,
  Tanh,
  Sigmoid,
  Softmax,
  GELUTanh,
  ELU,
  SELU,
  SiLU,
  LeakyReLU,
  Softplus,
  HardSigmoid,
  Mish
};

/// The slope of leaky_relu as an activation option (Keras 3's default for the "leaky_relu" string).
constexpr double kLeakyReluSlope = 0.2;

/// Model-file names (core/layer_config.hpp): Keras' names; the first name of a value is the one written, the
/// others are accepted when reading ("swish" for silu).
inline const std::vector<std::pair<Activation, const char*>>& config_names(Activation) {
  static const std::vector<std::pair<Activation, const char*>> names = {
      {Activation::Linear, "linear"},      {Activation::ReLU, "relu"},
      {Activation::GELU, "gelu"},          {Activation::Tanh, "tanh"},
      {Activation::Sigmoid, "sigmoid"},    {Activation::Softmax, "softmax"},
      {Activation::GELUTanh, "gelu_tanh"}, {Activation::ELU, "elu"},
      {Activation::SELU, "selu"},          {Activation::SiLU, "silu"},
      {Activation::SiLU, "swish"},         {Activation::LeakyReLU, "leaky_relu"},
      {Activation::Softplus, "softplus"},  {Activation::HardSigmoid, "hard_sigmoid"},
      {Activation::Mish, "mish"}};
  return names;
}

/// The model-file name of an activation ("relu").
inline std::string to_string(Activation a) {
  for (const auto& [value, name] : config_names(a))
    if (value == a) return name;
  return "?";
}

/// Parses Keras names (config_names; "linear", "none" and "" are the identity, "swish" is silu).
inline Activation activation_from_string(const std::string& name) {
  if (name == "none" || name.empty()) return Activation::Linear;
  std::string known;
  for (const auto& [value, n] : config_names(Activation{})) {
    if (name == n) return value;
    known += known.empty() ? n : std::string(", ") + n;
  }
  detail::throw_config("activation: unknown name '", name, "' (expected one of ", known, ")");
}

/// True for the activations applied to each value on its own (all but Softmax).
inline bool is_elementwise(Activation a) { return a != Activation::Softmax; }

namespace detail {
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSqrt2OverPi = 0.79788456080286535587989211986876;
constexpr double kGeluTanhCubic = 0.044715;

// 1 / (1 + exp(-z)) without overflow for any finite z.
template <class S>
S stable_sigmoid(S z) {
  if (z >= S(0)) return S(1) / (S(1) + std::exp(-z));
  const S e = std::exp(z);
  return e / (S(1) + e);
}
// log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)): exact and finite for every finite z.
template <class S>
S stable_softplus(S z) {
  return (z > S(0) ? z : S(0)) + std::log1p(std::exp(-std::abs(z)));
}
}  // namespace detail

/// Elementwise activation of one value (every activation but softmax). negative_slope is leaky_relu's.
template <class S>
S activate(Activation a, S z, S negative_slope = S(kLeakyReluSlope)) {
  switch (a) {
    case Activation::Linear: return z;
    case Activation::ReLU: return z > S(0) ? z : S(0);
    case Activation::GELU: return S(0.5) * z * (S(1) + std::erf(z * S(0.70710678118654752440)));
    case Activation::Tanh: return std::tanh(z);
    case Activation::Sigmoid: return S(1) / (S(1) + std::exp(-z));
    case Activation::GELUTanh: {
      const S u = S(detail::kSqrt2OverPi) * (z + S(detail::kGeluTanhCubic) * z * z * z);
      return S(0.5) * z * (S(1) + std::tanh(u));
    }
    case Activation::ELU: return z > S(0) ? z : std::expm1(z);
    case Activation::SELU:
      return z > S(0) ? S(detail::kSeluScale) * z : S(detail::kSeluScale * detail::kSeluAlpha) * std::expm1(z);
    case Activation::SiLU: return z * detail::stable_sigmoid(z);
    case Activation::LeakyReLU: return z > S(0) ? z : negative_slope * z;
    case Activation::Softplus: return detail::stable_softplus(z);
    case Activation::HardSigmoid: return std::min(std::max(z + S(3), S(0)), S(6)) / S(6);
    case Activation::Mish: return z * std::tanh(detail::stable_softplus(z));
    case Activation::Softmax: break;
  }
  detail::throw_config("activate: softmax is not elementwise");
}

/// dy/dz of an elementwise activation at input z with output y = activate(a, z).
template <class S>
S activation_derivative(Activation a, S z, S y, S negative_slope = S(kLeakyReluSlope)) {
  switch (a) {
    case Activation::Linear: return S(1);
    case Activation::ReLU: return z > S(0) ? S(1) : S(0);
    case Activation::GELU: {
      const S cdf = S(0.5) * (S(1) + std::erf(z * S(0.70710678118654752440)));
      const S pdf = std::exp(S(-0.5) * z * z) * S(0.39894228040143267794);
      return cdf + z * pdf;
    }
    case Activation::Tanh: return S(1) - y * y;
    case Activation::Sigmoid: return y * (S(1) - y);
    case Activation::GELUTanh: {
      const S u = S(detail::kSqrt2OverPi) * (z + S(detail::kGeluTanhCubic) * z * z * z);
      const S t = std::tanh(u);
      const S sech2 = S(1) - t * t;
      if (sech2 == S(0)) return S(0.5) * (S(1) + t);  // |z| large: z^3 may be inf, inf * 0 would be NaN
      const S du = S(detail::kSqrt2OverPi) * (S(1) + S(3 * detail::kGeluTanhCubic) * z * z);
      return S(0.5) * (S(1) + t) + S(0.5) * z * sech2 * du;
    }
    case Activation::ELU: return z > S(0) ? S(1) : std::exp(z);
    case Activation::SELU:
      return z > S(0) ? S(detail::kSeluScale) : S(detail::kSeluScale * detail::kSeluAlpha) * std::exp(z);
    case Activation::SiLU: {
      const S s = detail::stable_sigmoid(z);
      return s + z * s * (S(1) - s);
    }
    case Activation::LeakyReLU: return z > S(0) ? S(1) : negative_slope;
    case Activation::Softplus: return detail::stable_sigmoid(z);
    case Activation::HardSigmoid: return z > S(-3) && z < S(3) ? S(1) / S(6) : S(0);
    case Activation::Mish: {
      const S t = std::tanh(detail::stable_softplus(z));
      return t + z * (S(1) - t * t) * detail::stable_sigmoid(z);
    }
    case Activation::Softmax: break;
  }
  detail::throw_config("activation_derivative: softmax is not elementwise");
}

/// z, y: (N, F). y = a(z); for softmax, over the F features of each row (max-subtracted, stable).
/// y may alias z for elementwise activations. negative_slope is leaky_relu's.
template <class S, class In, class Out>
void activation_forward(Activation a, const Eigen::MatrixBase<In>& z, Eigen::MatrixBase<Out>& y,
                        S negative_slope = S(kLeakyReluSlope)) {
  if (a == Activation::Linear) {
    if (y.derived().data() != z.derived().data()) y = z;
    return;
  }
  if (a == Activation::Softmax) {
    static_assert(Out::IsRowMajor || Out::ColsAtCompileTime == 1, "activation_forward: rows must be contiguous");
    for (Index r = 0; r < z.rows(); ++r) {
      const S mx = z.row(r).maxCoeff();
      if (y.derived().data() != z.derived().data()) y.row(r) = z.row(r);
      // exp and sum in fixed-size chunks: the bits do not depend on the row's address (padding invariance)
      const S sum = detail::exp_shift_sum<S>(&y.derived().coeffRef(r, 0), z.cols(), mx);
      y.row(r) /= sum;
    }
    return;
  }
  if (a == Activation::ReLU) {
    y = z.cwiseMax(S(0));
    return;
  }
  if (a == Activation::Tanh) {
    if (y.derived().data() != z.derived().data()) y = z;
    detail::stable_tanh<S>(y);  // chunked: the bits do not depend on the address (padding invariance)
    return;
  }
  for (Index r = 0; r < z.rows(); ++r)
    for (Index c = 0; c < z.cols(); ++c) y(r, c) = activate<S>(a, z(r, c), negative_slope);
}

/// z, y, dy, dz: (N, F). dz = dy * a'(z) (softmax: dz = y * (dy - sum(dy * y)) per row). dz may alias dy.
template <class S, class Z, class Y, class DY, class DZ>
void activation_backward(Activation a, const Eigen::MatrixBase<Z>& z, const Eigen::MatrixBase<Y>& y,
                         const Eigen::MatrixBase<DY>& dy, Eigen::MatrixBase<DZ>& dz,
                         S negative_slope = S(kLeakyReluSlope)) {
  if (a == Activation::Linear) {
    if (dz.derived().data() != dy.derived().data()) dz = dy;
    return;
  }
  if (a == Activation::Softmax) {
    for (Index r = 0; r < y.rows(); ++r) {
      const S dot = y.row(r).dot(dy.row(r));
      dz.row(r) = (y.row(r).array() * (dy.row(r).array() - dot)).matrix();
    }
    return;
  }
  for (Index r = 0; r < y.rows(); ++r)
    for (Index c = 0; c < y.cols(); ++c)
      dz(r, c) = dy(r, c) * activation_derivative<S>(a, z(r, c), y(r, c), negative_slope);
}

/// A layer applying an activation to every step: (B, T, F) -> (B, T, F). Step masks (supports_step_masks()): every
/// step on its own, so masked values never reach a kept step.
/// negative_slope: leaky_relu's slope for z \< 0 (default kLeakyReluSlope = 0.2, Keras 3; torch.nn.LeakyReLU uses
/// 0.01, Keras' LeakyReLU layer 0.3); finite. Written to the model file (key "negative_slope") only for leaky_relu.
template <class S>
class ActivationLayer final : public Layer<S> {
 public:
  /// Applies `activation` to x (B, T, in_features); negative_slope: leaky_relu's slope (finite).
  ActivationLayer(Index in_features, Activation activation, double negative_slope = kLeakyReluSlope)
      : Layer<S>(in_features), activation_(activation), negative_slope_(negative_slope) {
    if (!std::isfinite(negative_slope))
      detail::throw_config(describe(), ": negative_slope must be finite but got ", negative_slope);
  }

  Index out_features() const override { return this->in_features(); }
  std::string name() const override { return "activation"; }
  std::string class_name() const override { return "Activation"; }
  /// Step masks: position-wise, every step is computed on its own (masked steps never reach a kept one).
  bool supports_step_masks() const override { return true; }
  Config config() const override {
    Config c = Config::object();
    c.set("activation", ConfigCodec<Activation>::write(activation_));
    if (activation_ == Activation::LeakyReLU) c.set("negative_slope", negative_slope_);
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "Activation config");
    const Activation activation = r.read<Activation>("activation");
    double negative_slope = kLeakyReluSlope;
    if (activation == Activation::LeakyReLU) r.read_into("negative_slope", negative_slope);
    r.finish();
    return std::make_unique<ActivationLayer>(in_features, activation, negative_slope);
  }
  std::string describe() const override {
    if (activation_ == Activation::LeakyReLU && negative_slope_ != kLeakyReluSlope)
      return detail::cat("Activation(leaky_relu, negative_slope=", negative_slope_, ")");
    return "Activation(" + to_string(activation_) + ")";
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<ActivationLayer>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const ActivationLayer&>(other); }
  /// The activation applied.
  Activation activation() const { return activation_; }
  /// leaky_relu's slope for z \< 0 (used only by LeakyReLU).
  double negative_slope() const { return negative_slope_; }
  std::unique_ptr<LayerStream<S>> open_stream(Index, const StreamOptions&) const override {
    return std::make_unique<ActivationStream>(activation_, static_cast<S>(negative_slope_));
  }

 protected:
  void do_forward(const Tensor3<S>& x, const Mask&, Mode, Tensor3<S>& y) override {
    auto out = as_matrix(y);
    activation_forward<S>(activation_, as_matrix(x), out, static_cast<S>(negative_slope_));
  }
  void do_backward(const Tensor3<S>& x, const Mask&, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    auto dxm = as_matrix(dx);
    activation_backward<S>(activation_, as_matrix(x), as_matrix(this->output()), as_matrix(dy), dxm,
                           static_cast<S>(negative_slope_));
  }

 private:
  struct ActivationStream final : PerStepStream<S> {
    Activation activation;
    S negative_slope;
    ActivationStream(Activation a, S slope) : activation(a), negative_slope(slope) {}
    void apply(const Tensor3<S>& x, Tensor3<S>& y) override {  // (B*n, F) -> (B*n, F)
      auto Y = as_matrix(y);
      activation_forward<S>(activation, as_matrix(x), Y, negative_slope);
    }
  };

  Activation activation_;
  double negative_slope_;
};

}  // namespace seqattn
