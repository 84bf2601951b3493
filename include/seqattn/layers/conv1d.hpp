#pragma once
/// \file
/// Conv1D: a 1-d convolution over time, channels last, as Keras' Conv1D (cross-correlation, no kernel flip).
///
/// ```unparsed
///   x (B, T, in) -> y (B, T_out, filters),
///   y[b, t, f] = act(b[f] + sum_{j < kernel_size, c < in} x[b, t*stride + j*dilation - pad_left, c] * W[j*in + c, f])
/// ```
/// with zeros read outside the sequence. Parameters "W" (kernel_size * in, filters): Keras' kernel
/// (kernel_size, in, filters) flattened row-major, so row j*in + c is tap j of input channel c; "b" (filters).
/// Options (Conv1DOptions): stride (1), dilation (1), padding (Padding::Valid, Same or Causal; geometry and
/// output lengths in layers/padding.hpp), use_bias (true), activation (linear), kernel_init (glorot_uniform,
/// fans kernel_size*in and kernel_size*filters as Keras), bias_init (zeros), seed, residual (false).
/// residual(true): y = act(conv(x) + x), the residual form of the CNN self-attention encoder write-up. Requires
/// filters == in, stride 1 and padding same or causal (T_out = T; ConfigError naming the layer otherwise). The
/// skip adds x only where the output step is kept (masked output steps are 0 as always); dx gains dz there; the
/// stream form (causal) adds the step's own input.
///
/// Masks: each sample is convolved alone, as if it had only its len_b valid steps: steps t >= len_b read as
/// zeros (their values never matter), and the padding split of Same is computed from len_b (for stride 1 or
/// len_b == T it is the batch's own split, so an unmasked batch matches TensorFlow exactly). The new length is
/// the output length of that sample alone:
///
/// ```unparsed
///   out_len_b = out_length(len_b):  valid  floor((len_b - rf) / stride) + 1, or 0 when len_b < rf
///                                   same, causal  ceil(len_b / stride)   (= len_b for stride 1)
/// ```
/// (rf = dilation*(kernel_size-1)+1). Output steps t >= out_len_b are 0 and pass no gradient. out_mask() returns
/// these lengths; an empty mask stays empty (T_out = out_length(T)).
/// Step masks (holes, left padding; core/mask.hpp): masked input steps read as zeros, as padded steps do (their
/// values, NaN and Inf included, never reach a kept output; they get zero gradient), and len_b above is the
/// extent (1 + the last kept step). Output step t is kept when the input step it is aligned with is kept
/// (WindowGeometry::aligned_step: t*stride + rf - 1, the window's last step, for valid padding; t*stride for same
/// and causal): masked output steps are 0 and pass no gradient, and out_mask() maps the step mask by this rule,
/// which gives the lengths above for a length mask. With stride 1 and same or causal padding the output mask is
/// the input mask. The kept outputs equal the convolution of the sequence with its masked steps set to 0.
/// Errors: ConfigError for kernel_size, filters, stride or dilation \< 1; ShapeError when T \< rf with valid
/// padding.
/// Compute: im2col into a (B*T_out, kernel_size*in) member buffer, one GEMM for the whole batch; backward is
/// two GEMMs and a col2im scatter. detail/conv1d_reference.hpp holds the naive loops it is tested against.
/// Stream form (core/stream.hpp): stride 1 with padding=causal (any kernel_size, dilation), or a one-step
/// receptive field with any padding. State "past" (B, dilation*(kernel_size-1), in): each stream's last input
/// rows in a ring, step p at row p % rows (zeros before the first step, as the causal left padding; no state for
/// kernel_size 1; MemoryError when opening a stream whose rings would pass memory_limit()). A chunk unrolls its
/// B*n windows from the ring and the chunk, then runs one product.
/// Other configurations read later steps or change the number of steps: stream_refusal() says which.

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/init.hpp"
#include "seqattn/core/layer.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/detail/stable_product.hpp"
#include "seqattn/detail/stream_product.hpp"
#include "seqattn/layers/activation.hpp"
#include "seqattn/layers/padding.hpp"

