#pragma once
/// \file
/// Residual: y = x + f(x), where f is a Sequential\<S> body that keeps the shape (same features, same steps).
///
/// ```unparsed
///   x (B, T, F) -> f(x) (B, T, F) -> y (B, T, F); dx = dy + df/dx^T dy.
/// ```
/// Build the body first and hand it over, or add layers to body() after construction:
///
/// ```unparsed
///   Sequential<float> f(64); f.add<Conv1D<float>>(64, 8, ...);  model.add<Residual<float>>(std::move(f));
///   auto& r = model.add<Residual<float>>(); r.body().add<Dense<float>>(64);
/// ```
/// The body's shape is checked when it is given and again at every forward (layers may be added later).
/// Parameters are the body's, named "\<index>.\<layer>.\<param>" inside the residual: "2.residual.0.conv1d.W".

#include <memory>
#include <string>
#include <utility>

#include "seqattn/core/layer.hpp"
#include "seqattn/model/sequential.hpp"

namespace seqattn {

/// y = x + body(x), with body a Sequential that keeps the shape; see the file documentation.
template <class S>
class Residual final : public Layer<S> {
 public:
  /// An empty body (add layers with body().add).
  explicit Residual(Index in_features) : Layer<S>(in_features), body_(in_features) {}
  /// The given body (its out_features must equal in_features).
  Residual(Index in_features, Sequential<S> body) : Layer<S>(in_features), body_(std::move(body)) {
    check_body();
  }

  /// The body.
  Sequential<S>& body() { return body_; }
  /// The body.
  const Sequential<S>& body() const { return body_; }

  Index out_features() const override { return this->in_features(); }
  bool supports_step_masks() const override { return body_.supports_step_masks(); }
  std::string step_mask_refusal() const override { return "its body " + body_.step_mask_refusal(); }
  std::string name() const override { return "residual"; }
  std::string class_name() const override { return "Residual"; }
  /// {"layers": [the body's layers' entries]} (as Sequential's).
  Config config() const override { return body_.config(); }
  /// Rebuilds the layer from config(), the body's layers with `build` (model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config, const LayerBuilder<S>& build) {
    return std::make_unique<Residual>(in_features, Sequential<S>::from_config(in_features, config, build, "Residual"));
  }
  std::string describe() const override {
    std::string s = "Residual(";
    for (Index i = 0; i < body_.size(); ++i) s += (i ? ", " : "") + body_.layer(i).describe();
    return s + ")";
  }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<Residual>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const Residual&>(other); }
  std::size_t cache_bytes(Index B, Index T) const override { return body_.cache_bytes(B, T); }
  std::string memory_remedy(Index B, Index T) const override { return body_.memory_remedy(B, T); }
  S extra_regularization_loss() const override { return body_.regularization_loss(); }
  /// Streams as its body does: y = x + body's stream output.
  std::unique_ptr<LayerStream<S>> open_stream(Index batch, const StreamOptions& options) const override {
    auto stream = std::make_unique<ResidualStream>();
    try {
      stream->body = body_.open_stream(batch, options);
    } catch (const ConfigError& e) {
      detail::throw_config("Residual: body ", e.what());
    }
    return stream;
  }

 protected:
  /// x (B, T, F) -> y = x + body(x)
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode mode, Tensor3<S>& y) override {
    check_body(x.dimension(1));
    const Tensor3<S>& fx = body_.forward(x, mask, mode);
    as_matrix(y).noalias() = as_matrix(x) + as_matrix(fx);
  }
  /// dy -> dx = dy (identity path) + body.backward(dy) (inverts y = x + body(x))
  void do_backward(const Tensor3<S>& x, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const Tensor3<S>& dfx = body_.backward(x, mask, dy);
    as_matrix(dx).noalias() = as_matrix(dy) + as_matrix(dfx);
  }
  void collect_params(ParamList<S>& list) override { append(list, body_.params()); }
  void collect_buffers(ParamList<S>& list) override { append(list, body_.buffers()); }

 private:
  struct ResidualStream final : LayerStream<S> {
    std::unique_ptr<LayerStream<S>> body;
    Tensor3<S> fx;
    // x (B, n, F) -> y = x + body(x)
    void step(const Tensor3<S>& x, const std::vector<Index>& start, Tensor3<S>& y) override {
      ensure_shape(fx, x.dimension(0), x.dimension(1), x.dimension(2));
      body->step(x, start, fx);
      as_matrix(y).noalias() = as_matrix(x) + as_matrix(fx);
    }
    void reset(Index b) override { body->reset(b); }
    void state(StreamStateList<S>& list, const std::string& prefix) override { body->state(list, prefix); }
    Index max_steps() const override { return body->max_steps(); }
    bool per_step() const override { return body->per_step(); }
  };

  static void append(ParamList<S>& list, ParamList<S> more) {
    for (auto& p : more) list.push_back(std::move(p));
  }
  // T: the steps of the input (construction: 0, unknown; a body needing a fixed number of steps, such as
  // TemporalAttention, is then checked at forward only).
  void check_body(Index T = 0) const {
    if (body_.in_features() != this->in_features())
      detail::throw_shape("Residual: body expects ", body_.in_features(), " input features but the residual input has ",
                          this->in_features());
    if (body_.size() == 0) detail::throw_config("Residual: the body has no layers");
    if (body_.out_features() != this->in_features())
      detail::throw_shape("Residual: body output features expected ", this->in_features(),
                          " (the input features, to add x) but got ", body_.out_features());
    if (T == 0 && !keeps_steps(7)) return;
    if (body_.out_time(T == 0 ? 7 : T) != (T == 0 ? 7 : T))
      detail::throw_shape("Residual: the body must keep the number of steps (a layer in it changes it)");
  }

  // False when the body rejects T steps (it needs a fixed number of steps).
  bool keeps_steps(Index T) const {
    try {
      body_.out_time(T);
      return true;
    } catch (const ShapeError&) {
      return false;
    }
  }

  Sequential<S> body_;
};

}  // namespace seqattn
