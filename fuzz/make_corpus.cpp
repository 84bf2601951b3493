// Writes the seed corpora of the fuzz targets: fuzz/make_corpus <dir> fills <dir>/weights, <dir>/model,
// <dir>/safetensors and <dir>/checkpoint with small valid files of the fuzzed models and a few near misses, <dir>/ucr
// with UCR text, .ts and .arff files, <dir>/idx with IDX files and <dir>/options with command lines (fuzz/run.sh runs
// it; the output is also committed under fuzz/corpus/). Seeds of fuzz_weights, fuzz_model and fuzz_checkpoint start
// with their switch byte, those of fuzz_ucr with its format byte (bit 0: .ts, bit 1: classes given, bit 2: .arff),
// those of fuzz_idx with the image limit; the arguments of an options seed are separated by NUL bytes. The weights
// and safetensors seeds include a file holding a NaN / Inf (written with allow_non_finite) and a tensor with
// dimensions (0, 2^63, 2^63).
#include <sys/stat.h>

#include <cstring>
#include <fstream>
#include <initializer_list>
#include <iostream>
#include <limits>
#include <sstream>
#include <string>

#include "checkpoint_model.hpp"
#include "fuzz_models.hpp"
#include "model_file_model.hpp"
#include "safetensors_model.hpp"
#include "seqattn/io/checkpoint.hpp"
#include "seqattn/io/model_file.hpp"
#include "seqattn/io/safetensors.hpp"
#include "seqattn/io/weights.hpp"
#include "weights_model.hpp"

namespace {

void write(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out << bytes;
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::string safetensors_of(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xFF);
  return out + header + data;
}

// Bytes as a string (the seeds are strings).
std::string str(const std::vector<unsigned char>& bytes) { return std::string(bytes.begin(), bytes.end()); }

// The checkpoint `bytes` with its checksum recomputed (after an edit).
std::vector<unsigned char> resealed(std::vector<unsigned char> bytes) {
  bytes.resize(bytes.size() - 8);
  seqattn::detail::checkpoint::put_u64(bytes, seqattn::detail::checkpoint::fnv1a(bytes.data(), bytes.size()));
  return bytes;
}

// The checkpoint `bytes` with its JSON header replaced by edit(header), sizes and checksum correct.
template <class Edit>
std::vector<unsigned char> with_header(const std::vector<unsigned char>& bytes, Edit edit) {
  namespace ck = seqattn::detail::checkpoint;
  const std::uint64_t n = ck::get_u64(bytes.data() + 16);
  const auto json_end = bytes.begin() + 24 + static_cast<std::ptrdiff_t>(n);
  nlohmann::json head = nlohmann::json::parse(bytes.begin() + 24, json_end);
  edit(head);
  const std::string js = head.dump();
  std::vector<unsigned char> out(bytes.begin(), bytes.begin() + 16);
  ck::put_u64(out, js.size());
  out.insert(out.end(), js.begin(), js.end());
  out.insert(out.end(), json_end, bytes.end());
  return resealed(out);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: make_corpus <corpus dir>\n";
    return 2;
  }
  const std::string dir = argv[1];
  mkdir(dir.c_str(), 0755);
  mkdir((dir + "/weights").c_str(), 0755);
  mkdir((dir + "/safetensors").c_str(), 0755);

  auto wmodel = seqattn::fuzzing::weights_model();
  std::stringstream w;
  seqattn::save_weights(wmodel, w);
  const std::string file = w.str();
  write(dir + "/weights/valid", std::string(1, '\0') + file);
  write(dir + "/weights/valid_resealed", std::string(1, '\1') + file);
  write(dir + "/weights/truncated", std::string(1, '\0') + file.substr(0, 60));
  seqattn::Sequential<double> dbl(2);
  dbl.add<seqattn::Dense<double>>(2, seqattn::DenseOptions().seed(1));
  std::stringstream d;
  seqattn::save_weights(dbl, d);
  write(dir + "/weights/other_model_double", std::string(1, '\1') + d.str());

