"""Build embcli/builtin/check-texts.jsonl: the texts every built graph is checked and calibrated on.

Sets (field "set"):
- golden: the 256 texts of the default model's golden file (package summaries, long
  docstrings, other scripts, edge cases), from tests/data;
- real: the 2,000 real package summaries of tests/data/packages-2000.jsonl;
- timing: 512 other package summaries (a stride through the package list that skips
  the rows above) plus the standard-library docstrings of tests/data: the text
  candidate graphs are timed on, never seen by the gate.

Run: python tools/make_check_texts.py [PYPI_TSV]
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
SRC = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/.library/env/packages/pypi.tsv")
OUT = ROOT / "embcli" / "builtin" / "check-texts.jsonl"
N_TIMING = 512


def _texts(path: Path) -> list[str]:
    with open(path, "rb") as f:
        return [orjson.loads(line)["text"] for line in f]


def main() -> None:
    golden = _texts(DATA / "golden-all-MiniLM-L6-v2.jsonl")
    real = _texts(DATA / "packages-2000.jsonl")
    taken = set(real) | set(golden)
    summaries = []
    with open(SRC, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            summary = (row["summary"] or "").strip()
            if len(summary.split()) >= 3 and summary not in taken:
                summaries.append(summary)
    stride = len(summaries) // N_TIMING
    timing = summaries[stride // 2 :: stride][:N_TIMING] + _texts(DATA / "stdlib-docs.jsonl")
    with open(OUT, "wb") as out:
        for name, texts in (("golden", golden), ("real", real), ("timing", timing)):
            for text in texts:
                out.write(orjson.dumps({"set": name, "text": text}) + b"\n")


if __name__ == "__main__":
    main()
