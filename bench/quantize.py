"""Quantization schemes on real embeddings: bytes per vector, recall@10, and search queries/s.

Part 1 is `embcli quantize --report` (embcli.analysis.quantize.report_rows) on N deduplicated
real vectors: recall@10 of every scheme against float exact search, brute force, in-sample
queries. Part 2 builds real indexes (f32, i8, b1) of the same vectors and searches them with
held-out queries through IndexReader, as `embcli search` does, beside numpy brute force.

    python bench/quantize.py [--vectors FILE.npy] [--n 20000] [--queries 1000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import cached_vectors, dedupe, recall_at_k

from embcli.analysis.quantize import report_rows
from embcli.search.index import IndexOptions, IndexReader, IndexWriter

K = 10


def build(path: Path, x: np.ndarray, dtype: str) -> float:
    start = time.perf_counter()
    w = IndexWriter(path, IndexOptions(dtype=dtype))
    for s in range(0, len(x), 4096):
        w.add([None] * len(x[s : s + 4096]), [{}] * len(x[s : s + 4096]), x[s : s + 4096])
    w.commit()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors")
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=1000)
    a = ap.parse_args()
    x = dedupe(cached_vectors(a.vectors))
    docs, queries = x[: a.n], x[a.n : a.n + a.queries]
    print(f"{len(docs):,} deduplicated documents, {len(queries):,} held-out queries, recall@{K} with ties")

    print("\n1. embcli quantize --report (brute force, 1,000 in-sample queries)")
    print(f"{'scheme':<28}{'bytes':>7}{'ratio':>8}{'recall@10':>11}")
    for row in report_rows(docs, k=K, n_queries=1000, seed=0, dims=[256, 128]):
        print(f"{row['scheme']:<28}{row['bytes']:>7}{row['ratio']:>7.1f}x{row['recall']:>11.3f}")

    print("\n2. indexes searched like `embcli search` (HNSW, 1 build thread)")
    exact = queries @ docs.T
    exact_top = -np.sort(-exact, axis=1)[:, :K]
    start = time.perf_counter()
    for s in range(0, len(queries), 256):
        block = queries[s : s + 256] @ docs.T
        np.argpartition(-block, K, axis=1)
    brute_qps = len(queries) / (time.perf_counter() - start)
    print(f"{'index':<26}{'MB on disk':>11}{'build s':>9}{'queries/s':>11}{'recall@10':>11}")
    print(f"{'numpy brute force f32':<26}{docs.nbytes / 1e6:>11.1f}{'-':>9}{brute_qps:>11,.0f}{1.0:>11.3f}")
    with tempfile.TemporaryDirectory() as tmp:
        for dtype, variants in (("f32", [0]), ("i8", [0, 4]), ("b1", [0, 4, 10])):
            path = Path(tmp) / f"{dtype}.idx"
            secs = build(path, docs, dtype)
            size = sum(p.stat().st_size for p in path.iterdir()) / 1e6
            reader = IndexReader(path)
            for rescore in variants:
                start = time.perf_counter()
                found = []
                for s in range(0, len(queries), 256):
                    found += reader.search(queries[s : s + 256], K, rescore=rescore)
                qps = len(queries) / (time.perf_counter() - start)
                # Recall by the true float score of each returned key (keys are row numbers here).
                scores = np.array(
                    [[exact[i, key] for key, _ in hits] + [-9] * (K - len(hits)) for i, hits in enumerate(found)]
                )
                name = f"{dtype}" + (f" + rescore {rescore}" if rescore else "")
                print(f"{name:<26}{size:>11.1f}{secs:>9.1f}{qps:>11,.0f}{recall_at_k(exact_top, scores, K):>11.3f}")
            reader.close()
    print("\naims: int8 >= 0.99 of float recall; binary 2-bit + rescore 4 >= 0.95 (part 1)")


if __name__ == "__main__":
    main()
