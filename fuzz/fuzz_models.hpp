#pragma once
// The fuzz targets' helpers: snapshot (bitwise), all_finite, a scratch file for the path overloads. The models
// they load into are in weights_model.hpp, safetensors_model.hpp and model_file_model.hpp (one each, so a target
// compiles only its own layers), shared with fuzz/make_corpus.cpp (which writes their files as seeds).

#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "seqattn/core/layer.hpp"

namespace seqattn::fuzzing {

inline std::vector<unsigned char> snapshot(Layer<float>& model) {
  std::vector<unsigned char> out;
  for (const auto& list : {model.params(), model.buffers()})
    for (const auto& p : list) {
      const auto* b = reinterpret_cast<const unsigned char*>(p.value);
      out.insert(out.end(), b, b + p.size() * static_cast<Index>(sizeof(float)));
    }
  return out;
}

// True when no parameter or buffer holds a NaN or Inf.
inline bool all_finite(Layer<float>& model) {
  for (const auto& list : {model.params(), model.buffers()})
    for (const auto& p : list)
      for (Index i = 0; i < p.size(); ++i)
        if (!std::isfinite(p.value[i])) return false;
  return true;
}

// A scratch file of this process (the targets' path overloads): created, then unlinked at once and reached
// through /proc/self/fd (Linux), so that nothing is left behind when libFuzzer ends the process with _Exit.
inline const std::string& scratch_path() {
  static const std::string path = [] {
    char name[] = "/tmp/seqattn_fuzz_XXXXXX";
    const int fd = mkstemp(name);
    if (fd < 0) std::abort();
    unlink(name);
    return "/proc/self/fd/" + std::to_string(fd);
  }();
  return path;
}

inline void write_scratch(const std::uint8_t* data, std::size_t size) {
  std::ofstream out(scratch_path(), std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  if (!out) std::abort();
}

}  // namespace seqattn::fuzzing
