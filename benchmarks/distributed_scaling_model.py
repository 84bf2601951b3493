#!/usr/bin/env python3
"""Expected scaling of DataParallel (include/seqattn/distributed/data_parallel.hpp) to many nodes: a model built
from numbers measured on one machine (benchmarks/distributed_throughput.sh) and a network's latency and bandwidth.

    python3 benchmarks/distributed_scaling_model.py --rate 25000 --params 4515 --rate 7800 --params 42000

--rate: training sequences/s of ONE process (one core) for a model, --params: its parameter count (repeat both
for several models, in pairs). Prints a Markdown table: nodes (one process each), network, time per step split
into compute and communication, parallel efficiency and speed-up; then what overlapping the reduction with the
backward and bucketing the fold would recover. Standard library only.

Weak scaling, as the example runs: every rank computes `chunks` chunks of `chunk` sequences per step (global batch
chunks * chunk * nodes). Per step and rank (the algorithm of data_parallel.hpp):
  records   two allgathers (sizes, then ~520 + 40 * chunks bytes per rank): 2 (ceil(log2 N) alpha + (N-1) m / B)
  fold      the fixed tree over the chunks: its levels above a rank's own chunks cross ranks, ceil(log2 N) hops of
            alpha + S / B on the longest path (S = 4 * params bytes)
  broadcast of the sum from the owner of chunk 0: ceil(log2 N) (alpha + S / B) (binomial tree; Open MPI switches
            to a pipelined scatter + allgather for large S: 2 S / B + log2 N alpha; the smaller is used)
"""
import argparse
import math

NETWORKS = [  # name, latency alpha (s), bandwidth B (bytes/s): MPI over TCP on 10 GbE; RDMA (InfiniBand/RoCE)
    ("10 Gbit/s", 25e-6, 10e9 / 8 * 0.9),
    ("100 Gbit/s", 3e-6, 100e9 / 8 * 0.9),
]


def step_times(rate, params, nodes, alpha, bandwidth, chunks, chunk):
    compute = chunks * chunk / rate
    if nodes == 1:
        return compute, 0.0, {}
    hops = math.ceil(math.log2(nodes))
    size = 4.0 * params
    record = 520 + 40 * chunks
    records = 2 * (hops * alpha + (nodes - 1) * record / bandwidth)
    fold = hops * (alpha + size / bandwidth)
    broadcast = min(hops * (alpha + size / bandwidth), 2 * size / bandwidth + hops * alpha)
    comm = records + fold + broadcast
    # what overlap and bucketing could take off: the fold of a layer can start when the last local chunk's
    # backward has finished that layer (at most ~2/3 of one chunk's compute hidden); buckets pipeline the tree's
    # levels (the bandwidth term once instead of once per level).
    overlap = min(fold + broadcast, compute / chunks * 2.0 / 3.0)
    bucketed = (fold - (hops * alpha + size / bandwidth)) if hops > 1 else 0.0
    return compute, comm, {"overlap": overlap, "bucketing": max(bucketed, 0.0)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=float, action="append", required=True)
    p.add_argument("--params", type=int, action="append", required=True)
    p.add_argument("--nodes", type=int, nargs="+", default=[1, 8, 64, 512])
    p.add_argument("--chunks", type=int, default=4, help="chunks per rank and step (default 4)")
    p.add_argument("--chunk", type=int, default=8, help="sequences per chunk (default 8)")
    a = p.parse_args()
    if len(a.rate) != len(a.params):
        p.error("give --rate and --params in pairs")
    print("| model | network | nodes | compute / step | communication / step | efficiency | speed-up | "
          "overlap would save | bucketing would save |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for rate, params in zip(a.rate, a.params):
        for name, alpha, bandwidth in NETWORKS:
            for n in a.nodes:
                compute, comm, save = step_times(rate, params, n, alpha, bandwidth, a.chunks, a.chunk)
                eff = compute / (compute + comm)
                fmt = lambda s: f"{s * 1e3:.2f} ms"
                print(f"| {params} parameters | {name} | {n} | {fmt(compute)} | {fmt(comm)} | {eff * 100:.0f}% | "
                      f"{n * eff:.1f}x | {fmt(save.get('overlap', 0.0))} | {fmt(save.get('bucketing', 0.0))} |")


if __name__ == "__main__":
    main()
