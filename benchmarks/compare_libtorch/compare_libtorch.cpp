// compare_libtorch: seqattn and libtorch on the same shapes, in one process, alternating, float.
//
//   compare_libtorch [--threads 1,2] [--only TEXT] [--no-memory] [--quick]
//
// Rows (runners.hpp): MultiHeadAttention forward + backward; the keras-self-attention additive formula (U = 32)
// forward + backward, global and with a window of 15 (torch: the dense formula with a band mask); LSTM
// (return_sequences, torch::nn::LSTM batch_first) forward + backward and forward alone; one training
// step of the example classifier (benchmarks/classifier_model.hpp) at B = 64, T = 128; its inference at batch
// 64 and batch 1; the classifier made causal answering one new sample of a live stream: a seqattn stream step
// against torch's forward over the last 128 steps with a causal mask (torch has no key/value cache).
// Time: for each thread count (at::set_num_threads(n) and seqattn::set_num_threads(n)) and row, both sides are
// warmed up, then timed in alternating rounds (seqattn, torch, seqattn, ...) of enough iterations to last
// ~0.15 s; the table gives the median wall time per iteration over the rounds and the speed-up torch / seqattn,
// in wall time and in process CPU time (steadier than wall time on a loaded machine).
// Memory: each (row, library) runs again in a child process (this program with --memory-child), one thread:
// after a small warm-up of both libraries it resets the peak resident set (writes 5 to /proc/self/clear_refs),
// builds the layer or model and its inputs, runs 3 iterations and reports VmHWM - VmRSS at the reset: the
// peak resident memory the row added (parameters, inputs, outputs, caches, gradients, allocator slack).
// Before the table, a check runs each MHA and additive formula of both libraries on the same weights and
// input and prints the largest output difference, to show that both compute the same thing.
// OpenBLAS core: Debian's libtorch links libblas.so.3 (the slow reference BLAS unless an optimized one such as
// libopenblas0-pthread provides it; the library torch resolved sgemm_ to is printed). OpenBLAS's DYNAMIC_ARCH
// build picks a kernel set ("core") from cpuid when it loads; a version older than the CPU may not know it and
// fall back to older kernels, and an inherited OPENBLAS_CORETYPE (e.g. Haswell) forces older ones. The program
// reads openblas_get_corename() and the CPU's flags in /proc/cpuinfo (avx512_bf16 with avx512f+bw+vl ->
// Cooperlake; avx512f+bw+vl -> SkylakeX; avx2+fma -> Haswell); when the core is older than the best the CPU
// supports, it sets OPENBLAS_CORETYPE=<best> (replacing an inherited one) and re-executes itself, once
// (SEQATTN_COMPARE_OPENBLAS_REEXEC guards it). The header line and the notes under the table say which core
// torch used and why. The libtorch 2.x build (compare_libtorch2, the PyPI wheel) uses its bundled MKL and
// oneDNN instead: the header prints at::show_config()'s version, BLAS, MKL, oneDNN and OpenMP lines.
//
// Built against libtorch 2.x (TORCH_VERSION_MAJOR >= 2), each MHA shape gets a third row: the same attention
// written out around at::scaled_dot_product_attention (q/k/v projections as torch::nn::Linear, reshape to
// (B, H, T, dh), SDPA, reshape back, output projection), forward + backward (runners.hpp, TorchSdpa), with its
// own same-math check.
#include <dlfcn.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "runners.hpp"
#include "seqattn/core/threads.hpp"

