#pragma once
/// \file
/// Layer\<S>: the base of every layer. Contract (tests check it for every layer):
///
/// ```unparsed
///   forward(x, mask, mode)   x (B, T, in_features), mask fits (B, T). Checks shapes, sizes the output
///                            buffer (only when the shape changes) and returns y (B, out_time(T),
///                            out_features()). The reference stays valid until the next forward.
///   backward(x, mask, dy)    follows the forward with the same x and mask; dy has y's shape. OVERWRITES
///                            and returns dx (x's shape), ADDS INTO the parameter gradients (zero_grad()
///                            is explicit) and adds the gradient of regularization_loss().
///   out_mask(mask, T)        the mask of y (layers that change the number of steps return a new one).
///   params()                 trainable tensors with their gradients; buffers(): saved, not trained.
///   regularization_loss()    weight_penalty() (the L1/L2 penalties of the layer's own parameters, below) +
///                            extra_regularization_loss() (a layer's own terms: the attention regularizer of the
///                            last forward; containers: their children's regularization_loss()), 0 if none.
///   cache_bytes(B, T)        bytes of the caches a forward + backward of a (B, T) batch keeps, at least every
///                            part that grows faster than B*T (attention probabilities); forward throws
///                            MemoryError before any work when they, with the output and the input gradient,
///                            exceed memory_limit() (core/memory_limit.hpp), naming the layer, the shape, the
///                            bytes and memory_remedy(B, T).
///   assign(other)            makes this layer a copy of `other` (same type) keeping the storage of its tensors
///                            when their shapes match, so optimizers holding params() stay valid (core/param.hpp);
///                            layers implement copy_from (one line: *this = static_cast<const L&>(other)).
///   open_stream(B, options)  the layer's stream form (core/stream.hpp): B streams run step by step with the
///                            state they carry, reading this layer's weights in place; a layer that cannot
///                            stream keeps the default, which throws ConfigError naming it and why.
///                            open_inputs_stream(B, options, k): the same for a call with k inputs (input 0 steps,
///                            the others are the stream's context; merges step all of them).
///   supports_step_masks()    true when the layer honors step masks (core/mask.hpp: holes, left padding): masked
///                            steps never change outputs at kept steps, attention gives masked keys weight 0,
///                            recurrent layers carry their state across them. forward and backward refuse a
///                            step mask on a layer that returns false (ConfigError naming the layer);
///                            containers answer for their children.
///   class_name(), config()   the layer's type as registered ("Dense", model/layer_registry.hpp) and its options
///                            (core/layer_config.hpp): what a model file stores to rebuild it (io/model_file.hpp)
///                            with the layer's static from_config(in_features, config). Containers put their
///                            children's layer_entry() in a "layers" array. A layer that keeps the defaults
///                            cannot be saved in a model file (ConfigError naming it).
/// ```
/// Weight rules (core/weight_rules.hpp), one mechanism for every layer, applied to the layer's OWN parameters
/// (those its collect_params tags with a role; a container's children keep theirs, so nothing applies twice):
///
/// ```unparsed
///   set_regularizer(role, L1L2)     weight_penalty() adds l1 sum|w| + l2 sum w^2 over the role's parameters and
///                                   the base backward adds its gradient after do_backward.
///   set_constraint(role, c)         the optimizers project the role's parameters after each step.
///   set_trainable(false)            frozen: backward still computes dx, but leaves the layer's parameter gradients
///                                   exactly as they were (the base saves and restores them around do_backward;
///                                   zero after zero_grad), and the optimizers neither update these parameters nor
///                                   change their moments. On a container it freezes every layer that owns one of
///                                   its parameters (as Keras); a layer without parameters keeps its flag (no
///                                   effect). Weights files and model files still contain frozen parameters.
/// ```
/// ConfigError naming the layer and the value for invalid values (core/weight_rules.hpp) and for a role the layer
/// has no parameter of ("Dense(units=4): has no embeddings parameter (its parameters: W kernel, b bias)").
/// The rules are read live by the optimizers through the views (Param::trainable(), constraint()), so changing
/// them needs no new optimizer. Copies and assignments copy them; model files store them in the layer's entry
/// (layer_entry: "weight_rules", only when not the defaults).
/// Several inputs (graph nodes, model/graph.hpp; core/layer_inputs.hpp). A layer takes min_inputs() to max_inputs()
/// inputs: 1 and 1 for most layers, 2 or more for the merges (layers/merge.hpp), 1 to 3 for MultiHeadAttention
/// (query; keys and values; separate values). The one mechanism:
///
/// ```unparsed
///   forward(inputs, mode)    with one input, forward(x, mask, mode). With more, checks every input (the same batch
///                            size, at least one step, input i's features equal input_features(i, n) unless that
///                            is -1, masks that fit, step masks only when supported), sizes y (B,
///                            out_time_of(inputs), out_features()) and calls do_forward_inputs.
///   backward(inputs, dy)     follows it with the same inputs; OVERWRITES input_grad(i) (input i's shape) for every
///                            i, adds into the parameter gradients, with the weight rules applied as in backward.
///   out_time_of, out_mask_of the output steps and mask of a call (default: those of input 0).
/// ```
/// A layer with min_inputs() > 1 refuses forward(x, mask) (ConfigError naming it). Layers whose several-input
/// calls have their own entry (MultiHeadAttention's cross-attention) override forward_inputs_entered /
/// backward_inputs_entered and extra_input_grad instead.
/// Padded steps (t >= length) never change valid outputs; a layer's dx at padded steps is zero whenever dy
/// is zero there. Layers are copyable through clone() (one model copy per inference thread).
///
/// Around every forward and backward the base class also:
///
/// ```unparsed
///   - refuses concurrent entry: a second thread entering forward or backward of a layer object that is still
///     running throws UsageError at once (one atomic exchange per call) instead of computing on shared buffers;
///     a model object serves one thread at a time: give each thread its own copy;
///   - flushes denormals to zero for the call (core/denormals.hpp, set_flush_denormals);
///   - rethrows a std::bad_alloc as MemoryError naming the layer and the input shape.
/// ```

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <new>
#include <string>
#include <typeinfo>
#include <vector>

