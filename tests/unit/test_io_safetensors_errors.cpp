// load_safetensors rejects damaged or mismatched files with a clear error and leaves the model unchanged:
// truncation at every offset, flipped bytes at every offset, malformed headers (JSON, duplicate keys, dtypes,
// shapes, offsets that overlap, leave holes or do not fit), trailing bytes, missing, extra and reshaped
// tensors, integer dtypes; F16 and BF16 tensors convert exactly.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <sstream>

#include "seqattn/io/safetensors.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/model/sequential.hpp"
#include "support/io_helpers.hpp"

using namespace seqattn;
using seqattn::testing::LoadOutcome;
using Bytes = std::vector<unsigned char>;
using seqattn::testing::two_dense_model;

namespace {


Bytes file_of(Sequential<float>& model) {
  std::stringstream s;
  save_safetensors(model, s);
  return seqattn::testing::to_bytes(s.str());
}

// A safetensors file from a header text and a data buffer.
Bytes file_with(const std::string& header, const Bytes& data) {
  Bytes out(8);
  seqattn::testing::put_u64(out, 0, header.size());
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), data.begin(), data.end());
  return out;
}

// The header of the small model's file with `from` replaced by `to` (data unchanged).
Bytes edited(const std::string& from, const std::string& to) {
  auto model = two_dense_model(1);
  const Bytes file = file_of(model);
  const std::uint64_t n = seqattn::testing::get_u64(file, 0);
  std::string header(file.begin() + 8, file.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  const auto at = header.find(from);
  if (at == std::string::npos) throw std::runtime_error("edited: no '" + from + "' in " + header);
  header.replace(at, from.size(), to);
  return file_with(header, Bytes(file.begin() + 8 + static_cast<std::ptrdiff_t>(n), file.end()));
}

// Loads `bytes` through a stream into a fresh small model (seqattn::testing::load_outcome: error type and
// message, model bitwise unchanged).
LoadOutcome load(const Bytes& bytes, const SafetensorsOptions& options = SafetensorsOptions()) {
  auto model = two_dense_model(7);
  std::stringstream s(seqattn::testing::to_string(bytes));
  return seqattn::testing::load_outcome(model, [&] { load_safetensors(model, s, options); });
}

// Expects `type` with a message containing `part`, and an unchanged model.
void expect(const LoadOutcome& o, const std::string& type, const std::string& part) {
  EXPECT_EQ(o.type, type) << o.message;
  EXPECT_NE(o.message.find(part), std::string::npos) << "expected '" << part << "' in: " << o.message;
  EXPECT_TRUE(o.unchanged) << o.message;
}

}  // namespace

TEST(SafetensorsLoadErrors, TruncationAtEveryOffset) {
  auto source = two_dense_model(1);
  const Bytes file = file_of(source);
  ASSERT_LT(file.size(), 400u);
  for (std::size_t n = 0; n < file.size(); ++n) {
    const LoadOutcome o = load(Bytes(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(n)));
    expect(o, "FormatError", "load_safetensors(stream): truncated: ");
  }
  EXPECT_EQ(load(file).type, "none");
}

TEST(SafetensorsLoadErrors, FlippedBytesEitherFailCleanlyOrLoad) {
  auto source = two_dense_model(1);
  const Bytes file = file_of(source);
  const std::size_t header_end = 8 + seqattn::testing::get_u64(file, 0);
  std::size_t failures = 0;
  for (std::size_t at = 0; at < file.size(); ++at)
    for (unsigned char flip : {0x01, 0x20, 0x80}) {
      Bytes bad = file;
      bad[at] ^= flip;
      const LoadOutcome o = load(bad);
      if (o.type == "none") {
        // A flip in the data changes values; in the header only a metadata string may change harmlessly.
        EXPECT_TRUE(at >= header_end || at < 8 + 32) << "offset " << at << " flip " << int(flip);
      } else {
        ++failures;
        EXPECT_TRUE(o.type == "FormatError" || o.type == "MismatchError") << o.type << ": " << o.message;
        EXPECT_TRUE(o.unchanged) << "offset " << at;
      }
      if (at < 8) {
        EXPECT_NE(o.type, "none") << "length field, offset " << at;
      }
    }
  EXPECT_GT(failures, 3 * (header_end - 8 - 32));  // most header flips are caught
}

