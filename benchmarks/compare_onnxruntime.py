#!/usr/bin/env python3
"""ONNX Runtime against seqattn's predict on the example classifier (benchmarks/classifier_model.hpp), inference.

    python3 benchmarks/compare_onnxruntime.py [--threads 1,2] [--quick] [--seqattn PATH]

Run from the repository root. What it does:
  1. builds the seqattn side, compare_onnxruntime_seqattn (build-bench/, target of benchmarks/CMakeLists.txt) unless
     --seqattn names it, and runs it with --export: the classifier's weights as safetensors (seqattn's writer, PyTorch
     names), the inputs x (B, 128, 8) for B = 1 and 64 and seqattn's outputs;
  2. builds the same model in torch with those weights (Dense(8 -> 64), sinusoidal positions, multi-head attention
     (64, 4 heads) written out as linear q/k/v, softmax(q k^T / sqrt(16)) v, linear out, LayerNorm, max over time,
     Dense(64 -> 2)), checks it against seqattn's outputs, and exports it with torch.onnx.export (opset 14, dynamic
     batch axis);
  3. times onnxruntime.InferenceSession(CPUExecutionProvider, intra_op_num_threads = n, inter_op_num_threads = 1,
     sequential, all graph optimizations) at batch 1 and batch 64 against seqattn's predict on the same weights and
     inputs with seqattn::set_num_threads(n): the seqattn binary runs as a child process (--serve) and is timed in C++;
     the rounds alternate (seqattn, ORT, ORT Identity, seqattn, ...) and the table gives medians per call.
ORT is called from Python; its call overhead (argument conversion, output allocation, the GIL) is measured by an ORT
session of a one-node Identity graph with the same input and the same options, timed in the same rounds, and shown
beside the number ("ORT - Identity" subtracts it). The script prints max |y_seqattn - y_ort| for both batches.

Python packages: a virtual environment (~/.cache/seqattn-ort/venv, or $SEQATTN_ORT_VENV) that the script creates on
its first run with pinned versions, and re-executes itself in. It sees the system's site-packages for torch and
numpy: torch.onnx.export runs on Debian's python3-torch 1.13 (the PyPI torch 2.x wheel of torch2_env.sh cannot be
imported without its CUDA libraries, GBs; the graph ORT runs does not depend on the exporter's version beyond the
opset). The base interpreter is $SEQATTN_ORT_PYTHON, default /usr/bin/python3 (Debian's, which has python3-torch).
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

PINS = [  # onnxruntime and onnx with their pure-Python or small dependencies; numpy and torch come from Debian
    "onnxruntime==1.19.2", "onnx==1.16.2", "protobuf==4.25.5", "flatbuffers==24.3.25", "coloredlogs==15.0.1",
    "humanfriendly==10.0", "packaging==24.1", "sympy==1.13.3", "mpmath==1.3.0",
]
VENV = os.environ.get("SEQATTN_ORT_VENV", os.path.expanduser("~/.cache/seqattn-ort/venv"))
T, FEATURES, D, HEADS = 128, 8, 64, 4


def ensure_venv():
    """Re-executes this script inside the pinned virtual environment (creating it first when missing)."""
    python = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if not os.path.exists(os.path.join(VENV, ".seqattn-pins")) or open(
            os.path.join(VENV, ".seqattn-pins")).read() != "\n".join(PINS):
        base = os.environ.get("SEQATTN_ORT_PYTHON", "/usr/bin/python3")
        subprocess.run([base, "-m", "venv", "--system-site-packages", VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-deps"] + PINS, check=True)
        with open(os.path.join(VENV, ".seqattn-pins"), "w") as f:
            f.write("\n".join(PINS))
    os.execv(python, [python, os.path.abspath(__file__)] + sys.argv[1:])


def read_safetensors(path):
    """name -> float32 numpy array (the F32 tensors seqattn's save_safetensors writes)."""
    import numpy as np
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        begin, end = info["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + begin:8 + n + end], dtype=np.float32).reshape(info["shape"]).copy()
    return out


def torch_classifier(weights):
    """The classifier of classifier_model.hpp in torch, x (B, T, 8) -> logits (B, 1, 2), with seqattn's weights."""
    import math
    import torch

    class Classifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.input = torch.nn.Linear(FEATURES, D)
            self.q, self.k, self.v, self.o = (torch.nn.Linear(D, D) for _ in range(4))
            self.norm = torch.nn.LayerNorm(D, eps=1e-5)
            self.output = torch.nn.Linear(D, 2)
            pe = torch.zeros(T, D)  # PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(..)
            for p in range(T):
                for j in range(D):
                    angle = p / math.pow(10000.0, (j - j % 2) / D)
                    pe[p, j] = math.sin(angle) if j % 2 == 0 else math.cos(angle)
            self.register_buffer("pe", pe)

        def forward(self, x):  # x (B, T, 8)
            h = self.input(x) + self.pe  # (B, T, D)
            dh = D // HEADS

            def heads(t):  # (B, T, D) -> (B, H, T, dh)
                return t.reshape(t.shape[0], -1, HEADS, dh).transpose(1, 2)

            q, k, v = heads(self.q(h)), heads(self.k(h)), heads(self.v(h))
            a = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(dh), dim=-1)
            o = torch.matmul(a, v).transpose(1, 2).reshape(h.shape)  # (B, T, D)
            y = self.norm(self.o(o)).amax(dim=1, keepdim=True)  # (B, 1, D)
            return self.output(y)  # (B, 1, 2)

    m = Classifier().eval()
    w = {name: torch.from_numpy(a) for name, a in weights.items()}
    with torch.no_grad():
        m.input.weight.copy_(w["0.weight"])
        m.input.bias.copy_(w["0.bias"])
        for i, lin in enumerate((m.q, m.k, m.v)):
            lin.weight.copy_(w["2.in_proj_weight"][i * D:(i + 1) * D])
            lin.bias.copy_(w["2.in_proj_bias"][i * D:(i + 1) * D])
        m.o.weight.copy_(w["2.out_proj.weight"])
        m.o.bias.copy_(w["2.out_proj.bias"])
        m.norm.weight.copy_(w["3.weight"])
        m.norm.bias.copy_(w["3.bias"])
        m.output.weight.copy_(w["5.weight"])
        m.output.bias.copy_(w["5.bias"])
    return m


def identity_model(path):
    """A one-node ONNX graph y = Identity(x), x (batch, T, 8): the cost of calling ORT from Python."""
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", T, FEATURES])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", T, FEATURES])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), path)