#include "seqattn/core/denormals.hpp"
#include "seqattn/core/errors.hpp"
#include "seqattn/core/layer_config.hpp"
#include "seqattn/core/layer_inputs.hpp"
#include "seqattn/core/mask.hpp"
#include "seqattn/core/memory_limit.hpp"
#include "seqattn/core/param.hpp"
#include "seqattn/core/stream.hpp"
#include "seqattn/core/tensor.hpp"
#include "seqattn/core/threads.hpp"  // every layer: Eigen's GEMMs single-threaded (determinism)
#include "seqattn/core/weight_rules.hpp"

namespace seqattn {

/// Whether a forward is part of training (dropout, batch statistics, attention regularizers) or inference.
enum class Mode { Train, Infer };

/// "train" or "infer".
inline const char* to_string(Mode mode) { return mode == Mode::Train ? "train" : "infer"; }

namespace detail {
// Marks a layer object busy for one forward or backward; a second entry while it is busy throws UsageError.
class InUseGuard {
 public:
  template <class Describe>
  InUseGuard(std::atomic<bool>& busy, const char* call, Describe&& describe) : busy_(busy) {
    if (busy_.exchange(true, std::memory_order_acquire))
      throw_usage(describe(), ": ", call, " entered while another call on the same layer object is running (two "
                  "threads using one model?); a model object serves one thread at a time: give each thread its "
                  "own copy (copy constructor or clone())");
  }
  ~InUseGuard() { busy_.store(false, std::memory_order_release); }
  InUseGuard(const InUseGuard&) = delete;
  InUseGuard& operator=(const InUseGuard&) = delete;

 private:
  std::atomic<bool>& busy_;
};
}  // namespace detail

/// The base of every layer: forward, backward, parameters, weight rules, streams and model-file config; see the
/// file documentation (core/layer.hpp) for the full contract.
template <class S>
class Layer {
 public:
  /// A layer taking inputs of `in_features` features (ConfigError unless positive).
  explicit Layer(Index in_features) : in_features_(in_features) {
    if (in_features <= 0) detail::throw_config("Layer: input features must be positive but got ", in_features);
  }
  virtual ~Layer() = default;

  /// x: (B, T, in_features) -> y: (B, out_time(T), out_features())
  const Tensor3<S>& forward(const Tensor3<S>& x, const Mask& mask = Mask(), Mode mode = Mode::Infer) {
    if (min_inputs() > 1)
      detail::throw_config(describe(), ": takes ", min_inputs(), " or more inputs but got one: call ",
                           "forward(inputs, mode) (core/layer_inputs.hpp), or use it as a Graph node");
    const detail::InUseGuard in_use = enter("forward");
    return forward_entered(x, mask, mode);
  }
  /// inputs[i].x: (B, T_i, input_features(i, n)) -> y: (B, out_time_of(inputs), out_features()) (file comment)
  const Tensor3<S>& forward(const LayerInputs<S>& inputs, Mode mode = Mode::Infer) {
    check_input_count(inputs);
    if (inputs.size() == 1) return forward(*inputs[0].x, *inputs[0].mask, mode);
    const detail::InUseGuard in_use = enter("forward");
    return forward_inputs_entered(inputs, mode);
  }
  /// dy: y's shape -> input_grad(i): inputs[i]'s shape for every i; returns input_grad(0).
  const Tensor3<S>& backward(const LayerInputs<S>& inputs, const Tensor3<S>& dy) {
    check_input_count(inputs);
    if (inputs.size() == 1) return backward(*inputs[0].x, *inputs[0].mask, dy);
    const detail::InUseGuard in_use = enter("backward");
    backward_inputs_entered(inputs, dy);
    return dx_;
  }
  /// How many inputs a call takes, and the features input i of an n-input call must have (-1: any).
  virtual Index min_inputs() const { return 1; }
  /// The most inputs a call takes (1 for most layers).
  virtual Index max_inputs() const { return 1; }
  /// The features input i of a call with `count` inputs must have; -1 accepts any.
  virtual Index input_features(Index i, Index /*count*/) const { return i == 0 ? in_features_ : -1; }
  /// Output steps and mask of a call with these inputs (Graph nodes): by default those of input 0.
  virtual Index out_time_of(const LayerInputs<S>& inputs) const { return out_time(inputs[0].x->dimension(1)); }
  /// The mask of the output of a call with these inputs (T: input 0's steps); by default out_mask of input 0's mask.
  virtual Mask out_mask_of(const LayerInputs<S>& inputs, Index T) const { return out_mask(*inputs[0].mask, T); }

