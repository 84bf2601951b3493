#pragma once
/// \file
/// Pooling over time. Global pools (GlobalMaxPool, GlobalAvgPool, LastStep) are in global_pooling.hpp,
/// included here. Windowed pools:
///
/// ```unparsed
///   MaxPool1D<S>(in_features, size, PoolOptions().stride(s))   (Keras MaxPooling1D, padding 'valid')
///   AvgPool1D<S>(in_features, size, PoolOptions().stride(s))   (Keras AveragePooling1D, padding 'valid')
///   x (B, T, F) -> y (B, T_out, F). Output step j covers the input steps [j*s, j*s + size); stride s defaults to
///   size. No parameters.
///   Default (partial_windows = false): only complete windows, T_out = (T - size) / s + 1 (T >= size, else
///     ShapeError). A sequence of valid length len keeps the windows that fit inside its valid steps:
///         len_out = len >= size ? (len - size) / s + 1 : 0
///     so every sequence gets exactly what F.max_pool1d / F.avg_pool1d give on its unpadded steps, and adding
///     padding never adds or changes a valid output step.
///   partial_windows = true: every window that starts at a valid step is kept and aggregates only its valid
///     steps: T_out = ceil(T / s), len_out = ceil(len / s); window j covers [j*s, min(j*s + size, len)) and the
///     average divides by the number of steps it covers (for size <= stride this is PyTorch's ceil_mode=True).
///   Max: the gradient goes to the first step of the window reaching the maximum (overlapping windows add).
///   Output steps j >= len_out are padding (the returned out_mask holds len_out): they output 0 and pass no
///   gradient. A sequence shorter than one window gets len_out = 0 (with partial windows only len = 0 does).
///   Step masks (holes, left padding; supports_step_masks()): a sequence spans [first kept step, last kept step].
///     Output window j is kept when one of its input steps is kept and, without partial windows, the whole window
///     lies inside the span (with lengths the span is [0, len): exactly the rule above, so out_mask gives today's
///     lengths for a length mask). A kept window pools only its kept steps (max: the first kept step reaching the
///     maximum; average: divided by the number of its kept steps); masked steps are never read and get dx = 0.
///     Masked output windows output 0 and pass no gradient; out_mask maps the step mask to these windows (a step
///     mask again, or lengths when the kept windows are a prefix).
///   Errors: size <= 0 or stride < 0 (ConfigError); fewer input steps than T_out >= 1 needs (ShapeError).
///   Streams (core/stream.hpp): only size = stride = 1 (the identity) streams; a stride above 1 changes the number
///   of steps and a window of several steps reads the steps after its first: ConfigError (stream_refusal()).
/// ```

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "seqattn/core/layer.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/layers/global_pooling.hpp"

namespace seqattn {

/// Options of MaxPool1D and AvgPool1D (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct PoolOptions {
  SEQATTN_ARG(Index, stride, 0)  ///< 0: stride = size (Keras' default)
  SEQATTN_ARG(bool, partial_windows, false)  ///< keep windows that start at a valid step (see above)

  /// The fields with their model-file keys (core/layer_config.hpp).
  template <class Self, class V>
  static void visit_options(Self& o, V&& v) {
    v("strides", o.stride_);
    v("partial_windows", o.partial_windows_);
  }
};

namespace detail {

// Window geometry and the mask shared by MaxPool1D and AvgPool1D.
template <class S>
class WindowPoolBase : public Layer<S> {
 public:
  WindowPoolBase(const char* type, Index in_features, Index size, PoolOptions options)
      : Layer<S>(in_features),
        type_(type),
        size_(size),
        stride_(options.stride() == 0 ? size : options.stride()),
        partial_(options.partial_windows()) {
    if (size <= 0) throw_config(describe(), ": size must be positive but got ", size);
    if (options.stride() < 0)
      throw_config(describe(), ": stride must be positive (or 0 for size) but got ", options.stride());
  }

