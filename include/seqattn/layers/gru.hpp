#pragma once
/// \file
/// GRU (Keras' GRU, both forms: reset_after=True, the Keras 2 / TF2 default, and reset_after=False, the original
/// GRU and tf.keras 1.x's default), full backpropagation through time.
///
/// ```unparsed
///   x (B, T, F) -> y (B, T, U) with return_sequences(true), else y (B, 1, U) = the state at the last valid step
///   (a sequence of length 0 gives zeros; out_mask() is then empty, as global pooling's).
/// ```
/// Equations, Keras gate order z, r, h (column blocks of kernel, recurrent_kernel and of each bias row):
///
/// ```unparsed
///   xz_t = x_t W + b_in      hz_t = h_{t-1} K + b_rec      W = kernel (F, 3U), K = recurrent_kernel (U, 3U)
///   z = ra(xz_z + hz_z)      r = ra(xz_r + hz_r)           ra = recurrent_activation (sigmoid)
///   hh = act(xz_h + r * hz_h)                               act = activation (tanh); reset AFTER the product
///   h_t = z * h_{t-1} + (1 - z) * hh                        h_{-1} = 0
/// ```
/// Parameters (Keras names): "kernel" (F, 3U), "recurrent_kernel" (U, 3U), "bias" (2, 3U): row 0 is the input
/// bias b_in, row 1 the recurrent bias b_rec (Keras' reset_after bias layout).
/// reset_after(false) (Keras reset_after=False): the reset gate multiplies h BEFORE the recurrent product and
/// there is one bias, "bias" (1, 3U) (Keras' (3U,) vector):
///
/// ```unparsed
///   z = ra(x W_z + b_z + h K_z)   r = ra(x W_r + b_r + h K_r)   hh = act(x W_h + b_h + (r * h) K_h)
///   h_t = z * h_{t-1} + (1 - z) * hh
/// ```
/// It costs a second recurrent product per step: (B, U) x (U, 2U) for z, r, then (B, U) x (U, U) for hh (the
/// backward pass likewise). It has no torch nn.GRU equivalent (torch applies r after the product).
/// PyTorch nn.GRU (batch_first=True) computes the same function with gate order r, z, n:
///
/// ```unparsed
///   weight_ih_l0 (3U, F) = [W_r^T; W_z^T; W_h^T]   weight_hh_l0 (3U, U) = [K_r^T; K_z^T; K_h^T]
///   bias_ih_l0 = [b_in_r, b_in_z, b_in_h]          bias_hh_l0 = [b_rec_r, b_rec_z, b_rec_h]
///   (torch's n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h: Keras' hh and h_t).
/// ```
/// Masks: sequence b is processed at its kept steps only (t \< len_b for a length mask; any pattern with holes or
/// left padding for a step mask, core/mask.hpp). A masked step is skipped: h is carried across it unchanged, its
/// output row is 0, its input gets zero gradient and the backward pass carries dh across it unchanged. Without
/// return_sequences the output is the state after the last kept step (0 when none is kept). So the kept outputs
/// equal those of the compacted sequence (kept steps only, as a length mask), and they are bitwise independent
/// of the values at masked steps (NaN and Inf included). Keras skips masked steps the same way but repeats the
/// previous output at a masked step (0 before the first kept step); seqattn writes 0 there (as Keras'
/// Bidirectional and zero_output_for_mask do): the step is masked downstream either way.
/// Cost: one GEMM x W over all B*T rows, per step one (B, U) x (U, 3U) product; backward per step one
/// (B, 3U) x (3U, U) product, then dK, dW and dx as GEMMs over all rows. No allocation in a steady loop.
/// Options (Keras defaults): activation tanh, recurrent_activation sigmoid (linear, relu, tanh or sigmoid),
/// reset_after true, use_bias, kernel_init glorot_uniform, recurrent_init orthogonal, bias_init zeros, return_sequences
/// false, seed (default next_seed()). Stream form (core/stream.hpp), every option: state "h" (B, 1, U) per stream; a
/// chunk of n steps projects its B*n input rows in one product, then steps the cell. Without return_sequences the layer
/// pools time: each step writes h at that step (the layer's output over the prefix ending there).

#include <memory>
#include <optional>
#include <string>

