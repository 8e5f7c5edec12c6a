#!/usr/bin/env python3
"""Parquet beside JSONL: `embcli embed` end to end, its memory as the input grows, and reading vectors for `index`.

Three measurements, each contender in its own process (peak RSS per process through
_common.timed_run's launcher), runs interleaved (the order rotates every repeat), medians:

1. embed end to end on the same N real texts (PyPI package summaries, the 5th column of
   --corpus, a fixed-seed sample): `embcli embed docs.jsonl -o out.jsonl` vs
   `embcli embed docs.parquet -o out.parquet`, and CSV in -> JSONL out. The records are
   {"id", "text"}. Aim: Parquet -> Parquet no slower than JSONL -> JSONL.
2. peak RSS flat with the input: Parquet -> Parquet on N texts (part 1's runs) and on 4N (the
   same N texts repeated, so that the longest text, which sizes onnxruntime's buffers, is the
   same); streaming with bounded memory means the RSS does not grow with the count.
3. reading vectors as `embcli index` does (`Inputs([path]).embedded("embedding", BadRecords())`,
   every pair consumed) from --vectors M 384-d float32 vectors written once as JSONL
   ({"id": i, "embedding": [...]}, orjson like `embcli embed`) and as Parquet
   (id int64 zstd, embedding fixed_size_list<float32>[384] uncompressed, row groups of
   10,000: the layout embcli's TableWriter writes), each read in a fresh process; with
   --profile K, a cProfile of each reader afterwards (top K functions).
   The vectors are real plus noise: part 1's N embeddings, row i % N, + N(0, 0.03²) per
   dimension, renormalized (seeded random normal, renormalized, when part 1 is skipped).
   Aim: Parquet >= 3x faster than JSONL.

    python bench/formats.py                        # N=20,000 texts, 1M vectors, 3 repeats: 25-55 min on 2 cores
    python bench/formats.py --quick                # N=2,000, 100k vectors: ~5 min
    python bench/formats.py --parts 3 --profile 25 # reading only, then a cProfile of each reader

Before each run the script waits up to --idle-wait s for an idle second; "others' cpu s" says how
much the rest of the machine ran meanwhile (cpu s, the command's own time, is the steadier figure
on a shared machine). The children import embcli from this checkout (first on PYTHONPATH). Temporary
files (1M vectors as JSONL are ~4.5 GB) go under --tmpdir and are deleted at the end; free
space is checked first. Both vector files are read from the page cache after the first run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import busy_cpu_s, timed_run, wait_idle

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = Path("/work/.library/env/packages/pypi.tsv")
DIMS = 384
ROW_GROUP = 10_000  # TableWriter's default row_group_rows
SIGMA = 0.03  # noise per dimension for the synthetic vectors (as bench/analysis.py)
AIM_EMBED = 1.0  # Parquet -> Parquet wall / JSONL -> JSONL wall
AIM_READ = 3.0  # JSONL read / Parquet read
NOISE_TOLERANCE = 0.05  # a ratio this close to its aim is "within noise" on a shared 2-core machine


# --------------------------------------------------------------------------- reader worker


def read_worker(path: str, profile: int) -> int:
    """Read every (record, vector) of ``path`` as `embcli index` does; one JSON line on stdout."""
    from embcli.io.inputs import Inputs
    from embcli.io.streams import BadRecords

    first_s = 0.0

    def consume() -> tuple[int, int]:
        nonlocal first_s
        t0 = time.perf_counter()
        pairs = iter(Inputs([path]).embedded("embedding", BadRecords()))
        head = next(pairs, None)  # opening: for Parquet that imports pyarrow and reads the footer
        first_s = time.perf_counter() - t0
        if head is None:
            return 0, 0
        rows, dims = 1, head[1].shape[0]
        for _rec, vec in pairs:
            rows += 1
            dims = vec.shape[0]
        return rows, dims

    if profile:
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        t0 = time.perf_counter()
        rows, dims = prof.runcall(consume)
        read_s = time.perf_counter() - t0
        text = io.StringIO()
        stats = pstats.Stats(prof, stream=text).strip_dirs()
        stats.sort_stats("tottime").print_stats(profile)
        stats.sort_stats("cumulative").print_stats(profile)
        sys.stderr.write(text.getvalue())
    else:
        t0 = time.perf_counter()
        rows, dims = consume()
        read_s = time.perf_counter() - t0
    print(json.dumps({"rows": rows, "dims": dims, "read_s": read_s, "first_s": first_s}), flush=True)
    return 0


# --------------------------------------------------------------------------- running and timing


@dataclass
class Run:
    wall_s: float
    rss_mb: float
    cpu_s: float  # user + system of the command (and the launcher's few ms)
    others_s: float  # CPU the rest of the machine used meanwhile: the noise indicator
    report: dict = field(default_factory=dict)


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)  # the launcher waits for the command: it counts here
    return ru.ru_utime + ru.ru_stime


def measure(cmd: list[str]) -> Run:
    busy0, cpu0 = busy_cpu_s(), children_cpu_s()
    wall, rss, out = timed_run(cmd)
    cpu = children_cpu_s() - cpu0
    others = max(0.0, busy_cpu_s() - busy0 - cpu)
    lines = [ln for ln in out.splitlines() if ln.startswith("{")]
    return Run(wall, rss, cpu, others, json.loads(lines[-1]) if lines else {})


def interleaved(contenders: dict[str, list[str]], repeats: int, label: str, idle_wait: float) -> dict[str, list[Run]]:
    """Every contender ``repeats`` times, one after another, the order rotated each repeat.

    Before each run, wait up to ``idle_wait`` s for an idle second (others' test runs share the cores).
    """
    names = list(contenders)
    runs: dict[str, list[Run]] = {n: [] for n in names}
    for rep in range(repeats):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            waited = wait_idle(idle_wait) if idle_wait > 0 else 0.0
            busy = f" (waited {waited:.0f}s for an idle machine)" if waited > 1.5 else ""
            print(f"  {label} run {rep + 1}/{repeats}: {name}{busy} ...", end=" ", flush=True)
            r = measure(contenders[name])
            runs[name].append(r)
            print(f"{r.wall_s:.1f}s, cpu {r.cpu_s:.1f}s, {r.rss_mb:.0f} MB (others' CPU {r.others_s:.1f}s)", flush=True)
    return runs


def med(runs: list[Run], key: str) -> float:
    return statistics.median(getattr(r, key) if hasattr(r, key) else r.report[key] for r in runs)


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    head = line(header)
    return "\n".join([head, "-" * len(head), *(line(r) for r in rows)])


def verdict(ok: bool, near: bool) -> str:
    return "PASS" if ok else "within noise" if near else "FAIL"


# --------------------------------------------------------------------------- inputs


def load_texts(path: Path, n: int, seed: int) -> list[str]:
    """N non-empty summaries (5th TSV column, whitespace collapsed, no NUL), a fixed-seed sample."""
    if not path.is_file():
        sys.exit(f"bench: corpus not found: {path} (pass --corpus PATH, a TSV with the text in column 5)")
    texts: list[str] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        next(f, None)  # header: name, version, month, rank, summary
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 5:
                continue
            text = " ".join(cols[4].split())
            if text and "\x00" not in text:
                texts.append(text)
    if len(texts) < n:
        sys.exit(f"bench: only {len(texts):,} non-empty summaries in {path}, asked for {n:,}")
    return random.Random(seed).sample(texts, n)


def write_docs(texts: list[str], stem: Path, formats: list[str]) -> dict[str, Path]:
    """The records {"id": i, "text": t} as JSONL, Parquet and/or CSV."""
    import orjson

    out = {}
    if "jsonl" in formats:
        p = stem.with_suffix(".jsonl")
        with p.open("wb") as f:
            for i, t in enumerate(texts):
                f.write(orjson.dumps({"id": i, "text": t}, option=orjson.OPT_APPEND_NEWLINE))
        out["jsonl"] = p
    if "parquet" in formats:
        import pyarrow as pa
        import pyarrow.parquet as pq

        p = stem.with_suffix(".parquet")
        tbl = pa.table({"id": pa.array(range(len(texts)), pa.int64()), "text": pa.array(texts, pa.string())})
        pq.write_table(tbl, p, compression="zstd", row_group_size=ROW_GROUP)
        out["parquet"] = p
    if "csv" in formats:
        p = stem.with_suffix(".csv")
        with p.open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["id", "text"])
            w.writerows(enumerate(texts))
        out["csv"] = p
    return out


def make_vectors(count: int, base_path: Path | None, seed: int):
    """``count`` unit 384-d float32 vectors: real + noise from ``base_path``'s embeddings, else random normal."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if base_path is not None and base_path.exists():
        import pyarrow.parquet as pq

        col = pq.read_table(base_path, columns=["embedding"]).column("embedding").combine_chunks()
        base = col.values.to_numpy().reshape(len(col), -1).astype(np.float32)
        what = f"real + noise: {len(base):,} embeddings of part 1, row i % {len(base):,} + N(0, {SIGMA}²), renormalized"
    else:
        base = None
        what = "seeded random normal, renormalized"
    dims = DIMS if base is None else base.shape[1]
    out = np.empty((count, dims), dtype=np.float32)
    for start in range(0, count, 100_000):
        n = min(100_000, count - start)
        noise = rng.standard_normal((n, dims), dtype=np.float32)
        block = noise if base is None else base[np.arange(start, start + n) % len(base)] + noise * SIGMA
        out[start : start + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out, what


def write_vectors(x, jsonl: Path, parquet: Path) -> tuple[float, float]:
    """``x`` as JSONL records and as Parquet; the seconds each write took."""
    import orjson
    import pyarrow as pa
    import pyarrow.parquet as pq

    opts = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
    t0 = time.perf_counter()
    with jsonl.open("wb") as f:
        for start in range(0, len(x), ROW_GROUP):
            f.write(
                b"".join(
                    orjson.dumps({"id": start + i, "embedding": v}, option=opts)
                    for i, v in enumerate(x[start : start + ROW_GROUP])
                )
            )
    jsonl_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    schema = pa.schema([("id", pa.int64()), ("embedding", pa.list_(pa.float32(), x.shape[1]))])
    with pq.ParquetWriter(parquet, schema, compression={"id": "zstd", "embedding": "none"}, use_dictionary=["id"]) as w:
        for start in range(0, len(x), ROW_GROUP):
            block = x[start : start + ROW_GROUP]
            ids = pa.array(range(start, start + len(block)), pa.int64())
            vecs = pa.FixedSizeListArray.from_arrays(pa.array(block.reshape(-1)), x.shape[1])
            w.write_table(pa.Table.from_arrays([ids, vecs], schema=schema), row_group_size=ROW_GROUP)
    return jsonl_s, time.perf_counter() - t0


def check_same(a: Path, b: Path, rows: int) -> str:
    """Whether the first ``rows`` vectors read from ``a`` and ``b`` (through embcli) are identical."""
    import itertools

    import numpy as np

    from embcli.io.inputs import Inputs
    from embcli.io.streams import BadRecords

    va = [v for _, v in itertools.islice(Inputs([str(a)]).embedded("embedding", BadRecords()), rows)]
    vb = [v for _, v in itertools.islice(Inputs([str(b)]).embedded("embedding", BadRecords()), rows)]
    same = len(va) == len(vb) and np.array_equal(np.vstack(va), np.vstack(vb))
    return f"first {len(va):,} vectors {'identical' if same else 'DIFFER'} in both"


def embedded_outputs_agree(jsonl: Path, parquet: Path, n: int) -> str:
    """Whether embed's JSONL and Parquet outputs hold the same ids, texts and vectors."""
    import numpy as np
    import orjson
    import pyarrow.parquet as pq

    with jsonl.open("rb") as f:
        recs = [orjson.loads(ln) for ln in f if ln.strip()]
    tbl = pq.read_table(parquet)
    if len(recs) != n or tbl.num_rows != n:
        return f"row counts differ: JSONL {len(recs):,}, Parquet {tbl.num_rows:,}, input {n:,}"
    ids_ok = [r["id"] for r in recs] == tbl.column("id").to_pylist()
    texts_ok = [r["text"] for r in recs] == tbl.column("text").to_pylist()
    vj = np.array([r["embedding"] for r in recs], dtype=np.float32)
    col = tbl.column("embedding").combine_chunks()
    vp = col.values.to_numpy().reshape(n, -1)
    diff = float(np.abs(vj - vp).max())
    same = {True: "same", False: "DIFFER"}
    return f"{n:,} records each; ids {same[ids_ok]}, texts {same[texts_ok]}, max |vector diff| {diff:.1e}"


# --------------------------------------------------------------------------- parts


def part_embed(args: argparse.Namespace, tmp: Path, texts: list[str], summary: list[str]) -> tuple[Path, list[Run]]:
    """JSONL -> JSONL, Parquet -> Parquet and CSV -> JSONL on the same N texts; the Parquet output and its runs."""
    embcli = [sys.executable, "-m", "embcli", "embed", "-q"]
    n = args.n
    formats = ["jsonl", "parquet"] + ([] if args.no_csv else ["csv"])
    docs = write_docs(texts[:n], tmp / "docs", formats)
    probes = write_docs(texts[:1], tmp / "probe", formats)
    sizes = ", ".join(f"{k} {p.stat().st_size / 1e6:.1f} MB" for k, p in docs.items())
    print(f"\n1. embed end to end: {n:,} texts; inputs {{id, text}}: {sizes}")
    # The first call may build the default graph into the graph cache: do it before timing anything.
    warm = measure([*embcli, str(probes["jsonl"]), "-o", str(tmp / "warm.jsonl")])
    print(f"  warm-up (one text, JSONL -> JSONL): {warm.wall_s:.2f}s, {warm.rss_mb:.0f} MB")
    outs = {"jsonl": tmp / "out.jsonl", "parquet": tmp / "out.parquet", "csv": tmp / "out-csv.jsonl"}
    labels = {"jsonl": "JSONL -> JSONL", "parquet": "Parquet -> Parquet", "csv": "CSV -> JSONL"}
    contenders = {}
    for k, p in docs.items():
        # One text in the same formats: the fixed cost of the command (imports, model load, writer setup).
        probe_out = outs[k].with_name("probe-" + outs[k].name)
        contenders["1 text: " + labels[k]] = [*embcli, str(probes[k]), "-o", str(probe_out)]
        contenders[labels[k]] = [*embcli, str(p), "-o", str(outs[k])]
    runs = interleaved(contenders, args.repeats, "embed", args.idle_wait)
    js_runs = runs[labels["jsonl"]]
    base, base_start = med(js_runs, "wall_s"), med(runs["1 text: " + labels["jsonl"]], "wall_s")
    rows = []
    for k in docs:
        rs, ps = runs[labels[k]], runs["1 text: " + labels[k]]
        wall, start = med(rs, "wall_s"), med(ps, "wall_s")
        rows.append(
            [
                labels[k],
                f"{wall:.2f}",
                f"{min(r.wall_s for r in rs):.2f}",
                f"{start:.2f}",
                f"{wall - start:.2f}",
                f"{n / (wall - start):,.0f}",
                f"{med(rs, 'cpu_s'):.1f}",
                f"{med(rs, 'rss_mb'):.0f}",
                f"{med(ps, 'rss_mb'):.0f}",
                f"{med(rs, 'others_s'):.1f}",
                f"{wall / base:.3f}",
                f"{(wall - start) / (base - base_start):.3f}",
            ]
        )
    print()
    header = ["embed, N=" + f"{n:,}", "wall s", "best s", "1-text s", "wall-1text", "texts/s", "cpu s"]
    header += ["peak RSS MB", "1-text RSS", "others' cpu s", "wall/JSONL", "(wall-1text)/JSONL"]
    print(table(header, rows))
    print(
        "  1-text: the same command on one record (startup: imports, model load, writer); texts/s over wall-1text.\n"
        "  others' cpu s: CPU the rest of the machine used during the run (/proc/stat): this machine is shared.\n"
        "  per run (wall s): "
        + "; ".join(f"{labels[k]}: " + ", ".join(f"{r.wall_s:.1f}" for r in runs[labels[k]]) for k in docs)
    )
    print(f"  outputs: {embedded_outputs_agree(outs['jsonl'], outs['parquet'], n)}")
    pq_runs = runs[labels["parquet"]]
    ratio = med(pq_runs, "wall_s") / base
    pq_start = med(runs["1 text: " + labels["parquet"]], "wall_s")
    per_run = [p.wall_s / j.wall_s for p, j in zip(pq_runs, js_runs, strict=True)]
    best = min(r.wall_s for r in pq_runs) / min(r.wall_s for r in js_runs)
    cpu = med(pq_runs, "cpu_s") / med(js_runs, "cpu_s")
    summary.append(
        f"{verdict(ratio <= AIM_EMBED, ratio <= AIM_EMBED + NOISE_TOLERANCE)}  embed Parquet -> Parquet no slower than "
        f"JSONL -> JSONL (N={n:,}): median wall ratio parquet/jsonl {ratio:.3f} "
        f"(per repeat {', '.join(f'{r:.3f}' for r in per_run)}; startup {pq_start:.2f} vs {base_start:.2f}s, "
        f"without it {(med(pq_runs, 'wall_s') - pq_start) / (base - base_start):.3f}); best-of ratio {best:.3f}, "
        f"CPU-time ratio {cpu:.3f}; peak RSS {med(pq_runs, 'rss_mb'):.0f} vs {med(js_runs, 'rss_mb'):.0f} MB"
    )
    if "csv" in docs:
        c = med(runs[labels["csv"]], "wall_s") / base
        summary.append(f"      CSV -> JSONL / JSONL -> JSONL wall: {c:.3f}")

    return outs["parquet"], pq_runs


def part_rss(args: argparse.Namespace, tmp: Path, texts: list[str], summary: list[str], at_n: list[Run]) -> None:
    """Parquet -> Parquet at N and at N x --rss-scale: peak RSS should not follow the input size.

    A larger input is the N texts repeated (new ids), a smaller one their first part: so the longest text,
    which sizes onnxruntime's buffers (its arena keeps its high-water mark), is never a new one.
    """
    embcli = [sys.executable, "-m", "embcli", "embed", "-q"]
    n = args.n
    m = max(1, round(n * args.rss_scale))
    other = [texts[i % n] for i in range(m)]
    how = f"the {n:,} texts repeated" if m > n else f"the first {m:,} of the {n:,} texts"
    print(f"\n2. peak RSS against the input size: Parquet -> Parquet on {n:,} and on {m:,} texts ({how})")
    doc_m = write_docs(other, tmp / "docs-m", ["parquet"])["parquet"]
    contenders = {f"{m:,} texts": [*embcli, str(doc_m), "-o", str(tmp / "out-m.parquet")]}
    if not at_n:  # part 1 did not run: measure N here too
        doc = write_docs(texts[:n], tmp / "docs-n", ["parquet"])["parquet"]
        contenders[f"{n:,} texts"] = [*embcli, str(doc), "-o", str(tmp / "out-n.parquet")]
    runs = interleaved(contenders, args.rss_repeats, "embed", args.idle_wait)
    sizes_runs = sorted([(n, at_n or runs[f"{n:,} texts"]), (m, runs[f"{m:,} texts"])], key=lambda t: t[0])
    rows = []
    for count, rs in sizes_runs:
        rows.append(
            [
                f"Parquet -> Parquet, {count:,} texts",
                f"{med(rs, 'wall_s'):.2f}",
                f"{count / med(rs, 'wall_s'):,.0f}",
                f"{med(rs, 'cpu_s'):.1f}",
                f"{med(rs, 'rss_mb'):.0f}",
                f"{min(r.rss_mb for r in rs):.0f}-{max(r.rss_mb for r in rs):.0f}",
                str(len(rs)),
            ]
        )
    print()
    print(table(["input", "wall s", "texts/s", "cpu s", "peak RSS MB", "RSS range", "runs"], rows))
    (small_n, small), (big_n, big) = sizes_runs
    growth = med(big, "rss_mb") - med(small, "rss_mb")
    rel = growth / med(small, "rss_mb")
    summary.append(
        f"{verdict(rel <= 0.10, False)}  peak RSS flat with the input (Parquet -> Parquet): "
        f"{med(small, 'rss_mb'):.0f} MB at {small_n:,} texts, {med(big, 'rss_mb'):.0f} MB at {big_n:,} "
        f"({big_n / small_n:.0f}x the input): {growth:+.0f} MB ({rel:+.1%}; aim: under +10%)"
    )
    if small_n < ROW_GROUP * 2:
        summary.append(
            f"      (the Parquet writer buffers a row group of {ROW_GROUP:,} records: below ~{2 * ROW_GROUP:,} "
            "texts RSS still grows with the input by design; judge flatness at N >= 20,000)"
        )


def part_read(args: argparse.Namespace, tmp: Path, base: Path | None, summary: list[str]) -> None:
    m = args.vectors
    print(f"\n3. reading {m:,} vectors for `embcli index` (Inputs([path]).embedded('embedding', BadRecords()))")
    t0 = time.perf_counter()
    x, what = make_vectors(m, base, args.seed)
    print(f"  vectors: {m:,} x {x.shape[1]} float32, {what} ({time.perf_counter() - t0:.0f}s)")
    vj, vp = tmp / "vectors.jsonl", tmp / "vectors.parquet"
    jsonl_s, parquet_s = write_vectors(x, vj, vp)
    del x
    print(
        f"  written: JSONL {vj.stat().st_size / 1e9:.2f} GB in {jsonl_s:.0f}s, "
        f"Parquet {vp.stat().st_size / 1e9:.2f} GB in {parquet_s:.0f}s; {check_same(vj, vp, 1000)}"
    )
    script = str(Path(__file__).resolve())
    contenders = {
        "JSONL": [sys.executable, script, "--read", str(vj)],
        "Parquet": [sys.executable, script, "--read", str(vp)],
    }
    runs = interleaved(contenders, args.repeats, "read", args.idle_wait)
    for name, rs in runs.items():
        bad = [r.report.get("rows") for r in rs if r.report.get("rows") != m]
        if bad:
            sys.exit(f"bench: the {name} reader gave {bad[0]} rows, not {m:,}")
    rows = []
    js, pq_ = runs["JSONL"], runs["Parquet"]
    for name, rs in runs.items():
        read = med(rs, "read_s")
        rows.append(
            [
                f"{name} ({(vj if name == 'JSONL' else vp).stat().st_size / 1e9:.2f} GB)",
                f"{read:.2f}",
                f"{min(r.report['read_s'] for r in rs):.2f}",
                f"{med(rs, 'first_s'):.2f}",
                f"{m / read:,.0f}",
                f"{read / m * 1e6:.2f}",
                f"{med(rs, 'wall_s'):.2f}",
                f"{med(rs, 'cpu_s'):.1f}",
                f"{med(rs, 'rss_mb'):.0f}",
                f"{med(rs, 'others_s'):.1f}",
            ]
        )
    print()
    header = [
        f"read {m:,} vectors",
        "read s",
        "best s",
        "first pair s",
        "vectors/s",
        "us/vector",
        "wall s",
        "cpu s",
        "peak RSS MB",
        "others' cpu s",
    ]
    print(table(header, rows))
    print(
        "  read s: in the child, from Inputs() to the last pair consumed (for Parquet it includes importing pyarrow,\n"
        "  as `embcli index` pays it); first pair s: the part of it until the first pair; wall s: the whole process\n"
        "  (interpreter, embcli import); cpu s: the process's user + system time (pyarrow may use threads)."
    )
    ratio = med(js, "read_s") / med(pq_, "read_s")
    wall_ratio = med(js, "wall_s") / med(pq_, "wall_s")
    per_run = [j.report["read_s"] / p.report["read_s"] for j, p in zip(js, pq_, strict=True)]
    steady = (med(js, "read_s") - med(js, "first_s")) / (med(pq_, "read_s") - med(pq_, "first_s"))
    summary.append(
        f"{verdict(ratio >= AIM_READ, ratio >= AIM_READ * (1 - NOISE_TOLERANCE))}  reading {m:,} vectors for index: "
        f"Parquet >= {AIM_READ:.0f}x faster than JSONL: median read-time ratio jsonl/parquet {ratio:.2f}x "
        f"(per repeat {', '.join(f'{r:.2f}' for r in per_run)}; after the first pair {steady:.2f}x; "
        f"whole process {wall_ratio:.2f}x, CPU time {med(js, 'cpu_s') / med(pq_, 'cpu_s'):.2f}x); "
        f"{m / med(pq_, 'read_s'):,.0f} vs {m / med(js, 'read_s'):,.0f} "
        f"vectors/s; peak RSS {med(pq_, 'rss_mb'):.0f} vs {med(js, 'rss_mb'):.0f} MB"
    )
    if args.profile:
        for name, path in (("JSONL", vj), ("Parquet", vp)):
            print(f"\n  cProfile of the {name} reader (top {args.profile} by own time, then cumulative):")
            prof = [sys.executable, script, "--read", str(path), "--profile-top", str(args.profile)]
            p = subprocess.run(prof, capture_output=True, text=True, check=True)
            print("    " + "\n    ".join(p.stderr.strip().splitlines()))
            print(f"    {p.stdout.strip()}")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=20_000, help="texts to embed (default 20,000)")
    p.add_argument("--vectors", type=int, default=1_000_000, help="vectors to read (default 1,000,000)")
    p.add_argument("--repeats", type=int, default=3, help="interleaved runs per contender; medians (default 3)")
    p.add_argument("--quick", action="store_true", help="--n 2000 --vectors 100000")
    p.add_argument("--parts", default="1,2,3", help="which measurements to run (default 1,2,3)")
    p.add_argument("--rss-scale", type=float, default=4, help="part 2's input is N x this (default 4; 0.25 for N/4)")
    p.add_argument(
        "--rss-repeats", type=int, default=1, help="runs of part 2's extra size (default 1: RSS barely varies)"
    )
    p.add_argument(
        "--idle-wait", type=float, default=60, help="before each run, wait up to S s for an idle machine (default 60)"
    )
    p.add_argument("--no-csv", action="store_true", help="skip CSV -> JSONL in part 1")
    p.add_argument("--profile", type=int, default=0, metavar="K", help="after part 3, cProfile each reader (top K)")
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="TSV with a header; text in column 5")
    p.add_argument("--seed", type=int, default=0, help="sample and noise seed (default 0)")
    p.add_argument("--tmpdir", default=None, help="where the temporary files go (default: the system's)")
    p.add_argument("--read", help=argparse.SUPPRESS)  # worker: read one file, print one JSON line
    p.add_argument("--profile-top", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.vectors = 2_000, 100_000
    args.parts = {int(x) for x in args.parts.split(",") if x.strip()}
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.read:
        return read_worker(args.read, args.profile_top)
    # The children (embcli, the readers) import embcli from this checkout.
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    import numpy
    import pyarrow

    import embcli

    tmp = Path(tempfile.mkdtemp(prefix="embcli-bench-formats-", dir=args.tmpdir))
    try:
        # JSONL holds ~11.5 bytes a float32 as text; Parquet 4 bytes; embed's inputs and outputs: ~20 KB a text.
        need = (args.vectors * DIMS * 16 if 3 in args.parts else 0) + (args.n * 20_000 if args.parts & {1, 2} else 0)
        free = shutil.disk_usage(tmp).free
        print(
            f"bench/formats.py {' '.join(sys.argv[1:]) or '(defaults)'}: embcli {embcli.__version__}, "
            f"pyarrow {pyarrow.__version__}, numpy {numpy.__version__}, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.2f}; temp files in {tmp}: {free / 1e9:.1f} GB free, "
            f"~{need / 1e9:.1f} GB needed"
        )
        if free < need * 1.2:
            sys.exit(
                f"bench: not enough free disk under {tmp}: {free / 1e9:.1f} GB free, ~{need / 1e9:.1f} GB needed "
                "(pass --tmpdir DIR on a larger disk, or a smaller --vectors)"
            )
        t_all = time.perf_counter()
        summary: list[str] = []
        base = None
        if args.parts & {1, 2}:
            t0 = time.perf_counter()
            texts = load_texts(args.corpus, args.n, args.seed)
            print(f"corpus: {len(texts):,} texts sampled from {args.corpus} ({time.perf_counter() - t0:.1f}s)")
            at_n: list[Run] = []
            if 1 in args.parts:
                base, at_n = part_embed(args, tmp, texts, summary)
            if 2 in args.parts and args.rss_scale:
                part_rss(args, tmp, texts, summary, at_n)
        if 3 in args.parts:
            part_read(args, tmp, base, summary)
        print(f"\n=== summary ({args.repeats} interleaved repeat(s), medians; {time.perf_counter() - t_all:.0f}s) ===")
        print("\n".join(summary))
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