  /// dy: (B, out_time(T), out_features()) -> dx: (B, T, in_features)
  const Tensor3<S>& backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy) {
    const detail::InUseGuard in_use = enter("backward");
    return backward_entered(x, mask, dy);
  }

  /// Bytes of the caches that a forward and backward of a (B, T, in_features) batch keep, counting at least every
  /// cache that grows faster than B*T (see the file comment); 0 when the layer has none. Saturates at
  /// kNoMemoryLimit. Sequential sums its layers', so model.cache_bytes(B, T) checks a run before it starts.
  virtual std::size_t cache_bytes(Index /*B*/, Index /*T*/) const { return 0; }
  /// What to change when cache_bytes(B, T) exceeds the limit (ends the MemoryError message).
  virtual std::string memory_remedy(Index /*B*/, Index /*T*/) const { return "use a smaller batch or shorter sequences"; }

  /// Makes this layer a copy of `other`, which must be a layer of the same type (ConfigError otherwise). When
  /// every parameter and buffer keeps its shape, their storage is kept, so optimizers built from params() stay
  /// valid; otherwise they are invalidated and detect it (Param::check_alive).
  void assign(const Layer<S>& other) {
    if (&other == this) return;
    if (typeid(*this) != typeid(other))
      detail::throw_config(describe(), ": cannot assign a ", other.describe(), " into it (another layer type)");
    ParamList<S> before = params(), before_buffers = buffers();
    before.insert(before.end(), before_buffers.begin(), before_buffers.end());
    copy_from(other);
    ParamList<S> after = params(), after_buffers = buffers();
    after.insert(after.end(), after_buffers.begin(), after_buffers.end());
    bool kept = before.size() == after.size();
    for (size_t i = 0; kept && i < before.size(); ++i)
      kept = before[i].value == after[i].value && before[i].grad == after[i].grad && before[i].shape == after[i].shape;
    if (!kept) return;  // storage moved: the generations stay advanced, old views are refused
    for (const auto& p : before)  // same storage: views taken before stay valid (nested layers included)
      if (const auto id = p.owner.lock()) id->generation = p.generation;
  }

  /// The stream form of this layer for `batch` independent streams (core/stream.hpp; Stream\<S> in
  /// model/stream.hpp is the user-facing object). Layers that read later steps cannot stream: ConfigError.
  virtual std::unique_ptr<LayerStream<S>> open_stream(Index /*batch*/, const StreamOptions& /*options*/) const {
    detail::throw_config(describe(), ": cannot be streamed: ", stream_refusal());
  }
  /// The stream form of a call with `inputs` inputs (core/stream.hpp, "Several inputs"): input 0 steps and the
  /// others are the stream's context, or, for the merges, every input steps. One input: open_stream.
  virtual std::unique_ptr<LayerStream<S>> open_inputs_stream(Index batch, const StreamOptions& options,
                                                            Index inputs) const {
    if (inputs < min_inputs() || inputs > max_inputs())
      detail::throw_config(describe(), ": cannot be streamed with ", inputs, " inputs: it takes ", min_inputs(),
                           " to ", max_inputs());
    if (inputs == 1) return open_stream(batch, options);
    detail::throw_config(describe(), ": cannot be streamed with ", inputs, " inputs: ", stream_refusal());
  }
  /// Why open_stream refuses this layer (ends the ConfigError message); layers that stream for some options
  /// only override it with the reason for the others.
  virtual std::string stream_refusal() const {
    return "its output at a step reads later steps of the input (only causal layers stream)";
  }

  /// The identity of this layer object (core/param.hpp): Stream\<S> checks at every step that its model still
  /// exists and was not assigned to since the stream was opened.
  std::weak_ptr<const LayerIdentity> identity() const { return identity_; }

  /// Whether this layer honors step masks with holes or left padding (see the file comment). Length masks
  /// (right padding) work with every layer.
  virtual bool supports_step_masks() const { return false; }
  /// Why a step mask is refused (ends the ConfigError message); containers name the child that refuses it.
  virtual std::string step_mask_refusal() const {
    return "this layer handles only length masks (right padding); give it a length mask (Mask(lengths))";
  }

