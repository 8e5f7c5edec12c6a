#!/usr/bin/env python3
"""Scale-out figures: the Ray engine's overhead, sharded builds, open time by size, and an estimate on paper.

    python bench/scale.py --quick    # 2,000 texts, 20,000 vectors: ~15 min on 2 loaded cores
    python bench/scale.py            # 20,000 texts, 200,000 vectors: ~30 min on 2 loaded cores
    python bench/scale.py --full     # also a 1,000,000-vector index for the open times (~30 min more)

1. Engine overhead: `embcli embed docs.jsonl -o out.jsonl` (one process) against
   `embcli embed --engine ray docs.jsonl -o DIR --actors 1|2 --part-rows P` (each run starts a
   local Ray cluster and shuts it down), on --n real PyPI summaries, interleaved over --repeat
   rounds, every run into a clean output. The same command on --probe texts gives each
   contender's fixed cost (imports and model load; for Ray also the cluster, its actors and
   their model loads), so "wall − fixed" is the time the texts themselves took.
2. Shard build: --vectors synthetic 384-d vectors made from real ones (5,000 PyPI summaries
   embedded once and cached under bench/.cache/, each plus Gaussian noise, renormalized, as
   bench/index.py's synthetic()), written once to Parquet with ids and texts, indexed by
   `embcli index` as one index (1 and 2 threads) and as --shards 4 (1 and 2 threads); then
   `search --exact` and the default HNSW search with 100 held-out real queries (NPY) on each.
3. Open time by size: IndexReader open (in this process, warm page cache), `embcli index info`
   and a one-query `embcli search` end to end, at 10,000 and --vectors vectors (1,000,000 with --full).
4. On paper: embed and index 100M and 1B texts on CPU nodes or on GPUs, from the rates measured
   in 1 and 2. The GPU throughput is an assumption (--gpu-rate), not measured here.

Each command runs under a small launcher (peak RSS of its largest process, CPU seconds of the
processes it reaped); "Σ RSS" sums the RSS of the whole process tree (Ray's GCS, raylet and
workers included; shared pages counted once per process), sampled every 0.5 s. The machine is
shared: the load average is printed before and after each block, and medians are reported.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson
from _common import CACHE, REPO

DEFAULT_CORPUS = Path("/work/.library/env/packages/pypi.tsv")
EMBCLI = [sys.executable, "-m", "embcli"]
DIM = 384
K = 10
N_QUERIES = 100
BASE = 5_000  # real vectors the synthetic ones are made from
SHARDS = 4
PAGE = os.sysconf("SC_PAGE_SIZE")

# Spawns argv[2:], waits with wait4, writes exit code, wall, peak RSS and CPU seconds to argv[1]. A child
# spawned straight from this (large) process would report our RSS as its own; -I -S keep the floor low.
LAUNCHER = r"""
import json, os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, ru = os.wait4(pid, 0)
with open(out, "w") as f:
    json.dump({"rc": os.waitstatus_to_exitcode(status), "wall_s": time.perf_counter() - t0,
               "maxrss_kb": ru.ru_maxrss, "cpu_s": ru.ru_utime + ru.ru_stime}, f)
