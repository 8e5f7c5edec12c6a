#!/usr/bin/env python3
"""Benchmark the embcli index: build speed, size on disk, recall@k and queries/s, plain and filtered.

One invocation measures, side by side:

* build: vectors/s and bytes per vector for each --dtypes (library path: IndexWriter.add in
  batches of 4,096, as `embcli index` does, then commit), one build with --compare-threads
  threads, and `embcli index` end to end (JSONL file in) once at the real scale with f32;
  i8 and b1 indexes keep float32 vectors beside the graph by default (for rescoring), shown
  as their own column;
* search: queries/s of IndexReader.search in chunks of 256 (as `embcli search` does) and
  recall@k against exact search (numpy brute force over the f32 vectors), at several
  expansion_search values, and with --rescore on i8/b1; numpy brute-force queries/s in the
  same run, and the ratio;
* filtered search: recall and queries/s for a selective filter (exact-subset path, and with
  full_scan_threshold=0 the HNSW + oversampling path) and broad filters;
* peak RSS per phase.

Corpus: --n real one-line texts (PyPI package summaries, the 5th column of --corpus), embedded
once with `embcli embed` and cached under bench/.cache/; --queries other summaries held out of
the index are the queries. --scale M adds a synthetic corpus of M vectors made from the real
ones (each plus Gaussian noise, renormalized), searched with the same real queries.

    python bench/index.py                      # 100k real + 1M synthetic: ~55 min on 2 cores, most of it
                                               # the single-threaded 1M builds (f32 ~28 min, i8 ~14 min)
    python bench/index.py --scale-dtypes f32   # the same without the 1M i8 build
    python bench/index.py --quick              # 20k real, no synthetic scale
    python bench/index.py --n 50000 --scale 0 --dtypes f32

Recall counts ties: a hit whose exact score is >= the k-th exact score - 1e-6 is a hit (package
summaries repeat, so several records can share the k-th score).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import orjson
from _common import busy_cpu_s

from embcli.search.index import FULL_SCAN_THRESHOLD, IndexOptions, IndexReader, IndexWriter

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench" / ".cache"
DEFAULT_CORPUS = Path("/work/.library/env/packages/pypi.tsv")
BATCH = 4096  # vectors per IndexWriter.add, as embcli index (commands/index.py BATCH)
CHUNK = 256  # queries per IndexReader.search, as embcli search (commands/search.py CHUNK)
BLOCK = 65536  # database rows per brute-force matmul: bounded memory at any scale
TIE_EPS = 1e-6

# Aims, printed pass/fail beside the figures.
AIM_RECALL = 0.98
AIM_SPEEDUP = 20.0
AIM_FILTER_RECALL = 0.95

# Spawns argv[2:], waits with wait4 and writes its exit code, wall time and peak RSS to argv[1].
# A child spawned straight from this (large) process would report our RSS as its ru_maxrss
# (exec records the old mm's high-water mark); a tiny -I -S interpreter in between keeps the floor low.
LAUNCHER = r"""
import json, os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, ru = os.wait4(pid, 0)
with open(out, "w") as f:
    json.dump({"rc": os.waitstatus_to_exitcode(status), "wall_s": time.perf_counter() - t0,
               "maxrss_kb": ru.ru_maxrss}, f)
