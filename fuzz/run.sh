#!/usr/bin/env bash
# Fuzzes the weight loaders: fuzz_weights (load_weights, seqattn format) and fuzz_safetensors
# (load_safetensors, read_safetensors), with libFuzzer under AddressSanitizer and UndefinedBehaviorSanitizer.
#
#   fuzz/run.sh [seconds per target]        default 60 (or $FUZZ_SECONDS)
#
# 1. builds fuzz/make_corpus.cpp and writes the seed corpus to fuzz/corpus/<target>/ (small, committed)
# 2. with clang++ and its libFuzzer runtime: builds each target with -fsanitize=fuzzer,address,undefined and
#    runs it for the given time on a scratch copy of its corpus (new inputs stay in the build directory);
#    without them: builds each target with g++ -fsanitize=address,undefined and replays the seeds once.
# A crash, a sanitizer report, or an exception that is not a seqattn::Error fails the script (crash inputs
# are left in the build directory). Needs libeigen3-dev and nlohmann-json3-dev (and clang for step 2).
# Environment: FUZZ_BUILD_DIR (default build-fuzz), CXX_FUZZ (default clang++), CXX (default g++).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_PER_TARGET="${1:-${FUZZ_SECONDS:-60}}"
OUT="${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}"
CXX_FUZZ="${CXX_FUZZ:-clang++}"
CXX="${CXX:-g++}"
TARGETS=(weights safetensors)
EIGEN_FLAGS="$(pkg-config --cflags eigen3 2>/dev/null || echo -I/usr/include/eigen3)"
# shellcheck disable=SC2206
COMMON=(-std=c++17 -g -O1 -I"$ROOT/include" -I"$ROOT/fuzz" $EIGEN_FLAGS)
SANITIZE=(-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)

log() { printf '==> %s\n' "$*"; }
mkdir -p "$OUT"

log "writing the seed corpus to fuzz/corpus/"
"$CXX" "${COMMON[@]}" "$ROOT/fuzz/make_corpus.cpp" -o "$OUT/make_corpus"
"$OUT/make_corpus" "$ROOT/fuzz/corpus"

has_libfuzzer() {
  command -v "$CXX_FUZZ" >/dev/null 2>&1 || return 1
  echo 'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }' >"$OUT/probe.cpp"
  "$CXX_FUZZ" -fsanitize=fuzzer "$OUT/probe.cpp" -o "$OUT/probe" >/dev/null 2>&1
}

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

if has_libfuzzer; then
  for t in "${TARGETS[@]}"; do
    log "building fuzz_$t ($CXX_FUZZ -fsanitize=fuzzer,address,undefined)"
    "$CXX_FUZZ" "${COMMON[@]}" "${SANITIZE[@]}" -fsanitize=fuzzer "$ROOT/fuzz/fuzz_$t.cpp" -o "$OUT/fuzz_$t"
    rm -rf "$OUT/corpus/$t"
    mkdir -p "$OUT/corpus/$t" "$OUT/crashes/$t"
    log "fuzzing fuzz_$t for ${SECONDS_PER_TARGET}s"
    (cd "$OUT/crashes/$t" &&
      "$OUT/fuzz_$t" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
        -print_final_stats=1 "$OUT/corpus/$t" "$ROOT/fuzz/corpus/$t")
  done
else
  log "$CXX_FUZZ with libFuzzer not found: replaying the seeds under ASan+UBSan with $CXX instead"
  for t in "${TARGETS[@]}"; do
    "$CXX" "${COMMON[@]}" "${SANITIZE[@]}" "$ROOT/fuzz/fuzz_$t.cpp" "$ROOT/fuzz/replay_main.cpp" -o "$OUT/replay_$t"
    "$OUT/replay_$t" "$ROOT"/fuzz/corpus/"$t"/*
  done
fi
log "fuzzing passed"
