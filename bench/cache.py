"""How much `embed --cache` saves on a nightly re-run where 1% of the texts changed.

Runs, each through the real CLI, on N real PyPI package summaries:
  1. embed without a cache (the baseline),
  2. embed with an empty cache (first night: baseline + the cost of storing),
  3. embed again with the cache after changing 1% of the texts (second night).
Prints wall seconds, texts/s and the second-night speed-up over the baseline.

    python bench/cache.py [--n 20000] [--changed 0.01] [--corpus PATH]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

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


def run(args: list[str], data: Path, out: Path) -> tuple[float, str]:
    start = time.perf_counter()
    with open(data, "rb") as fin, open(out, "wb") as fout:
        p = subprocess.run([sys.executable, "-m", "embcli", *args], stdin=fin, stdout=fout, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if p.returncode:
        sys.exit(p.stderr.decode())
    return elapsed, p.stderr.decode().strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--changed", type=float, default=0.01)
    ap.add_argument("--corpus", type=Path, default=PYPI)
    a = ap.parse_args()
    texts = load_texts(a.corpus, a.n)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        night1, night2 = d / "night1.jsonl", d / "night2.jsonl"
        night1.write_bytes(b"".join(orjson.dumps({"id": i, "text": t}) + b"\n" for i, t in enumerate(texts)))
        changed = set(random.Random(1).sample(range(len(texts)), int(len(texts) * a.changed)))
        night2.write_bytes(
            b"".join(
                orjson.dumps({"id": i, "text": t + " (updated)" if i in changed else t}) + b"\n"
                for i, t in enumerate(texts)
            )
        )
        cache = str(d / "cache.db")
        base, _ = run(["embed", "-q"], night2, d / "base.jsonl")
        first, _ = run(["embed", "--cache", cache], night1, d / "first.jsonl")
        second, summary = run(["embed", "--cache", cache], night2, d / "second.jsonl")
        same = (d / "base.jsonl").read_bytes() == (d / "second.jsonl").read_bytes()
        size = Path(cache).stat().st_size
    n = len(texts)
    print(f"{n:,} texts, {len(changed):,} changed ({a.changed:.0%}); cache file {size / 1e6:,.1f} MB")
    print(f"{'run':<34}{'seconds':>9}{'texts/s':>10}")
    for name, secs in (("no cache", base), ("first night (empty cache)", first), ("second night (cache)", second)):
        print(f"{name:<34}{secs:>9.1f}{n / secs:>10,.0f}")
    print(f"second-night speed-up over no cache: {base / second:.1f}x (aim >= 20x); output identical: {same}")
    print(f"summary of the second night: {summary}")


if __name__ == "__main__":
    main()
