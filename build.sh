#!/usr/bin/env bash
# Build, test and benchmark seqattn, and run its example. Usage: ./build.sh <command>
#
#   example   build (Release) and run examples/time_series_classifier on its built-in default task
#   streaming build (Release) and run examples/streaming_monitor: train a causal model, then run it on a live
#             stream one sample at a time (detections and per-step latency)
#   distributed  build (Release) examples/distributed_training and run it with mpirun on RANKS processes
#             (default 2) of this machine: the classifier trained data-parallel over MPI
#   test      build every test (Release; tests add their own flags) and run them all with ctest
#   bench     build (Release, -O3 -march=native) and run every benchmarks/bench_* binary. BENCH_FILTER=regex: only
#             the binaries whose name matches (built and run); BENCH_SAVE=file.json: also save every binary's
#             results in one JSON file; BENCH_BASELINE=file.json: then compare with a saved file, listing first
#             the rows more than BENCH_THRESHOLD (default 0.10) slower in BENCH_METRIC (real_time, the default, or
#             cpu_time; medians over repetitions), then counts and the rows on one side only. Never fails for slow
#             rows (not a gate: the machine is noisy); fails at once on an unreadable or malformed baseline.
#             (benchmarks/bench_compare.py, python3; it also runs on its own: merge, compare.)
#   native    build the tests of the SIMD kernels and of bitwise padding invariance with -march=native
#             (build-native/: the AVX2 or AVX-512 code a user's -march=native build runs) and run them
#   sanitize  build every unit test with AddressSanitizer + UndefinedBehaviorSanitizer (-g1, build-asan/)
#             and run them all with ctest; any report (memory error, leak, undefined behaviour) fails. The
#             property tests over random models and graphs run every 4th seed (SEQATTN_PROPERTY_STRIDE, default 4
#             here, 1 elsewhere: tests/support/property_stride.hpp)
#   tsan      build the threading tests with ThreadSanitizer (build-tsan/) and run them
#   fuzz      build the libFuzzer targets (clang, ASan + UBSan) and run each for FUZZ_SECONDS (default 60)
#   docs      generate the API reference from the header comments with Doxygen (docs/Doxyfile, the pages in
#             docs/pages) into build-docs/html/index.html; prints the warnings and fails on any (an undocumented
#             public class, function, option or member, a broken reference)
#   deps      only install the missing Debian packages
#
# Every command first installs the Debian packages it needs when they are missing (apt-get, with sudo when
# not root). Build trees: build/ (tests, and the examples built as tests are: SEQATTN_EXAMPLES_AS_TESTS),
# build-examples/ (`example`, `streaming`: the examples as a user builds them, Release -O3), build-bench/ and
# build-docs/ (`docs`).
# Environment: RANKS (distributed: processes, default 2), JOBS (parallel build jobs, default 2), CMAKE_GENERATOR, CXX, CTEST_ARGS (extra ctest flags), BENCH_ARGS
# (extra flags of every benchmark binary), BENCH_MIN_TIME (default 0.2), BENCH_FILTER, BENCH_SAVE, BENCH_BASELINE,
# BENCH_THRESHOLD, BENCH_METRIC (bench, above), SEQATTN_PROPERTY_STRIDE (sanitize: run every N-th seed of the
# random-model property tests, default 4).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JOBS="${JOBS:-2}"
# Compiler and build tools, Eigen (the only dependency of the headers), GoogleTest and Google Benchmark, and
# nlohmann-json (io/safetensors.hpp and its tests), HDF5 and libzip (io/keras_import.hpp and its tests), cxxopts, stb and zlib (examples/time_series_classifier),
# pkg-config (finds HDF5 and libzip; the packaging test of the installed seqattn.pc), the DejaVu fonts (the text of
# the PNG figures of examples/plot/), Open MPI (libopenmpi-dev, openmpi-bin: the optional distributed/mpi.hpp, its
# tests (mpirun in ctest) and example).
PACKAGES=(g++ cmake make pkg-config libeigen3-dev libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev
  libcxxopts-dev libstb-dev zlib1g-dev libhdf5-dev libzip-dev fonts-dejavu-core libopenmpi-dev openmpi-bin)
