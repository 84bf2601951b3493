// Writes the seed corpora of the fuzz targets: fuzz/make_corpus <dir> fills <dir>/weights and
// <dir>/safetensors with small valid files of the fuzzed models and a few near misses (fuzz/run.sh runs it;
// the output is also committed under fuzz/corpus/). Seeds of fuzz_weights start with its switch byte.
#include <sys/stat.h>

#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "fuzz_models.hpp"
#include "seqattn/io/safetensors.hpp"
#include "seqattn/io/weights.hpp"

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

  auto smodel = seqattn::fuzzing::safetensors_model();
  std::stringstream s;
  seqattn::save_safetensors(smodel, s);
  write(dir + "/safetensors/valid", s.str());
  write(dir + "/safetensors/empty_header", safetensors_of("{}", ""));
  write(dir + "/safetensors/metadata_only", safetensors_of("{\"__metadata__\":{\"format\":\"pt\"}}", ""));
  write(dir + "/safetensors/half_and_int",
        safetensors_of("{\"a\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                       "\"n\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[4,12]}}",
                       std::string("\x00\x3c\x00\xc0\x05\x00\x00\x00\x00\x00\x00\x00", 12)));
  std::cout << "make_corpus: wrote seeds to " << dir << "/weights and " << dir << "/safetensors\n";
  return 0;
}
