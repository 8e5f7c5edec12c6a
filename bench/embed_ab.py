"""`embcli embed` from two (or more) checkouts side by side: wall, CPU seconds, others' CPU, output sha256.

Each variant is NAME=PATH, a checkout whose `embcli` package runs (PYTHONPATH=PATH).
Runs are interleaved (A B A B ...), JSONL in on stdin, JSONL out to a file, -q, on N
real PyPI summaries (bench/embed.py's sample); prints every run, then medians and the
ratio of each variant's CPU and wall to the first one's, and whether every output
has the same bytes.

    git archive 29ec8e5 embcli | tar -x -C /tmp/base     # the commit before issue 16
    python bench/embed_ab.py --n 3000 --repeat 2 base=/tmp/base branch=.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import busy_cpu_s
from embed import DEFAULT_CORPUS, load_corpus


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+", help="NAME=PATH of a checkout")
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    a = ap.parse_args()
    variants = [(v.split("=", 1)[0], str(Path(v.split("=", 1)[1]).resolve())) for v in a.variants]
    texts = load_corpus(a.corpus, a.n, 0)
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name, _ in variants}
    shas: set[str] = set()
    print(f"cores {os.cpu_count()}, load average at start {os.getloadavg()[0]:.1f}, N={a.n:,}")
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
        src.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), encoding="utf-8")
        for rep in range(a.repeat):
            for name, path in variants:
                env = {**os.environ, "PYTHONPATH": path}
                busy0, t0 = busy_cpu_s(), time.perf_counter()
                with open(src, "rb") as fin, open(out, "wb") as fout:
                    cmd = [sys.executable, "-m", "embcli", "embed", "-q", "--no-cache"]
                    p = subprocess.Popen(cmd, stdin=fin, stdout=fout, env=env, cwd=tmp)
                    _, status, usage = os.wait4(p.pid, 0)
                wall = time.perf_counter() - t0
                if os.waitstatus_to_exitcode(status):
                    sys.exit(f"{name} failed")
                cpu = usage.ru_utime + usage.ru_stime
                others = max(busy_cpu_s() - busy0 - cpu, 0.0)
                sha = hashlib.sha256(out.read_bytes()).hexdigest()[:16]
                shas.add(sha)
                runs[name].append((wall, cpu, others))
                print(f"  {rep + 1}: {name:<12} wall {wall:7.1f} s  cpu {cpu:6.1f} s  others {others:6.1f} s  {sha}")
    base_w = statistics.median(r[0] for r in runs[variants[0][0]])
    base_c = statistics.median(r[1] for r in runs[variants[0][0]])
    print(f"\n{'variant':<12}{'wall s':>9}{'cpu s':>8}{'others cpu s':>14}{'wall ratio':>12}{'cpu ratio':>11}")
    for name, rs in runs.items():
        w, c, o = (statistics.median(r[i] for r in rs) for i in range(3))
        print(f"{name:<12}{w:>9.1f}{c:>8.1f}{o:>14.1f}{w / base_w:>12.2f}{c / base_c:>11.2f}")
    print(f"outputs byte-identical: {len(shas) == 1}")


if __name__ == "__main__":
    main()
