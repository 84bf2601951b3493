#pragma once
/// \file
/// SEQATTN_ARG declares one option of an options struct with a chainable setter and a getter, as the
/// PyTorch C++ API does:  DenseOptions().activation(Activation::ReLU).use_bias(false)

/// Declares option `name` of type `Type` with default `...`: a chainable setter name(value) and a getter
/// name() (see the file documentation).
#define SEQATTN_ARG(Type, name, ...)    \
 public:                                \
  auto& name(const Type& new_value) {   \
    name##_ = new_value;                \
    return *this;                       \
  }                                     \
  const Type& name() const { return name##_; } \
                                        \
 private:                               \
  Type name##_ = __VA_ARGS__;           \
                                        \
 public:
