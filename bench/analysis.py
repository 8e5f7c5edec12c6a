"""Wall time and peak memory of cluster, classify and detect-anomalies at 10k, 100k and 1M vectors,
through the real CLI, beside the obvious alternative computed in-process.

Vectors: the real embeddings bench/index.py cached (PyPI summaries); beyond their count, real
vectors plus Gaussian noise, renormalized (labelled "synthetic"). Alternatives: scikit-learn
KMeans (Lloyd, k-means++, same k and n_init) and brute-force exact kNN (PyOD-style O(n²)), run
where they fit in time (--alt-limit).

    python bench/analysis.py [--vectors FILE.npy] [--sizes 10000 100000 1000000] [--alt-limit 100000]
        [--commands cluster detect-anomalies index] [--baseline /path/to/main] [--repeat 3]

--baseline runs each command from another checkout too (the code before a change), interleaved;
cluster rows print the inertia (total cosine distance to the centres) of their labels; the kNN
anomaly rows compare the own-graph scores with those against an index built by `embcli index`.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import REPO, cached_vectors, timed_run_cpu

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


def inertia(path: Path) -> float:
    """Total cosine distance of the rows to their cluster centres, from `cluster`'s output."""
    import orjson

    with open(path, "rb") as f:
        return float(sum(1 - orjson.loads(line)["cluster_similarity"] for line in f))


def run(tree: str | None, args: list[str]) -> tuple[float, float, float, str]:
    """`embcli ARGS` through the CLI, from ``tree`` (another checkout: the baseline) or this one."""
    env = dict(os.environ, PYTHONPATH=tree or str(REPO))
    return timed_run_cpu([sys.executable, "-m", "embcli", *args], env)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vectors")
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--alt-limit", type=int, default=100_000)
    ap.add_argument("--commands", nargs="+", default=["cluster", "classify", "detect-anomalies"])
    ap.add_argument("--baseline", metavar="TREE", help="also run each command from this checkout (e.g. main's)")
    ap.add_argument("--baseline-limit", type=int, default=200_000, help="largest size the baseline runs at")
    ap.add_argument("--repeat", type=int, default=1, help="runs per command, interleaved with the baseline's")
    a = ap.parse_args()
    base = cached_vectors(a.vectors)
    rng = np.random.default_rng(0)
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        head = d / "head.npz"
        np.save(d / "train.npy", base[:10_000])
        # A centroid head over 20 k-means clusters of 10k vectors: the streaming classify path.
        run(None, ["cluster", "--k", str(K), "-o", str(d / "lab.jsonl"), str(d / "train.npy")])
        lab = (d / "lab.jsonl").read_text().splitlines()
        import orjson

        train = [{"label": str(orjson.loads(line)["cluster"]), "embedding": base[i]} for i, line in enumerate(lab)]
        (d / "train.jsonl").write_bytes(
            b"".join(orjson.dumps(t, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n" for t in train)
        )
        run(None, ["classify", "--train", str(d / "train.jsonl"), "--head", "centroid",
                   "--save-head", str(head), str(d / "train.npy"), "-o", str(d / "out.jsonl")])  # fmt: skip
        for n in a.sizes:
            x, kind = data(base, n, rng)
            path = d / "x.npy"
            np.save(path, x)
            label = f"{n:,} {kind}"
            out = d / "out.jsonl"
            idx = d / "x.idx"
            for name, cmd in (
                (f"cluster --k {K}", ["cluster", "--k", str(K), str(path)]),
                ("classify --head-file (centroid)", ["classify", "--head-file", str(head), str(path)]),
                ("detect-anomalies (knn, own graph)", ["detect-anomalies", str(path)]),
                ("index --threads 2 (for --index)", ["index", "--threads", "2", "--force", "-o", str(idx), str(path)]),
                ("detect-anomalies --index (knn)", ["detect-anomalies", "--index", str(idx), str(path)]),
            ):
                if cmd[0] not in a.commands:
                    continue
                trees = [None] + ([a.baseline] if a.baseline and n <= a.baseline_limit else [])
                if "--index" in cmd or cmd[0] == "index":
                    trees = [None]  # new here: the baseline has no --index
                for tree in trees:
                    runs = []
                    for _ in range(a.repeat):
                        extra = ["-o", str(out)] if cmd[0] != "index" else []
                        secs, rss, cpu, _ = run(tree, [*cmd, "-q", *extra])
                        runs.append((secs, rss, cpu))
                    secs, rss, cpu = (float(np.median([r[i] for r in runs])) for i in range(3))
                    who = "baseline" if tree else "embcli"
                    note = f"  inertia {inertia(out):,.1f}" if cmd[0] == "cluster" else ""
                    if cmd[0] == "detect-anomalies":
                        lines = out.read_bytes().splitlines()
                        scores = np.array([orjson.loads(line)["anomaly_score"] for line in lines])
                        np.save(d / f"scores-{who}-{'index' if '--index' in cmd else 'own'}.npy", scores)
                    print(f"{label:<34}{who + ' ' + name:<50}{secs:>8.1f}s{cpu:>8.1f} cpu-s{rss:>8.0f} MB{note}",
                          flush=True)  # fmt: skip
            own, via = d / "scores-embcli-own.npy", d / "scores-embcli-index.npy"
            if own.exists() and via.exists():
                so, si = np.load(own), np.load(via)
                top_o, top_i = set(np.argsort(-so)[: n // 100]), set(np.argsort(-si)[: n // 100])
                print(f"{label:<34}own graph vs --index: max |score diff| {np.abs(so - si).max():.2e}, "
                      f"top-1% overlap {len(top_o & top_i) / max(len(top_o), 1):.3f}")  # fmt: skip
                own.unlink()
                via.unlink()
            if n <= a.alt_limit:
                from sklearn.cluster import KMeans

                for name, fn in (
                    (f"sklearn KMeans k={K} n_init=4", lambda x=x: KMeans(K, n_init=4, random_state=0).fit(x)),
                    ("brute-force exact kNN (O(n²))", lambda x=x: brute_knn(x)),
                ):
                    _, secs, rss = alt(name, fn)
                    print(f"{label:<34}{name:<50}{secs:>8.1f}s{'':>14}{rss:>8.0f} MB (in-process, growth)", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print("aims (issue 16): detect-anomalies at 1M <= 4 min, cluster --k 20 at 1M <= 3 min, peak RSS < 8 GB each")


if __name__ == "__main__":
    main()
