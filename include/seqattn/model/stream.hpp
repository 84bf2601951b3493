#pragma once
/// \file
/// Stream\<S>: B independent streams over a trained causal model, run step by step with carried state.
///
/// ```unparsed
///   Stream<float> s = model.stream(B);                  // or Stream<float>(model, B, StreamOptions())
///   const Tensor3<float>& y = s.step(x);                // x (B, n, in_features): the next n >= 1 steps of each
///                                                       // stream -> y (B, n, out_features): their outputs
///   s.reset(b);  s.reset();  s.steps(b);  s.state_bytes();
///
/// ```
/// Exactness: row i of y for stream b is the model's predict (Mode::Infer) over that stream's whole sequence so
/// far, at its step steps(b) + i (for a model that pools time, its pooled output over the prefix ending there),
/// whatever the chunk sizes n; see docs/pages/streaming.md for which layers match bitwise.
/// A chunk of n > 1 steps ("prefill") runs each layer once over all B*n rows where it can.
/// Allocation: a stream stepping with the same n allocates nothing per step (its buffers are sized for B*n rows);
/// a step with another n resizes them once, and a cache that grows (attention without a window) doubles.
///
/// Sharing: a stream only reads the model's weights (no copy). Any number of streams over one model may step
/// at the same time on any threads. The model must outlive its streams and must not be trained or changed while
/// they step; destroying it or assigning another model into it is detected at the next step (UsageError).
/// A stream object serves one thread at a time.
/// The longest sequence a stream can hold: kUnlimitedSteps unless a layer keeps every past step (attention
/// without a window: StreamOptions::max_history) or has a fixed number of positions (PositionEmbedding); a step
/// beyond it throws StreamLimitError and changes nothing.
/// State: state_bytes() counts the carried state; save_state / load_state (io/stream_state.hpp) write and
/// restore it, so a restarted process goes on where it stopped.
/// Threads: a step runs on the calling thread only; denormals are flushed as in forward (core/denormals.hpp).
/// Several inputs (core/stream.hpp): a model with k > 1 inputs (a Graph with a memory input, a
/// TransformerDecoderBlock; a MultiHeadAttention opened with inputs = 2 or 3) steps its input 0; the others are
/// its context, whole sequences fixed while the streams step, given before the first step and whenever they change:
///
/// ```unparsed
///   Stream<float> s(decoder, B);                        // decoder: Graph({{"targets", d}, {"memory", d}}) ...
///   s.set_context({{&memory, &memory_mask}});           // (B, Tm, F) each; what reads only the context runs once
///   s.step(y_prev);                                     // each step attends to the memory's kept steps
///   s.reset(b);  s.set_context(b, {{&memory_b, &mask_b}});   // stream b alone starts over with another memory
/// ```
/// set_context copies what it needs (the cross-attention's keys and values, projected once) and may allocate; it
/// keeps the streams' carried state (reset the streams that start new sequences). The context is not part of
/// state() / save_state: set it again after load_state.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "seqattn/core/denormals.hpp"
#include "seqattn/core/layer.hpp"
#include "seqattn/core/stream.hpp"

namespace seqattn {

/// B streams of a model stepped one step (or a chunk) at a time, with the state they carry; see the file
/// documentation.
template <class S>
class Stream {
 public:
  /// Throws ConfigError naming the first layer of `model` that cannot stream, before any step.
  /// inputs: the number of inputs of the model's call (0: model.min_inputs()); inputs 1 .. inputs - 1 are the context.
  Stream(const Layer<S>& model, Index batch, StreamOptions options = StreamOptions(), Index inputs = 0)
      : model_(&model), options_(options), identity_(model.identity()),
        inputs_(inputs > 0 ? inputs : model.min_inputs()) {
    if (batch <= 0) detail::throw_config("Stream: the number of streams must be positive but got ", batch);
    if (options.max_history() <= 0)
      detail::throw_config("Stream: StreamOptions::max_history must be positive but got ", options.max_history());
    const auto id = identity_.lock();
    generation_ = id ? id->generation : 0;
    root_ = model.open_inputs_stream(batch, options_, inputs_);
    if (root_->steps_all_inputs())
      detail::throw_config("Stream: ", model.describe(), " steps all of its ", inputs_,
                           " inputs together (a merge); a Stream steps one input: put it in a Graph");
    steps_.assign(static_cast<size_t>(batch), 0);
    max_steps_ = root_->max_steps();
  }
  /// Moves the streams.
  Stream(Stream&&) noexcept = default;
  /// Moves the streams.
  Stream& operator=(Stream&&) noexcept = default;
  Stream(const Stream&) = delete;  ///< a stream owns its state; open another one for another sequence set
  Stream& operator=(const Stream&) = delete;

