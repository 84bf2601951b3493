#pragma once
/// \file
/// Merge layers: several inputs of the same steps into one (Keras' Add, Subtract, Multiply, Average, Maximum,
/// Minimum and Concatenate on the feature axis). They take n >= 2 inputs (core/layer.hpp, "Several inputs"), so they
/// are Graph nodes (model/graph.hpp); forward(x, mask) refuses them.
///
/// ```unparsed
///   Merge<S>(F, op, n)            n inputs (B, T, F) -> (B, T, F), elementwise:
///     add        y = x_0 + ... + x_{n-1}
///     subtract   y = x_0 - x_1                      (n = 2 only)
///     multiply   y = x_0 * ... * x_{n-1}            dx_i = dy * prod_{j != i} x_j
///     average    y = (x_0 + ... + x_{n-1}) / n
///     maximum    y = max_i x_i                      the gradient goes to the first input holding the maximum
///     minimum    y = min_i x_i                      (as Keras' pairwise tf.maximum / tf.minimum)
///   Concatenate<S>({F_0, ..., F_{n-1}})  inputs (B, T, F_i) -> (B, T, F_0 + ... + F_{n-1}), in input order.
/// ```
/// Every input has the same B and T (ShapeError naming the layer and the shapes). Masks: the output mask keeps the
/// steps every input keeps (Keras' merges AND the input masks); at the other steps the output is 0 and no gradient
/// flows back, so the values of masked steps (NaN included) never reach the output. Lengths and step masks.
/// No parameters. Streams (core/stream.hpp, "Several inputs"): every input steps together, row for row
/// (steps_all_inputs; a Graph steps them when all its inputs stream).

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/layer.hpp"

namespace seqattn {

/// The elementwise operation of Merge (Keras Add, Subtract, Multiply, Average, Maximum, Minimum).
enum class MergeOp { Add, Subtract, Multiply, Average, Maximum, Minimum };

/// Model-file names (core/layer_config.hpp).
inline const std::vector<std::pair<MergeOp, const char*>>& config_names(MergeOp) {
  static const std::vector<std::pair<MergeOp, const char*>> names = {
      {MergeOp::Add, "add"},         {MergeOp::Subtract, "subtract"}, {MergeOp::Multiply, "multiply"},
      {MergeOp::Average, "average"}, {MergeOp::Maximum, "maximum"},   {MergeOp::Minimum, "minimum"}};
  return names;
}
/// The model-file name of an operation.
inline std::string to_string(MergeOp op) {
  for (const auto& [value, name] : config_names(op))
    if (value == op) return name;
  return "?";
}

namespace detail {

// The common part of the merges: n inputs of the same (B, T), the output mask (the steps every input keeps), and
// the steps to compute (kept by every input) against those to zero.
template <class S>
class MergeBase : public Layer<S> {
 public:
  Index min_inputs() const override { return inputs_; }
  Index max_inputs() const override { return inputs_; }
  bool supports_step_masks() const override { return true; }
  Index inputs() const { return inputs_; }
  // Every input steps together: y (B, n, out) from the next n steps of each input.
  std::unique_ptr<LayerStream<S>> open_inputs_stream(Index, const StreamOptions&, Index inputs) const override {
    if (inputs != inputs_)
      detail::throw_config(this->describe(), ": cannot be streamed with ", inputs, " inputs: it takes ", inputs_);
    return std::make_unique<MergeStream>(*this);
  }
  Mask out_mask_of(const LayerInputs<S>& in, Index T) const override {
    const Index B = in[0].x->dimension(0);
    Mask mask = *in[0].mask;
    for (std::size_t i = 1; i < in.size(); ++i) mask = Mask::intersect(mask, *in[i].mask, B, T);
    return mask;
  }