# `fuzz` also needs clang and its libFuzzer and sanitizer runtimes.
FUZZ_PACKAGES=(clang libclang-rt-14-dev)
# `docs` needs only Doxygen and graphviz (the class inheritance graphs).
DOCS_PACKAGES=(doxygen graphviz)

usage() {
  # The header comment above, up to the first line that is not a comment.
  awk 'NR == 1 { next } !/^#/ { exit } { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"
}

log() { printf '==> %s\n' "$*"; }

# Installs the packages of PACKAGES that dpkg does not report as installed.
install_deps() {
  if ! command -v dpkg-query >/dev/null 2>&1; then
    log "dpkg-query not found (not Debian/Ubuntu): install ${PACKAGES[*]} yourself"
    return 0
  fi
  local missing=()
  for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
      missing+=("$pkg")
    fi
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return 0
  fi
  log "installing missing packages: ${missing[*]}"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
}

# configure <build dir> <cmake -D options...>
configure() {
  local dir="$1"
  shift
  log "configuring $dir"
  cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=Release "$@"
}

# run_example <target> <what it does>: builds examples/<target> (Release -O3, in build-examples/) and runs it.
run_example() {
  local dir="$ROOT/build-examples" target="$1"
  configure "$dir" -DSEQATTN_BUILD_TESTS=OFF -DSEQATTN_BUILD_EXAMPLES=ON -DSEQATTN_BUILD_BENCHMARKS=OFF
  cmake --build "$dir" --target "$target" -j "$JOBS"
  log "running examples/$target$2"
  "$dir/examples/$target"
}

cmd_example() { run_example time_series_classifier " (outputs in tsc_out/; --help lists every option)"; }
cmd_streaming() { run_example streaming_monitor ""; }

# distributed_training under mpirun (Open MPI refuses root unless told: CI containers and this script run as root).
cmd_distributed() {
  local dir="$ROOT/build-examples"
  configure "$dir" -DSEQATTN_BUILD_TESTS=OFF -DSEQATTN_BUILD_EXAMPLES=ON -DSEQATTN_BUILD_BENCHMARKS=OFF
  cmake --build "$dir" --target distributed_training -j "$JOBS"
  if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  fi
  log "running mpirun -np ${RANKS:-2} examples/distributed_training"
  OMP_NUM_THREADS=1 mpirun --oversubscribe -np "${RANKS:-2}" "$dir/examples/distributed_training"
}

cmd_test() {
  local dir="$ROOT/build"
  configure "$dir" -DSEQATTN_BUILD_TESTS=ON -DSEQATTN_BUILD_EXAMPLES=ON -DSEQATTN_BUILD_BENCHMARKS=OFF \
    -DSEQATTN_EXAMPLES_AS_TESTS=ON
  log "building every test"
  cmake --build "$dir" -j "$JOBS"
  log "running the tests"
  # ctest prints the summary line: "100% tests passed, 0 tests failed out of N".
  # shellcheck disable=SC2086
  (cd "$dir" && ctest --output-on-failure -j "$JOBS" ${CTEST_ARGS:-})
}

