"""How long `embcli diff A B --terms` takes, end to end through the CLI, and what --max-occurrences buys.

Corpora: the committed term-shift check (tests/data/make_terms.py): 700 real PyPI summaries
vs 700 real WordNet noun.animal glosses. Each run is a fresh process (model load included);
runs are interleaved over --repeats rounds and the medians printed, with the child's CPU
seconds (the machine is shared: wall time is noisy, CPU time much less so) and the load.

    python bench/terms.py [--repeats 3] [--caps 16 64 256] [--min-count 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import orjson

REPO = Path(__file__).resolve().parents[1]
A = REPO / "tests" / "data" / "terms-software.jsonl"
B = REPO / "tests" / "data" / "terms-animals.jsonl"


def run(cap: int, min_count: int) -> tuple[float, float, dict]:
    cmd = [sys.executable, "-m", "embcli", "diff", str(A), str(B), "--terms", "--format", "json"]
    cmd += ["--min-count", str(min_count), "--max-occurrences", str(cap), "--top", "8", "--device", "cpu"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode not in (0, 1):
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{p.stderr.decode()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, orjson.loads(p.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--caps", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument("--min-count", type=int, default=3)
    a = ap.parse_args()
    times: dict[int, list[tuple[float, float]]] = {c: [] for c in a.caps}
    reports: dict[int, dict] = {}
    loads = []
    for _ in range(a.repeats):
        for cap in a.caps:  # interleaved: a load spike hits every setting alike
            loads.append(os.getloadavg()[0])
            wall, cpu, reports[cap] = run(cap, a.min_count)
            times[cap].append((wall, cpu))
    print(f"A {A.name} vs B {B.name}, --min-count {a.min_count}; {a.repeats} rounds, medians")
    print(f"{'--max-occurrences':>18}{'wall s':>8}{'CPU s':>8}{'texts encoded':>15}{'words':>7}{'moved':>7}  top words")
    for cap in a.caps:
        r = reports[cap]
        wall = statistics.median(t[0] for t in times[cap])
        cpu = statistics.median(t[1] for t in times[cap])
        enc = r["texts_encoded"]["a"] + r["texts_encoded"]["b"]
        top = ", ".join(w["word"] for w in r["most_moved"])
        print(f"{cap:>18}{wall:>8.1f}{cpu:>8.1f}{enc:>15,}{r['words']:>7}{r['moved_words']:>7}  {top}")
    print(f"load average (1 min) during the runs: {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
