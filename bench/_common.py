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


def busy_cpu_s() -> float:
    """CPU seconds the whole machine has been busy since boot (/proc/stat), 0 where unavailable."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
    except OSError:
        return 0.0
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0)  # idle + iowait
    return (sum(vals[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_idle(max_wait: float, threshold: float = 0.15) -> float:
    """Wait (up to ``max_wait`` s) for a second in which the machine is nearly idle; the seconds waited.

    Other processes on a small machine skew everything, and ORT's spinning thread pool
    suffers most: a pool thread that loses its core stalls every parallel op.
    """
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < max_wait:
        b0 = busy_cpu_s()
        time.sleep(1.0)
        if busy_cpu_s() - b0 < threshold:
            break
    return time.perf_counter() - t0


# A child forked from a big parent inherits the parent's peak RSS in its rusage: measure through
# a small launcher, whose own child starts from the launcher's few MB.
_LAUNCHER = (
    "import os, subprocess, sys\n"
    "p = subprocess.Popen(sys.argv[1:])\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "sys.stderr.write(f'\\n__peak_rss_kb__ {usage.ru_maxrss} {usage.ru_utime + usage.ru_stime}\\n')\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def timed_run(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) of the command alone, and its stdout."""
    secs, rss, _, out = timed_run_cpu(cmd, env)
    return secs, rss, out


def timed_run_cpu(cmd: list[str], env: dict | None = None) -> tuple[float, float, float, str]:
    """Wall seconds, peak RSS (MB), CPU seconds (user + system) of the command alone, and its stdout."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        code = subprocess.run([sys.executable, "-c", _LAUNCHER, *cmd], stdout=out, stderr=err, env=env).returncode
        elapsed = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        errors = err.read().decode()
        if code not in (0, 1):  # diff exits 1 for "different"
            sys.exit(f"bench: {' '.join(cmd)} failed:\n{errors}")
        rss_kb, cpu = errors.rsplit("__peak_rss_kb__ ", 1)[1].split()[:2]
        return elapsed, int(rss_kb) / 1024, float(cpu), out.read().decode()


def recall_at_k(exact_scores: np.ndarray, found_scores: np.ndarray, k: int) -> float:
    """Hits / k, where a hit scores at least the k-th exact score (ties count: texts repeat)."""
    kth = np.sort(exact_scores, axis=1)[:, -k]
    return float((found_scores[:, :k] >= kth[:, None] - 1e-6).sum() / (k * len(exact_scores)))
