#pragma once
// SEQATTN_ARG declares one option of an options struct with a chainable setter and a getter, as the
// PyTorch C++ API does:  DenseOptions().activation(Activation::ReLU).use_bias(false)

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
