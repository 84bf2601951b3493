// load_weights rejects every damaged or mismatched file with a clear error and leaves the model unchanged:
// truncation at every byte offset, flipped bytes at every offset, wrong magic, future version, wrong scalar
// type, trailing bytes, checksum, malformed records, missing, extra and reshaped tensors, wrong kinds.
#include <gtest/gtest.h>

#include <sstream>

#include "seqattn/io/weights.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/model/sequential.hpp"
#include "support/io_helpers.hpp"

using namespace seqattn;
using seqattn::testing::get_u32;
using seqattn::testing::LoadOutcome;
using seqattn::testing::put_u32;
using seqattn::testing::put_u64;
using seqattn::testing::reseal;
using seqattn::testing::unseal;
using Bytes = std::vector<unsigned char>;

namespace {

// Two Dense layers, 2 -> 2 -> 1: a 204-byte float file.
template <class S>
Sequential<S> small_model(std::uint64_t seed, bool bias = true, Index hidden = 2) {
  Sequential<S> model(2);
  model.template add<Dense<S>>(hidden, DenseOptions().seed(seed).bias_init(Init::uniform(-1, 1)));
  model.template add<Dense<S>>(1, DenseOptions().seed(seed + 1).use_bias(bias));
  return model;
}

template <class S>
Bytes file_of(Sequential<S>& model) {
  std::stringstream s;
  save_weights(model, s);
  return seqattn::testing::to_bytes(s.str());
}

// Loads `bytes` through a stream into `model` (seqattn::testing::load_outcome: error type and message, model
// bitwise unchanged).
template <class S>
LoadOutcome load(Sequential<S>& model, const Bytes& bytes) {
  std::stringstream s(seqattn::testing::to_string(bytes));
  return seqattn::testing::load_outcome(model, [&] { load_weights(model, s); });
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST(WeightsLoadErrors, SmallFileHasTheExpectedSize) {
  auto model = small_model<float>(1);
  EXPECT_EQ(file_of(model).size(), 204u);
}

TEST(WeightsLoadErrors, TruncationAtEveryOffsetThrowsAndKeepsTheModel) {
  auto source = small_model<float>(1);
  const Bytes file = file_of(source);
  auto model = small_model<float>(7);
  for (std::size_t n = 0; n < file.size(); ++n) {
    const LoadOutcome o = load(model, Bytes(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(n)));
    EXPECT_EQ(o.type, "FormatError") << "length " << n << ": " << o.message;
    EXPECT_TRUE(o.unchanged) << "length " << n;
    if (n == 0) {
      EXPECT_TRUE(contains(o.message, "load_weights(stream): empty file")) << o.message;
    } else if (n < 24) {
      EXPECT_TRUE(contains(o.message, "load_weights(stream): truncated: ")) << "length " << n << ": " << o.message;
    } else {
      EXPECT_TRUE(contains(o.message, "load_weights(stream): truncated file: expected 204 bytes but found " +
                                          std::to_string(n)))
          << "length " << n << ": " << o.message;
    }
  }
  EXPECT_EQ(load(model, file).type, "none");  // the complete file loads
}

TEST(WeightsLoadErrors, FlippedBytesAtEveryOffsetThrowAndKeepTheModel) {
  auto source = small_model<float>(1);
  const Bytes file = file_of(source);
  auto model = small_model<float>(7);
  for (std::size_t at = 0; at < file.size(); ++at)
    for (unsigned char flip : {0x01, 0x80, 0xFF}) {
      Bytes bad = file;
      bad[at] ^= flip;
      const LoadOutcome o = load(model, bad);
      EXPECT_NE(o.type, "none") << "offset " << at << " flip " << int(flip);
      EXPECT_TRUE(o.unchanged) << "offset " << at;
      if (at < 8) {
        EXPECT_TRUE(contains(o.message, "not a seqattn weights file")) << o.message;
      } else if (at < 12) {
        EXPECT_TRUE(contains(o.message, "format version")) << o.message;
      } else if (at >= 24) {
        EXPECT_TRUE(contains(o.message, "checksum mismatch")) << "offset " << at << ": " << o.message;
      }
    }
}

TEST(WeightsLoadErrors, WrongMagic) {
  auto model = small_model<float>(1);
  Bytes bad = file_of(model);
  bad[0] = 'X';
  const LoadOutcome o = load(model, bad);
  EXPECT_EQ(o.type, "FormatError");
  EXPECT_TRUE(contains(o.message, "load_weights(stream): not a seqattn weights file: magic expected \"SEQATTNW\" but "
                                  "found \"XEQATTNW\""))
      << o.message;
  const LoadOutcome text = load(model, seqattn::testing::to_bytes("hello"));
  EXPECT_TRUE(contains(text.message, "found \"hello\"")) << text.message;
  EXPECT_TRUE(contains(load(model, Bytes{0x00, 0x1f}).message, "found \"\\x0\\x1f\"")) << "binary bytes escaped";
}

TEST(WeightsLoadErrors, FutureVersionSaysTheFileIsNewer) {
  auto model = small_model<float>(1);
  Bytes body = unseal(file_of(model));
  put_u32(body, 8, 2);
  const LoadOutcome o = load(model, reseal(body));
  EXPECT_EQ(o.type, "FormatError");
  EXPECT_TRUE(contains(o.message, "format version 2 is not supported: this seqattn (" + std::string(version_string()) +
                                      ") reads version 1; the file was written by a newer seqattn"))
      << o.message;
  EXPECT_TRUE(o.unchanged);
  put_u32(body, 8, 0);
  EXPECT_TRUE(contains(load(model, reseal(body)).message, "format version 0 is not supported")) << "version 0";
}

TEST(WeightsLoadErrors, WrongScalarTypeIsAMismatch) {
  auto dbl = small_model<double>(1);
  auto flt = small_model<float>(2);
  const LoadOutcome o = load(flt, file_of(dbl));
  EXPECT_EQ(o.type, "MismatchError");
  EXPECT_TRUE(contains(o.message, "scalar type expected float32 (the model's) but the file holds float64 weights"))
      << o.message;
  EXPECT_TRUE(o.unchanged);
  const LoadOutcome back = load(dbl, file_of(flt));
  EXPECT_TRUE(contains(back.message, "scalar type expected float64 (the model's) but the file holds float32")) << back.message;

  Bytes body = unseal(file_of(flt));
  put_u32(body, 12, 7);
  const LoadOutcome unknown = load(flt, reseal(body));
  EXPECT_EQ(unknown.type, "FormatError");
  EXPECT_TRUE(contains(unknown.message, "unknown scalar type code 7 (1 = float32, 2 = float64)")) << unknown.message;
}

TEST(WeightsLoadErrors, ChecksumAndSizeFields) {
  auto model = small_model<float>(1);
  const Bytes file = file_of(model);
  Bytes bad = file;
  bad[100] ^= 0x10;
  const LoadOutcome o = load(model, bad);
  EXPECT_TRUE(contains(o.message, "checksum mismatch (stored 0x")) << o.message;
  EXPECT_TRUE(contains(o.message, "): the file is corrupt")) << o.message;

  Bytes small = file;
  put_u64(small, 16, 20);
  EXPECT_TRUE(contains(load(model, small).message, "corrupt header: file size field is 20, less than the minimum 36"));
}

TEST(WeightsLoadErrors, TrailingBytesInAFile) {
  seqattn::testing::ScratchDir dir;
  auto model = small_model<float>(1);
  Bytes file = file_of(model);
  file.push_back(0);
  seqattn::testing::write_file(dir.file("m.sqw"), file);
  const LoadOutcome o = seqattn::testing::load_outcome(model, [&] { load_weights(model, dir.file("m.sqw")); });
  EXPECT_EQ(o.type, "FormatError") << o.message;
  EXPECT_TRUE(
      contains(o.message, "load_weights(" + dir.file("m.sqw") +
                              "): 1 trailing bytes after the end of the file (expected 204 bytes but found 205)"))
      << o.message;
  EXPECT_TRUE(o.unchanged);
}

TEST(WeightsLoadErrors, MissingTensorNamesItAndItsShape) {
  auto no_bias = small_model<float>(1, false);
  auto model = small_model<float>(2, true);
  const LoadOutcome o = load(model, file_of(no_bias));
  EXPECT_EQ(o.type, "MismatchError");
  EXPECT_TRUE(contains(o.message, "load_weights(stream): 1 tensor is missing from the file: '1.dense.b' (1,)")) << o.message;
  EXPECT_TRUE(o.unchanged);
}

TEST(WeightsLoadErrors, ExtraTensorNamesIt) {
  auto with_bias = small_model<float>(1, true);
  auto model = small_model<float>(2, false);
  const LoadOutcome o = load(model, file_of(with_bias));
  EXPECT_EQ(o.type, "MismatchError");
  EXPECT_TRUE(contains(o.message, "the file has tensor '1.dense.b' (parameter, shape (1,)) that the model does not have"))
      << o.message;
  EXPECT_TRUE(o.unchanged);
}

TEST(WeightsLoadErrors, WrongShapeGivesExpectedAndFound) {
  auto narrow = small_model<float>(1, true, 2);
  auto model = small_model<float>(2, true, 3);
  const LoadOutcome o = load(model, file_of(narrow));
  EXPECT_EQ(o.type, "MismatchError");
  EXPECT_TRUE(contains(o.message, "tensor '0.dense.W': shape expected (2, 3) but found (2, 2)")) << o.message;
  EXPECT_TRUE(o.unchanged);
}

TEST(WeightsLoadErrors, WrongKindIsAMismatch) {
  auto model = small_model<float>(1);
  Bytes body = unseal(file_of(model));
  ASSERT_EQ(get_u32(body, 32), 0u);
  put_u32(body, 32, 1);  // first record "0.dense.W" now claims to be a buffer
  const LoadOutcome o = load(model, reseal(body));
  EXPECT_TRUE(contains(o.message, "tensor '0.dense.W': expected a parameter but the file stores a buffer")) << o.message;
  put_u32(body, 32, 5);
  EXPECT_TRUE(contains(load(model, reseal(body)).message, "tensor record 0 at offset 32: kind expected 0 or 1 but found 5"));
}

TEST(WeightsLoadErrors, MalformedRecordsWithAValidChecksum) {
  auto model = small_model<float>(1);
  const Bytes body = unseal(file_of(model));
  auto with = [&](std::size_t at, std::uint64_t v, int width) {
    Bytes b = body;
    if (width == 4) put_u32(b, at, static_cast<std::uint32_t>(v));
    else put_u64(b, at, v);
    return load(model, reseal(b));
  };
  EXPECT_TRUE(contains(with(36, 0, 4).message, "tensor record 0 at offset 32: name length 0 outside 1..65535"));
  EXPECT_TRUE(contains(with(36, 1000, 4).message, "truncated: tensor name at offset 40 needs 1000 bytes"));
  EXPECT_TRUE(contains(with(49, 9, 4).message, "tensor '0.dense.W': 9 dimensions, more than the maximum 8"));
  EXPECT_TRUE(contains(with(53, 1ULL << 62, 8).message, "tensor '0.dense.W': dimensions too large for the 204-byte file"));
  EXPECT_TRUE(contains(with(24, 1ULL << 40, 8).message, "corrupt header: 1099511627776 tensors cannot fit"));
  EXPECT_TRUE(contains(with(24, 3, 8).message, "unused bytes after the last tensor record"));
  EXPECT_TRUE(contains(with(24, 5, 8).message, "truncated: tensor kind"));
  Bytes renamed = body;
  renamed[48] = 'b';  // "0.dense.W" -> "0.dense.b": now two records share a name
  EXPECT_TRUE(contains(load(model, reseal(renamed)).message, "tensor '0.dense.b' appears twice in the file"));
  for (const auto& o : {with(36, 0, 4), with(49, 9, 4), load(model, reseal(renamed))}) {
    EXPECT_EQ(o.type, "FormatError");
    EXPECT_TRUE(o.unchanged);
  }
}

// Dimensions are unsigned 64-bit in the file: a crafted record prints them unsigned and is refused when one
// exceeds INT64_MAX (a model's Index) or when their product overflows, even with a zero dimension (no values).
TEST(WeightsLoadErrors, HugeDimensionsArePrintedUnsignedAndRefused) {
  // A float32 file with one tensor "x" (no values: one dimension is 0, or the file is too short).
  auto file_with_dims = [](const std::vector<std::uint64_t>& dims) {
    detail::ByteWriter w;
    w.raw("SEQATTNW", 8);
    w.u32(1);
    w.u32(1);
    w.u64(0);
    w.u64(1);
    w.u32(0);
    w.u32(1);
    w.raw("x", 1);
    w.u32(static_cast<std::uint32_t>(dims.size()));
    for (auto d : dims) w.u64(d);
    return reseal(w.bytes());
  };
  auto model = small_model<float>(1);
  const std::uint64_t big = 1ULL << 63;  // INT64_MAX + 1
  const LoadOutcome huge = load(model, file_with_dims({0, big, big}));
  EXPECT_EQ(huge.type, "FormatError") << huge.message;
  EXPECT_TRUE(contains(huge.message,
                       "load_weights(stream): tensor 'x': dimension 1 of shape (0, 9223372036854775808, "
                       "9223372036854775808) is 9223372036854775808, more than the largest supported "
                       "9223372036854775807"))
      << huge.message;
  EXPECT_FALSE(contains(huge.message, "-9223372036854775808")) << huge.message;
  EXPECT_TRUE(huge.unchanged);

  const LoadOutcome product = load(model, file_with_dims({1ULL << 62, 0, 4}));
  EXPECT_EQ(product.type, "FormatError") << product.message;
  EXPECT_TRUE(contains(product.message,
                       "tensor 'x': the product of the dimensions of shape (4611686018427387904, 0, "
                       "4) overflows a 64-bit count"))
      << product.message;

  const LoadOutcome large = load(model, file_with_dims({3, 1ULL << 62}));
  EXPECT_EQ(large.type, "FormatError") << large.message;
  EXPECT_TRUE(contains(large.message,
                       "tensor 'x': dimensions too large for the 65-byte file: shape (3, "
                       "4611686018427387904) of 4-byte values needs more than the 0 bytes that remain"))
      << large.message;

  // The largest dimension that is a count passes the file checks; then the model mismatch prints it unsigned.
  const LoadOutcome max = load(model, file_with_dims({0, 9223372036854775807ULL}));
  EXPECT_EQ(max.type, "MismatchError") << max.message;
  EXPECT_TRUE(contains(max.message,
                       "the file has tensor 'x' (parameter, shape (0, 9223372036854775807)) that the "
                       "model does not have"))
      << max.message;
}
