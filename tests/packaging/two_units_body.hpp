#pragma once
// The body both translation units compile (each gets its own copy of every template instantiation).

#include <seqattn/seqattn.hpp>

#include "two_units.hpp"

namespace {

template <class S>
double dense_sum(std::string& describe) {
  using namespace seqattn;
  Dense<S> dense(3, 4, DenseOptions().activation(Activation::Tanh).seed(5));
  ActivationLayer<S> relu(4, Activation::ReLU);
  Tensor3<S> x(2, 3, 3);
  for (Index i = 0; i < x.size(); ++i) x.data()[i] = S(0.1) * static_cast<S>(i % 7) - S(0.3);
  const Mask mask = Mask::from_lengths({3, 1});
  const Tensor3<S>& h = dense.forward(x, mask, Mode::Train);
  const Tensor3<S>& y = relu.forward(h, mask, Mode::Train);
  Tensor3<S> dy(y.dimensions());
  dy.setConstant(S(1));
  const Tensor3<S>& dh = relu.backward(h, mask, dy);
  const Tensor3<S>& dx = dense.backward(x, mask, dh);
  double sum = 0;
  for (Index i = 0; i < y.size(); ++i) sum += static_cast<double>(y.data()[i]);
  for (Index i = 0; i < dx.size(); ++i) sum += static_cast<double>(dx.data()[i]);
  for (const auto& p : dense.params()) sum += static_cast<double>(p.grads().sum());
  describe += dense.describe() + " " + relu.describe() + " ";
  return sum;
}

UnitResult run_unit_body() {
  UnitResult r;
  r.dense_float = dense_sum<float>(r.describe);
  r.dense_double = dense_sum<double>(r.describe);
  r.seed = seqattn::next_seed();
  return r;
}

}  // namespace
