#pragma once
/// \file
/// Weight initializers, with Keras' definitions:
///
/// ```unparsed
///   zeros, constant(c), uniform(lo, hi), normal(stddev)
///   glorot_uniform   U(-l, l), l = sqrt(6 / (fan_in + fan_out))                      (Keras default)
///   glorot_normal    truncated normal, stddev sqrt(2 / (fan_in + fan_out)) / 0.87962566103423978
///   he_uniform       U(-l, l), l = sqrt(6 / fan_in)
///   he_normal        truncated normal, stddev sqrt(2 / fan_in) / 0.87962566103423978
///   orthogonal(g)    Keras' Orthogonal (recurrent kernels): for a (rows, cols) matrix, Q of the QR decomposition
///                    of a (max, min) standard-normal matrix with R's diagonal made positive (Keras multiplies
///                    Q's columns by the signs of R's diagonal), transposed when rows < cols, times the gain g:
///                    orthonormal rows or columns
/// ```
/// (0.8796... is the stddev of a unit normal truncated at two standard deviations.)
/// For a (rows, cols) kernel used as y = x W, fan_in = rows and fan_out = cols.

#include <cmath>
#include <string>

#include "seqattn/core/errors.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/core/tensor.hpp"

namespace seqattn {

/// A weight initializer (Keras names and formulas); see the file documentation.
class Init {
 public:
  /// The initializer's formula.
  enum class Kind { Zeros, Constant, Uniform, Normal, GlorotUniform, GlorotNormal, HeUniform, HeNormal, Orthogonal };

  /// Every value 0.
  static Init zeros() { return Init(Kind::Zeros); }
  /// Every value 1.
  static Init ones() { return constant(1.0); }
  /// Every value `value`.
  static Init constant(double value) { return Init(Kind::Constant, value); }
  /// Uniform in [lo, hi).
  static Init uniform(double lo, double hi) { return Init(Kind::Uniform, lo, hi); }
  /// Normal with mean 0 and standard deviation `stddev`.
  static Init normal(double stddev) { return Init(Kind::Normal, stddev); }
  /// Glorot (Xavier) uniform: limit sqrt(6 / (fan_in + fan_out)).
  static Init glorot_uniform() { return Init(Kind::GlorotUniform); }
  /// Glorot (Xavier) normal: truncated normal, stddev from fan_in + fan_out (the file documentation's table).
  static Init glorot_normal() { return Init(Kind::GlorotNormal); }
  /// He uniform: limit sqrt(6 / fan_in).
  static Init he_uniform() { return Init(Kind::HeUniform); }
  /// He normal: truncated normal, stddev from fan_in (the file documentation's table).
  static Init he_normal() { return Init(Kind::HeNormal); }
  /// A (semi-)orthogonal matrix scaled by `gain`.
  static Init orthogonal(double gain = 1.0) { return Init(Kind::Orthogonal, gain); }

  /// Which initializer this is.
  Kind kind() const { return kind_; }
  /// The parameters: constant's value, uniform's lo (a) and hi (b), normal's stddev, orthogonal's gain.
  double a() const { return a_; }
  /// The second parameter: uniform's hi.
  double b() const { return b_; }

