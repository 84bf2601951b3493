// save_weights / load_weights: round trips give bit-identical predictions (Train and Infer, float and double,
// file and stream), the documented header layout, CRC-32 test vector.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "seqattn/io/weights.hpp"
#include "support/io_helpers.hpp"
#include "support/io_model.hpp"

using namespace seqattn;
using seqattn::testing::make_io_model;
using seqattn::testing::make_dense_model;
using seqattn::testing::scramble;
using seqattn::testing::ScratchDir;
using seqattn::testing::snapshot;

namespace {

template <class S>
Tensor3<S> input(std::uint64_t seed) {
  return seqattn::testing::io_ids<S>(seed);
}

template <class S>
bool bit_equal(const Tensor3<S>& a, const Tensor3<S>& b) {
  return a.dimensions() == b.dimensions() && std::memcmp(a.data(), b.data(), sizeof(S) * a.size()) == 0;
}

// Runs a few Train forwards so that buffers (batch-norm running statistics) leave their initial values.
template <class S>
void warm_up(Sequential<S>& model) {
  for (std::uint64_t i = 0; i < 3; ++i) model.forward(input<S>(100 + i), Mask::from_lengths({5, 3, 1}), Mode::Train);
}

// Before a load: every tensor of `a` differs from the same tensor of `b` (so the load must write all of them).
template <class S>
void expect_every_tensor_differs(Sequential<S>& a, Sequential<S>& b) {
  for (const bool buffers : {false, true}) {
    const auto pa = buffers ? a.buffers() : a.params();
    const auto pb = buffers ? b.buffers() : b.params();
    ASSERT_EQ(pa.size(), pb.size());
    for (std::size_t i = 0; i < pa.size(); ++i) EXPECT_NE(pa[i].values(), pb[i].values()) << pa[i].name;
  }
}

}  // namespace

template <class S>
class WeightsRoundTrip : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(WeightsRoundTrip, Scalars);

TYPED_TEST(WeightsRoundTrip, FreshModelPredictsBitIdenticallyInInferMode) {
  using S = TypeParam;
  ScratchDir dir;
  auto original = make_io_model<S>(1);
  scramble(original, 3);  // every tensor leaves its initial value (norm scales, running statistics too)
  warm_up(original);
  save_weights(original, dir.file("model.sqw"));

  auto restored = make_io_model<S>(50);  // same architecture, other weights
  expect_every_tensor_differs(original, restored);
  load_weights(restored, dir.file("model.sqw"));
  EXPECT_EQ(snapshot(original), snapshot(restored));

  const auto x = input<S>(7);
  const Mask mask = Mask::from_lengths({5, 0, 2});
  const Tensor3<S> expected = original.forward(x, mask, Mode::Infer);
  EXPECT_TRUE(bit_equal(expected, restored.forward(x, mask, Mode::Infer)));
}

TYPED_TEST(WeightsRoundTrip, LoadedCopyPredictsBitIdenticallyInTrainMode) {
  using S = TypeParam;
  ScratchDir dir;
  auto original = make_io_model<S>(2);
  scramble(original, 4);
  warm_up(original);
  save_weights(original, dir.file("model.sqw"));

  // A deep copy has the same random state (dropout masks); scramble its weights, then load them back.
  Sequential<S> restored(original);
  scramble(restored, 5);
  expect_every_tensor_differs(original, restored);
  load_weights(restored, dir.file("model.sqw"));

  const Mask mask = Mask::from_lengths({4, 5, 1});
  for (std::uint64_t step = 0; step < 2; ++step) {
    const auto x = input<S>(20 + step);
    const Tensor3<S> expected = original.forward(x, mask, Mode::Train);
    EXPECT_TRUE(bit_equal(expected, restored.forward(x, mask, Mode::Train))) << "step " << step;
    EXPECT_EQ(snapshot(original), snapshot(restored)) << "buffers after Train forward, step " << step;
    for (Index i = 0; i < expected.size(); ++i) ASSERT_TRUE(std::isfinite(expected.data()[i]));
    // Train differs from Infer (dropout, batch statistics): the Train comparison above is its own check.
    EXPECT_FALSE(bit_equal(expected, original.forward(x, mask, Mode::Infer)));
  }
}

