#pragma once
/// \file
/// MultiHead (keras-multi-head's MultiHead wrapper): runs layer_num copies of a layer side by side on the same
/// input and concatenates their outputs on the feature axis.
///
/// ```unparsed
///   x (B, T, F) -> [hidden_dim h: x_i = x W[:, i*h:(i+1)*h] + b[i*h:(i+1)*h] (B, T, h); else x_i = x]
///               -> y_i = copy_i(x_i) (B, T', Fc) -> y = [y_0 | y_1 | ... ] (B, T', Fc * layer_num)
/// ```
/// Keras stacks the outputs on a new last axis (child_shape + (layer_num,)); here head i's features are the
/// columns [i*Fc, (i+1)*Fc): Keras' y[..., f, i] is our y[..., i*Fc + f].
/// Building: MultiHead(F, layer, options) copies `layer` layer_num times: copy 0 is a clone of `layer` (its
/// weights), copy i >= 1 is rebuilt from the layer's config (layer_entry, the registry) with fresh weights: every
/// integer "seed" in its config (nested layers too) becomes seed + i, and a null seed draws next_seed(), so each
/// copy has its own weights (Keras rebuilds every copy from the config). A layer that has no config (a user layer
/// not registered) can only be used with layer_num 1 or through the list constructor. MultiHead(F, layers, options)
/// takes the given layers (options.layer_num must be 1, the default, or their number); every layer must have the
/// same in_features (F, or hidden_dim), out_features and out_time, else ConfigError naming both.
/// hidden_dim (optional): the projection is one Dense W (F, h * layer_num), b (h * layer_num) (use_bias), kernel
/// initialized Init::uniform(-0.05, 0.05) (Keras' 'uniform'), bias zeros, seed option.
/// Orthogonality regularizer (Keras' reg_index / reg_slice / reg_factor): for each MultiHeadRegularizer {index,
/// slice, factor}: the rows of R (layer_num, n) are every copy's parameter `index` (into the copy's params()
/// list), sliced and flattened row-major; regularization_loss() adds factor * sum((R R^T - I)^2) (plus the copies'
/// own), and backward adds its gradient 4 factor (R R^T - I) R into the sliced parameters. Slices: one (start,
/// stop) pair per leading dimension (0 \<= start \< stop \<= size, step 1; dimensions without a pair are whole), the
/// subset of Python slices supported (no step, no negative index); an empty slice is the whole parameter.
/// Parameters: "\<i>.\<copy name>.\<param>" ("1.dense.W"), then "W" and "b" of the projection.
/// Masks: every copy gets the mask; out_mask is copy 0's. Step masks are honored when every copy honors them
/// (the projection is per step). Mode passes through. backward sums the copies' dx (through the projection).
/// Streams: when every copy streams, the stream runs the copies' streams side by side (state "\<i>.\<name>.\<...>");
/// otherwise ConfigError naming the copy that refuses.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <typeinfo>
#include <utility>
#include <vector>

#include "seqattn/core/init.hpp"
#include "seqattn/core/layer.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/layers/dense.hpp"

namespace seqattn {

/// Defined in model/layer_registry.hpp (included at the end of this file): copies are rebuilt through it.
template <class S>
std::unique_ptr<Layer<S>> build_layer(const Config& entry, Index in_features);

/// One orthogonality regularizer (see the file comment): parameter `index` of every copy, `slice` of it.
struct MultiHeadRegularizer {
  Index index = 0;  ///< Index of the parameter in each copy's params().
  std::vector<std::pair<Index, Index>> slice;  ///< (start, stop) per leading dimension; empty: the whole parameter
  double factor = 0.0;  ///< Weight of the regularizer.
};

/// Options of MultiHead (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct MultiHeadOptions {
  /// The number of copies.
  SEQATTN_ARG(Index, layer_num, 1)
  /// Features of each copy's input when projecting x first (none: every copy reads x).
  SEQATTN_ARG(std::optional<Index>, hidden_dim, std::nullopt)
  /// Adds a bias.
  SEQATTN_ARG(bool, use_bias, true)
  /// Initializer of the kernel.
  SEQATTN_ARG(Init, kernel_init, Init::uniform(-0.05, 0.05))
  /// Initializer of the bias.
  SEQATTN_ARG(Init, bias_init, Init::zeros())
  SEQATTN_ARG(std::optional<std::uint64_t>, seed, std::nullopt)  ///< the projection's; default: next_seed()
  /// Orthogonality regularizers over the copies' parameters.
  SEQATTN_ARG(std::vector<MultiHeadRegularizer>, regularizers, std::vector<MultiHeadRegularizer>())