  write(dir + "/weights/valid_from_file", std::string(1, '\2') + file);
  // A valid file holding a NaN (written with allow_non_finite) and a record with dimensions (0, 2^63, 2^63).
  auto nan_model = seqattn::fuzzing::weights_model();
  nan_model.params()[0].value[1] = std::numeric_limits<float>::quiet_NaN();
  std::stringstream nan_file;
  seqattn::save_weights(nan_model, nan_file, seqattn::WeightsOptions().allow_non_finite(true));
  write(dir + "/weights/nan_value", std::string(1, '\0') + nan_file.str());
  write(dir + "/weights/nan_value_from_file", std::string(1, '\2') + nan_file.str());
  seqattn::detail::ByteWriter huge;
  huge.raw("SEQATTNW", 8);
  for (std::uint32_t v : {1u, 1u}) huge.u32(v);
  for (std::uint64_t v : {0ull, 1ull}) huge.u64(v);
  for (std::uint32_t v : {0u, 1u}) huge.u32(v);
  huge.raw("x", 1);
  huge.u32(3);
  for (std::uint64_t v : {0ull, 1ull << 63, 1ull << 63}) huge.u64(v);
  huge.u32(0);  // checksum: the switch byte 1 makes the target seal it
  write(dir + "/weights/huge_dimensions", std::string(1, '\1') + std::string(huge.bytes().begin(), huge.bytes().end()));

  // Model files: the switch byte of fuzz_model (bit 0 reseal, bit 1 from a file, bit 2 as double).
  mkdir((dir + "/model").c_str(), 0755);
  auto mmodel = seqattn::fuzzing::model_file_model();
  std::stringstream m;
  seqattn::save_model(mmodel, m);
  const std::string model_file = m.str();
  write(dir + "/model/valid", std::string(1, '\0') + model_file);
  write(dir + "/model/valid_resealed", std::string(1, '\1') + model_file);
  write(dir + "/model/valid_from_file", std::string(1, '\2') + model_file);
  write(dir + "/model/valid_as_double", std::string(1, '\5') + model_file);
  write(dir + "/model/truncated", std::string(1, '\0') + model_file.substr(0, 200));
  std::stringstream mw;
  auto small = seqattn::fuzzing::weights_model();
  seqattn::save_model(small, mw);
  write(dir + "/model/weights_model", std::string(1, '\1') + mw.str());
  write(dir + "/model/weights_file", std::string(1, '\0') + file);
  // A graph model file (load_graph): as it is, from a file, as double.
  auto gmodel = seqattn::fuzzing::graph_file_model();
  std::stringstream g;
  seqattn::save_model(gmodel, g);
  const std::string graph_file = g.str();
  write(dir + "/model/graph", std::string(1, '\0') + graph_file);
  write(dir + "/model/graph_from_file", std::string(1, '\2') + graph_file);
  write(dir + "/model/graph_as_double", std::string(1, '\4') + graph_file);

