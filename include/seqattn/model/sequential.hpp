#pragma once
/// \file
/// Sequential\<S>: a stack of layers applied one after the other. A Sequential is itself a Layer\<S>, so models
/// nest (a Sequential inside a Sequential, or inside a wrapper layer).
///
/// ```unparsed
///   Sequential<float> model(16);                              // input features
///   model.add<Dense<float>>(64, Activation::ReLU);           // Dense<float>(16, 64, ReLU)
///   model.add<Dense<float>>(3);                              // Dense<float>(64, 3)
///   const auto& logits = model.forward(x, mask, Mode::Train); // x (B, T, 16) -> (B, T, 3)
///   model.backward(dlogits);                                  // uses the x and mask of the last forward
///
/// ```
/// add\<L>(args...) constructs L(current output features, args...); add(std::unique_ptr\<Layer\<S>>) takes a
/// layer built elsewhere and throws ShapeError at once when its input features differ from the current output
/// features. forward chains the layers: layer i gets the output of layer i-1 and the mask masks()[i]; after its
/// forward, layer.out_mask(masks()[i], T_i) gives masks()[i+1] (so a layer may derive its output mask from the
/// data of that forward). masks().back() == output_mask() is the mask of the model's output. The final output
/// is copied into the model's own output buffer (forward returns it).
/// backward(dy) uses a stored copy of the last forward's x and mask; backward(x, mask, dy) is the Layer one.
/// Both overwrite dx and add into every parameter gradient (zero_grad() is explicit).
/// params()/buffers(): every layer's, named "\<index>.\<layer name>.\<param name>": "0.dense.W",
/// "3.multi_head_attention.Wq", nested: "1.sequential.0.dense.W". regularization_loss() sums the layers'.
/// Copies (copy constructor, clone()) are deep: each layer is cloned; a copy shares nothing with the original.
/// Assignment (operator=, also by move) copies into the existing layers when their shapes match, so optimizers
/// stay valid (see operator=).
/// Finite-check mode, set_check_finite(true) (off by default; one pass over each layer's output when on): forward
/// checks the model input and then each layer's output, backward the output gradient dy and then each layer's
/// input gradient and parameter gradients, at the valid steps of their masks, and throws seqattn::Error at the
/// first NaN or Inf, naming the layer by index and describe():
///
/// ```unparsed
///   "Sequential: check_finite: layer 2 Dense(units=4, activation=relu) produced Inf in its forward output at
///    (sequence 0, step 3, feature 1) (its input was finite)"
/// ```
/// A nested Sequential is one layer here (turn its own mode on to look inside). The mode is copied with the model.
/// summary(T) prints a Keras-style table (see summary()). Buffers of the model (the x copy, per-layer masks) and
/// of its layers are resized only when a shape changes, so a steady training loop allocates no Eigen memory.

#include <algorithm>
#include <memory>
#include <sstream>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "seqattn/core/layer.hpp"
#include "seqattn/detail/finite_check.hpp"
#include "seqattn/model/stream.hpp"

namespace seqattn {

/// A chain of layers run one after the other, itself a layer; see the file documentation.
template <class S>
class Sequential final : public Layer<S> {
 public:
  using Layer<S>::forward;
  using Layer<S>::backward;

  /// An empty model for inputs of `in_features` features; add layers with add().
  explicit Sequential(Index in_features) : Layer<S>(in_features), masks_(1) {}