namespace seqattn {

/// Options of Conv1D (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct Conv1DOptions {
  /// Steps between two windows (>= 1).
  SEQATTN_ARG(Index, stride, 1)
  /// Steps between two taps of a window (>= 1).
  SEQATTN_ARG(Index, dilation, 1)
  /// Valid, Same or Causal padding (layers/padding.hpp).
  SEQATTN_ARG(Padding, padding, Padding::Valid)
  /// Adds a bias.
  SEQATTN_ARG(bool, use_bias, true)
  /// Activation of the output (Linear: none).
  SEQATTN_ARG(Activation, activation, Activation::Linear)
  /// Initializer of the kernel.
  SEQATTN_ARG(Init, kernel_init, Init::glorot_uniform())
  /// Initializer of the bias.
  SEQATTN_ARG(Init, bias_init, Init::zeros())
  /// Seed of the layer's random numbers (default: next_seed()).
  SEQATTN_ARG(std::optional<std::uint64_t>, seed, std::nullopt)
  /// y = act(conv(x) + x); filters == in, stride 1, padding same or causal. Model files: key "residual", written
  /// only when true (files of plain convolutions stay as they were).
  SEQATTN_ARG(bool, residual, false)

  /// The fields with their model-file keys (core/layer_config.hpp).
  template <class Self, class V>
  static void visit_options(Self& o, V&& v) {
    v("strides", o.stride_);
    v("dilation_rate", o.dilation_);
    v("padding", o.padding_);
    v("use_bias", o.use_bias_);
    v("activation", o.activation_);
    v("kernel_initializer", o.kernel_init_);
    v("bias_initializer", o.bias_init_);
    v("seed", o.seed_);
  }
};

/// 1-D convolution over time (Keras Conv1D) with stride, dilation and valid, same or causal padding; see the
/// file documentation.
template <class S>
class Conv1D final : public Layer<S> {
 public:
  /// `filters` output features from windows of `kernel_size` steps of `in_features` features.
  Conv1D(Index in_features, Index filters, Index kernel_size, Conv1DOptions options = Conv1DOptions())
      : Layer<S>(in_features), filters_(filters), options_(options) {
    geometry_.kernel_size = kernel_size;
    geometry_.stride = options.stride();
    geometry_.dilation = options.dilation();
    geometry_.padding = options.padding();
    if (filters <= 0) detail::throw_config(describe(), ": filters must be positive but got ", filters);
    if (kernel_size <= 0) detail::throw_config(describe(), ": kernel_size must be positive but got ", kernel_size);
    if (options.stride() <= 0) detail::throw_config(describe(), ": stride must be positive but got ", options.stride());
    if (options.dilation() <= 0)
      detail::throw_config(describe(), ": dilation must be positive but got ", options.dilation());
    if (options.residual()) {
      if (filters != in_features)
        detail::throw_config(describe(), ": residual expected filters == input features ", in_features, " but got ",
                             filters);
      if (options.stride() != 1)
        detail::throw_config(describe(), ": residual expected stride 1 but got ", options.stride());
      if (options.padding() == Padding::Valid)
        detail::throw_config(describe(), ": residual expected padding same or causal but got valid");
    }
    const Index reach =
        detail::checked_product(describe(), "dilation x (kernel_size - 1)", {options.dilation(), kernel_size - 1});
    if (reach == std::numeric_limits<Index>::max())
      detail::throw_config(describe(), ": the receptive field dilation x (kernel_size - 1) + 1 overflows");
    const Index rows = detail::checked_product(describe(), "kernel_size x input features", {kernel_size, in_features});
    detail::checked_parameter<S>(describe(), "kernel W", {rows, filters});
    detail::checked_product(describe(), "kernel_size x filters", {kernel_size, filters});  // fan-out of the init
    Rng rng(options.seed().value_or(next_seed()));
    W_.resize(rows, filters);
    options.kernel_init().fill(W_, rows, kernel_size * filters, rng);
    dW_ = Matrix<S>::Zero(rows, filters);
    if (options.use_bias()) {
      b_.resize(filters);
      options.bias_init().fill(b_, rows, kernel_size * filters, rng);
      db_ = Vector<S>::Zero(filters);
    }
  }