TEST(SafetensorsLoadErrors, MalformedContainer) {
  expect(load(seqattn::testing::to_bytes("hello")), "FormatError",
         "truncated: a safetensors file starts with an 8-byte header size but the file has 5 bytes");
  Bytes huge(8);
  seqattn::testing::put_u64(huge, 0, 1ULL << 40);
  expect(load(huge), "FormatError", "header size 1099511627776 exceeds the limit of 100000000 bytes");
  expect(load(file_with("{", {})), "FormatError", "the header is not valid JSON");
  expect(load(file_with("{\"a\": \"\xff\"}", {})), "FormatError", "the header is not valid JSON");  // bad UTF-8
  expect(load(file_with("[]", {})), "FormatError", "the header must be a JSON object");
  expect(load(edited("\"0.bias\"", "\"0.weight\"")), "FormatError", "the header has the key '0.weight' twice");
  expect(load(edited("\"format\"", "\"dtype\":\"F32\",\"dtype\"")), "FormatError", "the header has the key 'dtype' twice");
  expect(load(file_with("{\"__metadata__\": []}", {})), "FormatError", "__metadata__ must be an object of strings");
  expect(load(file_with("{\"__metadata__\": {\"a\": 1}}", {})), "FormatError", "__metadata__ value of 'a' is not a string");
  expect(load(edited("\"format\":\"pt\"", "\"format\":\"pt\"} ")), "FormatError", "not valid JSON");
  expect(load(edited("}} ", std::string("}}\0", 3))), "FormatError", "the header contains a NUL byte");
  // A file (unlike a stream, which is read up to the end of the data) must end with the data.
  seqattn::testing::ScratchDir dir;
  Bytes trailing = edited("\"pt\"", "\"pt\"");
  trailing.push_back(0);
  seqattn::testing::write_file(dir.file("t.safetensors"), trailing);
  auto model = two_dense_model(7);
  expect(seqattn::testing::load_outcome(model, [&] { load_safetensors(model, dir.file("t.safetensors")); }),
         "FormatError", "1 trailing bytes after the last tensor's data");
}

TEST(SafetensorsLoadErrors, MalformedEntries) {
  const std::string t = "load_safetensors(stream): tensor '";
  expect(load(file_with("{\"a\": 1}", {})), "FormatError", t + "a': entry is not an object");
  expect(load(file_with("{\"a\": {\"dtype\": \"F32\", \"shape\": []}}", {})), "FormatError",
         t + "a': entry must have exactly dtype, shape and data_offsets");
  expect(load(edited("\"dtype\":\"F32\",\"shape\":[2]", "\"dtype\":\"F17\",\"shape\":[2]")), "FormatError",
         t + "0.bias': unknown dtype 'F17'");
  expect(load(edited("\"dtype\":\"F32\",\"shape\":[2]", "\"dtype\":3,\"shape\":[2]")), "FormatError",
         t + "0.bias': dtype is not a string");
  expect(load(edited("\"shape\":[2]", "\"shape\":[-2]")), "FormatError", "0.bias': shape has an entry that is not a non-negative integer");
  expect(load(edited("\"shape\":[2]", "\"shape\":[2.0]")), "FormatError", "shape has an entry that is not");
  expect(load(edited("\"shape\":[2]", "\"shape\":2")), "FormatError", "0.bias': shape is not an array");
  expect(load(edited("\"shape\":[2]", "\"shape\":[4294967296,4294967296]")), "FormatError",
         "0.bias': shape (4294967296, 4294967296) of F32 does not fit its data_offsets [16, 24] (8 bytes)");
  expect(load(edited("\"shape\":[2]", "\"shape\":[3]")), "FormatError",
         "0.bias': shape (3,) of F32 does not fit its data_offsets [16, 24] (8 bytes)");
  expect(load(edited("\"shape\":[2]", "\"shape\":[1]")), "FormatError",
         "0.bias': shape (1,) of F32 needs 4 bytes but data_offsets [16, 24] hold 8");
  expect(load(edited("\"shape\":[2]", "\"shape\":[0]")), "FormatError", "needs 0 bytes but data_offsets [16, 24] hold 8");
  expect(load(edited("[16,24]", "[16]")), "FormatError", "0.bias': data_offsets must be two non-negative integers");
  expect(load(edited("[16,24]", "[24,16]")), "FormatError", "0.bias': data_offsets [24, 16] end before they begin");
  expect(load(edited("[16,24]", "[12,20]")), "FormatError", "data_offsets [12, 20] overlap the previous tensor (expected begin 16)");
  expect(load(edited("[16,24]", "[20,28]")), "FormatError", "leave a hole in the buffer (expected begin 16)");
}

