#!/usr/bin/env python3
"""Save Google Benchmark results and compare them with a saved baseline (a regression guard, not a gate).

Python 3 standard library only. ./build.sh bench runs it when BENCH_SAVE or BENCH_BASELINE is set; it also runs
on its own:

  python3 benchmarks/bench_compare.py merge out.json bench_a.json bench_b.json ...
      Merges the --benchmark_out=<file> --benchmark_out_format=json files of several benchmark binaries into one
      file, keyed by binary (the file's context.executable, without its directory) and benchmark name.
  python3 benchmarks/bench_compare.py compare baseline.json current.json [--threshold 0.10] [--metric real_time]
      For every benchmark in both files: current / baseline of the metric (real_time by default, or cpu_time),
      the rows more than `threshold` slower first and marked SLOWER, then a count of slower, faster and unchanged
      rows, then the benchmarks found on one side only. Either file may be a merged file or one binary's
      Google Benchmark JSON. Exit 0 whatever the ratios (the machine is noisy: this is not a CI gate); exit 2
      with a message naming the file when a file cannot be read or is not benchmark results.
  python3 benchmarks/bench_compare.py check baseline.json
      Only reads the file (./build.sh bench does this before running the benchmarks, to fail early).

Repetitions (--benchmark_repetitions=N): a benchmark's time is the median of its N runs (Google Benchmark's
per-repetition rows; with --benchmark_report_aggregates_only, its "median" aggregate row). Times are compared
in nanoseconds whatever each row's time_unit.
"""

import argparse
import datetime
import json
import os
import statistics
import sys

FORMAT = "seqattn-bench-results"
FORMAT_VERSION = 1
METRICS = ("real_time", "cpu_time")
UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


class InputError(Exception):
    """A file that is not benchmark results (unreadable, not JSON, or not the expected structure)."""


def load_json(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise InputError("cannot read '%s': %s" % (path, e.strerror or e))
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError("'%s' is not valid JSON: %s" % (path, e))


def _check_entry(path, where, entry):
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise InputError("'%s': %s: a benchmark row must be an object with a string \"name\"" % (path, where))
    if entry.get("error_occurred"):
        return  # a failed run carries no meaningful times
    for key in METRICS:
        value = entry.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise InputError("'%s': %s: row '%s' has no numeric \"%s\"" % (path, where, entry["name"], key))
    unit = entry.get("time_unit", "ns")
    if unit not in UNIT_NS:
        raise InputError("'%s': %s: row '%s' has unknown time_unit '%s'" % (path, where, entry["name"], unit))


def _check_binary_results(path, where, data):
    """A Google Benchmark JSON document: {"context": {...}, "benchmarks": [rows]}."""
    if not isinstance(data, dict) or not isinstance(data.get("benchmarks"), list):
        raise InputError("'%s': %s: expected an object with a \"benchmarks\" list" % (path, where))
    for i, entry in enumerate(data["benchmarks"]):
        _check_entry(path, "%s benchmarks[%d]" % (where, i), entry)


def binary_name(path, data):
    executable = data.get("context", {}).get("executable") if isinstance(data.get("context"), dict) else None
    if isinstance(executable, str) and executable:
        return os.path.basename(executable)
    base = os.path.basename(path)
    return base[:-5] if base.endswith(".json") else base


def load_results(path):
    """Reads a merged file or one binary's Google Benchmark JSON: {binary: {"context": ..., "benchmarks": [rows]}}."""
    data = load_json(path)
    if isinstance(data, dict) and data.get("format") == FORMAT:
        binaries = data.get("binaries")
        if not isinstance(binaries, dict):
            raise InputError("'%s': expected a \"binaries\" object" % path)
        for name, results in binaries.items():
            _check_binary_results(path, "binary '%s':" % name, results)
        return binaries
    if isinstance(data, dict) and "benchmarks" in data:
        _check_binary_results(path, "", data)
        return {binary_name(path, data): data}
    raise InputError("'%s' is neither a merged results file (\"format\": \"%s\") nor Google Benchmark JSON "
                     "(--benchmark_out_format=json)" % (path, FORMAT))


def load_results_as(role, path):
    try:
        return load_results(path)
    except InputError as e:
        raise InputError("%s: %s" % (role, e))


def summarize(rows, metric):
    """{benchmark name: time in ns} for one binary's rows: the median over repetitions.

    Rows of run_type "iteration" are the measured runs (one per repetition, all sharing run_name); aggregate rows
    (mean, median, stddev, cv) are used only when a benchmark has no iteration row
    (--benchmark_report_aggregates_only), and then only its median. Failed rows (error_occurred) are left out.
    """
    runs = {}
    medians = {}
    for row in rows:
        if row.get("error_occurred"):
            continue
        name = row.get("run_name") or row["name"]
        value = float(row[metric]) * UNIT_NS[row.get("time_unit", "ns")]
        if row.get("run_type") == "aggregate":
            if row.get("aggregate_name") == "median":
                medians[name] = value
        else:
            runs.setdefault(name, []).append(value)
    times = {name: statistics.median(values) for name, values in runs.items()}
    for name, value in medians.items():
        times.setdefault(name, value)
    return times


def flatten(results, metric):
    """{(binary, benchmark): time in ns} over every binary."""
    out = {}
    for binary, data in results.items():
        for name, value in summarize(data["benchmarks"], metric).items():
            out[(binary, name)] = value
    return out


def merge(out_path, inputs):
    binaries = {}
    for path in inputs:
        for binary, data in load_results(path).items():
            if binary in binaries:
                raise InputError("'%s': binary '%s' is already in an earlier input" % (path, binary))
            binaries[binary] = data
    document = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "binaries": binaries,
    }
    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(document, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, out_path)
    count = sum(len(summarize(d["benchmarks"], "real_time")) for d in binaries.values())
    return len(binaries), count


