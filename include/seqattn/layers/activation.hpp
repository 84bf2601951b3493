#pragma once
// Activations: the functions (used by Dense, MultiHeadAttention, SeqSelfAttention, ...) and a layer.
//   linear   y = z
//   relu     y = max(z, 0)                        (derivative 0 at z = 0)
//   gelu     y = z * Phi(z) = 0.5 z (1 + erf(z / sqrt 2))   (exact, as torch.nn.GELU())
//   tanh     y = tanh z
//   sigmoid  y = 1 / (1 + exp(-z))
//   softmax  y_j = exp(z_j) / sum_k exp(z_k) over the features of each step (not elementwise)

#include <cmath>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/layer.hpp"
#include "seqattn/detail/masked_softmax.hpp"

namespace seqattn {

enum class Activation { Linear, ReLU, GELU, Tanh, Sigmoid, Softmax };

inline std::string to_string(Activation a) {
  switch (a) {
    case Activation::Linear: return "linear";
    case Activation::ReLU: return "relu";
    case Activation::GELU: return "gelu";
    case Activation::Tanh: return "tanh";
    case Activation::Sigmoid: return "sigmoid";
    case Activation::Softmax: return "softmax";
  }
  return "?";
}

// Parses Keras names ("linear" and "none" are the identity).
inline Activation activation_from_string(const std::string& name) {
  if (name == "linear" || name == "none" || name.empty()) return Activation::Linear;
  if (name == "relu") return Activation::ReLU;
  if (name == "gelu") return Activation::GELU;
  if (name == "tanh") return Activation::Tanh;
  if (name == "sigmoid") return Activation::Sigmoid;
  if (name == "softmax") return Activation::Softmax;
  detail::throw_config("activation: unknown name '", name, "' (expected linear, relu, gelu, tanh, sigmoid or softmax)");
}

inline bool is_elementwise(Activation a) { return a != Activation::Softmax; }

// Model-file names (core/layer_config.hpp): Keras' names.
inline const std::vector<std::pair<Activation, const char*>>& config_names(Activation) {
  static const std::vector<std::pair<Activation, const char*>> names = {
      {Activation::Linear, "linear"}, {Activation::ReLU, "relu"},       {Activation::GELU, "gelu"},
      {Activation::Tanh, "tanh"},     {Activation::Sigmoid, "sigmoid"}, {Activation::Softmax, "softmax"}};
  return names;
}

// Elementwise activation of one value (every activation but softmax).
template <class S>
S activate(Activation a, S z) {
  switch (a) {
    case Activation::Linear: return z;
    case Activation::ReLU: return z > S(0) ? z : S(0);
    case Activation::GELU: return S(0.5) * z * (S(1) + std::erf(z * S(0.70710678118654752440)));
    case Activation::Tanh: return std::tanh(z);
    case Activation::Sigmoid: return S(1) / (S(1) + std::exp(-z));
    case Activation::Softmax: break;
  }
  detail::throw_config("activate: softmax is not elementwise");
}

// dy/dz of an elementwise activation at input z with output y = activate(a, z).
template <class S>
S activation_derivative(Activation a, S z, S y) {
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
    case Activation::Softmax: break;
  }
  detail::throw_config("activation_derivative: softmax is not elementwise");
}

// z, y: (N, F). y = a(z); for softmax, over the F features of each row (max-subtracted, stable).
// y may alias z for elementwise activations.
template <class S, class In, class Out>
void activation_forward(Activation a, const Eigen::MatrixBase<In>& z, Eigen::MatrixBase<Out>& y) {
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
    for (Index c = 0; c < z.cols(); ++c) y(r, c) = activate<S>(a, z(r, c));
}

// z, y, dy, dz: (N, F). dz = dy * a'(z) (softmax: dz = y * (dy - sum(dy * y)) per row). dz may alias dy.
template <class S, class Z, class Y, class DY, class DZ>
void activation_backward(Activation a, const Eigen::MatrixBase<Z>& z, const Eigen::MatrixBase<Y>& y,
                         const Eigen::MatrixBase<DY>& dy, Eigen::MatrixBase<DZ>& dz) {
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
    for (Index c = 0; c < y.cols(); ++c) dz(r, c) = dy(r, c) * activation_derivative<S>(a, z(r, c), y(r, c));
}

// A layer applying an activation to every step: (B, T, F) -> (B, T, F).
template <class S>
class ActivationLayer final : public Layer<S> {
 public:
  ActivationLayer(Index in_features, Activation activation) : Layer<S>(in_features), activation_(activation) {}

  Index out_features() const override { return this->in_features(); }
  std::string name() const override { return "activation"; }
  std::string class_name() const override { return "Activation"; }
  Config config() const override {
    Config c = Config::object();
    c.set("activation", ConfigCodec<Activation>::write(activation_));
    return c;
  }
  // Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "Activation config");
    const Activation activation = r.read<Activation>("activation");
    r.finish();
    return std::make_unique<ActivationLayer>(in_features, activation);
  }
  std::string describe() const override { return "Activation(" + to_string(activation_) + ")"; }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<ActivationLayer>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const ActivationLayer&>(other); }
  Activation activation() const { return activation_; }
  std::unique_ptr<LayerStream<S>> open_stream(Index, const StreamOptions&) const override {
    return std::make_unique<ActivationStream>(activation_);
  }

 protected:
  void do_forward(const Tensor3<S>& x, const Mask&, Mode, Tensor3<S>& y) override {
    auto out = as_matrix(y);
    activation_forward<S>(activation_, as_matrix(x), out);
  }
  void do_backward(const Tensor3<S>& x, const Mask&, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    auto dxm = as_matrix(dx);
    activation_backward<S>(activation_, as_matrix(x), as_matrix(this->output()), as_matrix(dy), dxm);
  }

 private:
  struct ActivationStream final : PerStepStream<S> {
    Activation activation;
    explicit ActivationStream(Activation a) : activation(a) {}
    void apply(const Tensor3<S>& x, Tensor3<S>& y) override {  // (B*n, F) -> (B*n, F)
      auto Y = as_matrix(y);
      activation_forward<S>(activation, as_matrix(x), Y);
    }
  };

  Activation activation_;
};

}  // namespace seqattn
