#!/usr/bin/env bash
# Fuzzes every parser with libFuzzer under AddressSanitizer and UndefinedBehaviorSanitizer:
#   weights      load_weights (seqattn's own format)            fuzz/fuzz_weights.cpp
#   model        load_model, load_graph (model files)            fuzz/fuzz_model.cpp
#   safetensors  load_safetensors, read_safetensors              fuzz/fuzz_safetensors.cpp
#   checkpoint   decode_checkpoint, load_checkpoint              fuzz/fuzz_checkpoint.cpp
#   ucr          the UCR/UEA loader of the example (text, .ts)   fuzz/fuzz_ucr.cpp
#   idx          the IDX reader of the example                   fuzz/fuzz_idx.cpp
#   options      the example's command-line options              fuzz/fuzz_options.cpp
#
#   fuzz/run.sh [seconds per target] [target...]     default 60 s (or $FUZZ_SECONDS), every target
#   fuzz/run.sh --replay [target...]                 no libFuzzer: build with g++ -fsanitize=address,undefined
#                                                    and run each target once on every seed
#   fuzz/run.sh --write-corpus                       rewrite the seed corpus fuzz/corpus/ (fuzz/make_corpus.cpp)
#
# The seed corpus fuzz/corpus/<target>/ is committed; the test fuzz_corpus_current (tests/CMakeLists.txt) fails
# when fuzz/make_corpus.cpp would write other files (a format changed): then run fuzz/run.sh --write-corpus.
# 1. builds each target (clang++ -fsanitize=fuzzer,address,undefined) and, once built,
# 2. runs it FUZZ_JOBS at a time (default 2, one per core) for the given time each, on a scratch copy of
#    its corpus (new inputs stay in the build directory), then prints the executions of each target.
# A crash, a sanitizer report, a leak, a timeout or an exception the target does not allow fails the script;
# the crashing input is left in $FUZZ_BUILD_DIR/crashes/<target>/ and its log in $FUZZ_BUILD_DIR/<target>.log.
# Installs nothing: needs clang++ with its libFuzzer runtime (Debian: clang libclang-rt-14-dev), libeigen3-dev,
# nlohmann-json3-dev and libcxxopts-dev (./build.sh deps). Without libFuzzer it stops with a message.
# Environment: FUZZ_BUILD_DIR (default build-fuzz), CXX_FUZZ (default clang++), CXX (--replay, default g++),
# FUZZ_JOBS (builds and targets run at once, default 2).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
CXX_FUZZ="${CXX_FUZZ:-clang++}"
CXX="${CXX:-g++}"
JOBS="${FUZZ_JOBS:-2}"
ALL_TARGETS=(weights model safetensors checkpoint ucr idx options)
REPLAY=0
WRITE_CORPUS=0
if [ "${1:-}" = "--replay" ]; then
  REPLAY=1
  shift
elif [ "${1:-}" = "--write-corpus" ]; then
  WRITE_CORPUS=1
  shift
