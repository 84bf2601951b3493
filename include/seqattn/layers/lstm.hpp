#pragma once
/// \file
/// LSTM (Keras' LSTM), full backpropagation through time.
///
/// ```unparsed
///   x (B, T, F) -> y (B, T, U) with return_sequences(true), else y (B, 1, U) = the state at the last valid step
///   (a sequence of length 0 gives zeros; out_mask() is then empty, as global pooling's).
/// ```
/// Equations, Keras gate order i, f, c, o (column blocks of kernel, recurrent_kernel and bias):
///
/// ```unparsed
///   z_t = x_t W + h_{t-1} K + b                  W = kernel (F, 4U), K = recurrent_kernel (U, 4U), b = bias (4U)
///   i = ra(z_i)   f = ra(z_f)   g = act(z_c)   o = ra(z_o)      ra = recurrent_activation (sigmoid), act (tanh)
///   c_t = f * c_{t-1} + i * g                    h_t = o * act(c_t)                  h_{-1} = c_{-1} = 0
/// ```
/// Parameters (Keras names): "kernel" (F, 4U), "recurrent_kernel" (U, 4U), "bias" (4U).
/// PyTorch nn.LSTM (batch_first=True) has the same gate order (its i, f, g, o) and the same equations with
/// sigmoid / tanh:  weight_ih_l0 = kernel^T (4U, F), weight_hh_l0 = recurrent_kernel^T (4U, U),
/// bias = bias_ih_l0 + bias_hh_l0 (PyTorch keeps two bias vectors that only ever appear summed).
/// Masks: sequence b is processed at its kept steps only (t \< len_b for a length mask; any pattern with holes or
/// left padding for a step mask, core/mask.hpp). A masked step is skipped: h and c are carried across it
/// unchanged, its output row is 0, its input gets zero gradient and the backward pass carries dh and dc across
/// it unchanged. Without return_sequences the output is the state after the last kept step (0 when none is
/// kept). So the kept outputs equal those of the compacted sequence (kept steps only, as a length mask), and they
/// are bitwise independent of the values at masked steps (NaN and Inf included). Keras skips masked steps the
/// same way but repeats the previous output at a masked step (0 before the first kept step); seqattn writes 0
/// there (as Keras' Bidirectional and zero_output_for_mask do): the step is masked downstream either way.
/// Cost: one GEMM x W over all B*T rows, then per step one (B, U) x (U, 4U) product; backward: per step one
/// (B, 4U) x (4U, U) product, then dK, dW and dx as three GEMMs over all rows. Buffers are resized only when a
/// shape changes (no allocation in a steady loop).
/// Options (Keras defaults): activation tanh, recurrent_activation sigmoid (linear, relu, tanh or sigmoid),
/// use_bias, kernel_init glorot_uniform, recurrent_init orthogonal, bias_init zeros, unit_forget_bias (forget
/// gate bias starts at 1), return_sequences false, seed (default next_seed()).
/// Stream form (core/stream.hpp), every option: state "h" and "c" (B, 1, U) per stream; a chunk of n steps
/// projects its B*n input rows in one product, then steps the cell. Without return_sequences the layer pools
/// time: each step writes h at that step (the layer's output over the prefix ending there).

#include <memory>
#include <optional>
#include <string>

#include "seqattn/core/init.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/detail/recurrent.hpp"