 protected:
  MergeBase(Index in_features, Index inputs, const char* what) : Layer<S>(in_features), inputs_(inputs) {
    if (inputs < 2) detail::throw_config(what, ": needs at least 2 inputs but got ", inputs);
  }
  void do_forward(const Tensor3<S>&, const Mask&, Mode, Tensor3<S>&) override {
    detail::throw_usage(this->describe(), ": takes several inputs");  // refused before (min_inputs() > 1)
  }
  void do_backward(const Tensor3<S>&, const Mask&, const Tensor3<S>&, Tensor3<S>&) override {
    detail::throw_usage(this->describe(), ": takes several inputs");
  }
  void do_forward_inputs(const LayerInputs<S>& in, Mode, Tensor3<S>& y) final {
    check_same_steps(in);
    merge_rows(in, y);
  }
  // n inputs (B, T, F_i) -> y (B, T, out_features()); steps not kept by every input are 0
  virtual void merge_rows(const LayerInputs<S>& in, Tensor3<S>& y) const = 0;
  // ShapeError unless every input has input 0's steps.
  void check_same_steps(const LayerInputs<S>& in) const {
    for (std::size_t i = 1; i < in.size(); ++i)
      if (in[i].x->dimension(1) != in[0].x->dimension(1))
        detail::throw_shape(this->describe(), ": every input needs the same steps but input ", i, " has shape ",
                            shape_string(*in[i].x), " and input 0 ", shape_string(*in[0].x));
  }
  // Whether every input keeps step t of sequence b.
  static bool kept_by_all(const LayerInputs<S>& in, Index b, Index t) {
    for (const LayerInput<S>& input : in)
      if (!input.mask->valid(b, t, input.x->dimension(1))) return false;
    return true;
  }

 private:
  // merge_rows over the inputs' new steps (every step kept), reading the layer in place.
  struct MergeStream final : LayerStream<S> {
    explicit MergeStream(const MergeBase& layer) : merge(layer), in(static_cast<std::size_t>(layer.inputs_)) {
      for (LayerInput<S>& input : in) input.mask = &all_kept;
    }
    const MergeBase& merge;
    Mask all_kept;
    LayerInputs<S> in;
    bool steps_all_inputs() const override { return true; }
    bool per_step() const override { return true; }
    void step(const Tensor3<S>&, const std::vector<Index>&, Tensor3<S>&) override {
      detail::throw_usage(merge.describe(), ": a merge stream steps all its inputs (step_inputs)");
    }
    void step_inputs(const std::vector<const Tensor3<S>*>& xs, const std::vector<Index>&, Tensor3<S>& y) override {
      if (xs.size() != in.size())
        detail::throw_usage(merge.describe(), ": step_inputs expected ", in.size(), " inputs but got ", xs.size());
      for (std::size_t i = 0; i < in.size(); ++i) in[i].x = xs[i];
      merge.check_same_steps(in);
      merge.merge_rows(in, y);
    }
  };

  Index inputs_;
};

}  // namespace detail

/// Merges 2 or more inputs of the same shape elementwise; see the file documentation.
///
/// Also public, from its implementation base: inputs(), the number of inputs a call takes.
/// \extends Layer
template <class S>
class Merge final : public detail::MergeBase<S> {
 public:
  /// Merges `inputs` inputs of `features` features with `op` (Subtract takes exactly 2).
  Merge(Index features, MergeOp op, Index inputs = 2) : detail::MergeBase<S>(features, inputs, "Merge"), op_(op) {
    if (op == MergeOp::Subtract && inputs != 2)
      detail::throw_config(describe(), ": subtract takes exactly 2 inputs but got ", inputs);
  }

