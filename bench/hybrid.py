#!/usr/bin/env python3
"""Hybrid search against dense and BM25 alone: recall@10 and MRR@10 on known-item sets, side by side.

The sets are tests/data/known-items (tests/data/make_known_items.py): 3,000 real PyPI
package summaries, and two sets of ~500 queries with the same targets, each with its
own package's summary as the one right answer: "names", the package name as words
("django rest auth"; the name is not in the indexed text), and "keywords", three words
of the summary drawn as Azzopardi et al. (SIGIR 2007) simulate known-item queries;
"both" pools them, as a query log holding either kind would. The corpus is embedded
once with `embcli embed` and indexed once with `embcli index` (the full-text index is
built by default), both cached under bench/.cache/. The queries are embedded once
(timed on their own: dense and hybrid pay it, lexical does not); then every
configuration searches the same index through the Searcher behind ``Index.search``
and ``embcli search``:

    dense           search                            (cosine over the HNSW graph)
    lexical         search --lexical                  (BM25, porter stemming)
    hybrid rrf      search --hybrid                   (RRF, K = 60, depth 100)
    hybrid linear   search --hybrid --fusion linear   (alpha 0.5)

recall@10: the right answer among the first 10; MRR@10: 1/rank of the right answer, 0
past 10. Search queries/s and CPU seconds are medians over --repeat interleaved rounds.
What the full-text index costs: `embcli index` of the corpus with and without --no-fts,
interleaved, medians of wall and CPU seconds (of the child process), and the metadata
database's size.

    python bench/hybrid.py             # ~3 min the first time on 2 busy cores (embedding), then ~1 min
    python bench/hybrid.py --shards 4  # the same over a 4-shard index
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data" / "known-items"
CACHE = REPO / "bench" / ".cache"
CONFIGS = [
    ("dense", {"mode": "dense"}),
    ("lexical (BM25)", {"mode": "lexical"}),
    ("hybrid rrf", {"mode": "hybrid"}),
    ("hybrid linear", {"mode": "hybrid", "fusion": "linear"}),
]
K = 10
QUERY_SETS = [("names", "queries.jsonl"), ("keywords", "keyword-queries.jsonl")]


def _embcli(*args: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "embcli", *args], check=True, env=env)


def _index(shards: int | None) -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    vec = CACHE / "known-items-vec.jsonl"
    corpus = DATA / "corpus.jsonl"
    if not vec.exists() or vec.stat().st_mtime < corpus.stat().st_mtime:
        print("embedding the corpus (once) ...", file=sys.stderr)
        _embcli("embed", "-q", str(corpus), "-o", str(vec))
    idx = CACHE / (f"known-items-{shards}sh.idx" if shards else "known-items.idx")
    if not idx.exists() or idx.stat().st_mtime < vec.stat().st_mtime:
        _embcli("index", "-q", "--force", "-o", str(idx), str(vec), *(["--shards", str(shards)] if shards else []))
    return idx


def _build_cost(vec: Path, repeat: int) -> None:
    """`embcli index` with and without the full-text index: time, CPU and the metadata file's size."""
    import resource
    import tempfile

    rows: dict[str, list[tuple[float, float, int]]] = {"with FTS": [], "--no-fts": []}
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        for _ in range(repeat):
            for name, extra in (("with FTS", []), ("--no-fts", ["--no-fts"])):
                idx = Path(tmp) / "b.idx"
                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                w0 = time.perf_counter()
                cmd = [sys.executable, "-m", "embcli", "index", "-q", "--force", "-o", str(idx), str(vec), *extra]
                subprocess.run(cmd, check=True, env=env)
                wall = time.perf_counter() - w0
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
                meta = next(idx.glob("meta.*.sqlite")).stat().st_size
                rows[name].append((wall, cpu, meta))
    print(f"index build of the 3,000 records, medians of {repeat} interleaved runs:")
    for name, runs in rows.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(f"  {name:<9} {wall:6.2f}s wall  {cpu:6.2f} CPU s  metadata {runs[0][2] / 1e3:,.0f} kB")


def _metrics(queries: list[dict], hits: list) -> tuple[float, float]:
    ranks = [next((h.rank for h in found if h.id == q["target"]), None) for q, found in zip(queries, hits, strict=True)]
    recall = sum(r is not None for r in ranks) / len(ranks)
    return recall, sum(1 / r for r in ranks if r is not None) / len(ranks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shards", type=int, default=None, help="search a sharded index of N shards")
    ap.add_argument("--repeat", type=int, default=3, help="interleaved rounds for the timings")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO))
    import embcli
    from embcli.search.query import SearchOptions

    idx = _index(args.shards)
    sets = {name: [orjson.loads(line) for line in (DATA / f).read_bytes().splitlines()] for name, f in QUERY_SETS}
    index = embcli.Index.open(idx)
    searcher = index._searcher  # the Searcher behind Index.search: queries embedded once, searched by each config
    index.search(["warm up"], k=K)  # load the model before timing anything
    texts = {name: [q["text"] for q in qs] for name, qs in sets.items()}
    w0, c0 = time.perf_counter(), time.process_time()
    vectors = {name: searcher.embed(t) for name, t in texts.items()}
    n_all = sum(len(qs) for qs in sets.values())
    embed_wall, embed_cpu = time.perf_counter() - w0, time.process_time() - c0
    quality: dict[tuple[str, str], tuple[float, float]] = {}
    wall: dict[str, list[float]] = {name: [] for name, _ in CONFIGS}
    cpu: dict[str, list[float]] = {name: [] for name, _ in CONFIGS}
    for _ in range(args.repeat):
        for name, options in CONFIGS:
            opts = SearchOptions(K, **options)
            w0, c0 = time.perf_counter(), time.process_time()
            found = {
                s: searcher.search(vectors[s] if opts.dense else None, opts, texts=texts[s] if opts.words else None)
                for s in sets
            }
            wall[name].append(time.perf_counter() - w0)
            cpu[name].append(time.process_time() - c0)
            for s, qs in sets.items():
                got = _metrics(qs, found[s])
                if quality.get((name, s), got) != got:
                    sys.exit(f"bench: {name} gave different results in another round")
                quality[name, s] = got
            every = [q for qs in sets.values() for q in qs]
            quality[name, "both"] = _metrics(every, [h for s in sets for h in found[s]])
    index.close()
    if not args.shards:
        _build_cost(CACHE / "known-items-vec.jsonl", args.repeat)
    where = f"{args.shards}-shard index" if args.shards else "one index"
    print(
        f"known-item sets over 3,000 PyPI summaries ({where}): "
        + ", ".join(f"{name} {len(qs)} queries" for name, qs in sets.items())
        + f"; load average {os.getloadavg()[0]:.1f}"
    )
    head = "".join(f" | {s + ' R@10':>13} {'MRR@10':>7}" for s in [*sets, "both"])
    print(f"{'configuration':<15}{head} | {'search q/s':>10} {'CPU s':>6}")
    base = statistics.median(wall["dense"])
    for name, _ in CONFIGS:
        cells = "".join(f" | {quality[name, s][0]:>13.3f} {quality[name, s][1]:>7.3f}" for s in [*sets, "both"])
        t = statistics.median(wall[name])
        print(f"{name:<15}{cells} | {n_all / t:>10,.0f} {statistics.median(cpu[name]):>6.2f}  ({t / base:.2f}x dense)")
    print(
        f"embedding the {n_all} queries (dense and hybrid only): {embed_wall:.1f}s wall, {embed_cpu:.1f} CPU s, "
        f"{n_all / embed_wall:,.0f} queries/s"
    )


if __name__ == "__main__":
    main()
