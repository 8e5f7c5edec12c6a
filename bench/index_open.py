#!/usr/bin/env python3
"""What opening an index costs: the structural check of the usearch file against a full sha256.

Opening (IndexReader) checks sizes, headers and the HNSW graph's structure (node levels and
offsets, every neighbour list's count, slots and levels) with numpy over the mapped file;
full checksums are left to writes and `embcli index verify`. This prints both costs.

    python bench/index_open.py              # 100k random 384-d f32 vectors (built once, cached)
    python bench/index_open.py --n 1000000

The graph is built with expansion_add 16 to keep the build short: the check's cost depends on
the node count and connectivity, not on the graph's quality.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embcli.io.files import sha256_file
from embcli.search.index import IndexOptions, IndexReader, IndexWriter, _map_file
from embcli.search.usearch_file import check_usearch_file

CACHE = Path(__file__).resolve().parent / ".cache"


def build(path: Path, n: int, dims: int) -> None:
    rng = np.random.default_rng(0)
    w = IndexWriter(path, IndexOptions(expansion_add=16), threads=0)
    start = time.perf_counter()
    for lo in range(0, n, 10_000):
        rows = min(10_000, n - lo)
        w.add(list(range(lo, lo + rows)), [{}] * rows, rng.standard_normal((rows, dims)).astype(np.float32))
    w.commit()
    print(f"built {n:,} vectors in {time.perf_counter() - start:.0f}s")


def best_of(runs: int, fn) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dims", type=int, default=384)
    args = ap.parse_args()
    path = CACHE / f"open-{args.n}-{args.dims}.idx"
    if not (path / "manifest.json").exists():
        build(path, args.n, args.dims)
    m = orjson.loads((path / "manifest.json").read_bytes())
    buf = np.frombuffer(_map_file(path, m, "vectors"), dtype=np.uint8)
    check = best_of(5, lambda: check_usearch_file(buf, m, path))
    sha = best_of(1, lambda: sha256_file(path / m["files"]["vectors"]["name"]))
    opened = best_of(3, lambda: IndexReader(path).close())
    print(f"vectors file: {len(buf) / 1e6:,.0f} MB, {args.n:,} x {args.dims}-d f32, connectivity 16")
    print(f"structural check: {check * 1e3:.1f} ms  (best of 5)")
    print(f"sha256 of the vectors file: {sha * 1e3:.0f} ms  (what opening used to cost on top)")
    print(f"IndexReader open, all checks and usearch view: {opened * 1e3:.0f} ms  (best of 3)")


if __name__ == "__main__":
    main()
