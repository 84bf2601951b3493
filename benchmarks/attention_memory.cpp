// attention_memory: the memory and time of one MultiHeadAttention training step (forward in Mode::Train, then
// backward) on one long sequence, with the probabilities kept (need_weights=true, the default) and not kept
// (need_weights=false: backward computes them again, memory linear in T). docs/pages/benchmarks.md,
// "Memory-efficient attention".
//
//   attention_memory [--lengths 1024,2048,...] [--features 64] [--heads 4] [--causal] [--not-kept-only]
//                    [--steps 3] [--check-mib N]
//
// Each (T, mode) runs in a child process (fork): it resets its peak resident set (writes 5 to
// /proc/self/clear_refs), builds the layer and its input x (1, T, features) and output gradient, runs --steps steps
// and reports VmHWM minus the resident set at the reset: the peak memory the steps added (parameters, inputs,
// caches, gradients, allocator slack), and the wall time of the fastest step after the first (which touches new
// memory), or of the first when it is the only one. One thread. The kept mode is skipped (its caches named)
// above memory_limit(). --check-mib N: exit status 1 when a not-kept step added N MiB or more (ctest
// attention_memory_16384 runs one step at T = 16384, d = 64, 4 heads with N = 1024).
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "seqattn/core/memory_limit.hpp"
#include "seqattn/core/threads.hpp"
#include "seqattn/layers/multi_head_attention.hpp"

namespace {

using seqattn::Index;

struct Options {
  std::vector<Index> lengths{1024, 2048, 4096, 8192, 16384};
  Index features = 64, heads = 4;
  bool causal = false, not_kept_only = false;
  double check_mib = 0;
  int steps = 3;
};

long status_kib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(key) + ":";
  while (std::getline(in, line))
    if (line.compare(0, prefix.size(), prefix) == 0) return std::atol(line.c_str() + prefix.size());
  return -1;
}

struct Measured {
  double mib = -1, seconds = -1;
  bool reset = false;
};

seqattn::MultiHeadAttention<float> make_layer(const Options& o, bool kept) {
  return seqattn::MultiHeadAttention<float>(
      o.features, o.heads, seqattn::MultiHeadAttentionOptions().causal(o.causal).need_weights(kept).seed(1));
}

// In the child: one step; writes its Measured to fd.
void child_step(const Options& o, Index T, bool kept, int fd) {
  Measured m;
  {
    std::ofstream clear("/proc/self/clear_refs");
    m.reset = static_cast<bool>(clear << "5" << std::flush);
  }
  const long base = status_kib("VmRSS");
  {
    seqattn::MultiHeadAttention<float> mha = make_layer(o, kept);
    seqattn::Tensor3<float> x(1, T, o.features), dy(1, T, o.features);
    seqattn::Rng rng(7);
    for (Index i = 0; i < x.size(); ++i) {
      x.data()[i] = float(rng.normal());
      dy.data()[i] = float(rng.normal());
    }
    const seqattn::Mask mask = seqattn::Mask::from_lengths({T});
    for (int step = 0; step < o.steps; ++step) {  // the time: the fastest step after the first (which touches new
      const auto start = std::chrono::steady_clock::now();  // memory), or the first when it is the only one
      mha.forward(x, mask, seqattn::Mode::Train);
      mha.backward(x, mask, dy);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (step == 0 || step == 1 || s < m.seconds) m.seconds = s;
    }
  }
  m.mib = double(status_kib("VmHWM") - base) / 1024.0;
  if (write(fd, &m, sizeof m) != ssize_t(sizeof m)) _exit(2);
}

Measured measure(const Options& o, Index T, bool kept) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    child_step(o, T, kept, fds[1]);
    _exit(0);
  }
  close(fds[1]);
  Measured m;
  const bool got = pid > 0 && read(fds[0], &m, sizeof m) == ssize_t(sizeof m);
  close(fds[0]);
  int status = 0;
  if (pid > 0) waitpid(pid, &status, 0);
  return got && WIFEXITED(status) && WEXITSTATUS(status) == 0 ? m : Measured{};
}

std::vector<Index> parse_list(const char* text) {
  std::vector<Index> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (end == item.c_str() || *end != '\0' || v <= 0) {
      std::fprintf(stderr, "attention_memory: --lengths expects positive integers, got '%s'\n", item.c_str());
      std::exit(2);
    }
    out.push_back(Index(v));
  }
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "attention_memory: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--lengths")
      o.lengths = parse_list(value());
    else if (a == "--features")
      o.features = parse_list(value()).at(0);
    else if (a == "--heads")
      o.heads = parse_list(value()).at(0);
    else if (a == "--causal")
      o.causal = true;
    else if (a == "--not-kept-only")
      o.not_kept_only = true;
    else if (a == "--check-mib")
      o.check_mib = double(parse_list(value()).at(0));
    else if (a == "--steps")
      o.steps = int(parse_list(value()).at(0));
    else {
      std::fprintf(stderr,
                   "usage: attention_memory [--lengths 1024,2048,...] [--features 64] [--heads 4] [--causal] "
                   "[--not-kept-only] [--steps 3] [--check-mib N]\n");
      std::exit(2);
    }
  }
  return o;
}

std::string cell(const Measured& m) {
  if (m.mib < 0) return "failed | failed";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.0f | %.3f", m.mib, m.seconds);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  seqattn::set_num_threads(1);
  std::printf(
      "MultiHeadAttention<float>(%lld, %lld heads%s), B = 1, training steps (forward + backward), one "
      "thread; memory limit %s\n\n",
      static_cast<long long>(o.features), static_cast<long long>(o.heads), o.causal ? ", causal" : "",
      seqattn::format_bytes(seqattn::memory_limit()).c_str());
  std::printf("| T | kept: MiB | kept: s | not kept: MiB | not kept: s |\n|---|---|---|---|---|\n");
  bool ok = true, reset = true;
  for (const Index T : o.lengths) {
    std::string kept_cells = "skipped | skipped";
    if (!o.not_kept_only) {
      const std::size_t need = make_layer(o, true).cache_bytes(1, T);
      if (need > seqattn::memory_limit()) {
        kept_cells = "(caches " + seqattn::format_bytes(need) + ": above the limit) | -";
      } else {
        const Measured k = measure(o, T, true);
        reset = reset && k.reset;
        kept_cells = cell(k);
      }
    }
    const Measured n = measure(o, T, false);
    reset = reset && n.reset;
    std::printf("| %lld | %s | %s |\n", static_cast<long long>(T), kept_cells.c_str(), cell(n).c_str());
    std::fflush(stdout);
    if (n.mib < 0 || (o.check_mib > 0 && n.mib >= o.check_mib)) ok = false;
  }
  std::printf("\nMiB: peak resident memory added by the step, in a child process%s.\n",
              reset ? "" : " (WARNING: /proc/self/clear_refs could not reset the peak: values are upper bounds)");
  if (!ok && o.check_mib > 0)
    std::printf("FAILED: a step without kept probabilities added %.0f MiB or more (or failed)\n", o.check_mib);
  return ok ? 0 : 1;
}