#include "seqattn/core/init.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/detail/recurrent.hpp"

namespace seqattn {

/// Options of GRU (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct GRUOptions {
  /// True: every step's output (B, T, units); false: the last valid step's (B, 1, units).
  SEQATTN_ARG(bool, return_sequences, false)
  /// Activation of the candidate state (Keras activation).
  SEQATTN_ARG(Activation, activation, Activation::Tanh)
  /// Activation of the gates.
  SEQATTN_ARG(Activation, recurrent_activation, Activation::Sigmoid)
  /// Adds a bias.
  SEQATTN_ARG(bool, use_bias, true)
  SEQATTN_ARG(bool, reset_after, true)  ///< false: Keras' reset_after=False (reset before the recurrent product)
  /// Initializer of the kernel.
  SEQATTN_ARG(Init, kernel_init, Init::glorot_uniform())
  /// Initializer of the recurrent kernel.
  SEQATTN_ARG(Init, recurrent_init, Init::orthogonal())
  /// Initializer of the bias.
  SEQATTN_ARG(Init, bias_init, Init::zeros())
  /// Seed of the layer's random numbers (default: next_seed()).
  SEQATTN_ARG(std::optional<std::uint64_t>, seed, std::nullopt)

  /// The fields with their model-file keys (core/layer_config.hpp).
  template <class Self, class V>
  static void visit_options(Self& o, V&& v) {
    v("return_sequences", o.return_sequences_);
    v("activation", o.activation_);
    v("recurrent_activation", o.recurrent_activation_);
    v("use_bias", o.use_bias_);
    v("reset_after", o.reset_after_);
    v("kernel_initializer", o.kernel_init_);
    v("recurrent_initializer", o.recurrent_init_);
    v("bias_initializer", o.bias_init_);
    v("seed", o.seed_);
  }
};

/// Gated recurrent unit (Keras GRU, reset_after by default), full backpropagation through time; see the file
/// documentation.
///
/// Also public, from its implementation base: units(), return_sequences(), kernel() (W) and recurrent_kernel() (K).
/// \extends Layer
template <class S>
class GRU final : public detail::RecurrentBase<S> {
  using Base = detail::RecurrentBase<S>;

 public:
  /// A GRU of `units` hidden features for inputs of `in_features` features.
  GRU(Index in_features, Index units, GRUOptions options = GRUOptions())
      : Base(in_features, units, 3, options.return_sequences(), "GRU"), options_(options) {
    detail::check_recurrent_activation(describe(), "activation", options.activation());
    detail::check_recurrent_activation(describe(), "recurrent_activation", options.recurrent_activation());
    Rng rng(options.seed().value_or(next_seed()));
    options.kernel_init().fill(this->W_, in_features, 3 * units, rng);
    options.recurrent_init().fill(this->K_, units, 3 * units, rng);
    if (options.use_bias()) {
      const Index rows = options.reset_after() ? 2 : 1;
      b_.resize(rows, 3 * units);
      options.bias_init().fill(b_, units, 3 * units, rng);
      db_ = Matrix<S>::Zero(rows, 3 * units);
    }
  }