def session(path, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def time_ort(sess, feed, iterations):
    """(wall, process CPU) seconds per call of sess.run over `iterations` calls."""
    c0, t0 = time.process_time(), time.perf_counter()
    for _ in range(iterations):
        sess.run(None, feed)
    return (time.perf_counter() - t0) / iterations, (time.process_time() - c0) / iterations


class Seqattn:
    """The seqattn child process in --serve mode: request(B, threads, iterations) -> (wall, CPU) s per predict."""

    def __init__(self, exe):
        self.p = subprocess.Popen([exe, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def time(self, B, threads, iterations):
        self.p.stdin.write(f"{B} {threads} {iterations}\n")
        self.p.stdin.flush()
        wall, cpu = self.p.stdout.readline().split()
        return float(wall), float(cpu)

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def fmt(s):
    return f"{s * 1e6:.1f} us" if s < 1e-3 else f"{s * 1e3:.2f} ms"


def median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--quick", action="store_true", help="3 short rounds instead of 7")
    ap.add_argument("--seqattn", help="path of compare_onnxruntime_seqattn (default: build it in build-bench/)")
    args = ap.parse_args()
    ensure_venv()
    import numpy as np
    import onnxruntime as ort
    import torch

    exe = args.seqattn
    if not exe:
        flags = ["-DSEQATTN_BUILD_TESTS=OFF", "-DSEQATTN_BUILD_EXAMPLES=OFF", "-DSEQATTN_BUILD_BENCHMARKS=ON",
                 "-DCMAKE_BUILD_TYPE=Release"]
        subprocess.run(["cmake", "-S", ".", "-B", "build-bench"] + flags, check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", "build-bench", "--target", "compare_onnxruntime_seqattn", "-j1"],
                       check=True, stdout=subprocess.DEVNULL)
        exe = "build-bench/benchmarks/compare_onnxruntime_seqattn"
    work = tempfile.mkdtemp(prefix="seqattn-ort-")
    subprocess.run([exe, "--export", work], check=True, stdout=subprocess.DEVNULL)
    weights = read_safetensors(os.path.join(work, "classifier.safetensors"))
    xs = {B: np.fromfile(os.path.join(work, f"x_b{B}.f32"), dtype=np.float32).reshape(B, T, FEATURES) for B in (1, 64)}
    ys = {B: np.fromfile(os.path.join(work, f"y_b{B}.f32"), dtype=np.float32).reshape(B, 1, 2) for B in (1, 64)}

    model = torch_classifier(weights)
    with torch.no_grad():
        for B in (1, 64):
            d = np.abs(model(torch.from_numpy(xs[B])).numpy() - ys[B]).max()
            print(f"same-math check, torch twin, B={B}: max |y_seqattn - y_torch| = {d:.2e}")
    onnx_path, identity_path = os.path.join(work, "classifier.onnx"), os.path.join(work, "identity.onnx")
    torch.onnx.export(model, (torch.from_numpy(xs[1]),), onnx_path, input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, opset_version=14)
    identity_model(identity_path)
    import onnx
    print(f"onnxruntime {ort.__version__} (CPUExecutionProvider), onnx {onnx.__version__}, exported by torch "
          f"{torch.__version__} (opset 14), numpy {np.__version__}, Python {sys.version.split()[0]}")
    diffs = {}
    for B in (1, 64):
        diffs[B] = np.abs(session(onnx_path, 1).run(None, {"x": xs[B]})[0] - ys[B]).max()
        print(f"same-math check, ONNX Runtime, B={B}: max |y_seqattn - y_ort| = {diffs[B]:.2e}")

    seqattn = Seqattn(exe)
    target, rounds = (0.05, 3) if args.quick else (0.15, 7)
    rows = []
    for n in [int(t) for t in args.threads.split(",")]:
        model_sess, ident_sess = session(onnx_path, n), session(identity_path, n)
        for B in (1, 64):
            feed = {"x": xs[B]}
            for sess in (model_sess, ident_sess):  # warm-up
                for _ in range(3):
                    sess.run(None, feed)
            s1, o1, i1 = seqattn.time(B, n, 3)[0], time_ort(model_sess, feed, 3)[0], time_ort(ident_sess, feed, 3)[0]
            ns, no, ni = (max(1, int(target / t)) for t in (s1, o1, i1))
            s, o, i, sc, oc = [], [], [], [], []
            for _ in range(rounds):
                w, c = seqattn.time(B, n, ns)
                s.append(w)
                sc.append(c)
                w, c = time_ort(model_sess, feed, no)
                o.append(w)
                oc.append(c)
                i.append(time_ort(ident_sess, feed, ni)[0])
            rows.append((B, n, median(s), median(o), median(i), median(sc), median(oc)))
            print(f"  B={B} threads={n}: seqattn {fmt(rows[-1][2])}, ORT {fmt(rows[-1][3])}, identity {fmt(rows[-1][4])}",
                  file=sys.stderr)
    seqattn.close()

    print()
    print("| classifier inference | threads | seqattn predict | ORT run (from Python) | ORT Identity call | "
          "ORT - Identity | speed-up ORT / seqattn | speed-up (ORT - Identity) / seqattn | speed-up (CPU time) | "
          "max abs diff |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for B, n, s, o, i, sc, oc in rows:
        print(f"| B={B} T={T} | {n} | {fmt(s)} | {fmt(o)} | {fmt(i)} | {fmt(o - i)} | {o / s:.2f}x | "
              f"{(o - i) / s:.2f}x | {oc / sc:.2f}x | {diffs[B]:.1e} |")
    print(f"\nTimes: medians over {rounds} alternating rounds (seqattn, ORT, ORT Identity) of ~{target} s each, per "
          "call. seqattn: predict timed in C++ (child process); ORT: InferenceSession.run timed in Python, with the "
          "Python call overhead shown by the Identity graph of the same input. CPU time: process CPU time per call "
          "(ORT's includes the Python interpreter).")


if __name__ == "__main__":
    main()