  /// The features of the (first) input, fixed at construction.
  Index in_features() const { return in_features_; }
  /// The features of the output: y is (B, out_time(T), out_features()).
  virtual Index out_features() const = 0;
  /// Output steps for an input of T steps; T \< 0 means unknown (summary) and gives -1 unless fixed.
  virtual Index out_time(Index T) const { return T; }
  /// The mask of the output for an input mask of T steps (a new one when the layer changes the steps).
  virtual Mask out_mask(const Mask& mask, Index /*T*/) const { return mask; }

  /// The registry key of this layer type ("Dense", "Sequential"; model/layer_registry.hpp); "" when the layer
  /// cannot be saved in a model file.
  virtual std::string class_name() const { return ""; }
  /// The options that rebuild this layer with from_config (its sizes and options struct; see the file comment).
  virtual Config config() const {
    detail::throw_config(describe(),
                         ": cannot be saved to a model file: its type does not describe its options "
                         "(override class_name() and config(), give it a static from_config and register it with "
                         "register_layer, model/layer_registry.hpp)");
  }

  /// Snake-case type name, used in parameter names and summaries: "dense".
  virtual std::string name() const = 0;
  /// Type and configuration, used in error messages: "Dense(units=8)".
  virtual std::string describe() const = 0;
  /// A copy of this layer (same type, weights and rules; a new identity), e.g. one model per inference thread.
  virtual std::unique_ptr<Layer<S>> clone() const = 0;

  /// The trainable tensors (collect_params, nested layers included) as views with their gradients.
  ParamList<S> params() {
    ParamList<S> list;
    collect_params(list);
    stamp(list);
    return list;
  }
  /// The saved but not trained tensors (batch-norm running statistics) as views.
  ParamList<S> buffers() {
    ParamList<S> list;
    collect_buffers(list);
    stamp(list);
    return list;
  }
  /// The number of values in params().
  Index param_count() { return count_values(params()); }
  /// Sets every parameter gradient to zero (backward adds into them).
  void zero_grad() {
    for (auto& p : params()) p.grads().setZero();
  }
  /// weight_penalty() + extra_regularization_loss() (see the file comment).
  S regularization_loss() const { return weight_penalty() + extra_regularization_loss(); }
  /// l1 sum|w| + l2 sum w^2 over this layer's own parameters, by the regularizer of each one's role.
  /// Allocates nothing once a backward has run since the layer's storage last moved (the views it keeps, below).
  S weight_penalty() const {
    const WeightRules& rules = identity_->rules;
    if (!rules.any_regularizer()) return S(0);
    S total = S(0);
    if (own_views_current()) {
      for (const OwnView& v : own_views_) total += rules.regularizer(v.role).penalty(v.value, v.size);
      return total;
    }
    for (const auto& p : const_cast<Layer*>(this)->own_params())  // collect_params only reads
      total += rules.regularizer(p.role).penalty(p.value, p.size());
    return total;
  }

  /// Whether this layer's own parameters are trained (false: frozen; weight rules in the file documentation).
  bool trainable() const { return identity_->rules.trainable; }
  /// Freezes (false) or unfreezes this layer and every layer owning one of its parameters (file documentation).
  void set_trainable(bool trainable) {
    identity_->rules.trainable = trainable;
    for (const auto& p : params())
      if (const auto id = p.owner.lock()) id->rules.trainable = trainable;
  }
  /// Sets the L1/L2 penalty of this layer's own parameters of `role`; ConfigError for invalid values or a role
  /// the layer has no parameter of.
  void set_regularizer(ParamRole role, const L1L2& regularizer) {
    regularizer.check(describe(), detail::cat(to_string(role), "_regularizer"));
    if (regularizer.active()) check_role(role, "regularizer", nullptr);
    identity_->rules.regularizers[static_cast<std::size_t>(role)] = regularizer;
  }
  /// Sets the constraint the optimizers apply to this layer's own parameters of `role` after each step; ConfigError
  /// for invalid values or a role the layer has no parameter of.
  void set_constraint(ParamRole role, const Constraint& constraint) {
    constraint.check(describe(), detail::cat(to_string(role), "_constraint"));
    if (constraint.active()) check_role(role, "constraint", &constraint);
    identity_->rules.constraints[static_cast<std::size_t>(role)] = constraint;
  }
  /// This layer's own weight rules (trainable flag, regularizers and constraints per role).
  const WeightRules& weight_rules() const { return identity_->rules; }
  /// All of this layer's own rules at once (model files), checked as the setters do; trainable is set on this
  /// layer only (its children carry their own).
  void set_weight_rules(const WeightRules& rules) {
    for (std::size_t i = 0; i < kParamRoles; ++i) {
      const ParamRole role = static_cast<ParamRole>(i);
      rules.regularizers[i].check(describe(), detail::cat(to_string(role), "_regularizer"));
      rules.constraints[i].check(describe(), detail::cat(to_string(role), "_constraint"));
      if (rules.regularizers[i].active()) check_role(role, "regularizer", nullptr);
      if (rules.constraints[i].active()) check_role(role, "constraint", &rules.constraints[i]);
    }
    identity_->rules = rules;
  }

