// seqattn-model: look into, run and convert seqattn model files (io/model_file.hpp) from the command line.
//
//   seqattn-model info FILE                      the summary, parameter count, format version, scalar type,
//                                                the input and output shapes, and the file's metadata (JSON) if any
//   seqattn-model predict FILE INPUT.csv [--output OUT.csv] [--stream]
//                                                runs the model on one sequence (a CSV row per step, a column per
//                                                input feature; see csv.hpp) and writes its outputs as CSV (a row
//                                                per output step) to OUT.csv or standard output. --stream feeds
//                                                the steps one at a time through a stream (model/stream.hpp)
//                                                instead: a causal model gives every step's output as it arrives.
//   seqattn-model convert IN OUT [--float | --double]
//                                                writes IN as the model file OUT: IN is a model file (converted
//                                                between float and double), or a Keras model (.keras, .h5) when
//                                                the tool was built with the Keras importer (io/keras_import.hpp)
// Exit status: 0 on success, 1 on an error (its message on standard error), 2 on a usage error.

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "csv.hpp"
#include "seqattn/io/model_file.hpp"
#include "seqattn/seqattn.hpp"
#if defined(SEQATTN_TOOL_KERAS_IMPORT)
#include "seqattn/io/keras_import.hpp"
#endif

namespace {

using seqattn::Index;

int usage() {
  std::fprintf(stderr,
               "usage: seqattn-model info FILE\n"
               "       seqattn-model predict FILE INPUT.csv [--output OUT.csv] [--stream]\n"
               "       seqattn-model convert IN OUT [--float | --double]\n");
  return 2;
}

struct FileHeader {
  std::uint32_t version = 0, scalar = 0;
};

// The format version and scalar type of a model file (its first 16 bytes; load_model checks the rest).
FileHeader read_header(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw seqattn::FileError(path + ": cannot open the file for reading");
  unsigned char bytes[16] = {};
  in.read(reinterpret_cast<char*>(bytes), sizeof bytes);
  if (in.gcount() != static_cast<std::streamsize>(sizeof bytes) || std::memcmp(bytes, "SEQATTNM", 8) != 0)
    throw seqattn::FormatError(path + ": not a seqattn model file (it does not start with \"SEQATTNM\")");
  auto u32 = [&](int at) {
    return static_cast<std::uint32_t>(bytes[at]) | static_cast<std::uint32_t>(bytes[at + 1]) << 8 |
           static_cast<std::uint32_t>(bytes[at + 2]) << 16 | static_cast<std::uint32_t>(bytes[at + 3]) << 24;
  };
  return {u32(8), u32(12)};
}

bool is_double_file(const std::string& path) { return read_header(path).scalar == 2; }

// "T", "1" or "T - 4": the output time of the model for an input of T steps.
template <class S>
std::string out_time_text(const seqattn::Sequential<S>& model) {
  const Index a = model.out_time(100), b = model.out_time(200);
  if (a == 1 && b == 1) return "1";
  if (a == 100 && b == 200) return "T";
  if (b - a == 100) return a > 100 ? "T + " + std::to_string(a - 100) : "T - " + std::to_string(100 - a);
  return "out_time(T) (100 -> " + std::to_string(a) + ")";
}

template <class S>
int info(const std::string& path) {
  const FileHeader header = read_header(path);
  nlohmann::json metadata;
  seqattn::Sequential<S> model = seqattn::load_model<S>(path, &metadata);
  std::size_t params = 0;
  for (const auto& p : model.params()) params += static_cast<std::size_t>(p.size());
  std::printf("file: %s\nformat: seqattn model file, version %u, %s\n", path.c_str(), header.version,
              header.scalar == 2 ? "float64" : "float32");
  std::printf("input: (B, T, %lld)\noutput: (B, %s, %lld)\nparameters: %zu\n\n%s", static_cast<long long>(model.in_features()),
              out_time_text(model).c_str(), static_cast<long long>(model.out_features()), params,
              model.summary().c_str());
  if (!metadata.empty()) std::printf("metadata: %s\n", metadata.dump().c_str());
  return 0;
}

template <class S>
int predict(const std::string& path, const std::string& input, const std::string& output, bool stream) {
  seqattn::Sequential<S> model = seqattn::load_model<S>(path);
  const seqattn::Tensor3<S> x = seqattn_tool::read_steps<S>(input, model.in_features());
  seqattn::Tensor3<S> y;
  if (stream) {  // one step at a time; every step's output row
    seqattn::Stream<S> s = model.stream(1);
    y.resize(1, x.dimension(1), model.out_features());
    seqattn::Tensor3<S> step(1, 1, x.dimension(2));
    for (Index t = 0; t < x.dimension(1); ++t) {
      for (Index f = 0; f < x.dimension(2); ++f) step(0, 0, f) = x(0, t, f);
      const seqattn::Tensor3<S>& out = s.step(step);
      for (Index f = 0; f < out.dimension(2); ++f) y(0, t, f) = out(0, 0, f);
    }
  } else {
    y = model.predict(x);
  }
  if (output.empty()) {
    seqattn_tool::write_rows(std::cout, y);
    return 0;
  }
  std::ofstream out(output);
  if (!out) throw seqattn::FileError(output + ": cannot open the file for writing");
  seqattn_tool::write_rows(out, y);
  out.close();
  if (!out) throw seqattn::FileError(output + ": writing failed");
  return 0;
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

template <class S>
seqattn::Sequential<S> load_any(const std::string& in) {
  if (ends_with(in, ".keras") || ends_with(in, ".h5")) {
#if defined(SEQATTN_TOOL_KERAS_IMPORT)
    return seqattn::import_keras<S>(in);
#else
    throw seqattn::UsageError(in + ": this seqattn-model was built without the Keras importer (install libhdf5-dev "
                              "and libzip-dev, then rebuild)");
#endif
  }
  return seqattn::load_model<S>(in);
}

template <class S>
int convert(const std::string& in, const std::string& out) {
  seqattn::Sequential<S> model = load_any<S>(in);
  seqattn::save_model(model, out);
  std::printf("%s -> %s (%s)\n", in.c_str(), out.c_str(), sizeof(S) == 8 ? "float64" : "float32");
  return 0;
}

int run(const std::vector<std::string>& args) {
  if (args.empty()) return usage();
  const std::string& command = args[0];
  if (command == "info" && args.size() == 2) return is_double_file(args[1]) ? info<double>(args[1]) : info<float>(args[1]);
  if (command == "predict" && args.size() >= 3) {
    std::string output;
    bool stream = false;
    for (size_t i = 3; i < args.size(); ++i) {
      if (args[i] == "--output" && i + 1 < args.size())
        output = args[++i];
      else if (args[i] == "--stream")
        stream = true;
      else
        return usage();
    }
    return is_double_file(args[1]) ? predict<double>(args[1], args[2], output, stream)
                                   : predict<float>(args[1], args[2], output, stream);
  }
  if (command == "convert" && (args.size() == 3 || args.size() == 4)) {
    bool as_double = false;
    if (args.size() == 4) {
      if (args[3] == "--double")
        as_double = true;
      else if (args[3] != "--float")
        return usage();
    } else if (!ends_with(args[1], ".keras") && !ends_with(args[1], ".h5")) {
      as_double = is_double_file(args[1]);  // keep the scalar type of a model file
    }
    return as_double ? convert<double>(args[1], args[2]) : convert<float>(args[1], args[2]);
  }
  return usage();
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "seqattn-model: %s\n", e.what());
    return 1;
  }
}