  /// A deep copy (every layer cloned).
  Sequential(const Sequential& other)
      : Layer<S>(other), masks_(other.masks_), x_(other.x_), check_finite_(other.check_finite_) {
    layers_.reserve(other.layers_.size());
    for (const auto& layer : other.layers_) layers_.push_back(layer->clone());
  }
  /// Assignment keeps this model's tensors wherever it can, so an optimizer built from params() stays valid
  /// (`best = model; ...; model = best; adam.step()` restores a checkpoint): layer i is assigned in place
  /// (Layer::assign: every value, option and random stream of other's layer i) when both have the same type and
  /// the same parameter and buffer shapes; any other layer is replaced by a copy of other's (moved from other
  /// for a move), and an optimizer still holding the replaced layer's parameters throws UsageError at its next
  /// step (core/param.hpp).
  Sequential& operator=(const Sequential& other) {
    if (this != &other) assign_model(other, nullptr);
    return *this;
  }
  /// Move assignment, keeping this model's tensors where it can (as the copy assignment).
  Sequential& operator=(Sequential&& other) {
    if (this != &other) assign_model(other, &other);
    return *this;
  }
  /// Moves the layers.
  Sequential(Sequential&&) = default;
  ~Sequential() override = default;

  /// Constructs L(out_features(), args...) at the end of the model and returns it.
  template <class L, class... Args>
  L& add(Args&&... args) {
    static_assert(std::is_base_of<Layer<S>, L>::value, "Sequential<S>::add<L>: L must derive from Layer<S>");
    auto layer = std::make_unique<L>(out_features(), std::forward<Args>(args)...);
    L& ref = *layer;
    add(std::move(layer));
    return ref;
  }

  /// Appends a layer built elsewhere; its input features must equal the current output features.
  Layer<S>& add(std::unique_ptr<Layer<S>> layer) {
    const Index index = size();
    if (!layer) detail::throw_config("Sequential: layer ", index, " is null");
    if (layer->in_features() != out_features()) {
      if (index == 0)
        detail::throw_shape("Sequential: layer 0 ", layer->describe(), " expects ", layer->in_features(),
                            " input features but the model input has ", out_features());
      detail::throw_shape("Sequential: layer ", index, " ", layer->describe(), " expects ", layer->in_features(),
                          " input features but the previous layer outputs ", out_features());
    }
    layers_.push_back(std::move(layer));
    masks_.resize(layers_.size() + 1);
    return *layers_.back();
  }

  /// The number of layers.
  Index size() const { return static_cast<Index>(layers_.size()); }
  /// True when there is no layer.
  bool empty() const { return layers_.empty(); }
  /// Layer i (ConfigError when out of range).
  Layer<S>& layer(Index i) { return *layers_[checked(i)]; }
  /// Layer i (ConfigError when out of range).
  const Layer<S>& layer(Index i) const { return *layers_[checked(i)]; }
  /// Layer i as its concrete type: model.layer_as\<Dense\<float>>(0).kernel(). ConfigError on a wrong type.
  template <class L>
  L& layer_as(Index i) {
    auto* p = dynamic_cast<L*>(layers_[checked(i)].get());
    if (!p)
      detail::throw_config("Sequential: layer ", i, " is ", layers_[static_cast<size_t>(i)]->describe(),
                           ", not the requested type");
    return *p;
  }

  /// B independent streams over this model, run step by step (model/stream.hpp). ConfigError names the first
  /// layer that cannot stream.
  Stream<S> stream(Index batch, StreamOptions options = StreamOptions()) const {
    return Stream<S>(*this, batch, options);
  }
  /// The layers' streams in order; after a layer that pools time (a global pooling, LastStep,
  /// SeqWeightedAttention, an LSTM without return_sequences) only per-step layers may follow.
  std::unique_ptr<LayerStream<S>> open_stream(Index batch, const StreamOptions& options) const override {
    if (layers_.empty()) detail::throw_config("Sequential: cannot stream a model with no layers");
    auto stream = std::make_unique<ChainStream>();
    Index pooled_at = -1;
    for (size_t i = 0; i < layers_.size(); ++i) {
      std::unique_ptr<LayerStream<S>> layer;
      try {
        layer = layers_[i]->open_stream(batch, options);
      } catch (const ConfigError& e) {
        detail::throw_config("Sequential: layer ", i, " ", e.what());
      }
      if (pooled_at >= 0 && !layer->per_step())
        detail::throw_config("Sequential: layer ", i, " ", layers_[i]->describe(), ": cannot be streamed after layer ",
                             pooled_at, " ", layers_[static_cast<size_t>(pooled_at)]->describe(),
                             ", which pools time: in the model each pooled output is a sequence of one step, so only "
                             "per-step layers (Dense, activations, norms, Dropout) may follow it in a stream");
      if (layer->pools_time() && pooled_at < 0) pooled_at = static_cast<Index>(i);
      stream->layers.push_back(std::move(layer));
      stream->names.push_back(std::to_string(i) + "." + layers_[i]->name() + ".");
      stream->features.push_back(layers_[i]->out_features());
    }
    stream->outputs.resize(layers_.size() - 1);
    return stream;
  }

