#pragma once
/// \file
/// Global pooling over time: x (B, T, F) -> y (B, 1, F). Only the valid steps t \< length_b of each sequence
/// take part; padded steps never change the output and get dx = 0.
///
/// ```unparsed
///   GlobalMaxPool<S>  y[b, f] = max_{t < len} x[b, t, f]   (Keras GlobalMaxPooling1D; the gradient goes to the
///                     first step reaching the maximum)
///   GlobalAvgPool<S>  y[b, f] = sum_{t < len} x[b, t, f] / len   (Keras GlobalAveragePooling1D with a mask)
///   LastStep<S>       y[b, f] = x[b, len - 1, f]   (the last valid step: an RNN's return_sequences=False)
/// ```
/// A sequence of length 0 gives y[b] = 0 and passes no gradient (never NaN).
/// Step masks (holes, left padding; supports_step_masks()): only the kept steps take part: GlobalMaxPool takes the
/// max over the kept steps (the gradient goes to the first kept step reaching it), GlobalAvgPool their mean (summed
/// in step order, divided by the number of kept steps), LastStep the last kept step. Masked steps are never read
/// and get dx = 0; a sequence with no kept step follows the rule for length 0.
/// The output has one step and an empty mask (every sequence valid): out_time = 1, out_mask = Mask().
/// No parameters. GlobalMaxPool shares its samples between set_num_threads() threads (core/threads.hpp).
/// GlobalAvgPool sums the steps in order (x[0] + x[1] + ...), then divides by len: the sum of a prefix is a
/// running sum.
/// Streams (core/stream.hpp; pools_time()): each step outputs the pool of the prefix that ends there, bitwise the
/// forward over that prefix: GlobalMaxPool a running max (state "max" (B, 1, F)), GlobalAvgPool a running sum
/// divided by the steps seen (state "sum" (B, 1, F)), LastStep the step itself (no state).

#include <algorithm>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "seqattn/core/layer.hpp"
#include "seqattn/core/threads.hpp"
#include "seqattn/detail/head_products.hpp"
#include "seqattn/detail/simd.hpp"

