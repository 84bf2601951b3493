#pragma once
/// \file
/// Streaming: a causal layer run one step (or a chunk of steps) at a time, with the state it carries between
/// steps. This is the layer contract's part; the user-facing object is Stream\<S> (model/stream.hpp).
///
/// A layer that can stream overrides (core/layer.hpp)
///
/// ```unparsed
///   std::unique_ptr<LayerStream<S>> open_stream(Index batch, const StreamOptions& options) const
/// ```
/// and returns its stream form for `batch` independent streams. A LayerStream reads its layer's weights in place
/// (never copies or writes them; the layer must outlive it and must not be trained while it steps) and owns every
/// value it carries from one step to the next:
///
/// ```unparsed
///   step(x, start, y)   x (B, n, in_features): the next n >= 1 steps of each of the B streams; start[b]: how many
///                       steps stream b has seen before them (its position). Writes y (B, n, out_features) (sized
///                       by the caller): the rows start[b] .. start[b] + n - 1 of the layer's Mode::Infer forward
///                       over stream b's whole sequence so far. A layer that pools time (out_time(T) == 1: global
///                       pooling, LastStep, SeqWeightedAttention, an LSTM without return_sequences) writes, for
///                       each step, its output over the prefix that ends at that step.
///   reset(b)            stream b starts a new sequence: everything it carries is forgotten (its next step has
///                       start[b] == 0).
///   state(list)         appends every tensor of carried state, named like parameters ("2.lstm.h"), for
///                       state_bytes() and save_state / load_state (io/stream_state.hpp). Each is (B, rows, cols).
///   max_steps()         the longest sequence the stream can hold (kUnlimitedSteps when its memory does not grow
///                       with the steps): an attention layer without a window keeps every past step, up to
///                       StreamOptions::max_history; PositionEmbedding has max_len positions.
///   per_step()          true when each output row depends on that input row only (Dense, norms, activations);
///   pools_time()        true for the layers that pool time (above). Sequential uses both: only per-step layers
///                       may follow a pooling layer in a stream.
/// ```
/// A layer that cannot stream (it reads later steps, or one of its options does) keeps Layer's default
/// open_stream, which throws ConfigError naming the layer and why; Sequential adds the layer's index.
/// step() may allocate only when n or the state's capacity grows; a steady stream allocates nothing.
///
/// Several inputs (core/layer.hpp, "Several inputs"): Layer::open_inputs_stream(B, options, k) opens the stream of
/// a call with k inputs (k == 1: open_stream). It streams in one of two ways:
///
/// ```unparsed
///   context      (the default) input 0 steps; inputs 1 .. k-1 are the stream's CONTEXT, whole sequences fixed
///                while the streams step (the memory of cross-attention: MultiHeadAttention with 2 or 3 inputs,
///                TransformerDecoderBlock). set_context(context) (context[i] is input i + 1, (B, Tm, F) with its
///                mask) must come before the first step and may come again at any time (a new memory: the carried
///                state is kept, reset the streams that start new sequences); set_stream_context(b, context) sets
///                stream b's alone (batch-1 tensors); the stream copies what it needs (the
///                cross-attention projects the keys and values once). context_inputs() says how many it takes. The
///                context is not carried state: after load_state, set it again.
///   all inputs   steps_all_inputs(): every input steps together, row for row (the merges: Merge, Concatenate);
///                step_inputs({&x0, &x1, ...}, start, y), each (B, n, F_i).
/// ```
/// A graph (model/graph.hpp) streams its input 0; its other inputs are the context (nodes that read only the
/// context run once per set_context).

#include <algorithm>
#include <cstddef>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/layer_inputs.hpp"
#include "seqattn/core/options.hpp"
#include "seqattn/core/tensor.hpp"