  auto smodel = seqattn::fuzzing::safetensors_model();
  std::stringstream s;
  seqattn::save_safetensors(smodel, s);
  write(dir + "/safetensors/valid", s.str());
  write(dir + "/safetensors/empty_header", safetensors_of("{}", ""));
  write(dir + "/safetensors/metadata_only", safetensors_of("{\"__metadata__\":{\"format\":\"pt\"}}", ""));
  auto snan = seqattn::fuzzing::safetensors_model();
  snan.params()[0].value[2] = std::numeric_limits<float>::infinity();
  std::stringstream snan_file;
  seqattn::save_safetensors(snan, snan_file, seqattn::SafetensorsOptions().allow_non_finite(true));
  write(dir + "/safetensors/inf_value", snan_file.str());
  write(dir + "/safetensors/huge_dimensions",
        safetensors_of("{\"x\":{\"dtype\":\"F32\",\"shape\":[0,9223372036854775808,9223372036854775808],"
                       "\"data_offsets\":[0,0]}}",
                       ""));
  write(dir + "/safetensors/half_and_int",
        safetensors_of("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                       "\"n\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[4,12]}}",
                       std::string("\x00\x3c\x00\xc0\x05\x00\x00\x00\x00\x00\x00\x00", 12)));
  // Checkpoints: the switch byte of fuzz_checkpoint (bit 0 reseal, bit 1 from a file, bit 2 SGD instead of Adam).
  // Written from a model and optimizers in another state (set_trained_state), so that a restore changes every
  // value of the target.
  mkdir((dir + "/checkpoint").c_str(), 0755);
  auto cmodel = seqattn::fuzzing::weights_model();
  auto adam = seqattn::fuzzing::checkpoint_adam(cmodel);
  seqattn::fuzzing::set_trained_state(cmodel, adam, 3, 0.005);
  seqattn::TrainingProgress progress{2, 5, 17, {{"best", 0.75}, {"schedule", {1, 2, 3}}, {"name", "run"}}};
  const auto adam_ckpt = seqattn::encode_checkpoint(cmodel, adam, progress);
  write(dir + "/checkpoint/valid", std::string(1, '\0') + str(adam_ckpt));
  write(dir + "/checkpoint/valid_resealed", std::string(1, '\1') + str(adam_ckpt));
  write(dir + "/checkpoint/valid_from_file", std::string(1, '\2') + str(adam_ckpt));
  auto smodel_ck = seqattn::fuzzing::weights_model();
  auto sgd = seqattn::fuzzing::checkpoint_sgd(smodel_ck);
  seqattn::fuzzing::set_trained_state(smodel_ck, sgd, 2, 0.05);
  const seqattn::TrainingProgress sgd_progress{1, 0, 2, nlohmann::json::object()};
  const auto sgd_ckpt = seqattn::encode_checkpoint(smodel_ck, sgd, sgd_progress);
  write(dir + "/checkpoint/sgd", std::string(1, '\4') + str(sgd_ckpt));
  write(dir + "/checkpoint/sgd_from_file", std::string(1, '\6') + str(sgd_ckpt));
  // Near misses: truncated, another magic (resealed), the other optimizer, 8-byte values, a model of another
  // architecture, a negative epoch, and values that only the optimizer's load_state refuses (a negative lr, a
  // momentum_started of 2: regressions, the model was assigned before load_state refused them).
  write(dir + "/checkpoint/truncated", std::string(1, '\0') + str(adam_ckpt).substr(0, 120));
  auto bad_magic = adam_ckpt;
  bad_magic[8] = 'X';
  write(dir + "/checkpoint/bad_magic", std::string(1, '\1') + str(bad_magic));
  write(dir + "/checkpoint/adam_into_sgd", std::string(1, '\4') + str(adam_ckpt));
  seqattn::Sequential<double> dmodel(2);
  dmodel.add<seqattn::Dense<double>>(2, seqattn::DenseOptions().seed(1));
  dmodel.add<seqattn::BatchNorm<double>>();
  dmodel.add<seqattn::Dense<double>>(1, seqattn::DenseOptions().seed(2));
  seqattn::Adam<double> dadam(dmodel.params(), seqattn::AdamOptions().lr(0.01));
  write(dir + "/checkpoint/double_values",
        std::string(1, '\0') + str(seqattn::encode_checkpoint(dmodel, dadam, seqattn::TrainingProgress{})));
  auto other = seqattn::fuzzing::weights_model();
  other.add<seqattn::Dense<float>>(3, seqattn::DenseOptions().seed(3));
  seqattn::Adam<float> other_adam(other.params());
  write(dir + "/checkpoint/other_model",
        std::string(1, '\0') + str(seqattn::encode_checkpoint(other, other_adam, seqattn::TrainingProgress{})));
  write(dir + "/checkpoint/negative_lr",
        std::string(1, '\0') + str(with_header(adam_ckpt, [](nlohmann::json& h) { h["optimizer"]["lr"] = -1.0; })));
  // Regressions: a float count (its conversion was undefined), `extra` nested 300 deep (its copy recursed without
  // limit) and tensors that each fit in the file but not all together (each was allocated before the size check).
  write(dir + "/checkpoint/float_epoch",
        std::string(1, '\0') + str(with_header(adam_ckpt, [](nlohmann::json& h) { h["progress"]["epoch"] = 1e30; })));
  write(dir + "/checkpoint/deep_extra", std::string(1, '\0') + str(with_header(adam_ckpt, [](nlohmann::json& h) {
                                          nlohmann::json deep = 0;
                                          for (int i = 0; i < 300; ++i) deep = nlohmann::json::array({deep});
                                          h["progress"]["extra"] = deep;
                                        })));
  write(dir + "/checkpoint/tensors_beyond_file",
        std::string(1, '\0') + str(with_header(adam_ckpt, [](nlohmann::json& h) {
          for (auto& t : h["optimizer"]["tensors"]) t["size"] = 400;
        })));
  write(dir + "/checkpoint/negative_epoch",
        std::string(1, '\0') + str(with_header(adam_ckpt, [](nlohmann::json& h) { h["progress"]["epoch"] = -1; })));
  auto started_2 = sgd_ckpt;  // momentum_started: the last tensor, one float per parameter, before the checksum
  const float two = 2.0f;
  std::memcpy(started_2.data() + started_2.size() - 8 - sizeof(float), &two, sizeof two);
  write(dir + "/checkpoint/momentum_started_2", std::string(1, '\4') + str(resealed(started_2)));