namespace seqattn {
namespace detail {

// The shape part common to the global pools: one output step, all valid.
template <class S>
class GlobalPoolBase : public Layer<S> {
 public:
  using Layer<S>::Layer;
  Config config() const override { return Config::object(); }
  Index out_features() const override { return this->in_features(); }
  Index out_time(Index) const override { return 1; }
  Mask out_mask(const Mask&, Index) const override { return Mask(); }
  bool supports_step_masks() const override { return true; }
};

// The stream of a global pool that carries one (B, 1, F) tensor, `acc`: step i of stream b at position
// p = start[b] + i sets it from the step (p == 0) or folds the step into it (Pool::fold(acc, x)), then writes
// Pool::output(acc, p + 1).
template <class S, class Pool>
struct RunningPoolStream final : LayerStream<S> {
  Tensor3<S> acc;  // (B, 1, F)
  const char* name;
  RunningPoolStream(Index batch, Index F, const char* state_name) : name(state_name) { zero_state(acc, batch, 1, F); }
  // x (B, n, F) -> y (B, n, F)
  void step(const Tensor3<S>& x, const std::vector<Index>& start, Tensor3<S>& y) override {
    const Index B = x.dimension(0), n = x.dimension(1);
    ConstMatrixMap<S> X = as_matrix(x);
    MatrixMap<S> Y = as_matrix(y);
    MatrixMap<S> A = as_matrix(acc);  // (B, F)
    for (Index b = 0; b < B; ++b)
      for (Index i = 0; i < n; ++i) {
        const Index p = start[static_cast<size_t>(b)] + i;
        if (p == 0)
          A.row(b) = X.row(b * n + i);
        else
          Pool::fold(A.row(b), X.row(b * n + i));
        Pool::output(A.row(b), p + 1, Y.row(b * n + i));
      }
  }
  void reset(Index b) override { zero_stream(acc, b); }
  void state(StreamStateList<S>& list, const std::string& prefix) override {
    list.push_back(StreamStateTensor<S>{prefix + name, &acc, false, 0});
  }
  bool pools_time() const override { return true; }
};

// top[f] = max_{t < len} X[t, f] and arg[f] = the first t reaching it, X (len, F) row-major, len > 0; a NaN
// never replaces a maximum (the comparison is row > top). The whole SIMD packets of columns, in the column groups
// of the attention tiles (head::for_each_column_group), keep top and the step (as S: exact while len <= 2^digits)
// in registers over the steps; the last F % P columns, and every column without vectorization, take the scalar
// loop. The same selections either way.
template <class S>
void column_max(const S* X, Index len, Index F, S* top, Index* arg) {
  namespace ei = Eigen::internal;
  using Packet = SimdPacket<S>;
  constexpr Index P = kSimdSize<S>;
  const Index vector_columns = P > 1 && len <= (Index(1) << std::numeric_limits<S>::digits) ? F - F % P : 0;
  if constexpr (P > 1)
    head::for_each_column_group<S>(vector_columns, [&](Index f0, auto packets) {
      constexpr int C = decltype(packets)::value;
      Packet best[C], at[C];
      SEQATTN_UNROLL
      for (int c = 0; c < C; ++c) {
        best[c] = ei::ploadu<Packet>(X + f0 + c * P);
        at[c] = ei::pset1<Packet>(S(0));
      }
      for (Index t = 1; t < len; ++t) {
        const Packet step = ei::pset1<Packet>(static_cast<S>(t));
        SEQATTN_UNROLL
        for (int c = 0; c < C; ++c) {
          const Packet row = ei::ploadu<Packet>(X + t * F + f0 + c * P);
          const Packet greater = ei::pcmp_lt(best[c], row);  // the first maximum wins ties
          best[c] = ei::pselect(greater, row, best[c]);
          at[c] = ei::pselect(greater, step, at[c]);
        }
      }
      SEQATTN_UNROLL
      for (int c = 0; c < C; ++c) {
        ei::pstoreu(top + f0 + c * P, best[c]);
        EIGEN_ALIGN_MAX S steps[P];
        ei::pstore(steps, at[c]);
        for (Index i = 0; i < P; ++i) arg[f0 + c * P + i] = static_cast<Index>(steps[i]);
      }
    });
  for (Index f = vector_columns; f < F; ++f) {
    S best = X[f];
    Index at = 0;
    for (Index t = 1; t < len; ++t) {
      const S v = X[t * F + f];
      if (v > best) {
        best = v;
        at = t;
      }
    }
    top[f] = best;
    arg[f] = at;
  }
}

// sum[f] = X[0, f] + X[1, f] + ... + X[len - 1, f] in step order (one chain per column: the sum of a prefix is
// a running sum, bitwise), X (len, F) row-major, len > 0. The whole SIMD packets of columns, in the column groups
// of head::for_each_column_group, keep their sums in registers over the steps; the last F % P columns take the
// scalar loop (the same additions).
template <class S>
void column_sum(const S* X, Index len, Index F, S* sum) {
  namespace ei = Eigen::internal;
  using Packet = SimdPacket<S>;
  constexpr Index P = kSimdSize<S>;
  const Index vector_columns = P > 1 ? F - F % P : 0;
  if constexpr (P > 1)
    head::for_each_column_group<S>(vector_columns, [&](Index f0, auto packets) {
      constexpr int C = decltype(packets)::value;
      Packet acc[C];
      SEQATTN_UNROLL
      for (int c = 0; c < C; ++c) acc[c] = ei::ploadu<Packet>(X + f0 + c * P);
      for (Index t = 1; t < len; ++t) {
        SEQATTN_UNROLL
        for (int c = 0; c < C; ++c) acc[c] = ei::padd(acc[c], ei::ploadu<Packet>(X + t * F + f0 + c * P));
      }
      SEQATTN_UNROLL
      for (int c = 0; c < C; ++c) ei::pstoreu(sum + f0 + c * P, acc[c]);
    });
  for (Index f = vector_columns; f < F; ++f) {
    S acc = X[f];
    for (Index t = 1; t < len; ++t) acc += X[t * F + f];
    sum[f] = acc;
  }
}

}  // namespace detail

/// The maximum over the kept steps of each feature (B, T, F) -> (B, 1, F); see the file documentation.
/// \extends Layer
template <class S>
class GlobalMaxPool final : public detail::GlobalPoolBase<S> {
 public:
  /// Max pooling over time of `in_features` features.
  explicit GlobalMaxPool(Index in_features) : detail::GlobalPoolBase<S>(in_features) {}
  std::string name() const override { return "global_max_pool"; }
  std::string class_name() const override { return "GlobalMaxPool"; }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp): no options.
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader(config, "GlobalMaxPool config").finish();
    return std::make_unique<GlobalMaxPool>(in_features);
  }
  std::string describe() const override { return "GlobalMaxPool()"; }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<GlobalMaxPool>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const GlobalMaxPool&>(other); }
  /// Step of the maximum for each (b, f) of the last forward, -1 for a sequence of length 0. (B, F)
  const Matrix<Index>& argmax() const { return argmax_; }
  /// Running max of the prefix (state "max" (B, 1, F)): the forward's comparisons in the same order.
  std::unique_ptr<LayerStream<S>> open_stream(Index batch, const StreamOptions&) const override {
    return std::make_unique<detail::RunningPoolStream<S, RunningMax>>(batch, this->in_features(), "max");
  }

 protected:
  /// x (B, T, F) -> y (B, 1, F) = max over valid t; argmax (B, F) cached
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    const Index B = x.dimension(0), T = x.dimension(1), F = x.dimension(2);
    ensure_shape(argmax_, B, F);
    MatrixMap<S> Y = as_matrix(y);  // (B, F)
    const bool holes = mask.has_holes();
    // samples are independent: shared by the threads (core/threads.hpp)
    detail::parallel_for(B, detail::parallel_threads(B, double(B) * double(T) * double(F)), [&](Index b) {
      const Index len = mask.length(b, T);
      ConstMatrixMap<S> X = sample_matrix(x, b);
      if (len == 0) {
        Y.row(b).setZero();
        argmax_.row(b).setConstant(-1);
        return;
      }
      if (holes) {  // step mask: the kept steps from the first one, the comparisons of column_max
        const Index t0 = mask.first(b, T);
        Y.row(b) = X.row(t0);
        argmax_.row(b).setConstant(t0);
        for (Index t = t0 + 1; t < len; ++t) {
          if (!mask.valid(b, t, T)) continue;
          for (Index f = 0; f < F; ++f)
            if (X(t, f) > Y(b, f)) {
              Y(b, f) = X(t, f);
              argmax_(b, f) = t;
            }
        }
        return;
      }
      detail::column_max(X.data(), len, F, &Y.coeffRef(b, 0), &argmax_.coeffRef(b, 0));
    });
  }
  /// dy (B, 1, F) -> dx (B, T, F): dx[b, argmax[b, f], f] = dy[b, f], 0 elsewhere (inverts the max)
  void do_backward(const Tensor3<S>&, const Mask&, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const Index B = dx.dimension(0), T = dx.dimension(1), F = dx.dimension(2);
    detail::parallel_for(B, detail::parallel_threads(B, double(B) * double(T) * double(F)), [&](Index b) {
      sample_matrix(dx, b).setZero();
      for (Index f = 0; f < F; ++f)
        if (argmax_(b, f) >= 0) dx.data()[(b * T + argmax_(b, f)) * F + f] = dy.data()[b * F + f];
    });
  }

 private:
  // max[f] = x[f] where x[f] > max[f] (a NaN never replaces a maximum), as column_max.
  struct RunningMax {
    template <class A, class X>
    static void fold(A&& max, const X& x) {
      for (Index f = 0; f < x.size(); ++f)
        if (x(f) > max(f)) max(f) = x(f);
    }
    template <class A, class Y>
    static void output(const A& max, Index, Y&& y) {
      y = max;
    }
  };

  Matrix<Index> argmax_;
};