  /// The output of the last forward (valid until the next forward).
  const Tensor3<S>& output() const { return y_; }
  /// The input gradient of the last backward (input 0's for a several-input call).
  const Tensor3<S>& input_grad() const { return dx_; }
  /// The gradient of input i of the last backward (input_grad(0) == input_grad()).
  const Tensor3<S>& input_grad(Index i) const { return i == 0 ? dx_ : extra_input_grad(i); }
  /// The mode of the last forward.
  Mode last_mode() const { return last_mode_; }

 protected:
  /// A copy is a new layer object: a new identity, not busy. Assignment keeps the object's identity but
  /// advances its generation (its tensors may be reallocated): views taken before are refused by the
  /// optimizers unless the assignment went through assign(), which checks that the storage stayed.
  Layer(const Layer& other)
      : in_features_(other.in_features_),
        y_(other.y_),
        dx_(other.dx_),
        extra_dx_(other.extra_dx_),
        forward_dims_(other.forward_dims_),
        extra_forward_dims_(other.extra_forward_dims_),
        last_mode_(other.last_mode_),
        has_forward_(other.has_forward_) {
    identity_->rules = other.identity_->rules;
  }
  /// Copies another layer's state and rules keeping this object's identity; advances its generation (see the copy
  /// constructor).
  Layer& operator=(const Layer& other) {
    if (this == &other) return *this;
    identity_->rules = other.identity_->rules;
    in_features_ = other.in_features_;
    y_ = other.y_;
    dx_ = other.dx_;
    extra_dx_ = other.extra_dx_;
    forward_dims_ = other.forward_dims_;
    extra_forward_dims_ = other.extra_forward_dims_;
    last_mode_ = other.last_mode_;
    has_forward_ = other.has_forward_;
    ++identity_->generation;
    return *this;
  }

  /// Entry points for layers with other public calls (MultiHeadAttention's cross-attention): enter() marks the
  /// layer busy (UsageError when it already is) for the guard's lifetime; forward_entered / backward_entered are
  /// forward / backward without that step, to call while holding the guard.
  detail::InUseGuard enter(const char* call) {
    return detail::InUseGuard(busy_, call, [this] { return describe(); });
  }
  /// forward(x, mask, mode) without the busy check, for a caller holding enter()'s guard.
  const Tensor3<S>& forward_entered(const Tensor3<S>& x, const Mask& mask, Mode mode) {
    const detail::FlushDenormalsScope flush_denormals;
    check_input(x, mask);
    const Index out_t = out_time(x.dimension(1));
    if (out_t <= 0)
      detail::throw_shape(describe(), ": input of ", x.dimension(1), " steps gives no output step");
    check_memory(x.dimension(0), x.dimension(1), x.dimension(2));
    has_forward_ = false;  // a forward that throws leaves nothing for backward to use
    try {
      ensure_shape(y_, x.dimension(0), out_t, out_features());
      do_forward(x, mask, mode, y_);
    } catch (const std::bad_alloc&) {
      throw_out_of_memory("forward", x);
    }
    last_mode_ = mode;
    forward_dims_ = x.dimensions();
    extra_forward_dims_.clear();  // a one-input forward
    has_forward_ = true;
    return y_;
  }
  /// backward(x, mask, dy) without the busy check, for a caller holding enter()'s guard.
  const Tensor3<S>& backward_entered(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy) {
    const detail::FlushDenormalsScope flush_denormals;
    if (!has_forward_) detail::throw_shape(describe(), ": backward called before forward");
    if (x.dimensions() != forward_dims_)
      detail::throw_shape(describe(), ": backward input expected ",
                          shape_string(forward_dims_[0], forward_dims_[1], forward_dims_[2]),
                          " (the shape of the last forward) but got ", shape_string(x));
    if (dy.dimensions() != y_.dimensions())
      detail::throw_shape(describe(), ": output gradient expected ", shape_string(y_), " but got ", shape_string(dy));
    if (!mask.fits(x.dimension(0), x.dimension(1))) mask.check(x.dimension(0), x.dimension(1), describe());
    check_step_mask(mask);
    if (!extra_forward_dims_.empty())
      detail::throw_shape(describe(), ": backward with one input after a forward with ", extra_forward_dims_.size() + 1,
                          " inputs");
    try {
      ensure_shape(dx_, x.dimension(0), x.dimension(1), x.dimension(2));
      backward_with_weight_rules([&] { do_backward(x, mask, dy, dx_); });
    } catch (const std::bad_alloc&) {
      throw_out_of_memory("backward", x);
    }
    return dx_;
  }