  for (const char* sub : {"/ucr", "/idx", "/options"}) mkdir((dir + sub).c_str(), 0755);
  write(dir + "/ucr/tsv", std::string(1, '\0') + "1\t0.5\t1.5\t-2\n2\t1e3\t4\tNaN\n\n1.0000e+00\t3\t2\t1\n");
  write(dir + "/ucr/csv_classes", std::string(1, '\2') + "A,1,2,3\n3.5,4,5,?\n");
  write(dir + "/ucr/ts_multivariate",
        std::string(1, '\1') + "# comment\n@problemName demo\n@univariate false\n@dimensions 2\n@equalLength false\n"
        "@classLabel true a b\n@data\n1,2,3:4,5,6:a\n7,8:9,10:b\n");
  write(dir + "/ucr/ts_errors", std::string(1, '\1') + "@timeStamps true\n@data\n(1,2):a\n");
  write(dir + "/ucr/bom_tsv", std::string(1, '\0') + "\xEF\xBB\xBF" + "1\t0.5\t1.5\n2\t1\t4\n1\t3\t2\n");
  write(dir + "/ucr/bom_ts", std::string(1, '\0') + "\xEF\xBB\xBF" + "@classLabel true a b\n@data\n1,2:a\n3,4:b\n");
  write(dir + "/ucr/utf16", std::string(1, '\0') + std::string("\xFF\xFE\x31\0,\0\x32\0\n\0", 10));
  write(dir + "/ucr/no_label", std::string(1, '\0') + "0.4213\t0.5\t1.5\n-0.1\t1\t4\n0.7\t3\t2\n");
  write(dir + "/ucr/ts_percent_missing",
        std::string(1, '\1') +
            "% Weka-style comment\n@problemName m\n@timeStamps false\n@missing true\n"
            "@univariate false\n@dimensions 2\n@equalLength true\n@seriesLength 4\n@classLabel true up down\n@data\n"
            "% comment in the data\n1,?,3,NaN:?,?,?,?:up\n1,2,3,?:4,5,6,7:down\n");
  write(dir + "/ucr/ts_unequal_missing",
        std::string(1, '\0') + "%c\n@equalLength false\n@seriesLength 5\n@data\n1,?,3,?,?:walk\n?,2:run\n");
  write(dir + "/ucr/arff_univariate",
        std::string(1, '\4') +
            "% comment\n@RELATION 'toy data'\n@attribute att1 numeric\n@attribute 'att 2' REAL\n"
            "@attribute att3 numeric\n@attribute target {\"big one\",'b',3.0}\n\n@data\n1,?,3,'b'\n4,5,?,\"big one\"\n"
            "7,8,9,3\n");
  write(dir + "/ucr/arff_relational",
        std::string(1, '\4') +
            "@relation motions\n@attribute series relational\n@attribute t0 numeric\n"
            "@attribute t1 numeric\n@attribute t2 numeric\n@end series\n@attribute activity {walk,run}\n@data\n"
            "'1,2,3\\n4,5,6',run\n\"7,?,9\\n10,11,?\",walk\n");
  write(dir + "/ucr/arff_classes_bom", std::string(1, '\2') + "\xEF\xBB\xBF" +
                                           "%c\n@relation r\n@attribute a numeric\n@attribute b numeric\n"
                                           "@attribute y {\xEF\xBB\xBF" +
                                           "A,1}\n@data\n1,2,A\n3,4,\xEF\xBB\xBF" + "1\n");
  write(dir + "/ucr/arff_by_content",
        std::string(1, '\0') +
            "% no .arff name\n@relation r\n@attribute a numeric\n@attribute y {p,q}\n@data\n"
            "1,p\n{0 1,1 q}\n");
  write(dir + "/ucr/float_labels", std::string(1, '\0') + "  1.0000000e+00  0.5  1.5\n -1.0000000e+00  1  4\n");
  std::string images{'\0', '\0', '\0', '\x08', '\x03', 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 2};
  for (int i = 0; i < 12; ++i) images += static_cast<char>(i * 20);
  write(dir + "/idx/images", std::string(1, '\0') + images);
  write(dir + "/idx/images_limit", std::string(1, '\1') + images);
  write(dir + "/idx/labels", std::string(1, '\0') + std::string("\0\0\x08\x01\0\0\0\x03\x01\x02\x03", 11));
  write(dir + "/idx/truncated", std::string(1, '\0') + images.substr(0, 20));
  write(dir + "/idx/gzip", std::string("\0\x1f\x8b\x08\0", 5));
  const auto args = [](std::initializer_list<std::string> list) {
    std::string out;
    for (const auto& a : list) out += (out.empty() ? "" : std::string(1, '\0')) + a;
    return out;
  };
  write(dir + "/options/default", "");
  write(dir + "/options/help", args({"--help"}));
  write(dir + "/options/ucr", args({"--task", "ucr", "--train", "a.tsv", "--test", "b.tsv", "-e", "3"}));
  write(dir + "/options/self", args({"-a", "self", "-p", "weighted", "--units", "8", "--no-positional", "-T", "30"}));
  write(dir + "/options/mha", args({"--heads=4", "-d", "64", "--ffn", "128", "--lr", "0.001", "--seed", "7", "-b", "16"}));
  write(dir + "/options/bad", args({"--lr", "-1", "--epochs", "x", "--maps", "-3", "extra"}));
  write(dir + "/options/nonfinite", args({"--lr", "inf", "-e", "nan", "--seed", "-1"}));
  write(dir + "/options/partly_numeric", args({"--lr", "0.01x", "-b", "1e3", "--heads", "+-2"}));
  write(dir + "/options/heads_divisor", args({"-d", "30", "--heads", "4", "--task", "ucr", "--out", ""}));
  std::cout << "make_corpus: wrote seeds to " << dir << "/{weights,model,safetensors,checkpoint,ucr,idx,options}\n";
  return 0;
}