  Index out_features() const override { return filters_; }
  Index out_time(Index T) const override {
    if (T < 0) return -1;
    if (T < geometry_.receptive_field() && geometry_.padding == Padding::Valid)
      detail::throw_shape(describe(), ": input of ", T, " steps is shorter than the receptive field of ",
                          geometry_.receptive_field(), " steps (valid padding needs T >= ", geometry_.receptive_field(),
                          ")");
    return geometry_.out_length(T);
  }
  Mask out_mask(const Mask& mask, Index T) const override {
    if (mask.empty()) return mask;
    if (mask.has_holes()) {  // output t is kept when its aligned input step is (padding.hpp: aligned_step)
      const Index B = mask.batch(), T_out = out_time(T);
      std::vector<std::uint8_t> keep(static_cast<size_t>(B * T_out));
      for (Index b = 0; b < B; ++b)
        for (Index t = 0; t < T_out; ++t) keep[static_cast<size_t>(b * T_out + t)] = out_kept(mask, b, t, T);
      return Mask::from_steps(B, T_out, std::move(keep));
    }
    std::vector<Index> lengths(mask.lengths().size());
    for (size_t b = 0; b < lengths.size(); ++b) lengths[b] = geometry_.out_length(mask.lengths()[b]);
    return Mask(std::move(lengths));
  }

