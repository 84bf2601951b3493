// Loading from a path reads the fixed header first and checks it (magic, version, scalar type, and the declared
// size against the real size of a regular file) before it reads the rest, and never reads more than the
// header declares: /dev/zero, a 4 GiB sparse file that is not a weights file, or a valid header on a file of
// another size are refused at once with almost no memory; pipes are read up to the declared size and must end
// there. The same for load_safetensors / read_safetensors (header size, then header, then data).
// Each load runs under a guard that ends the process with a message if it takes more than 256 MB or 10 s (the
// old behaviour: /dev/zero was read until memory ran out), so a regression fails instead of exhausting the
// machine. The numbers printed (time, peak resident memory growth) are those of the report.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <thread>

#include "seqattn/io/safetensors.hpp"
#include "seqattn/io/weights.hpp"
#include "seqattn/layers/dense.hpp"
#include "seqattn/model/sequential.hpp"
#include "support/io_helpers.hpp"

using namespace seqattn;
using seqattn::testing::LoadOutcome;
using seqattn::testing::ScratchDir;
using Bytes = std::vector<unsigned char>;

namespace {

constexpr std::uint64_t kFourGiB = 4ULL << 30;

Sequential<float> small_model(std::uint64_t seed) {  // a 204-byte weights file
  Sequential<float> model(2);
  model.add<Dense<float>>(2, DenseOptions().seed(seed).bias_init(Init::uniform(-1, 1)));
  model.add<Dense<float>>(1, DenseOptions().seed(seed + 1));
  return model;
}

long resident_bytes() {
  long pages = 0, resident = 0;
  if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
    std::fclose(f);
  }
  return resident * ::sysconf(_SC_PAGESIZE);
}

long max_rss_bytes() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss * 1024L;
}

struct Cost {
  double seconds = 0;
  long peak_growth = 0;     // sampled resident memory above the start, bytes
  long max_rss_growth = 0;  // getrusage high-water mark growth, bytes
};

