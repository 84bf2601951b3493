#pragma once
/// \file
/// Dense: y = act(x W + b) on the last axis, one product over all B*T rows: the register-tiled products of
/// detail/panel_product.hpp (also dW and dx), where every element is one FMA chain from zero, so each output row
/// is bitwise independent of how many rows the batch has and padding never changes valid outputs. Step masks
/// (holes, left padding; supports_step_masks()): every step is computed on its own, masked ones too, so their
/// values never reach a kept step; with dy 0 there, dx is 0 there and they add nothing to dW and db.
/// Threads (core/threads.hpp): rows in fixed chunks, dW and db summed per chunk then in chunk order, so every
/// result is bitwise the same for any thread count.
///
/// ```unparsed
///   x (B, T, in) -> y (B, T, units); W (in, units); b (units). Parameters "W", "b" (Keras names).
/// ```

#include <memory>
#include <optional>
#include <string>

#include "seqattn/core/init.hpp"
#include "seqattn/core/layer.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/detail/panel_product.hpp"
#include "seqattn/detail/parallel.hpp"
#include "seqattn/detail/stream_product.hpp"
#include "seqattn/layers/activation.hpp"

namespace seqattn {

/// Options of Dense (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct DenseOptions {
  /// Activation of the output (Linear: none).
  SEQATTN_ARG(Activation, activation, Activation::Linear)
  /// Adds a bias.
  SEQATTN_ARG(bool, use_bias, true)
  /// Initializer of the kernel.
  SEQATTN_ARG(Init, kernel_init, Init::glorot_uniform())
  /// Initializer of the bias.
  SEQATTN_ARG(Init, bias_init, Init::zeros())
  /// Seed of the layer's random numbers (default: next_seed()).
  SEQATTN_ARG(std::optional<std::uint64_t>, seed, std::nullopt)

  /// The fields with their model-file keys (core/layer_config.hpp).
  template <class Self, class V>
  static void visit_options(Self& o, V&& v) {
    v("activation", o.activation_);
    v("use_bias", o.use_bias_);
    v("kernel_initializer", o.kernel_init_);
    v("bias_initializer", o.bias_init_);
    v("seed", o.seed_);
  }
};

/// A fully connected layer on the last axis, y = act(x W + b); see the file documentation.
template <class S>
class Dense final : public Layer<S> {
 public:
  /// A layer of `units` outputs for inputs of `in_features` features.
  Dense(Index in_features, Index units, DenseOptions options = DenseOptions())
      : Layer<S>(in_features), units_(units), options_(options) {
    if (units <= 0) detail::throw_config("Dense: units must be positive but got ", units);
    detail::checked_parameter<S>(describe(), "kernel W", {in_features, units});
    Rng rng(options.seed().value_or(next_seed()));
    W_.resize(in_features, units);
    options.kernel_init().fill(W_, in_features, units, rng);
    dW_ = Matrix<S>::Zero(in_features, units);
    if (options.use_bias()) {
      b_.resize(units);
      options.bias_init().fill(b_, in_features, units, rng);
      db_ = Vector<S>::Zero(units);
    }
  }
  /// Dense(in_features, units, DenseOptions().activation(activation)).
  Dense(Index in_features, Index units, Activation activation)
      : Dense(in_features, units, DenseOptions().activation(activation)) {}

