#!/usr/bin/env python3
"""Tests of benchmarks/bench_compare.py on synthetic Google Benchmark JSON (standard library only; ctest
bench_compare_script, tests/CMakeLists.txt). Run: python3 benchmarks/test_bench_compare.py"""

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "bench_compare.py")
sys.path.insert(0, HERE)
import bench_compare  # noqa: E402


def row(name, real, cpu=None, unit="us", **extra):
    r = {"name": name, "run_name": name, "run_type": "iteration", "repetitions": 1, "repetition_index": 0,
         "threads": 1, "iterations": 100, "real_time": real, "cpu_time": real if cpu is None else cpu,
         "time_unit": unit}
    r.update(extra)
    return r


def repetitions(name, times, unit="us"):
    """Google Benchmark's rows for --benchmark_repetitions=len(times): one per repetition, then the aggregates."""
    rows = [row(name, t, unit=unit, repetitions=len(times), repetition_index=i) for i, t in enumerate(times)]
    mean = sum(times) / len(times)
    for agg in ("mean", "median", "stddev"):
        rows.append({"name": name + "_" + agg, "run_name": name, "run_type": "aggregate", "aggregate_name": agg,
                     "repetitions": len(times), "threads": 1, "iterations": len(times), "real_time": mean,
                     "cpu_time": mean, "time_unit": unit})
    return rows


def binary_json(executable, rows):
    return {"context": {"executable": "/some/build/benchmarks/" + executable, "num_cpus": 2}, "benchmarks": rows}


class BenchCompareTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(data if isinstance(data, str) else json.dumps(data))
        return path

    def merged(self, name, binaries):
        """Writes each {binary: rows} as Google Benchmark output and merges them with the script's merge."""
        inputs = [self.write("%s_%s.json" % (name, b), binary_json(b, rows)) for b, rows in binaries.items()]
        out = os.path.join(self.dir, name + ".json")
        bench_compare.merge(out, inputs)
        return out

    def run_script(self, *args):
        """The command line, in this process (a new interpreter per call would make the tests slow)."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = bench_compare.main(list(args))
            except SystemExit as e:
                code = e.code
        return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())

    def compare(self, base_path, cur_path, threshold=0.10, metric="real_time"):
        rows, only_base, only_cur = bench_compare.compare(bench_compare.load_results(base_path),
                                                          bench_compare.load_results(cur_path), threshold, metric)
        return {"%s/%s" % key: (status, ratio) for status, key, _, _, ratio in rows}, only_base, only_cur

    def test_slower_by_20_percent_is_listed_and_5_percent_is_not(self):
        base = self.merged("base", {"bench_a": [row("BM_slow", 100.0), row("BM_noise", 100.0), row("BM_fast", 100.0)]})
        cur = self.merged("cur", {"bench_a": [row("BM_slow", 120.0), row("BM_noise", 105.0), row("BM_fast", 50.0)]})
        rows, only_base, only_cur = self.compare(base, cur)
        self.assertEqual(rows["bench_a/BM_slow"][0], "SLOWER")
        self.assertAlmostEqual(rows["bench_a/BM_slow"][1], 1.2)
        self.assertEqual(rows["bench_a/BM_noise"][0], "same")
        self.assertEqual(rows["bench_a/BM_fast"][0], "faster")
        self.assertEqual((only_base, only_cur), ([], []))

        result = self.run_script("compare", base, cur)
        self.assertEqual(result.returncode, 0, result.stderr)  # not a gate: slow rows do not fail
        lines = result.stdout.splitlines()
        table = [l for l in lines if "BM_" in l]
        self.assertTrue(table[0].startswith("!!") and "BM_slow" in table[0] and "SLOWER +20%" in table[0], table)
        self.assertFalse(any("BM_noise" in l and "SLOWER" in l for l in lines))
        self.assertIn("1 slower (more than 10%), 1 faster, 1 unchanged, of 3 benchmarks in both", result.stdout)

        # The threshold is configurable: at 0.25 the 20% row is unchanged.
        rows, _, _ = self.compare(base, cur, threshold=0.25)
        self.assertEqual(rows["bench_a/BM_slow"][0], "same")
        self.assertIn("0 slower", self.run_script("compare", base, cur, "--threshold", "0.25").stdout)

    def test_missing_rows_are_reported_on_both_sides(self):
        base = self.merged("base", {"bench_a": [row("BM_kept", 10.0), row("BM_removed", 10.0)],
                                    "bench_gone": [row("BM_x", 1.0)]})
        cur = self.merged("cur", {"bench_a": [row("BM_kept", 10.0), row("BM_added", 10.0)]})
        rows, only_base, only_cur = self.compare(base, cur)
        self.assertEqual(list(rows), ["bench_a/BM_kept"])
        self.assertEqual(only_base, [("bench_a", "BM_removed"), ("bench_gone", "BM_x")])
        self.assertEqual(only_cur, [("bench_a", "BM_added")])
        out = self.run_script("compare", base, cur).stdout
        self.assertIn("2 only in the baseline, 1 only in this run", out)
        self.assertIn("missing in this run (only in the baseline):\n   bench_a  BM_removed\n   bench_gone  BM_x", out)
        self.assertIn("new in this run (not in the baseline):\n   bench_a  BM_added", out)

    def test_median_of_repetitions_is_used(self):
        # Baseline median 100 (mean 400, pulled up by one outlier); current median 130: 30% slower by the median,
        # while the means (400 and 130) would call it 3x faster.
        base = self.merged("base", {"bench_a": repetitions("BM_rep", [100.0, 1000.0, 90.0, 100.0, 110.0])})
        cur = self.merged("cur", {"bench_a": repetitions("BM_rep", [130.0, 120.0, 140.0])})
        rows, only_base, only_cur = self.compare(base, cur)
        self.assertEqual(list(rows), ["bench_a/BM_rep"])  # aggregate rows are not benchmarks of their own
        self.assertEqual(rows["bench_a/BM_rep"][0], "SLOWER")
        self.assertAlmostEqual(rows["bench_a/BM_rep"][1], 1.3)
        # --benchmark_report_aggregates_only: only aggregate rows; their median is used.
        only_aggregates = [r for r in repetitions("BM_rep", [100.0, 1000.0, 100.0]) if r["run_type"] == "aggregate"]
        for r in only_aggregates:
            if r["aggregate_name"] == "median":
                r["real_time"] = r["cpu_time"] = 100.0
        agg = self.merged("agg", {"bench_a": only_aggregates})
        rows, _, _ = self.compare(agg, cur)
        self.assertAlmostEqual(rows["bench_a/BM_rep"][1], 1.3)

    def test_units_and_metric(self):
        base = self.merged("base", {"bench_a": [row("BM_u", 1.0, cpu=1.0, unit="ms")]})
        cur = self.merged("cur", {"bench_a": [row("BM_u", 1000.0, cpu=1500.0, unit="us")]})
        self.assertEqual(self.compare(base, cur)[0]["bench_a/BM_u"], ("same", 1.0))
        self.assertEqual(self.compare(base, cur, metric="cpu_time")[0]["bench_a/BM_u"][0], "SLOWER")

    def test_single_binary_google_benchmark_json_is_accepted(self):
        base = self.write("bench_a.json", binary_json("bench_a", [row("BM_x", 100.0)]))
        cur = self.merged("cur", {"bench_a": [row("BM_x", 200.0)]})
        self.assertEqual(self.compare(base, cur)[0]["bench_a/BM_x"], ("SLOWER", 2.0))

    def test_malformed_or_unreadable_baseline_is_an_error(self):
        cur = self.merged("cur", {"bench_a": [row("BM_x", 100.0)]})
        cases = {
            "truncated.json": '{"format": "seqattn-bench-results", "binaries": {',
            "not_results.json": {"hello": 1},
            "no_times.json": binary_json("bench_a", [{"name": "BM_x", "real_time": "fast", "cpu_time": 1}]),
            "bad_unit.json": binary_json("bench_a", [row("BM_x", 1.0, unit="fortnights")]),
            "bad_binaries.json": {"format": "seqattn-bench-results", "binaries": []},
        }
        for name, content in cases.items():
            path = self.write(name, content)
            with self.assertRaises(bench_compare.InputError, msg=name):
                bench_compare.load_results(path)
            result = self.run_script("compare", path, cur)
            self.assertEqual(result.returncode, 2, name)
            self.assertTrue(result.stderr.startswith("bench_compare: error: baseline: '%s'" % path), result.stderr)
            self.assertEqual(result.stdout, "")
            self.assertEqual(self.run_script("check", path).returncode, 2, name)
        missing = os.path.join(self.dir, "does_not_exist.json")
        result = self.run_script("compare", missing, cur)
        self.assertEqual(result.returncode, 2)
        self.assertIn("baseline: cannot read '%s'" % missing, result.stderr)
        # Once through a real interpreter: the exit status of `python3 bench_compare.py` (./build.sh relies on it).
        result = subprocess.run([sys.executable, SCRIPT, "compare", path, cur], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
        self.assertEqual(result.returncode, 2)
        self.assertIn("bench_compare: error: baseline:", result.stderr)

    def test_merge_keys_by_binary_and_name(self):
        out = self.merged("all", {"bench_a": [row("BM_x", 1.0)], "bench_b": [row("BM_x", 2.0)]})
        with open(out, encoding="utf-8") as f:
            data = json.load(f)
        self.assertEqual(data["format"], "seqattn-bench-results")
        self.assertEqual(sorted(data["binaries"]), ["bench_a", "bench_b"])
        flat = bench_compare.flatten(bench_compare.load_results(out), "real_time")
        self.assertEqual(flat, {("bench_a", "BM_x"): 1000.0, ("bench_b", "BM_x"): 2000.0})
        # The same binary twice is refused rather than silently dropped.
        a = self.write("a1.json", binary_json("bench_a", [row("BM_x", 1.0)]))
        with self.assertRaises(bench_compare.InputError):
            bench_compare.merge(os.path.join(self.dir, "dup.json"), [a, a])
        result = self.run_script("merge", os.path.join(self.dir, "m.json"), a)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn("(1 binaries, 1 benchmarks)", result.stdout)

    def test_failed_rows_are_missing_not_fatal(self):
        base = self.merged("base", {"bench_a": [row("BM_x", 1.0), row("BM_err", 1.0)]})
        cur = self.merged("cur", {"bench_a": [row("BM_x", 1.0),
                                              {"name": "BM_err", "run_name": "BM_err", "run_type": "iteration",
                                               "error_occurred": True, "error_message": "boom"}]})
        _, only_base, _ = self.compare(base, cur)
        self.assertEqual(only_base, [("bench_a", "BM_err")])

    def test_report_format(self):
        base = self.merged("base", {"bench_a": [row("BM_a", 100.0), row("BM_b", 100.0)]})
        cur = self.merged("cur", {"bench_a": [row("BM_a", 130.0), row("BM_b", 99.0)]})
        rows, only_base, only_cur = bench_compare.compare(bench_compare.load_results(base),
                                                          bench_compare.load_results(cur), 0.1, "real_time")
        out = io.StringIO()
        counts = bench_compare.report(rows, only_base, only_cur, 0.1, "real_time", base, cur, out=out)
        self.assertEqual(counts, {"SLOWER": 1, "faster": 0, "same": 1})
        text = out.getvalue()
        self.assertIn("real_time (median over repetitions)", text)
        self.assertLess(text.index("BM_a"), text.index("BM_b"))


if __name__ == "__main__":
    unittest.main(verbosity=1)