// Shapes are unsigned 64-bit in the header: a dimension beyond INT64_MAX (a model's Index) or a product of the
// non-zero dimensions that overflows is refused (with a zero dimension the data_offsets do not bound them), and
// read_safetensors never reports a negative dimension.
TEST(SafetensorsLoadErrors, HugeDimensionsAreRefusedWithTheirUnsignedValue) {
  auto read_error = [](const std::string& shape) {
    const Bytes file = file_with("{\"x\":{\"dtype\":\"F32\",\"shape\":" + shape + ",\"data_offsets\":[0,0]}}", {});
    std::stringstream s(seqattn::testing::to_string(file));
    try {
      const SafetensorsContents c = read_safetensors(s);
      std::string dims;
      for (Index d : c.tensors.at("x").shape) dims += std::to_string(d) + " ";
      return "(no error; shape " + dims + ")";
    } catch (const FormatError& e) {
      return std::string(e.what());
    }
  };
  const std::string huge = read_error("[0,9223372036854775808,9223372036854775808]");
  EXPECT_NE(
      huge.find("read_safetensors(stream): tensor 'x': dimension 1 of shape (0, 9223372036854775808, "
                "9223372036854775808) is 9223372036854775808, more than the largest supported 9223372036854775807"),
      std::string::npos)
      << huge;
  const std::string product = read_error("[4611686018427387904,0,4]");
  EXPECT_NE(product.find("tensor 'x': the product of the dimensions of shape (4611686018427387904, 0, 4) overflows a "
                         "64-bit count"),
            std::string::npos)
      << product;
  EXPECT_EQ(read_error("[0,9223372036854775807]"), "(no error; shape 0 9223372036854775807 )");
  expect(load(file_with("{\"x\":{\"dtype\":\"F32\",\"shape\":[0,9223372036854775808],\"data_offsets\":[0,0]}}", {})),
         "FormatError", "dimension 1 of shape (0, 9223372036854775808) is 9223372036854775808");
}