fi
SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
if [ "$REPLAY" -eq 0 ] && [ "$#" -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then
  SECONDS_PER_TARGET="$1"
  shift
fi
TARGETS=("$@")
[ "${#TARGETS[@]}" -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")
for t in "${TARGETS[@]}"; do
  [ -f "$ROOT/fuzz/fuzz_$t.cpp" ] || { echo "fuzz/run.sh: unknown target '$t' (${ALL_TARGETS[*]})" >&2; exit 2; }
done

EIGEN_FLAGS="$(pkg-config --cflags eigen3 2>/dev/null || echo -I/usr/include/eigen3)"
# -g1: line tables only (stack traces keep file:line; full -g takes about 20% longer to build)
# shellcheck disable=SC2206
COMMON=(-std=c++17 -g1 -O1 -I"$ROOT/include" -I"$ROOT/fuzz" $EIGEN_FLAGS)
SANITIZE=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

log() { printf '==> %s\n' "$*"; }
mkdir -p "$OUT"

# build_corpus_writer: fuzz/make_corpus.cpp (-O0: compiles fastest), log in $OUT/build_corpus.log
build_corpus_writer() {
  "$CXX" "${COMMON[@]}" -O0 -g0 "$ROOT/fuzz/make_corpus.cpp" -o "$OUT/make_corpus" >"$OUT/build_corpus.log" 2>&1
}
write_corpus() {
  log "writing the seed corpus to fuzz/corpus/"
  "$OUT/make_corpus" "$ROOT/fuzz/corpus"
}

if [ "$WRITE_CORPUS" -eq 1 ]; then
  build_corpus_writer || { cat "$OUT/build_corpus.log" >&2; exit 1; }
  write_corpus
  exit 0
fi
if [ "$REPLAY" -eq 1 ]; then
  for t in "${TARGETS[@]}"; do
    log "replaying the seeds of $t under ASan+UBSan ($CXX)"
    "$CXX" "${COMMON[@]}" "${SANITIZE[@]}" "$ROOT/fuzz/fuzz_$t.cpp" "$ROOT/fuzz/replay_main.cpp" -o "$OUT/replay_$t"
    "$OUT/replay_$t" "$ROOT"/fuzz/corpus/"$t"/*
  done
  log "replay passed"
  exit 0
fi

echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' >"$OUT/probe.cpp"
if ! command -v "$CXX_FUZZ" >/dev/null 2>&1 || ! "$CXX_FUZZ" -fsanitize=fuzzer "$OUT/probe.cpp" -o "$OUT/probe" >/dev/null 2>&1; then
  echo "fuzz/run.sh: $CXX_FUZZ with libFuzzer (-fsanitize=fuzzer) not found. Install clang and its runtime" >&2
  echo "  (Debian: apt-get install clang libclang-rt-14-dev), or run fuzz/run.sh --replay to replay the seeds." >&2
  exit 1
fi

# build <target>: the fuzzer binary, log in $OUT/build_<target>.log
build() {
  "$CXX_FUZZ" "${COMMON[@]}" "${SANITIZE[@]}" -fsanitize=fuzzer "$ROOT/fuzz/fuzz_$1.cpp" -o "$OUT/fuzz_$1" \
    >"$OUT/build_$1.log" 2>&1
}
# run <target>: fuzzes it for SECONDS_PER_TARGET; output in $OUT/<target>.log
run() {
  rm -rf "$OUT/corpus/$1"
  mkdir -p "$OUT/corpus/$1" "$OUT/crashes/$1"
  (cd "$OUT/crashes/$1" &&
    "$OUT/fuzz_$1" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
      -print_final_stats=1 "$OUT/corpus/$1" "$ROOT/fuzz/corpus/$1") >"$OUT/$1.log" 2>&1
}
# build_and_run <target>: builds it, then fuzzes it (exit 90 when the build failed), so a target starts fuzzing as
# soon as it is built, while the other core still compiles (the model target's build is the longest).
build_and_run() {
  build "$1" || return 90
  run "$1"
}
# in_parallel <function> <targets...>: runs <function> on every target, JOBS at a time, starting the next one as
# soon as one ends (the builds take 2 s to over a minute: whole batches would wait for the slowest); fails if any
# failed. (`wait -n -p`: bash >= 5.1.)
in_parallel() {
  local fn="$1" failed=0 pid rc t logfile
  shift
  local pending=("$@")
  local -A running=()  # pid -> target
  while [ "${#pending[@]}" -gt 0 ] || [ "${#running[@]}" -gt 0 ]; do
    if [ "${#pending[@]}" -gt 0 ] && [ "${#running[@]}" -lt "$JOBS" ]; then
      "$fn" "${pending[0]}" &
      running[$!]="${pending[0]}"
      pending=("${pending[@]:1}")
      continue
    fi
    rc=0
    wait -n -p pid "${!running[@]}" || rc=$?
    t="${running[$pid]}"
    unset "running[$pid]"
    if [ "$rc" -ne 0 ]; then
      failed=1
      logfile="$OUT/$t.log"
      { [ "$fn" = build ] || [ "$rc" -eq 90 ]; } && logfile="$OUT/build_$t.log"
      echo "fuzz/run.sh: $fn $t FAILED; the end of $logfile:" >&2
      tail -n 40 "$logfile" >&2
    fi
  done
  return "$failed"
}

if [ "${BASH_VERSINFO[0]}" -lt 5 ] || { [ "${BASH_VERSINFO[0]}" -eq 5 ] && [ "${BASH_VERSINFO[1]}" -lt 1 ]; }; then
  echo "fuzz/run.sh: needs bash >= 5.1 (found $BASH_VERSION); fuzz/run.sh --replay works with older ones" >&2
  exit 1
fi
# The longest build (model) first, so it overlaps the others' builds and runs.
ORDERED=()
for t in model "${TARGETS[@]}"; do
  [[ " ${TARGETS[*]} " == *" $t "* ]] && [[ " ${ORDERED[*]} " != *" $t "* ]] && ORDERED+=("$t")
done
log "building ${ORDERED[*]} ($CXX_FUZZ -fsanitize=fuzzer,address,undefined) and fuzzing each for" \
  "${SECONDS_PER_TARGET}s once built, $JOBS at a time"
status=0
in_parallel build_and_run "${ORDERED[@]}" || status=1

printf '\n%-12s %14s %10s %8s  %s\n' target executions exec/s corpus result
for t in "${TARGETS[@]}"; do
  execs="$(grep -oE 'stat::number_of_executed_units:[[:space:]]*[0-9]+' "$OUT/$t.log" | awk '{print $2}' | tail -1)"
  rate="$(grep -oE 'stat::average_exec_per_sec:[[:space:]]*[0-9]+' "$OUT/$t.log" | awk '{print $2}' | tail -1)"
  units="$(grep -o 'corp: [0-9]*' "$OUT/$t.log" | tail -1 | awk '{print $2}')"
  result=ok
  if grep -qE 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|runtime error:|deadly signal' "$OUT/$t.log"; then
    result=FAILED
    status=1
  fi
  printf '%-12s %14s %10s %8s  %s\n' "$t" "${execs:-?}" "${rate:-?}" "${units:-?}" "$result"
done
if [ "$status" -ne 0 ]; then
  echo "fuzz/run.sh: a target failed (crash inputs in $OUT/crashes/, logs in $OUT/<target>.log)" >&2
  exit 1
fi
log "fuzzing passed"