  /// x (B, n, in_features) -> y (B, n, out_features), valid until the next step.
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
    if (inputs_ > 1)
      for (Index b = 0; b < B; ++b)
        if (has_context_.empty() || !has_context_[static_cast<std::size_t>(b)])
          detail::throw_usage("Stream: ", model_->describe(), " takes ", inputs_ - 1,
                              " context input(s) (its inputs 1 .. ", inputs_ - 1,
                              ", e.g. the memory of cross-attention) and stream ", b,
                              " has none: call set_context before the first step");
    ensure_shape(y_, B, n, model_->out_features());
    root_->step(x, steps_, y_);
    for (auto& s : steps_) s += n;
    return y_;
  }

  /// The context: context[i] is the model's input i + 1, (B, Tm_i, input_features(i + 1)) with its mask, for every
  /// stream. ShapeError naming the input for a wrong count, batch or width; the streams' state is kept.
  void set_context(const LayerInputs<S>& context) {
    const detail::FlushDenormalsScope flush_denormals;
    check_model();
    check_context(context, batch());
    root_->set_context(context);
    has_context_.assign(steps_.size(), 1);
  }
  /// One context input: memory (B, Tm, F) masked by `mask`.
  void set_context(const Tensor3<S>& memory, const Mask& mask = Mask()) { set_context({{&memory, &mask}}); }
  /// The context of stream b alone: tensors of batch 1 (a stream that starts a new sequence with another memory,
  /// usually right after reset(b)); the other streams keep theirs. Every stream needs a context before a step.
  void set_context(Index b, const LayerInputs<S>& context) {
    const detail::FlushDenormalsScope flush_denormals;
    check_model();
    check_stream(b);
    check_context(context, 1);
    root_->set_stream_context(b, context);
    if (has_context_.empty()) has_context_.assign(steps_.size(), 0);
    has_context_[static_cast<std::size_t>(b)] = 1;
  }
  /// The context of stream b alone from one memory tensor and its mask.
  void set_context(Index b, const Tensor3<S>& memory, const Mask& mask = Mask()) {
    set_context(b, {{&memory, &mask}});
  }
  /// The number of inputs of the model's call (input 0 steps, the others are the context).
  Index inputs() const { return inputs_; }

  /// Every stream starts a new sequence.
  void reset() {
    for (Index b = 0; b < batch(); ++b) reset(b);
  }
  /// Stream b starts a new sequence; the others go on.
  void reset(Index b) {
    check_stream(b);
    root_->reset(b);
    steps_[static_cast<size_t>(b)] = 0;
  }

  /// The number of streams B.
  Index batch() const { return static_cast<Index>(steps_.size()); }
  /// Steps stream b has seen since it started (or was reset).
  Index steps(Index b) const {
    check_stream(b);
    return steps_[static_cast<size_t>(b)];
  }
  /// The steps each stream has seen.
  const std::vector<Index>& all_steps() const { return steps_; }
  /// The longest sequence a stream can hold (kUnlimitedSteps: no limit).
  Index max_steps() const { return max_steps_; }
  /// The options the stream was opened with.
  const StreamOptions& options() const { return options_; }
  /// The model the streams run (read in place).
  const Layer<S>& model() const { return *model_; }

  /// Bytes of carried state of all B streams now (tensors only; a cache that grows counts its capacity).
  std::size_t state_bytes() const {
    std::size_t bytes = 0;  // state() only lists the tensors (non-const pointers, for load_state): no change
    for (const auto& t : const_cast<Stream*>(this)->state()) bytes += static_cast<std::size_t>(t.tensor->size()) * sizeof(S);
    return bytes;
  }

  /// Every tensor of carried state, named "\<index>.\<layer>.\<name>" (for io/stream_state.hpp).
  StreamStateList<S> state() {
    StreamStateList<S> list;
    root_->state(list, "");
    return list;
  }
  /// Sets the step counts (io/stream_state.hpp, after loading the state tensors).
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
  // ShapeError unless context holds inputs 1 .. inputs_ - 1 of `batch` sequences with the model's widths.
  void check_context(const LayerInputs<S>& context, Index batch) const {
    if (static_cast<Index>(context.size()) != inputs_ - 1)
      detail::throw_shape("Stream: set_context expected ", inputs_ - 1, " context input(s) (inputs 1 .. ",
                          inputs_ - 1, " of ", model_->describe(), ") but got ", context.size());
    for (std::size_t i = 0; i < context.size(); ++i) {
      const Index input = static_cast<Index>(i) + 1;
      if (!context[i].x || !context[i].mask)
        detail::throw_usage("Stream: set_context input ", input, " has no tensor or no mask");
      const Tensor3<S>& x = *context[i].x;
      const Index F = model_->input_features(input, inputs_);
      if (x.dimension(0) != batch || x.dimension(1) <= 0 || (F >= 0 && x.dimension(2) != F))
        detail::throw_shape("Stream: set_context input ", input, " of ", model_->describe(), " expected (", batch,
                            ", steps >= 1, ", F, ") but got ", shape_string(x));
      context[i].mask->check(x.dimension(0), x.dimension(1), detail::cat("Stream: set_context input ", input));
    }
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
  Index inputs_ = 1;
  std::vector<std::uint8_t> has_context_;  // per stream: its context was set (models with several inputs)
  Tensor3<S> y_;
};

}  // namespace seqattn