TEST(SafetensorsLoadErrors, ModelMismatches) {
  expect(load(edited("\"1.bias\"", "\"1.other\"")), "MismatchError",
         "1 tensor is missing from the file: '1.bias' (from '1.dense.b')");
  expect(load(edited("\"shape\":[2,2]", "\"shape\":[4]")), "MismatchError",
         "tensor '0.weight' (from '0.dense.W' transposed): shape expected (2, 2) but found (4,)");
  expect(load(edited("\"0.bias\":{\"dtype\":\"F32\",\"shape\":[2]", "\"0.bias\":{\"dtype\":\"I32\",\"shape\":[2]")),
         "MismatchError", "tensor '0.bias' (from '0.dense.b'): dtype expected F32, F64, F16 or BF16 but found I32");

  // An extra tensor: appended to the buffer (4 bytes, I32), also under a name the default filter ignores.
  auto model = two_dense_model(1);
  const Bytes file = file_of(model);
  const std::uint64_t n = seqattn::testing::get_u64(file, 0);
  std::string header(file.begin() + 8, file.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  Bytes data(file.begin() + 8 + static_cast<std::ptrdiff_t>(n), file.end());
  const std::size_t end = data.size();
  data.insert(data.end(), {1, 0, 0, 0});
  auto with_extra = [&](const std::string& name) {
    std::string h = header;
    h.insert(h.rfind('}'), ",\"" + name + "\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[" + std::to_string(end) +
                               "," + std::to_string(end + 4) + "]}");
    return file_with(h, data);
  };
  expect(load(with_extra("2.weight")), "MismatchError",
         "the file has tensor '2.weight' (I32, shape (1,)) that no model tensor maps to");
  EXPECT_EQ(load(with_extra("1.num_batches_tracked")).type, "none");
  expect(load(with_extra("1.num_batches_tracked"), SafetensorsOptions().ignore([](const std::string&) { return false; })),
         "MismatchError", "the file has tensor '1.num_batches_tracked'");
}

TEST(SafetensorsLoadErrors, MissingFileIsAFileError) {
  auto model = two_dense_model(1);
  try {
    load_safetensors(model, "/nonexistent/dir/m.safetensors");
    FAIL() << "expected FileError";
  } catch (const FileError& e) {
    EXPECT_NE(std::string(e.what()).find("load_safetensors(/nonexistent/dir/m.safetensors): cannot open"), std::string::npos)
        << e.what();
  }
}

TEST(SafetensorsImport, HalfAndBfloat16ConvertExactly) {
  // 0.weight F16 [1, -2, 0.5, 2^-24 (subnormal)], 0.bias BF16 [1.5, -0.25], 1.weight F64, 1.bias F32.
  const Bytes data = {0x00, 0x3C, 0x00, 0xC0, 0x00, 0x38, 0x01, 0x00,  // F16
                      0xC0, 0x3F, 0x80, 0xBE,                          // BF16
                      0, 0, 0, 0, 0, 0, 0x08, 0x40, 0, 0, 0, 0, 0, 0, 0xF0, 0xBF,  // F64 3, -1
                      0, 0, 0x80, 0x3F};                                           // F32 1
  const std::string header =
      "{\"0.weight\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]},"
      "\"0.bias\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[8,12]},"
      "\"1.weight\":{\"dtype\":\"F64\",\"shape\":[1,2],\"data_offsets\":[12,28]},"
      "\"1.bias\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[28,32]}}";
  auto model = two_dense_model(1);
  std::stringstream s(seqattn::testing::to_string(file_with(header, data)));
  load_safetensors(model, s);
  const auto& W0 = model.layer_as<Dense<float>>(0).kernel();  // transposed: W[i, j] = weight[j, i]
  EXPECT_EQ(W0(0, 0), 1.0f);
  EXPECT_EQ(W0(1, 0), -2.0f);
  EXPECT_EQ(W0(0, 1), 0.5f);
  EXPECT_EQ(W0(1, 1), std::ldexp(1.0f, -24));
  EXPECT_EQ(model.layer_as<Dense<float>>(0).bias()(0), 1.5f);
  EXPECT_EQ(model.layer_as<Dense<float>>(0).bias()(1), -0.25f);
  EXPECT_EQ(model.layer_as<Dense<float>>(1).kernel()(0, 0), 3.0f);
  EXPECT_EQ(model.layer_as<Dense<float>>(1).kernel()(1, 0), -1.0f);
  EXPECT_EQ(model.layer_as<Dense<float>>(1).bias()(0), 1.0f);
  EXPECT_EQ(detail::safetensors::half_to_float(0x7C00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(detail::safetensors::half_to_float(0x7BFF), 65504.0f);
  EXPECT_EQ(detail::safetensors::half_to_float(0x8000), -0.0f);
  EXPECT_TRUE(std::isnan(detail::safetensors::half_to_float(0x7E00)));
  EXPECT_EQ(detail::safetensors::half_to_float(0x0200), std::ldexp(1.0f, -15));  // largest-exponent subnormal
}
