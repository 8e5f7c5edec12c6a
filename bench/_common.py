"""Shared by the bench scripts: the cached real embeddings, timed subprocesses, recall with ties."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "bench" / ".cache"


def cached_vectors(path: str | None) -> np.ndarray:
    """Real embeddings: --vectors FILE, else the largest sample bench/index.py cached."""
    if path is None:
        found = sorted(CACHE.glob("pypi-seed*-*.npy"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
        if not found:
            sys.exit("bench: no cached embeddings: run `python bench/index.py --quick`, or give --vectors FILE.npy")
        path = str(found[-1])
    x = np.load(path, mmap_mode="r")
    print(f"vectors: {len(x):,} x {x.shape[1]} from {path}")
    return np.asarray(x, dtype=np.float32)


def dedupe(x: np.ndarray) -> np.ndarray:
    """Drop exact duplicate vectors (package summaries repeat), keeping first occurrences in order."""
    _, first = np.unique(x, axis=0, return_index=True)
    return x[np.sort(first)]


def timed_run(cmd: list[str]) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) of this one child, and its stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=out, stderr=err)
        _, status, usage = os.wait4(p.pid, 0)  # rusage of exactly this child
        elapsed = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if code not in (0, 1):  # diff exits 1 for "different"
            sys.exit(f"bench: {' '.join(cmd)} failed:\n{err.read().decode()}")
        return elapsed, usage.ru_maxrss / 1024, out.read().decode()


def recall_at_k(exact_scores: np.ndarray, found_scores: np.ndarray, k: int) -> float:
    """Hits / k, where a hit scores at least the k-th exact score (ties count: texts repeat)."""
    kth = np.sort(exact_scores, axis=1)[:, -k]
    return float((found_scores[:, :k] >= kth[:, None] - 1e-6).sum() / (k * len(exact_scores)))
