#pragma once
// Param<S>: a view of one trainable tensor (or saved buffer) owned by a layer: its name, a pointer to the
// values, a pointer to the gradient (null for buffers) and its shape. Views stay valid while the layer
// lives and its shapes do not change. Names follow Keras ("W", "b", "gamma"); Sequential prefixes the
// layer index and name: "3.multi_head_attention.Wq".

#include <numeric>
#include <string>
#include <vector>

#include "seqattn/core/tensor.hpp"

namespace seqattn {

template <class S>
struct Param {
  std::string name;
  S* value = nullptr;
  S* grad = nullptr;  // null for buffers (not trained)
  std::vector<Index> shape;

  Index size() const {
    return std::accumulate(shape.begin(), shape.end(), Index{1}, [](Index a, Index b) { return a * b; });
  }
  Eigen::Map<Vector<S>> values() const { return Eigen::Map<Vector<S>>(value, size()); }
  Eigen::Map<Vector<S>> grads() const { return Eigen::Map<Vector<S>>(grad, size()); }
  std::string shape_string() const {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
  }
};

template <class S>
using ParamList = std::vector<Param<S>>;

// Helpers for layers: a matrix parameter has shape (rows, cols), a vector parameter (n).
template <class S>
Param<S> matrix_param(std::string name, Matrix<S>& value, Matrix<S>* grad) {
  return {std::move(name), value.data(), grad ? grad->data() : nullptr, {value.rows(), value.cols()}};
}
template <class S>
Param<S> vector_param(std::string name, Vector<S>& value, Vector<S>* grad) {
  return {std::move(name), value.data(), grad ? grad->data() : nullptr, {value.size()}};
}

template <class S>
Index count_values(const ParamList<S>& params) {
  Index n = 0;
  for (const auto& p : params) n += p.size();
  return n;
}

}  // namespace seqattn
