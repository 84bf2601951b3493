// Model-file metadata: a JSON object saved beside the model (class names, normalization) comes back from
// load_model_metadata, load_model(path, &metadata) and load_graph(path, &metadata); files without metadata give {};
// the metadata is covered by the checksum; a metadata value that is not an object is refused before anything is
// written; the model itself loads as without metadata.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "seqattn/io/model_file.hpp"
#include "seqattn/model/graph.hpp"
#include "support/error_text.hpp"
#include "support/io_helpers.hpp"

using namespace seqattn;
using seqattn::testing::ScratchDir;

namespace {

std::vector<unsigned char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

nlohmann::json class_map() {
  return {{"class_names", {"walking", "running", "badminton", "standing"}},
          {"input_mean", {0.25, -1.5e-3}},
          {"input_std", {1.0, 2.0}},
          {"recipe", {{"epochs", 30}, {"label_smoothing", 0.1}}}};
}

}  // namespace

TEST(ModelMetadata, RoundTripsWithTheModel) {
  ScratchDir dir;
  const std::string path = dir.file("model.sqm");
  Sequential<float> model = seqattn::testing::two_dense_model(3);
  save_model(model, path, class_map());
  EXPECT_EQ(load_model_metadata(path), class_map());
  nlohmann::json meta;
  Sequential<float> loaded = load_model<float>(path, &meta);
  EXPECT_EQ(meta, class_map());
  EXPECT_EQ(meta["class_names"][2], "badminton");
  Tensor3<float> x(2, 3, 2);
  x.setRandom();
  const Tensor3<float> expected = model.predict(x);
  const Tensor3<float> got = loaded.predict(x);
  ASSERT_EQ(got.size(), expected.size());
  for (Index i = 0; i < got.size(); ++i) EXPECT_EQ(got.data()[i], expected.data()[i]);
  // the plain load ignores the metadata
  Sequential<float> plain = load_model<float>(path);
  EXPECT_EQ(plain.describe(), model.describe());
}

TEST(ModelMetadata, FileWithoutMetadataGivesAnEmptyObject) {
  ScratchDir dir;
  const std::string path = dir.file("plain.sqm");
  Sequential<float> model = seqattn::testing::two_dense_model(4);
  save_model(model, path);
  EXPECT_EQ(load_model_metadata(path), nlohmann::json::object());
  nlohmann::json meta = {{"stale", 1}};
  load_model<float>(path, &meta);
  EXPECT_EQ(meta, nlohmann::json::object());
  // an empty object is not stored: the file is the one without metadata
  const std::string empty = dir.file("empty.sqm");
  save_model(model, empty, nlohmann::json::object());
  EXPECT_EQ(read_bytes(empty), read_bytes(path));
}

TEST(ModelMetadata, NonObjectIsRefusedAndNothingIsWritten) {
  ScratchDir dir;
  const std::string path = dir.file("model.sqm");
  Sequential<float> model = seqattn::testing::two_dense_model(5);
  for (const nlohmann::json& bad : {nlohmann::json::array({"a", "b"}), nlohmann::json("text"), nlohmann::json(3)}) {
    try {
      save_model(model, path, bad);
      ADD_FAILURE() << "accepted " << bad.dump();
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("save_model(" + path + "): the metadata must be a JSON object but got a"),
                std::string::npos)
          << e.what();
    }
    EXPECT_FALSE(std::ifstream(path).good()) << "a file was written for " << bad.dump();
  }
}

TEST(ModelMetadata, CorruptedMetadataFailsTheChecksum) {
  ScratchDir dir;
  const std::string path = dir.file("model.sqm");
  Sequential<float> model = seqattn::testing::two_dense_model(6);
  save_model(model, path, class_map());
  std::vector<unsigned char> bytes = read_bytes(path);
  const std::string text(bytes.begin(), bytes.end());
  const size_t at = text.find("badminton");
  ASSERT_NE(at, std::string::npos);
  bytes[at] = 'B';
  seqattn::testing::write_file(path, bytes);
  EXPECT_THROW(load_model_metadata(path), FormatError);
  EXPECT_THROW(load_model<float>(path), FormatError);
}

TEST(ModelMetadata, GraphFilesCarryMetadataToo) {
  ScratchDir dir;
  const std::string path = dir.file("graph.sqm");
  Graph<float> g({{"x", 3}});
  g.set_outputs({g.add<Dense<float>>("head", {g.input("x")}, 2, DenseOptions().seed(7))});
  save_model(g, path, nlohmann::json{{"classes", 2}});
  nlohmann::json meta;
  load_graph<float>(path, &meta);
  EXPECT_EQ(meta, (nlohmann::json{{"classes", 2}}));
  EXPECT_EQ(load_model_metadata(path), meta);
}