"""


# --------------------------------------------------------------------------- memory


_lifetime_peak_mb = 0.0  # VmHWM before each reset: the process peak getrusage can no longer tell after one


def reset_peak_rss() -> None:
    """Reset this process's VmHWM (Linux ≥ 4.0), so each phase reports its own peak."""
    global _lifetime_peak_mb
    _lifetime_peak_mb = max(_lifetime_peak_mb, peak_rss_mb())
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak RSS since the last reset_peak_rss (VmHWM), else the process's lifetime peak (getrusage)."""
    hwm = _status_mb("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mb() -> float:
    cur = _status_mb("VmRSS")
    return cur if cur is not None else peak_rss_mb()


def own_cpu_s() -> float:
    self, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return self.ru_utime + self.ru_stime + children.ru_utime + children.ru_stime


class Noise:
    """CPU time other processes took while we ran: on 2 cores any of it skews the timings."""

    def __init__(self) -> None:
        self.t0, self.busy0, self.own0 = time.perf_counter(), busy_cpu_s(), own_cpu_s()

    def report(self) -> str:
        other = max(0.0, (busy_cpu_s() - self.busy0) - (own_cpu_s() - self.own0))
        wall = time.perf_counter() - self.t0
        share = other / max(wall, 1e-9)
        return f"{wall:,.0f}s wall; other processes used {other:,.0f} CPU-s meanwhile ({share:.2f} cores)"


# --------------------------------------------------------------------------- corpus and embeddings


@dataclass
class Corpus:
    texts: list[str]  # queries first, then the indexed texts
    years: list[int | None]
    vectors: np.ndarray  # float32, unit norm, aligned with texts
    n_queries: int

    @property
    def queries(self) -> np.ndarray:
        return self.vectors[: self.n_queries]

    @property
    def base(self) -> np.ndarray:
        return self.vectors[self.n_queries :]

    @property
    def base_texts(self) -> list[str]:
        return self.texts[self.n_queries :]

    @property
    def base_years(self) -> list[int | None]:
        return self.years[self.n_queries :]


def load_rows(path: Path) -> list[tuple[str, int | None]]:
    """Every non-empty summary (5th TSV column, whitespace collapsed) with the year of its month column."""
    if not path.is_file():
        sys.exit(f"bench: corpus not found: {path} (pass --corpus PATH, a TSV with the text in column 5)")
    rows: list[tuple[str, int | None]] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        next(f, None)  # header
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 5:
                continue
            # str.split() splits on every character that could end a line for `--input-format text`.
            text = " ".join(cols[4].split())
            if text and "\x00" not in text:  # embcli embed refuses NUL bytes
                year = cols[2][:4]
                rows.append((text, int(year) if year.isdigit() else None))
    return rows


def sample_rows(rows: list[tuple[str, int | None]], count: int, seed: int) -> list[tuple[str, int | None]]:
    """A fixed-seed sample whose first ``count`` rows do not depend on ``count``: smaller runs reuse the cache."""
    if len(rows) < count:
        sys.exit(f"bench: only {len(rows):,} non-empty summaries, asked for {count:,}")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    return [rows[i] for i in order[:count]]


def embed_texts(texts: list[str], tmp: Path) -> tuple[np.ndarray, float]:
    """`embcli embed` over ``texts`` (one per line) to NPY; the vectors and the seconds it took."""
    src, out = tmp / "texts.txt", tmp / "vectors.npy"
    src.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    cmd = ["embcli", "embed", "--input-format", "text", "-q", "--format", "npy", "-o", str(out), str(src)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True)
    elapsed = time.perf_counter() - t0
    vectors = np.load(out)
    if vectors.shape[0] != len(texts):
        sys.exit(f"bench: embcli embed returned {vectors.shape[0]} vectors for {len(texts)} texts")
    return vectors.astype(np.float32, copy=False), elapsed


def cached_embeddings(texts: list[str], seed: int, tmp: Path) -> np.ndarray:
    """Vectors of ``texts``, from bench/.cache/ where a cached sample starts with them; embeds only what is missing."""
    CACHE.mkdir(parents=True, exist_ok=True)
    best: tuple[np.ndarray, int] | None = None
    for meta_path in sorted(CACHE.glob(f"pypi-seed{seed}-*.json")):
        cached_texts = json.loads(meta_path.read_text())["texts"]
        common = 0
        for a, b in zip(cached_texts, texts, strict=False):  # the longest shared prefix
            if a != b:
                break
            common += 1
        if common and (best is None or common > best[1]):
            best = (np.load(meta_path.with_suffix(".npy"), mmap_mode="r"), common)
    have = best[1] if best else 0
    if have >= len(texts):
        assert best is not None
        print(f"embeddings: {len(texts):,} cached vectors from {CACHE}")
        return np.array(best[0][: len(texts)], dtype=np.float32)
    missing = texts[have:]
    print(f"embeddings: embedding {len(missing):,} texts with `embcli embed` (cached afterwards in {CACHE}) ...")
    new, elapsed = embed_texts(missing, tmp)
    print(f"embeddings: {len(missing):,} texts in {elapsed:.0f}s, {len(missing) / elapsed:,.0f} texts/s")
    vectors = np.vstack([best[0][:have], new]) if best else new
    stem = CACHE / f"pypi-seed{seed}-{len(texts)}"
    np.save(stem.with_suffix(".npy"), vectors)
    stem.with_suffix(".json").write_text(json.dumps({"seed": seed, "texts": texts}))
    return vectors


def load_corpus(args: argparse.Namespace, tmp: Path) -> Corpus:
    rows = sample_rows(load_rows(args.corpus), args.queries + args.n, args.seed)
    texts = [t for t, _ in rows]
    vectors = cached_embeddings(texts, args.seed, tmp)
    norms = np.linalg.norm(vectors, axis=1)
    if not np.allclose(norms, 1.0, atol=1e-3):
        sys.exit("bench: embeddings are not unit-norm; exact search below assumes they are")
    return Corpus(texts, [y for _, y in rows], vectors, args.queries)


def synthetic(base: np.ndarray, count: int, sigma: float, seed: int) -> np.ndarray:
    """``count`` vectors: base[i % len(base)] + N(0, sigma²) per dimension, renormalized."""
    rng = np.random.default_rng(seed)
    out = np.empty((count, base.shape[1]), dtype=np.float32)
    for start in range(0, count, 100_000):
        rows = np.arange(start, min(start + 100_000, count))
        block = base[rows % len(base)] + rng.standard_normal((len(rows), base.shape[1]), dtype=np.float32) * sigma
        out[rows] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


# --------------------------------------------------------------------------- exact search and recall


def brute_force(db: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k (rows, scores) by dot product: queries in chunks, the database in blocks, argpartition."""
    k = min(k, len(db))
    rows = np.empty((len(queries), k), dtype=np.int64)
    scores = np.empty((len(queries), k), dtype=np.float32)
    for qs in range(0, len(queries), CHUNK):
        q = queries[qs : qs + CHUNK]
        cand_rows, cand_scores = [], []
        for bs in range(0, len(db), BLOCK):
            s = q @ db[bs : bs + BLOCK].T
            kk = min(k, s.shape[1])
            top = np.argpartition(-s, kk - 1, axis=1)[:, :kk]
            cand_rows.append(top + bs)
            cand_scores.append(np.take_along_axis(s, top, axis=1))
        cr, cs = np.hstack(cand_rows), np.hstack(cand_scores)
        top = np.argpartition(-cs, k - 1, axis=1)[:, :k]
        tr, ts = np.take_along_axis(cr, top, axis=1), np.take_along_axis(cs, top, axis=1)
        order = np.argsort(-ts, axis=1, kind="stable")
        rows[qs : qs + CHUNK] = np.take_along_axis(tr, order, axis=1)
        scores[qs : qs + CHUNK] = np.take_along_axis(ts, order, axis=1)
    return rows, scores


def recall(found: list[list[tuple[int, float]]], db: np.ndarray, queries: np.ndarray, kth: np.ndarray, k: int) -> float:
    """Mean recall@k; a found key is a hit when its exact (f32) score reaches the k-th exact score (ties count)."""
    hits = 0
    for i, res in enumerate(found):
        keys = np.fromiter((key for key, _ in res[:k]), dtype=np.int64)
        if len(keys):
            hits += int(np.count_nonzero(db[keys] @ queries[i] >= kth[i] - TIE_EPS))
    return hits / (len(found) * k)


# --------------------------------------------------------------------------- timing helpers


def best_of(repeat: int, fn: Callable[[], T]) -> tuple[T, float]:
    """fn's result and its fastest wall time over ``repeat`` runs (the least disturbed by other load)."""
    t0 = time.perf_counter()
    result = fn()
    best = time.perf_counter() - t0
    for _ in range(repeat - 1):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return result, best


def search_all(reader: IndexReader, queries: np.ndarray, k: int, **options: object) -> list[list[tuple[int, float]]]:
    out: list[list[tuple[int, float]]] = []
    for start in range(0, len(queries), CHUNK):
        out.extend(reader.search(queries[start : start + CHUNK], k, **options))  # type: ignore[arg-type]
    return out


def dir_bytes(path: Path) -> tuple[int, dict[str, int]]:
    """All files in the index directory, and the bytes of each file the manifest names, by role."""
    files = json.loads((path / "manifest.json").read_text())["files"]
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file()), {r: f["bytes"] for r, f in files.items()}


# --------------------------------------------------------------------------- builds


@dataclass
class Build:
    label: str
    dtype: str
    threads: int
    count: int
    seconds: float
    commit_s: float
    bytes: int  # every file in the index directory
    parts: dict[str, int]  # bytes per manifest role: vectors (usearch), meta (SQLite), floats (kept f32)
    rss_mb: float
    rss_start_mb: float

    @property
    def rate(self) -> float:
        return self.count / self.seconds


def payload_batches(
    texts: list[str], years: list[int | None], count: int
) -> Iterator[tuple[slice, list[object], list[dict]]]:
    """Ids and payloads in BATCH-sized slices: text and year of the source text, and bucket = row % 100."""
    n = len(texts)
    for start in range(0, count, BATCH):
        rows = range(start, min(start + BATCH, count))
        payloads = [{"text": texts[r % n], "year": years[r % n], "bucket": r % 100} for r in rows]
        yield slice(rows.start, rows.stop), list(rows), payloads


def build_library(
    path: Path, vectors: np.ndarray, texts: list[str], years: list[int | None], dtype: str, threads: int, label: str
) -> Build:
    """IndexWriter.add in batches, then commit; times only the writer (payload dicts are made outside)."""
    shutil.rmtree(path, ignore_errors=True)
    reset_peak_rss()
    rss0 = rss_mb()
    t0 = time.perf_counter()
    writer = IndexWriter(path, IndexOptions(dtype=dtype), threads=threads)
    elapsed = time.perf_counter() - t0
    try:
        for rows, ids, payloads in payload_batches(texts, years, len(vectors)):
            t0 = time.perf_counter()
            writer.add(ids, payloads, vectors[rows])
            elapsed += time.perf_counter() - t0
        t0 = time.perf_counter()
        manifest = writer.commit()
        commit_s = time.perf_counter() - t0
    except BaseException:
        writer.abort()
        raise
    elapsed += commit_s
    assert manifest["count"] == len(vectors)
    return Build(label, dtype, threads, len(vectors), elapsed, commit_s, *dir_bytes(path), peak_rss_mb(), rss0)


def model_field() -> dict:
    """The embedding_model field `embcli embed` writes, so the CLI build sees what a real pipeline gives it."""
    out = subprocess.run(["embcli", "embed", "-q"], input=b'{"text": "x"}\n', capture_output=True, check=True).stdout
    return orjson.loads(out)["embedding_model"]


def build_cli(path: Path, corpus: Corpus, tmp: Path) -> Build:
    """`embcli index FILE.jsonl -o PATH -q`, records shaped as `embcli embed` output plus year and bucket."""
    jsonl = tmp / "records.jsonl"
    prov = model_field()
    with jsonl.open("wb") as f:
        for rows, ids, payloads in payload_batches(corpus.base_texts, corpus.base_years, len(corpus.base)):
            f.write(
                b"".join(
                    orjson.dumps(
                        {"id": i, **p, "embedding": v, "embedding_model": prov}, option=orjson.OPT_SERIALIZE_NUMPY
                    )
                    + b"\n"
                    for i, p, v in zip(ids, payloads, corpus.base[rows], strict=True)
                )
            )
    shutil.rmtree(path, ignore_errors=True)
    result = tmp / "launch.json"
    embcli = shutil.which("embcli") or "embcli"
    cmd = [sys.executable, "-I", "-S", "-c", LAUNCHER, str(result), embcli, "index", str(jsonl), "-o", str(path), "-q"]
    subprocess.run(cmd, check=True)
    run = json.loads(result.read_text())
    if run["rc"]:
        sys.exit(f"bench: embcli index failed (exit {run['rc']})")
    size_mb = jsonl.stat().st_size / 1e6
    jsonl.unlink()
    count = json.loads((path / "manifest.json").read_text())["count"]
    label = f"embcli index (CLI, {size_mb:,.0f} MB JSONL file)"
    size, parts = dir_bytes(path)
    return Build(label, "f32", 1, count, run["wall_s"], float("nan"), size, parts, run["maxrss_kb"] / 1024, 0.0)


def print_builds(builds: list[Build]) -> None:
    rows = [
        [
            b.label,
            b.dtype,
            str(b.threads),
            f"{b.count:,}",
            f"{b.seconds:,.1f}",
            f"{b.rate:,.0f}",
            "-" if np.isnan(b.commit_s) else f"{b.commit_s:.1f}",
            f"{b.bytes / b.count:,.0f}",
            " / ".join(f"{b.parts.get(r, 0) / b.count:,.0f}" for r in ("vectors", "floats", "meta")),
            f"{b.bytes / 1e6:,.0f}",
            f"{b.rss_mb:,.0f}" + (f" (from {b.rss_start_mb:,.0f})" if b.rss_start_mb else " (process)"),
        ]
        for b in builds
    ]
    header = [
        "build",
        "dtype",
        "threads",
        "vectors",
        "seconds",
        "vectors/s",
        "commit s",
        "B/vector",
        "usearch / floats / sqlite",
        "MB",
        "peak RSS MB",
    ]
    print(table(header, rows))


# --------------------------------------------------------------------------- searches


@dataclass
class SearchRow:
    label: str
    recall: float
    qps: float
    note: str = ""


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows, strict=True)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(line.format(*r).rstrip() for r in [header, ["-" * w for w in widths], *rows])


