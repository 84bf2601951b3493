#pragma once
// Reads the small reference files written by tests/reference/*.py (PyTorch computes them; the tests need no
// Python). Format, one tensor after another:
//   # comment lines
//   tensor <name> <ndim> <d0> ... <dn-1>
//   <values, whitespace separated, row-major, printed with 17 significant digits>

#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "seqattn/core/tensor.hpp"

namespace seqattn::testing {

class ReferenceData {
 public:
  explicit ReferenceData(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw std::runtime_error("reference data: cannot open " + path);
    std::string word;
    while (in >> word) {
      if (word[0] == '#') {
        std::getline(in, word);
        continue;
      }
      if (word != "tensor") throw std::runtime_error("reference data: expected 'tensor' in " + path + " got " + word);
      Entry e;
      std::string name;
      size_t ndim = 0;
      in >> name >> ndim;
      size_t n = 1;
      for (size_t i = 0; i < ndim; ++i) {
        Index d = 0;
        in >> d;
        e.shape.push_back(d);
        n *= static_cast<size_t>(d);
      }
      e.values.resize(n);
      for (auto& v : e.values) in >> v;
      if (!in) throw std::runtime_error("reference data: truncated tensor " + name + " in " + path);
      entries_[name] = std::move(e);
    }
  }

  bool has(const std::string& name) const { return entries_.count(name) != 0; }
  const std::vector<double>& values(const std::string& name) const { return entry(name).values; }
  const std::vector<Index>& shape(const std::string& name) const { return entry(name).shape; }

  // A 3-d entry as a Tensor3 (1-d and 2-d entries get leading dimensions of 1).
  template <class S>
  Tensor3<S> tensor(const std::string& name) const {
    const Entry& e = entry(name);
    std::vector<Index> s = e.shape;
    while (s.size() < 3) s.insert(s.begin(), 1);
    if (s.size() != 3) throw std::runtime_error("reference data: " + name + " is not 3-d");
    Tensor3<S> t(s[0], s[1], s[2]);
    for (size_t i = 0; i < e.values.size(); ++i) t.data()[i] = static_cast<S>(e.values[i]);
    return t;
  }
  // A 1-d or 2-d entry as a row-major matrix (1-d gives one column).
  template <class S>
  Matrix<S> matrix(const std::string& name) const {
    const Entry& e = entry(name);
    const Index rows = e.shape.empty() ? 1 : e.shape[0];
    const Index cols = e.shape.size() >= 2 ? static_cast<Index>(e.values.size()) / rows : 1;
    Matrix<S> m(rows, cols);
    for (size_t i = 0; i < e.values.size(); ++i) m.data()[i] = static_cast<S>(e.values[i]);
    return m;
  }

 private:
  struct Entry {
    std::vector<Index> shape;
    std::vector<double> values;
  };
  const Entry& entry(const std::string& name) const {
    auto it = entries_.find(name);
    if (it == entries_.end()) throw std::runtime_error("reference data: no tensor named " + name);
    return it->second;
  }
  std::map<std::string, Entry> entries_;
};

inline std::string data_path(const std::string& file) { return std::string(SEQATTN_TEST_DATA_DIR) + "/" + file; }

}  // namespace seqattn::testing