  Index out_features() const override { return units_; }
  std::string name() const override { return "dense"; }
  std::string class_name() const override { return "Dense"; }
  /// Step masks: position-wise, every step is computed on its own (masked steps never reach a kept one).
  bool supports_step_masks() const override { return true; }
  Config config() const override {
    Config c = Config::object();
    c.set("units", units_);
    write_options(c, options_);
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "Dense config");
    const Index units = r.read_size("units");
    const DenseOptions options = read_options<DenseOptions>(r);
    r.finish();
    return std::make_unique<Dense>(in_features, units, options);
  }
  std::string describe() const override {
    std::string s = "Dense(units=" + std::to_string(units_);
    if (options_.activation() != Activation::Linear) s += ", activation=" + to_string(options_.activation());
    if (!options_.use_bias()) s += ", use_bias=false";
    return s + ")";
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<Dense>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const Dense&>(other); }
  /// Per step: y = act(x W + b) on the B*n new rows (an Eigen product on the weights in place).
  std::unique_ptr<LayerStream<S>> open_stream(Index, const StreamOptions&) const override {
    return std::make_unique<DenseStream>(*this);
  }

  /// The number of output features.
  Index units() const { return units_; }
  /// The options the layer was built with.
  const DenseOptions& options() const { return options_; }
  /// The kernel W (in_features, units), in place.
  Matrix<S>& kernel() { return W_; }
  /// The bias b (units), in place; empty without use_bias.
  Vector<S>& bias() { return b_; }

 protected:
  /// x (N=B*T, in) -> z = x W + b (N, units) -> y = act(z), in the fixed row chunks of core/threads.hpp
  /// (shared by the threads; a row's bits do not depend on its chunk)
  void do_forward(const Tensor3<S>& x, const Mask&, Mode, Tensor3<S>& y) override {
    auto X = as_matrix(x);
    auto Y = as_matrix(y);
    const Index N = X.rows();
    const bool has_act = options_.activation() != Activation::Linear;
    if (has_act) ensure_shape(z_, N, units_);
    panel_.set(W_);
    auto compute = [&](auto&& Z, Index r0, Index n) {  // Z: rows [r0, r0 + n) of a (N, units) matrix
      detail::panel_product<S>(X.data() + r0 * X.cols(), X.cols(), n, panel_, Z.data(), units_, false);
      if (options_.use_bias()) Z.rowwise() += b_.transpose();
    };
    const Index chunks = detail::chunk_count(N);
    const int threads = detail::parallel_threads(chunks, double(N) * double(W_.size()));
    detail::parallel_for(chunks, threads, [&](Index c) {
      const Index r0 = c * detail::kChunkRows, n = detail::chunk_rows(N, c);
      auto Yc = Y.middleRows(r0, n);
      if (has_act) {
        auto Zc = z_.middleRows(r0, n);
        compute(Zc, r0, n);
        activation_forward<S>(options_.activation(), Zc, Yc);
      } else {
        compute(Yc, r0, n);
      }
    });
  }

  /// dy (N, units) -> dz = dy * act'(z);  dW += x^T dz;  db += sum_rows dz;  dx = dz W^T
  /// Row chunks as in forward; dW and db sum per chunk, then in chunk order (detail/parallel.hpp).
  void do_backward(const Tensor3<S>& x, const Mask&, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    auto X = as_matrix(x);
    auto DY = as_matrix(dy);
    auto DX = as_matrix(dx);
    const Index N = X.rows();
    const bool has_act = options_.activation() != Activation::Linear;
    if (has_act) ensure_shape(dz_, N, units_);
    gW_.begin(N, dW_.data(), dW_.rows(), dW_.cols());
    if (options_.use_bias()) gb_.begin(N, db_.data(), 1, units_);
    transposed_.set_transposed(W_);
    const Index chunks = detail::chunk_count(N);
    const int threads = detail::parallel_threads(chunks, 2.0 * double(N) * double(W_.size()));
    detail::parallel_for(chunks, threads, [&](Index c) {
      const Index r0 = c * detail::kChunkRows, n = detail::chunk_rows(N, c);
      auto DXc = DX.middleRows(r0, n);
      if (has_act) {
        auto dZc = dz_.middleRows(r0, n);
        activation_backward<S>(options_.activation(), z_.middleRows(r0, n), as_matrix(this->output()).middleRows(r0, n),
                               DY.middleRows(r0, n), dZc);
        accumulate(c, X.middleRows(r0, n), dZc, DXc);
      } else {
        accumulate(c, X.middleRows(r0, n), DY.middleRows(r0, n), DXc);
      }
    });
    gW_.finish();
    if (options_.use_bias()) gb_.finish();
  }

  void collect_params(ParamList<S>& list) override {
    list.push_back(matrix_param<S>("W", W_, &dW_, ParamRole::Kernel));
    if (options_.use_bias()) list.push_back(vector_param<S>("b", b_, &db_, ParamRole::Bias));
  }

 private:
  struct DenseStream final : PerStepStream<S> {
    const Dense& layer;
    explicit DenseStream(const Dense& l) : layer(l) {}
    // x (B*n, in) -> y = act(x W + b) (B*n, units)
    void apply(const Tensor3<S>& x, Tensor3<S>& y) override {
      auto Y = as_matrix(y);
      detail::stream_product(Y, as_matrix(x), layer.W_);
      if (layer.options_.use_bias()) Y.rowwise() += layer.b_.transpose();
      activation_forward<S>(layer.options_.activation(), Y, Y);
    }
  };

  // Chunk c: dW += x_c^T dz_c, db += sum_rows dz_c (into the chunk's partials), dx_c = dz_c W^T. X, dZ and DX:
  // the chunk's contiguous rows.
  template <class XM, class DZ, class DXM>
  void accumulate(Index c, const XM& X, const DZ& dZ, DXM& DX) {
    const Index n = X.rows(), in = X.cols();
    detail::add_weight_gradient<S>(X.data(), in, n, in, dZ.data(), units_, units_, gW_.target(c).data(), units_);
    if (options_.use_bias()) gb_.target(c).noalias() += dZ.colwise().sum();
    detail::panel_product<S>(dZ.data(), units_, n, transposed_, DX.data(), in, false);
  }

  Index units_;
  DenseOptions options_;
  Matrix<S> W_, dW_;
  Vector<S> b_, db_;
  Matrix<S> z_, dz_;                           // pre-activation and its gradient (only with an activation)
  detail::WeightPanel<S> panel_, transposed_;  // W and W^T as panels (set by each forward and backward)
  detail::GradSum<S> gW_, gb_;                 // per-chunk partials of dW and db
};

}  // namespace seqattn
