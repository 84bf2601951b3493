#pragma once
// Stream<S>: B independent streams over a trained causal model, run step by step with carried state.
//
//   Stream<float> s = model.stream(B);                  // or Stream<float>(model, B, StreamOptions())
//   const Tensor3<float>& y = s.step(x);                // x (B, n, in_features): the next n >= 1 steps of each
//                                                       // stream -> y (B, n, out_features): their outputs
//   s.reset(b);  s.reset();  s.steps(b);  s.state_bytes();
//
// Exactness: row i of y for stream b is the model's predict (Mode::Infer) over that stream's whole sequence so
// far, at its step steps(b) + i (for a model that pools time, its pooled output over the prefix ending there),
// whatever the chunk sizes n; see the README's Streaming section for which layers match bitwise.
// A chunk of n > 1 steps ("prefill") runs each layer once over all B*n rows where it can.
// Allocation: a stream stepping with the same n allocates nothing per step (its buffers are sized for B*n rows);
// a step with another n resizes them once, and a cache that grows (attention without a window) doubles.
//
// Sharing: a stream only reads the model's weights (no copy). Any number of streams over one model may step
// at the same time on any threads. The model must outlive its streams and must not be trained or changed while
// they step; destroying it or assigning another model into it is detected at the next step (UsageError).
// A stream object serves one thread at a time.
// The longest sequence a stream can hold: kUnlimitedSteps unless a layer keeps every past step (attention
// without a window: StreamOptions::max_history) or has a fixed number of positions (PositionEmbedding); a step
// beyond it throws StreamLimitError and changes nothing.
// State: state_bytes() counts the carried state; save_state / load_state (io/stream_state.hpp) write and
// restore it, so a restarted process goes on where it stopped.
// Threads: a step runs on the calling thread only; denormals are flushed as in forward (core/denormals.hpp).

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/denormals.hpp"
#include "seqattn/core/layer.hpp"
#include "seqattn/core/stream.hpp"

namespace seqattn {

template <class S>
class Stream {
 public:
  // Throws ConfigError naming the first layer of `model` that cannot stream, before any step.
  Stream(const Layer<S>& model, Index batch, StreamOptions options = StreamOptions())
      : model_(&model), options_(options), identity_(model.identity()) {
    if (batch <= 0) detail::throw_config("Stream: the number of streams must be positive but got ", batch);
    if (options.max_history() <= 0)
      detail::throw_config("Stream: StreamOptions::max_history must be positive but got ", options.max_history());
    const auto id = identity_.lock();
    generation_ = id ? id->generation : 0;
    root_ = model.open_stream(batch, options_);
    steps_.assign(static_cast<size_t>(batch), 0);
    max_steps_ = root_->max_steps();
  }
  Stream(Stream&&) noexcept = default;
  Stream& operator=(Stream&&) noexcept = default;
  Stream(const Stream&) = delete;  // a stream owns its state; open another one for another sequence set
  Stream& operator=(const Stream&) = delete;

  // x (B, n, in_features) -> y (B, n, out_features), valid until the next step.
  const Tensor3<S>& step(const Tensor3<S>& x) {
    const detail::FlushDenormalsScope flush_denormals;
    check_model();
    const Index B = batch(), n = x.dimension(1);
    if (x.dimension(0) != B || n <= 0 || x.dimension(2) != model_->in_features())
      detail::throw_shape("Stream: step expected x of shape (", B, ", n >= 1, ", model_->in_features(), ") but got ",
                          shape_string(x));
    for (Index b = 0; b < B; ++b)
      if (n > max_steps_ - steps_[static_cast<size_t>(b)])
        throw StreamLimitError(detail::cat(
            "Stream: stream ", b, " has seen ", steps_[static_cast<size_t>(b)], " steps and a step of ", n,
            " more would pass the longest sequence the model can hold in a stream, ", max_steps_,
            " steps (StreamOptions::max_history for attention without a window, max_len of a PositionEmbedding); "
            "reset(",
            b, ") the stream, or give the attention layers a window"));
    ensure_shape(y_, B, n, model_->out_features());
    root_->step(x, steps_, y_);
    for (auto& s : steps_) s += n;
    return y_;
  }

  // Every stream starts a new sequence.
  void reset() {
    for (Index b = 0; b < batch(); ++b) reset(b);
  }
  // Stream b starts a new sequence; the others go on.
  void reset(Index b) {
    check_stream(b);
    root_->reset(b);
    steps_[static_cast<size_t>(b)] = 0;
  }

  Index batch() const { return static_cast<Index>(steps_.size()); }
  // Steps stream b has seen since it started (or was reset).
  Index steps(Index b) const {
    check_stream(b);
    return steps_[static_cast<size_t>(b)];
  }
  const std::vector<Index>& all_steps() const { return steps_; }
  // The longest sequence a stream can hold (kUnlimitedSteps: no limit).
  Index max_steps() const { return max_steps_; }
  const StreamOptions& options() const { return options_; }
  const Layer<S>& model() const { return *model_; }

  // Bytes of carried state of all B streams now (tensors only; a cache that grows counts its capacity).
  std::size_t state_bytes() const {
    std::size_t bytes = 0;  // state() only lists the tensors (non-const pointers, for load_state): no change
    for (const auto& t : const_cast<Stream*>(this)->state()) bytes += static_cast<std::size_t>(t.tensor->size()) * sizeof(S);
    return bytes;
  }

  // Every tensor of carried state, named "<index>.<layer>.<name>" (for io/stream_state.hpp).
  StreamStateList<S> state() {
    StreamStateList<S> list;
    root_->state(list, "");
    return list;
  }
  // Sets the step counts (io/stream_state.hpp, after loading the state tensors).
  void set_steps(const std::vector<Index>& steps) {
    if (static_cast<Index>(steps.size()) != batch())
      detail::throw_shape("Stream: set_steps expected ", batch(), " step counts but got ", steps.size());
    for (Index s : steps)
      if (s < 0 || s > max_steps_)
        detail::throw_shape("Stream: set_steps expected step counts in [0, ", max_steps_, "] but got ", s);
    steps_ = steps;
  }

 private:
  void check_model() const {
    const auto id = identity_.lock();
    if (!id) detail::throw_usage("Stream: its model no longer exists (it was destroyed); open a new stream");
    if (id->generation != generation_)
      detail::throw_usage("Stream: its model ", model_->describe(),
                          " was assigned to since the stream was opened (its layers may have changed); open a new "
                          "stream");
  }
  void check_stream(Index b) const {
    if (b < 0 || b >= batch())
      detail::throw_shape("Stream: stream index ", b, " out of range (the stream has ", batch(), " streams)");
  }

  const Layer<S>* model_;
  StreamOptions options_;
  std::weak_ptr<const LayerIdentity> identity_;
  std::uint64_t generation_ = 0;
  std::unique_ptr<LayerStream<S>> root_;
  std::vector<Index> steps_;
  Index max_steps_ = kUnlimitedSteps;
  Tensor3<S> y_;
};

}  // namespace seqattn