namespace seqattn {

/// LayerStream::max_steps() of a stream whose memory does not grow with the steps.
inline constexpr Index kUnlimitedSteps = std::numeric_limits<Index>::max();

/// Options of Layer::open_stream and Stream\<S> (model/stream.hpp).
struct StreamOptions {
  /// The longest history a stream may hold in layers whose memory grows with every step (SeqSelfAttention
  /// without attention_width, MultiHeadAttention without attention_window): a step beyond it throws
  /// StreamLimitError (reset the stream, or give the layer a window). Memory then grows by doubling up to
  /// (B, max_history, features) per cache.
  SEQATTN_ARG(Index, max_history, 8192)
};

/// A step that would take a stream past the longest sequence its model can hold (StreamOptions::max_history,
/// PositionEmbedding's max_len). The stream is unchanged.
class StreamLimitError : public UsageError {
 public:
  /// Constructs the error with its message (as UsageError).
  using UsageError::UsageError;
};

/// One tensor of carried state: (B, rows, cols). `grows`: its rows are a capacity that grows with the steps
/// (a key cache), so a loaded state may have another number of rows, at most max_rows.
template <class S>
struct StreamStateTensor {
  /// The state's name, like a parameter's ("2.lstm.h").
  std::string name;
  /// The tensor inside the stream (B, rows, cols).
  Tensor3<S>* tensor = nullptr;
  /// True when rows is a capacity that grows with the steps.
  bool grows = false;
  /// The most rows a loaded state may have (when it grows).
  Index max_rows = 0;
};

/// The carried state of a stream, as state() appends it.
template <class S>
using StreamStateList = std::vector<StreamStateTensor<S>>;

/// The stream form of a layer: B streams stepped with the state they carry; see the file documentation for the
/// step, reset, state and context contract.
template <class S>
class LayerStream {
 public:
  virtual ~LayerStream() = default;
  /// x (B, n, in_features), start[b] = steps of stream b before these -> y (B, n, out_features)
  virtual void step(const Tensor3<S>& x, const std::vector<Index>& start, Tensor3<S>& y) = 0;
  /// Stream b starts a new sequence: forgets everything it carries.
  virtual void reset(Index /*b*/) {}
  /// Appends every tensor of carried state, its name prefixed with `prefix`.
  virtual void state(StreamStateList<S>& /*list*/, const std::string& /*prefix*/) {}
  /// The longest sequence the stream can hold (kUnlimitedSteps when its memory does not grow).
  virtual Index max_steps() const { return kUnlimitedSteps; }
  /// True when each output row depends on its input row only.
  virtual bool per_step() const { return false; }
  /// True for the layers that pool time (out_time(T) == 1).
  virtual bool pools_time() const { return false; }

  /// Several inputs (above): the context inputs 1 .. k-1 (context[i] is input i + 1) for every stream.
  virtual void set_context(const LayerInputs<S>& /*context*/) {
    detail::throw_usage("set_context: this stream takes no context (one input, or every input steps)");
  }
  /// The context of stream b only, as tensors of batch 1 (a stream that starts a new sequence with another memory;
  /// the other streams keep theirs).
  virtual void set_stream_context(Index /*b*/, const LayerInputs<S>& /*context*/) {
    detail::throw_usage("set_context: this stream takes no context (one input, or every input steps)");
  }
  /// How many context inputs set_context takes (0: none).
  virtual Index context_inputs() const { return 0; }
  /// True when every input steps together (the merges), through step_inputs; false: input 0 steps.
  virtual bool steps_all_inputs() const { return false; }
  /// Merges: xs[i] (B, n, F_i) is input i's next n steps -> y (B, n, out_features); a stream that steps one input
  /// takes exactly one (step()).
  virtual void step_inputs(const std::vector<const Tensor3<S>*>& xs, const std::vector<Index>& start, Tensor3<S>& y) {
    if (xs.size() != 1)
      detail::throw_usage("step_inputs: this stream steps one input (its other inputs are its context) but got ",
                          xs.size());
    step(*xs[0], start, y);
  }
};

/// A stream whose output row depends on its input row only: step() is apply() over all B*n rows.
template <class S>
class PerStepStream : public LayerStream<S> {
 public:
  void step(const Tensor3<S>& x, const std::vector<Index>&, Tensor3<S>& y) final { apply(x, y); }
  bool per_step() const final { return true; }

 protected:
  /// x (B, n, in) -> y (B, n, out), row by row
  virtual void apply(const Tensor3<S>& x, Tensor3<S>& y) = 0;
};

namespace detail {

// The state tensor `t` of a stream: rows for every stream b, zero (a fresh stream).
template <class S>
void zero_state(Tensor3<S>& t, Index B, Index rows, Index cols) {
  t.resize(B, rows, cols);
  t.setZero();
}

// Zeroes the block of stream b in a (B, rows, cols) state tensor.
template <class S>
void zero_stream(Tensor3<S>& t, Index b) {
  const Index block = t.dimension(1) * t.dimension(2);
  std::fill(t.data() + b * block, t.data() + (b + 1) * block, S(0));
}

}  // namespace detail

}  // namespace seqattn
