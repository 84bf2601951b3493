#pragma once
/// \file
/// Read-only access to the parts of an HDF5 file that Keras writes, with the HDF5 C library (Debian libhdf5-dev,
/// the C and high-level libraries): string attributes (`model_config`, `weight_names`) and floating-point
/// datasets (the weights), from a file on disk (`.h5`) or from bytes in memory (`model.weights.h5` inside a
/// `.keras` zip).
///
/// ```unparsed
///   detail::keras::H5File file = H5File::open(path, who);  // FileError / FormatError
///   std::string config = file.string_attribute("/", "model_config");
///   std::vector<float> w = file.read_dataset<float>("/model_weights/dense/dense/kernel:0", {4, 3});
/// ```
/// Bounded: a dataset is read only when it is a floating-point dataset of exactly the expected shape (checked
/// before anything is allocated); a string attribute only when its size fits in the file. Every failure is a
/// FormatError starting with `who`. HDF5's own error printing is switched off for the duration of each call
/// (and restored). The HDF5 library of Debian is built without thread safety: do not import from two threads
/// at once.

#include <hdf5.h>
#include <hdf5_hl.h>

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "seqattn/core/tensor.hpp"
#include "seqattn/io/errors.hpp"

namespace seqattn {
namespace detail {
namespace keras {

// Switches off HDF5's automatic error printing for its lifetime (restores the previous handler).
class H5Quiet {
 public:
  H5Quiet() {
    H5Eget_auto2(H5E_DEFAULT, &func_, &data_);
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  }
  ~H5Quiet() { H5Eset_auto2(H5E_DEFAULT, func_, data_); }
  H5Quiet(const H5Quiet&) = delete;
  H5Quiet& operator=(const H5Quiet&) = delete;

 private:
  H5E_auto2_t func_ = nullptr;
  void* data_ = nullptr;
};

// An HDF5 identifier closed by `close` on destruction.
class H5Id {
 public:
  H5Id() = default;
  H5Id(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  ~H5Id() { reset(); }
  H5Id(H5Id&& o) noexcept : id_(o.id_), close_(o.close_) { o.id_ = -1; }
  H5Id& operator=(H5Id&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = o.id_;
      close_ = o.close_;
      o.id_ = -1;
    }
    return *this;
  }
  H5Id(const H5Id&) = delete;
  H5Id& operator=(const H5Id&) = delete;
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset() {
    if (id_ >= 0 && close_ != nullptr) close_(id_);
    id_ = -1;
  }