/// The mean over the kept steps of each feature (B, T, F) -> (B, 1, F); see the file documentation.
/// \extends Layer
template <class S>
class GlobalAvgPool final : public detail::GlobalPoolBase<S> {
 public:
  /// Mean pooling over time of `in_features` features.
  explicit GlobalAvgPool(Index in_features) : detail::GlobalPoolBase<S>(in_features) {}
  std::string name() const override { return "global_avg_pool"; }
  std::string class_name() const override { return "GlobalAvgPool"; }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp): no options.
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader(config, "GlobalAvgPool config").finish();
    return std::make_unique<GlobalAvgPool>(in_features);
  }
  std::string describe() const override { return "GlobalAvgPool()"; }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<GlobalAvgPool>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const GlobalAvgPool&>(other); }
  /// Running sum of the prefix (state "sum" (B, 1, F)) divided by its steps: the forward's sums in the same order.
  std::unique_ptr<LayerStream<S>> open_stream(Index batch, const StreamOptions&) const override {
    return std::make_unique<detail::RunningPoolStream<S, RunningMean>>(batch, this->in_features(), "sum");
  }

 protected:
  /// x (B, T, F) -> y (B, 1, F) = (x[0] + x[1] + ... + x[len - 1]) / len, summed in step order  (0 when len = 0)
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    const Index T = x.dimension(1);
    MatrixMap<S> Y = as_matrix(y);  // (B, F)
    const bool holes = mask.has_holes();
    for (Index b = 0; b < x.dimension(0); ++b) {
      const Index len = mask.length(b, T);
      if (len == 0) {
        Y.row(b).setZero();
        continue;
      }
      if (holes) {  // step mask: the kept steps in step order, divided by their number
        ConstMatrixMap<S> X = sample_matrix(x, b);
        const Index t0 = mask.first(b, T);
        Y.row(b) = X.row(t0);
        for (Index t = t0 + 1; t < len; ++t)
          if (mask.valid(b, t, T)) RunningMean::fold(Y.row(b), X.row(t));
        RunningMean::output(Y.row(b), mask.count(b, T), Y.row(b));
        continue;
      }
      detail::column_sum(sample_matrix(x, b).data(), len, x.dimension(2), &Y.coeffRef(b, 0));
      RunningMean::output(Y.row(b), len, Y.row(b));
    }
  }
  /// dy (B, 1, F) -> dx[b, t] = dy[b] / len for valid t, 0 for padded t (inverts the mean)
  void do_backward(const Tensor3<S>&, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    const Index T = dx.dimension(1);
    ConstMatrixMap<S> DY = as_matrix(dy);  // (B, F)
    const bool holes = mask.has_holes();
    for (Index b = 0; b < dx.dimension(0); ++b) {
      const Index len = mask.length(b, T);
      MatrixMap<S> DX = sample_matrix(dx, b);
      if (holes) {  // step mask: dy / count at the kept steps, 0 at the masked ones
        const Index count = mask.count(b, T);
        for (Index t = 0; t < T; ++t)
          if (mask.valid(b, t, T))
            DX.row(t) = DY.row(b) / static_cast<S>(count);
          else
            DX.row(t).setZero();
        continue;
      }
      for (Index t = 0; t < len; ++t) DX.row(t) = DY.row(b) / static_cast<S>(len);
      DX.bottomRows(T - len).setZero();
    }
  }

 private:
  // sum += x (the additions of detail::column_sum); the mean of `count` steps is sum / count (forward and stream).
  struct RunningMean {
    template <class A, class X>
    static void fold(A&& sum, const X& x) {
      sum += x;
    }
    template <class A, class Y>
    static void output(const A& sum, Index count, Y&& y) {
      y = sum / static_cast<S>(count);
    }
  };
};