"""


# --------------------------------------------------------------------------- running commands


def child_env() -> dict[str, str]:
    """This checkout first on PYTHONPATH: the commands (and Ray's workers) run the embcli under test."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return env


ENV = child_env()


def tree_rss(root: int) -> int:
    """Bytes of RSS summed over every descendant of ``root`` (not ``root`` itself), from /proc."""
    kids: dict[int, list[tuple[int, int]]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        kids.setdefault(int(fields[1]), []).append((int(name), int(fields[21])))  # ppid, rss (pages)
    total, stack = 0, list(kids.get(root, []))
    while stack:
        pid, rss = stack.pop()
        total += rss * PAGE
        stack += kids.get(pid, [])
    return total


class TreeSampler(threading.Thread):
    """Peak of ``tree_rss(root)``, sampled every ``interval`` seconds until stopped."""

    def __init__(self, root: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.root, self.interval, self.peak = root, interval, 0
        self._done = threading.Event()
        self.start()

    def run(self) -> None:
        while not self._done.wait(self.interval):
            self.peak = max(self.peak, tree_rss(self.root))

    def stop(self) -> float:
        self._done.set()
        self.join()
        return self.peak / 2**20


@dataclass
class Run:
    wall: float
    cpu: float  # CPU seconds of the processes the launcher reaped (and those they reaped)
    rss_mb: float  # peak RSS of the largest one
    tree_mb: float  # peak Σ RSS of the process tree, sampled
    out: str
    err: str


def run(cmd: Sequence[str], tmp: Path) -> Run:
    result = tmp / ".launch.json"
    result.unlink(missing_ok=True)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", LAUNCHER, str(result), *cmd], stdout=out, stderr=err, env=ENV
        )
        sampler = TreeSampler(proc.pid)
        proc.wait()
        tree = sampler.stop()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    r = json.loads(result.read_text()) if result.exists() else {"rc": proc.returncode or 1}
    if r["rc"] != 0:
        sys.exit(f"bench: {' '.join(map(str, cmd))} failed (exit {r['rc']}):\n{stderr[-4000:]}")
    return Run(r["wall_s"], r["cpu_s"], r["maxrss_kb"] / 1024, tree, stdout, stderr)


def loadavg() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


class Block:
    """Prints the load average (1, 5, 15 min) when a block of measurements starts and ends."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __enter__(self) -> Block:
        self.t0 = time.perf_counter()
        print(f"  [{self.name}: load average before {loadavg()}]", flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        took = time.perf_counter() - self.t0
        print(f"  [{self.name}: load average after  {loadavg()}; {took:,.0f}s]", flush=True)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def duration(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 90 * 60:
        return f"{s / 60:.0f} min"
    if s < 48 * 3600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned first column, right-aligned others."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        cells = [str(c).ljust(widths[0]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(r)]
        print("  " + "  ".join(cells))


# --------------------------------------------------------------------------- corpus


def load_summaries(path: Path) -> list[str]:
    """Every non-empty summary (the TSV's `summary` column, the 5th), whitespace collapsed."""
    if not path.is_file():
        sys.exit(f"bench: corpus not found: {path} (pass --corpus PATH, a TSV with the text in column 5)")
    out: list[str] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        header = next(f, "").rstrip("\n").split("\t")
        col = header.index("summary") if "summary" in header else 4
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) > col:
                text = " ".join(cols[col].split())
                if text and "\x00" not in text:  # embed refuses NUL bytes
                    out.append(text)
    return out


def write_jsonl(path: Path, texts: Sequence[str], ids: bool = True) -> None:
    with path.open("wb") as f:
        for i, t in enumerate(texts):
            f.write(orjson.dumps({"id": i, "text": t} if ids else {"text": t}) + b"\n")


# --------------------------------------------------------------------------- 1. engine overhead

CONTENDERS = {
    "local": "embed (one process, 2 threads)",
    "ray1": "embed --engine ray --actors 1",
    "ray2": "embed --engine ray --actors 2",
}


def embed_cmd(name: str, inp: Path, out: Path, part_rows: int) -> list[str]:
    if name == "local":
        return [*EMBCLI, "embed", str(inp), "-o", str(out / "out.jsonl")]
    actors = name.removeprefix("ray")
    ray = ["--engine", "ray", "--actors", actors, "--part-rows", str(part_rows)]
    return [*EMBCLI, "embed", *ray, str(inp), "-o", str(out / "vec")]


def output_sha(name: str, out: Path) -> str:
    """sha256 of the records: out.jsonl, or the part files concatenated in order."""
    h = hashlib.sha256()
    files = [out / "out.jsonl"] if name == "local" else sorted((out / "vec").glob("part-*.jsonl"))
    for p in files:
        h.update(p.read_bytes())
    return h.hexdigest()


def engine_overhead(args: argparse.Namespace, corpus: list[str], tmp: Path) -> dict:
    n = args.n
    texts = random.Random(args.seed).sample(corpus, n)
    docs, probe = tmp / "docs.jsonl", tmp / "probe.jsonl"
    write_jsonl(docs, texts)
    write_jsonl(probe, texts[: args.probe])
    part_rows = args.part_rows or math.ceil(n / 8)
    probe_rows = math.ceil(args.probe / 2)  # two parts: --actors 2 really starts two actors
    names = list(CONTENDERS)
    print(
        f"\n1. Engine overhead: {n:,} real PyPI summaries, {args.repeat} interleaved rounds, each run into a clean "
        f"output;\n   Ray: a local cluster started per run, --part-rows {part_rows:,} "
        f"({math.ceil(n / part_rows)} parts); fixed cost: the same command on {args.probe} texts "
        f"({probe_rows} per part)"
    )
    full: dict[str, list[Run]] = {k: [] for k in names}
    fixed: dict[str, list[Run]] = {k: [] for k in names}
    sha: dict[str, set[str]] = {k: set() for k in names}
    with Block("embed"):
        for r in range(args.repeat):
            for name in names[r % 3 :] + names[: r % 3]:
                out = fresh(tmp / f"embed-{name}")
                fixed[name].append(run(embed_cmd(name, probe, out, probe_rows), tmp))
                out = fresh(tmp / f"embed-{name}")
                full[name].append(run(embed_cmd(name, docs, out, part_rows), tmp))
                sha[name].add(output_sha(name, out))
                print(
                    f"  round {r + 1}: {CONTENDERS[name]:<31} {full[name][-1].wall:7.1f} s "
                    f"(fixed {fixed[name][-1].wall:5.1f} s)  load {loadavg()}",
                    flush=True,
                )
    shutil.rmtree(tmp / "embed-local", ignore_errors=True)

    tokens = re.search(r"([\d,]+) tokens", full["local"][0].err)
    tok_per_text = int(tokens.group(1).replace(",", "")) / n if tokens else float("nan")
    res: dict = {"n": n, "tokens_per_text": tok_per_text, "rows": {}}
    rows = []
    base_wall = median([x.wall for x in full["local"]])
    base_marg = median([f.wall - p.wall for f, p in zip(full["local"], fixed["local"], strict=True)])
    for name in names:
        wall = median([x.wall for x in full[name]])
        fix = median([x.wall for x in fixed[name]])
        marg = median([f.wall - p.wall for f, p in zip(full[name], fixed[name], strict=True)])
        cpu_marg = median([f.cpu - p.cpu for f, p in zip(full[name], fixed[name], strict=True)])
        how = re.search(r"(\d+) actors? × (\d+) threads?", full[name][0].err)
        res["rows"][name] = {"wall": wall, "fixed": fix, "marginal": marg, "cpu_marginal": cpu_marg}
        rows.append(
            [
                CONTENDERS[name] + (f" ({how.group(1)}×{how.group(2)})" if how else ""),
                f"{wall:.1f}",
                f"{fix:.1f}",
                f"{marg:.1f}",
                f"{n / marg:,.0f}",
                f"{wall / base_wall:.2f}×",
                f"{marg / base_marg:.2f}×",
                f"{median([x.cpu for x in full[name]]):.0f}" if name == "local" else "n/a",
                f"{max(x.rss_mb for x in full[name]):.0f}",
                f"{max(x.tree_mb for x in full[name]):.0f}",
            ]
        )
    table(
        [
            "contender (actors×threads)",
            "wall s",
            "fixed s",
            "wall−fixed",
            "texts/s",
            "wall vs 1 proc",
            "w−f vs 1 proc",
            "CPU s",
            "max RSS MB",
            "Σ RSS MB",
        ],
        rows,
    )
    print(
        f"  texts average {tok_per_text:.1f} tokens. wall s, fixed s: medians; texts/s = n / (wall − fixed). "
        "CPU s: one process's (Ray's workers\n"
        "  are not children the launcher reaps); max RSS: the largest process; Σ RSS: the whole tree, sampled."
    )
    print("  per round (wall s; ratio to the one-process run of the same round):")
    for name in names:
        cells = [
            f"{x.wall:.1f}" + (f" ({x.wall / b.wall:.2f}×)" if name != "local" else "")
            for x, b in zip(full[name], full["local"], strict=True)
        ]
        print(f"    {CONTENDERS[name]:<31} " + ", ".join(cells))
    same = all(len(s) == 1 for s in sha.values()) and len(set.union(*sha.values())) == 1
    print(f"  agreement: Ray's part files concatenated are byte-identical to the one-process output: {same}")
    res["ratio_wall"] = {k: v["wall"] / base_wall for k, v in res["rows"].items()}
    return res


# --------------------------------------------------------------------------- 2. shard build and queries


def real_vectors(args: argparse.Namespace, corpus: list[str], tmp: Path) -> tuple[np.ndarray, list[str], dict]:
    """N_QUERIES + BASE distinct real summaries embedded once (cached Parquet): vectors, texts, embcli's metadata."""
    import pyarrow.parquet as pq

    count = N_QUERIES + BASE
    path = CACHE / f"scale-real-s{args.seed}-{count}.parquet"
    if not path.exists():
        chosen = random.Random(args.seed + 1).sample(sorted(set(corpus)), count)
        write_jsonl(tmp / "real.jsonl", chosen, ids=False)
        CACHE.mkdir(parents=True, exist_ok=True)
        r = run([*EMBCLI, "embed", str(tmp / "real.jsonl"), "-o", str(path), "-q"], tmp)
        print(f"  embedded {count:,} real summaries in {r.wall:.0f}s (cached: {path})")
    t = pq.read_table(path)
    x = t.column("embedding").combine_chunks().flatten().to_numpy().reshape(-1, DIM).astype(np.float32)
    meta = orjson.loads(t.schema.metadata[b"embcli"])
    return x, t.column("text").to_pylist(), meta


def synthetic(base: np.ndarray, count: int, sigma: float, seed: int) -> np.ndarray:
    """``count`` vectors: base[i % len(base)] + N(0, sigma²) per dimension, renormalized (bench/index.py's)."""
    rng = np.random.default_rng(seed)
    out = np.empty((count, base.shape[1]), dtype=np.float32)
    for start in range(0, count, 100_000):
        rows = np.arange(start, min(start + 100_000, count))
        block = base[rows % len(base)] + rng.standard_normal((len(rows), base.shape[1]), dtype=np.float32) * sigma
        out[rows] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def write_parquet(path: Path, x: np.ndarray, texts: list[str], meta: dict) -> None:
    """id (int64), text (the real text the vector was made from) and embedding, with embcli's provenance."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = {**meta, "provenance": {**meta["provenance"], "position": 2}, "json_columns": []}
    t = pa.table(
        {
            "id": pa.array(np.arange(len(x), dtype=np.int64)),
            "text": pa.array([texts[i % len(texts)] for i in range(len(x))]),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), DIM),
        }
    )
    t = t.replace_schema_metadata({b"embcli": orjson.dumps(meta)})
    pq.write_table(t, path, row_group_size=10_000)


def parse_hits(stdout: str) -> tuple[list[list[object]], np.ndarray]:
    ids, scores = [], []
    for line in stdout.splitlines():
        hits = orjson.loads(line)["results"]
        ids.append([h["id"] for h in hits])
        scores.append([h["score"] for h in hits] + [-np.inf] * (K - len(hits)))
    return ids, np.array(scores, dtype=np.float64)


def recall(exact: np.ndarray, found: np.ndarray) -> float:
    """Hits / k; a hit scores at least the k-th exact score (ties count; scores are printed to 6 decimals)."""
    kth = exact[:, K - 1]
    return float((found[:, :K] >= kth[:, None] - 2e-6).sum() / (K * len(exact)))


BUILDS = [
    ("one", "one index", []),
    ("one-t2", "one index, --threads 2", ["--threads", "2"]),
    ("s4", f"--shards {SHARDS}", ["--shards", str(SHARDS)]),
    ("s4-t2", f"--shards {SHARDS} --threads 2", ["--shards", str(SHARDS), "--threads", "2"]),
]


def usearch_files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path).parent): p.read_bytes() for p in sorted(path.rglob("*.usearch"))}


def shard_build(args: argparse.Namespace, corpus: list[str], tmp: Path) -> dict:
    v = args.vectors
    print(f"\n2. Shard build vs one index: {v:,} synthetic 384-d vectors (real + noise), Parquet with ids and texts")
    real, real_texts, meta = real_vectors(args, corpus, tmp)
    queries, base, base_texts = real[:N_QUERIES], real[N_QUERIES:], real_texts[N_QUERIES:]
    top1 = float(np.median((queries @ base.T).max(axis=1)))
    sigma = float(np.sqrt((1 / top1 - 1) / DIM))
    x = synthetic(base, v, sigma, args.seed)
    data = tmp / "vectors.parquet"
    write_parquet(data, x, base_texts, meta)
    np.save(tmp / "q100.npy", queries)
    np.save(tmp / "q1.npy", queries[:1])
    print(
        f"  vectors = real[i % {BASE:,}] + N(0, {sigma:.4f}²), renormalized (sigma from the median top-1 cosine "
        f"{top1:.3f} of {N_QUERIES} held-out real queries); {data.stat().st_size / 1e6:,.0f} MB of Parquet"
    )
    res: dict = {"vectors": v, "builds": {}, "x": x, "meta": meta, "base_texts": base_texts}
    res.update(base=base, sigma=sigma)
    rows = []
    with Block("index builds"):
        for key, label, extra in BUILDS:
            before = loadavg()
            r = run([*EMBCLI, "index", str(data), "-o", str(tmp / f"{key}.idx"), "-q", *extra], tmp)
            size = dir_bytes(tmp / f"{key}.idx")
            res["builds"][key] = {"wall": r.wall, "cpu": r.cpu, "rss": r.rss_mb, "bytes": size}
            rows.append(
                [
                    label,
                    f"{r.wall:.0f}",
                    f"{v / r.wall:,.0f}",
                    f"{res['builds']['one']['wall'] / r.wall:.2f}×",
                    f"{r.cpu:.0f}",
                    f"{v / r.cpu:,.0f}",
                    f"{r.rss_mb:.0f}",
                    f"{size / 1e6:,.0f}",
                    f"{before} → {loadavg()}",
                ]
            )
            print(f"  built {label}: {r.wall:.0f}s", flush=True)
    table(
        [
            "build",
            "wall s",
            "vectors/s",
            "speed vs one",
            "CPU s",
            "vectors/CPU-s",
            "peak RSS MB",
            "disk MB",
            "load avg before → after",
        ],
        rows,
    )
    same = usearch_files(tmp / "s4.idx") == usearch_files(tmp / "s4-t2.idx")
    print(f"  the {SHARDS} shards built 2 at a time are byte-identical to those built one at a time: {same}")
    shutil.rmtree(tmp / "s4-t2.idx", ignore_errors=True)

    searched = [("one", "one index"), ("one-t2", "one index (2-thread graph)"), ("s4", f"{SHARDS} shards")]
    walls: dict[tuple[str, str, int], list[float]] = {}
    hits: dict[tuple[str, str], tuple[list, np.ndarray]] = {}
    with Block("queries"):
        for r in range(args.query_repeat):
            for key, _ in searched[r % 3 :] + searched[: r % 3]:
                for mode in ("exact", "hnsw"):
                    for nq in (1, N_QUERIES):
                        cmd = [*EMBCLI, "search", str(tmp / f"{key}.idx"), "--queries", str(tmp / f"q{nq}.npy")]
                        cmd += ["-k", str(K), "-q"] + (["--exact"] if mode == "exact" else [])
                        out = run(cmd, tmp)
                        walls.setdefault((key, mode, nq), []).append(out.wall)
                        if nq == N_QUERIES:
                            hits[key, mode] = parse_hits(out.out)
    ref_ids, ref = hits["one", "exact"]
    rows = []
    for key, label in searched:
        for mode in ("exact", "hnsw"):
            w1, w100 = median(walls[key, mode, 1]), median(walls[key, mode, N_QUERIES])
            per_q = (w100 - w1) / (N_QUERIES - 1)
            rows.append(
                [
                    f"{label}, {'--exact' if mode == 'exact' else 'default (HNSW, ef 128)'}",
                    f"{w100:.2f}",
                    f"{w1:.2f}",
                    f"{per_q * 1e3:.1f}" if per_q > 0 else "< noise",
                    f"{recall(ref, hits[key, mode][1]):.3f}",
                ]
            )
    table(["search", f"{N_QUERIES} queries s", "1 query s", "ms/query (diff)", "recall@10"], rows)
    s_ids, s_scores = hits["s4", "exact"]
    agree = sum(
        a == b and np.allclose(sa, sb, atol=2e-6) for a, b, sa, sb in zip(s_ids, ref_ids, s_scores, ref, strict=True)
    )
    print(
        f"  end to end through the CLI, medians of {args.query_repeat}; "
        f"ms/query = (100-query wall − 1-query wall) / 99; recall@10 against one index --exact (ties count).\n"
        f"  sharded --exact = one index --exact (ids and scores): {agree}/{N_QUERIES} queries"
    )
    return res


# --------------------------------------------------------------------------- 3. open time by size


def open_time(args: argparse.Namespace, built: dict, tmp: Path) -> dict:
    from embcli.search.index import IndexReader  # noqa: F401  (imported before timing: the CLI pays it too)
    from embcli.search.shards import open_readers

    v = args.vectors
    print("\n3. Open time by index size (warm page cache; IndexReader in this process, the CLI end to end)")
    entries: list[tuple[str, Path, int]] = []
    small = min(10_000, v)
    x, texts, meta = built["x"], built["base_texts"], built["meta"]
    with Block("small/large builds"):
        if small < v:
            write_parquet(tmp / "small.parquet", x[:small], texts, meta)
            run([*EMBCLI, "index", str(tmp / "small.parquet"), "-o", str(tmp / "small.idx"), "-q"], tmp)
            entries.append((f"{small:,}, one index", tmp / "small.idx", small))
        entries.append((f"{v:,}, one index", tmp / "one.idx", v))
        entries.append((f"{v:,}, {SHARDS} shards", tmp / "s4.idx", v))
        if args.full:
            big = args.full_size
            xb = synthetic(built["base"], big, built["sigma"], args.seed + 1)
            write_parquet(tmp / "big.parquet", xb, texts, meta)
            del xb
            r = run(
                [*EMBCLI, "index", str(tmp / "big.parquet"), "-o", str(tmp / "big.idx"), "-q", "--threads", "2"], tmp
            )
            (tmp / "big.parquet").unlink()
            print(f"  built the {big:,}-vector index in {r.wall:.0f}s (--threads 2)")
            entries.append((f"{big:,}, one index", tmp / "big.idx", big))
    opens: dict[str, list[float]] = {}
    info: dict[str, list[float]] = {}
    search: dict[str, list[Run]] = {}
    floor: list[float] = []
    with Block("open"):
        for _label, path, _ in entries:  # warm the page cache
            for rd in open_readers([path]):
                rd.close()
        for r in range(args.query_repeat):
            floor.append(run([*EMBCLI, "--version"], tmp).wall)
            for label, path, _ in entries[r % len(entries) :] + entries[: r % len(entries)]:
                for _ in range(3):
                    t0 = time.perf_counter()
                    for rd in open_readers([path]):
                        rd.close()
                    opens.setdefault(label, []).append(time.perf_counter() - t0)
                info.setdefault(label, []).append(run([*EMBCLI, "index", "info", str(path)], tmp).wall)
                cmd = [*EMBCLI, "search", str(path), "--queries", str(tmp / "q1.npy"), "-k", str(K), "-q"]
                search.setdefault(label, []).append(run(cmd, tmp))
    rows = []
    res: dict = {}
    for label, path, _count in entries:
        o = median(opens[label])
        res[label] = o
        rows.append(
            [
                label,
                f"{dir_bytes(path) / 1e6:,.0f}",
                f"{o * 1e3:.1f}",
                f"{median(info[label]):.2f}",
                f"{median([s.wall for s in search[label]]):.2f}",
                f"{median([s.rss_mb for s in search[label]]):.0f}",
            ]
        )
    table(
        ["index (vectors)", "disk MB", "IndexReader open ms", "index info s", "1-query search s", "search RSS MB"], rows
    )
    print(
        f"  medians ({3 * args.query_repeat} opens, {args.query_repeat} CLI runs each); `embcli --version` alone: "
        f"{median(floor):.2f} s (interpreter + CLI import)"
    )
    if not args.full:
        print(f"  {args.full_size:,} vectors: skipped (--full builds that index; about 30 min on this machine)")
    return res


# --------------------------------------------------------------------------- 4. on paper


def paper(args: argparse.Namespace, emb: dict | None, idx: dict | None) -> None:
    print("\n4. On paper: embed and index 100M and 1B texts (estimates from the rates above, not measured at scale)")
    if emb is None or idx is None:
        print("  skipped: needs sections 1 and 2")
        return
    n_texts = [100_000_000, 1_000_000_000]
    local = emb["rows"]["local"]
    per_core = emb["n"] / local["cpu_marginal"]  # texts per CPU-second of one process
    wall_core = emb["n"] / local["marginal"] / 2
    ray2 = emb["rows"]["ray2"]
    overhead = max(1.0, ray2["marginal"] / local["marginal"])
    ray_fixed = ray2["fixed"]
    v, b = idx["vectors"], idx["builds"]
    # Seconds of one thread per inserted vector, at the shard size (v/4) and at v: c(n) = a + b·ln(n).
    c_small, c_big = b["s4"]["cpu"] / v, b["one"]["cpu"] / v
    slope = max(0.0, (c_big - c_small) / math.log(SHARDS))

    def cost(n: float) -> float:
        return c_big + slope * math.log(n / v)

    bytes_per_vector = b["one"]["bytes"] / v
    print(
        f"  measured: embed {per_core:,.0f} texts per CPU-second (one process; {wall_core:,.0f} per core by wall "
        f"on the loaded 2 cores), {emb['tokens_per_text']:.1f} tokens/text;\n"
        f"  Ray with 2 actors: {overhead:.2f}× the one-process time for the texts, {ray_fixed:.0f} s fixed "
        f"(cluster and actors);\n"
        f"  index: {1 / c_small:,.0f} vectors per thread-second at {v // SHARDS:,} per shard, {1 / c_big:,.0f} at "
        f"{v:,}; fitted a + b·ln(n): {1 / cost(1e6):,.0f} at 1M, {1 / cost(5e6):,.0f} at 5M (extrapolated);\n"
        f"  {bytes_per_vector:,.0f} bytes per vector on disk (f32 vectors, graph, text payload)."
    )
    print(
        f"  assumed, not measured here: {args.gpu_rate[0]:,}–{args.gpu_rate[1]:,} texts/s per A100-class GPU for "
        f"MiniLM-L6 on texts this short; {args.gpu_host_cores} host cores per GPU for the index build;\n"
        f"  linear scaling across nodes at the Ray overhead above; shards: a multiple of the cores, ≤ "
        f"{args.max_shard:,} vectors each, built one thread per shard, all nodes at once\n"
        f"  (`index --engine ray` builds the shards as Ray tasks across the cluster, one thread each); "
        f"prices {args.core_hour_usd:g} $/core-hour, {args.gpu_hour_usd:g} $/GPU-hour."
    )

    def index_plan(n: int, cores: int) -> tuple[int, float, float]:
        waves = math.ceil(math.ceil(n / args.max_shard) / cores)  # every wave uses every core
        shards = waves * cores
        size = n / shards
        return shards, waves * size * cost(size), n * cost(size) / 3600

    rows = []
    for n in n_texts:
        scenarios: list[tuple[str, int, Callable[[], tuple[str, str, float, float]]]] = []
        for nodes in args.nodes:
            cores = nodes * args.cores_per_node

            def cpu(n: int = n, cores: int = cores) -> tuple[str, str, float, float]:
                core_s = n / per_core * overhead
                wall = core_s / cores + ray_fixed
                hours = core_s / 3600
                return duration(wall), f"{hours:,.0f} core-h", wall, hours * args.core_hour_usd

            scenarios.append((f"{nodes} nodes × {args.cores_per_node} cores", cores, cpu))
        for gpus in args.gpus:
            cores = gpus * args.gpu_host_cores

            def gpu(n: int = n, gpus: int = gpus) -> tuple[str, str, float, float]:
                lo, hi = (n / (gpus * r) + ray_fixed for r in reversed(args.gpu_rate))
                h_lo, h_hi = (n / r / 3600 for r in reversed(args.gpu_rate))
                return f"{duration(lo)}–{duration(hi)}", f"{h_lo:,.0f}–{h_hi:,.0f} GPU-h", hi, h_hi * args.gpu_hour_usd

            scenarios.append((f"{gpus} GPUs (+{args.gpu_host_cores} cores each)", cores, gpu))
        scenarios.append(
            ("this machine (2 cores, loaded)", 2, lambda n=n: (duration(n / wall_core / 2), "", n / wall_core / 2, 0.0))
        )
        for label, cores, embed in scenarios:
            e_wall_s, e_hours, e_wall, e_usd = embed()
            shards, i_wall, i_hours = index_plan(n, cores)
            dom = "embed" if e_wall > i_wall else "index"
            ratio = max(e_wall, i_wall) / max(min(e_wall, i_wall), 1e-9)
            usd = e_usd + i_hours * args.core_hour_usd
            rows.append(
                [
                    f"{n / 1e6:,.0f}M texts, {label}",
                    e_wall_s,
                    e_hours,
                    f"{shards:,} × {n / shards / 1e3:,.0f}k",
                    duration(i_wall),
                    f"{i_hours:,.0f} core-h",
                    f"{dom} ({ratio:.1f}×)",
                    f"${usd:,.0f}" if cores > 2 else "",
                    f"{n * bytes_per_vector / 1e12:,.2f} TB",
                ]
            )
    table(
        [
            "scenario",
            "embed wall",
            "embed cost",
            "shards × size",
            "index wall",
            "index cost",
            "dominates",
            "$",
            "index",
        ],
        rows,
    )
    print(
        "  GPU rows: dominates and $ at the low assumed GPU rate; index: f32 vectors, graph and payload on disk.\n"
        f"  embed scales with tokens: these texts average {emb['tokens_per_text']:.0f} tokens; 256-token chunks cost "
        f"roughly {256 / emb['tokens_per_text']:.0f}× more per text on CPU, and shift the balance further to embed."
    )


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="--n 2000 --vectors 20000 --repeat 2")
    ap.add_argument("--full", action="store_true", help="also open time at --full-size vectors (builds it)")
    ap.add_argument("--n", type=int, help="texts for the engine overhead (default 20,000; quick 2,000)")
    ap.add_argument("--vectors", type=int, help="vectors for the shard build (default 200,000; quick 20,000)")
    ap.add_argument("--repeat", type=int, help="embed rounds (default 2; quick 2)")
    ap.add_argument("--query-repeat", type=int, default=3, help="search and open rounds")
    ap.add_argument("--probe", type=int, default=64, help="texts of the fixed-cost runs")
    ap.add_argument("--part-rows", type=int, help="Ray --part-rows (default: --n / 8)")
    ap.add_argument("--full-size", type=int, default=1_000_000)
    ap.add_argument("--sections", default="1,2,3,4", help="which sections to run (3 and 4 need 2; 4 needs 1)")
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--nodes", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--cores-per-node", type=int, default=32)
    ap.add_argument("--gpus", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--gpu-rate", type=int, nargs=2, default=[10_000, 30_000], help="assumed texts/s per GPU")
    ap.add_argument("--gpu-host-cores", type=int, default=12)
    ap.add_argument("--max-shard", type=int, default=1_000_000)
    ap.add_argument("--core-hour-usd", type=float, default=0.04)
    ap.add_argument("--gpu-hour-usd", type=float, default=2.0)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    args.n = args.n or (2_000 if args.quick else 20_000)
    args.vectors = args.vectors or (20_000 if args.quick else 200_000)
    args.repeat = args.repeat or 2
    sections = {s.strip() for s in args.sections.split(",")}

    t0 = time.perf_counter()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"bench/scale.py: --n {args.n:,} --vectors {args.vectors:,} --repeat {args.repeat}; {cores} cores, "
        f"load average {loadavg()}; embcli from {REPO}"
    )
    corpus = load_summaries(args.corpus)
    print(f"corpus: {len(corpus):,} non-empty summaries from {args.corpus}")
    tmp = Path(tempfile.mkdtemp(prefix="embcli-scale-"))
    try:
        emb = engine_overhead(args, corpus, tmp) if "1" in sections else None
        idx = shard_build(args, corpus, tmp) if sections & {"2", "3"} else None
        if "3" in sections and idx is not None:
            open_time(args, idx, tmp)
        if "4" in sections:
            paper(args, emb, idx)
        print(f"\ntotal {duration(time.perf_counter() - t0)}; load average {loadavg()}")
        if args.keep:
            print(f"kept {tmp}")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
