// The IDX reader and the Fashion-MNIST loader of the time-series classifier example, on tiny files written
// here (built without zlib: compressed files get a message).
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "time_series_classifier/idx.hpp"

using namespace tsc;

namespace {

// IDX bytes: unsigned-byte type, the given dims, then `values` (not checked against dims: tests corrupt it).
std::vector<std::uint8_t> idx_bytes(const std::vector<std::uint32_t>& dims, const std::vector<std::uint8_t>& values) {
  std::vector<std::uint8_t> b = {0, 0, 0x08, static_cast<std::uint8_t>(dims.size())};
  for (std::uint32_t d : dims)
    for (int shift : {24, 16, 8, 0}) b.push_back(static_cast<std::uint8_t>(d >> shift));
  b.insert(b.end(), values.begin(), values.end());
  return b;
}

std::vector<std::uint8_t> iota_bytes(size_t n) {
  std::vector<std::uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::uint8_t>(i * 10);
  return v;
}

void write(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

std::string error_of(const std::vector<std::uint8_t>& bytes) {
  try {
    parse_idx(bytes, "f.idx");
  } catch (const DataError& e) {
    return e.what();
  }
  return "";
}

struct TempDir {
  std::string path = ::testing::TempDir() + "tsc_idx_test";
  TempDir() { std::filesystem::create_directories(path); }
  ~TempDir() { std::filesystem::remove_all(path); }
};

}  // namespace

TEST(ExampleIdx, ParsesDimsAndValues) {
  const IdxArray a = parse_idx(idx_bytes({2, 3, 4}, iota_bytes(24)), "f.idx");
  EXPECT_EQ(a.dims, (std::vector<Index>{2, 3, 4}));
  ASSERT_EQ(a.values.size(), 24u);
  EXPECT_EQ(a.values[23], 230);
}

TEST(ExampleIdx, ReportsMalformedFiles) {
  EXPECT_EQ(error_of({0, 0, 8}), "f.idx: not an IDX file: it has 3 bytes, fewer than the 4 of the header");
  EXPECT_EQ(error_of({1, 0, 8, 1, 0, 0, 0, 0}), "f.idx: not an IDX file: its first two bytes must be 0");
  EXPECT_EQ(error_of({0x1f, 0x8b, 8, 0}),
            "f.idx: not an IDX file: its first two bytes must be 0 but it is gzip-compressed (gunzip it first)");
  EXPECT_EQ(error_of({0, 0, 0x0D, 1, 0, 0, 0, 0}), "f.idx: IDX value type 13 is not supported (only 8, unsigned byte)");
  EXPECT_EQ(error_of({0, 0, 8, 0}), "f.idx: IDX files here have 1 to 4 dimensions but this one has 0");
  EXPECT_EQ(error_of({0, 0, 8, 2, 0, 0, 0, 1}), "f.idx: truncated header: 2 dimensions need 12 bytes but the file has 8");
  EXPECT_EQ(error_of(idx_bytes({2, 3, 4}, iota_bytes(23))),
            "f.idx: dimensions 2 x 3 x 4 need 24 values but the file has 23 after its header (truncated?)");
  EXPECT_EQ(error_of(idx_bytes({2, 3}, iota_bytes(7))),
            "f.idx: dimensions 2 x 3 need 6 values but the file has 7 after its header (trailing bytes)");
  EXPECT_EQ(error_of(idx_bytes({0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}, iota_bytes(5))),
            "f.idx: dimensions 4294967295 x 4294967295 x 4294967295 x 4294967295 need more than 5 values but the file "
            "has 5 after its header (truncated?)");
  EXPECT_EQ(error_of(idx_bytes({0, 3}, iota_bytes(1))),
            "f.idx: dimensions 0 x 3 need 0 values but the file has 1 after its header (trailing bytes)");
  EXPECT_EQ(parse_idx(idx_bytes({0, 3}, {}), "f.idx").values.size(), 0u);
}

TEST(ExampleIdx, LoadsFashionMnistLayoutAsSequences) {
  TempDir dir;
  // 3 images of 2 rows x 4 columns; labels 9, 0, 3.
  write(dir.path + "/train-images-idx3-ubyte", idx_bytes({3, 2, 4}, iota_bytes(24)));
  write(dir.path + "/train-labels-idx1-ubyte", idx_bytes({3}, {9, 0, 3}));
  EXPECT_FALSE(fashion_mnist_available(dir.path));  // no t10k files yet
  write(dir.path + "/t10k-images-idx3-ubyte", idx_bytes({1, 2, 4}, iota_bytes(8)));
  write(dir.path + "/t10k-labels-idx1-ubyte", idx_bytes({1}, {5}));
  EXPECT_TRUE(fashion_mnist_available(dir.path));

  const Dataset d = load_fashion_mnist(dir.path, "train");
  ASSERT_EQ(d.size(), 3);
  EXPECT_EQ(d.steps(), 2);     // rows are time
  EXPECT_EQ(d.features(), 4);  // columns are features
  EXPECT_EQ(d.labels, (std::vector<int>{9, 0, 3}));
  EXPECT_EQ(d.class_names[9], "Ankle boot");
  EXPECT_FLOAT_EQ(d.x(1, 1, 2), 140.0f / 255.0f);  // image 1, row 1, column 2 = byte 8 + 4 + 2
  EXPECT_EQ(load_fashion_mnist(dir.path, "train", 2).size(), 2);
  EXPECT_EQ(load_fashion_mnist(dir.path, "t10k").labels, (std::vector<int>{5}));
}

TEST(ExampleIdx, ExplainsMissingAndInconsistentFashionMnistFiles) {
  TempDir dir;
  try {
    load_fashion_mnist(dir.path, "train");
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("Fashion-MNIST not found: neither " + dir.path + "/train-images-idx3-ubyte nor"), std::string::npos) << m;
    EXPECT_NE(m.find("apt-get install dataset-fashion-mnist"), std::string::npos) << m;
  }
  write(dir.path + "/train-images-idx3-ubyte", idx_bytes({3, 2, 4}, iota_bytes(24)));
  write(dir.path + "/train-labels-idx1-ubyte", idx_bytes({2}, {1, 2}));
  EXPECT_THROW(
      {
        try {
          load_fashion_mnist(dir.path, "train");
        } catch (const DataError& e) {
          EXPECT_NE(std::string(e.what()).find("train-labels-idx1-ubyte: 2 labels but"), std::string::npos) << e.what();
          throw;
        }
      },
      DataError);
  write(dir.path + "/train-labels-idx1-ubyte", idx_bytes({3}, {1, 12, 2}));
  try {
    load_fashion_mnist(dir.path, "train");
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("label 12 of item 1 is not a class index below 10"), std::string::npos);
  }
#ifndef TSC_HAVE_ZLIB
  write(dir.path + "/x.gz", {0x1f, 0x8b, 8, 0, 0, 0});
  try {
    read_idx(dir.path + "/x.gz");
    FAIL() << "expected DataError";
  } catch (const DataError& e) {
    EXPECT_NE(std::string(e.what()).find("built without zlib (gunzip it first)"), std::string::npos) << e.what();
  }
#endif
}
