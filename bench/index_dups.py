#!/usr/bin/env python3
"""Does a threaded HNSW build cost recall, or do exact duplicate vectors? Both, measured side by side.

Builds a usearch graph with embcli's defaults (M 16, efC 128, cosine, f32; batches of 4,096, as
`embcli index` adds them) over --n real vectors (bench/index.py's cached PyPI summaries) with 1 and
with 2 threads, repeated --repeat times, once over all rows and once over the distinct rows only
(PyPI summaries repeat: at 100k, 7,319 rows share their vector with another, up to 598 at once).
Queries: the --queries cached vectors after the first --n, held out. recall@10 at ef 128 (embcli's
default) counts ties, as the other bench scripts do.

    python bench/index_dups.py [--n 100000] [--queries 1000] [--repeat 1]

Result (100k real, quiet 2-core machine): distinct rows 0.9824 with 1 thread, 0.9823 with 2;
all rows 0.953 / 0.975: builds over the duplicates vary from build to build whatever the threads.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from _common import cached_vectors, dedupe, recall_at_k

from embcli.runtime.native import usearch_index

BATCH = 4096


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def build_and_search(ref: np.ndarray, queries: np.ndarray, threads: int) -> tuple[float, float, float]:
    """recall@10 at ef 128, build wall s, build CPU s."""
    index = usearch_index()(
        ndim=ref.shape[1], metric="cos", dtype="f32", connectivity=16, expansion_add=128, expansion_search=128
    )
    keys = np.arange(len(ref), dtype=np.uint64)
    t0, c0 = time.perf_counter(), cpu_s()
    for start in range(0, len(ref), BATCH):
        index.add(keys[start : start + BATCH], ref[start : start + BATCH], threads=threads)
    wall, cpu = time.perf_counter() - t0, cpu_s() - c0
    found = index.search(queries, 10, threads=0).keys.astype(np.int64)
    found_scores = np.einsum("ij,ikj->ik", queries, ref[found])
    exact = queries @ ref.T
    return recall_at_k(exact, found_scores, 10), wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors", help="an .npy of unit vectors (default: the cached real embeddings)")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    x = cached_vectors(a.vectors)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    if len(x) < a.n + a.queries:
        raise SystemExit(f"bench: {len(x):,} vectors cached, {a.n + a.queries:,} needed")
    ref, queries = x[: a.n], np.ascontiguousarray(x[a.n : a.n + a.queries])
    sets = {"all rows": ref, "distinct rows": dedupe(ref)}
    print(f"{a.n:,} real vectors ({len(sets['distinct rows']):,} distinct), {a.queries:,} held-out queries")
    print("| rows | threads | run | recall@10 (ef 128) | build s | build CPU-s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, rows in sets.items():
        for run in range(1, a.repeat + 1):
            for threads in (1, 2):  # interleaved: the machine's drift hits both alike
                recall, wall, cpu = build_and_search(np.ascontiguousarray(rows), queries, threads)
                row = f"| {name} ({len(rows):,}) | {threads} | {run} | {recall:.4f} | {wall:.1f} | {cpu:.1f} |"
                print(row, flush=True)


if __name__ == "__main__":
    main()
