#!/usr/bin/env bash
# run_both.sh: both anchors in one run and one Markdown table. Builds compare_libtorch (Debian's libtorch 1.13,
# build-bench/) and compare_libtorch2 (libtorch 2.x from the PyPI wheel, torch2_env.sh, build-torch2/), runs the
# first then the second with the same arguments (each alternates seqattn and torch rounds in its own process),
# keeps both outputs (build-torch2/run_both_1.txt, run_both_2.txt) and merges their tables:
#
#   benchmarks/compare_libtorch/run_both.sh [compare_libtorch arguments, e.g. --threads 1,2 --only MHA --no-memory]
#
# Columns: seqattn's time from the first run; torch 1.13 (nn::MultiheadAttention); torch 2.x MHA (the same
# module); torch 2.x SDPA (the written-out attention around at::scaled_dot_product_attention, MHA shapes only);
# speed-ups = torch / seqattn, each against the seqattn time measured in the same alternation (so they do not
# divide by the seqattn column when the two runs measured seqattn differently). Run from the repository root.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"
opts=(-DSEQATTN_BUILD_TESTS=OFF -DSEQATTN_BUILD_EXAMPLES=OFF -DSEQATTN_BUILD_BENCHMARKS=ON -DCMAKE_BUILD_TYPE=Release)
JOBS=${JOBS:-1}

cmake -S . -B build-bench "${opts[@]}" >/dev/null
cmake --build build-bench --target compare_libtorch -j"$JOBS" >&2
prefix=$("$here/torch2_env.sh" | tail -1)
cmake -S . -B build-torch2 "${opts[@]}" -DSEQATTN_TORCH2_PREFIX="$prefix" >/dev/null
cmake --build build-torch2 --target compare_libtorch2 -j"$JOBS" >&2

out1=build-torch2/run_both_1.txt
out2=build-torch2/run_both_2.txt
echo "run_both: $(date -u '+%Y-%m-%d %H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs" | tee "$out1.when" >&2
build-bench/benchmarks/compare_libtorch/compare_libtorch "$@" | tee "$out1" >&2
build-torch2/benchmarks/compare_libtorch/compare_libtorch2 "$@" | tee "$out2" >&2
echo "run_both: done $(date -u '+%H:%M UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out1.when" >&2

python3 - "$out1" "$out2" "$out1.when" <<'PY'
import sys

def read(path):
    header, rows = [], {}
    for line in open(path):
        line = line.rstrip("\n")
        if line.startswith("| ") and not line.startswith("| row"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[(cells[0], cells[1], cells[2])] = (cells[3], cells[4], cells[5])
        elif "BLAS (sgemm_)" in line or line.startswith(("  ", "same-math")):
            header.append(line)
    return header, rows

h1, r1 = read(sys.argv[1])
h2, r2 = read(sys.argv[2])
v1 = h1[0].split(",")[0].split()[1] if h1 else "1.x"
v2 = h2[0].split(",")[0].split()[1] if h2 else "2.x"
print(open(sys.argv[3]).read().strip())
for line in h1 + h2:
    print("    " + line)
print()
print(f"| row | shape | threads | seqattn | torch {v1} | torch {v2} MHA | torch {v2} SDPA | "
      f"speed-up vs {v1} / {v2} MHA / {v2} SDPA |")
print("|---|---|---|---|---|---|---|---|")
for (name, shape, threads), (s1, t1, x1) in r1.items():
    m = r2.get((name, shape, threads), ("", "-", "-"))
    sd = r2.get((name + ", torch SDPA", shape, threads), ("", "-", "-"))
    print(f"| {name} | {shape} | {threads} | {s1} | {t1} | {m[1]} | {sd[1]} | {x1} / {m[2]} / {sd[2]} |")
PY