namespace seqattn {

/// Options of LSTM (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct LSTMOptions {
  /// True: every step's output (B, T, units); false: the last valid step's (B, 1, units).
  SEQATTN_ARG(bool, return_sequences, false)
  /// Activation of the cell candidate and of the output (Keras activation).
  SEQATTN_ARG(Activation, activation, Activation::Tanh)
  /// Activation of the gates.
  SEQATTN_ARG(Activation, recurrent_activation, Activation::Sigmoid)
  /// Adds a bias.
  SEQATTN_ARG(bool, use_bias, true)
  /// Initializer of the kernel.
  SEQATTN_ARG(Init, kernel_init, Init::glorot_uniform())
  /// Initializer of the recurrent kernel.
  SEQATTN_ARG(Init, recurrent_init, Init::orthogonal())
  /// Initializer of the bias.
  SEQATTN_ARG(Init, bias_init, Init::zeros())
  /// Adds 1 to the forget-gate bias at initialization (Keras unit_forget_bias).
  SEQATTN_ARG(bool, unit_forget_bias, true)
  /// Seed of the layer's random numbers (default: next_seed()).
  SEQATTN_ARG(std::optional<std::uint64_t>, seed, std::nullopt)

  /// The fields with their model-file keys (core/layer_config.hpp).
  template <class Self, class V>
  static void visit_options(Self& o, V&& v) {
    v("return_sequences", o.return_sequences_);
    v("activation", o.activation_);
    v("recurrent_activation", o.recurrent_activation_);
    v("use_bias", o.use_bias_);
    v("kernel_initializer", o.kernel_init_);
    v("recurrent_initializer", o.recurrent_init_);
    v("bias_initializer", o.bias_init_);
    v("unit_forget_bias", o.unit_forget_bias_);
    v("seed", o.seed_);
  }
};

/// Long short-term memory (Keras LSTM), full backpropagation through time; see the file documentation.
///
/// Also public, from its implementation base: units(), return_sequences(), kernel() (W) and recurrent_kernel() (K).
/// \extends Layer
template <class S>
class LSTM final : public detail::RecurrentBase<S> {
  using Base = detail::RecurrentBase<S>;

 public:
  /// An LSTM of `units` hidden features for inputs of `in_features` features.
  LSTM(Index in_features, Index units, LSTMOptions options = LSTMOptions())
      : Base(in_features, units, 4, options.return_sequences(), "LSTM"), options_(options) {
    detail::check_recurrent_activation(describe(), "activation", options.activation());
    detail::check_recurrent_activation(describe(), "recurrent_activation", options.recurrent_activation());
    Rng rng(options.seed().value_or(next_seed()));
    options.kernel_init().fill(this->W_, in_features, 4 * units, rng);
    options.recurrent_init().fill(this->K_, units, 4 * units, rng);
    if (options.use_bias()) {
      b_.resize(4 * units);
      options.bias_init().fill(b_, units, 4 * units, rng);
      if (options.unit_forget_bias()) b_.segment(units, units).setOnes();
      db_ = Vector<S>::Zero(4 * units);
    }
  }