  Index out_features() const override { return this->in_features(); }
  Index input_features(Index, Index) const override { return this->in_features(); }
  std::string name() const override { return to_string(op_); }
  std::string class_name() const override { return "Merge"; }
  Config config() const override {
    Config c = Config::object();
    c.set("op", ConfigCodec<MergeOp>::write(op_));
    c.set("inputs", this->inputs());
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "Merge config");
    const MergeOp op = r.read<MergeOp>("op");
    const Index inputs = r.read_size("inputs");
    r.finish();
    return std::make_unique<Merge>(in_features, op, inputs);
  }
  std::string describe() const override {
    return detail::cat("Merge(", to_string(op_), ", inputs=", this->inputs(), ")");
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<Merge>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const Merge&>(other); }
  /// The elementwise operation.
  MergeOp op() const { return op_; }

 protected:
  /// n inputs (B, T, F) -> y (B, T, F); steps not kept by every input are 0
  void merge_rows(const LayerInputs<S>& in, Tensor3<S>& y) const override {
    const Index B = y.dimension(0), T = y.dimension(1), F = y.dimension(2), n = Index(in.size());
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < T; ++t) {
        S* out = &y(b, t, 0);
        if (!this->kept_by_all(in, b, t)) {
          std::fill(out, out + F, S(0));
          continue;
        }
        const S* x0 = &(*in[0].x)(b, t, 0);
        std::copy(x0, x0 + F, out);
        for (Index i = 1; i < n; ++i) {
          const S* xi = &(*in[static_cast<std::size_t>(i)].x)(b, t, 0);
          for (Index f = 0; f < F; ++f) out[f] = combine(out[f], xi[f]);
        }
        if (op_ == MergeOp::Average)
          for (Index f = 0; f < F; ++f) out[f] /= static_cast<S>(n);
      }
  }
  /// dy (B, T, F) -> dx_i (B, T, F) for every input
  void do_backward_inputs(const LayerInputs<S>& in, const Tensor3<S>& dy) override {
    const Index B = dy.dimension(0), T = dy.dimension(1), F = dy.dimension(2), n = Index(in.size());
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < T; ++t) {
        const bool kept = this->kept_by_all(in, b, t);
        const S* g = &dy(b, t, 0);
        for (Index i = 0; i < n; ++i) {
          S* dx = &this->input_grad_buffer(i)(b, t, 0);
          if (!kept) {
            std::fill(dx, dx + F, S(0));
            continue;
          }
          for (Index f = 0; f < F; ++f) dx[f] = grad_of(in, i, b, t, f, g[f]);
        }
      }
  }

 private:
  S combine(S acc, S x) const {
    switch (op_) {
      case MergeOp::Add:
      case MergeOp::Average: return acc + x;
      case MergeOp::Subtract: return acc - x;
      case MergeOp::Multiply: return acc * x;
      case MergeOp::Maximum: return x > acc ? x : acc;  // ties (and NaN x) keep the earlier input
      case MergeOp::Minimum: return x < acc ? x : acc;
    }
    return acc;
  }
  // d y[b, t, f] / d x_i[b, t, f] times g
  S grad_of(const LayerInputs<S>& in, Index i, Index b, Index t, Index f, S g) const {
    const Index n = Index(in.size());
    const auto x = [&](Index j) { return (*in[static_cast<std::size_t>(j)].x)(b, t, f); };
    switch (op_) {
      case MergeOp::Add: return g;
      case MergeOp::Average: return g / static_cast<S>(n);
      case MergeOp::Subtract: return i == 0 ? g : -g;
      case MergeOp::Multiply: {
        S product = g;
        for (Index j = 0; j < n; ++j)
          if (j != i) product *= x(j);
        return product;
      }
      case MergeOp::Maximum:
      case MergeOp::Minimum: {
        Index winner = 0;  // the first input holding the extreme, as forward's combine
        for (Index j = 1; j < n; ++j)
          if (op_ == MergeOp::Maximum ? x(j) > x(winner) : x(j) < x(winner)) winner = j;
        return i == winner ? g : S(0);
      }
    }
    return S(0);
  }

  MergeOp op_;
};

