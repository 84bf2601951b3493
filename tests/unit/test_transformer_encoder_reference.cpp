// TransformerEncoderBlock equals torch.nn.TransformerEncoderLayer with the same weights (outputs on valid rows,
// input and parameter gradients), in float and double, post- and pre-norm, causal and with attention_window
// (torch: a src_mask of -inf outside the windows). Data: tests/reference/gen_transformer_encoder.py.
#include <gtest/gtest.h>

#include <optional>

#include "seqattn/layers/transformer_encoder.hpp"
#include "support/reference_data.hpp"

using namespace seqattn;
using seqattn::testing::data_path;
using seqattn::testing::ReferenceData;

namespace {
struct EncoderCase {
  const char* name;
  bool norm_first;
  Activation activation;
  bool causal;
  std::optional<Index> window = std::nullopt;
};
const EncoderCase kConfigs[] = {
    {"post_relu", false, Activation::ReLU, false},          {"pre_gelu", true, Activation::GELU, false},
    {"post_gelu_causal", false, Activation::GELU, true},    {"pre_relu_causal", true, Activation::ReLU, true},
    {"post_gelu_window", false, Activation::GELU, true, 2}, {"pre_relu_window", true, Activation::ReLU, true, 3}};

template <class S>
void check_config(const ReferenceData& ref, const EncoderCase& c, double tol) {
  SCOPED_TRACE(c.name);
  const std::string p = c.name;
  TransformerEncoderBlock<S> block(8, 2, 16,
                                   TransformerEncoderOptions()
                                       .norm_first(c.norm_first)
                                       .activation(c.activation)
                                       .causal(c.causal)
                                       .attention_window(c.window));
  for (auto& param : block.params()) {
    const auto& v = ref.values(p + ".param." + param.name);
    ASSERT_EQ(static_cast<Index>(v.size()), param.size()) << param.name;
    for (Index i = 0; i < param.size(); ++i) param.value[i] = static_cast<S>(v[static_cast<size_t>(i)]);
  }
  const Mask mask = Mask::from_lengths({5, 3});
  const Tensor3<S> x = ref.tensor<S>(p + ".x");
  const Tensor3<S>& y = block.forward(x, mask, Mode::Train);
  const auto& y_ref = ref.values(p + ".y");
  for (Index b = 0; b < 2; ++b)
    for (Index t = 0; t < mask.length(b, 5); ++t)
      for (Index f = 0; f < 8; ++f)
        EXPECT_NEAR(y(b, t, f), y_ref[static_cast<size_t>((b * 5 + t) * 8 + f)], tol) << b << "," << t << "," << f;
  block.zero_grad();
  const Tensor3<S>& dx = block.backward(x, mask, ref.tensor<S>(p + ".R"));
  const auto& dx_ref = ref.values(p + ".dx");
  for (Index b = 0; b < 2; ++b)
    for (Index t = 0; t < 5; ++t)
      for (Index f = 0; f < 8; ++f)
        EXPECT_NEAR(dx(b, t, f), dx_ref[static_cast<size_t>((b * 5 + t) * 8 + f)], tol) << b << "," << t << "," << f;
  for (auto& param : block.params()) {
    const auto& g = ref.values(p + ".grad." + param.name);
    for (Index i = 0; i < param.size(); ++i)
      EXPECT_NEAR(param.grad[i], g[static_cast<size_t>(i)], tol * 10) << param.name << "[" << i << "]";
  }
}
}  // namespace

TEST(TransformerEncoderReference, MatchesTorchInDouble) {
  const ReferenceData ref(data_path("transformer_encoder.txt"));
  for (const auto& c : kConfigs) check_config<double>(ref, c, 1e-10);
}

TEST(TransformerEncoderReference, MatchesTorchInFloat) {
  const ReferenceData ref(data_path("transformer_encoder.txt"));
  for (const auto& c : kConfigs) check_config<float>(ref, c, 2e-4);
}