// Runs `load` (which must throw or return) and measures it; a watchdog thread samples the resident memory
// every millisecond and ends the process if it grows by more than 256 MB or the load runs for 10 s.
Cost guarded(const std::string& what, const std::function<void()>& load) {
  constexpr long kLimit = 256L << 20;
  const long start_rss = resident_bytes(), start_max = max_rss_bytes();
  std::atomic<bool> done{false};
  std::atomic<long> peak{0};
  const auto t0 = std::chrono::steady_clock::now();
  std::thread watchdog([&] {
    while (!done.load()) {
      const long growth = resident_bytes() - start_rss;
      if (growth > peak.load()) peak.store(growth);
      const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (growth > kLimit || elapsed > 10) {
        std::fprintf(stderr,
                     "FAILED: %s: %ld MB more resident memory after %.1f s: the load reads input its header "
                     "does not declare\n",
                     what.c_str(), growth >> 20, elapsed);
        std::_Exit(1);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  });
  try {
    load();
  } catch (...) {
    done.store(true);
    watchdog.join();
    throw;
  }
  done.store(true);
  watchdog.join();
  Cost c;
  c.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  c.peak_growth = std::max(peak.load(), resident_bytes() - start_rss);
  c.max_rss_growth = max_rss_bytes() - start_max;
  return c;
}

// Loads `path` into a small model under the guard: the outcome (error type, message, model unchanged) and cost.
template <class Load>
std::pair<LoadOutcome, Cost> measure(const std::string& what, Load&& load) {
  auto model = small_model(7);
  LoadOutcome outcome;
  const Cost cost = guarded(what, [&] { outcome = seqattn::testing::load_outcome(model, [&] { load(model); }); });
  std::printf("  %-58s %8.2f ms, resident +%ld KB (max RSS +%ld KB)\n", what.c_str(), cost.seconds * 1e3,
              cost.peak_growth >> 10, cost.max_rss_growth >> 10);
  return {outcome, cost};
}

void expect_cheap(const Cost& c) {
  EXPECT_LT(c.seconds, 1.0);
  EXPECT_LT(c.peak_growth, 16L << 20);
  EXPECT_LT(c.max_rss_growth, 16L << 20);
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

Bytes weights_file() {
  auto model = small_model(1);
  std::stringstream s;
  save_weights(model, s);
  return seqattn::testing::to_bytes(s.str());
}

// Writes `bytes` at the start of `path` and extends the file to `size` bytes without writing them (a sparse
// file: no disk used). False when the file system refuses the size.
bool sparse_file(const std::string& path, const Bytes& bytes, std::uint64_t size) {
  seqattn::testing::write_file(path, bytes);
  return ::truncate(path.c_str(), static_cast<off_t>(size)) == 0;
}

// Writes `bytes` into the FIFO `path` from a thread (the load opens the other end), ignoring a reader that
// closes early (EPIPE).
class FifoWriter {
 public:
  FifoWriter(const std::string& path, Bytes bytes) {
    thread_ = std::thread([path, bytes] {
      const int fd = ::open(path.c_str(), O_WRONLY);
      if (fd < 0) return;
      std::size_t at = 0;
      while (at < bytes.size()) {
        const ::ssize_t n = ::write(fd, bytes.data() + at, bytes.size() - at);
        if (n <= 0) break;
        at += static_cast<std::size_t>(n);
      }
      ::close(fd);
    });
  }
  ~FifoWriter() { thread_.join(); }

 private:
  std::thread thread_;
};

class BoundedRead : public ::testing::Test {
 protected:
  void SetUp() override { old_ = ::signal(SIGPIPE, SIG_IGN); }
  void TearDown() override { ::signal(SIGPIPE, old_); }

 private:
  void (*old_)(int) = nullptr;
};

}  // namespace

TEST_F(BoundedRead, WeightsFromDevZeroAreRefusedAtOnce) {
  const auto [o, cost] = measure("load_weights(/dev/zero)", [](Sequential<float>& m) { load_weights(m, "/dev/zero"); });
  EXPECT_EQ(o.type, "FormatError");
  EXPECT_TRUE(contains(o.message,
                       "load_weights(/dev/zero): not a seqattn weights file: magic expected \"SEQATTNW\" "
                       "but found \"\\x0\\x0\\x0\\x0\\x0\\x0\\x0\\x0\""))
      << o.message;
  EXPECT_TRUE(o.unchanged);
  expect_cheap(cost);
}

TEST_F(BoundedRead, LargeSparseFilesAreRefusedWithoutReadingThem) {
  ScratchDir dir;
  // 4 GiB of zeros: not a weights file.
  if (!sparse_file(dir.file("zeros"), {}, kFourGiB)) GTEST_SKIP() << "the file system refuses a 4 GiB sparse file";
  const std::string zeros = dir.file("zeros");
  const auto [magic, magic_cost] =
      measure("load_weights(4 GiB sparse file, wrong magic)", [&](Sequential<float>& m) { load_weights(m, zeros); });
  EXPECT_TRUE(contains(magic.message, "not a seqattn weights file")) << magic.message;
  EXPECT_TRUE(magic.unchanged);
  expect_cheap(magic_cost);

  // A valid 204-byte weights file followed by 4 GiB of zeros: the declared size is not the file's.
  const std::string padded = dir.file("padded.sqw");
  ASSERT_TRUE(sparse_file(padded, weights_file(), kFourGiB));
  const auto [trailing, trailing_cost] =
      measure("load_weights(204-byte file + zeros to 4 GiB)", [&](Sequential<float>& m) { load_weights(m, padded); });
  EXPECT_EQ(trailing.type, "FormatError");
  EXPECT_TRUE(contains(trailing.message, "load_weights(" + padded +
                                             "): 4294967092 trailing bytes after the end of the "
                                             "file (expected 204 bytes but found 4294967296)"))
      << trailing.message;
  EXPECT_TRUE(trailing.unchanged);
  expect_cheap(trailing_cost);

  // A header declaring 4 GiB on a 204-byte file: truncated, said at once.
  Bytes big = weights_file();
  seqattn::testing::put_u64(big, 16, kFourGiB);
  seqattn::testing::write_file(dir.file("short.sqw"), big);
  const std::string short_file = dir.file("short.sqw");
  const auto [truncated, truncated_cost] = measure("load_weights(header declares 4 GiB, file has 204 bytes)",
                                                   [&](Sequential<float>& m) { load_weights(m, short_file); });
  EXPECT_TRUE(contains(truncated.message, "truncated file: expected 4294967296 bytes but found 204"))
      << truncated.message;
  expect_cheap(truncated_cost);
}

TEST_F(BoundedRead, WeightsFromPipesAreReadUpToTheDeclaredSize) {
  ScratchDir dir;
  const std::string fifo = dir.file("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const Bytes file = weights_file();
  {
    FifoWriter writer(fifo, file);
    auto model = small_model(7);
    load_weights(model, fifo);
    auto source = small_model(1);
    EXPECT_EQ(seqattn::testing::snapshot(model), seqattn::testing::snapshot(source));
  }
  {
    Bytes more = file;
    more.push_back(0);
    FifoWriter writer(fifo, more);
    const auto [o, cost] =
        measure("load_weights(pipe: a file and one more byte)", [&](Sequential<float>& m) { load_weights(m, fifo); });
    EXPECT_EQ(o.type, "FormatError");
    EXPECT_TRUE(contains(o.message, "load_weights(" + fifo +
                                        "): the input goes on after the 204 bytes its header "
                                        "declares"))
        << o.message;
    EXPECT_TRUE(o.unchanged);
  }
  {
    Bytes lying = file;
    seqattn::testing::put_u64(lying, 16, 1ULL << 40);  // declares 1 TiB, sends 204 bytes
    FifoWriter writer(fifo, lying);
    const auto [o, cost] = measure("load_weights(pipe: header declares 1 TiB, 204 bytes sent)",
                                   [&](Sequential<float>& m) { load_weights(m, fifo); });
    EXPECT_TRUE(contains(o.message, "truncated file: expected 1099511627776 bytes but found 204")) << o.message;
    expect_cheap(cost);
  }
}

TEST_F(BoundedRead, SafetensorsFromDevZeroAndLargeSparseFiles) {
  const auto [zero, zero_cost] =
      measure("load_safetensors(/dev/zero)", [](Sequential<float>& m) { load_safetensors(m, "/dev/zero"); });
  EXPECT_EQ(zero.type, "FormatError");
  EXPECT_TRUE(contains(zero.message, "load_safetensors(/dev/zero): the header is not valid JSON")) << zero.message;
  expect_cheap(zero_cost);
  std::string read_message;
  const Cost read_cost = guarded("read_safetensors(/dev/zero)", [&] {
    try {
      read_safetensors("/dev/zero");
    } catch (const FormatError& e) {
      read_message = e.what();
    }
  });
  EXPECT_TRUE(contains(read_message, "read_safetensors(/dev/zero): the header is not valid JSON")) << read_message;
  expect_cheap(read_cost);

  ScratchDir dir;
  // A valid empty safetensors file ("{}" padded to 8 bytes), then zeros to 4 GiB.
  Bytes empty(8);
  seqattn::testing::put_u64(empty, 0, 8);
  for (char c : std::string("{}      ")) empty.push_back(static_cast<unsigned char>(c));
  const std::string padded = dir.file("padded.safetensors");
  if (!sparse_file(padded, empty, kFourGiB)) GTEST_SKIP() << "the file system refuses a 4 GiB sparse file";
  const auto [trailing, trailing_cost] = measure("load_safetensors(16-byte file + zeros to 4 GiB)",
                                                 [&](Sequential<float>& m) { load_safetensors(m, padded); });
  EXPECT_TRUE(contains(trailing.message, "load_safetensors(" + padded +
                                             "): 4294967280 trailing bytes after the last "
                                             "tensor's data"))
      << trailing.message;
  expect_cheap(trailing_cost);

  // A header size beyond the end of the file.
  Bytes beyond(8);
  seqattn::testing::put_u64(beyond, 0, 1000);
  seqattn::testing::write_file(dir.file("beyond.safetensors"), beyond);
  const std::string beyond_path = dir.file("beyond.safetensors");
  const auto [short_header, short_cost] = measure("load_safetensors(header size 1000, file of 8 bytes)",
                                                  [&](Sequential<float>& m) { load_safetensors(m, beyond_path); });
  EXPECT_TRUE(contains(short_header.message, "truncated: the header needs 1000 bytes but only 0 follow its size"))
      << short_header.message;
  expect_cheap(short_cost);
}

TEST_F(BoundedRead, SafetensorsFromPipes) {
  ScratchDir dir;
  const std::string fifo = dir.file("fifo");
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto source = small_model(1);
  std::stringstream s;
  save_safetensors(source, s);
  const Bytes file = seqattn::testing::to_bytes(s.str());
  {
    FifoWriter writer(fifo, file);
    auto model = small_model(7);
    load_safetensors(model, fifo);
    EXPECT_EQ(seqattn::testing::snapshot(model), seqattn::testing::snapshot(source));
  }
  {
    Bytes more = file;
    more.push_back(' ');
    FifoWriter writer(fifo, more);
    const auto [o, cost] = measure("load_safetensors(pipe: a file and one more byte)",
                                   [&](Sequential<float>& m) { load_safetensors(m, fifo); });
    EXPECT_TRUE(contains(o.message, "load_safetensors(" + fifo +
                                        "): the input goes on after the 36 bytes of data its "
                                        "header declares"))
        << o.message;
    EXPECT_TRUE(o.unchanged);
  }
}