/// Concatenates 2 or more inputs on the feature axis; see the file documentation.
///
/// Also public, from its implementation base: inputs(), the number of inputs a call takes.
/// \extends Layer
template <class S>
class Concatenate final : public detail::MergeBase<S> {
 public:
  /// The feature widths of the inputs, in order (at least 2, each positive).
  explicit Concatenate(std::vector<Index> widths)
      : detail::MergeBase<S>(widths.empty() ? 1 : widths[0], Index(widths.size()), "Concatenate"),
        widths_(std::move(widths)) {
    for (std::size_t i = 0; i < widths_.size(); ++i)
      if (widths_[i] <= 0) detail::throw_config(describe(), ": input ", i, " width must be positive");
    for (Index w : widths_) out_features_ += w;
  }

  Index out_features() const override { return out_features_; }
  Index input_features(Index i, Index) const override {
    return i >= 0 && i < Index(widths_.size()) ? widths_[static_cast<std::size_t>(i)] : -1;
  }
  /// The feature widths of the inputs, in order.
  const std::vector<Index>& widths() const { return widths_; }
  std::string name() const override { return "concatenate"; }
  std::string class_name() const override { return "Concatenate"; }
  Config config() const override {
    Config widths = Config::array();
    for (Index w : widths_) widths.push_back(Config(w));
    Config c = Config::object();
    c.set("widths", std::move(widths));
    return c;
  }
  /// in_features must equal widths[0] (model/layer_registry.hpp checks the entry's).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "Concatenate config");
    const Config& list = r.get("widths");
    if (!list.is_array()) r.fail("widths", "an array of positive integers", list);
    std::vector<Index> widths;
    for (const Config& w : list.elements()) {
      if (w.kind() != Config::Kind::Int || w.as_int() < 1) r.fail("widths", "an array of positive integers", list);
      widths.push_back(static_cast<Index>(w.as_int()));
    }
    r.finish();
    if (widths.empty() || widths[0] != in_features)
      detail::throw_config("Concatenate config: widths[0] must equal in_features ", in_features);
    return std::make_unique<Concatenate>(widths);
  }
  std::string describe() const override {
    std::string s = "Concatenate(widths=[";
    for (std::size_t i = 0; i < widths_.size(); ++i) s += (i ? ", " : "") + std::to_string(widths_[i]);
    return s + "])";
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<Concatenate>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const Concatenate&>(other); }

 protected:
  /// inputs (B, T, F_i) -> y (B, T, sum F_i); steps not kept by every input are 0
  void merge_rows(const LayerInputs<S>& in, Tensor3<S>& y) const override {
    const Index B = y.dimension(0), T = y.dimension(1), F = y.dimension(2);
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < T; ++t) {
        S* out = &y(b, t, 0);
        if (!this->kept_by_all(in, b, t)) {
          std::fill(out, out + F, S(0));
          continue;
        }
        for (std::size_t i = 0; i < in.size(); ++i) {
          const S* xi = &(*in[i].x)(b, t, 0);
          out = std::copy(xi, xi + widths_[i], out);
        }
      }
  }
  /// dy (B, T, sum F_i) -> dx_i (B, T, F_i): the column blocks of dy
  void do_backward_inputs(const LayerInputs<S>& in, const Tensor3<S>& dy) override {
    const Index B = dy.dimension(0), T = dy.dimension(1);
    for (Index b = 0; b < B; ++b)
      for (Index t = 0; t < T; ++t) {
        const bool kept = this->kept_by_all(in, b, t);
        const S* g = &dy(b, t, 0);
        for (std::size_t i = 0; i < in.size(); ++i) {
          S* dx = &this->input_grad_buffer(Index(i))(b, t, 0);
          if (kept) {
            std::copy(g, g + widths_[i], dx);
          } else {
            std::fill(dx, dx + widths_[i], S(0));
          }
          g += widths_[i];
        }
      }
  }

 private:
  std::vector<Index> widths_;
  Index out_features_ = 0;
};

}  // namespace seqattn
