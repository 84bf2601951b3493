// load_safetensors refuses a file holding a NaN or Inf weight in any float dtype, and an F64 value beyond the
// range of a float model (NonFiniteError, a FormatError, naming the file, the PyTorch tensor and the seqattn
// tensors it maps to, the index of the first non-finite value in the file's tensor and the value), and leaves
// the model unchanged; save_safetensors refuses to write a model holding one; both pass them through with
// SafetensorsOptions().allow_non_finite(true).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

#include "seqattn/io/safetensors.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/model/sequential.hpp"
#include "support/io_helpers.hpp"

using namespace seqattn;
using seqattn::testing::LoadOutcome;
using seqattn::testing::ScratchDir;
using seqattn::testing::snapshot;
using seqattn::testing::tensor_values;
using Bytes = std::vector<unsigned char>;
using seqattn::testing::two_dense_model;

namespace {


Bytes file_of(Sequential<float>& model, const SafetensorsOptions& options = SafetensorsOptions()) {
  std::stringstream s;
  save_safetensors(model, s, options);
  return seqattn::testing::to_bytes(s.str());
}

Bytes file_with(const std::string& header, const Bytes& data) {
  Bytes out(8);
  seqattn::testing::put_u64(out, 0, header.size());
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

// A file of the small model in the given dtypes (the header of the HalfAndBfloat16 import test): 0.weight F16
// [1, -2, 0.5, w3], 0.bias BF16 [1.5, b1], 1.weight F64 [v0, -1], 1.bias F32 [1].
Bytes mixed_file(std::uint16_t w3, std::uint16_t b1, double v0) {
  Bytes data = {0x00,
                0x3C,
                0x00,
                0xC0,
                0x00,
                0x38,
                static_cast<unsigned char>(w3),
                static_cast<unsigned char>(w3 >> 8),
                0xC0,
                0x3F,
                static_cast<unsigned char>(b1),
                static_cast<unsigned char>(b1 >> 8)};
  Bytes f64(16);
  std::memcpy(f64.data(), &v0, 8);
  const double minus_one = -1.0;
  std::memcpy(f64.data() + 8, &minus_one, 8);
  data.insert(data.end(), f64.begin(), f64.end());
  data.insert(data.end(), {0, 0, 0x80, 0x3F});
  return file_with(
      "{\"0.weight\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
      "\"0.bias\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[8,12]},"
      "\"1.weight\":{\"dtype\":\"F64\",\"shape\":[1,2],\"data_offsets\":[12,28]},"
      "\"1.bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[28,32]}}",
      data);
}

LoadOutcome load(const Bytes& bytes, const SafetensorsOptions& options = SafetensorsOptions()) {
  auto model = two_dense_model(7);
  std::stringstream s(seqattn::testing::to_string(bytes));
  return seqattn::testing::load_outcome(model, [&] { load_safetensors(model, s, options); });
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

void expect_refused(const LoadOutcome& o, const std::string& part) {
  EXPECT_EQ(o.type, "FormatError") << o.message;
  EXPECT_TRUE(contains(o.message, part)) << "expected '" << part << "' in: " << o.message;
  EXPECT_TRUE(o.unchanged) << o.message;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

TEST(SafetensorsNonFinite, LoadRefusesNaNAndInfInEveryFloatDtype) {
  // F32: W(1, 0) of 0.dense.W is element (0, 1) of the transposed 0.weight.
  auto source = two_dense_model(1);
  tensor_values(source, "0.dense.W")[2] = 0.8125f;
  Bytes f32 = file_of(source);
  seqattn::testing::replace_scalar(f32, 0.8125f, std::numeric_limits<float>::quiet_NaN());
  expect_refused(load(f32),
                 "load_safetensors(stream): tensor '0.weight' (F32, shape (2, 2), to '0.dense.W' transposed) holds NaN "
                 "at element 1 = (0, 1): non-finite weights are refused (SafetensorsOptions().allow_non_finite(true) "
                 "loads them)");

  const std::uint16_t half_one = 0x3C00, bf16_one = 0x3F80;
  expect_refused(load(mixed_file(0x7C00, bf16_one, 3.0)),
                 "tensor '0.weight' (F16, shape (2, 2), to '0.dense.W' "
                 "transposed) holds Inf at element 3 = (1, 1)");
  expect_refused(load(mixed_file(half_one, 0xFF80, 3.0)),
                 "tensor '0.bias' (BF16, shape (2,), to '0.dense.b') holds "
                 "-Inf at element 1 = (1,)");
  expect_refused(load(mixed_file(half_one, 0x7FC0, 3.0)),
                 "tensor '0.bias' (BF16, shape (2,), to '0.dense.b') holds NaN");
  expect_refused(load(mixed_file(half_one, bf16_one, std::numeric_limits<double>::quiet_NaN())),
                 "tensor '1.weight' (F64, shape (1, 2), to '1.dense.W' transposed) holds NaN at element 0 = (0, 0)");
  EXPECT_EQ(load(mixed_file(half_one, bf16_one, 3.0)).type, "none");  // the same file with finite values loads

  // A finite F64 value beyond float's range would become Inf in a float model.
  expect_refused(load(mixed_file(half_one, bf16_one, 1e300)),
                 "tensor '1.weight' (F64, shape (1, 2), to '1.dense.W' transposed) holds 1.0000000000000001e+300 at "
                 "element 0 = (0, 0), out of the range of float32");

  // From a file: the message names it.
  ScratchDir dir;
  seqattn::testing::write_file(dir.file("nan.safetensors"), f32);
  auto model = two_dense_model(7);
  expect_refused(seqattn::testing::load_outcome(model, [&] { load_safetensors(model, dir.file("nan.safetensors")); }),
                 "load_safetensors(" + dir.file("nan.safetensors") + "): tensor '0.weight' (F32, shape (2, 2)");
}

TEST(SafetensorsNonFinite, SaveRefusesAModelHoldingNaNOrInfAndWritesNothing) {
  ScratchDir dir;
  const std::string path = dir.file("model.safetensors");
  auto good = two_dense_model(1);
  save_safetensors(good, path);
  const std::string before = read_text(path);

  auto bad = two_dense_model(2);
  tensor_values(bad, "1.dense.b")[0] = std::numeric_limits<float>::quiet_NaN();
  const std::string expected =
      "tensor '1.dense.b' (shape (1,), PyTorch '1.bias') holds NaN at element 0 = (0,): a file with it would not "
      "load by default, so it is not written (SafetensorsOptions().allow_non_finite(true) writes it)";
  std::string message = "(no error)";
  try {
    save_safetensors(bad, path);
  } catch (const FormatError& e) {
    message = e.what();
  }
  EXPECT_TRUE(contains(message, "save_safetensors(" + path + "): " + expected)) << message;
  EXPECT_EQ(read_text(path), before);
  EXPECT_EQ(dir.files(), std::vector<std::string>{"model.safetensors"});

  tensor_values(bad, "1.dense.b")[0] = 0.5f;
  tensor_values(bad, "0.dense.W")[1] = -std::numeric_limits<float>::infinity();
  std::stringstream stream;
  message = "(no error)";
  try {
    save_safetensors(bad, stream);
  } catch (const FormatError& e) {
    message = e.what();
  }
  EXPECT_TRUE(contains(message,
                       "save_safetensors(stream): tensor '0.dense.W' (shape (2, 2), PyTorch '0.weight') "
                       "holds -Inf at element 1 = (0, 1)"))
      << message;
  EXPECT_TRUE(stream.str().empty());
}

TEST(SafetensorsNonFinite, AllowNonFiniteSavesAndLoadsThem) {
  const auto allow = SafetensorsOptions().allow_non_finite(true);
  EXPECT_FALSE(SafetensorsOptions().allow_non_finite());
  auto source = two_dense_model(1);
  tensor_values(source, "0.dense.W")[1] = std::numeric_limits<float>::quiet_NaN();
  tensor_values(source, "1.dense.b")[0] = std::numeric_limits<float>::infinity();
  const Bytes file = file_of(source, allow);
  EXPECT_EQ(load(file, allow).type, "none");
  auto model = two_dense_model(7);
  std::stringstream s(seqattn::testing::to_string(file));
  load_safetensors(model, s, allow);
  EXPECT_EQ(snapshot(model), snapshot(source));
  std::stringstream again(seqattn::testing::to_string(file));
  EXPECT_THROW(load_safetensors(model, again), NonFiniteError);
  EXPECT_EQ(load(mixed_file(0x7C00, 0x3F80, 1e300), allow).type, "none");
}