  /// \copydoc Layer::name
  std::string name() const override { return "gru"; }
  /// \copydoc Layer::class_name
  std::string class_name() const override { return "GRU"; }
  /// \copydoc Layer::config
  Config config() const override {
    Config c = Config::object();
    c.set("units", this->units());
    write_options(c, options_);
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "GRU config");
    const Index units = r.read_size("units");
    const GRUOptions options = read_options<GRUOptions>(r);
    r.finish();
    return std::make_unique<GRU>(in_features, units, options);
  }
  /// \copydoc Layer::describe
  std::string describe() const override {
    std::string s = this->base_describe("GRU");
    if (options_.activation() != Activation::Tanh) s += ", activation=" + to_string(options_.activation());
    if (options_.recurrent_activation() != Activation::Sigmoid)
      s += ", recurrent_activation=" + to_string(options_.recurrent_activation());
    if (!options_.use_bias()) s += ", use_bias=false";
    if (!options_.reset_after()) s += ", reset_after=false";
    return s + ")";
  }
  /// \copydoc Layer::clone
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<GRU>(*this); }
  /// \copydoc Layer::copy_from
  void copy_from(const Layer<S>& other) override { *this = static_cast<const GRU&>(other); }

  /// The options the layer was built with.
  const GRUOptions& options() const { return options_; }
  Matrix<S>& bias() { return b_; }  ///< (2, 3U): input bias, recurrent bias; (1, 3U) without reset_after
  /// \copydoc Layer::open_stream
  std::unique_ptr<LayerStream<S>> open_stream(Index batch, const StreamOptions&) const override {
    return std::make_unique<GRUStream>(*this, batch);
  }
  /// \copydoc Layer::supports_step_masks
  bool supports_step_masks() const override { return true; }

 protected:
  /// x (B, T, F) -> XW (B*T, 3U) = x W + b_in -> per step hz (B, 3U) = h K + b_rec -> z, r, hh, h -> y
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    const bool after = options_.reset_after();
    if (mask.has_holes())
      after ? forward_steps<true, true>(x, mask, y) : forward_steps<true, false>(x, mask, y);
    else
      after ? forward_steps<false, true>(x, mask, y) : forward_steps<false, false>(x, mask, y);
  }
  /// dy (B, T or 1, U) -> dx (B, T, F); kernel, recurrent_kernel, bias gradients added into.
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const bool after = options_.reset_after();
    if (mask.has_holes())
      after ? backward_steps<true, true>(x, mask, dy, dx) : backward_steps<true, false>(x, mask, dy, dx);
    else
      after ? backward_steps<false, true>(x, mask, dy, dx) : backward_steps<false, false>(x, mask, dy, dx);
  }

  /// \copydoc Layer::collect_params
  void collect_params(ParamList<S>& list) override {
    list.push_back(matrix_param<S>("kernel", this->W_, &this->dW_, ParamRole::Kernel));
    list.push_back(matrix_param<S>("recurrent_kernel", this->K_, &this->dK_, ParamRole::Recurrent));
    if (options_.use_bias()) list.push_back(matrix_param<S>("bias", b_, &db_, ParamRole::Bias));
  }

 private:
  // The forward steps for a length mask (Holes false) or a step mask (Holes true, decided once per call), for
  // reset_after (After true) or reset before the product (After false: hzh_ caches r * h_{t-1} instead).
  template <bool Holes, bool After>
  void forward_steps(const Tensor3<S>& x, const Mask& mask, Tensor3<S>& y) {
    const Index B = x.dimension(0), T = x.dimension(1), U = this->units_;
    const Activation ra = options_.recurrent_activation(), act = options_.activation();
    const bool bias = options_.use_bias();
    const Index Lmax = detail::max_length(mask, B, T);
    if (bias)
      this->project_inputs(x, b_.row(0), true);  // (1) xz = x W + b_in, all rows
    else
      this->project_inputs(x, RowVector<S>(), false);
    this->start_sequence(B, T);
    this->hprev_.setZero();
    ensure_shape(hzh_, B * T, U);
    ensure_shape(zs_, B, 3 * U);
    ensure_shape(gz_, B, 3 * U);
    y.setZero();
    auto& h = this->h_;
    if constexpr (!After) {
      hzh_.setZero();  // read whole by the dK_h product of backward: masked rows must be 0, not stale
      ensure_shape(zr_, B, 2 * U);
      ensure_shape(rh_, B, U);
      ensure_shape(hh_, B, U);
    }
    for (Index t = 0; t < Lmax; ++t) {
      auto A = detail::step_rows(this->XW_, t, T, B);  // (B, 3U): xz_t, overwritten by z, r, hh
      if constexpr (After) {
        detail::recurrent_product(zs_, h, this->K_, false);  // (2) hz = h_{t-1} K + b_rec
        if (bias) zs_.rowwise() += b_.row(1);
        // whole (B, U) blocks (vectorized); rows of sequences that ended are not copied into the state
        gz_.leftCols(2 * U) = A.leftCols(2 * U) + zs_.leftCols(2 * U);
        detail::activate_inplace(ra, gz_.leftCols(2 * U));  // (3) z = ra(xz_z + hz_z), r = ra(xz_r + hz_r)
        gz_.rightCols(U).array() = A.rightCols(U).array() + gz_.middleCols(U, U).array() * zs_.rightCols(U).array();
        detail::activate_inplace(act, gz_.rightCols(U));  // (4) hh = act(xz_h + r hz_h)
      } else {
        detail::recurrent_product(zr_, h, this->K_.leftCols(2 * U), false);  // (2') hz_zr = h_{t-1} K_zr
        gz_.leftCols(2 * U) = A.leftCols(2 * U) + zr_;
        detail::activate_inplace(ra, gz_.leftCols(2 * U));  // (3) z, r
        rh_.array() = gz_.middleCols(U, U).array() * h.array();
        detail::recurrent_product(hh_, rh_, this->K_.rightCols(U), false);  // (4') (r h_{t-1}) K_h
        gz_.rightCols(U) = A.rightCols(U) + hh_;
        detail::activate_inplace(act, gz_.rightCols(U));  // (4) hh = act(xz_h + (r h) K_h)
      }
      A = gz_;
      for (Index b = 0; b < B; ++b) {
        if (!detail::kept<Holes>(mask, b, t, T)) continue;  // state carried across the step
        const Index r = b * T + t;
        this->hprev_.row(r) = h.row(b);
        if constexpr (After)
          hzh_.row(r) = zs_.block(b, 2 * U, 1, U);
        else
          hzh_.row(r) = rh_.row(b);
        const auto z = gz_.block(b, 0, 1, U).array();
        h.row(b).array() = z * h.row(b).array() + (S(1) - z) * gz_.block(b, 2 * U, 1, U).array();  // (5) h_t
      }
      this->template write_output<Holes>(mask, t, T, y);  // (6) y_t = h_t (kept rows), or the last kept h
    }
  }

  // The backward steps for a length mask (Holes false) or a step mask (Holes true). A masked row keeps dh as it
  // is (its dhs row is 0, so the recurrent product adds nothing): the state gradient crosses the step unchanged.
  template <bool Holes, bool After>
  void backward_steps(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) {
    const Index B = x.dimension(0), T = x.dimension(1), U = this->units_;
    const Activation ra = options_.recurrent_activation(), act = options_.activation();
    const Index Lmax = detail::max_length(mask, B, T);
    ensure_shape(dXZ_, B * T, 3 * U);
    ensure_shape(dHZ_, B * T, 3 * U);
    dXZ_.setZero();  // padded rows stay 0: no gradient
    dHZ_.setZero();
    ensure_shape(dh_, B, U);
    ensure_shape(dxs_, B, 3 * U);
    ensure_shape(dhs_, B, 3 * U);
    dh_.setZero();
    if constexpr (!After) {
      ensure_shape(da_, B, U);
      ensure_shape(drh_, B, U);
      ensure_shape(dzr_, B, 2 * U);
    }
    for (Index t = Lmax - 1; t >= 0; --t) {
      this->template add_output_grad<Holes>(mask, dy, t, T, dh_);  // inverts (6)
      auto A = detail::step_rows(this->XW_, t, T, B);
      dxs_.setZero();
      dhs_.setZero();
      if constexpr (!After) {
        backward_step_before<Holes>(mask, A, t, T);
        detail::step_rows(dXZ_, t, T, B) = dxs_;
        detail::step_rows(dHZ_, t, T, B) = dhs_;
        continue;
      }
      for (Index b = 0; b < B; ++b) {
        if (!detail::kept<Holes>(mask, b, t, T)) continue;
        const Index r = b * T + t;
        for (Index u = 0; u < U; ++u) {
          const S z = A(b, u), rg = A(b, U + u), hh = A(b, 2 * U + u);
          const S hp = this->hprev_(r, u), hzh = hzh_(r, u), dh = dh_(b, u);
          const S dz = dh * (hp - hh);                                        // inverts (5) for z
          const S da = dh * (S(1) - z) * detail::gate_activation_grad(act, hh);  // inverts (5), (4) for hh
          const S dzp = dz * detail::gate_activation_grad(ra, z);              // inverts (3) for z
          const S drp = da * hzh * detail::gate_activation_grad(ra, rg);       // inverts (4), (3) for r
          dxs_(b, u) = dzp;
          dxs_(b, U + u) = drp;
          dxs_(b, 2 * U + u) = da;  // inverts (4) for xz_h
          dhs_(b, u) = dzp;
          dhs_(b, U + u) = drp;
          dhs_(b, 2 * U + u) = da * rg;  // inverts (4) for hz_h
          dh_(b, u) = dh * z;            // inverts (5) for h_{t-1} (direct path)
        }
      }
      detail::step_rows(dXZ_, t, T, B) = dxs_;
      detail::step_rows(dHZ_, t, T, B) = dhs_;
      detail::recurrent_product(dh_, dhs_, this->K_.transpose(), true);  // inverts (2): dh_{t-1} += dhz K^T
    }
    if constexpr (After) {
      detail::gemm(this->dK_, this->hprev_.transpose(), dHZ_, S(1), true);  // inverts (2): dK += sum h^T dhz
    } else {
      // inverts (2'), (4'): dK_zr += sum_t h_{t-1}^T dhz_zr, dK_h += sum_t (r h_{t-1})^T dhz_h
      detail::gemm(this->dK_.leftCols(2 * U), this->hprev_.transpose(), dHZ_.leftCols(2 * U), S(1), true);
      detail::gemm(this->dK_.rightCols(U), hzh_.transpose(), dHZ_.rightCols(U), S(1), true);
    }
    if (options_.use_bias()) {
      db_.row(0).noalias() += dXZ_.colwise().sum();                       // inverts (1) for b_in (the only bias
      if constexpr (After) db_.row(1).noalias() += dHZ_.colwise().sum();  // without reset_after); (2) for b_rec
    }
    this->project_inputs_backward(x, dXZ_, dx);  // inverts (1): dW += x^T dxz, dx = dxz W^T
  }

  // One backward step of the reset_after=False form at step t (A: the step's z, r, hh): dxs_, dhs_ (zeroed by the
  // caller) get the step's gradients of xz and of the recurrent products' outputs; dh_ becomes dh_{t-1}.
  template <bool Holes, class StepRows>
  void backward_step_before(const Mask& mask, const StepRows& A, Index t, Index T) {
    const Index B = A.rows(), U = this->units_;
    const Activation ra = options_.recurrent_activation(), act = options_.activation();
    da_.setZero();
    for (Index b = 0; b < B; ++b) {
      if (!detail::kept<Holes>(mask, b, t, T)) continue;
      const Index r = b * T + t;
      for (Index u = 0; u < U; ++u) {
        const S z = A(b, u), hh = A(b, 2 * U + u), hp = this->hprev_(r, u), dh = dh_(b, u);
        const S dzp = dh * (hp - hh) * detail::gate_activation_grad(ra, z);    // inverts (5), (3) for z
        const S da = dh * (S(1) - z) * detail::gate_activation_grad(act, hh);  // inverts (5), (4) for hh
        dxs_(b, u) = dzp;
        dhs_(b, u) = dzp;
        dxs_(b, 2 * U + u) = da;
        dhs_(b, 2 * U + u) = da;
        da_(b, u) = da;
      }
    }
    detail::recurrent_product(drh_, da_, this->K_.rightCols(U).transpose(), false);  // inverts (4'): d(r h)
    for (Index b = 0; b < B; ++b) {
      if (!detail::kept<Holes>(mask, b, t, T)) continue;
      const Index r = b * T + t;
      for (Index u = 0; u < U; ++u) {
        const S rg = A(b, U + u), hp = this->hprev_(r, u), drh = drh_(b, u);
        const S drp = drh * hp * detail::gate_activation_grad(ra, rg);  // inverts (4'), (3) for r
        dxs_(b, U + u) = drp;
        dhs_(b, U + u) = drp;
        dzr_(b, u) = dhs_(b, u);
        dzr_(b, U + u) = drp;
        dh_(b, u) = dh_(b, u) * A(b, u) + drh * rg;  // inverts (5) direct path and (4') through r h
      }
    }
    for (Index b = 0; b < B; ++b)  // masked rows pass nothing through the products
      if (!detail::kept<Holes>(mask, b, t, T)) dzr_.row(b).setZero();
    detail::recurrent_product(dh_, dzr_, this->K_.leftCols(2 * U).transpose(), true);  // inverts (2')
  }

  // x (B, n, F) -> y (B, n, U): forward's steps (1)-(6) over the carried h of every stream
  struct GRUStream final : detail::RecurrentStream<S> {
    using Base = detail::RecurrentStream<S>;
    const GRU& layer;
    Matrix<S> gz;      // (B, 3U) z, r, hh
    Matrix<S> rh, hk;  // reset_after=False: (B, U) r * h_{t-1} and (r * h_{t-1}) K_h
    GRUStream(const GRU& l, Index batch) : Base(batch, l.units_, !l.return_sequences_), layer(l) {}
    void step(const Tensor3<S>& x, const std::vector<Index>&, Tensor3<S>& y) override {
      const Index B = x.dimension(0), n = x.dimension(1), U = layer.units_;
      const Activation ra = layer.options_.recurrent_activation(), act = layer.options_.activation();
      const bool bias = layer.options_.use_bias();
      if (bias)
        this->project(x, layer.W_, layer.b_.row(0), true);  // (1) xz = x W + b_in
      else
        this->project(x, layer.W_, RowVector<S>(), false);
      auto h = this->h();
      Matrix<S>& zs = this->zs_;
      ensure_shape(zs, B, 3 * U);
      ensure_shape(gz, B, 3 * U);
      const bool after = layer.options_.reset_after();
      if (!after) {
        ensure_shape(rh, B, U);
        ensure_shape(hk, B, U);
      }
      for (Index i = 0; i < n; ++i) {
        const auto A = detail::step_rows(this->xw_, i, n, B);  // (B, 3U) xz_t
        if (after) {
          detail::stream_product(zs, h, layer.K_);  // (2) hz = h_{t-1} K + b_rec
          if (bias) zs.rowwise() += layer.b_.row(1);
          gz.leftCols(2 * U) = A.leftCols(2 * U) + zs.leftCols(2 * U);
          detail::activate_inplace(ra, gz.leftCols(2 * U));  // (3) z, r
          gz.rightCols(U).array() = A.rightCols(U).array() + gz.middleCols(U, U).array() * zs.rightCols(U).array();
          detail::activate_inplace(act, gz.rightCols(U));  // (4) hh = act(xz_h + r hz_h)
        } else {
          detail::stream_product(zs.leftCols(2 * U), h, layer.K_.leftCols(2 * U));  // (2') h_{t-1} K_zr
          gz.leftCols(2 * U) = A.leftCols(2 * U) + zs.leftCols(2 * U);
          detail::activate_inplace(ra, gz.leftCols(2 * U));  // (3) z, r
          rh.array() = gz.middleCols(U, U).array() * h.array();
          detail::stream_product(hk, rh, layer.K_.rightCols(U));  // (4') (r h_{t-1}) K_h
          gz.rightCols(U) = A.rightCols(U) + hk;
          detail::activate_inplace(act, gz.rightCols(U));  // (4) hh = act(xz_h + (r h) K_h)
        }
        h.array() = gz.leftCols(U).array() * h.array() +
                    (S(1) - gz.leftCols(U).array()) * gz.rightCols(U).array();  // (5) h_t = z h_{t-1} + (1 - z) hh
        detail::step_rows(y, i) = h;                                            // (6) y_t = h_t
      }
    }
  };

  GRUOptions options_;
  Matrix<S> b_, db_;      // (2, 3U)
  Matrix<S> hzh_;         // (B*T, U) hz_h = h_{t-1} K_h + b_rec_h at row (b, t)
  Matrix<S> zs_, gz_;     // (B, 3U) recurrent part of one step; its gates z, r, hh
  Matrix<S> dXZ_, dHZ_;   // (B*T, 3U) gradients of xz and hz
  Matrix<S> dh_;          // (B, U) gradient flowing to h_{t-1}
  Matrix<S> dxs_, dhs_;   // (B, 3U) one step of dXZ, dHZ, contiguous
  Matrix<S> zr_, rh_, hh_;    // reset_after=False: (B, 2U) h K_zr, (B, U) r * h and (r * h) K_h of one step
  Matrix<S> da_, drh_, dzr_;  // reset_after=False: (B, U) dhz_h, d(r h); (B, 2U) dhz_zr of one step
};

}  // namespace seqattn
