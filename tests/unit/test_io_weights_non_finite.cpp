// load_weights refuses a file holding a NaN or Inf weight (NonFiniteError, a FormatError, naming the file, the
// tensor, the index of the first non-finite value and the value) and leaves the model unchanged; save_weights
// refuses to write a model holding one (nothing written, an existing file untouched); both pass them through
// with WeightsOptions().allow_non_finite(true).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "seqattn/io/weights.hpp"
#include "seqattn/layers/batch_norm.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/model/sequential.hpp"
#include "support/io_helpers.hpp"

using namespace seqattn;
using seqattn::testing::LoadOutcome;
using seqattn::testing::ScratchDir;
using seqattn::testing::snapshot;
using seqattn::testing::tensor_values;
using Bytes = std::vector<unsigned char>;

namespace {

// 0.dense.W (2, 2), 0.dense.b (2,), 1.batch_norm.gamma, beta (2,) and buffers running_mean, running_var (2,),
// 2.dense.W (2, 1), 2.dense.b (1,).
template <class S>
Sequential<S> model_of(std::uint64_t seed) {
  Sequential<S> model(2);
  model.template add<Dense<S>>(2, DenseOptions().seed(seed).bias_init(Init::uniform(-1, 1)));
  model.template add<BatchNorm<S>>();
  model.template add<Dense<S>>(1, DenseOptions().seed(seed + 1));
  return model;
}

template <class S>
Bytes file_of(Sequential<S>& model) {
  std::stringstream s;
  save_weights(model, s);
  return seqattn::testing::to_bytes(s.str());
}

// A valid file of model_of(1) whose tensor `name` holds `bad` at `index` (a sentinel saved, then replaced in
// the bytes and the checksum renewed: no save of a non-finite value involved).
template <class S>
Bytes file_with(const std::string& name, std::size_t index, S bad) {
  auto source = model_of<S>(1);
  const S sentinel = S(0.8125);
  tensor_values(source, name)[index] = sentinel;
  Bytes file = file_of(source);
  seqattn::testing::replace_scalar(file, sentinel, bad);
  return seqattn::testing::reseal(seqattn::testing::unseal(file));
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

template <class S>
class WeightsNonFinite : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(WeightsNonFinite, Scalars);

}  // namespace

TYPED_TEST(WeightsNonFinite, LoadRefusesNaNAndInfNamingFileTensorIndexAndValue) {
  using S = TypeParam;
  const S inf = std::numeric_limits<S>::infinity();
  struct Case {
    std::string name;
    std::size_t index;
    S value;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"2.dense.W", 1, std::numeric_limits<S>::quiet_NaN(),
       "tensor '2.dense.W' (parameter, shape (2, 1)) holds NaN at element 1 = (1, 0): non-finite weights are refused "
       "(WeightsOptions().allow_non_finite(true) loads them)"},
      {"0.dense.W", 2, inf, "tensor '0.dense.W' (parameter, shape (2, 2)) holds Inf at element 2 = (1, 0)"},
      {"0.dense.b", 1, -inf, "tensor '0.dense.b' (parameter, shape (2,)) holds -Inf at element 1 = (1,)"},
      {"1.batch_norm.running_var", 0, std::numeric_limits<S>::quiet_NaN(),
       "tensor '1.batch_norm.running_var' (buffer, shape (2,)) holds NaN at element 0 = (0,)"},
  };
  ScratchDir dir;
  for (const Case& c : cases) {
    const Bytes file = file_with<S>(c.name, c.index, c.value);
    auto model = model_of<S>(7);
    std::stringstream stream(seqattn::testing::to_string(file));
    const LoadOutcome from_stream = seqattn::testing::load_outcome(model, [&] { load_weights(model, stream); });
    EXPECT_EQ(from_stream.type, "FormatError") << c.name << ": " << from_stream.message;
    EXPECT_TRUE(contains(from_stream.message, "load_weights(stream): " + c.expected)) << from_stream.message;
    EXPECT_TRUE(from_stream.unchanged) << c.name;

    const std::string path = dir.file("bad.sqw");
    seqattn::testing::write_file(path, file);
    const LoadOutcome from_file = seqattn::testing::load_outcome(model, [&] { load_weights(model, path); });
    EXPECT_EQ(from_file.type, "FormatError") << from_file.message;
    EXPECT_TRUE(contains(from_file.message, "load_weights(" + path + "): " + c.expected)) << from_file.message;
    EXPECT_TRUE(from_file.unchanged) << c.name;
  }
}