def format_time(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return "%.4g %s" % (ns / scale, unit)
    return "%.4g ns" % ns


def compare(baseline, current, threshold, metric):
    """Returns (rows, only_in_baseline, only_in_current); rows are (status, key, base_ns, cur_ns, ratio),
    slower first (largest ratio first), then faster and unchanged by decreasing ratio."""
    base = flatten(baseline, metric)
    cur = flatten(current, metric)
    rows = []
    for key in base.keys() & cur.keys():
        b, c = base[key], cur[key]
        ratio = c / b if b > 0 else (1.0 if c == 0 else float("inf"))
        if ratio > 1.0 + threshold:
            status = "SLOWER"
        elif ratio < 1.0 - threshold:
            status = "faster"
        else:
            status = "same"
        rows.append((status, key, b, c, ratio))
    rows.sort(key=lambda r: (r[0] != "SLOWER", -r[4], r[1]))
    only_base = sorted(base.keys() - cur.keys())
    only_cur = sorted(cur.keys() - base.keys())
    return rows, only_base, only_cur


def report(rows, only_base, only_cur, threshold, metric, baseline_path, current_path, out=None):
    out = out or sys.stdout
    pct = threshold * 100
    print("bench_compare: %s (median over repetitions), ratio = current / baseline; SLOWER above %.3g, faster below %.3g"
          % (metric, 1 + threshold, 1 - threshold), file=out)
    print("  baseline %s" % baseline_path, file=out)
    print("  current  %s" % current_path, file=out)
    slower = [r for r in rows if r[0] == "SLOWER"]
    if rows:
        width = max(len("%s  %s" % r[1]) for r in rows)
        print("", file=out)
        print("   %-*s  %10s  %10s  %6s" % (width, "benchmark", "baseline", "current", "ratio"), file=out)
        for i, (status, key, b, c, ratio) in enumerate(rows):
            if i == len(slower) and slower:
                print("   " + "-" * (width + 34), file=out)
            mark = "!!" if status == "SLOWER" else ("+ " if status == "faster" else "  ")
            label = {"SLOWER": "SLOWER %+.0f%%" % ((ratio - 1) * 100), "faster": "faster", "same": ""}[status]
            line = "%s %-*s  %10s  %10s  %6.3f  %s" % (mark, width, "%s  %s" % key, format_time(b), format_time(c),
                                                       ratio, label)
            print(line.rstrip(), file=out)
    counts = {s: sum(1 for r in rows if r[0] == s) for s in ("SLOWER", "faster", "same")}
    print("", file=out)
    print("%d slower (more than %.3g%%), %d faster, %d unchanged, of %d benchmarks in both; %d only in the baseline, "
          "%d only in this run" % (counts["SLOWER"], pct, counts["faster"], counts["same"], len(rows), len(only_base),
                                   len(only_cur)), file=out)
    for title, keys in (("missing in this run (only in the baseline)", only_base),
                        ("new in this run (not in the baseline)", only_cur)):
        if keys:
            print("%s:" % title, file=out)
            for binary, name in keys:
                print("   %s  %s" % (binary, name), file=out)
    if slower:
        print("note: not a gate (shared machines are noisy): rerun the SLOWER rows before trusting them", file=out)
    return counts


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command")
    sub.required = True
    p_merge = sub.add_parser("merge", help="merge Google Benchmark JSON files into one results file")
    p_merge.add_argument("out")
    p_merge.add_argument("inputs", nargs="+")
    p_compare = sub.add_parser("compare", help="compare a run with a saved baseline (exit 0 whatever the ratios)")
    p_compare.add_argument("baseline")
    p_compare.add_argument("current")
    p_compare.add_argument("--threshold", type=float, default=0.10,
                           help="a row is SLOWER when current > baseline * (1 + threshold) (default 0.10)")
    p_compare.add_argument("--metric", choices=METRICS, default="real_time", help="default real_time")
    p_check = sub.add_parser("check", help="only check that a file reads as benchmark results")
    p_check.add_argument("file")
    args = parser.parse_args(argv)

    try:
        if args.command == "merge":
            n_binaries, n_rows = merge(args.out, args.inputs)
            print("bench_compare: wrote %s (%d binaries, %d benchmarks)" % (args.out, n_binaries, n_rows))
        elif args.command == "check":
            load_results_as("baseline", args.file)
        else:
            if not (0 <= args.threshold < 1):
                parser.error("--threshold must be in [0, 1): %g" % args.threshold)
            baseline = load_results_as("baseline", args.baseline)
            current = load_results_as("current results", args.current)
            rows, only_base, only_cur = compare(baseline, current, args.threshold, args.metric)
            report(rows, only_base, only_cur, args.threshold, args.metric, args.baseline, args.current)
    except InputError as e:
        print("bench_compare: error: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
