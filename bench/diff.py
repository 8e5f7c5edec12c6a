"""Wall time and peak memory of `embcli diff`, end to end through the CLI, at 10k and 100k per side.

Corpora (real embeddings of PyPI summaries cached by bench/index.py):
  10k vs 10k    two disjoint halves of 20k real vectors
  100k vs 100k  the real vectors vs the same vectors plus Gaussian noise (synthetic B, renormalized)
  --by row 100k the real vectors vs a random rotation of them plus noise: aligned mode

    python bench/diff.py [--vectors FILE.npy] [--sizes 10000 100000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import orjson
from _common import cached_vectors, timed_run


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    a = ap.parse_args()
    x = cached_vectors(a.vectors)
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for n in a.sizes:
            if 2 * n <= len(x):
                first, second, kind = x[:n], x[n : 2 * n], "real halves"
            elif n <= len(x):
                first = x[:n]
                second, kind = unit(first + rng.normal(0, 0.02, first.shape)), "real vs real+noise"
            else:
                print(f"skip {n:,}: only {len(x):,} cached vectors", file=sys.stderr)
                continue
            np.save(d / "a.npy", first)
            np.save(d / "b.npy", second)
            secs, rss, out = timed_run([sys.executable, "-m", "embcli", "diff", str(d / "a.npy"), str(d / "b.npy")])
            report = orjson.loads(out)
            rows.append((f"corpus {n:,} vs {n:,} ({kind})", secs, rss, report["verdict"]))
            rotation, _ = np.linalg.qr(rng.normal(size=(x.shape[1], x.shape[1])))
            np.save(d / "b.npy", unit(first @ rotation + rng.normal(0, 0.01, first.shape)))
            cmd = [sys.executable, "-m", "embcli", "diff", str(d / "a.npy"), str(d / "b.npy"), "--by", "row"]
            secs, rss, out = timed_run(cmd)
            report = orjson.loads(out)
            rows.append((f"aligned --by row {n:,} (rotated+noise)", secs, rss, f"overlap {report['mean_overlap']:.3f}"))
    print(f"{'run':<44}{'seconds':>9}{'peak MB':>9}  result")
    for name, secs, rss, result in rows:
        print(f"{name:<44}{secs:>9.1f}{rss:>9.0f}  {result}")
    print("aim: the default report on 100k vs 100k in under a minute on this 2-core machine")


if __name__ == "__main__":
    main()
