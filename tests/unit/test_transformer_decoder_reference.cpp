// TransformerDecoderBlock equals torch.nn.TransformerDecoderLayer with the same weights: outputs on valid target rows
// (torch outputs garbage at padded ones), dx, dmemory and every parameter gradient of L = sum(y * R), in double
// (1e-10 relative) and float, post- and pre-norm, ReLU and GELU, causal (tgt_mask) or not, biases held at zero
// (torch's bias=False) or not, with padded targets (tgt_key_padding_mask) and padded memories
// (memory_key_padding_mask). torch's own state_dict (names and layouts) loads with the default safetensors mapping
// and predicts torch's y. Data: tests/reference/gen_transformer_decoder.py.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>

#include "seqattn/io/safetensors.hpp"
#include "seqattn/layers/transformer_decoder.hpp"
#include "seqattn/model/sequential.hpp"
#include "support/reference_data.hpp"

using namespace seqattn;
using seqattn::testing::data_path;
using seqattn::testing::ReferenceData;

namespace {

struct DecoderCase {
  const char* name;
  bool norm_first;
  Activation activation;
  bool causal;
  bool use_bias;
};
const DecoderCase kCases[] = {{"post_relu_causal", false, Activation::ReLU, true, true},
                              {"pre_gelu_causal", true, Activation::GELU, true, true},
                              {"post_gelu", false, Activation::GELU, false, true},
                              {"pre_relu", true, Activation::ReLU, false, true},
                              {"post_relu_causal_no_bias", false, Activation::ReLU, true, false}};

// The worst relative error |ours - torch| / max(1, |torch|) over y (valid rows), dx, dmemory and the parameter
// gradients of one case.
template <class S>
double torch_error(const ReferenceData& ref, const DecoderCase& c) {
  SCOPED_TRACE(c.name);
  const std::string p = c.name;
  TransformerDecoderBlock<S> block(8, 2, 16,
                                   TransformerDecoderOptions()
                                       .norm_first(c.norm_first)
                                       .activation(c.activation)
                                       .causal(c.causal)
                                       .use_bias(c.use_bias));
  EXPECT_EQ(block.params().size(), c.use_bias ? 26u : 13u);
  for (auto& param : block.params()) {
    const auto& v = ref.values(p + ".param." + param.name);
    EXPECT_EQ(static_cast<Index>(v.size()), param.size()) << param.name;
    for (Index i = 0; i < param.size(); ++i) param.value[i] = static_cast<S>(v[static_cast<size_t>(i)]);
  }
  const Mask mx = Mask::from_lengths({5, 3, 4}), mm = Mask::from_lengths({6, 4, 2});
  const Tensor3<S> x = ref.tensor<S>(p + ".x"), memory = ref.tensor<S>(p + ".memory");
  double worst = 0;
  auto track = [&worst](double ours, double theirs, const std::string& what) {
    const double err = std::abs(ours - theirs) / std::max(1.0, std::abs(theirs));
    if (!(err <= worst)) {
      worst = std::isnan(err) ? INFINITY : err;
      if (std::isnan(err)) ADD_FAILURE() << what << ": NaN";
    }
  };
  const Tensor3<S>& y = block.forward(x, mx, memory, mm, Mode::Train);
  const auto& y_ref = ref.values(p + ".y");
  for (Index b = 0; b < 3; ++b)
    for (Index t = 0; t < mx.length(b, 5); ++t)
      for (Index f = 0; f < 8; ++f) track(y(b, t, f), y_ref[static_cast<size_t>((b * 5 + t) * 8 + f)], "y");
  block.zero_grad();
  const Tensor3<S>& dx = block.backward(x, mx, memory, mm, ref.tensor<S>(p + ".R"));
  const auto& dx_ref = ref.values(p + ".dx");
  for (Index i = 0; i < dx.size(); ++i) track(dx.data()[i], dx_ref[static_cast<size_t>(i)], "dx");
  const Tensor3<S>& dmemory = block.memory_grad();
  const auto& dmemory_ref = ref.values(p + ".dmemory");
  EXPECT_EQ(static_cast<size_t>(dmemory.size()), dmemory_ref.size());
  for (Index i = 0; i < dmemory.size(); ++i) track(dmemory.data()[i], dmemory_ref[static_cast<size_t>(i)], "dmemory");
  for (auto& param : block.params()) {
    const auto& g = ref.values(p + ".grad." + param.name);
    for (Index i = 0; i < param.size(); ++i) track(param.grad[i], g[static_cast<size_t>(i)], param.name);
  }
  return worst;
}

}  // namespace

TEST(TransformerDecoderReference, MatchesTorchInDouble) {
  const ReferenceData ref(data_path("transformer_decoder.txt"));
  double worst = 0;
  for (const auto& c : kCases) {
    const double err = torch_error<double>(ref, c);
    EXPECT_LT(err, 1e-10) << c.name;
    worst = std::max(worst, err);
  }
  std::printf("[ decoder vs torch, double ] worst relative error %.3g\n", worst);
}

TEST(TransformerDecoderReference, MatchesTorchInFloat) {
  const ReferenceData ref(data_path("transformer_decoder.txt"));
  double worst = 0;
  for (const auto& c : kCases) {
    const double err = torch_error<float>(ref, c);
    EXPECT_LT(err, 2e-5) << c.name;
    worst = std::max(worst, err);
  }
  std::printf("[ decoder vs torch, float ] worst relative error %.3g\n", worst);
}

// nn.Sequential(TransformerDecoderLayer(8, 2, 16, relu, batch_first)).state_dict() of the post_relu_causal case.
template <class S>
void check_torch_state_dict(double tol) {
  const ReferenceData ref(data_path("transformer_decoder.txt"));
  Sequential<S> model(8);
  model.template add<TransformerDecoderBlock<S>>(
      2, 16, TransformerDecoderOptions().activation(Activation::ReLU).causal(true).seed(1));
  std::ifstream file(data_path("transformer_decoder_torch.safetensors"), std::ios::binary);
  ASSERT_TRUE(file.good());
  load_safetensors(model, file);
  auto& block = dynamic_cast<TransformerDecoderBlock<S>&>(model.layer(0));
  const Mask mx = Mask::from_lengths({5, 3, 4}), mm = Mask::from_lengths({6, 4, 2});
  const Tensor3<S>& y =
      block.forward(ref.tensor<S>("post_relu_causal.x"), mx, ref.tensor<S>("post_relu_causal.memory"), mm);
  const auto& y_ref = ref.values("post_relu_causal.y");
  for (Index b = 0; b < 3; ++b)
    for (Index t = 0; t < mx.length(b, 5); ++t)
      for (Index f = 0; f < 8; ++f)
        EXPECT_NEAR(y(b, t, f), y_ref[static_cast<size_t>((b * 5 + t) * 8 + f)], tol) << b << "," << t << "," << f;
}

TEST(TransformerDecoderReference, LoadsTorchStateDict) {
  check_torch_state_dict<double>(1e-12);
  check_torch_state_dict<float>(2e-5);
}
