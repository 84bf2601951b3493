// What an atomic save (io/detail/atomic_file.hpp, through save_weights) does to the file it replaces: a symbolic
// link is followed (the target gets the new content, the link stays a link, no temporary file is left in either
// directory), the replaced file keeps its permission bits, and a file without write permission is refused
// (FileError naming it, content and mode unchanged). Tests run as root in CI: the refusal rule "no write
// permission bit at all" holds for root too; the access() rule is checked by its result for this user.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <sstream>

#include "seqattn/io/weights.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/model/sequential.hpp"
#include "support/io_helpers.hpp"

using namespace seqattn;
using seqattn::testing::ScratchDir;
using seqattn::testing::snapshot;

namespace {

Sequential<float> model_of(std::uint64_t seed) {
  Sequential<float> model(2);
  model.add<Dense<float>>(3, DenseOptions().seed(seed));
  return model;
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string bytes_of(Sequential<float>& model) {
  std::stringstream s;
  save_weights(model, s);
  return s.str();
}

bool is_link(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0 && S_ISLNK(st.st_mode);
}

std::string link_target(const std::string& path) {
  char buf[4096];
  const ::ssize_t n = ::readlink(path.c_str(), buf, sizeof buf);
  return n < 0 ? "" : std::string(buf, static_cast<std::size_t>(n));
}

unsigned mode_of(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 ? static_cast<unsigned>(st.st_mode) & 07777u : 0u;
}

std::string file_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const FileError& e) {
    return e.what();
  }
  return "(no FileError)";
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

TEST(AtomicReplace, SymbolicLinkIsFollowedAndStaysALink) {
  ScratchDir dir;
  auto old_model = model_of(1);
  auto new_model = model_of(2);
  save_weights(old_model, dir.file("real.sqw"));
  ASSERT_EQ(::symlink("real.sqw", dir.file("link.sqw").c_str()), 0);  // relative to the link's directory
  save_weights(new_model, dir.file("link.sqw"));
  EXPECT_TRUE(is_link(dir.file("link.sqw"))) << "the link was replaced by a regular file";
  EXPECT_EQ(link_target(dir.file("link.sqw")), "real.sqw");
  EXPECT_EQ(read_text(dir.file("real.sqw")), bytes_of(new_model)) << "the target holds the new weights";
  auto check = model_of(3);
  load_weights(check, dir.file("link.sqw"));
  EXPECT_EQ(snapshot(check), snapshot(new_model));
  auto names = dir.files();
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"link.sqw", "real.sqw"}));
}

TEST(AtomicReplace, LinkIntoAnotherDirectoryAndChainsOfLinks) {
  ScratchDir links, targets;
  auto model = model_of(4);
  auto first = model_of(1);
  save_weights(first, targets.file("real.sqw"));
  // links/a -> links/b -> <targets>/real.sqw (absolute)
  ASSERT_EQ(::symlink(targets.file("real.sqw").c_str(), links.file("b").c_str()), 0);
  ASSERT_EQ(::symlink("b", links.file("a").c_str()), 0);
  save_weights(model, links.file("a"));
  EXPECT_TRUE(is_link(links.file("a")));
  EXPECT_TRUE(is_link(links.file("b")));
  EXPECT_EQ(read_text(targets.file("real.sqw")), bytes_of(model));
  EXPECT_EQ(targets.files(), std::vector<std::string>{"real.sqw"}) << "no temporary left beside the target";
  EXPECT_EQ(links.files().size(), 2u) << "nothing written beside the links";

  // A dangling link names the file to create.
  ASSERT_EQ(::symlink(targets.file("new.sqw").c_str(), links.file("dangling").c_str()), 0);
  save_weights(model, links.file("dangling"));
  EXPECT_TRUE(is_link(links.file("dangling")));
  EXPECT_EQ(read_text(targets.file("new.sqw")), bytes_of(model));

  // A loop of links is a FileError, not a hang.
  ASSERT_EQ(::symlink("loop2", links.file("loop1").c_str()), 0);
  ASSERT_EQ(::symlink("loop1", links.file("loop2").c_str()), 0);
  const std::string loop = file_error([&] { save_weights(model, links.file("loop1")); });
  EXPECT_TRUE(contains(loop, "save_weights(" + links.file("loop1") + "): cannot write '" + links.file("loop1") +
                                 "': too many levels of symbolic links"))
      << loop;
}

