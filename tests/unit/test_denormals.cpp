// Denormal numbers are flushed to zero inside the layers (issue 19, item 14): arithmetic on denormals made
// forward and backward 18-21x slower (benchmarks/bench_denormals.cpp measures it). The mode is on for the
// duration of each layer call only; the caller's floating-point mode is restored, and set_flush_denormals(false)
// computes with denormals as IEEE-754 says.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>

#include "seqattn/core/denormals.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/model/sequential.hpp"

using namespace seqattn;

namespace {

// Computes x * tiny in its forward: the result is a denormal unless the layer runs with flush-to-zero.
class Scale final : public Layer<float> {
 public:
  Scale(Index in, float factor) : Layer<float>(in), factor_(factor) {}
  Index out_features() const override { return in_features(); }
  std::string name() const override { return "scale"; }
  std::string describe() const override { return "Scale()"; }
  std::unique_ptr<Layer<float>> clone() const override { return std::make_unique<Scale>(*this); }

 protected:
  void do_forward(const Tensor3<float>& x, const Mask&, Mode, Tensor3<float>& y) override {
    volatile float factor = factor_;  // computed at run time, in the layer's floating-point mode
    for (Index i = 0; i < x.size(); ++i) y.data()[i] = x.data()[i] * factor;
  }
  void do_backward(const Tensor3<float>&, const Mask&, const Tensor3<float>& dy, Tensor3<float>& dx) override {
    volatile float factor = factor_;
    for (Index i = 0; i < dy.size(); ++i) dx.data()[i] = dy.data()[i] * factor;
  }

 private:
  float factor_;
};

struct FlushSetting {
  explicit FlushSetting(bool on) { set_flush_denormals(on); }
  ~FlushSetting() { set_flush_denormals(true); }
};

float caller_product(float a, float b) {
  volatile float x = a, y = b;
  return x * y;
}

#if defined(SEQATTN_DENORMALS_X86) || defined(SEQATTN_DENORMALS_AARCH64)
TEST(Denormals, LayersFlushDenormalResultsToZeroAndRestoreTheCallersMode) {
  ASSERT_TRUE(flush_denormals()) << "on by default";
  const float tiny = 1e-30f;
  Scale layer(2, tiny);
  Tensor3<float> x(1, 2, 2);
  x.setConstant(1e-10f);  // x * tiny = 1e-40: a denormal
  ASSERT_NE(caller_product(1e-10f, tiny), 0.0f) << "the caller computes with denormals";
  const Tensor3<float>& y = layer.forward(x);
  for (Index i = 0; i < y.size(); ++i) EXPECT_EQ(y.data()[i], 0.0f);
  const Tensor3<float>& dx = layer.backward(x, Mask(), x);
  for (Index i = 0; i < dx.size(); ++i) EXPECT_EQ(dx.data()[i], 0.0f);
  EXPECT_NE(caller_product(1e-10f, tiny), 0.0f) << "the caller's mode must be restored";
  {
    FlushSetting off(false);
    const Tensor3<float>& exact = layer.forward(x);
    for (Index i = 0; i < exact.size(); ++i) EXPECT_EQ(exact.data()[i], caller_product(1e-10f, tiny));
  }
}

TEST(Denormals, DenormalInputsAreReadAsZeroByTheLayers) {
  Dense<float> dense(3, 2, DenseOptions().kernel_init(Init::constant(0.5)).bias_init(Init::zeros()));
  Tensor3<float> x(2, 4, 3);
  x.setConstant(std::numeric_limits<float>::denorm_min() * 1000);  // denormal inputs
  const Tensor3<float>& y = dense.forward(x);
  for (Index i = 0; i < y.size(); ++i) EXPECT_EQ(y.data()[i], 0.0f) << "denormal x is read as 0";
  FlushSetting off(false);
  const Tensor3<float>& z = dense.forward(x);
  for (Index i = 0; i < z.size(); ++i) EXPECT_GT(z.data()[i], 0.0f) << "IEEE-754: x W is a positive denormal";
}
#endif

}  // namespace
