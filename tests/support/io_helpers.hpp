#pragma once
// Test helpers for the io tests: snapshots of a model's weights (to prove a failed load changed nothing), the
// outcome of a load (error type, message, model unchanged), weights as bytes, re-sealing an edited weights file
// (new size field and checksum, so a test reaches the check after the checksum), scratch directories and files,
// a tensor's values by name and a scalar replaced in a file's bytes (files with NaN or Inf).

#include <dirent.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "seqattn/core/layer.hpp"
#include "seqattn/core/random.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/model/sequential.hpp"
#include "seqattn/io/detail/crc32.hpp"
#include "seqattn/io/errors.hpp"

namespace seqattn::testing {

// Dense(2 -> 2) and Dense(2 -> 1), both biases drawn uniform in [-1, 1]: the small model of the safetensors tests
// (0.weight (2, 2) = 0.dense.W transposed, 0.bias (2,), 1.weight (1, 2), 1.bias (1,)).
inline Sequential<float> two_dense_model(std::uint64_t seed) {
  Sequential<float> model(2);
  model.add<Dense<float>>(2, DenseOptions().seed(seed).bias_init(Init::uniform(-1, 1)));
  model.add<Dense<float>>(1, DenseOptions().seed(seed + 1).bias_init(Init::uniform(-1, 1)));
  return model;
}

// Every value of every parameter and buffer, in order, as raw bytes (bitwise comparison, NaN-safe).
template <class S>
std::vector<unsigned char> snapshot(Layer<S>& model) {
  std::vector<unsigned char> out;
  auto add = [&out](const ParamList<S>& list) {
    for (const auto& p : list) {
      const auto* b = reinterpret_cast<const unsigned char*>(p.value);
      out.insert(out.end(), b, b + p.size() * static_cast<Index>(sizeof(S)));
    }
  };
  add(model.params());
  add(model.buffers());
  return out;
}

// Sets every parameter to random values in [-1, 1) and every buffer to random values in [0.5, 1.5) (valid
// variances), so that no tensor keeps its initial value.
template <class S>
void scramble(Layer<S>& model, std::uint64_t seed) {
  Rng rng(seed);
  for (const auto& p : model.params())
    for (Index i = 0; i < p.size(); ++i) p.value[i] = static_cast<S>(rng.uniform(-1.0, 1.0));
  for (const auto& p : model.buffers())
    for (Index i = 0; i < p.size(); ++i) p.value[i] = static_cast<S>(rng.uniform(0.5, 1.5));
}

// What a load did: the type of the error it threw ("FormatError", "MismatchError", "Error", or "none" when it
// loaded), its message, and whether the model's weights are bitwise the same as before.
struct LoadOutcome {
  std::string type, message;
  bool unchanged = false;
};

// Runs `load` (which loads into `model`: from a stream, a file, any format) and reports its outcome; an error
// that is not a seqattn::Error propagates (the test fails).
template <class S, class Load>
LoadOutcome load_outcome(Layer<S>& model, Load&& load) {
  const auto before = snapshot(model);
  LoadOutcome out{"none", ""};
  try {
    load();
  } catch (const FormatError& e) {
    out = {"FormatError", e.what()};
  } catch (const MismatchError& e) {
    out = {"MismatchError", e.what()};
  } catch (const Error& e) {
    out = {"Error", e.what()};
  }
  out.unchanged = snapshot(model) == before;
  return out;
}

inline std::vector<unsigned char> to_bytes(const std::string& s) { return {s.begin(), s.end()}; }
inline std::string to_string(const std::vector<unsigned char>& b) { return {b.begin(), b.end()}; }

inline std::uint32_t get_u32(const std::vector<unsigned char>& b, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | b[at + static_cast<std::size_t>(i)];
  return v;
}
inline std::uint64_t get_u64(const std::vector<unsigned char>& b, std::size_t at) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | b[at + static_cast<std::size_t>(i)];
  return v;
}
inline void put_u32(std::vector<unsigned char>& b, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + static_cast<std::size_t>(i)] = static_cast<unsigned char>(v >> (8 * i));
}
inline void put_u64(std::vector<unsigned char>& b, std::size_t at, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + static_cast<std::size_t>(i)] = static_cast<unsigned char>(v >> (8 * i));
}

// After editing the body of a seqattn weights file (bytes before the checksum), rewrites its size field and
// checksum so that the file passes those two checks. `body` excludes the old checksum.
inline std::vector<unsigned char> reseal(std::vector<unsigned char> body) {
  put_u64(body, 16, body.size() + 4);
  const std::uint32_t crc = detail::crc32(body.data(), body.size());
  body.resize(body.size() + 4);
  put_u32(body, body.size() - 4, crc);
  return body;
}
inline std::vector<unsigned char> unseal(std::vector<unsigned char> file) {
  file.resize(file.size() - 4);
  return file;
}

// The value pointer of the tensor `name` among the parameters and buffers of `model` (throws when absent).
template <class S>
S* tensor_values(Layer<S>& model, const std::string& name) {
  for (const auto& list : {model.params(), model.buffers()})
    for (const auto& p : list)
      if (p.name == name) return p.value;
  throw std::runtime_error("tensor_values: no tensor '" + name + "'");
}

// Replaces the bytes of the scalar `from` in a file's bytes by those of `to` (e.g. a sentinel weight by NaN,
// to make a file with a non-finite value without going through a save); throws unless `from` occurs exactly
// once. Little-endian hosts, like the files.
template <class S>
void replace_scalar(std::vector<unsigned char>& bytes, S from, S to) {
  unsigned char f[sizeof(S)], t[sizeof(S)];
  std::memcpy(f, &from, sizeof(S));
  std::memcpy(t, &to, sizeof(S));
  std::size_t found = bytes.size(), count = 0;
  for (std::size_t i = 0; i + sizeof(S) <= bytes.size(); ++i)
    if (std::memcmp(bytes.data() + i, f, sizeof(S)) == 0) {
      found = i;
      ++count;
    }
  if (count != 1) throw std::runtime_error("replace_scalar: the value occurs " + std::to_string(count) + " times");
  std::memcpy(bytes.data() + found, t, sizeof(S));
}

// Writes `bytes` to the file `path` (replacing it), for the tests that load from a path instead of a stream.
inline void write_file(const std::string& path, const std::vector<unsigned char>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("write_file: cannot write " + path);
}

// A fresh empty directory under /tmp, removed (with its files) by the destructor.
class ScratchDir {
 public:
  ScratchDir() {
    char tmpl[] = "/tmp/seqattn_io_XXXXXX";
    const char* made = mkdtemp(tmpl);
    if (!made) throw std::runtime_error("mkdtemp failed");
    path_ = made;
  }
  ~ScratchDir() {
    for (const auto& f : files()) ::unlink((path_ + "/" + f).c_str());
    ::rmdir(path_.c_str());
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }
  // Names of the entries of the directory (without "." and "..").
  std::vector<std::string> files() const {
    std::vector<std::string> names;
    if (DIR* d = opendir(path_.c_str())) {
      while (dirent* e = readdir(d)) {
        const std::string n = e->d_name;
        if (n != "." && n != "..") names.push_back(n);
      }
      closedir(d);
    }
    return names;
  }

 private:
  std::string path_;
};

}  // namespace seqattn::testing
