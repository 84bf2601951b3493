#pragma once
/// \file
/// Tensor and matrix aliases. Activations are Tensor3\<S> with shape (batch, time, features), row-major, so
/// features are contiguous and a (B, T, F) tensor is a (B*T, F) row-major matrix without a copy.
/// Compute goes through Eigen::Map of row-major matrices (see as_matrix); Eigen::Tensor is storage only.

#include <unsupported/Eigen/CXX11/Tensor>

#include <Eigen/Core>
#include <string>

#include "seqattn/core/config.hpp"
#include "seqattn/core/errors.hpp"

namespace seqattn {

/// The activations of a batch: (B, T, F) in row-major order (features contiguous).
template <class S>
using Tensor3 = Eigen::Tensor<S, 3, Eigen::RowMajor>;

/// A row-major dynamic matrix (weights; a (B*T, F) view of activations).
template <class S>
using Matrix = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// A dynamic column vector (biases).
template <class S>
using Vector = Eigen::Matrix<S, Eigen::Dynamic, 1>;

/// A dynamic row vector.
template <class S>
using RowVector = Eigen::Matrix<S, 1, Eigen::Dynamic>;

/// A matrix view of existing storage.
template <class S>
using MatrixMap = Eigen::Map<Matrix<S>>;

/// A read-only matrix view of existing storage.
template <class S>
using ConstMatrixMap = Eigen::Map<const Matrix<S>>;

/// (B, T, F) tensor viewed as a (B*T, F) matrix.
template <class S>
MatrixMap<S> as_matrix(Tensor3<S>& x) {
  return MatrixMap<S>(x.data(), x.dimension(0) * x.dimension(1), x.dimension(2));
}
/// A (B, T, F) tensor viewed as a read-only (B*T, F) matrix.
template <class S>
ConstMatrixMap<S> as_matrix(const Tensor3<S>& x) {
  return ConstMatrixMap<S>(x.data(), x.dimension(0) * x.dimension(1), x.dimension(2));
}

/// Sample b of a (B, T, F) tensor viewed as a (T, F) matrix.
template <class S>
MatrixMap<S> sample_matrix(Tensor3<S>& x, Index b) {
  const Index T = x.dimension(1), F = x.dimension(2);
  return MatrixMap<S>(x.data() + b * T * F, T, F);
}
/// Sample b of a (B, T, F) tensor viewed as a read-only (T, F) matrix.
template <class S>
ConstMatrixMap<S> sample_matrix(const Tensor3<S>& x, Index b) {
  const Index T = x.dimension(1), F = x.dimension(2);
  return ConstMatrixMap<S>(x.data() + b * T * F, T, F);
}

/// Resizes only when the shape changes, so a steady loop allocates nothing.
template <class S>
void ensure_shape(Tensor3<S>& x, Index B, Index T, Index F) {
  if (x.dimension(0) != B || x.dimension(1) != T || x.dimension(2) != F) x.resize(B, T, F);
}
/// Resizes a matrix only when the shape changes.
template <class S>
void ensure_shape(Matrix<S>& m, Index rows, Index cols) {
  if (m.rows() != rows || m.cols() != cols) m.resize(rows, cols);
}
/// Resizes a vector only when the size changes.
template <class S>
void ensure_shape(Vector<S>& v, Index n) {
  if (v.size() != n) v.resize(n);
}

/// Whether two tensors have the same dimensions.
template <class S>
bool same_shape(const Tensor3<S>& a, const Tensor3<S>& b) {
  return a.dimensions() == b.dimensions();
}

/// "(2, 5, 8)"; a negative size prints as None (unknown), as Keras does.
inline std::string shape_string(Index B, Index T, Index F) {
  auto one = [](Index v) { return v < 0 ? std::string("None") : std::to_string(v); };
  return "(" + one(B) + ", " + one(T) + ", " + one(F) + ")";
}
/// The tensor's shape as text: "(2, 5, 8)".
template <class S>
std::string shape_string(const Tensor3<S>& x) {
  return shape_string(x.dimension(0), x.dimension(1), x.dimension(2));
}

}  // namespace seqattn