  /// Fills every coefficient of `m` (any Eigen dense object) given the fans of the tensor it belongs to.
  template <class Derived>
  void fill(Eigen::DenseBase<Derived>& m, Index fan_in, Index fan_out, Rng& rng) const {
    using S = typename Derived::Scalar;
    if (kind_ == Kind::Orthogonal) return fill_orthogonal(m, rng);
    constexpr double trunc_std = 0.87962566103423978;
    const double fi = static_cast<double>(fan_in > 0 ? fan_in : 1);
    const double fo = static_cast<double>(fan_out > 0 ? fan_out : 1);
    for (Index i = 0; i < m.rows(); ++i)
      for (Index j = 0; j < m.cols(); ++j) {
        double v = 0.0;
        switch (kind_) {
          case Kind::Zeros: v = 0.0; break;
          case Kind::Constant: v = a_; break;
          case Kind::Uniform: v = rng.uniform(a_, b_); break;
          case Kind::Normal: v = rng.normal(0.0, a_); break;
          case Kind::GlorotUniform: {
            const double l = std::sqrt(6.0 / (fi + fo));
            v = rng.uniform(-l, l);
            break;
          }
          case Kind::GlorotNormal: v = rng.truncated_normal(std::sqrt(2.0 / (fi + fo)) / trunc_std); break;
          case Kind::HeUniform: {
            const double l = std::sqrt(6.0 / fi);
            v = rng.uniform(-l, l);
            break;
          }
          case Kind::HeNormal: v = rng.truncated_normal(std::sqrt(2.0 / fi) / trunc_std); break;
          case Kind::Orthogonal: break;  // fill_orthogonal
        }
        m(i, j) = static_cast<S>(v);
      }
  }
  /// fill() for a temporary Eigen expression (a block or a map).
  template <class Derived>
  void fill(Eigen::DenseBase<Derived>&& m, Index fan_in, Index fan_out, Rng& rng) const {
    fill(m, fan_in, fan_out, rng);
  }

  /// The initializer as text: "zeros", "uniform(-0.05, 0.05)".
  std::string to_string() const {
    switch (kind_) {
      case Kind::Zeros: return "zeros";
      case Kind::Constant: return "constant(" + std::to_string(a_) + ")";
      case Kind::Uniform: return "uniform(" + std::to_string(a_) + ", " + std::to_string(b_) + ")";
      case Kind::Normal: return "normal(" + std::to_string(a_) + ")";
      case Kind::GlorotUniform: return "glorot_uniform";
      case Kind::GlorotNormal: return "glorot_normal";
      case Kind::HeUniform: return "he_uniform";
      case Kind::HeNormal: return "he_normal";
      case Kind::Orthogonal: return "orthogonal(" + std::to_string(a_) + ")";
    }
    return "?";
  }

 private:
  // m (rows, cols) = gain * Q, Q (max, min) from the QR of a Gaussian matrix, sign-corrected, transposed if wide.
  template <class Derived>
  void fill_orthogonal(Eigen::DenseBase<Derived>& m, Rng& rng) const {
    using S = typename Derived::Scalar;
    const Index rows = m.rows(), cols = m.cols();
    if (rows == 0 || cols == 0) return;
    const Index tall = rows > cols ? rows : cols, narrow = rows > cols ? cols : rows;
    Eigen::MatrixXd q(tall, narrow);
    for (Index i = 0; i < tall; ++i)
      for (Index j = 0; j < narrow; ++j) q(i, j) = rng.normal();
    // QR by Gram-Schmidt, each column orthogonalized twice (stable): R's diagonal (the norms) is positive, so q
    // is the sign-corrected Q. (Eigen's HouseholderQR gives the same Q up to rounding but warns under -Wall.)
    for (Index j = 0; j < narrow; ++j) {
      for (int pass = 0; pass < 2; ++pass)
        for (Index k = 0; k < j; ++k) q.col(j) -= q.col(k).dot(q.col(j)) * q.col(k);
      q.col(j) /= q.col(j).norm();
    }
    for (Index i = 0; i < rows; ++i)
      for (Index j = 0; j < cols; ++j) m(i, j) = static_cast<S>(a_ * (rows >= cols ? q(i, j) : q(j, i)));
  }

  explicit Init(Kind kind, double a = 0.0, double b = 0.0) : kind_(kind), a_(a), b_(b) {
    if (kind == Kind::Uniform && !(a < b)) detail::throw_config("Init::uniform: expected lo < hi but got ", a, " >= ", b);
    if (kind == Kind::Normal && !(a > 0)) detail::throw_config("Init::normal: expected stddev > 0 but got ", a);
    if (kind == Kind::Orthogonal && !(a > 0)) detail::throw_config("Init::orthogonal: expected gain > 0 but got ", a);
  }
  Kind kind_;
  double a_, b_;
};

}  // namespace seqattn