  /// The fields with their model-file keys (core/layer_config.hpp); layer_num and the regularizers are written by
  /// the layer (the number of "layers", Keras' reg_index / reg_slice / reg_factor lists).
  template <class Self, class V>
  static void visit_options(Self& o, V&& v) {
    v("hidden_dim", o.hidden_dim_);
    v("use_bias", o.use_bias_);
    v("kernel_initializer", o.kernel_init_);
    v("bias_initializer", o.bias_init_);
    v("seed", o.seed_);
  }
};

/// Runs layer_num copies of a layer side by side and concatenates their outputs (keras-multi-head MultiHead);
/// see the file documentation.
template <class S>
class MultiHead final : public Layer<S> {
 public:
  /// layer_num copies of `layer` (see the file comment).
  MultiHead(Index in_features, const Layer<S>& layer, MultiHeadOptions options = MultiHeadOptions())
      : Layer<S>(in_features), options_(std::move(options)) {
    if (options_.layer_num() <= 0)
      detail::throw_config("MultiHead(", layer.describe(), "): layer_num must be positive but got ",
                           options_.layer_num());
    check_hidden_dim();
    copies_.push_back(layer.clone());
    if (options_.layer_num() > 1) {
      Config entry;
      try {
        entry = layer_entry(layer);
      } catch (const ConfigError& e) {
        detail::throw_config("MultiHead: cannot make ", options_.layer_num(), " copies of ", layer.describe(),
                             " with their own weights (they are rebuilt from its config): ", e.what(),
                             "; give the copies as a list instead");
      }
      for (Index i = 1; i < options_.layer_num(); ++i)
        copies_.push_back(build_layer<S>(reseeded(entry, std::uint64_t(i)), layer.in_features()));
    }
    finish();
  }
  /// The given layers, one head each.
  MultiHead(Index in_features, std::vector<std::unique_ptr<Layer<S>>> layers,
            MultiHeadOptions options = MultiHeadOptions())
      : Layer<S>(in_features), options_(std::move(options)), copies_(std::move(layers)) {
    if (copies_.empty()) detail::throw_config("MultiHead: the list of layers is empty");
    for (size_t i = 0; i < copies_.size(); ++i)
      if (!copies_[i]) detail::throw_config("MultiHead: layer ", i, " of the list is null");
    if (options_.layer_num() != 1 && options_.layer_num() != Index(copies_.size()))
      detail::throw_config("MultiHead: layer_num expected ", copies_.size(),
                           " (the number of layers given, or 1, the default) but got ", options_.layer_num());
    options_.layer_num(Index(copies_.size()));
    check_hidden_dim();
    finish();
  }

  /// A deep copy (every copy and the projection cloned).
  MultiHead(const MultiHead& other) : Layer<S>(other), options_(other.options_), inputs_(other.inputs_) {
    for (const auto& c : other.copies_) copies_.push_back(c->clone());
    if (other.proj_) proj_ = std::make_unique<Dense<S>>(*other.proj_);
  }
  /// Each copy (and the projection) is assigned in place when it has the same type (Layer::assign keeps its
  /// tensors when their shapes match), else replaced by a copy.
  MultiHead& operator=(const MultiHead& other) {
    if (this == &other) return *this;
    if (copies_.size() != other.copies_.size()) copies_.resize(other.copies_.size());
    for (size_t i = 0; i < copies_.size(); ++i) {
      if (copies_[i] && typeid(*copies_[i]) == typeid(*other.copies_[i]))
        copies_[i]->assign(*other.copies_[i]);
      else
        copies_[i] = other.copies_[i]->clone();
    }
    if (!other.proj_)
      proj_.reset();
    else if (proj_)
      proj_->assign(*other.proj_);
    else
      proj_ = std::make_unique<Dense<S>>(*other.proj_);
    options_ = other.options_;
    inputs_ = other.inputs_;
    Layer<S>::operator=(other);
    return *this;
  }