def ann_rows(
    reader: IndexReader, db: np.ndarray, queries: np.ndarray, kth: np.ndarray, args: argparse.Namespace, bf_qps: float
) -> list[SearchRow]:
    """Unfiltered search at each --ef; the first call uses the index default (no expansion_search passed)."""
    default_ef = reader.manifest["expansion_search"]
    out = []
    # The default first: IndexReader.search keeps an expansion_search it was given for later calls.
    efs = [None, *(ef for ef in args.ef if ef != default_ef)]
    for ef in efs:
        found, secs = best_of(args.repeat, lambda ef=ef: search_all(reader, queries, args.k, expansion_search=ef))
        qps = len(queries) / secs
        label = f"ef={ef or default_ef}" + (" (default)" if ef is None else "")
        out.append(SearchRow(label, recall(found, db, queries, kth, args.k), qps, f"{qps / bf_qps:,.1f}x brute"))
    if reader.floats is not None:  # compact dtypes: re-rank M·k candidates by the kept float vectors
        for m in args.rescore:
            # expansion_search given: the reader still holds the last --ef value otherwise.
            opts = {"expansion_search": default_ef, "rescore": m}
            found, secs = best_of(args.repeat, lambda o=opts: search_all(reader, queries, args.k, **o))
            qps = len(queries) / secs
            label = f"ef={default_ef}, rescore {m}"
            out.append(SearchRow(label, recall(found, db, queries, kth, args.k), qps, f"{qps / bf_qps:,.1f}x brute"))
    return out


