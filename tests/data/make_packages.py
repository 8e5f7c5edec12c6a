"""Build tests/data/packages-2000.jsonl: 2,000 real PyPI package summaries with filterable fields.

Fields: id (package name), text (summary), year (of the latest release, int) and
top (whether it is among the 15,000 most downloaded). A fixed stride over the
workplace's package list keeps it deterministic. Run: python tests/data/make_packages.py [PYPI_TSV]
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import orjson

SRC = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/.library/env/packages/pypi.tsv")
OUT = Path(__file__).with_name("packages-2000.jsonl")
N = 2000


def main() -> None:
    rows = []
    with open(SRC, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            summary = (row["summary"] or "").strip()
            if len(summary.split()) >= 4 and row["month"][:4].isdigit():
                top = bool(row["rank_among_15000_most_downloaded"])
                rows.append((row["name"], summary, int(row["month"][:4]), top))
    stride = len(rows) // N
    with open(OUT, "wb") as out:
        for name, summary, year, top in rows[::stride][:N]:
            out.write(orjson.dumps({"id": name, "text": summary, "year": year, "top": top}) + b"\n")


if __name__ == "__main__":
    main()
