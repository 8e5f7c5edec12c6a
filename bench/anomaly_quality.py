#!/usr/bin/env python3
"""How close are detect-anomalies' graph kNN scores to exact ones? Real vectors, above the exact limit.

The kNN anomaly score (mean cosine distance to the k=10 nearest others, a row left out of its own
result) of --n cached real PyPI summary vectors (bench/index.py's cache; they repeat: at 100k, 7,319
rows share their vector), computed three ways through embcli/search/neighbors.py: exact (blocked
numpy), the float HNSW graph and the coarse path (int8 graph, candidates re-ranked by exact cosine,
what `detect-anomalies` uses). Prints CPU seconds and, against the exact scores, the share of the
exact top 1% each way also puts in its top 1%, the largest score error and the rows off by > 0.01.

    python bench/anomaly_quality.py [--n 100000] [--vectors FILE.npy]

Run it from two checkouts (PYTHONPATH=DIR) to compare a change.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from _common import cached_vectors

from embcli.search import neighbors

K = 10


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors")
    ap.add_argument("--n", type=int, default=100_000)
    a = ap.parse_args()
    x = neighbors.unit(np.ascontiguousarray(cached_vectors(a.vectors)[: a.n]))
    if len(x) <= neighbors.EXACT_LIMIT:
        raise SystemExit(f"bench: --n must be above the exact limit ({neighbors.EXACT_LIMIT:,})")
    scores = {}
    print("| way | CPU-s | wall s |\n|---|---:|---:|")
    for name in ("exact", "float graph", "coarse (int8 graph + exact re-rank)"):
        c0, t0 = cpu_s(), time.perf_counter()
        if name == "exact":
            _, sims = neighbors._exact(x, x, K, True)
        else:
            _, sims = neighbors.search(x, x, K, exclude_self=True, coarse=name.startswith("coarse"))
        scores[name] = (1 - sims).mean(axis=1)
        print(f"| {name} | {cpu_s() - c0:.1f} | {time.perf_counter() - t0:.1f} |", flush=True)
    exact = scores.pop("exact")
    top = set(np.argsort(-exact)[: len(x) // 100])
    print(f"\n{len(x):,} real vectors, k={K}, against exact scores")
    print("| way | top-1% agreement | max abs error | mean error | rows off by > 0.01 |\n|---|---:|---:|---:|---:|")
    for name, s in scores.items():
        agree = len(top & set(np.argsort(-s)[: len(x) // 100])) / len(top)
        err = s - exact
        off = int((np.abs(err) > 0.01).sum())
        print(f"| {name} | {agree:.3f} | {np.abs(err).max():.3f} | {err.mean():.5f} | {off:,} |")


if __name__ == "__main__":
    main()