  /// The several-input forward and backward (file comment) after enter(); a layer with its own several-input entry
  /// overrides them.
  virtual const Tensor3<S>& forward_inputs_entered(const LayerInputs<S>& inputs, Mode mode) {
    const detail::FlushDenormalsScope flush_denormals;
    check_inputs(inputs);
    const Tensor3<S>& x = *inputs[0].x;
    const Index out_t = out_time_of(inputs);
    if (out_t <= 0) detail::throw_shape(describe(), ": inputs of ", x.dimension(1), " steps give no output step");
    check_memory(x.dimension(0), x.dimension(1), x.dimension(2));
    has_forward_ = false;
    try {
      ensure_shape(y_, x.dimension(0), out_t, out_features());
      do_forward_inputs(inputs, mode, y_);
      extra_forward_dims_.resize(inputs.size() - 1);  // allocates only when the input count changes
      for (std::size_t i = 1; i < inputs.size(); ++i) extra_forward_dims_[i - 1] = inputs[i].x->dimensions();
    } catch (const std::bad_alloc&) {
      throw_out_of_memory("forward", x);
    }
    last_mode_ = mode;
    forward_dims_ = x.dimensions();
    has_forward_ = true;
    return y_;
  }
  /// The several-input backward after enter(): checks the inputs against the last forward, sizes the input
  /// gradients and runs do_backward_inputs with the weight rules.
  virtual void backward_inputs_entered(const LayerInputs<S>& inputs, const Tensor3<S>& dy) {
    const detail::FlushDenormalsScope flush_denormals;
    if (!has_forward_) detail::throw_shape(describe(), ": backward called before forward");
    if (inputs.size() != extra_forward_dims_.size() + 1)
      detail::throw_shape(describe(), ": backward with ", inputs.size(), " inputs after a forward with ",
                          extra_forward_dims_.size() + 1);
    for (std::size_t i = 0; i < inputs.size(); ++i) {
      const auto& dims = i == 0 ? forward_dims_ : extra_forward_dims_[i - 1];
      if (inputs[i].x->dimensions() != dims)
        detail::throw_shape(describe(), ": backward input ", i, " expected ", shape_string(dims[0], dims[1], dims[2]),
                            " (the shape of the last forward) but got ", shape_string(*inputs[i].x));
      inputs[i].mask->check(dims[0], dims[1], detail::cat(describe(), " input ", i));
    }
    if (dy.dimensions() != y_.dimensions())
      detail::throw_shape(describe(), ": output gradient expected ", shape_string(y_), " but got ", shape_string(dy));
    try {
      extra_dx_.resize(inputs.size() - 1);
      for (std::size_t i = 0; i < inputs.size(); ++i) {
        const Tensor3<S>& x = *inputs[i].x;
        ensure_shape(input_grad_buffer(Index(i)), x.dimension(0), x.dimension(1), x.dimension(2));
      }
      backward_with_weight_rules([&] { do_backward_inputs(inputs, dy); });
    } catch (const std::bad_alloc&) {
      throw_out_of_memory("backward", *inputs[0].x);
    }
  }
  /// input_grad(i) for i >= 1 (the base keeps them for do_backward_inputs).
  virtual const Tensor3<S>& extra_input_grad(Index i) const {
    if (i < 1 || i > Index(extra_dx_.size()))
      detail::throw_usage(describe(), ": input_grad(", i, ") but the last backward had ", extra_dx_.size() + 1,
                          " input(s)");
    return extra_dx_[static_cast<std::size_t>(i - 1)];
  }
  /// The buffer of input i's gradient, sized like input i before do_backward_inputs.
  Tensor3<S>& input_grad_buffer(Index i) { return i == 0 ? dx_ : extra_dx_[static_cast<std::size_t>(i - 1)]; }
  /// y is already sized (B, out_time_of(inputs), out_features()); write every element. Reached with 2 or more
  /// inputs only, for layers with max_inputs() > 1.
  virtual void do_forward_inputs(const LayerInputs<S>& /*inputs*/, Mode /*mode*/, Tensor3<S>& /*y*/) {
    detail::throw_usage(describe(), ": has no several-input forward");
  }
  /// Overwrite input_grad_buffer(i) for every input (already sized), add into the parameter gradients.
  virtual void do_backward_inputs(const LayerInputs<S>& /*inputs*/, const Tensor3<S>& /*dy*/) {
    detail::throw_usage(describe(), ": has no several-input backward");
  }

  /// Runs a backward body with the weight rules: a frozen layer's parameter gradients are restored after it; the
  /// regularizers' gradients are added after it.
  template <class Body>
  void backward_with_weight_rules(Body&& body) {
    const WeightRules& rules = identity_->rules;
    if (!rules.trainable) {  // frozen: the parameter gradients stay as they were
      refresh_own_views();
      frozen_grads_.clear();
      for (const OwnView& v : own_views_) frozen_grads_.insert(frozen_grads_.end(), v.grad, v.grad + v.size);
      body();
      const S* saved = frozen_grads_.data();
      for (const OwnView& v : own_views_) {
        std::copy(saved, saved + v.size, v.grad);
        saved += v.size;
      }
    } else {
      body();
      if (rules.any_regularizer()) {  // the gradient of weight_penalty()
        refresh_own_views();
        for (const OwnView& v : own_views_) rules.regularizer(v.role).add_gradient(v.value, v.grad, v.size);
      }
    }
  }