  /// The number of copies.
  Index layer_num() const { return Index(copies_.size()); }
  /// Copy i.
  Layer<S>& layer(Index i) { return *copies_.at(size_t(i)); }
  /// Copy i.
  const Layer<S>& layer(Index i) const { return *copies_.at(size_t(i)); }
  /// The options the layer was built with.
  const MultiHeadOptions& options() const { return options_; }

  Index out_features() const override { return copies_[0]->out_features() * layer_num(); }
  Index out_time(Index T) const override { return copies_[0]->out_time(T); }
  Mask out_mask(const Mask& mask, Index T) const override { return copies_[0]->out_mask(mask, T); }
  std::string name() const override { return "multi_head"; }
  std::string class_name() const override { return "MultiHead"; }
  bool supports_step_masks() const override {
    return std::all_of(copies_.begin(), copies_.end(), [](const auto& c) { return c->supports_step_masks(); });
  }
  std::string step_mask_refusal() const override {
    for (size_t i = 0; i < copies_.size(); ++i)
      if (!copies_[i]->supports_step_masks())
        return detail::cat("its layer ", i, " (", copies_[i]->describe(),
                           ") refuses it: ", copies_[i]->step_mask_refusal());
    return "";
  }
  /// {"layers": [each copy's entry], hidden_dim, use_bias, kernel_initializer, bias_initializer, seed,
  ///  "reg_index": [..], "reg_slice": [[[start, stop], ..], ..], "reg_factor": [..]}
  Config config() const override {
    Config c = Config::object();
    Config layers = Config::array();
    for (const auto& copy : copies_) layers.push_back(layer_entry(*copy));
    c.set("layers", std::move(layers));
    write_options(c, options_);
    Config index = Config::array(), slice = Config::array(), factor = Config::array();
    for (const auto& r : options_.regularizers()) {
      index.push_back(r.index);
      Config dims = Config::array();
      for (const auto& [start, stop] : r.slice) {
        Config pair = Config::array();
        pair.push_back(start);
        pair.push_back(stop);
        dims.push_back(std::move(pair));
      }
      slice.push_back(std::move(dims));
      factor.push_back(r.factor);
    }
    c.set("reg_index", std::move(index));
    c.set("reg_slice", std::move(slice));
    c.set("reg_factor", std::move(factor));
    return c;
  }
  /// Rebuilds the layer from config(), the copies with `build` (model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config, const LayerBuilder<S>& build) {
    ConfigReader r(config, "MultiHead config");
    MultiHeadOptions options = read_options<MultiHeadOptions>(r);
    const Config& layers = r.get("layers");
    if (!layers.is_array() || layers.size() == 0)
      detail::throw_config("MultiHead config: 'layers' expected a non-empty array of layer entries but got ",
                           layers.dump(80));
    const Index child_in = options.hidden_dim().value_or(in_features);
    if (child_in <= 0) detail::throw_config("MultiHead config: 'hidden_dim' must be positive but got ", child_in);
    std::vector<std::unique_ptr<Layer<S>>> copies;
    for (const Config& entry : layers.elements()) copies.push_back(build(entry, child_in));
    const Config& index = r.get("reg_index");
    const Config& slice = r.get("reg_slice");
    const Config& factor = r.get("reg_factor");
    r.finish();
    if (!index.is_array() || !slice.is_array() || !factor.is_array() || index.size() != slice.size() ||
        index.size() != factor.size())
      detail::throw_config(
          "MultiHead config: 'reg_index', 'reg_slice' and 'reg_factor' expected arrays of the same "
          "length but got ",
          index.dump(80), ", ", slice.dump(80), ", ", factor.dump(80));
    std::vector<MultiHeadRegularizer> regs;
    for (size_t k = 0; k < index.size(); ++k) {
      MultiHeadRegularizer reg;
      reg.index = Index(index.elements()[k].as_int());
      reg.factor = factor.elements()[k].as_double();
      const Config& dims = slice.elements()[k];
      if (!dims.is_array())
        detail::throw_config("MultiHead config: 'reg_slice' expected arrays but got ", dims.dump(80));
      for (const Config& pair : dims.elements()) {
        if (!pair.is_array() || pair.size() != 2)
          detail::throw_config("MultiHead config: 'reg_slice' expected [start, stop] pairs but got ", pair.dump(80));
        reg.slice.emplace_back(Index(pair.elements()[0].as_int()), Index(pair.elements()[1].as_int()));
      }
      regs.push_back(std::move(reg));
    }
    options.regularizers(std::move(regs));
    return std::make_unique<MultiHead>(in_features, std::move(copies), std::move(options));
  }
  /// "MultiHead(Dense(units=4), layer_num=3, hidden_dim=2)" when the copies describe alike, else every copy.
  std::string describe() const override {
    std::string s = "MultiHead(";
    const bool alike = std::all_of(copies_.begin(), copies_.end(),
                                   [&](const auto& c) { return c->describe() == copies_[0]->describe(); });
    if (alike) {
      s += copies_[0]->describe() + ", layer_num=" + std::to_string(layer_num());
    } else {
      for (size_t i = 0; i < copies_.size(); ++i) s += (i ? ", " : "") + copies_[i]->describe();
    }
    if (options_.hidden_dim()) s += ", hidden_dim=" + std::to_string(*options_.hidden_dim());
    if (options_.hidden_dim() && !options_.use_bias()) s += ", use_bias=false";
    if (!options_.regularizers().empty()) s += ", regularizers=" + std::to_string(options_.regularizers().size());
    return s + ")";
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<MultiHead>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const MultiHead&>(other); }
  std::size_t cache_bytes(Index B, Index T) const override {
    std::size_t bytes = 0;
    for (const auto& c : copies_) bytes = detail::saturating_add(bytes, c->cache_bytes(B, T));
    return bytes;
  }
  /// The copies' own regularization plus the orthogonality terms (see the file comment).
  S extra_regularization_loss() const override {
    S loss(0);
    for (const auto& c : copies_) loss += c->regularization_loss();
    if (proj_) loss += proj_->regularization_loss();
    for (const auto& reg : options_.regularizers()) {
      const Matrix<S> R = reg_rows(reg);
      Matrix<S> G = R * R.transpose();
      G.diagonal().array() -= S(1);
      loss += S(reg.factor) * G.squaredNorm();
    }
    return loss;
  }
  /// The copies' streams side by side (after the projection's), when every copy streams.
  std::unique_ptr<LayerStream<S>> open_stream(Index batch, const StreamOptions& options) const override {
    auto stream = std::make_unique<MultiHeadStream>();
    if (proj_) stream->proj = proj_->open_stream(batch, options);
    for (size_t i = 0; i < copies_.size(); ++i) {
      try {
        stream->heads.push_back(copies_[i]->open_stream(batch, options));
      } catch (const ConfigError& e) {
        detail::throw_config(describe(), ": cannot be streamed: its layer ", i, " refuses: ", e.what());
      }
      stream->names.push_back(std::to_string(i) + "." + copies_[i]->name() + ".");
    }
    stream->hidden = proj_ ? *options_.hidden_dim() : this->in_features();
    stream->fc = copies_[0]->out_features();
    return stream;
  }

 protected:
  /// x (B, T, F) -> x_i (projection) -> y_i = copy_i(x_i) (B, T', Fc) -> y[..., i*Fc + f] = y_i[..., f]
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode mode, Tensor3<S>& y) override {
    const Index B = x.dimension(0), T = x.dimension(1), L = layer_num();
    if (proj_) {
      const Index h = *options_.hidden_dim();
      const Tensor3<S>& p = proj_->forward(x, mask, mode);
      inputs_.resize(size_t(L));
      for (Index i = 0; i < L; ++i) {
        ensure_shape(inputs_[size_t(i)], B, T, h);
        as_matrix(inputs_[size_t(i)]) = as_matrix(p).middleCols(i * h, h);
      }
    }
    const Index Fc = copies_[0]->out_features();
    auto Y = as_matrix(y);
    for (Index i = 0; i < L; ++i) {
      const Tensor3<S>& yi = copies_[size_t(i)]->forward(head_input(x, i), mask, mode);
      if (yi.dimensions() != copies_[0]->output().dimensions())
        detail::throw_shape(describe(), ": layer ", i, " (", copies_[size_t(i)]->describe(), ") output ",
                            shape_string(yi), " but layer 0 (", copies_[0]->describe(), ") output ",
                            shape_string(copies_[0]->output()));
      Y.middleCols(i * Fc, Fc) = as_matrix(yi);
    }
  }
  /// dy -> dy_i = dy[..., i*Fc:(i+1)*Fc] -> dx_i = copy_i.backward -> dx = sum_i dx_i (through the projection);
  /// then the orthogonality regularizers' gradients into the copies' parameters.
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const Index L = layer_num(), Fc = copies_[0]->out_features();
    const Index B = dy.dimension(0), To = dy.dimension(1);
    ensure_shape(dyi_, B, To, Fc);
    if (proj_) ensure_shape(dp_, x.dimension(0), x.dimension(1), proj_->out_features());
    for (Index i = 0; i < L; ++i) {
      as_matrix(dyi_) = as_matrix(dy).middleCols(i * Fc, Fc);
      const Tensor3<S>& dxi = copies_[size_t(i)]->backward(head_input(x, i), mask, dyi_);
      if (proj_) {
        const Index h = *options_.hidden_dim();
        as_matrix(dp_).middleCols(i * h, h) = as_matrix(dxi);
      } else if (i == 0) {
        as_matrix(dx) = as_matrix(dxi);
      } else {
        as_matrix(dx) += as_matrix(dxi);
      }
    }
    if (proj_) as_matrix(dx) = as_matrix(proj_->backward(x, mask, dp_));
    for (const auto& reg : options_.regularizers()) add_reg_gradient(reg);
  }
  void collect_params(ParamList<S>& list) override { collect(list, false); }
  void collect_buffers(ParamList<S>& list) override { collect(list, true); }

 private:
  struct MultiHeadStream final : LayerStream<S> {
    std::unique_ptr<LayerStream<S>> proj;
    std::vector<std::unique_ptr<LayerStream<S>>> heads;
    std::vector<std::string> names;
    Index hidden = 0, fc = 0;
    Tensor3<S> p, xi, yi;
    // x (B, n, F) -> [p = x W + b] -> x_i -> y_i (B, n, Fc) -> y[..., i*Fc + f]
    void step(const Tensor3<S>& x, const std::vector<Index>& start, Tensor3<S>& y) override {
      const Index B = x.dimension(0), n = x.dimension(1);
      if (proj) {
        ensure_shape(p, B, n, hidden * Index(heads.size()));
        proj->step(x, start, p);
        ensure_shape(xi, B, n, hidden);
      }
      ensure_shape(yi, B, n, fc);
      for (size_t i = 0; i < heads.size(); ++i) {
        if (proj) as_matrix(xi) = as_matrix(p).middleCols(Index(i) * hidden, hidden);
        heads[i]->step(proj ? xi : x, start, yi);
        as_matrix(y).middleCols(Index(i) * fc, fc) = as_matrix(yi);
      }
    }
    void reset(Index b) override {
      for (auto& h : heads) h->reset(b);
    }
    void state(StreamStateList<S>& list, const std::string& prefix) override {
      for (size_t i = 0; i < heads.size(); ++i) heads[i]->state(list, prefix + names[i]);
    }
    Index max_steps() const override {
      Index m = kUnlimitedSteps;
      for (const auto& h : heads) m = std::min(m, h->max_steps());
      return m;
    }
    bool per_step() const override {
      return std::all_of(heads.begin(), heads.end(), [](const auto& h) { return h->per_step(); });
    }
    bool pools_time() const override { return heads[0]->pools_time(); }
  };

  const Tensor3<S>& head_input(const Tensor3<S>& x, Index i) const { return proj_ ? inputs_[size_t(i)] : x; }

  void check_hidden_dim() const {
    if (options_.hidden_dim() && *options_.hidden_dim() <= 0)
      detail::throw_config("MultiHead: hidden_dim must be positive but got ", *options_.hidden_dim());
  }

  // Checks the copies against each other and the input, builds the projection, checks the regularizers.
  void finish() {
    const Index child_in = options_.hidden_dim().value_or(this->in_features());
    const Layer<S>& first = *copies_[0];
    for (size_t i = 0; i < copies_.size(); ++i) {
      const Layer<S>& c = *copies_[i];
      if (c.in_features() != child_in)
        detail::throw_shape("MultiHead: layer ", i, " (", c.describe(), ") expects ", c.in_features(),
                            " input features but gets ", child_in,
                            options_.hidden_dim() ? " (hidden_dim)" : " (the input features)");
      if (c.out_features() != first.out_features() || out_time_or(c, 7) != out_time_or(first, 7))
        detail::throw_config("MultiHead: every layer must give the same output shape, but layer ", i, " (",
                             c.describe(), ") gives ", c.out_features(), " features, ", out_time_or(c, 7),
                             " steps for 7, and layer 0 (", first.describe(), ") ", first.out_features(), " features, ",
                             out_time_or(first, 7), " steps for 7");
    }
    if (options_.hidden_dim()) {
      const Index h = *options_.hidden_dim();
      detail::checked_parameter<S>("MultiHead", "projection W", {this->in_features(), h * layer_num()});
      proj_ = std::make_unique<Dense<S>>(this->in_features(), h * layer_num(),
                                         DenseOptions()
                                             .use_bias(options_.use_bias())
                                             .kernel_init(options_.kernel_init())
                                             .bias_init(options_.bias_init())
                                             .seed(options_.seed()));
    }
    for (const auto& reg : options_.regularizers()) check_regularizer(reg);
  }
  static Index out_time_or(const Layer<S>& l, Index T) {
    try {
      return l.out_time(T);
    } catch (const ShapeError&) {
      return -1;  // the layer needs a fixed number of steps (checked at forward)
    }
  }

  void check_regularizer(const MultiHeadRegularizer& reg) const {
    const ParamList<S> first = copies_[0]->params();
    for (size_t i = 0; i < copies_.size(); ++i) {
      const ParamList<S> params = copies_[i]->params();
      if (reg.index < 0 || reg.index >= Index(params.size()))
        detail::throw_config("MultiHead: reg_index expected an index into the ", params.size(), " parameters of layer ",
                             i, " (", copies_[i]->describe(), ") but got ", reg.index);
      const Param<S>& p = params[size_t(reg.index)];
      const Param<S>& p0 = first[size_t(reg.index)];
      if (p.shape != p0.shape)
        detail::throw_config("MultiHead: reg_index ", reg.index, ": parameter '", p.name, "' of layer ", i,
                             " has shape ", p.shape_string(), " but layer 0's '", p0.name, "' has ", p0.shape_string());
      if (reg.slice.size() > p.shape.size())
        detail::throw_config("MultiHead: reg_slice of reg_index ", reg.index, " has ", reg.slice.size(),
                             " dimensions but parameter '", p.name, "' has shape ", p.shape_string());
      for (size_t d = 0; d < reg.slice.size(); ++d) {
        const auto [start, stop] = reg.slice[d];
        if (start < 0 || start >= stop || stop > p.shape[d])
          detail::throw_config("MultiHead: reg_slice of reg_index ", reg.index, " dimension ", d,
                               " expected 0 <= start < stop <= ", p.shape[d], " but got (", start, ", ", stop, ")");
      }
    }
    if (!std::isfinite(reg.factor))
      detail::throw_config("MultiHead: reg_factor expected a finite number but got ", reg.factor);
  }

  // Row-major flat offsets of the elements of `reg`'s slice of a parameter of shape `shape`, in order.
  static std::vector<Index> slice_offsets(const MultiHeadRegularizer& reg, const std::vector<Index>& shape) {
    std::vector<Index> lo(shape.size(), 0), hi(shape);
    for (size_t d = 0; d < reg.slice.size(); ++d) std::tie(lo[d], hi[d]) = reg.slice[d];
    std::vector<Index> out;
    if (shape.empty()) return {0};
    std::vector<Index> at(lo);
    while (true) {
      Index flat = 0;
      for (size_t d = 0; d < shape.size(); ++d) flat = flat * shape[d] + at[d];
      out.push_back(flat);
      size_t d = shape.size();
      while (d > 0) {
        --d;
        if (++at[d] < hi[d]) break;
        at[d] = lo[d];
        if (d == 0) return out;
      }
    }
  }
  // R (layer_num, n): row i = copy i's sliced parameter, flattened.
  Matrix<S> reg_rows(const MultiHeadRegularizer& reg) const {
    const std::vector<Index> offsets = slice_offsets(reg, copies_[0]->params()[size_t(reg.index)].shape);
    Matrix<S> R(layer_num(), Index(offsets.size()));
    for (Index i = 0; i < layer_num(); ++i) {
      const Param<S> p = copies_[size_t(i)]->params()[size_t(reg.index)];
      for (size_t k = 0; k < offsets.size(); ++k) R(i, Index(k)) = p.value[offsets[k]];
    }
    return R;
  }
  // d/dR factor * ||R R^T - I||^2 = 4 factor (R R^T - I) R, into the sliced parameters' gradients.
  void add_reg_gradient(const MultiHeadRegularizer& reg) {
    if (reg.factor == 0) return;
    const Matrix<S> R = reg_rows(reg);
    Matrix<S> G = R * R.transpose();
    G.diagonal().array() -= S(1);
    const Matrix<S> dR = S(4 * reg.factor) * G * R;
    const std::vector<Index> offsets = slice_offsets(reg, copies_[0]->params()[size_t(reg.index)].shape);
    for (Index i = 0; i < layer_num(); ++i) {
      const Param<S> p = copies_[size_t(i)]->params()[size_t(reg.index)];
      for (size_t k = 0; k < offsets.size(); ++k) p.grad[offsets[k]] += dR(i, Index(k));
    }
  }

  void collect(ParamList<S>& list, bool buffers) {
    for (size_t i = 0; i < copies_.size(); ++i) {
      const std::string prefix = std::to_string(i) + "." + copies_[i]->name() + ".";
      for (auto& p : buffers ? copies_[i]->buffers() : copies_[i]->params()) {
        p.name = prefix + p.name;
        list.push_back(std::move(p));
      }
    }
    if (proj_)
      for (auto& p : buffers ? proj_->buffers() : proj_->params()) list.push_back(std::move(p));
  }

  // Every integer "seed" in a layer entry (nested entries too) plus `add`; null seeds stay null (next_seed()).
  static Config reseeded(const Config& c, std::uint64_t add) {
    if (c.is_array()) {
      Config out = Config::array();
      for (const Config& e : c.elements()) out.push_back(reseeded(e, add));
      return out;
    }
    if (!c.is_object()) return c;
    Config out = Config::object();
    for (size_t k = 0; k < c.keys().size(); ++k) {
      const Config& v = c.elements()[k];
      if (c.keys()[k] == "seed" && !v.is_null() && !v.is_array() && !v.is_object()) {
        ConfigReader r(c, "MultiHead copy config");
        const std::uint64_t seed = ConfigCodec<std::uint64_t>::read(v, r, "seed");
        out.set("seed", ConfigCodec<std::uint64_t>::write(seed + add));
      } else {
        out.set(c.keys()[k], reseeded(v, add));
      }
    }
    return out;
  }

  MultiHeadOptions options_;
  std::vector<std::unique_ptr<Layer<S>>> copies_;
  std::unique_ptr<Dense<S>> proj_;  // hidden_dim: x -> (B, T, h * layer_num)
  std::vector<Tensor3<S>> inputs_;  // hidden_dim: each copy's input (B, T, h)
  Tensor3<S> dyi_, dp_;
};

}  // namespace seqattn

#include "seqattn/model/layer_registry.hpp"  // build_layer (copies are rebuilt from their config)