/// The last kept step of each sequence (B, T, F) -> (B, 1, F); see the file documentation.
/// \extends Layer
template <class S>
class LastStep final : public detail::GlobalPoolBase<S> {
 public:
  /// The last kept step of inputs of `in_features` features.
  explicit LastStep(Index in_features) : detail::GlobalPoolBase<S>(in_features) {}
  std::string name() const override { return "last_step"; }
  std::string class_name() const override { return "LastStep"; }
  /// Rebuilds the layer from config() (model files, model/layer_registry.hpp): no options.
  static std::unique_ptr<Layer<S>> from_config(Index in_features, const Config& config) {
    ConfigReader(config, "LastStep config").finish();
    return std::make_unique<LastStep>(in_features);
  }
  std::string describe() const override { return "LastStep()"; }
  std::unique_ptr<Layer<S>> clone() const override { return std::make_unique<LastStep>(*this); }
  void copy_from(const Layer<S>& other) override { *this = static_cast<const LastStep&>(other); }
  /// The last step of a prefix is the step itself: y = x, no state (pools_time, and per step).
  std::unique_ptr<LayerStream<S>> open_stream(Index, const StreamOptions&) const override {
    return std::make_unique<LastStepStream>();
  }

 protected:
  /// x (B, T, F) -> y (B, 1, F) = x[b, len - 1]  (0 when len = 0)
  void do_forward(const Tensor3<S>& x, const Mask& mask, Mode, Tensor3<S>& y) override {
    const Index T = x.dimension(1);
    MatrixMap<S> Y = as_matrix(y);  // (B, F)
    for (Index b = 0; b < x.dimension(0); ++b) {
      const Index len = mask.length(b, T);
      if (len == 0)
        Y.row(b).setZero();
      else
        Y.row(b) = sample_matrix(x, b).row(len - 1);
    }
  }
  /// dy (B, 1, F) -> dx[b, len - 1] = dy[b], 0 elsewhere (inverts the selection)
  void do_backward(const Tensor3<S>&, const Mask& mask, const Tensor3<S>& dy, Tensor3<S>& dx) override {
    dx.setZero();
    const Index T = dx.dimension(1);
    ConstMatrixMap<S> DY = as_matrix(dy);
    for (Index b = 0; b < dx.dimension(0); ++b) {
      const Index len = mask.length(b, T);
      if (len > 0) sample_matrix(dx, b).row(len - 1) = DY.row(b);
    }
  }

 private:
  struct LastStepStream final : PerStepStream<S> {
    void apply(const Tensor3<S>& x, Tensor3<S>& y) override { as_matrix(y) = as_matrix(x); }  // (B*n, F)
    bool pools_time() const override { return true; }
  };
};

}  // namespace seqattn