  /// \copydoc Layer::name
  std::string name() const override { return "lstm"; }
  /// \copydoc Layer::class_name
  std::string class_name() const override { return "LSTM"; }
  /// \copydoc Layer::config
  Config config() const override {
    Config c = Config::object();
    c.set("units", this->units());
    write_options(c, options_);
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "LSTM config");
    const Index units = r.read_size("units");
    const LSTMOptions options = read_options<LSTMOptions>(r);
    r.finish();
    return std::make_unique<LSTM>(in_features, units, options);
  }
  /// \copydoc Layer::describe
  std::string describe() const override {
    std::string s = this->base_describe("LSTM");
    if (options_.activation() != Activation::Tanh) s += ", activation=" + to_string(options_.activation());
    if (options_.recurrent_activation() != Activation::Sigmoid)
      s += ", recurrent_activation=" + to_string(options_.recurrent_activation());
    if (!options_.use_bias()) s += ", use_bias=false";
    return s + ")";
  }
  /// \copydoc Layer::clone
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<LSTM>(*this); }
  /// \copydoc Layer::copy_from
  void copy_from(const Layer<S>& other) override { *this = static_cast<const LSTM&>(other); }

  /// The options the layer was built with.
  const LSTMOptions& options() const { return options_; }
  /// The bias (4 * units; in place; empty without use_bias).
  Vector<S>& bias() { return b_; }
  /// \copydoc Layer::open_stream
  std::unique_ptr<LayerStream<S>> open_stream(Index batch, const StreamOptions&) const override {
    return std::make_unique<LSTMStream>(*this, batch);
  }
  /// \copydoc Layer::supports_step_masks
  bool supports_step_masks() const override { return true; }

 protected:
  /// x (B, T, F) -> XW (B*T, 4U) = x W + b -> per step z (B, 4U) = XW_t + h K -> gates, c, h -> y.
  /// The gate and state arithmetic runs on whole (B, U) blocks (vectorized); rows of sequences that ended keep
  /// their state (only valid rows are copied into c, h and the caches).
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    if (mask.has_holes())
      forward_steps<true>(x, mask, y);
    else
      forward_steps<false>(x, mask, y);
  }
  /// dy (B, T or 1, U) -> dx (B, T, F); kernel, recurrent_kernel, bias gradients added into.
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    if (mask.has_holes())
      backward_steps<true>(x, mask, dy, dx);
    else
      backward_steps<false>(x, mask, dy, dx);
  }

  /// \copydoc Layer::collect_params
  void collect_params(ParamList<S>& list) override {
    list.push_back(matrix_param<S>("kernel", this->W_, &this->dW_, ParamRole::Kernel));
    list.push_back(matrix_param<S>("recurrent_kernel", this->K_, &this->dK_, ParamRole::Recurrent));
    if (options_.use_bias()) list.push_back(vector_param<S>("bias", b_, &db_, ParamRole::Bias));
  }

 private:
  // The forward steps for a length mask (Holes false) or a step mask (Holes true, decided once per call).
  template <bool Holes>
  void forward_steps(const Tensor3<S>& x, const Mask& mask, Tensor3<S>& y) {
    const Index B = x.dimension(0), T = x.dimension(1), U = this->units_;
    const Activation ra = options_.recurrent_activation(), act = options_.activation();
    const Index Lmax = detail::max_length(mask, B, T);
    this->project_inputs(x, b_.transpose(), options_.use_bias());  // (1) zx = x W + b, all rows
    this->start_sequence(B, T);
    this->hprev_.setZero();
    ensure_shape(c_, B, U);
    c_.setZero();
    ensure_shape(C_, B * T, U);
    ensure_shape(Tc_, B * T, U);
    C_.setZero();  // rows of padded steps stay 0 (finite values for the backward's whole-block arithmetic)
    Tc_.setZero();
    ensure_shape(zs_, B, 4 * U);
    ensure_shape(cn_, B, U);
    ensure_shape(tc_, B, U);
    y.setZero();
    auto& h = this->h_;
    for (Index t = 0; t < Lmax; ++t) {
      detail::recurrent_product(zs_, h, this->K_, false);  // (2) z = h_{t-1} K ...
      auto A = detail::step_rows(this->XW_, t, T, B);      // (B, 4U): zx_t, overwritten by the gates
      zs_ += A;                                            // (2) ... + zx_t
      detail::activate_inplace(ra, zs_.leftCols(2 * U));   // (3) i = ra(z_i), f = ra(z_f)
      detail::activate_inplace(act, zs_.middleCols(2 * U, U));  // (3) g = act(z_c)
      detail::activate_inplace(ra, zs_.rightCols(U));      // (3) o = ra(z_o)
      A = zs_;
      cn_.array() = zs_.middleCols(U, U).array() * c_.array() + zs_.leftCols(U).array() * zs_.middleCols(2 * U, U).array();  // (4) c_t = f c_{t-1} + i g
      tc_ = cn_;
      detail::activate_inplace(act, tc_);  // (5) act(c_t)
      for (Index b = 0; b < B; ++b) {
        const Index r = b * T + t;
        if (!detail::kept<Holes>(mask, b, t, T)) {  // state carried across the step
          // C_ holds the cell state after step t: the backward reads c_{t-1} from row t - 1
          if constexpr (Holes) C_.row(r) = c_.row(b);
          continue;
        }
        this->hprev_.row(r) = h.row(b);
        c_.row(b) = cn_.row(b);
        C_.row(r) = cn_.row(b);
        Tc_.row(r) = tc_.row(b);
        h.row(b).array() = zs_.block(b, 3 * U, 1, U).array() * tc_.row(b).array();  // (5) h_t = o act(c_t)
      }
      this->template write_output<Holes>(mask, t, T, y);  // (6) y_t = h_t (kept rows), or the last kept h
    }
  }

  // The backward steps for a length mask (Holes false) or a step mask (Holes true).
  template <bool Holes>
  void backward_steps(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) {
    const Index B = x.dimension(0), T = x.dimension(1), U = this->units_;
    const Activation ra = options_.recurrent_activation(), act = options_.activation();
    const Index Lmax = detail::max_length(mask, B, T);
    ensure_shape(dZ_, B * T, 4 * U);
    dZ_.setZero();  // padded rows stay 0: no gradient
    ensure_shape(dh_, B, U);
    ensure_shape(dc_, B, U);
    ensure_shape(dzs_, B, 4 * U);
    ensure_shape(cn_, B, U);
    dh_.setZero();
    dc_.setZero();
    if constexpr (Holes) {
      ensure_shape(dh_carry_, B, U);
      ensure_shape(dc_carry_, B, U);
    }
    for (Index t = Lmax - 1; t >= 0; --t) {
      this->template add_output_grad<Holes>(mask, dy, t, T, dh_);  // inverts (6)
      // a masked step passes dh and dc across unchanged
      if constexpr (Holes) {
        dh_carry_ = dh_;
        dc_carry_ = dc_;
      }
      auto A = detail::step_rows(this->XW_, t, T, B);
      auto Tc = detail::step_rows(Tc_, t, T, B);
      const auto i = A.leftCols(U).array(), f = A.middleCols(U, U).array(), g = A.middleCols(2 * U, U).array();
      const auto o = A.rightCols(U).array();
      // inverts (5): d_o = dh act(c_t);  dc = dc_next + dh o act'(c_t)   (cn_ holds dh o, then dc)
      dzs_.rightCols(U).array() = dh_.array() * Tc.array();
      cn_.array() = dh_.array() * o;
      detail::times_activation_grad(act, Tc, cn_);
      cn_ += dc_;
      // inverts (4): di = dc g, df = dc c_{t-1}, dg = dc i, dc_{t-1} = dc f
      dzs_.leftCols(U).array() = cn_.array() * g;
      if (t > 0)
        dzs_.middleCols(U, U).array() = cn_.array() * detail::step_rows(C_, t - 1, T, B).array();
      else
        dzs_.middleCols(U, U).setZero();
      dzs_.middleCols(2 * U, U).array() = cn_.array() * i;
      dc_.array() = cn_.array() * f;
      // inverts (3): through the gate activations, from their outputs
      detail::times_activation_grad(ra, A.leftCols(2 * U), dzs_.leftCols(2 * U));
      detail::times_activation_grad(act, A.middleCols(2 * U, U), dzs_.middleCols(2 * U, U));
      detail::times_activation_grad(ra, A.rightCols(U), dzs_.rightCols(U));
      for (Index b = 0; b < B; ++b)
        if (!detail::kept<Holes>(mask, b, t, T)) {  // masked (ended, or not started backward yet): no gradient
          dzs_.row(b).setZero();
          if constexpr (Holes)
            dc_.row(b) = dc_carry_.row(b);
          else
            dc_.row(b).setZero();
        }
      detail::step_rows(dZ_, t, T, B) = dzs_;
      detail::recurrent_product(dh_, dzs_, this->K_.transpose(), false);  // inverts (2): dh_{t-1} = dz K^T
      if constexpr (Holes)
        for (Index b = 0; b < B; ++b)
          if (!detail::kept<Holes>(mask, b, t, T)) dh_.row(b) = dh_carry_.row(b);
    }
    detail::gemm(this->dK_, this->hprev_.transpose(), dZ_, S(1), true);  // inverts (2): dK += sum_t h_{t-1}^T dz_t
    if (options_.use_bias()) db_.noalias() += dZ_.colwise().sum().transpose();  // inverts (1) for b
    this->project_inputs_backward(x, dZ_, dx);  // inverts (1): dW += x^T dz, dx = dz W^T
  }

  // x (B, n, F) -> y (B, n, U): forward's steps (1)-(6) over the carried h and c of every stream
  struct LSTMStream final : detail::RecurrentStream<S> {
    using Base = detail::RecurrentStream<S>;
    const LSTM& layer;
    Tensor3<S> c;  // (B, 1, U) carried cell state
    Matrix<S> tc;  // (B, U) act(c_t)
    LSTMStream(const LSTM& l, Index batch) : Base(batch, l.units_, !l.return_sequences_), layer(l) {
      detail::zero_state(c, batch, 1, l.units_);
    }
    void step(const Tensor3<S>& x, const std::vector<Index>&, Tensor3<S>& y) override {
      const Index B = x.dimension(0), n = x.dimension(1), U = layer.units_;
      const Activation ra = layer.options_.recurrent_activation(), act = layer.options_.activation();
      this->project(x, layer.W_, layer.b_.transpose(), layer.options_.use_bias());  // (1) xw = x W + b
      auto h = this->h();
      MatrixMap<S> cm(c.data(), B, U);
      Matrix<S>& zs = this->zs_;
      ensure_shape(zs, B, 4 * U);
      ensure_shape(tc, B, U);
      for (Index i = 0; i < n; ++i) {
        detail::stream_product(zs, h, layer.K_);                 // (2) z = h_{t-1} K ...
        zs += detail::step_rows(this->xw_, i, n, B);             // (2) ... + xw_t
        detail::activate_inplace(ra, zs.leftCols(2 * U));        // (3) i, f
        detail::activate_inplace(act, zs.middleCols(2 * U, U));  // (3) g
        detail::activate_inplace(ra, zs.rightCols(U));           // (3) o
        cm.array() = zs.middleCols(U, U).array() * cm.array() +
                     zs.leftCols(U).array() * zs.middleCols(2 * U, U).array();  // (4) c_t = f c_{t-1} + i g
        tc = cm;
        detail::activate_inplace(act, tc);                 // (5) act(c_t)
        h.array() = zs.rightCols(U).array() * tc.array();  // (5) h_t = o act(c_t)
        detail::step_rows(y, i) = h;                       // (6) y_t = h_t
      }
    }
    void reset(Index b) override {
      Base::reset(b);
      detail::zero_stream(c, b);
    }
    void state(StreamStateList<S>& list, const std::string& prefix) override {
      Base::state(list, prefix);
      list.push_back({prefix + "c", &c, false, 0});
    }
  };

  LSTMOptions options_;
  Vector<S> b_, db_;      // (4U)
  Matrix<S> c_;           // (B, U) running cell state
  Matrix<S> C_, Tc_;      // (B*T, U) c_t and act(c_t) at row (b, t) (0 at padded rows; step masks: C_ carries
                          // the cell state across masked rows)
  Matrix<S> cn_, tc_;     // (B, U) one step's new c and act(c) (backward: scratch)
  Matrix<S> zs_;          // (B, 4U) recurrent part of one step
  Matrix<S> dZ_;          // (B*T, 4U) gradient of the gate pre-activations
  Matrix<S> dh_, dc_;     // (B, U) gradients flowing to h_{t-1}, c_{t-1}
  Matrix<S> dzs_;         // (B, 4U) one step of dZ, contiguous
  Matrix<S> dh_carry_, dc_carry_;  // (B, U) step masks: dh, dc before a step, restored at its masked rows
};

}  // namespace seqattn
