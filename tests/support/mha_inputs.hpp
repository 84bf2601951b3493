#pragma once
// The inputs, calls and finite-difference check shared by the MultiHeadAttention option tests
// (test_multi_head_attention_options, _qkv_dropout, _value_input):
//   MhaCall                 which call: self-attention forward(xq, mq), cross-attention forward(xq, mq, xkv, mkv),
//                           or with separate values forward(xq, mq, xk, xv, mkv)
//   mha_inputs(call, ...)   3 sequences of 5 queries (6 features, seed 1) and, in cross-attention, 4 keys
//                           (key_features, seed 2) and values (value_features, seed 3; the keys unless separate);
//                           random step masks (seeds 3, 4) or lengths; dy (out_features, seed 5)
//   mha_forward / mha_backward   the call of `in.call` (backward: backward or backward_cross)
//   check_mha_gradients(mha, in, forward, input_grads)   finite differences of L = sum(y * dy), y = forward(),
//                           w.r.t. xq, xk (cross), xv (separate values) and every parameter; input_grads (optional)
//                           receives the analytic gradients checked, in that order
//   bitwise_equal(a, b, n)  n doubles equal bit for bit
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "seqattn/layers/multi_head_attention.hpp"
#include "seqattn/testing/gradient_check.hpp"
#include "support/step_masks.hpp"

namespace seqattn::testing {

enum class MhaCall { Self, Cross, CrossSeparateValues };

struct MhaInputs {
  MhaCall call = MhaCall::Self;
  Tensor3<double> xq, xk, xv, dy;  // self-attention: xk = xv = xq; cross-attention without separate values: xv = xk
  Mask mq, mkv;                    // self-attention: mkv = mq
};

inline MhaInputs mha_inputs(MhaCall call, bool steps, Index out_features, Index key_features = 5,
                            Index value_features = 3, const std::vector<Index>& query_lengths = {5, 3, 1}) {
  MhaInputs in;
  in.call = call;
  const bool cross = call != MhaCall::Self;
  const Index B = 3, Tq = 5, Tk = cross ? 4 : 5;
  in.xq = random_tensor(B, Tq, 6, 1);
  in.xk = cross ? random_tensor(B, Tk, key_features, 2) : in.xq;
  in.xv = call == MhaCall::CrossSeparateValues ? random_tensor(B, Tk, value_features, 3) : in.xk;
  in.mq = steps ? random_step_mask(B, Tq, 3) : Mask::from_lengths(query_lengths);
  in.mkv = cross ? (steps ? random_step_mask(B, Tk, 4) : Mask::from_lengths({4, 2, 3})) : in.mq;
  in.dy = random_tensor(B, Tq, out_features, 5);
  return in;
}

inline const Tensor3<double>& mha_forward(MultiHeadAttention<double>& mha, const MhaInputs& in, Mode mode) {
  if (in.call == MhaCall::CrossSeparateValues) return mha.forward(in.xq, in.mq, in.xk, in.xv, in.mkv, mode);
  if (in.call == MhaCall::Cross) return mha.forward(in.xq, in.mq, in.xk, in.mkv, mode);
  return mha.forward(in.xq, in.mq, mode);
}

inline const Tensor3<double>& mha_backward(MultiHeadAttention<double>& mha, const MhaInputs& in,
                                           const Tensor3<double>& dy) {
  if (in.call == MhaCall::CrossSeparateValues) return mha.backward_cross(in.xq, in.mq, in.xk, in.xv, in.mkv, dy);
  if (in.call == MhaCall::Cross) return mha.backward_cross(in.xq, in.mq, in.xk, in.mkv, dy);
  return mha.backward(in.xq, in.mq, dy);
}

// forward() runs the call on `in` (the test's mode and dropout seed); `in` is perturbed in place and restored.
inline GradCheckResult check_mha_gradients(MultiHeadAttention<double>& mha, MhaInputs& in,
                                           const std::function<const Tensor3<double>&()>& forward,
                                           std::vector<Tensor3<double>>* input_grads = nullptr) {
  auto loss = [&]() {
    const Tensor3<double>& y = forward();
    double l = 0;
    for (Index i = 0; i < y.size(); ++i) l += y.data()[i] * in.dy.data()[i];
    return l;
  };
  loss();
  mha.zero_grad();
  const Tensor3<double> dxq = mha_backward(mha, in, in.dy);
  const bool cross = in.call != MhaCall::Self, separate = in.call == MhaCall::CrossSeparateValues;
  const Tensor3<double> dxk = cross ? mha.key_input_grad() : Tensor3<double>();
  const Tensor3<double> dxv = separate ? mha.value_input_grad() : Tensor3<double>();
  ParamList<double> params = mha.params();
  std::vector<std::vector<double>> grads;
  for (const auto& p : params) grads.emplace_back(p.grad, p.grad + p.size());
  std::vector<GradTarget> targets{{"xq", in.xq.data(), dxq.data(), in.xq.size()}};
  if (cross) targets.push_back({"xk", in.xk.data(), dxk.data(), in.xk.size()});
  if (separate) targets.push_back({"xv", in.xv.data(), dxv.data(), in.xv.size()});
  for (size_t k = 0; k < params.size(); ++k)
    targets.push_back({params[k].name, params[k].value, grads[k].data(), params[k].size()});
  if (input_grads) {
    *input_grads = {dxq};
    if (cross) input_grads->push_back(dxk);
    if (separate) input_grads->push_back(dxv);
  }
  return check_gradients(loss, targets);
}

inline bool bitwise_equal(const double* a, const double* b, Index n) {
  return n == 0 || std::memcmp(a, b, sizeof(double) * static_cast<size_t>(n)) == 0;
}

}  // namespace seqattn::testing