  Index out_features() const override { return this->in_features(); }
  Index out_time(Index T) const override { return T < 0 ? Index(-1) : out_length(T); }
  Mask out_mask(const Mask& mask, Index) const override {
    if (mask.empty()) return Mask();
    if (mask.has_holes()) {  // step mask: the kept windows (window_kept)
      const Index B = mask.batch(), T = mask.steps(), To = out_length(T);
      if (To <= 0) return Mask(std::vector<Index>(static_cast<size_t>(B), 0));
      std::vector<std::uint8_t> keep(static_cast<size_t>(B * To));
      for (Index b = 0; b < B; ++b) {
        const Index first = mask.first(b, T), extent = mask.length(b, T);
        for (Index j = 0; j < To; ++j)
          keep[static_cast<size_t>(b * To + j)] = window_kept(mask, b, T, first, extent, j);
      }
      return Mask::from_steps(B, To, std::move(keep));
    }
    std::vector<Index> lengths(mask.lengths());
    for (Index& len : lengths) len = out_length(len);
    return Mask(lengths);
  }
  Config config() const override {
    Config c = Config::object();
    c.set("pool_size", size_);
    write_options(c, PoolOptions().stride(stride_).partial_windows(partial_));
    return c;
  }
  std::string describe() const override {
    std::string s = cat(type_, "(size=", size_, ", stride=", stride_);
    if (partial_) s += ", partial_windows=true";
    return s + ")";
  }

  // size = stride = 1 is the identity and streams as such; other windows are refused (stream_refusal()).
  std::unique_ptr<LayerStream<S>> open_stream(Index batch, const StreamOptions& options) const override {
    if (size_ != 1 || stride_ != 1) return Layer<S>::open_stream(batch, options);
    return std::make_unique<IdentityStream>();
  }
  std::string stream_refusal() const override {
    if (stride_ > 1)
      return cat("strided pooling changes the number of steps (stride=", stride_, ": one output step per ", stride_,
                 " input steps), and a stream gives one output per input step");
    return cat("output step j pools the input steps [j, j + ", size_, "), the ", size_ - 1,
               " after j included (only size=1 with stride=1, the identity, streams)");
  }

  bool supports_step_masks() const override { return true; }

  Index size() const { return size_; }
  Index stride() const { return stride_; }
  bool partial_windows() const { return partial_; }
  // Output steps of a sequence of `len` valid steps (also T_out for len = T).
  Index out_length(Index len) const {
    if (partial_) return len <= 0 ? 0 : (len - 1) / stride_ + 1;  // ceil(len / stride), no overflow
    return len >= size_ ? (len - size_) / stride_ + 1 : 0;
  }
  // Step masks: whether output window j of sequence b is kept (see the header comment); first and extent are
  // mask.first(b, T) and mask.length(b, T).
  bool window_kept(const Mask& mask, Index b, Index T, Index first, Index extent, Index j) const {
    const Index start = j * stride_, end = std::min(start + size_, T);
    if (!partial_ && (start < first || start + size_ > extent)) return false;
    for (Index t = start; t < end; ++t)
      if (mask.valid(b, t, T)) return true;
    return false;
  }

 private:
  struct IdentityStream final : PerStepStream<S> {
    void apply(const Tensor3<S>& x, Tensor3<S>& y) override { as_matrix(y) = as_matrix(x); }  // (B*n, F)
  };

  const char* type_;
  Index size_, stride_;
  bool partial_;
};

}  // namespace detail