  /// Forward in Mode::Infer.
  const Tensor3<S>& predict(const Tensor3<S>& x, const Mask& mask = Mask()) { return forward(x, mask, Mode::Infer); }

  /// dy: (B, out_time(T), out_features()) -> dx: (B, T, in_features), with the x and mask of the last forward.
  const Tensor3<S>& backward(const Tensor3<S>& dy) { return Layer<S>::backward(x_, masks_.front(), dy); }

  /// Finite-check mode (see the header comment): NaN / Inf in a layer's output or gradients throws Error.
  void set_check_finite(bool on) { check_finite_ = on; }
  /// Whether the finite-check mode is on.
  bool check_finite() const { return check_finite_; }

  /// masks()[i]: the mask given to layer i in the last forward; masks().back(): the mask of the output.
  const std::vector<Mask>& masks() const { return masks_; }
  /// The mask of the output of the last forward.
  const Mask& output_mask() const { return masks_.back(); }

  /// A chain honors step masks when every layer in it does.
  bool supports_step_masks() const override {
    return std::all_of(layers_.begin(), layers_.end(), [](const auto& layer) { return layer->supports_step_masks(); });
  }
  std::string step_mask_refusal() const override {
    for (size_t i = 0; i < layers_.size(); ++i)
      if (!layers_[i]->supports_step_masks())
        return detail::cat("its layer ", i, " (", layers_[i]->describe(), ") refuses it: ",
                           layers_[i]->step_mask_refusal());
    return "";
  }
  Index out_features() const override { return layers_.empty() ? this->in_features() : layers_.back()->out_features(); }
  Index out_time(Index T) const override {
    for (const auto& layer : layers_) T = layer->out_time(T);
    return T;
  }
  Mask out_mask(const Mask& mask, Index T) const override {
    Mask m = mask;
    for (const auto& layer : layers_) {
      m = layer->out_mask(m, T);
      T = layer->out_time(T);
    }
    return m;
  }
  S extra_regularization_loss() const override {
    S total = S(0);
    for (const auto& layer : layers_) total += layer->regularization_loss();
    return total;
  }

  /// The sum over the layers (their caches coexist between forward and backward), T followed through them.
  std::size_t cache_bytes(Index B, Index T) const override {
    std::size_t total = 0;
    for (const auto& layer : layers_) {
      total = detail::saturating_add(total, layer->cache_bytes(B, T));
      T = layer->out_time(T);
    }
    return total;
  }
  /// Names the layer that needs the most and its own remedy.
  std::string memory_remedy(Index B, Index T) const override {
    size_t largest = 0;
    std::size_t most = 0;
    Index t = T, t_largest = T;
    for (size_t i = 0; i < layers_.size(); ++i) {
      const std::size_t bytes = layers_[i]->cache_bytes(B, t);
      if (bytes > most) {
        most = bytes;
        largest = i;
        t_largest = t;
      }
      t = layers_[i]->out_time(t);
    }
    if (most == 0) return Layer<S>::memory_remedy(B, T);
    return detail::cat("layer ", largest, " ", layers_[largest]->describe(), " needs ", format_bytes(most), ": ",
                       layers_[largest]->memory_remedy(B, t_largest));
  }

