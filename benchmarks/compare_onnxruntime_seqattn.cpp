// compare_onnxruntime_seqattn: the seqattn side of benchmarks/compare_onnxruntime.py (ONNX Runtime against
// seqattn's predict on the example classifier of classifier_model.hpp). Not a Google Benchmark: the script
// launches it, writes the model for torch.onnx.export and times it in rounds alternating with ONNX Runtime.
//
//   compare_onnxruntime_seqattn --export DIR
//       DIR/classifier.safetensors   the classifier's weights (PyTorch names, io/safetensors.hpp)
//       DIR/x_b<B>.f32               the input x (B, 128, 8) for B = 1 and 64, float32 row-major, uniform [-1, 1)
//       DIR/y_b<B>.f32               seqattn's predict(x): logits (B, 1, 2)
//   compare_onnxruntime_seqattn --serve
//       reads lines "B THREADS ITERATIONS" on stdin; for each, runs `ITERATIONS` predicts of x (B, 128, 8)
//       with seqattn::set_num_threads(THREADS) and answers "WALL CPU" (seconds per predict, wall and process
//       CPU time); the first request of a batch size also warms it up (buffers sized, pages touched).
#include <time.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <string>

#include "classifier_model.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/core/threads.hpp"
#include "seqattn/io/safetensors.hpp"

namespace {

constexpr seqattn::Index kT = 128, kFeatures = 8;

// x (B, T, 8), uniform in [-1, 1), seeded by the batch size: the same input in every mode.
seqattn::Tensor3<float> input(seqattn::Index B) {
  seqattn::Rng rng(1000 + static_cast<std::uint64_t>(B));
  seqattn::Tensor3<float> x(B, kT, kFeatures);
  for (seqattn::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.uniform(-1.0, 1.0));
  return x;
}

void write_f32(const std::string& path, const seqattn::Tensor3<float>& t) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(t.data()), static_cast<std::streamsize>(t.size() * sizeof(float)));
  if (!out) throw std::runtime_error("cannot write " + path);
}

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  seqattn::Sequential<float> model = seqattn_bench::make_classifier();
  if (mode == "--export" && argc == 3) {
    const std::string dir = argv[2];
    seqattn::save_safetensors(model, dir + "/classifier.safetensors");
    for (seqattn::Index B : {1, 64}) {
      const seqattn::Tensor3<float> x = input(B);
      write_f32(dir + "/x_b" + std::to_string(B) + ".f32", x);
      write_f32(dir + "/y_b" + std::to_string(B) + ".f32", model.predict(x));
    }
    std::printf("wrote %s/classifier.safetensors, x_b1.f32, y_b1.f32, x_b64.f32, y_b64.f32\n", dir.c_str());
    return 0;
  }
  if (mode == "--serve" && argc == 2) {
    std::map<seqattn::Index, seqattn::Tensor3<float>> inputs;
    long B = 0, threads = 0, iterations = 0;
    while (std::cin >> B >> threads >> iterations) {
      seqattn::set_num_threads(static_cast<int>(threads));
      auto it = inputs.find(B);
      if (it == inputs.end()) {
        it = inputs.emplace(B, input(B)).first;
        model.predict(it->second);
      }
      const double cpu0 = cpu_seconds();
      const auto start = std::chrono::steady_clock::now();
      for (long i = 0; i < iterations; ++i) model.predict(it->second);
      const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::printf("%.9g %.9g\n", wall / static_cast<double>(iterations),
                  (cpu_seconds() - cpu0) / static_cast<double>(iterations));
      std::fflush(stdout);
    }
    return 0;
  }
  std::fprintf(stderr, "usage: %s --export DIR | --serve\n", argv[0]);
  return 2;
}