def filter_rows(
    reader: IndexReader,
    db: np.ndarray,
    queries: np.ndarray,
    filters: list[tuple[str, str, np.ndarray]],
    args: argparse.Namespace,
) -> list[SearchRow]:
    """Filtered search with default settings (and the selective one with full_scan_threshold=0), vs exact."""
    out = []
    for name, where, mask in filters:
        rows = np.flatnonzero(mask)
        _, sub_scores = brute_force(db[rows], queries, args.k)
        kth = sub_scores[:, -1]
        share = len(rows) / len(db)
        variants: list[tuple[str, dict]] = [("default", {})]
        if len(rows) <= FULL_SCAN_THRESHOLD:
            variants.append(("full_scan_threshold=0", {"full_scan_threshold": 0}))
        for vname, extra in variants:
            found, secs = best_of(
                args.repeat, lambda w=where, x=extra: search_all(reader, queries, args.k, where=w, **x)
            )
            wrong = sum(not mask[key] for res in found for key, _ in res)
            short = sum(len(res) < args.k for res in found)
            path = "exact subset" if len(rows) <= FULL_SCAN_THRESHOLD and not extra else "HNSW + oversampling"
            note = f"{path}; {len(rows):,} match ({share:.1%})"
            if wrong or short:
                note += f"; {wrong} hits fail the filter, {short} queries short of k"
            out.append(
                SearchRow(
                    f"{name}: {where} [{vname}]", recall(found, db, queries, kth, args.k), len(queries) / secs, note
                )
            )
    return out