/// Max over windows of steps (Keras MaxPooling1D); see the file documentation.
///
/// Also public, from its implementation base: size(), stride() and partial_windows().
/// \extends Layer
template <class S>
class MaxPool1D final : public detail::WindowPoolBase<S> {
 public:
  /// Max pooling over windows of `size` steps.
  MaxPool1D(Index in_features, Index size, PoolOptions options = PoolOptions())
      : detail::WindowPoolBase<S>("MaxPool1D", in_features, size, options) {}
  std::string name() const override { return "max_pool1d"; }
  std::string class_name() const override { return "MaxPool1D"; }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "MaxPool1D config");
    const Index size = r.read_size("pool_size");
    const PoolOptions options = read_options<PoolOptions>(r);
    r.finish();
    return std::make_unique<MaxPool1D>(in_features, size, options);
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<MaxPool1D>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const MaxPool1D&>(other); }

 protected:
  /// x (B, T, F) -> y (B, T_out, F): y[b, j, f] = max over t in window j (valid part) of x[b, t, f];
  /// argmax (B*T_out, F) cached, -1 at padded output steps
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2), To = y.dimension(1);
    ensure_shape(argmax_, B * To, F);
    MatrixMap<S> Y = as_matrix(y);  // (B*T_out, F)
    if (mask.has_holes()) {         // step mask: the kept windows, over their kept steps
      for (Index b = 0; b < B; ++b) {
        const Index first = mask.first(b, T), extent = mask.length(b, T);
        ConstMatrixMap<S> X = sample_matrix(x, b);
        for (Index j = 0; j < To; ++j) {
          const Index n = b * To + j, start = j * this->stride(), end = std::min(start + this->size(), T);
          if (!this->window_kept(mask, b, T, first, extent, j)) {
            Y.row(n).setZero();
            argmax_.row(n).setConstant(-1);
            continue;
          }
          Index t0 = start;
          while (!mask.valid(b, t0, T)) ++t0;
          Y.row(n) = X.row(t0);
          argmax_.row(n).setConstant(t0);
          for (Index t = t0 + 1; t < end; ++t) {
            if (!mask.valid(b, t, T)) continue;
            for (Index f = 0; f < F; ++f)
              if (X(t, f) > Y(n, f)) {
                Y(n, f) = X(t, f);
                argmax_(n, f) = t;
              }
          }
        }
      }
      return;
    }
    for (Index b = 0; b < B; ++b) {
      const Index len = mask.length(b, T);
      const Index len_out = this->out_length(len);
      ConstMatrixMap<S> X = sample_matrix(x, b);
      for (Index j = 0; j < len_out; ++j) {
        const Index n = b * To + j, start = j * this->stride(), end = std::min(start + this->size(), len);
        Y.row(n) = X.row(start);
        argmax_.row(n).setConstant(start);
        for (Index t = start + 1; t < end; ++t)
          for (Index f = 0; f < F; ++f)
            if (X(t, f) > Y(n, f)) {
              Y(n, f) = X(t, f);
              argmax_(n, f) = t;
            }
      }
      Y.middleRows(b * To + len_out, To - len_out).setZero();
      argmax_.middleRows(b * To + len_out, To - len_out).setConstant(-1);
    }
  }
  /// dy (B, T_out, F) -> dx[b, argmax[b, j, f], f] += dy[b, j, f] (inverts the max of each window)
  void do_backward(const Tensor3<S>&, const Mask&, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    dx.setZero();
    const Index F = dx.dimension(2), To = dy.dimension(1);
    ConstMatrixMap<S> DY = as_matrix(dy);
    for (Index b = 0; b < dx.dimension(0); ++b) {
      MatrixMap<S> DX = sample_matrix(dx, b);
      for (Index j = 0; j < To; ++j)
        for (Index f = 0; f < F; ++f) {
          const Index t = argmax_(b * To + j, f);
          if (t >= 0) DX(t, f) += DY(b * To + j, f);
        }
    }
  }

 private:
  Matrix<Index> argmax_;
};

