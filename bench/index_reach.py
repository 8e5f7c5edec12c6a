#!/usr/bin/env python3
"""The cost of the reachability check every index commit runs: a level-0 BFS over a saved usearch graph.

Builds a graph of --n random --dims-d vectors with --threads threads (the BFS cost depends on the node
count and connectivity, not the dimensions: few dimensions keep the build cheap), saves it, and times
``unreachable_keys`` on the file, wall and CPU seconds, twice.

    python bench/index_reach.py                 # 1,000,000 nodes, M 16, 2 threads
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from usearch.index import Index

from embcli.search.usearch_file import unreachable_keys


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dims", type=int, default=4)
    p.add_argument("--connectivity", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    x = np.random.default_rng(0).standard_normal((args.n, args.dims)).astype(np.float32)
    index = Index(ndim=args.dims, metric="l2sq", dtype="f32", connectivity=args.connectivity, expansion_add=16)
    t0 = time.perf_counter()
    index.add(np.arange(args.n, dtype=np.uint64), x, threads=args.threads)
    print(f"built {args.n:,} nodes in {time.perf_counter() - t0:,.0f}s with {args.threads} threads")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "g.usearch"
        index.save(str(path))
        del index
        buf = np.fromfile(path, dtype=np.uint8)
    for _ in range(2):
        c0, t0 = cpu_s(), time.perf_counter()
        lost = unreachable_keys(buf)
        print(
            f"level-0 BFS over {args.n:,} nodes (M {args.connectivity}): {time.perf_counter() - t0:.2f}s wall, "
            f"{cpu_s() - c0:.2f} CPU-s, {len(lost)} unreachable; "
            f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB"
        )


if __name__ == "__main__":
    main()