namespace {

using compare::Runner;
using seqattn::Index;

struct Row {
  std::string name;   // what is measured
  std::string shape;  // its shape
  Index sequences;    // per iteration
  std::function<std::unique_ptr<Runner>()> seqattn, torch;
};

std::vector<Row> make_rows() {
  std::vector<Row> rows;
  for (auto [B, T, D, H] : std::vector<std::array<Index, 4>>{{32, 64, 64, 4}, {16, 256, 128, 8}, {4, 1024, 256, 8},
                                                            {1, 4096, 64, 4}}) {
    rows.push_back({"MHA fwd+bwd", seqattn::detail::cat("B=", B, " T=", T, " D=", D, " H=", H), B,
                    [=] {
                      return std::make_unique<compare::SeqattnLayer>(
                          std::make_unique<seqattn::MultiHeadAttention<float>>(
                              D, H, seqattn::MultiHeadAttentionOptions().seed(1)),
                          B, T);
                    },
                    [=] { return std::make_unique<compare::TorchMha>(B, T, D, H); }});
#if TORCH_VERSION_MAJOR >= 2
    rows.push_back({"MHA fwd+bwd, torch SDPA", rows.back().shape, B, rows.back().seqattn,
                    [=] { return std::make_unique<compare::TorchSdpa>(B, T, D, H); }});
#endif
  }
  for (auto [B, T, F, W] : std::vector<std::array<Index, 4>>{{16, 128, 64, 0}, {4, 512, 64, 0}, {1, 2048, 32, 15}}) {
    const std::optional<Index> width = W > 0 ? std::optional<Index>(W) : std::nullopt;
    rows.push_back({W > 0 ? "additive fwd+bwd, width 15" : "additive fwd+bwd, global",
                    seqattn::detail::cat("B=", B, " T=", T, " F=", F, " U=32"), B,
                    [=] {
                      auto options = seqattn::SeqSelfAttentionOptions().units(32).seed(1);
                      if (width) options.attention_width(*width);
                      return std::make_unique<compare::SeqattnLayer>(
                          std::make_unique<seqattn::SeqSelfAttention<float>>(F, options), B, T);
                    },
                    [=] { return std::make_unique<compare::TorchAdditive>(B, T, F, 32, width); }});
  }
  for (auto [B, T, F, U, train] : std::vector<std::array<Index, 5>>{
           {32, 64, 32, 64, 1}, {16, 128, 64, 128, 1}, {1, 256, 32, 64, 1}, {32, 64, 32, 64, 0}, {1, 256, 32, 64, 0}}) {
    rows.push_back({train ? "LSTM fwd+bwd" : "LSTM forward", seqattn::detail::cat("B=", B, " T=", T, " F=", F, " U=", U),
                    B,
                    [=]() -> std::unique_ptr<Runner> {
                      auto lstm = std::make_unique<seqattn::LSTM<float>>(
                          F, U, seqattn::LSTMOptions().return_sequences(true).seed(1));
                      if (train) return std::make_unique<compare::SeqattnLayer>(std::move(lstm), B, T);
                      return std::make_unique<compare::SeqattnForward>(std::move(lstm), B, T);
                    },
                    [=] { return std::make_unique<compare::TorchLstm>(B, T, F, U, train != 0); }});
  }
  rows.push_back({"classifier train step", "B=64 T=128", 64,
                  [] { return std::make_unique<compare::SeqattnClassifier>(64, 128, true); },
                  [] { return std::make_unique<compare::TorchClassifierRun>(64, 128, true); }});
  for (Index B : {64, 1})
    rows.push_back({"classifier inference", seqattn::detail::cat("B=", B, " T=128"), B,
                    [=] { return std::make_unique<compare::SeqattnClassifier>(B, 128, false); },
                    [=] { return std::make_unique<compare::TorchClassifierRun>(B, 128, false); }});
  // Streaming: one answer per new sample. libtorch has no key/value cache: its users rerun the causal model over
  // the last 128 steps; seqattn steps a stream (model/stream.hpp) of the same model with attention_window 128.
  rows.push_back({"classifier, one new step (causal)", "B=1 window 128", 1,
                  [] { return std::make_unique<compare::SeqattnClassifierStream>(128); },
                  [] { return std::make_unique<compare::TorchClassifierRun>(1, 128, false, true); }});
  return rows;
}

void set_threads(int n) {
  at::set_num_threads(n);
  seqattn::set_num_threads(n);
  // OpenBLAS (when it provides libblas.so.3) keeps its own count; its OpenMP build follows omp_set_num_threads.
  using SetThreads = void (*)(int);
  if (auto f = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(n);
}

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

struct Seconds {
  double wall = 0, cpu = 0;
};

// Wall and process CPU seconds (all threads) of `iterations` runs.
Seconds seconds(Runner& r, Index iterations) {
  const double cpu0 = process_cpu_seconds();
  const auto start = std::chrono::steady_clock::now();
  for (Index i = 0; i < iterations; ++i) r.run();
  return {std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), process_cpu_seconds() - cpu0};
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct Timing {
  double seqattn = 0, torch = 0;          // median wall seconds per iteration
  double seqattn_cpu = 0, torch_cpu = 0;  // median process CPU seconds per iteration
};

// Alternating rounds of both runners; per-iteration medians.
Timing time_row(const Row& row, bool quick) {
  auto s = row.seqattn();
  auto t = row.torch();
  s->run();  // warm-up: sizes every buffer, first-touch of every page
  t->run();
  const double s1 = seconds(*s, 1).wall, t1 = seconds(*t, 1).wall;
  const double target = quick ? 0.05 : 0.15;
  const Index ns = std::max<Index>(1, static_cast<Index>(target / s1)), nt = std::max<Index>(1, static_cast<Index>(target / t1));
  const int rounds = quick ? 3 : (std::max(s1, t1) > 0.5 ? 3 : 7);
  std::vector<double> vs, vt, cs, ct;
  for (int r = 0; r < rounds; ++r) {
    const Seconds a = seconds(*s, ns), b = seconds(*t, nt);
    vs.push_back(a.wall / static_cast<double>(ns));
    cs.push_back(a.cpu / static_cast<double>(ns));
    vt.push_back(b.wall / static_cast<double>(nt));
    ct.push_back(b.cpu / static_cast<double>(nt));
  }
  return {median(vs), median(vt), median(cs), median(ct)};
}

long status_kib(const char* field) {  // a "VmRSS:  1234 kB" line of /proc/self/status
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string key = std::string(field) + ":";
  while (std::getline(in, line))
    if (line.compare(0, key.size(), key) == 0) return std::atol(line.c_str() + key.size());
  return -1;
}

// Child: prints "peak_kib N reset R" (R = 1 when the peak could be reset to the current RSS).
int memory_child(const Row& row, const std::string& side) {
  set_threads(1);
  {  // warm-up of both libraries (lazy initialization is not the row's memory)
    torch::Tensor a = torch::rand({64, 64}).requires_grad_(true);
    torch::matmul(a, a).tanh().softmax(-1).sum().backward();
    seqattn::MultiHeadAttention<float> mha(16, 2);
    const auto x = compare::uniform_input(2, 8, 16, 1);
    mha.backward(x, seqattn::Mask(), mha.forward(x, seqattn::Mask(), seqattn::Mode::Train));
  }
  bool reset = false;
  {
    std::ofstream clear("/proc/self/clear_refs");
    reset = static_cast<bool>(clear << "5" << std::flush);
  }
  const long base = status_kib("VmRSS");
  {
    auto runner = side == "seqattn" ? row.seqattn() : row.torch();
    for (int i = 0; i < 3; ++i) runner->run();
  }
  std::printf("peak_kib %ld reset %d\n", status_kib("VmHWM") - base, reset ? 1 : 0);
  return 0;
}

// Runs the child for one (row, side); returns MiB, or -1 on failure.
double measure_memory(const std::string& exe, size_t row, const char* side, bool& reset_ok) {
  const std::string cmd = "'" + exe + "' --memory-child " + std::to_string(row) + " " + side;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return -1;
  long kib = -1;
  int reset = 0;
  if (std::fscanf(pipe, "peak_kib %ld reset %d", &kib, &reset) != 2) kib = -1;
  if (pclose(pipe) != 0) return -1;
  reset_ok = reset_ok && reset == 1;
  return kib < 0 ? -1 : static_cast<double>(kib) / 1024.0;
}

// x (B, T, F) as a torch tensor over the same memory.
torch::Tensor as_torch(const seqattn::Tensor3<float>& x) {
  return torch::from_blob(const_cast<float*>(x.data()), {x.dimension(0), x.dimension(1), x.dimension(2)},
                          torch::kFloat32);
}
// max |y_seqattn - y_torch| of one output.
float max_difference(const seqattn::Tensor3<float>& y, const torch::Tensor& yt) {
  return (as_torch(y) - yt).abs().max().item<float>();
}

// Same weights and input on both sides: the largest |y_seqattn - y_torch| of a forward.
void check_same_math() {
  torch::NoGradGuard no_grad;
  {
    const Index B = 2, T = 24, D = 32, H = 4;
    seqattn::MultiHeadAttention<float> s(D, H, seqattn::MultiHeadAttentionOptions().seed(3));
    compare::TorchMha t(B, T, D, H);
    auto& m = t.module();
    const std::vector<torch::Tensor> w = compare::parameter_tensors(s);  // Wq bq Wk bk Wv bv Wo bo, Keras shapes
    m->in_proj_weight.copy_(torch::cat({w[0].t(), w[2].t(), w[4].t()}));
    m->in_proj_bias.copy_(torch::cat({w[1], w[3], w[5]}));
    m->out_proj->weight.copy_(w[6].t());
    m->out_proj->bias.copy_(w[7]);
    const auto x = compare::uniform_input(B, T, D, 9);
    const auto& y = s.forward(x);
    torch::Tensor xt = as_torch(x).permute({1, 0, 2});
    torch::Tensor yt = std::get<0>(m->forward(xt, xt, xt, torch::Tensor(), false)).permute({1, 0, 2});
    std::printf("same-math check, MHA (B=%ld T=%ld D=%ld H=%ld): max |y_seqattn - y_torch| = %.2e\n",
                static_cast<long>(B), static_cast<long>(T), static_cast<long>(D), static_cast<long>(H),
                max_difference(y, yt));
  }
#if TORCH_VERSION_MAJOR >= 2
  {
    const Index B = 2, T = 24, D = 32, H = 4;
    seqattn::MultiHeadAttention<float> s(D, H, seqattn::MultiHeadAttentionOptions().seed(3));
    compare::TorchSdpa t(B, T, D, H);
    t.copy_weights(s);
    const auto x = compare::uniform_input(B, T, D, 9);
    const auto& y = s.forward(x);
    std::printf("same-math check, MHA as torch SDPA (B=%ld T=%ld D=%ld H=%ld): max |y_seqattn - y_torch| = %.2e\n",
                static_cast<long>(B), static_cast<long>(T), static_cast<long>(D), static_cast<long>(H),
                max_difference(y, t.forward(as_torch(x))));
  }
#endif
  for (Index width : {0, 5}) {
    const Index B = 2, T = 24, F = 16, U = 8;
    auto options = seqattn::SeqSelfAttentionOptions().units(U).seed(4);
    if (width) options.attention_width(width);
    seqattn::SeqSelfAttention<float> s(F, options);
    compare::TorchAdditive t(B, T, F, U, width ? std::optional<Index>(width) : std::nullopt);
    t.copy_weights(s);
    const auto x = compare::uniform_input(B, T, F, 9);
    const auto& y = s.forward(x);
    std::printf("same-math check, additive%s (B=%ld T=%ld F=%ld U=%ld): max |y_seqattn - y_torch| = %.2e\n",
                width ? ", width 5" : "", static_cast<long>(B), static_cast<long>(T), static_cast<long>(F),
                static_cast<long>(U), max_difference(y, t.forward(as_torch(x))));
  }
}

void check_same_math_lstm() {
  torch::NoGradGuard no_grad;
  const Index B = 3, T = 20, F = 8, U = 16;
  seqattn::LSTM<float> s(F, U, seqattn::LSTMOptions().return_sequences(true).bias_init(seqattn::Init::uniform(-.5, .5)).seed(5));
  compare::TorchLstm t(B, T, F, U, false);
  t.copy_weights(s);
  const auto x = compare::uniform_input(B, T, F, 9);
  const auto& y = s.forward(x);
  std::printf("same-math check, LSTM (B=%ld T=%ld F=%ld U=%ld): max |y_seqattn - y_torch| = %.2e\n",
              static_cast<long>(B), static_cast<long>(T), static_cast<long>(F), static_cast<long>(U),
              max_difference(y, t.forward(as_torch(x))));
}

// --- OpenBLAS core ---------------------------------------------------------------------------------------
// Debian's OpenBLAS is a DYNAMIC_ARCH build: at load time it picks a kernel set ("core") from cpuid. A version
// older than the CPU does not know it (OpenBLAS 0.3.21 and AMD family 26, Zen 5) and falls back to old kernels
// (SSE3 "Prescott" here), which makes libtorch 1.13's products several times slower. OPENBLAS_CORETYPE forces
// a core, read once when the library loads: so the program sets it and re-executes itself (once).

// Kernel generations, by OpenBLAS core name: 4 Cooperlake (AVX-512 + BF16) / Sapphire Rapids, 3 SkylakeX
// (AVX-512), 2 Haswell and Zen (AVX2 + FMA), 1 Sandy Bridge (AVX), 0 anything older or unknown.
int core_rank(std::string name) {
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (name == "cooperlake" || name == "sapphirerapids") return 4;
  if (name == "skylakex") return 3;
  if (name == "haswell" || name == "zen") return 2;
  if (name == "sandybridge") return 1;
  return 0;
}

// The best core the CPU supports, from the flags line of /proc/cpuinfo ("" when none of these), and why.
std::string best_core(std::string& why) {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.compare(0, 5, "flags") == 0) break;
  std::istringstream words(line.substr(line.find(':') == std::string::npos ? 0 : line.find(':') + 1));
  std::vector<std::string> flags;
  for (std::string w; words >> w;) flags.push_back(w);
  auto has = [&](const char* f) { return std::find(flags.begin(), flags.end(), f) != flags.end(); };
  const bool avx512 = has("avx512f") && has("avx512bw") && has("avx512vl");
  const bool bf16 = avx512 && has("avx512_bf16"), avx2 = has("avx2") && has("fma");
  why = bf16 ? "avx512f+bw+vl, avx512_bf16" : avx512 ? "avx512f+bw+vl" : avx2 ? "avx2+fma" : "no avx2+fma";
  return bf16 ? "Cooperlake" : avx512 ? "SkylakeX" : avx2 ? "Haswell" : "";
}

const char* openblas_call(const char* symbol) {  // openblas_get_corename / openblas_get_config, or nullptr
  using Get = char* (*)();
  auto f = reinterpret_cast<Get>(dlsym(RTLD_DEFAULT, symbol));
  return f ? f() : nullptr;
}

constexpr const char* kReexecGuard = "SEQATTN_COMPARE_OPENBLAS_REEXEC";  // "<core chosen before>|<what was done>"

// Re-executes the program with OPENBLAS_CORETYPE=<best> when OpenBLAS's core is older than the best the CPU
// supports (at most once: the guard variable carries what happened into the new process). Returns the sentence
// the header and the table notes print.
std::string openblas_core_setup(char** argv) {
  const char* core = openblas_call("openblas_get_corename");
  if (!core) return "OpenBLAS not loaded";
  std::string why;
  const std::string best = best_core(why);
  const char* inherited = std::getenv("OPENBLAS_CORETYPE");
  if (const char* guard = std::getenv(kReexecGuard)) {
    const std::string g = guard;
    const std::string before = g.substr(0, g.find('|')), done = g.substr(g.find('|') + 1);
    return seqattn::detail::cat("OpenBLAS core ", core, " (", done, " and re-ran itself: the core was ", before,
                                ", older than the best this CPU supports, ", best, ": ", why, ")");
  }
  if (!best.empty() && core_rank(core) < core_rank(best)) {
    const std::string done = inherited ? seqattn::detail::cat("this program replaced the inherited OPENBLAS_CORETYPE=",
                                                              inherited, " by OPENBLAS_CORETYPE=", best)
                                       : seqattn::detail::cat("set by this program: OPENBLAS_CORETYPE=", best);
    setenv(kReexecGuard, (std::string(core) + "|" + done).c_str(), 1);
    setenv("OPENBLAS_CORETYPE", best.c_str(), 1);
    std::fprintf(stderr, "OpenBLAS chose core %s, older than the %s this CPU supports (%s): re-running with %s\n", core,
                 best.c_str(), why.c_str(), done.c_str());
    std::fflush(stderr);
    execv("/proc/self/exe", argv);
    std::perror("execv /proc/self/exe (continuing with OpenBLAS's own choice)");
    unsetenv("OPENBLAS_CORETYPE");
    if (inherited) setenv("OPENBLAS_CORETYPE", inherited, 1);
  }
  return seqattn::detail::cat("OpenBLAS core ", core, " (",
                              inherited ? "from the inherited OPENBLAS_CORETYPE=" : "OpenBLAS's own choice",
                              inherited ? inherited : "", "; the best this CPU supports: ",
                              best.empty() ? "none of Haswell, SkylakeX, Cooperlake" : best, ", ", why, ")");
}

// at::show_config()'s key lines: torch version, BLAS, MKL, oneDNN, OpenMP, CPU capability.
std::string torch_config() {
  std::istringstream in(at::show_config());
  std::string out;
  for (std::string line; std::getline(in, line);) {
    const auto start = line.find_first_not_of(" -");
    if (start == std::string::npos) continue;
    line = line.substr(start);
    if (line.find("Math Kernel") != std::string::npos || line.find("MKL-DNN") != std::string::npos ||
        line.find("oneDNN") != std::string::npos || line.find("OpenMP") == 0 || line.find("CPU capability") == 0)
      out += "  " + line + "\n";
    if (line.find("Build settings:") == 0)
      for (const char* key : {"TORCH_VERSION=", "BLAS_INFO="}) {
        const auto k = line.find(key);
        if (k != std::string::npos) out += "  " + line.substr(k, line.find(',', k) - k) + "\n";
      }
  }
  return out;
}

std::string blas_library() {
  Dl_info info{};
  void* sgemm = dlsym(RTLD_DEFAULT, "sgemm_");
  if (sgemm && dladdr(sgemm, &info) && info.dli_fname) {
    char resolved[4096];
    if (realpath(info.dli_fname, resolved)) return resolved;
    return info.dli_fname;
  }
  return "(sgemm_ not found)";
}

std::string format_time(double s) {
  char buf[32];
  if (s < 1e-3)
    std::snprintf(buf, sizeof buf, "%.1f us", s * 1e6);
  else if (s < 1.0)
    std::snprintf(buf, sizeof buf, "%.2f ms", s * 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.2f s", s);
  return buf;
}

std::string format_mib(double mib) {
  char buf[32];
  if (mib < 0) return "n/a";
  std::snprintf(buf, sizeof buf, mib < 10 ? "%.2f" : "%.0f", mib);
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<Row> rows = make_rows();
  std::vector<int> threads = {1, 2};
  std::string only;
  bool memory = true, quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--memory-child" && i + 2 < argc) return memory_child(rows.at(std::stoul(argv[i + 1])), argv[i + 2]);
    if (arg == "--threads" && i + 1 < argc) {
      threads.clear();
      std::stringstream list(argv[++i]);
      for (std::string n; std::getline(list, n, ',');) threads.push_back(std::stoi(n));
    } else if (arg == "--only" && i + 1 < argc) {
      only = argv[++i];
    } else if (arg == "--no-memory") {
      memory = false;
    } else if (arg == "--quick") {
      quick = true;
    } else {
      std::fprintf(stderr, "usage: %s [--threads 1,2] [--only TEXT] [--no-memory] [--quick]\n", argv[0]);
      return 2;
    }
  }
  const std::string core = openblas_core_setup(argv);  // may re-execute the program (once)
  const std::string blas = blas_library();
  const char* openblas = openblas_call("openblas_get_config");
  std::printf("libtorch %s, BLAS (sgemm_) from %s%s%s; %s; seqattn with OpenMP: %s\n", TORCH_VERSION, blas.c_str(),
              openblas ? ", " : "", openblas ? openblas : "", core.c_str(), seqattn::has_openmp() ? "yes" : "no (1 thread only)");
  std::printf("at::show_config():\n%s", torch_config().c_str());
  if (blas.find("/blas/libblas.so") != std::string::npos)
    std::fprintf(stderr, "WARNING: libtorch uses the reference BLAS (netlib): its products are very slow. See "
                         "docs/pages/benchmarks.md (Side by side with libtorch), for running it with OpenBLAS.\n");
  check_same_math();
  check_same_math_lstm();

  std::vector<double> mem_s(rows.size(), -1), mem_t(rows.size(), -1);
  bool reset_ok = true;
  if (memory) {
    char exe[4096];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
      exe[n] = '\0';
      for (size_t r = 0; r < rows.size(); ++r) {
        if (!only.empty() && (rows[r].name + " " + rows[r].shape).find(only) == std::string::npos) continue;
        mem_s[r] = measure_memory(exe, r, "seqattn", reset_ok);
        mem_t[r] = measure_memory(exe, r, "torch", reset_ok);
      }
    }
  }