cmd_bench() {
  local dir="$ROOT/build-bench" compare="$ROOT/benchmarks/bench_compare.py"
  local filter="${BENCH_FILTER:-}" save="${BENCH_SAVE:-}" baseline="${BENCH_BASELINE:-}"
  # A bad baseline fails now, not after the benchmarks have run.
  if [ -n "$baseline" ]; then
    python3 "$compare" check "$baseline"
  fi
  configure "$dir" -DSEQATTN_BUILD_TESTS=OFF -DSEQATTN_BUILD_EXAMPLES=OFF -DSEQATTN_BUILD_BENCHMARKS=ON
  if [ -n "$filter" ]; then
    # Build only the benchmark targets (benchmarks/bench_<topic>.cpp) whose name matches.
    local targets=() src name
    for src in "$ROOT"/benchmarks/bench_*.cpp; do
      name="$(basename "$src" .cpp)"
      if [[ "$name" =~ $filter ]]; then
        targets+=("$name")
      fi
    done
    if [ "${#targets[@]}" -eq 0 ]; then
      echo "build.sh: no benchmark matches BENCH_FILTER='$filter'" >&2
      exit 2
    fi
    cmake --build "$dir" --target "${targets[@]}" -j "$JOBS"
  else
    cmake --build "$dir" -j "$JOBS"
  fi
  # JSON results (BENCH_SAVE, BENCH_BASELINE): one --benchmark_out file per binary, merged after the runs.
  local json_dir=""
  if [ -n "$save" ] || [ -n "$baseline" ]; then
    json_dir="$dir/bench-json"
    rm -rf "$json_dir"
    mkdir -p "$json_dir"
  fi
  local found=0 out_args
  for bench in "$dir"/benchmarks/bench_*; do
    [ -x "$bench" ] || continue
    if [ -n "$filter" ] && ! [[ "$(basename "$bench")" =~ $filter ]]; then
      continue
    fi
    found=1
    out_args=()
    if [ -n "$json_dir" ]; then
      out_args=("--benchmark_out=$json_dir/$(basename "$bench").json" --benchmark_out_format=json)
    fi
    log "running $(basename "$bench")"
    # One table per binary: time, iterations, then the counters (seq/s, GFLOP/s, ...) as aligned columns.
    # shellcheck disable=SC2086
    "$bench" --benchmark_min_time="${BENCH_MIN_TIME:-0.2}" --benchmark_counters_tabular=true ${out_args[@]+"${out_args[@]}"} \
      ${BENCH_ARGS:-}
  done
  if [ "$found" -eq 0 ]; then
    log "no benchmarks yet (add benchmarks/bench_<topic>.cpp)"
    return 0
  fi
  if [ -n "$json_dir" ]; then
    # Merged into the build tree first, so BENCH_SAVE may name the baseline itself (compared, then replaced).
    python3 "$compare" merge "$json_dir/results.json" "$json_dir"/bench_*.json
    if [ -n "$baseline" ]; then
      log "comparing with $baseline"
      python3 "$compare" compare "$baseline" "$json_dir/results.json" --threshold "${BENCH_THRESHOLD:-0.10}" \
        --metric "${BENCH_METRIC:-real_time}"
    fi
    if [ -n "$save" ]; then
      cp "$json_dir/results.json" "$save"
      log "saved the results in $save"
    fi
  fi
}

# The tests of every layer with hand-written SIMD kernels (attention products, softmax, projections) or a
# bitwise guarantee (padding invariance, thread determinism), compiled for this machine (SEQATTN_NATIVE_TESTS):
# ./build.sh test builds for baseline x86-64, whose SSE2 packets take other code paths (packet sizes, tiles).
# tests/CMakeLists.txt lists them (SEQATTN_NATIVE_SET: target native_tests, ctest label native).
cmd_native() {
  local dir="$ROOT/build-native"
  configure "$dir" -DSEQATTN_NATIVE_TESTS=ON -DSEQATTN_BUILD_TESTS=ON -DSEQATTN_BUILD_EXAMPLES=OFF \
    -DSEQATTN_BUILD_BENCHMARKS=OFF
  log "building the native tests with -march=native"
  cmake --build "$dir" --target native_tests -j "$JOBS"
  log "running them"
  # shellcheck disable=SC2086
  (cd "$dir" && ctest --output-on-failure -j "$JOBS" -L native ${CTEST_ARGS:-})
}

# Sanitizer runs stop at the first report (halt_on_error) with a stack trace; ASan also checks for leaks.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:halt_on_error=1:abort_on_error=1:detect_stack_use_after_return=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}"

# Every unit test under ASan + UBSan (SEQATTN_SANITIZE, top-level CMakeLists.txt): no packaging tests, no
# benchmarks, no example programs (their code is covered by the test_example_* tests).
cmd_sanitize() {
  local dir="$ROOT/build-asan"
  configure "$dir" -DCMAKE_BUILD_TYPE=Debug -DSEQATTN_SANITIZE=address,undefined -DSEQATTN_BUILD_TESTS=ON \
    -DSEQATTN_BUILD_EXAMPLES=OFF -DSEQATTN_BUILD_BENCHMARKS=OFF
  log "building every unit test with -fsanitize=address,undefined"
  cmake --build "$dir" -j "$JOBS"
  log "running the tests under ASan + UBSan (property tests: every ${SEQATTN_PROPERTY_STRIDE:-4}th seed)"
  # shellcheck disable=SC2086
  (cd "$dir" && SEQATTN_PROPERTY_STRIDE="${SEQATTN_PROPERTY_STRIDE:-4}" ctest --output-on-failure -j "$JOBS" ${CTEST_ARGS:-})
}