TYPED_TEST(WeightsNonFinite, LoadReportsTheFirstNonFiniteValueInFileOrder) {
  using S = TypeParam;
  auto source = model_of<S>(1);
  tensor_values(source, "0.dense.b")[1] = S(0.8125);
  tensor_values(source, "2.dense.W")[0] = S(0.4375);
  Bytes file = file_of(source);
  seqattn::testing::replace_scalar(file, S(0.4375), std::numeric_limits<S>::infinity());
  seqattn::testing::replace_scalar(file, S(0.8125), std::numeric_limits<S>::quiet_NaN());
  file = seqattn::testing::reseal(seqattn::testing::unseal(file));
  auto model = model_of<S>(7);
  std::stringstream stream(seqattn::testing::to_string(file));
  const LoadOutcome o = seqattn::testing::load_outcome(model, [&] { load_weights(model, stream); });
  EXPECT_TRUE(contains(o.message, "tensor '0.dense.b' (parameter, shape (2,)) holds NaN at element 1")) << o.message;
  EXPECT_TRUE(o.unchanged);
}

TYPED_TEST(WeightsNonFinite, SaveRefusesAModelHoldingNaNOrInfAndWritesNothing) {
  using S = TypeParam;
  ScratchDir dir;
  const std::string path = dir.file("model.sqw");
  auto good = model_of<S>(1);
  save_weights(good, path);
  const std::string before = read_text(path);

  auto bad = model_of<S>(2);
  tensor_values(bad, "2.dense.W")[1] = std::numeric_limits<S>::quiet_NaN();
  const auto bad_before = snapshot(bad);
  const std::string expected =
      "tensor '2.dense.W' (parameter, shape (2, 1)) holds NaN at element 1 = (1, 0): a file with it would not load "
      "by default, so it is not written (WeightsOptions().allow_non_finite(true) writes it)";
  std::string message = "(no error)";
  try {
    save_weights(bad, path);
  } catch (const FormatError& e) {
    message = e.what();
  }
  EXPECT_TRUE(contains(message, "save_weights(" + path + "): " + expected)) << message;
  EXPECT_EQ(read_text(path), before) << "the existing file is untouched";
  EXPECT_EQ(dir.files(), std::vector<std::string>{"model.sqw"}) << "no temporary file left";
  EXPECT_EQ(snapshot(bad), bad_before);

  std::stringstream stream;
  message = "(no error)";
  try {
    save_weights(bad, stream);
  } catch (const FormatError& e) {
    message = e.what();
  }
  EXPECT_TRUE(contains(message, "save_weights(stream): " + expected)) << message;
  EXPECT_TRUE(stream.str().empty()) << "nothing written to the stream";

  tensor_values(bad, "2.dense.W")[1] = S(0.5);
  tensor_values(bad, "1.batch_norm.running_mean")[1] = -std::numeric_limits<S>::infinity();
  message = "(no error)";
  try {
    save_weights(bad, dir.file("other.sqw"));
  } catch (const FormatError& e) {
    message = e.what();
  }
  EXPECT_TRUE(contains(message, "tensor '1.batch_norm.running_mean' (buffer, shape (2,)) holds -Inf at element 1"))
      << message;
  EXPECT_EQ(dir.files(), std::vector<std::string>{"model.sqw"}) << "no new file created";
}

TYPED_TEST(WeightsNonFinite, AllowNonFiniteSavesAndLoadsThemBitwise) {
  using S = TypeParam;
  const auto allow = WeightsOptions().allow_non_finite(true);
  EXPECT_FALSE(WeightsOptions().allow_non_finite());
  auto source = model_of<S>(1);
  tensor_values(source, "0.dense.W")[3] = std::numeric_limits<S>::quiet_NaN();
  tensor_values(source, "1.batch_norm.running_var")[0] = std::numeric_limits<S>::infinity();
  ScratchDir dir;
  save_weights(source, dir.file("m.sqw"), allow);
  auto model = model_of<S>(7);
  EXPECT_THROW(load_weights(model, dir.file("m.sqw")), NonFiniteError);
  load_weights(model, dir.file("m.sqw"), allow);
  EXPECT_EQ(snapshot(model), snapshot(source));

  std::stringstream stream;
  save_weights(source, stream, allow);
  auto other = model_of<S>(8);
  load_weights(other, stream, allow);
  EXPECT_EQ(snapshot(other), snapshot(source));
  EXPECT_THROW(save_weights(source, stream), NonFiniteError);
}
