"""What `embed --cache` saves on re-runs: every text unchanged, and 1% of the texts changed.

For each N, through the real CLI on N real PyPI package summaries, repeated
--repeat times with the runs interleaved (a fresh cache each repeat):
  1. first run: embed with an empty cache (the baseline: the model runs on every text),
  2. re-run over the same input (every text hits: no model should load),
  3. re-run with 1% of the texts changed (those miss: the model loads),
  (0. with --baseline, embed without a cache, to show what storing costs the first run).
The re-runs' bytes are checked against an uncached run's: the first run's (or the
no-cache run's), with the changed records' lines embedded alone without a cache.
Prints medians of wall and CPU seconds, the speed-ups over the first run (wall and
CPU), whether each re-run wrote the bytes of an uncached run, and how busy the rest
of the machine was meanwhile ("others' cpu s", from /proc/stat).

    python bench/cache.py --n 5000,20000 --repeat 3 [--changed 0.01] [--baseline] [--corpus PATH]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
from _common import busy_cpu_s

PYPI = Path("/work/.library/env/packages/pypi.tsv")


def load_texts(path: Path, n: int) -> list[str]:
    if not path.exists():
        sys.exit(f"bench/cache.py: corpus not found: {path} (give --corpus)")
    texts: list[str] = []
    with open(path, encoding="utf-8") as f:
        next(f)  # header
        for line in f:
            summary = line.rstrip("\n").split("\t")[4] if line.count("\t") >= 4 else ""
            if summary.strip():
                texts.append(summary.strip())
    random.Random(0).shuffle(texts)
    return texts[:n]


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    others_cpu_s: float
    out: bytes
    summary: str


def run(args: list[str], data: Path, out: Path) -> Run:
    busy0 = busy_cpu_s()
    start = time.perf_counter()
    with open(data, "rb") as fin, open(out, "wb") as fout:
        p = subprocess.Popen([sys.executable, "-m", "embcli", *args], stdin=fin, stdout=fout, stderr=subprocess.PIPE)
        err = p.stderr.read()  # type: ignore[union-attr]
        _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        sys.exit(err.decode())
    cpu = usage.ru_utime + usage.ru_stime
    return Run(wall, cpu, max(busy_cpu_s() - busy0 - cpu, 0.0), out.read_bytes(), err.decode().strip())


def bench_n(texts: list[str], changed_share: float, repeat: int, baseline: bool) -> None:
    n = len(texts)
    changed = set(random.Random(1).sample(range(n), int(n * changed_share)))
    runs: dict[str, list[Run]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        same, edited = d / "same.jsonl", d / "changed.jsonl"
        same.write_bytes(b"".join(orjson.dumps({"id": i, "text": t}) + b"\n" for i, t in enumerate(texts)))
        edited.write_bytes(
            b"".join(
                orjson.dumps({"id": i, "text": t + " (updated)" if i in changed else t}) + b"\n"
                for i, t in enumerate(texts)
            )
        )
        for rep in range(repeat):
            cache = str(d / f"cache-{rep}.db")
            plan = [("no cache", ["embed"], same)] if baseline else []
            plan += [
                ("first run (empty cache)", ["embed", "--cache", cache], same),
                ("re-run, all unchanged", ["embed", "--cache", cache], same),
                (f"re-run, {changed_share:.0%} changed", ["embed", "--cache", cache], edited),
            ]
            for name, args, data in plan:
                r = run(args, data, d / "out.jsonl")
                runs.setdefault(name, []).append(r)
                print(f"  N={n:,} repeat {rep + 1}: {name}: {r.wall_s:.2f} s wall, {r.cpu_s:.2f} s cpu", flush=True)
        # What an uncached run writes: the no-cache run's bytes (else the first run's: the cache was empty),
        # with the changed records' lines from an uncached run over those records alone.
        uncached_same = runs["no cache" if baseline else "first run (empty cache)"][0].out
        lines = uncached_same.splitlines(keepends=True)
        if changed:
            only = d / "only-changed.jsonl"
            rows = edited.read_bytes().splitlines(keepends=True)
            only.write_bytes(b"".join(rows[i] for i in sorted(changed)))
            fresh = run(["embed", "--no-cache"], only, d / "out.jsonl").out.splitlines(keepends=True)
            for i, line in zip(sorted(changed), fresh, strict=True):
                lines[i] = line
        uncached_edited = b"".join(lines)
    first = runs["first run (empty cache)"]
    fw, fc = statistics.median(r.wall_s for r in first), statistics.median(r.cpu_s for r in first)
    print(f"\nN={n:,} real summaries, {len(changed):,} changed in the last run; medians of {repeat}")
    head = f"{'run':<28}{'wall s':>8}{'cpu s':>8}{'texts/s':>10}{'x first (wall)':>16}{'x first (cpu)':>15}"
    print(head + f"{'others cpu s':>14}")
    for name, rs in runs.items():
        w, c = statistics.median(r.wall_s for r in rs), statistics.median(r.cpu_s for r in rs)
        o = statistics.median(r.others_cpu_s for r in rs)
        print(f"{name:<28}{w:>8.2f}{c:>8.2f}{n / w:>10,.0f}{fw / w:>15.1f}x{fc / c:>14.1f}x{o:>14.1f}")
    hit, part = runs["re-run, all unchanged"], runs[f"re-run, {changed_share:.0%} changed"]
    print(
        f"identical to an uncached run: all unchanged {all(r.out == uncached_same for r in hit)}, "
        f"{changed_share:.0%} changed {all(r.out == uncached_edited for r in part)}"
    )
    print(f"summary of the last all-unchanged re-run: {hit[-1].summary}")
    print(f"summary of the last {changed_share:.0%}-changed re-run: {part[-1].summary}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="5000,20000", help="comma-separated sizes (default 5000,20000)")
    ap.add_argument("--changed", type=float, default=0.01)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--baseline", action="store_true", help="also embed without a cache")
    ap.add_argument("--corpus", type=Path, default=PYPI)
    a = ap.parse_args()
    sizes = [int(x) for x in a.n.split(",")]
    texts = load_texts(a.corpus, max(sizes))
    print(f"cores {os.cpu_count()}, load average at start {os.getloadavg()[0]:.1f}")
    for n in sizes:
        bench_n(texts[:n], a.changed, a.repeat, a.baseline)


if __name__ == "__main__":
    main()