# The threading tests under ThreadSanitizer: threads running inference on their own model copies, two threads
# entering one model (refused with UsageError), and the
# thread-count API (built without OpenMP: libgomp is not instrumented).
TSAN_TESTS=(test_thread_safety test_threads test_concurrent_use)
cmd_tsan() {
  local dir="$ROOT/build-tsan"
  configure "$dir" -DCMAKE_BUILD_TYPE=Debug -DSEQATTN_SANITIZE=thread -DSEQATTN_BUILD_TESTS=ON \
    -DSEQATTN_BUILD_EXAMPLES=OFF -DSEQATTN_BUILD_BENCHMARKS=OFF
  log "building ${TSAN_TESTS[*]} with -fsanitize=thread"
  cmake --build "$dir" --target "${TSAN_TESTS[@]}" -j "$JOBS"
  for t in "${TSAN_TESTS[@]}"; do
    log "running $t under TSan"
    "$dir/tests/$t"
  done
}

# The API reference (docs/Doxyfile): doxygen writes build-docs/html and its warnings into build-docs/warnings.log.
# Any warning fails: every public entity outside the detail namespaces has a description.
cmd_docs() {
  local dir="$ROOT/build-docs" version
  version="$(sed -n 's/^#define SEQATTN_VERSION_STRING "\(.*\)"$/\1/p' "$ROOT/include/seqattn/version.hpp")"
  rm -rf "$dir/html" "$dir/warnings.log"
  mkdir -p "$dir"
  log "running doxygen $(doxygen --version) (docs/Doxyfile)"
  (cd "$ROOT" && SEQATTN_DOCS_OUT="$dir" SEQATTN_VERSION="$version" doxygen docs/Doxyfile)
  # The pages link their pictures as ../images/<file> (as on GitHub): beside html/.
  rm -rf "$dir/images"
  cp -r "$ROOT/docs/images" "$dir/images"
  if [ -s "$dir/warnings.log" ]; then
    cat "$dir/warnings.log" >&2
    echo "build.sh: doxygen printed $(grep -cE 'warning:|error:' "$dir/warnings.log") warnings (above; also in" \
      "$dir/warnings.log)" >&2
    exit 1
  fi
  log "doxygen: 0 warnings; the API reference is $dir/html/index.html"
}

main() {
  if [ "$#" -ne 1 ]; then
    usage
    exit 2
  fi
  case "$1" in
    example)
      install_deps
      cmd_example
      ;;
    streaming)
      install_deps
      cmd_streaming
      ;;
    distributed)
      install_deps
      cmd_distributed
      ;;
    test)
      install_deps
      cmd_test
      ;;
    bench)
      if [ -n "${BENCH_SAVE:-}" ] || [ -n "${BENCH_BASELINE:-}" ]; then
        PACKAGES+=(python3)  # benchmarks/bench_compare.py
      fi
      install_deps
      cmd_bench
      ;;
    native)
      install_deps
      cmd_native
      ;;
    sanitize)
      install_deps
      cmd_sanitize
      ;;
    tsan)
      install_deps
      cmd_tsan
      ;;
    fuzz)
      PACKAGES+=("${FUZZ_PACKAGES[@]}")
      install_deps
      "$ROOT/fuzz/run.sh" "${FUZZ_SECONDS:-60}"
      ;;
    docs)
      PACKAGES=("${DOCS_PACKAGES[@]}")
      install_deps
      cmd_docs
      ;;
    deps) install_deps ;;
    -h | --help | help) usage ;;
    *)
      echo "build.sh: unknown command '$1'" >&2
      usage >&2
      exit 2
      ;;
  esac
}

main "$@"
