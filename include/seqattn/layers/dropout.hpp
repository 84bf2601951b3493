#pragma once
/// \file
/// Dropout: inverted dropout, (B, T, F) -> (B, T, F), no parameters.
///
/// ```unparsed
///   Mode::Train   every element is kept with probability 1 - rate and scaled by 1 / (1 - rate), otherwise
///                 zeroed:  y = x * m / (1 - rate),  m ~ Bernoulli(1 - rate) drawn per element
///                 (as torch.nn.Dropout and Keras' Dropout in training).
///   Mode::Infer   identity, y = x (the expected value of the training output).
/// ```
/// backward: dx = dy * m / (1 - rate) with the mask m of the last forward, which must have been a Train
/// forward; after an Infer forward the layer was the identity and dx = dy.
/// Options: seed (default next_seed()) seeds the layer's own Rng; the same seed gives the same sequence of
/// masks. A clone copies the Rng state, so it draws the same masks as the original from that point on.
/// Inside a RandomScope (core/random.hpp) a Train forward first reseeds the Rng from the scope, so its mask depends
/// only on the scope's seed and the order of the forwards (the distributed trainer gives each chunk its own scope).
/// rate must be in [0, 1) (ConfigError otherwise). Padded steps are dropped like any other (their dy is 0,
/// so their dx is 0); so are the masked steps of a step mask (supports_step_masks(); the draws do not depend on
/// the mask).

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "seqattn/core/layer.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/core/random.hpp"

namespace seqattn {

/// Options of Dropout (see the file documentation).
///
/// Each option is set with .name(value) (chainable) and read with .name() (SEQATTN_ARG); the reference lists
/// them as fields with their default values.
struct DropoutOptions {
  /// Seed of the layer's random numbers (default: next_seed()).
  SEQATTN_ARG(std::optional<std::uint64_t>, seed, std::nullopt)

  /// The fields with their model-file keys (core/layer_config.hpp).
  template <class Self, class V>
  static void visit_options(Self& o, V&& v) {
    v("seed", o.seed_);
  }
};

/// Inverted dropout in Mode::Train, the identity in Mode::Infer; see the file documentation.
template <class S>
class Dropout final : public Layer<S> {
 public:
  /// Drops each value with probability `rate` in training.
  Dropout(Index in_features, double rate, DropoutOptions options = DropoutOptions())
      : Layer<S>(in_features), rate_(rate), options_(options), rng_(options.seed().value_or(next_seed())) {
    if (!(rate >= 0.0 && rate < 1.0)) detail::throw_config("Dropout: rate must be in [0, 1) but got ", rate);
  }

  Index out_features() const override { return this->in_features(); }
  std::string name() const override { return "dropout"; }
  std::string class_name() const override { return "Dropout"; }
  /// Step masks: position-wise, every step is computed on its own (masked steps never reach a kept one).
  bool supports_step_masks() const override { return true; }
  Config config() const override {
    Config c = Config::object();
    c.set("rate", rate_);
    write_options(c, options_);
    return c;
  }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp).
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader r(config, "Dropout config");
    const double rate = r.read<double>("rate");
    const DropoutOptions options = read_options<DropoutOptions>(r);
    r.finish();
    return std::make_unique<Dropout>(in_features, rate, options);
  }
  std::string describe() const override { return detail::cat("Dropout(rate=", rate_, ")"); }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<Dropout>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const Dropout&>(other); }

  /// The probability of dropping a value.
  double rate() const { return rate_; }
  /// The options the layer was built with.
  const DropoutOptions& options() const { return options_; }
  /// A stream is inference: the identity.
  std::unique_ptr<LayerStream<S>> open_stream(Index, const StreamOptions&) const override {
    return std::make_unique<IdentityStream>();
  }
  /// The 0/1 keep mask m drawn by the last Train forward, shape (B, T, F) (empty before one).
  const Tensor3<S>& keep_mask() const { return keep_; }

 protected:
  /// x (B, T, F) -> y (B, T, F):  Train: m ~ Bernoulli(1 - rate), y = x * m * scale;  Infer: y = x
  void do_forward(const Tensor3<S>& x, const Mask&, Mode mode, Tensor3<S>& y) override {
    auto Y = as_matrix(y);
    if (mode == Mode::Infer) {
      Y = as_matrix(x);
      return;
    }
    ensure_shape(keep_, x.dimension(0), x.dimension(1), x.dimension(2));
    S* m = keep_.data();
    reseed_in_scope(rng_);  // inside a RandomScope (core/random.hpp): the scope's stream
    for (Index i = 0; i < keep_.size(); ++i) m[i] = rng_.uniform() < rate_ ? S(0) : S(1);
    const S scale = S(1.0 / (1.0 - rate_));
    Y.array() = as_matrix(x).array() * as_matrix(keep_).array() * scale;
  }

  /// dy (B, T, F) -> dx (B, T, F):  inverts y = x * m * scale: dx = dy * m * scale  (Infer: dx = dy)
  void do_backward(const Tensor3<S>&, const Mask&, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    auto DX = as_matrix(dx);
    if (this->last_mode() == Mode::Infer) {
      DX = as_matrix(dy);
      return;
    }
    const S scale = S(1.0 / (1.0 - rate_));
    DX.array() = as_matrix(dy).array() * as_matrix(keep_).array() * scale;
  }

 private:
  struct IdentityStream final : PerStepStream<S> {
    void apply(const Tensor3<S>& x, Tensor3<S>& y) override { as_matrix(y) = as_matrix(x); }
  };

  double rate_;
  DropoutOptions options_;
  Rng rng_;
  Tensor3<S> keep_;  // 0/1 mask of the last Train forward
};

}  // namespace seqattn