  std::string name() const override { return "sequential"; }
  std::string class_name() const override { return "Sequential"; }
  /// {"layers": [each layer's layer_entry(): class_name, config, in_features]} (io/model_file.hpp).
  Config config() const override {
    Config layers = Config::array();
    for (const auto& layer : layers_) layers.push_back(layer_entry(*layer));
    Config c = Config::object();
    c.set("layers", std::move(layers));
    return c;
  }
  /// Rebuilds a model from config(), each layer with `build` (model/layer_registry.hpp) for the features the
  /// layers before it output; `who` names the container in messages ("Sequential", "Residual").
  static Sequential from_config(Index in_features, const Config& config, const LayerBuilder<S>& build,
                                const std::string& who = "Sequential") {
    ConfigReader r(config, who + " config");
    const Config& layers = r.get("layers");
    if (!layers.is_array()) r.fail("layers", "an array of layers", layers);
    r.finish();
    Sequential model(in_features);
    for (std::size_t i = 0; i < layers.size(); ++i) {
      std::unique_ptr<Layer<S>> layer;
      try {
        layer = build(layers.elements()[i], model.out_features());
      } catch (const MemoryError& e) {
        throw MemoryError(detail::cat(who, " layer ", i, ": ", e.what()));
      } catch (const Error& e) {
        detail::throw_config(who, " layer ", i, ": ", e.what());
      }
      model.add(std::move(layer));
    }
    return model;
  }
  std::string describe() const override { return detail::cat("Sequential(layers=", size(), ")"); }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<Sequential>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const Sequential&>(other); }

  /// A Keras-style table: one row per layer "index name (describe)", its output shape for an input of T steps
  /// (T \< 0: unknown, printed None; the batch is always None) and its number of values (parameters + buffers,
  /// as Keras counts batch-norm statistics); then the totals. Trainable = params() of layers that are not frozen
  /// (Layer::set_trainable), non-trainable = buffers() and frozen parameters (as Keras counts them).
  std::string summary(Index T = -1) const {
    struct Row {
      std::string layer, shape, count;
    };
    std::vector<Row> rows;
    Index trainable = 0, fixed = 0;
    Index t = T < 0 ? -1 : T;
    for (Index i = 0; i < size(); ++i) {
      Layer<S>& layer = const_cast<Layer<S>&>(*layers_[static_cast<size_t>(i)]);  // params() only reads
      const ParamList<S> params = layer.params();
      const Index p = count_values(params), b = count_values(layer.buffers());
      for (const auto& param : params) (param.trainable() ? trainable : fixed) += param.size();  // frozen: fixed
      fixed += b;
      t = layer.out_time(t);
      rows.push_back({detail::cat(i, " ", layer.name(), " (", layer.describe(), ")"),
                      shape_string(-1, t < 0 ? -1 : t, layer.out_features()), std::to_string(p + b)});
    }
    Row head{"Layer (type)", "Output Shape", "Param #"};
    size_t w0 = head.layer.size(), w1 = head.shape.size(), w2 = head.count.size();
    for (const auto& r : rows) {
      w0 = std::max(w0, r.layer.size());
      w1 = std::max(w1, r.shape.size());
      w2 = std::max(w2, r.count.size());
    }
    const size_t width = 1 + w0 + 3 + w1 + 3 + w2;
    auto line = [&](const Row& r) {
      std::string s = " " + r.layer + std::string(w0 - r.layer.size() + 3, ' ') + r.shape +
                      std::string(w1 - r.shape.size() + 3, ' ') + r.count;
      return s + "\n";
    };
    std::ostringstream out;
    out << "Model: \"sequential\" (input features " << this->in_features() << ")\n";
    out << std::string(width, '_') << "\n" << line(head) << std::string(width, '=') << "\n";
    for (const auto& r : rows) out << line(r);
    if (rows.empty()) out << " (no layers)\n";
    out << std::string(width, '=') << "\n";
    out << "Total params: " << trainable + fixed << "\n";
    out << "Trainable params: " << trainable << "\n";
    out << "Non-trainable params: " << fixed << "\n";
    return out.str();
  }