def print_search(rows: list[SearchRow], k: int) -> None:
    print(
        table(
            ["search", f"recall@{k}", "queries/s", ""],
            [[r.label, f"{r.recall:.4f}", f"{r.qps:,.0f}", r.note] for r in rows],
        )
    )


def make_filters(n: int, years: list[int | None]) -> list[tuple[str, str, np.ndarray]]:
    """Selective (1%, bucket), broad uncorrelated (50%, bucket) and broad correlated with content (year, ≥50%)."""
    bucket = np.arange(n) % 100
    year = np.array([y if y is not None else -1 for y in years], dtype=np.int64)
    # The latest year threshold that still keeps at least half the records.
    y50 = max(y for y in set(year.tolist()) if y > 0 and np.mean(year >= y) >= 0.5)
    return [
        ("selective", "bucket = 7", bucket == 7),
        ("broad", "bucket < 50", bucket < 50),
        ("broad, correlated", f"year >= {y50}", year >= y50),
    ]


# --------------------------------------------------------------------------- one scale


@dataclass
class ScaleResult:
    name: str
    count: int
    bf_qps: float
    ann: dict[str, list[SearchRow]]  # per build label
    filtered: list[SearchRow]


def run_scale(
    name: str,
    db: np.ndarray,
    texts: list[str],
    years: list[int | None],
    queries: np.ndarray,
    dtypes: list[str],
    args: argparse.Namespace,
    work: Path,
    extra_builds: Callable[[], list[Build]] | None = None,
) -> ScaleResult:
    print(f"\n=== {name}: {len(db):,} vectors, {db.shape[1]}-d, {len(queries):,} queries, k={args.k} ===")
    noise = Noise()
    reset_peak_rss()
    rss0 = rss_mb()
    (_, gt_scores), bf_secs = best_of(
        args.repeat if len(db) <= 200_000 else 1, lambda: brute_force(db, queries, args.k)
    )
    bf_qps = len(queries) / bf_secs
    print(
        f"numpy brute force (f32 matmul + argpartition, {CHUNK} queries x {BLOCK:,} rows per block): "
        f"{bf_qps:,.0f} queries/s, peak RSS {peak_rss_mb():,.0f} MB (from {rss0:,.0f})"
    )
    print(
        f"exact top-1 score: median {np.median(gt_scores[:, 0]):.3f}; "
        f"{args.k}th: median {np.median(gt_scores[:, -1]):.3f}"
    )
    kth = gt_scores[:, -1]
    builds: list[Build] = []
    ann: dict[str, list[SearchRow]] = {}
    filtered: list[SearchRow] = []
    todo = [(dt, 1) for dt in dtypes] + (
        [("f32", args.compare_threads)] if args.compare_threads > 1 and name.startswith("real") else []
    )
    for dtype, threads in todo:
        path = work / f"{name.split()[0]}-{dtype}-t{threads}.idx"
        label = f"IndexWriter {dtype}, threads={threads}"
        b = build_library(path, db, texts, years, dtype, threads, label)
        builds.append(b)
        print(f"built {label}: {b.seconds:,.1f}s, {b.rate:,.0f} vectors/s, {b.bytes / b.count:,.0f} B/vector")
        reader = IndexReader(path)
        reset_peak_rss()
        rss0 = rss_mb()
        if threads == 1:
            ann[label] = ann_rows(reader, db, queries, kth, args, bf_qps)
        else:  # only the default: does the parallel graph lose recall?
            ann[label] = ann_rows(reader, db, queries, kth, argparse.Namespace(**{**vars(args), "ef": []}), bf_qps)
        ann[label][0].note += f"; search peak RSS {peak_rss_mb():,.0f} MB (from {rss0:,.0f})"
        if dtype == "f32" and threads == 1:
            reader.close()
            reader = IndexReader(path)  # a fresh reader: default expansion_search again
            filtered = filter_rows(
                reader, db, queries, make_filters(len(db), [years[r % len(years)] for r in range(len(db))]), args
            )
        reader.close()
        if not args.keep:
            shutil.rmtree(path, ignore_errors=True)
    if extra_builds:
        builds.extend(extra_builds())
    print("\nbuild (library builds time IndexWriter construction + add + commit; bytes = all files in the index dir)")
    print_builds(builds)
    for label, rows in ann.items():
        print(f"\nsearch, {label} (IndexReader.search in chunks of {CHUNK}; brute force {bf_qps:,.0f} queries/s)")
        print_search(rows, args.k)
    if filtered:
        print(
            "\nfiltered search, IndexWriter f32 index, default settings unless noted "
            "(exact = brute force over the matches)"
        )
        print_search(filtered, args.k)
    print(f"\n{name}: {noise.report()}")
    return ScaleResult(name, len(db), bf_qps, ann, filtered)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--n", type=int, default=100_000, help="real vectors indexed (default 100,000)")
    p.add_argument(
        "--scale", type=int, default=1_000_000, help="synthetic (real + noise) vectors; 0 skips (default 1,000,000)"
    )
    p.add_argument("--queries", type=int, default=1000, help="held-out real queries (default 1,000)")
    p.add_argument("--quick", action="store_true", help="20k real vectors, no synthetic scale")
    p.add_argument("-k", type=int, default=10, help="hits per query (default 10)")
    p.add_argument("--dtypes", default="f32,f16,i8,b1", help="dtypes built at the real scale (default f32,f16,i8,b1)")
    p.add_argument("--scale-dtypes", default="f32,i8", help="dtypes built at the synthetic scale (default f32,i8)")
    p.add_argument(
        "--ef",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[64, 128, 256],
        help="expansion_search values (default 64,128,256)",
    )
    p.add_argument(
        "--rescore",
        type=lambda s: [int(x) for x in s.split(",") if x],
        default=[4, 10],
        help="rescore factors tried on indexes with kept floats, i8/b1 (default 4,10)",
    )
    p.add_argument(
        "--compare-threads", type=int, default=2, help="also build f32 with this many threads (default 2; 1 skips)"
    )
    p.add_argument("--no-cli", action="store_true", help="skip the `embcli index` end-to-end build")
    p.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="noise per dimension for the synthetic scale (default: derived, see output)",
    )
    p.add_argument("--repeat", type=int, default=3, help="timed search runs; the fastest counts (default 3)")
    p.add_argument("--seed", type=int, default=0, help="sample seed (default 0)")
    p.add_argument(
        "--corpus", type=Path, default=DEFAULT_CORPUS, help=f"TSV, text in column 5 (default {DEFAULT_CORPUS})"
    )
    p.add_argument("--workdir", type=Path, default=None, help="where indexes are built (default a temp dir, removed)")
    p.add_argument("--keep", action="store_true", help="keep the built indexes")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.scale = 20_000, 0
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    args.scale_dtypes = [d for d in args.scale_dtypes.split(",") if d]
    return args