  std::printf("\n| row | shape | threads | seqattn | libtorch | speed-up | speed-up (CPU time) | seqattn seq/s | "
              "seqattn MiB | libtorch MiB |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  for (int n : threads) {
    set_threads(n);
    for (size_t r = 0; r < rows.size(); ++r) {
      const Row& row = rows[r];
      if (!only.empty() && (row.name + " " + row.shape).find(only) == std::string::npos) continue;
      const Timing t = time_row(row, quick);
      std::printf("| %s | %s | %d | %s | %s | %.2fx | %.2fx | %.0f | %s | %s |\n", row.name.c_str(), row.shape.c_str(),
                  n, format_time(t.seqattn).c_str(), format_time(t.torch).c_str(), t.torch / t.seqattn,
                  t.torch_cpu / t.seqattn_cpu, static_cast<double>(row.sequences) / t.seqattn, format_mib(mem_s[r]).c_str(),
                  format_mib(mem_t[r]).c_str());
      std::fflush(stdout);
    }
  }
  std::printf("\nTimes: median wall time per iteration over alternating rounds; speed-up = libtorch / seqattn in wall "
              "time, and in process CPU time (all threads, so it includes OpenMP threads spinning while they wait).\n");
  std::printf("libtorch %s: %s.\n", TORCH_VERSION, core.c_str());
  if (memory)
    std::printf("MiB: peak resident memory added by the row, measured once per row and library in a child "
                "process with 1 thread%s.\n",
                reset_ok ? "" : " (WARNING: /proc/self/clear_refs could not reset the peak; values are upper bounds)");
  return 0;
}