 private:
  hid_t id_ = -1;
  herr_t (*close_)(hid_t) = nullptr;
};

class H5File {
 public:
  // A file on disk: FormatError unless it starts with the HDF5 signature (checked first, so that HDF5 never
  // parses a file that is not one), FileError when it cannot be opened.
  static H5File open(const std::string& path, const std::string& who, std::uint64_t file_size) {
    H5File f;
    f.who_ = who;
    f.size_ = file_size;
    H5Quiet quiet;
    f.file_ = H5Id(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    if (!f.file_.valid()) throw_format(who, ": HDF5 cannot open the file (truncated or corrupt HDF5 file)");
    return f;
  }

  // An HDF5 file image in memory, opened through the core (memory) driver with HDF5's own copy of the bytes.
  // (Not H5LTopen_file_image: with DONT_COPY | DONT_RELEASE, HDF5 1.10 never frees its 72-byte callback data,
  // which LeakSanitizer reports at every import.)
  static H5File from_bytes(std::string bytes, const std::string& who) {
    H5File f;
    f.who_ = who;
    f.size_ = bytes.size();
    if (!has_signature(bytes)) throw_format(who, ": not an HDF5 file (no HDF5 signature)");
    H5Quiet quiet;
    H5Id fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
    if (!fapl.valid() || H5Pset_fapl_core(fapl.get(), 64 * 1024, 0) < 0 ||
        H5Pset_file_image(fapl.get(), &bytes[0], bytes.size()) < 0)
      throw_format(who, ": HDF5 cannot hold the file image in memory");
    f.file_ = H5Id(H5Fopen("keras_weights_image.h5", H5F_ACC_RDONLY, fapl.get()), H5Fclose);
    if (!f.file_.valid()) throw_format(who, ": HDF5 cannot open the file (truncated or corrupt HDF5 file)");
    return f;
  }

  static bool has_signature(const std::string& head) {
    static const char sig[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
    return head.size() >= 8 && head.compare(0, 8, std::string(sig, 8)) == 0;
  }

  const std::string& who() const { return who_; }

  bool exists(const std::string& path) const {
    H5Quiet quiet;
    return H5LTpath_valid(file_.get(), path.c_str(), 1) > 0;
  }

  bool has_attribute(const std::string& object, const std::string& name) const {
    H5Quiet quiet;
    if (object != "/" && H5LTpath_valid(file_.get(), object.c_str(), 1) <= 0) return false;
    return H5Aexists_by_name(file_.get(), object.c_str(), name.c_str(), H5P_DEFAULT) > 0;
  }

  // A string attribute, or an array of strings (fixed or variable length) as a vector.
  std::vector<std::string> string_attributes(const std::string& object, const std::string& name) const {
    H5Quiet quiet;
    const std::string what = cat("attribute '", name, "' of '", object, "'");
    if (!has_attribute(object, name)) throw_format(who_, ": ", what, " is missing");
    H5Id attr(H5Aopen_by_name(file_.get(), object.c_str(), name.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    if (!attr.valid()) throw_format(who_, ": cannot open ", what);
    H5Id type(H5Aget_type(attr.get()), H5Tclose);
    H5Id space(H5Aget_space(attr.get()), H5Sclose);
    if (!type.valid() || !space.valid()) throw_format(who_, ": cannot read ", what);
    const hssize_t n = H5Sget_simple_extent_npoints(space.get());
    if (n < 0 || static_cast<std::uint64_t>(n) > size_) throw_format(who_, ": ", what, " has an invalid size");
    std::vector<std::string> out;
    if (n == 0) return out;  // h5py writes an empty list as an empty float array
    if (H5Tget_class(type.get()) != H5T_STRING) throw_format(who_, ": ", what, " is not a string");
    const htri_t variable = H5Tis_variable_str(type.get());
    if (variable < 0) throw_format(who_, ": cannot read ", what);
    if (variable > 0) {
      H5Id mem(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(mem.get(), H5T_VARIABLE);
      H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
      std::vector<char*> ptrs(static_cast<size_t>(n), nullptr);
      const herr_t rc = H5Aread(attr.get(), mem.get(), ptrs.data());
      for (char* p : ptrs) {
        if (rc >= 0) out.emplace_back(p != nullptr ? p : "");
        if (p != nullptr) H5free_memory(p);
      }
      if (rc < 0) throw_format(who_, ": cannot read ", what);
      return out;
    }
    const size_t width = H5Tget_size(type.get());
    if (width == 0 || static_cast<std::uint64_t>(width) * static_cast<std::uint64_t>(n) > size_)
      throw_format(who_, ": ", what, " declares more bytes than the file has");
    std::string buf(width * static_cast<size_t>(n), '\0');
    H5Id mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem.get(), width);
    H5Tset_strpad(mem.get(), H5T_STR_NULLPAD);
    if (n > 0 && H5Aread(attr.get(), mem.get(), &buf[0]) < 0) throw_format(who_, ": cannot read ", what);
    for (hssize_t i = 0; i < n; ++i) {
      std::string s = buf.substr(static_cast<size_t>(i) * width, width);
      const size_t end = s.find('\0');
      if (end != std::string::npos) s.resize(end);
      out.push_back(std::move(s));
    }
    return out;
  }

  std::string string_attribute(const std::string& object, const std::string& name) const {
    std::vector<std::string> v = string_attributes(object, name);
    if (v.size() != 1) throw_format(who_, ": attribute '", name, "' of '", object, "' is not a single string");
    return v[0];
  }

  // The shape of a dataset (FormatError when it is not a floating-point dataset).
  std::vector<Index> dataset_shape(const std::string& path) const {
    H5Quiet quiet;
    H5Id ds = open_dataset(path);
    return shape_of(ds, path);
  }

  // A floating-point dataset of exactly `shape` (MismatchError otherwise, before reading), converted to S;
  // NonFiniteError for a NaN or Inf.
  template <class S>
  std::vector<S> read_dataset(const std::string& path, const std::vector<Index>& shape) const {
    H5Quiet quiet;
    H5Id ds = open_dataset(path);
    const std::vector<Index> found = shape_of(ds, path);
    if (found != shape)
      throw_mismatch(who_, ": weight '", path, "' expected shape ", shape_text(shape), " but the file has ",
                     shape_text(found));
    std::uint64_t count = 1;
    for (Index d : shape) count *= static_cast<std::uint64_t>(d);
    std::vector<S> values(static_cast<size_t>(count));
    const hid_t mem = sizeof(S) == sizeof(double) ? H5T_NATIVE_DOUBLE : H5T_NATIVE_FLOAT;
    if (count > 0 && H5Dread(ds.get(), mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, values.data()) < 0)
      throw_format(who_, ": cannot read weight '", path, "' (corrupt data)");
    for (size_t i = 0; i < values.size(); ++i)
      if (!std::isfinite(values[i]))
        throw_non_finite(who_, ": weight '", path, "' holds a non-finite value (", values[i], ") at element ", i);
    return values;
  }

  static std::string shape_text(const std::vector<Index>& shape) {
    std::string s = "(";
    for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
    return s + (shape.size() == 1 ? ",)" : ")");
  }

 private:
  H5Id open_dataset(const std::string& path) const {
    if (H5LTpath_valid(file_.get(), path.c_str(), 1) <= 0) throw_format(who_, ": weight '", path, "' is missing");
    H5Id ds(H5Dopen2(file_.get(), path.c_str(), H5P_DEFAULT), H5Dclose);
    if (!ds.valid()) throw_format(who_, ": '", path, "' is not a dataset");
    return ds;
  }

  std::vector<Index> shape_of(const H5Id& ds, const std::string& path) const {
    H5Id type(H5Dget_type(ds.get()), H5Tclose);
    if (!type.valid() || H5Tget_class(type.get()) != H5T_FLOAT)
      throw_format(who_, ": weight '", path, "' is not a floating-point dataset");
    H5Id space(H5Dget_space(ds.get()), H5Sclose);
    const int rank = space.valid() ? H5Sget_simple_extent_ndims(space.get()) : -1;
    if (rank < 0 || rank > 8) throw_format(who_, ": weight '", path, "' has an invalid rank");
    hsize_t dims[8] = {0};
    if (H5Sget_simple_extent_dims(space.get(), dims, nullptr) < 0)
      throw_format(who_, ": weight '", path, "' has an invalid shape");
    std::vector<Index> shape;
    for (int i = 0; i < rank; ++i) {
      if (dims[i] > static_cast<hsize_t>(size_) * 8 + 8)  // never a real size: refuse before any arithmetic
        throw_format(who_, ": weight '", path, "' declares a dimension of ", dims[i]);
      shape.push_back(static_cast<Index>(dims[i]));
    }
    return shape;
  }

  std::string who_;
  std::uint64_t size_ = 0;
  H5Id file_;
};

}  // namespace keras
}  // namespace detail
}  // namespace seqattn
