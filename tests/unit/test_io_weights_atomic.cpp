// save_weights to a path is atomic: the target holds the old or the new complete file, never a partial one;
// a failed save (disk full, missing directory, target is a directory) throws FileError naming the path,
// leaves an existing file intact and leaves no temporary file behind.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <fstream>
#include <functional>
#include <sstream>

#include "seqattn/io/weights.hpp"
#include "support/io_helpers.hpp"
#include "support/io_model.hpp"

using namespace seqattn;
using seqattn::testing::make_io_model;
using seqattn::testing::ScratchDir;
using seqattn::testing::snapshot;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const FileError& e) {
    return e.what();
  }
  return "(no FileError)";
}

// Limits the size of any file this process writes (as a full disk would), restoring it on destruction.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    getrlimit(RLIMIT_FSIZE, &saved_);
    old_handler_ = signal(SIGXFSZ, SIG_IGN);  // write() then fails with EFBIG instead of killing the process
    rlimit lim = saved_;
    lim.rlim_cur = bytes;
    ok_ = setrlimit(RLIMIT_FSIZE, &lim) == 0;
  }
  ~FileSizeLimit() {
    setrlimit(RLIMIT_FSIZE, &saved_);
    signal(SIGXFSZ, old_handler_);
  }
  bool ok() const { return ok_; }

 private:
  rlimit saved_{};
  void (*old_handler_)(int) = nullptr;
  bool ok_ = false;
};

}  // namespace

TEST(WeightsAtomicSave, LeavesOnlyTheTargetFile) {
  ScratchDir dir;
  auto model = make_io_model<float>(1);
  save_weights(model, dir.file("model.sqw"));
  save_weights(model, dir.file("model.sqw"));  // replaces an existing file
  EXPECT_EQ(dir.files(), std::vector<std::string>{"model.sqw"});
  std::stringstream stream;
  save_weights(model, stream);
  EXPECT_EQ(read_file(dir.file("model.sqw")), stream.str());
}

TEST(WeightsAtomicSave, ReplacesTheOldContentCompletely) {
  ScratchDir dir;
  { std::ofstream(dir.file("model.sqw")) << std::string(5000, 'x'); }  // longer than the new file
  auto model = make_io_model<float>(1);
  save_weights(model, dir.file("model.sqw"));
  auto restored = make_io_model<float>(2);
  load_weights(restored, dir.file("model.sqw"));
  EXPECT_EQ(snapshot(model), snapshot(restored));
}

TEST(WeightsAtomicSave, FullDiskKeepsTheExistingFileAndLeavesNoTemporary) {
  ScratchDir dir;
  auto old_model = make_io_model<double>(1);
  save_weights(old_model, dir.file("model.sqw"));
  const std::string before = read_file(dir.file("model.sqw"));

  auto new_model = make_io_model<double>(2);
  std::string message;
  {
    FileSizeLimit limit(100);  // the file needs far more than 100 bytes: write() fails midway
    ASSERT_TRUE(limit.ok());
    message = message_of([&] { save_weights(new_model, dir.file("model.sqw")); });
  }
  EXPECT_NE(message.find("save_weights(" + dir.file("model.sqw") + "): writing '" + dir.file("model.sqw") +
                         "' failed: File too large (an existing file at that path is unchanged)"),
            std::string::npos)
      << message;
  EXPECT_EQ(read_file(dir.file("model.sqw")), before);
  EXPECT_EQ(dir.files(), std::vector<std::string>{"model.sqw"});
  auto check = make_io_model<double>(3);
  load_weights(check, dir.file("model.sqw"));
  EXPECT_EQ(snapshot(check), snapshot(old_model));
}

TEST(WeightsAtomicSave, MissingDirectoryThrowsFileErrorNamingThePath) {
  ScratchDir dir;
  auto model = make_io_model<float>(1);
  const std::string path = dir.file("no/such/dir/model.sqw");
  const std::string message = message_of([&] { save_weights(model, path); });
  EXPECT_NE(message.find("save_weights(" + path + "): cannot create a temporary file in '" + dir.file("no/such/dir") +
                         "'"),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("No such file or directory"), std::string::npos) << message;
  EXPECT_TRUE(dir.files().empty());
}

TEST(WeightsAtomicSave, TargetThatIsADirectoryFailsAtRenameAndCleansUp) {
  ScratchDir dir;
  ASSERT_EQ(mkdir(dir.file("taken").c_str(), 0755), 0);
  { std::ofstream(dir.file("taken/keep")) << "keep"; }
  auto model = make_io_model<float>(1);
  const std::string message = message_of([&] { save_weights(model, dir.file("taken")); });
  EXPECT_NE(message.find("renaming the temporary file to '" + dir.file("taken") + "' failed"), std::string::npos)
      << message;
  EXPECT_EQ(dir.files(), std::vector<std::string>{"taken"});  // no temporary left beside it
  EXPECT_EQ(read_file(dir.file("taken/keep")), "keep");
  unlink(dir.file("taken/keep").c_str());
  rmdir(dir.file("taken").c_str());
}

TEST(WeightsAtomicSave, FailingStreamThrowsFileError) {
  auto model = make_io_model<float>(1);
  std::ofstream closed;  // not open: every write fails
  const std::string message = message_of([&] { save_weights(model, closed); });
  EXPECT_NE(message.find("save_weights(stream): writing"), std::string::npos) << message;
}

TEST(WeightsAtomicLoad, MissingFileThrowsFileErrorAndKeepsTheModel) {
  ScratchDir dir;
  auto model = make_io_model<float>(1);
  const auto before = snapshot(model);
  const std::string message = message_of([&] { load_weights(model, dir.file("absent.sqw")); });
  EXPECT_NE(message.find("load_weights(" + dir.file("absent.sqw") + "): cannot open '" + dir.file("absent.sqw") +
                         "' for reading: No such file or directory"),
            std::string::npos)
      << message;
  EXPECT_EQ(snapshot(model), before);
}
