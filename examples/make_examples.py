"""Build examples/packages.jsonl: real one-line summaries of popular PyPI packages.

Source: the package list of this workplace (name, version, month, download rank,
summary). Run: python examples/make_examples.py [PYPI_TSV]. The output is committed,
so nothing needs the source file at run time.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import orjson

SRC = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/.library/env/packages/pypi.tsv")
OUT = Path(__file__).with_name("packages.jsonl")
N = 300  # the most-downloaded packages with a real summary


def main() -> None:
    rows = []
    with open(SRC, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            rank, summary = row["rank_among_15000_most_downloaded"], (row["summary"] or "").strip()
            if rank and len(summary.split()) >= 4:
                rows.append((int(rank), row["name"], summary, row["month"]))
    rows.sort()
    with open(OUT, "wb") as out:
        for rank, name, summary, month in rows[:N]:
            out.write(orjson.dumps({"id": name, "text": summary, "download_rank": rank, "released": month}) + b"\n")
    print(f"wrote {min(N, len(rows))} records to {OUT}")


if __name__ == "__main__":
    main()