TYPED_TEST(WeightsRoundTrip, StreamHoldsSeveralFilesBackToBack) {
  using S = TypeParam;
  auto a = make_io_model<S>(3), b = make_io_model<S>(4);
  warm_up(a);
  std::stringstream stream;
  save_weights(a, stream);
  save_weights(b, stream);
  stream << "tail";
  auto a2 = make_io_model<S>(9), b2 = make_io_model<S>(10);
  load_weights(a2, stream);
  load_weights(b2, stream);
  EXPECT_EQ(snapshot(a), snapshot(a2));
  EXPECT_EQ(snapshot(b), snapshot(b2));
  std::string rest;
  stream >> rest;
  EXPECT_EQ(rest, "tail");  // the loader read exactly the bytes of each file
}

TYPED_TEST(WeightsRoundTrip, SingleLayerModel) {
  using S = TypeParam;
  ScratchDir dir;
  Dense<S> dense(4, 3, DenseOptions().seed(1).bias_init(Init::uniform(-1, 1)));
  save_weights(dense, dir.file("dense.sqw"));
  Dense<S> other(4, 3, DenseOptions().seed(2));
  load_weights(other, dir.file("dense.sqw"));
  EXPECT_EQ(snapshot(dense), snapshot(other));
}

TEST(WeightsFormat, HeaderFollowsTheDocumentedLayout) {
  auto model = make_dense_model<float>(1);
  std::stringstream stream;
  save_weights(model, stream);
  const auto bytes = seqattn::testing::to_bytes(stream.str());
  ASSERT_GE(bytes.size(), 36u);
  EXPECT_EQ(std::string(bytes.begin(), bytes.begin() + 8), "SEQATTNW");
  EXPECT_EQ(seqattn::testing::get_u32(bytes, 8), 1u);   // version
  EXPECT_EQ(seqattn::testing::get_u32(bytes, 12), 1u);  // float32
  EXPECT_EQ(seqattn::testing::get_u64(bytes, 16), bytes.size());
  EXPECT_EQ(seqattn::testing::get_u64(bytes, 24), model.params().size() + model.buffers().size());
  // First record: parameter "0.dense.W" of shape (6, 8).
  EXPECT_EQ(seqattn::testing::get_u32(bytes, 32), 0u);
  EXPECT_EQ(seqattn::testing::get_u32(bytes, 36), 9u);
  EXPECT_EQ(std::string(bytes.begin() + 40, bytes.begin() + 49), "0.dense.W");
  EXPECT_EQ(seqattn::testing::get_u32(bytes, 49), 2u);
  EXPECT_EQ(seqattn::testing::get_u64(bytes, 53), 6u);
  EXPECT_EQ(seqattn::testing::get_u64(bytes, 61), 8u);
  float w00 = 0;
  std::memcpy(&w00, bytes.data() + 69, 4);  // little-endian host
  EXPECT_EQ(w00, model.layer_as<Dense<float>>(0).kernel()(0, 0));
  const std::size_t body = bytes.size() - 4;
  EXPECT_EQ(seqattn::testing::get_u32(bytes, body), detail::crc32(bytes.data(), body));

  auto dbl = make_dense_model<double>(1);
  std::stringstream s2;
  save_weights(dbl, s2);
  EXPECT_EQ(seqattn::testing::get_u32(seqattn::testing::to_bytes(s2.str()), 12), 2u);  // float64
}

TEST(WeightsFormat, SavingIsDeterministic) {
  auto a = make_io_model<float>(6), b = make_io_model<float>(6);
  std::stringstream sa, sb;
  save_weights(a, sa);
  save_weights(b, sb);
  EXPECT_EQ(sa.str(), sb.str());
}

TEST(Crc32, MatchesTheStandardTestVector) {
  const std::string s = "123456789";
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  EXPECT_EQ(detail::crc32(p, s.size()), 0xCBF43926u);
  EXPECT_EQ(detail::crc32(p + 4, 5, detail::crc32(p, 4)), 0xCBF43926u);  // incremental
  EXPECT_EQ(detail::crc32(p, 0), 0u);
}
