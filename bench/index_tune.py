#!/usr/bin/env python3
"""Tune the HNSW build and search defaults: build time (wall and CPU), reachability repair, recall@k and
queries/s over a grid of --connectivity (M) / --expansion-add (efConstruction) and search ef, side by side
with numpy brute force and faiss HNSW (IndexHNSWFlat, inner product) on the same vectors, in the same run.

Corpus: as bench/index.py (--n real PyPI summaries embedded once and cached under bench/.cache/, 1,000
held-out summaries as queries); --scale M replaces the indexed set with M synthetic vectors made from the
real ones (each plus Gaussian noise, renormalized: bench/index.py's recipe), cached too, with its exact
top-k. embcli builds go through IndexWriter (batches of 4,096, commit: the reachability check and repair
included), as `embcli index` does; searches through IndexReader.search in chunks of 256, as `embcli search`.

faiss-cpu is not an embcli dependency: give --faiss PYTHON, an interpreter of a venv that has it, e.g.

    python -m venv --system-site-packages /tmp/faiss-venv && /tmp/faiss-venv/bin/pip install faiss-cpu
    python bench/index_tune.py --grid 16:64,16:128,24:64,32:64 --faiss /tmp/faiss-venv/bin/python
    python bench/index_tune.py --scale 1000000 --grid 16:64 --ef 32,64,128 --faiss /tmp/faiss-venv/bin/python

Recall counts ties as bench/index.py does. "at recall R" rows give, per system, the queries/s of the
smallest ef whose recall reaches R (the comparison at equal recall).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

CHUNK = 256
BATCH = 4096


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@dataclass
class Run:
    system: str  # "embcli" or "faiss"
    m: int
    ea: int
    threads: int
    build_s: float
    build_cpu_s: float
    points: list[tuple[int, float, float]] = field(default_factory=list)  # (ef, recall, queries/s)
    note: str = ""

    @property
    def label(self) -> str:
        return f"{self.system} M={self.m} efC={self.ea}"


# --------------------------------------------------------------------------- data


def load_data(args: argparse.Namespace, tmp: Path) -> tuple[np.ndarray, np.ndarray, str]:
    import index as bi  # bench/index.py

    corpus = bi.load_corpus(
        argparse.Namespace(corpus=bi.DEFAULT_CORPUS, queries=args.queries, n=args.n, seed=args.seed), tmp
    )
    if not args.scale:
        return np.ascontiguousarray(corpus.base), np.ascontiguousarray(corpus.queries), f"{args.n:,} real"
    path = bi.CACHE / f"synthetic-{args.scale}-from-{args.n}-seed{args.seed}.npy"
    if path.exists():
        db = np.load(path, mmap_mode="r")
        print(f"synthetic: {args.scale:,} cached vectors from {path}")
    else:
        top1 = float(np.median(bi.brute_force(corpus.base, corpus.queries, 1)[1][:, 0]))
        sigma = float(np.sqrt((1 / top1 - 1) / corpus.base.shape[1]))
        db = bi.synthetic(corpus.base, args.scale, sigma, args.seed)
        np.save(path, db)
        print(f"synthetic: {args.scale:,} vectors, sigma {sigma:.4f} (median real top-1 cosine {top1:.3f}), cached")
    return np.ascontiguousarray(db), np.ascontiguousarray(corpus.queries), f"{args.scale:,} synthetic"


def ground_truth(db: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """The exact k-th score per query, and numpy brute force queries/s (bench/index.py's blocked matmul)."""
    import index as bi

    t0 = time.perf_counter()
    _, scores = bi.brute_force(db, queries, k)
    return scores[:, -1], len(queries) / (time.perf_counter() - t0)


# --------------------------------------------------------------------------- embcli


def run_embcli(db, queries, kth, m, ea, threads, efs, repeat, work: Path, k: int) -> Run:
    import index as bi

    from embcli.search.index import IndexOptions, IndexReader, IndexWriter, read_manifest
    from embcli.search.usearch_file import unreachable_keys

    path = work / f"e-{m}-{ea}.idx"
    shutil.rmtree(path, ignore_errors=True)
    c0, t0 = cpu_s(), time.perf_counter()
    w = IndexWriter(path, IndexOptions(connectivity=m, expansion_add=ea), threads=threads)
    try:
        for s in range(0, len(db), BATCH):
            part = np.ascontiguousarray(db[s : s + BATCH])
            w.add([None] * len(part), [{}] * len(part), part)
        w.commit()
    except BaseException:
        w.abort()
        raise
    build_s, build_cpu = time.perf_counter() - t0, cpu_s() - c0
    vec = path / read_manifest(path)["files"]["vectors"]["name"]
    buf = np.fromfile(vec, dtype=np.uint8)
    c0, t0 = cpu_s(), time.perf_counter()
    lost = unreachable_keys(buf)
    bfs_s, bfs_cpu = time.perf_counter() - t0, cpu_s() - c0
    del buf
    run = Run("embcli", m, ea, threads, build_s, build_cpu)
    run.note = (
        f"repaired {w.repaired} unreachable, {w.unreachable} left; reachability BFS {bfs_s:.2f}s "
        f"({bfs_cpu:.2f} CPU-s), {len(lost)} unreachable after commit"
    )
    reader = IndexReader(path)
    try:
        for ef in efs:

            def go(ef=ef):
                out = []
                for s in range(0, len(queries), CHUNK):
                    out.extend(reader.search(queries[s : s + CHUNK], k, expansion_search=ef))
                return out

            found, secs = bi.best_of(repeat, go)
            run.points.append((ef, bi.recall(found, db, queries, kth, k), len(queries) / secs))
    finally:
        reader.close()
    shutil.rmtree(path, ignore_errors=True)
    return run


# --------------------------------------------------------------------------- faiss (in its own venv)

FAISS_WORKER = r"""
import json, resource, sys, time
import numpy as np, faiss
a = json.loads(sys.argv[1])
db = np.load(a["db"], mmap_mode="r"); q = np.load(a["q"])
faiss.omp_set_num_threads(a["threads"])
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime
index = faiss.IndexHNSWFlat(db.shape[1], a["m"], faiss.METRIC_INNER_PRODUCT)
index.hnsw.efConstruction = a["ea"]
c0, t0 = cpu(), time.perf_counter()
for s in range(0, len(db), 65536):
    index.add(np.ascontiguousarray(db[s:s + 65536]))
out = {"build_s": time.perf_counter() - t0, "build_cpu_s": cpu() - c0, "version": faiss.__version__, "points": []}
for ef in a["efs"]:
    index.hnsw.efSearch = ef
    best = None
    for _ in range(a["repeat"]):
        t0 = time.perf_counter()
        labels = np.vstack([index.search(q[s:s + 256], a["k"])[1] for s in range(0, len(q), 256)])
        best = min(best or 1e9, time.perf_counter() - t0)
    np.save(f"{a['out']}-{ef}.npy", labels)
    out["points"].append([ef, len(q) / best])
print(json.dumps(out))
"""


def run_faiss(python, db_path, q_path, db, queries, kth, m, ea, threads, efs, repeat, work, k) -> Run:
    import index as bi

    arg = dict(db=str(db_path), q=str(q_path), m=m, ea=ea, threads=threads, efs=efs, repeat=repeat, k=k)
    arg["out"] = str(work / f"faiss-{m}-{ea}")
    res = subprocess.run([python, "-c", FAISS_WORKER, json.dumps(arg)], check=True, capture_output=True, text=True)
    r = json.loads(res.stdout.strip().splitlines()[-1])
    run = Run("faiss", m, ea, threads, r["build_s"], r["build_cpu_s"], note=f"faiss {r['version']}")
    for ef, qps in r["points"]:
        labels = np.load(f"{arg['out']}-{ef}.npy")
        found = [[(int(x), 0.0) for x in row if x >= 0] for row in labels]
        run.points.append((ef, bi.recall(found, db, queries, kth, k), qps))
    return run


# --------------------------------------------------------------------------- report


def report(runs: list[Run], bf_qps: float, n: int, targets: list[float]) -> None:
    print(f"\nbuild ({n:,} vectors; CPU-s = this process's user+system time, faiss's in its worker)")
    print("| system | M | efC | threads | build s | CPU-s | vectors/s | note |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for r in runs:
        print(
            f"| {r.system} | {r.m} | {r.ea} | {r.threads} | {r.build_s:,.1f} | {r.build_cpu_s:,.1f} | "
            f"{n / r.build_s:,.0f} | {r.note} |"
        )
    print(f"\nsearch: recall@10 and queries/s by ef (numpy brute force: {bf_qps:,.0f} queries/s)")
    print("| system | M | efC | ef | recall@10 | queries/s | × brute force |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in runs:
        for ef, rec, qps in r.points:
            print(f"| {r.system} | {r.m} | {r.ea} | {ef} | {rec:.4f} | {qps:,.0f} | {qps / bf_qps:,.1f} |")
    for t in targets:
        print(f"\nat recall@10 >= {t}: the smallest ef that reaches it")
        print("| system | M | efC | ef | recall@10 | queries/s | × brute force |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for r in runs:
            hit = next(((ef, rec, qps) for ef, rec, qps in r.points if rec >= t), None)
            if hit:
                ef, rec, qps = hit
                print(f"| {r.system} | {r.m} | {r.ea} | {ef} | {rec:.4f} | {qps:,.0f} | {qps / bf_qps:,.1f} |")
            else:
                print(f"| {r.system} | {r.m} | {r.ea} | — | not reached (best {max(p[1] for p in r.points):.4f}) | | |")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="real vectors (default 100,000)")
    p.add_argument("--scale", type=int, default=0, help="index this many synthetic vectors instead (e.g. 1000000)")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--grid", default="16:64,16:128,24:64,32:64", help="M:efConstruction pairs")
    p.add_argument("--ef", default="32,48,64,96,128,192,256", help="search ef values")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="build threads (default every core)")
    p.add_argument("--faiss", default=None, help="python of a venv with faiss-cpu; omitted: no faiss runs")
    p.add_argument("--faiss-grid", default=None, help="M:efConstruction pairs for faiss (default --grid)")
    p.add_argument("--repeat", type=int, default=2, help="timed search runs, fastest counts (default 2)")
    p.add_argument("--targets", default="0.95,0.97,0.98")
    args = p.parse_args()
    grid = [tuple(int(x) for x in g.split(":")) for g in args.grid.split(",") if g]
    fgrid = [tuple(int(x) for x in g.split(":")) for g in (args.faiss_grid or args.grid).split(",") if g]
    efs = [int(x) for x in args.ef.split(",")]
    import index as bi

    noise = bi.Noise()
    print(f"bench/index_tune.py {' '.join(sys.argv[1:])}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="embcli-tune-") as t:
        tmp = Path(t)
        db, queries, name = load_data(args, tmp)
        kth, bf_qps = ground_truth(db, queries, args.k)
        print(f"{name} vectors, {db.shape[1]}-d; {len(queries):,} real queries; brute force {bf_qps:,.0f} queries/s")
        runs: list[Run] = []
        db_path, q_path = tmp / "db.npy", tmp / "q.npy"
        if args.faiss:
            np.save(db_path, db)
            np.save(q_path, queries)
        # Interleave the systems config by config: load on this shared machine drifts over a run.
        for i in range(max(len(grid), len(fgrid) if args.faiss else 0)):
            if i < len(grid):
                m, ea = grid[i]
                runs.append(run_embcli(db, queries, kth, m, ea, args.threads, efs, args.repeat, tmp, args.k))
                print(f"done: {runs[-1].label} build {runs[-1].build_s:.1f}s; {runs[-1].note}", flush=True)
            if args.faiss and i < len(fgrid):
                m, ea = fgrid[i]
                what = (m, ea, args.threads, efs, args.repeat, tmp, args.k)
                runs.append(run_faiss(args.faiss, db_path, q_path, db, queries, kth, *what))
                print(f"done: {runs[-1].label} build {runs[-1].build_s:.1f}s", flush=True)
        report(runs, bf_qps, len(db), [float(x) for x in args.targets.split(",")])
    print(f"\nwhole run: {noise.report()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
