"""Peak memory of `embcli embed` on one enormous record (DESIGN §5: memory stays bounded on any record).

Builds one JSONL record whose text is SIZE MB of real prose (the package summaries
in tests/data, repeated), runs the real CLI on it in a subprocess, and prints wall
seconds, the child's peak RSS and what it said about truncation. Also runs a small
record for the baseline RSS of the process itself.

    python bench/bigrecord.py [--sizes 10,100] [--kind prose|nospace|cjk]

The aim is a 100 MB record under 1 GB peak RSS. Before the prefix tokenization,
the issue measured 10 MB at 1.7 GB peak and 100 MB killed by the OOM killer.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import _LAUNCHER, REPO

PACKAGES = REPO / "tests" / "data" / "packages-2000.jsonl"


def unit_text(kind: str) -> str:
    """About 200 KB of text to repeat: real prose, the same without whitespace, or CJK without spaces."""
    with open(PACKAGES, "rb") as f:
        prose = " ".join(orjson.loads(line)["text"] for line in f)
    if kind == "nospace":
        return "".join(prose.split())
    if kind == "cjk":
        return "自然语言处理是计算机科学领域与人工智能领域中的一个重要方向。" * 2000
    return prose + " "


def write_record(path: Path, size_mb: float, kind: str) -> int:
    """One JSONL record of about ``size_mb`` MB of text, written without building it twice in memory."""
    unit = unit_text(kind)
    target = int(size_mb * 1e6)
    text = unit * (target // len(unit.encode()) + 1)
    text = text[: max(1, int(len(text) * target / len(text.encode())))]
    with open(path, "wb") as f:
        f.write(orjson.dumps({"id": 1, "text": text}) + b"\n")
    return path.stat().st_size


def run(record: Path, out: Path) -> tuple[int, float, float, str]:
    """(exit code, wall seconds, peak RSS in MB of embcli alone, its stderr)."""
    cmd = [sys.executable, "-m", "embcli", "embed", "-o", str(out), str(record)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", _LAUNCHER, *cmd], capture_output=True, env=env, cwd=REPO)
    elapsed = time.perf_counter() - start
    err = p.stderr.decode("utf-8", "replace")
    rss_kb = int(err.rsplit("__peak_rss_kb__ ", 1)[1].split()[0]) if "__peak_rss_kb__" in err else 0
    said = "\n".join(line for line in err.splitlines() if line and "__peak_rss_kb__" not in line)
    return p.returncode, elapsed, rss_kb / 1024, said


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100", help="record sizes in MB, comma-separated")
    ap.add_argument("--kind", choices=("prose", "nospace", "cjk"), default="prose")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for size in [0.001, *(float(s) for s in args.sizes.split(","))]:
            record, out = Path(tmp) / "record.jsonl", Path(tmp) / "out.jsonl"
            nbytes = write_record(record, size, args.kind)
            code, wall, rss, said = run(record, out)
            rows.append((nbytes, code, wall, rss, said))
            record.unlink()
            out.unlink(missing_ok=True)
    print(f"one {args.kind} record through `embcli embed` (peak RSS of the embcli process):")
    for nbytes, code, wall, rss, said in rows:
        note = next((line for line in said.splitlines() if "truncated" in line or "error" in line), "")
        print(f"  {nbytes / 1e6:9.3f} MB  exit {code}  {wall:6.1f} s  peak RSS {rss:7.0f} MB  {note}")


if __name__ == "__main__":
    main()