def aims(results: list[ScaleResult], args: argparse.Namespace) -> None:
    top = results[-1]
    label = next((b for b in top.ann if b.startswith("IndexWriter f32, threads=1")), next(iter(top.ann)))
    default = top.ann[label][0]
    speedup = default.qps / top.bf_qps
    frec = min((r.recall for res in results for r in res.filtered if "[default]" in r.label), default=float("nan"))
    where = f"at {top.count:,} vectors ({top.name})" + ("" if top.count >= 1_000_000 else "; the aims are set at 1M")
    print(f"\n=== aims, {where} ===")
    checks = [
        (
            f"recall@{args.k} >= {AIM_RECALL} at default settings ({label}, {default.label})",
            default.recall >= AIM_RECALL,
            f"{default.recall:.4f}",
        ),
        (
            f"ANN >= {AIM_SPEEDUP:.0f}x brute-force queries/s",
            speedup >= AIM_SPEEDUP,
            f"{speedup:,.1f}x ({default.qps:,.0f} vs {top.bf_qps:,.0f} queries/s)",
        ),
        (
            f"filtered recall@{args.k} >= {AIM_FILTER_RECALL} (min over filters and scales, default settings)",
            frec >= AIM_FILTER_RECALL,
            f"{frec:.4f}",
        ),
    ]
    for text, ok, shown in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}: {shown}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, so the temp dir with the indexes goes
    noise = Noise()
    print(
        f"bench/index.py: {' '.join(sys.argv[1:]) or '(defaults)'}; {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="embcli-bench-index-", dir=args.workdir) as tmp_name:
        tmp = Path(tmp_name)
        corpus = load_corpus(args, tmp)
        dups = len(set(corpus.texts[: args.queries]) & set(corpus.base_texts))
        print(
            f"corpus: {len(corpus.base):,} real PyPI summaries indexed; queries: {args.queries:,} other "
            f"summaries held out of the index ({dups} of them also occur verbatim among the indexed texts: "
            "summaries repeat)"
        )
        results = []

        def cli_build() -> list[Build]:
            return [] if args.no_cli else [build_cli(tmp / "cli.idx", corpus, tmp)]

        results.append(
            run_scale(
                "real (embedded PyPI summaries)",
                corpus.base,
                corpus.base_texts,
                corpus.base_years,
                corpus.queries,
                args.dtypes,
                args,
                tmp,
                cli_build,
            )
        )
        shutil.rmtree(tmp / "cli.idx", ignore_errors=True)
        if args.scale:
            # Noise so that two copies of one vector are about as similar (cos ≈ 1 / (1 + d·σ²)) as a real
            # query and its nearest real neighbour: neighbourhoods stay as tight as in the real data.
            top1 = float(np.median(brute_force(corpus.base, corpus.queries, 1)[1][:, 0]))
            sigma = args.sigma or float(np.sqrt((1 / top1 - 1) / corpus.base.shape[1]))
            db = synthetic(corpus.base, args.scale, sigma, args.seed)
            n, m = len(corpus.base), min(10_000, len(corpus.base))
            # Rows i and i + n are two noisy copies of one real vector.
            sib = (
                float(np.median(np.einsum("ij,ij->i", db[:m], db[n : n + m]))) if args.scale >= 2 * n else float("nan")
            )
            print(
                f"\nsynthetic (real + noise): {args.scale:,} vectors = real[i % {len(corpus.base):,}] "
                f"+ N(0, {sigma:.4f}²) per dimension, renormalized; sigma from the median cosine of a real query "
                f"and its nearest real vector, {top1:.3f}; median cosine of two copies of one vector: {sib:.3f}"
            )
            results.append(
                run_scale(
                    "synthetic (real + noise)",
                    db,
                    corpus.base_texts,
                    corpus.base_years,
                    corpus.queries,
                    args.scale_dtypes,
                    args,
                    tmp,
                )
            )
        aims(results, args)
    peak = max(_lifetime_peak_mb, peak_rss_mb())
    print(f"\nprocess peak RSS: {peak:,.0f} MB; whole run: {noise.report()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