  /// *this = other as the concrete type (assign() has checked that the types are equal):
  ///
  /// ```unparsed
  ///   void copy_from(const Layer<S>& other) override { *this = static_cast<const Dense&>(other); }
  /// ```
  /// Layers that do not implement it cannot be assigned in place (Sequential then replaces them).
  virtual void copy_from(const Layer<S>& other) {
    detail::throw_config(describe(), ": assignment in place is not implemented (copy_from); cannot assign ",
                         other.describe());
  }

  /// y is already sized (B, out_time(T), out_features()); write every element.
  virtual void do_forward(const Tensor3<S>& x, const Mask& mask, Mode mode, Tensor3<S>& y) = 0;
  /// dx is already sized like x; overwrite every element, add into parameter gradients.
  virtual void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) = 0;
  /// Appends views of the layer's own trainable tensors (with their gradients and roles) to `list`; containers
  /// append their children's.
  virtual void collect_params(ParamList<S>& /*list*/) {}
  /// A layer's own terms of regularization_loss() (the attention regularizer; containers: the sum of their
  /// children's regularization_loss()).
  virtual S extra_regularization_loss() const { return S(0); }
  /// Appends views of the layer's saved, untrained tensors (buffers()) to `list`.
  virtual void collect_buffers(ParamList<S>& /*list*/) {}

  /// Shared input check: (B, T, in_features) with B, T >= 1 and a mask that fits.
  void check_input(const Tensor3<S>& x, const Mask& mask) const {
    if (x.dimension(0) <= 0 || x.dimension(1) <= 0)
      detail::throw_shape(describe(), ": input expected at least one sequence and one step but got ", shape_string(x));
    if (x.dimension(2) != in_features_)
      detail::throw_shape(describe(), ": input features expected ", in_features_, " but got ", x.dimension(2),
                          " (input shape ", shape_string(x), ")");
    if (!mask.fits(x.dimension(0), x.dimension(1))) mask.check(x.dimension(0), x.dimension(1), describe());
    check_step_mask(mask);
  }
  /// ShapeError unless inputs.size() is within [min_inputs(), max_inputs()].
  void check_input_count(const LayerInputs<S>& inputs) const {
    const Index n = Index(inputs.size());
    if (n < min_inputs() || n > max_inputs())
      detail::throw_shape(describe(), ": expected ",
                          min_inputs() == max_inputs() ? std::to_string(min_inputs())
                                                       : detail::cat(min_inputs(), " to ", max_inputs()),
                          " input(s) but got ", n);
    for (Index i = 0; i < n; ++i)
      if (!inputs[static_cast<std::size_t>(i)].x || !inputs[static_cast<std::size_t>(i)].mask)
        detail::throw_usage(describe(), ": input ", i, " has no tensor or no mask (null pointer)");
  }
  /// Every input of a several-input call: at least one sequence and step, the batch size of input 0, the features
  /// of input_features(i, n), a mask that fits, a step mask only when supported.
  void check_inputs(const LayerInputs<S>& inputs) const {
    const Index n = Index(inputs.size()), B = inputs[0].x->dimension(0);
    for (Index i = 0; i < n; ++i) {
      const Tensor3<S>& x = *inputs[static_cast<std::size_t>(i)].x;
      const Mask& mask = *inputs[static_cast<std::size_t>(i)].mask;
      if (x.dimension(0) <= 0 || x.dimension(1) <= 0)
        detail::throw_shape(describe(), ": input ", i, " expected at least one sequence and one step but got ",
                            shape_string(x));
      if (x.dimension(0) != B)
        detail::throw_shape(describe(), ": input ", i, " has ", x.dimension(0), " sequences but input 0 has ", B,
                            " (shapes ", shape_string(*inputs[0].x), " and ", shape_string(x), ")");
      const Index F = input_features(i, n);
      if (F >= 0 && x.dimension(2) != F)
        detail::throw_shape(describe(), ": input ", i, " features expected ", F, " but got ", x.dimension(2),
                            " (input shape ", shape_string(x), ")");
      if (!mask.fits(x.dimension(0), x.dimension(1)))
        mask.check(x.dimension(0), x.dimension(1), detail::cat(describe(), " input ", i));
      check_step_mask(mask);
    }
  }
  /// ConfigError unless the layer honors the mask's form.
  void check_step_mask(const Mask& mask) const {
    if (mask.has_holes() && !supports_step_masks())
      detail::throw_config(describe(), ": got a step mask (holes or left padding) but ", step_mask_refusal());
  }

 private:
  // Views from this layer's own tensors carry its identity (views of nested layers already carry theirs).
  void stamp(ParamList<S>& list) const {
    for (auto& p : list) {
      if (p.tracked) continue;
      p.owner = identity_;
      p.generation = identity_->generation;
      p.tracked = true;
    }
  }

  // The parameters this layer owns (collect_params minus its children's views, which are already tracked).
  ParamList<S> own_params() {
    ParamList<S> list;
    collect_params(list);
    list.erase(std::remove_if(list.begin(), list.end(), [](const Param<S>& p) { return p.tracked || !p.grad; }),
               list.end());
    return list;
  }
  // The own parameters as plain views, for the backward of a frozen or regularized layer and weight_penalty():
  // own_params() builds names and shapes (heap allocations) at every call. Taken again when the layer's
  // generation has changed since (an assignment may have moved its tensors: the same rule as the optimizers'
  // Param::check_alive), so a steady training step allocates nothing for weight rules.
  struct OwnView {
    S* value;
    S* grad;
    Index size;
    ParamRole role;
  };
  bool own_views_current() const { return own_views_taken_ && own_views_generation_ == identity_->generation; }
  void refresh_own_views() {
    if (own_views_current()) return;
    own_views_.clear();
    for (const auto& p : own_params()) own_views_.push_back(OwnView{p.value, p.grad, p.size(), p.role});
    own_views_generation_ = identity_->generation;
    own_views_taken_ = true;
  }

  // ConfigError unless this layer owns a parameter of `role` (and, for a constraint with an axis, every such
  // parameter has that axis).
  void check_role(ParamRole role, const char* what, const Constraint* constraint) {
    const ParamList<S> own = own_params();
    std::string have;
    bool found = false;
    for (const auto& p : own) {
      have += detail::cat(have.empty() ? "" : ", ", p.name, " ", to_string(p.role));
      if (p.role != role) continue;
      found = true;
      if (constraint && constraint->uses_axis() && constraint->axis_for(p.shape.size()) < 0)
        detail::throw_config(describe(), ": ", to_string(role), "_", what, " ", constraint->describe(), " has axis ",
                             constraint->axis, " but parameter ", p.name, " has shape ", p.shape_string());
    }
    if (!found)
      detail::throw_config(describe(), ": has no ", to_string(role), " parameter for a ", to_string(role), "_", what,
                           " (its parameters: ", have.empty() ? "none" : have, ")");
  }

  // The caches, the output and the input gradient of a (B, T, F) batch against the limit.
  void check_memory(Index B, Index T, Index F) const {
    const std::size_t io = detail::saturating_add(detail::saturating_bytes(sizeof(S), {B, out_time(T), out_features()}),
                                                  detail::saturating_bytes(sizeof(S), {B, T, F}));
    const std::size_t need = detail::saturating_add(cache_bytes(B, T), io), limit = memory_limit();
    if (need > limit)
      throw MemoryError(detail::cat(describe(), ": a batch of shape ", shape_string(B, T, F), " needs ",
                                    format_bytes(need), " for its output, input gradient and caches, above the memory limit of ",
                                    format_bytes(limit), " (seqattn::set_memory_limit); ", memory_remedy(B, T)));
  }

  [[noreturn]] void throw_out_of_memory(const char* call, const Tensor3<S>& x) const {
    throw MemoryError(detail::cat(describe(), ": out of memory in ", call, " for a batch of shape ", shape_string(x),
                                  " (std::bad_alloc); ", memory_remedy(x.dimension(0), x.dimension(1))));
  }

  Index in_features_;
  Tensor3<S> y_, dx_;
  std::vector<Tensor3<S>> extra_dx_;  // input_grad(i), i >= 1, of a several-input backward
  Eigen::DSizes<Index, 3> forward_dims_{0, 0, 0};
  std::vector<Eigen::DSizes<Index, 3>> extra_forward_dims_;  // inputs 1.. of the last forward (empty: one input)
  Mode last_mode_ = Mode::Infer;
  bool has_forward_ = false;
  std::shared_ptr<LayerIdentity> identity_ = std::make_shared<LayerIdentity>();
  std::atomic<bool> busy_{false};
  std::vector<S> frozen_grads_;  // a frozen layer's parameter gradients during its backward
  // refresh_own_views(); never copied (a copy owns other tensors): a copy or an assignment takes them again.
  std::vector<OwnView> own_views_;
  std::uint64_t own_views_generation_ = 0;
  bool own_views_taken_ = false;
};

/// What a model file stores for one layer: {"class_name": ..., "config": ..., "in_features": ...}, and
/// "weight_rules" (core/weight_rules.hpp) when the layer's rules are not the defaults.
template <class S>
Config layer_entry(const Layer<S>& layer) {
  const std::string type = layer.class_name();
  if (type.empty()) layer.config();  // the default throws the message naming the layer
  Config entry = Config::object();
  entry.set("class_name", type);
  entry.set("config", layer.config());
  entry.set("in_features", layer.in_features());
  if (!layer.weight_rules().is_default()) entry.set("weight_rules", weight_rules_config(layer.weight_rules()));
  return entry;
}

/// Builds a layer from an entry for `in_features` inputs (model/layer_registry.hpp gives one to containers'
/// from_config: Sequential, Residual, Bidirectional).
template <class S>
using LayerBuilder = std::function<std::unique_ptr<Layer<S>>(const Config& entry, Index in_features)>;

}  // namespace seqattn
