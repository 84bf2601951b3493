#pragma once
// Checks of a run of the time-series classifier, so that it fails at once, never after training:
//
//   check_before_loading(options)          before any data is read: --train and --test can be opened (not a
//                                          directory, not missing, readable: the message names the file and the
//                                          system's reason), and the output directory --out is usable: it is
//                                          created now (it stays, empty, if the run fails later), it is not an
//                                          existing file, a file can be written in it, and <out>/model.sqm is not
//                                          a directory
//   check_before_training(options, train, test)   after loading, before standardizing and training: the test
//                                          set fits the training set (check_compatible in data.hpp: features,
//                                          classes); returns notes to print (test sequences longer than any
//                                          training sequence). Checks that need the data and the model
//                                          configuration belong here.
//   check_memory(config, batch, steps)     the model's caches for `batch` sequences of `steps` steps (the longest
//                                          in the data) against seqattn::memory_limit(): DataError suggesting the
//                                          largest --batch-size that fits, or -a self --width W, instead of
//                                          dying with std::bad_alloc in the middle of training
//   save_classifier(net, path, metadata)   the model file (io/model_file.hpp: architecture, weights and the
//                                          metadata: class names, input normalization, the options), but refuses a
//                                          model holding NaN or Inf (nothing written)
//
// Errors are DataError (files, data) or TrainingError (a non-finite model), naming the option and the file:
//   "--out tsc_out: exists and is not a directory"
//   "--train data/GunPoint: is a directory, not a data file"
// tests/unit/test_example_checks.cpp tests them.

#include <seqattn/io/model_file.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#include "data.hpp"
#include "options.hpp"
#include "train.hpp"
#include "ucr.hpp"

namespace tsc {

// DataError "<option> <file>: <reason>" unless the data file can be opened for reading.
inline void check_input_file(const std::string& option, const std::string& path) {
  try {
    open_data_file(path);
  } catch (const DataError& e) {
    throw DataError(option + " " + e.what());
  }
}

// Creates the output directory `out` (and its parents) if needed and checks that files can be written in it.
inline void check_output_dir(const std::string& out) {
  namespace fs = std::filesystem;
  const std::string who = "--out " + out;
  std::error_code ec;
  const fs::file_status status = fs::status(out, ec);
  if (fs::exists(status) && !fs::is_directory(status)) throw DataError(who + ": exists and is not a directory");
  if (!fs::exists(status)) {
    fs::create_directories(out, ec);
    if (ec) throw DataError(who + ": cannot create the directory: " + ec.message());
  }
  const std::string probe = out + "/.tsc_write_check.tmp";
  errno = 0;
  bool written = false;
  {
    std::ofstream file(probe, std::ios::binary | std::ios::app);
    written = static_cast<bool>(file);
  }
  const int err = errno;
  if (!written)
    throw DataError(who + ": cannot write in the directory" + (err != 0 ? ": " + std::string(std::strerror(err)) : ""));
  std::remove(probe.c_str());
  if (fs::is_directory(out + "/model.sqm", ec))
    throw DataError(who + ": " + out + "/model.sqm is a directory, so the model could not be saved there");
}

inline void check_before_loading(const CliOptions& o) {
  if (o.task == "ucr") {
    check_input_file("--train", o.train_file);
    if (!o.test_file.empty()) check_input_file("--test", o.test_file);
  }
  check_output_dir(o.out);
}

inline std::vector<std::string> check_before_training(const CliOptions& o, const Dataset& train, const Dataset& test) {
  std::string train_name = "the training set", test_name = "the test set";
  if (o.task == "ucr") {
    train_name = "--train " + o.train_file;
    test_name = o.test_file.empty() ? "the test split of " + train_name : "--test " + o.test_file;
  }
  if (train.size() == 0) throw DataError(train_name + " has no sequences");
  if (test.size() == 0) throw DataError(test_name + " has no sequences");
  std::vector<std::string> notes;
  const std::string note = check_compatible(train, test, train_name, test_name);
  if (!note.empty()) notes.push_back(note);
  return notes;
}

inline void check_memory(const ModelConfig& config, Index batch, Index steps) {
  const std::size_t limit = seqattn::memory_limit();
  Classifier model(config);
  const std::size_t bytes = model.net().cache_bytes(batch, steps);
  if (bytes <= limit) return;
  std::string message = "the model needs " + seqattn::format_bytes(bytes) + " for a batch of " +
                        std::to_string(batch) + " sequences of " + std::to_string(steps) +
                        " steps (the longest in the data), above the memory limit of " + seqattn::format_bytes(limit) +
                        " (half of the memory this process may use): " + model.net().memory_remedy(batch, steps);
  Index lo = 0, hi = batch;  // the largest batch that fits: need(lo) <= limit < need(hi)
  while (hi - lo > 1) {
    const Index mid = lo + (hi - lo) / 2;
    (model.net().cache_bytes(mid, steps) <= limit ? lo : hi) = mid;
  }
  if (lo >= 1) throw DataError(message + ". Try --batch-size " + std::to_string(lo));
  for (const Index width : {256, 128, 64, 32, 16, 8}) {  // one sequence does not fit: a window of steps
    ModelConfig windowed = config;
    windowed.attention = AttentionKind::SelfAttention;
    windowed.width = width;
    if (width < steps && Classifier(windowed).net().cache_bytes(batch, steps) <= limit)
      throw DataError(message + ". Try -a self --width " + std::to_string(width));
  }
  throw DataError(message + ". Even one sequence with a window of 8 steps does not fit: shorten the sequences");
}

inline void save_classifier(Classifier::Net& net, const std::string& path,
                            const nlohmann::json& metadata = nlohmann::json::object()) {
  const std::string bad = non_finite_parameter(net);
  if (!bad.empty())
    throw TrainingError("save_model: parameter " + bad + " holds NaN or Inf; refusing to write " + path);
  seqattn::save_model(net, path, metadata);
}

}  // namespace tsc