TEST(AtomicReplace, ReplacedFileKeepsItsPermissionBits) {
  ScratchDir dir;
  auto model = model_of(1);
  auto other = model_of(2);
  for (unsigned mode : {0600u, 0640u, 0664u, 0604u}) {
    const std::string path = dir.file("m.sqw");
    save_weights(model, path);
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    save_weights(other, path);
    EXPECT_EQ(mode_of(path), mode) << std::oct << "mode 0" << mode << " became 0" << mode_of(path);
    EXPECT_EQ(read_text(path), bytes_of(other));
  }
  // A new file: 0666 minus the umask.
  const mode_t saved = ::umask(027);
  save_weights(model, dir.file("new.sqw"));
  ::umask(saved);
  EXPECT_EQ(mode_of(dir.file("new.sqw")), 0640u);
}

TEST(AtomicReplace, FileWithoutWritePermissionIsRefusedEvenForRoot) {
  ScratchDir dir;
  const std::string path = dir.file("frozen.sqw");
  auto model = model_of(1);
  save_weights(model, path);
  ASSERT_EQ(::chmod(path.c_str(), 0444), 0);
  const std::string before = read_text(path);
  auto other = model_of(2);
  const std::string message = file_error([&] { save_weights(other, path); });
  EXPECT_TRUE(contains(message, "save_weights(" + path + "): '" + path +
                                    "' is not writable (mode 0444, no write permission): it is left unchanged"))
      << message;
  EXPECT_EQ(read_text(path), before);
  EXPECT_EQ(mode_of(path), 0444u);
  EXPECT_EQ(dir.files(), std::vector<std::string>{"frozen.sqw"}) << "no temporary file left";

  // Through a link: the message names the target and the link; the link and the target are unchanged.
  ASSERT_EQ(::symlink("frozen.sqw", dir.file("link.sqw").c_str()), 0);
  const std::string via_link = file_error([&] { save_weights(other, dir.file("link.sqw")); });
  EXPECT_TRUE(contains(
      via_link, "'" + path + "' (the target of the link '" + dir.file("link.sqw") + "') is not writable (mode 0444"))
      << via_link;
  EXPECT_TRUE(is_link(dir.file("link.sqw")));
  EXPECT_EQ(read_text(path), before);
}

TEST(AtomicReplace, FileThisUserMayNotWriteIsRefused) {
  // Mode 0464: only the group may write. The owner (this process, which created it) may not, unless it is root,
  // who may write any file with a write permission bit: then the save replaces it and keeps the mode.
  ScratchDir dir;
  const std::string path = dir.file("group.sqw");
  auto first = model_of(1);
  save_weights(first, path);
  ASSERT_EQ(::chmod(path.c_str(), 0464), 0);
  const std::string before = read_text(path);
  auto model = model_of(2);
  const std::string message = file_error([&] { save_weights(model, path); });
  if (::geteuid() == 0) {
    EXPECT_EQ(message, "(no FileError)") << "root may write the file";
    EXPECT_EQ(read_text(path), bytes_of(model));
  } else {
    EXPECT_TRUE(contains(message, "'" + path + "' is not writable (mode 0464, Permission denied)")) << message;
    EXPECT_EQ(read_text(path), before);
  }
  EXPECT_EQ(mode_of(path), 0464u);
  EXPECT_EQ(dir.files(), std::vector<std::string>{"group.sqw"});
}