 protected:
  /// x (B, T, in_features) -> layer 0 -> ... -> layer n-1 -> y (B, out_time(T), out_features())
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode mode, Tensor3<S>& y) override {
    if (layers_.empty()) detail::throw_config("Sequential: forward called on a model with no layers (add one first)");
    ensure_shape(x_, x.dimension(0), x.dimension(1), x.dimension(2));  // copy kept for backward(dy)
    std::copy(x.data(), x.data() + x.size(), x_.data());
    masks_.front() = mask;
    if (check_finite_) detail::check_finite(x, mask, "Sequential: check_finite: the model input has ", "");
    // Exception safety: a Train forward that a later layer rejects (a mask BatchNorm or PositionEmbedding
    // refuses, a bad id, a NaN in check_finite mode) restores the buffers, the BatchNorm running statistics,
    // that the layers before it updated. Random streams (dropout) may have advanced, as after any forward.
    ParamList<S> buffers;
    if (mode == Mode::Train) {
      buffers = this->buffers();
      backup_.clear();
      for (const auto& p : buffers) backup_.insert(backup_.end(), p.value, p.value + p.size());
    }
    const Tensor3<S>* cur = &x;
    try {
      for (size_t i = 0; i < layers_.size(); ++i) {
        const Index T_in = cur->dimension(1);
        cur = &layers_[i]->forward(*cur, masks_[i], mode);
        masks_[i + 1] = layers_[i]->out_mask(masks_[i], T_in);
        if (check_finite_)
          detail::check_finite(*cur, masks_[i + 1], finite_who(i), " in its forward output", " (its input was finite)");
      }
    } catch (...) {
      const S* saved = backup_.data();
      for (const auto& p : buffers) {
        std::copy(saved, saved + p.size(), p.value);
        saved += p.size();
      }
      throw;
    }
    if (cur->dimensions() != y.dimensions())
      detail::throw_shape(describe(), ": last layer ", layers_.back()->describe(), " output ", shape_string(*cur),
                          " but out_time/out_features give ", shape_string(y));
    std::copy(cur->data(), cur->data() + cur->size(), y.data());
  }

  /// dy (B, T', F') -> backward of layer n-1 (input: output of layer n-2) -> ... -> layer 0 (input: x) -> dx
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const Tensor3<S>* grad = &dy;
    if (check_finite_) detail::check_finite(dy, masks_.back(), "Sequential: check_finite: the output gradient dy has ", "");
    for (size_t k = layers_.size(); k-- > 0;) {
      const Tensor3<S>& input = k == 0 ? x : layers_[k - 1]->output();
      grad = &layers_[k]->backward(input, k == 0 ? mask : masks_[k], *grad);
      if (check_finite_) {
        const std::string who = finite_who(k);
        detail::check_finite(*grad, k == 0 ? mask : masks_[k], who, " in its input gradient (backward)",
                             " (its output gradient was finite)");
        for (const auto& p : layers_[k]->params()) detail::check_finite_param(p, who);
      }
    }
    std::copy(grad->data(), grad->data() + grad->size(), dx.data());
  }

  void collect_params(ParamList<S>& list) override { collect(list, false); }
  void collect_buffers(ParamList<S>& list) override { collect(list, true); }

 private:
  // The layers' streams one after the other; outputs[i] is layer i's output (the last layer writes y).
  struct ChainStream final : LayerStream<S> {
    std::vector<std::unique_ptr<LayerStream<S>>> layers;
    std::vector<std::string> names;
    std::vector<Index> features;
    std::vector<Tensor3<S>> outputs;

    // x (B, n, in) -> layer 0 -> ... -> layer k-1 -> y (B, n, out)
    void step(const Tensor3<S>& x, const std::vector<Index>& start, Tensor3<S>& y) override {
      const Tensor3<S>* cur = &x;
      for (size_t i = 0; i < layers.size(); ++i) {
        Tensor3<S>& out = i + 1 == layers.size() ? y : outputs[i];
        ensure_shape(out, x.dimension(0), x.dimension(1), features[i]);
        layers[i]->step(*cur, start, out);
        cur = &out;
      }
    }
    void reset(Index b) override {
      for (auto& layer : layers) layer->reset(b);
    }
    void state(StreamStateList<S>& list, const std::string& prefix) override {
      for (size_t i = 0; i < layers.size(); ++i) layers[i]->state(list, prefix + names[i]);
    }
    Index max_steps() const override {
      Index steps = kUnlimitedSteps;
      for (const auto& layer : layers) steps = std::min(steps, layer->max_steps());
      return steps;
    }
    bool per_step() const override {
      return std::all_of(layers.begin(), layers.end(), [](const auto& layer) { return layer->per_step(); });
    }
    bool pools_time() const override {
      return std::any_of(layers.begin(), layers.end(), [](const auto& layer) { return layer->pools_time(); });
    }
  };

  // operator= (source: nullptr) and move assignment (source: &other, whose replaced layers are moved).
  void assign_model(const Sequential& other, Sequential* source) {
    const size_t n = other.layers_.size();
    std::vector<std::unique_ptr<Layer<S>>> layers(n);
    std::vector<bool> in_place(n, false);
    for (size_t i = 0; i < n; ++i) {  // everything that may throw before this model changes
      in_place[i] = i < layers_.size() && same_storage_shapes(*layers_[i], *other.layers_[i]);
      if (!in_place[i]) layers[i] = source ? std::move(source->layers_[i]) : other.layers_[i]->clone();
    }
    for (size_t i = 0; i < n; ++i) {
      if (!in_place[i]) continue;
      try {
        layers_[i]->assign(*other.layers_[i]);
        layers[i] = std::move(layers_[i]);
      } catch (const ConfigError&) {  // a layer without copy_from: replaced
        layers[i] = other.layers_[i]->clone();
      }
    }
    layers_ = std::move(layers);
    masks_ = other.masks_;
    x_ = other.x_;
    check_finite_ = other.check_finite_;
    Layer<S>::operator=(other);
  }

  // Same concrete type and the same names and shapes of parameters and buffers.
  static bool same_storage_shapes(Layer<S>& a, const Layer<S>& b_const) {
    Layer<S>& b = const_cast<Layer<S>&>(b_const);  // params() only reads
    if (typeid(a) != typeid(b)) return false;
    auto same = [](const ParamList<S>& x, const ParamList<S>& y) {
      if (x.size() != y.size()) return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (x[i].name != y[i].name || x[i].shape != y[i].shape) return false;
      return true;
    };
    return same(a.params(), b.params()) && same(a.buffers(), b.buffers());
  }

  size_t checked(Index i) const {
    if (i < 0 || i >= size())
      detail::throw_shape("Sequential: layer index ", i, " out of range (the model has ", size(), " layers)");
    return static_cast<size_t>(i);
  }
  void collect(ParamList<S>& list, bool buffers) {
    for (size_t i = 0; i < layers_.size(); ++i) {
      const std::string prefix = std::to_string(i) + "." + layers_[i]->name() + ".";
      for (auto& p : buffers ? layers_[i]->buffers() : layers_[i]->params()) {
        p.name = prefix + p.name;
        list.push_back(std::move(p));
      }
    }
  }

  std::string finite_who(size_t i) const {
    return detail::cat("Sequential: check_finite: layer ", i, " ", layers_[i]->describe(), " produced ");
  }

  std::vector<std::unique_ptr<Layer<S>>> layers_;
  std::vector<Mask> masks_;  // masks_[i]: input mask of layer i; masks_.back(): output mask
  Tensor3<S> x_;             // copy of the last forward's input, for backward(dy)
  bool check_finite_ = false;
  std::vector<S> backup_;    // buffers before the current Train forward (restored when it throws)
};

}  // namespace seqattn
