#!/usr/bin/env bash
# Build, test and benchmark seqattn, and run its example. Usage: ./build.sh <command>
#
#   example   build (Release) and run examples/quickstart_classifier on its built-in data
#   test      build every test (Release; tests add their own flags) and run them all with ctest
#   bench     build (Release, -O3 -march=native) and run every benchmarks/bench_* binary
#   deps      only install the missing Debian packages
#
# Every command first installs the Debian packages it needs when they are missing (apt-get, with sudo when
# not root). Build trees: build/ (tests and examples) and build-bench/ (benchmarks).
# Environment: JOBS (parallel build jobs, default 2), CMAKE_GENERATOR, CXX, CTEST_ARGS (extra ctest flags), BENCH_ARGS.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
JOBS="${JOBS:-2}"
# Compiler and build tools, Eigen (the only dependency of the headers), GoogleTest and Google Benchmark, and
# nlohmann-json (io/safetensors.hpp and its tests), cxxopts, stb and zlib (examples/time_series_classifier).
PACKAGES=(g++ cmake make libeigen3-dev libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev
  libcxxopts-dev libstb-dev zlib1g-dev)

usage() {
  sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
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

cmd_example() {
  local dir="$ROOT/build"
  configure "$dir" -DSEQATTN_BUILD_TESTS=ON -DSEQATTN_BUILD_EXAMPLES=ON -DSEQATTN_BUILD_BENCHMARKS=OFF
  cmake --build "$dir" --target quickstart_classifier -j "$JOBS"
  log "running examples/quickstart_classifier"
  "$dir/examples/quickstart_classifier"
}

cmd_test() {
  local dir="$ROOT/build"
  configure "$dir" -DSEQATTN_BUILD_TESTS=ON -DSEQATTN_BUILD_EXAMPLES=ON -DSEQATTN_BUILD_BENCHMARKS=OFF
  log "building every test"
  cmake --build "$dir" -j "$JOBS"
  log "running the tests"
  # ctest prints the summary line: "100% tests passed, 0 tests failed out of N".
  # shellcheck disable=SC2086
  (cd "$dir" && ctest --output-on-failure -j "$JOBS" ${CTEST_ARGS:-})
}

cmd_bench() {
  local dir="$ROOT/build-bench"
  configure "$dir" -DSEQATTN_BUILD_TESTS=OFF -DSEQATTN_BUILD_EXAMPLES=OFF -DSEQATTN_BUILD_BENCHMARKS=ON
  cmake --build "$dir" -j "$JOBS"
  local found=0
  for bench in "$dir"/benchmarks/bench_*; do
    [ -x "$bench" ] || continue
    found=1
    log "running $(basename "$bench")"
    # One table per binary: time, iterations, then the counters (seq/s, GFLOP/s, ...) as aligned columns.
    # shellcheck disable=SC2086
    "$bench" --benchmark_min_time="${BENCH_MIN_TIME:-0.2}" --benchmark_counters_tabular=true ${BENCH_ARGS:-}
  done
  if [ "$found" -eq 0 ]; then
    log "no benchmarks yet (add benchmarks/bench_<topic>.cpp)"
  fi
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
    test)
      install_deps
      cmd_test
      ;;
    bench)
      install_deps
      cmd_bench
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
