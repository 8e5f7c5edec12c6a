"""Wall time and peak memory of cluster, classify and detect-anomalies at 10k, 100k and 1M vectors,
through the real CLI, beside the obvious alternative computed in-process.

Vectors: the real embeddings bench/index.py cached (PyPI summaries); beyond their count, real
vectors plus Gaussian noise, renormalized (labelled "synthetic"). Alternatives: scikit-learn
KMeans (Lloyd, k-means++, same k and n_init) and brute-force exact kNN (PyOD-style O(n²)), run
where they fit in time (--alt-limit).

    python bench/analysis.py [--vectors FILE.npy] [--sizes 10000 100000 1000000] [--alt-limit 100000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import cached_vectors, timed_run

K = 20  # clusters


def data(x: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    if n <= len(x):
        return x[:n], "real"
    reps = x[rng.integers(0, len(x), n)] + rng.normal(0, 0.03, (n, x.shape[1])).astype(np.float32)
    return (reps / np.linalg.norm(reps, axis=1, keepdims=True)).astype(np.float32), "synthetic (real + noise)"


def alt(name: str, fn) -> tuple[str, float, float]:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    fn()
    secs = time.perf_counter() - start
    return name, secs, max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, 0) / 1024


def brute_knn(x: np.ndarray, k: int = 10) -> np.ndarray:
    out = np.empty(len(x), np.float32)
    for s in range(0, len(x), 2048):
        sims = x[s : s + 2048] @ x.T
        sims[np.arange(len(sims)), s + np.arange(len(sims))] = -np.inf
        top = -np.partition(-sims, k, axis=1)[:, :k]  # the k largest similarities
        out[s : s + 2048] = 1 - top.mean(axis=1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--alt-limit", type=int, default=100_000)
    ap.add_argument("--commands", nargs="+", default=["cluster", "classify", "detect-anomalies"])
    a = ap.parse_args()
    base = cached_vectors(a.vectors)
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        head = d / "head.npz"
        np.save(d / "train.npy", base[:10_000])
        # A centroid head over 20 k-means clusters of 10k vectors: the streaming classify path.
        timed_run(
            [sys.executable, "-m", "embcli", "cluster", "--k", str(K), "-o", str(d / "lab.jsonl"), str(d / "train.npy")]
        )
        lab = (d / "lab.jsonl").read_text().splitlines()
        import orjson

        train = [{"label": str(orjson.loads(line)["cluster"]), "embedding": base[i]} for i, line in enumerate(lab)]
        (d / "train.jsonl").write_bytes(
            b"".join(orjson.dumps(t, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n" for t in train)
        )
        timed_run([sys.executable, "-m", "embcli", "classify", "--train", str(d / "train.jsonl"), "--head", "centroid",
                   "--save-head", str(head), str(d / "train.npy"), "-o", "/dev/null"])  # fmt: skip
        for n in a.sizes:
            x, kind = data(base, n, rng)
            path = d / "x.npy"
            np.save(path, x)
            label = f"{n:,} {kind}"
            for name, cmd in (
                (f"cluster --k {K}", ["cluster", "--k", str(K), str(path)]),
                ("classify --head-file (centroid)", ["classify", "--head-file", str(head), str(path)]),
                ("detect-anomalies (knn)", ["detect-anomalies", str(path)]),
            ):
                if cmd[0] not in a.commands:
                    continue
                secs, rss, _ = timed_run([sys.executable, "-m", "embcli", *cmd, "-q", "-o", "/dev/null"])
                rows.append((label, "embcli " + name, secs, rss))
                print(f"{label:<34}{'embcli ' + name:<44}{secs:>8.1f}s{rss:>8.0f} MB", flush=True)
            if n <= a.alt_limit:
                from sklearn.cluster import KMeans

                for name, fn in (
                    (f"sklearn KMeans k={K} n_init=4", lambda x=x: KMeans(K, n_init=4, random_state=0).fit(x)),
                    ("brute-force exact kNN (O(n²))", lambda x=x: brute_knn(x)),
                ):
                    _, secs, rss = alt(name, fn)
                    rows.append((label, name, secs, rss))
                    print(f"{label:<34}{name:<44}{secs:>8.1f}s{rss:>8.0f} MB (in-process, growth)", flush=True)
    print("\naim: every default path handles 1M x 384 vectors within 24 GB and minutes")


if __name__ == "__main__":
    main()