  std::string name() const override { return "conv1d"; }
  std::string class_name() const override { return "Conv1D"; }
  Config config() const override {
    Config c = Config::object();
    c.set("filters", filters_);
    c.set("kernel_size", geometry_.kernel_size);
    write_options(c, options_);
    if (options_.residual()) c.set("residual", true);
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "Conv1D config");
    const Index filters = r.read_size("filters"), kernel_size = r.read_size("kernel_size");
    Conv1DOptions options = read_options<Conv1DOptions>(r);
    bool residual = false;
    r.read_into("residual", residual);
    options.residual(residual);
    r.finish();
    return std::make_unique<Conv1D>(in_features, filters, kernel_size, options);
  }
  std::string describe() const override {
    std::string s = detail::cat("Conv1D(filters=", filters_, ", kernel_size=", geometry_.kernel_size);
    if (geometry_.stride != 1) s += detail::cat(", stride=", geometry_.stride);
    if (geometry_.dilation != 1) s += detail::cat(", dilation=", geometry_.dilation);
    s += ", padding=" + to_string(geometry_.padding);
    if (options_.activation() != Activation::Linear) s += ", activation=" + to_string(options_.activation());
    if (!options_.use_bias()) s += ", use_bias=false";
    if (options_.residual()) s += ", residual";
    return s + ")";
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<Conv1D>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const Conv1D&>(other); }
  /// The unrolled windows (B*T', kernel_size*C) and their gradient.
  std::size_t cache_bytes(Index B, Index T) const override {
    return detail::saturating_bytes(sizeof(S), {2, B, out_time(T), geometry_.kernel_size, this->in_features()});
  }

  bool supports_step_masks() const override { return true; }
  std::unique_ptr<LayerStream<S>> open_stream(Index batch, const StreamOptions& options) const override {
    if (!stream_refusal().empty()) return Layer<S>::open_stream(batch, options);  // throws with the reason
    return std::make_unique<Conv1DStream>(*this, batch);
  }
  /// Why this configuration cannot stream; empty when it can.
  std::string stream_refusal() const override {
    const WindowGeometry& g = geometry_;
    const Index reach = g.receptive_field() - 1;  // input steps a window spans besides its own
    std::string why;
    auto add = [&why](const std::string& reason) { why += (why.empty() ? "" : "; ") + reason; };
    if (g.stride != 1)
      add(detail::cat("stride=", g.stride, " gives one output step per ", g.stride,
                      " input steps, but a stream gives one output per input step; use stride 1"));
    if (reach > 0 && g.padding == Padding::Same)
      add(g.stride == 1 ? detail::cat("padding=same centers each window, so an output step reads the next ",
                                      reach - reach / 2, " input step(s); use padding=causal")
                        : std::string("padding=same centers each window, so an output step reads later input "
                                      "steps; use padding=causal"));
    if (reach > 0 && g.padding == Padding::Valid)
      add(detail::cat("padding=valid makes output step t read input steps t .. t + ", reach, " (later steps, and ",
                      reach, " fewer outputs than inputs); use padding=causal"));
    return why;
  }

  /// The number of output features.
  Index filters() const { return filters_; }
  /// The number of steps in a window.
  Index kernel_size() const { return geometry_.kernel_size; }
  /// The window geometry (kernel size, stride, dilation, padding).
  const WindowGeometry& geometry() const { return geometry_; }
  /// The options the layer was built with.
  const Conv1DOptions& options() const { return options_; }
  Matrix<S>& kernel() { return W_; }  ///< (kernel_size * in, filters)
  /// The bias (in place; empty without use_bias).
  Vector<S>& bias() { return b_; }

 protected:
  /// x (B, T, in) -> cols (B*T_out, k*in): row (b, t), block j = x[b, t*stride + j*dilation - pad_left(len_b)]
  ///
  /// ```unparsed
  ///                 (zero outside [0, len_b) and for t >= out_len_b)
  ///              -> z = cols W + b (B*T_out, filters) -> y = act(z), rows t >= out_len_b set to 0
  /// ```
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    const Index B = x.dimension(0), T = x.dimension(1), C = x.dimension(2), T_out = y.dimension(1);
    ensure_shape(cols_, B * T_out, geometry_.kernel_size * C);
    cols_.setZero();
    if (mask.has_holes())
      gather<true>(x, mask, T_out);
    else
      gather<false>(x, mask, T_out);
    auto Y = as_matrix(y);
    const bool has_act = options_.activation() != Activation::Linear;
    if (has_act) ensure_shape(z_, B * T_out, filters_);
    auto compute = [&](auto& Z) {
      // row bits independent of B*T_out (a longer padding must not change valid outputs)
      detail::row_stable_product<S>(Z, cols_, W_, scratch_);
      if (options_.use_bias()) Z.rowwise() += b_.transpose();
      if (options_.residual()) add_residual(Z, x, mask);
    };
    if (has_act) {
      compute(z_);
      activation_forward<S>(options_.activation(), z_, Y);
    } else {
      compute(Y);
    }
    zero_padded_rows(Y, mask, T, T_out);
  }

  /// dy (B*T_out, filters) -> dz = dy * act'(z), 0 at padded output rows   (inverts y = act(z) and the zeroing)
  ///
  /// ```unparsed
  ///   dW += cols^T dz;  db += sum_rows dz                                  (inverts z = cols W + b)
  ///   dcols = dz W^T (B*T_out, k*in);  dx = col2im(dcols)                   (inverts the im2col gather)
  /// ```
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const Index B = x.dimension(0), T = x.dimension(1), C = x.dimension(2), T_out = dy.dimension(1);
    auto DY = as_matrix(dy);
    ensure_shape(dz_, B * T_out, filters_);
    if (options_.activation() != Activation::Linear)
      activation_backward<S>(options_.activation(), z_, as_matrix(this->output()), DY, dz_);
    else
      dz_ = DY;
    zero_padded_rows(dz_, mask, T, T_out);
    dW_.noalias() += cols_.transpose() * dz_;
    if (options_.use_bias()) db_.noalias() += dz_.colwise().sum().transpose();
    ensure_shape(dcols_, B * T_out, geometry_.kernel_size * C);
    dcols_.noalias() = dz_ * W_.transpose();
    dx.setZero();
    if (mask.has_holes())
      scatter<true>(mask, T, C, T_out, dx);
    else
      scatter<false>(mask, T, C, T_out, dx);
    if (options_.residual()) as_matrix(dx) += dz_;  // inverts z += x (dz_ is 0 at masked output rows)
  }

  void collect_params(ParamList<S>& list) override {
    list.push_back(matrix_param<S>("W", W_, &dW_, ParamRole::Kernel));
    if (options_.use_bias()) list.push_back(vector_param<S>("b", b_, &db_, ParamRole::Bias));
  }

 private:
  // x (B, n, in) -> windows (B*n, kernel_size*in), tap j of step p = input step p - (kernel_size-1-j)*dilation
  //                 (0 before the first step; from the ring before this chunk, else from x)
  //              -> y = act(windows W + b) (B*n, filters);  then x's last rows into the ring
  struct Conv1DStream final : LayerStream<S> {
    const Conv1D& layer;
    Index reach;      // dilation * (kernel_size - 1): the ring's rows
    Tensor3<S> past;  // (B, reach, in) step p at row p % reach
    Matrix<S> cols;   // (B*n, kernel_size*in) the chunk's windows
    Conv1DStream(const Conv1D& l, Index batch) : layer(l), reach(l.geometry_.receptive_field() - 1) {
      const std::size_t bytes = detail::saturating_bytes(sizeof(S), {batch, reach, l.in_features()});
      if (bytes > memory_limit())  // a huge dilation: refuse before allocating
        throw MemoryError(detail::cat(l.describe(), ": ", batch, " streams keep the last ", reach,
                                      " input steps each, ", format_bytes(bytes), ", above the memory limit of ",
                                      format_bytes(memory_limit()), " (seqattn::set_memory_limit)"));
      if (reach > 0) detail::zero_state(past, batch, reach, l.in_features());
    }
    void step(const Tensor3<S>& x, const std::vector<Index>& start, Tensor3<S>& y) override {
      const Index B = x.dimension(0), n = x.dimension(1), C = x.dimension(2);
      const Index k = layer.geometry_.kernel_size, d = layer.geometry_.dilation;
      auto Y = as_matrix(y);
      if (reach == 0) {
        detail::stream_product(Y, as_matrix(x), layer.W_);
      } else {
        ensure_shape(cols, B * n, k * C);
        for (Index b = 0; b < B; ++b) {
          const Index s = start[static_cast<size_t>(b)];
          const auto X = sample_matrix(x, b);
          auto P = sample_matrix(past, b);
          for (Index i = 0; i < n; ++i)
            for (Index j = 0; j < k; ++j) {
              const Index q = s + i - (k - 1 - j) * d;  // the input step tap j reads
              auto dst = cols.block(b * n + i, j * C, 1, C);
              if (q < 0)
                dst.setZero();
              else if (q >= s)
                dst = X.row(q - s);
              else
                dst = P.row(q % reach);
            }
          for (Index i = std::max<Index>(0, n - reach); i < n; ++i) P.row((s + i) % reach) = X.row(i);
        }
        detail::stream_product(Y, cols, layer.W_);
      }
      if (layer.options_.use_bias()) Y.rowwise() += layer.b_.transpose();
      if (layer.options_.residual()) Y += as_matrix(x);
      activation_forward<S>(layer.options_.activation(), Y, Y);
    }
    void reset(Index b) override {
      if (reach > 0) detail::zero_stream(past, b);
    }
    void state(StreamStateList<S>& list, const std::string& prefix) override {
      if (reach > 0) list.push_back({prefix + "past", &past, false, 0});
    }
    bool per_step() const override { return reach == 0; }
  };

  // Z (B*T, C) += x at the kept steps (residual: stride 1, T_out = T, output step t aligned with input step t);
  // masked and padded steps are skipped, so their values never enter Z.
  template <class Z>
  void add_residual(Z& z, const Tensor3<S>& x, const Mask& mask) const {
    const Index B = x.dimension(0), T = x.dimension(1);
    const bool holes = mask.has_holes();
    for (Index b = 0; b < B; ++b) {
      const auto X = sample_matrix(x, b);
      for (Index t = 0; t < T; ++t)
        if (holes ? mask.valid(b, t, T) : t < mask.length(b, T)) z.row(b * T + t) += X.row(t);
    }
  }

  // Whether output step t of sequence b is kept under a step mask: its aligned input step is kept.
  bool out_kept(const Mask& mask, Index b, Index t, Index T) const {
    const Index a = geometry_.aligned_step(t);
    return a < T && mask.valid(b, a, T);
  }

  // x (B, T, C) -> cols_ (already zero): row (b, t) for the kept output steps t < out_len_b, tap j = the input
  // step p = t*stride + j*dilation - pad_left(len_b) when 0 <= p < len_b and (Holes) p is kept. With Holes
  // (a step mask, decided once per call) len_b is the extent and masked output steps are skipped.
  template <bool Holes>
  void gather(const Tensor3<S>& x, const Mask& mask, Index T_out) {
    const Index B = x.dimension(0), T = x.dimension(1), C = x.dimension(2);
    for (Index b = 0; b < B; ++b) {
      const Index L = mask.length(b, T), L_out = geometry_.out_length(L), pad = geometry_.pad_left(L);
      const std::uint8_t* keep = Holes ? mask.keep_row(b) : nullptr;
      auto X = sample_matrix(x, b);
      for (Index t = 0; t < L_out; ++t) {
        if (Holes && !keep[geometry_.aligned_step(t)]) continue;  // masked output step
        for (Index j = 0; j < geometry_.kernel_size; ++j) {
          const Index p = t * geometry_.stride + j * geometry_.dilation - pad;
          if (p >= 0 && p < L && (!Holes || keep[p])) cols_.block(b * T_out + t, j * C, 1, C) = X.row(p);
        }
      }
    }
  }

  // dcols_ (B*T_out, k*C) -> dx (B, T, C) (already zero): the transpose of gather.
  template <bool Holes>
  void scatter(const Mask& mask, Index T, Index C, Index T_out, Tensor3<S>& dx) const {
    for (Index b = 0; b < dx.dimension(0); ++b) {
      const Index L = mask.length(b, T), L_out = geometry_.out_length(L), pad = geometry_.pad_left(L);
      const std::uint8_t* keep = Holes ? mask.keep_row(b) : nullptr;
      auto DX = sample_matrix(dx, b);
      for (Index t = 0; t < L_out; ++t) {
        if (Holes && !keep[geometry_.aligned_step(t)]) continue;
        for (Index j = 0; j < geometry_.kernel_size; ++j) {
          const Index p = t * geometry_.stride + j * geometry_.dilation - pad;
          if (p >= 0 && p < L && (!Holes || keep[p])) DX.row(p) += dcols_.block(b * T_out + t, j * C, 1, C);
        }
      }
    }
  }

  // M (B*T_out, cols): rows of output steps t >= out_len_b (step masks: every masked output step) set to 0.
  template <class M>
  void zero_padded_rows(M& m, const Mask& mask, Index T, Index T_out) const {
    if (mask.empty()) return;
    if (mask.has_holes()) {
      for (Index b = 0; b < mask.batch(); ++b)
        for (Index t = 0; t < T_out; ++t)
          if (!out_kept(mask, b, t, T)) m.row(b * T_out + t).setZero();
      return;
    }
    for (Index b = 0; b < mask.batch(); ++b) {
      const Index L_out = geometry_.out_length(mask.length(b, T));
      if (L_out < T_out) m.middleRows(b * T_out + L_out, T_out - L_out).setZero();
    }
  }

  Index filters_;
  Conv1DOptions options_;
  detail::RowStableScratch<S> scratch_;
  WindowGeometry geometry_;
  Matrix<S> W_, dW_;
  Vector<S> b_, db_;
  Matrix<S> cols_, dcols_;  // im2col of the last forward and its gradient
  Matrix<S> z_, dz_;        // pre-activation (only with an activation) and its gradient
};

}  // namespace seqattn
