#!/usr/bin/env bash
# Throughput of data-parallel training (examples/distributed_training) on 1 and 2 processes of this machine,
# measured side by side: the runs alternate (1, 2, 1, 2, ...) so that a noisy machine hurts both alike, and the
# medians are compared. Each process runs one thread (OMP_NUM_THREADS=1). Prints every run's line, the medians,
# their ratio and the bytes each rank exchanged per step; the weight checksums of all runs must agree (the
# result does not depend on the number of processes) or the script fails.
#   benchmarks/distributed_throughput.sh [runs (5)] [example options, e.g. --d-model 100 --epochs 4]
# Builds examples/distributed_training in build-bench-mpi/ (Release, -O3 -march=native). Needs libopenmpi-dev,
# openmpi-bin (./build.sh deps installs them).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs="${1:-5}"
shift || true
dir="$ROOT/build-bench-mpi"
cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS="-O3 -march=native" \
  -DSEQATTN_BUILD_TESTS=OFF -DSEQATTN_BUILD_EXAMPLES=ON -DSEQATTN_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$dir" --target distributed_training -j "${JOBS:-2}" >/dev/null
if [ "$(id -u)" -eq 0 ]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
export OMP_NUM_THREADS=1
args=(--quiet --epochs 4 "$@")
declare -A rates
checksums=()
for ((i = 0; i < runs; ++i)); do
  for n in 1 2; do
    line="$(mpirun --oversubscribe -np "$n" "$dir/examples/distributed_training" "${args[@]}" | tail -1)"
    echo "$line"
    rates[$n]+="$(echo "$line" | sed -E 's/.*: ([0-9.]+) training sequences.*/\1/') "
    checksums+=("$(echo "$line" | sed -E 's/.*checksum ([0-9a-f]+).*/\1/')")
    [ "$n" -eq 2 ] && bytes="$(echo "$line" | sed -E 's/.*, ([0-9.]+) bytes exchanged.*/\1/')"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
m1="$(echo "${rates[1]}" | median)"
m2="$(echo "${rates[2]}" | median)"
echo "median training throughput: 1 process $m1, 2 processes $m2 sequences/s: ratio $(awk -v a="$m2" -v b="$m1" 'BEGIN { printf "%.2f", a / b }')x"
echo "bytes exchanged per step and rank (2 processes): $bytes"
if [ "$(printf '%s\n' "${checksums[@]}" | sort -u | wc -l)" -ne 1 ]; then
  echo "FAIL: the weight checksums differ between runs: ${checksums[*]}" >&2
  exit 1
fi
echo "weight checksum ${checksums[0]} in all $((2 * runs)) runs"