/// Average over windows of steps (Keras AveragePooling1D); see the file documentation.
///
/// Also public, from its implementation base: size(), stride() and partial_windows().
/// \extends Layer
template <class S>
class AvgPool1D final : public detail::WindowPoolBase<S> {
 public:
  /// Average pooling over windows of `size` steps.
  AvgPool1D(Index in_features, Index size, PoolOptions options = PoolOptions())
      : detail::WindowPoolBase<S>("AvgPool1D", in_features, size, options) {}
  std::string name() const override { return "avg_pool1d"; }
  std::string class_name() const override { return "AvgPool1D"; }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "AvgPool1D config");
    const Index size = r.read_size("pool_size");
    const PoolOptions options = read_options<PoolOptions>(r);
    r.finish();
    return std::make_unique<AvgPool1D>(in_features, size, options);
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<AvgPool1D>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const AvgPool1D&>(other); }

 protected:
  /// x (B, T, F) -> y (B, T_out, F): y[b, j] = mean of x[b, t] over the valid steps t of window j
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    const Index B = x.dimension(0), T = x.dimension(1), To = y.dimension(1);
    if (mask.has_holes()) {  // step mask: the kept windows, the mean of their kept steps (in step order)
      for (Index b = 0; b < B; ++b) {
        const Index first = mask.first(b, T), extent = mask.length(b, T);
        ConstMatrixMap<S> X = sample_matrix(x, b);
        MatrixMap<S> Y = sample_matrix(y, b);  // (T_out, F)
        for (Index j = 0; j < To; ++j) {
          Y.row(j).setZero();
          if (!this->window_kept(mask, b, T, first, extent, j)) continue;
          const Index start = j * this->stride(), end = std::min(start + this->size(), T);
          Index count = 0;
          for (Index t = start; t < end; ++t)
            if (mask.valid(b, t, T)) {
              Y.row(j) += X.row(t);
              ++count;
            }
          Y.row(j) /= static_cast<S>(count);
        }
      }
      return;
    }
    for (Index b = 0; b < B; ++b) {
      const Index len = mask.length(b, T);
      const Index len_out = this->out_length(len);
      ConstMatrixMap<S> X = sample_matrix(x, b);
      MatrixMap<S> Y = sample_matrix(y, b);  // (T_out, F)
      for (Index j = 0; j < len_out; ++j) {
        const Index start = j * this->stride(), end = std::min(start + this->size(), len);
        Y.row(j) = X.middleRows(start, end - start).colwise().sum() / static_cast<S>(end - start);
      }
      Y.bottomRows(To - len_out).setZero();
    }
  }
  /// dy (B, T_out, F) -> dx[b, t] += dy[b, j] / count_j for t in window j (inverts the mean)
  void do_backward(const Tensor3<S>&, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    dx.setZero();
    const Index T = dx.dimension(1);
    if (mask.has_holes()) {  // step mask: dy[b, j] / count_j to the kept steps of the kept windows
      const Index To = dy.dimension(1);
      for (Index b = 0; b < dx.dimension(0); ++b) {
        const Index first = mask.first(b, T), extent = mask.length(b, T);
        ConstMatrixMap<S> DY = sample_matrix(dy, b);
        MatrixMap<S> DX = sample_matrix(dx, b);
        for (Index j = 0; j < To; ++j) {
          if (!this->window_kept(mask, b, T, first, extent, j)) continue;
          const Index start = j * this->stride(), end = std::min(start + this->size(), T);
          Index count = 0;
          for (Index t = start; t < end; ++t) count += mask.valid(b, t, T) ? 1 : 0;
          for (Index t = start; t < end; ++t)
            if (mask.valid(b, t, T)) DX.row(t) += DY.row(j) / static_cast<S>(count);
        }
      }
      return;
    }
    for (Index b = 0; b < dx.dimension(0); ++b) {
      const Index len = mask.length(b, T);
      const Index len_out = this->out_length(len);
      ConstMatrixMap<S> DY = sample_matrix(dy, b);
      MatrixMap<S> DX = sample_matrix(dx, b);
      for (Index j = 0; j < len_out; ++j) {
        const Index start = j * this->stride(), end = std::min(start + this->size(), len);
        for (Index t = start; t < end; ++t) DX.row(t) += DY.row(j) / static_cast<S>(end - start);
      }
    }
  }
};

}  // namespace seqattn
