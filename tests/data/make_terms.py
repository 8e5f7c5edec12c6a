"""Build the two corpora of the term-shift check: words whose sense differs between them by topic.

- tests/data/terms-software.jsonl: real PyPI package summaries, where "python", "mouse",
  "shell", "bug", "host", "spider", "cell", "ant", "owl", "falcon" are software words;
- tests/data/terms-animals.jsonl: real WordNet 3.0 noun.animal entries (lemmas, then the
  gloss), where the same words are animals, their parts or their hosts.

Each side holds every entry (up to PER_WORD, a fixed stride) that mentions one of those
words, then a fixed stride over the rest, up to N records: the everyday words ("the", "of",
"with", "and") occur on both sides in their one sense. Deterministic: the same sources give
the same bytes. Sources: the workplace's package list and Debian's wordnet-base package
(apt-get install wordnet-base). Run: python tests/data/make_terms.py [PYPI_TSV] [WORDNET_DATA_NOUN]
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import orjson

PYPI = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/.library/env/packages/pypi.tsv")
WORDNET = Path(sys.argv[2] if len(sys.argv) > 2 else "/usr/share/wordnet/data.noun")
HERE = Path(__file__).parent
SHIFTED = ("python", "mouse", "shell", "bug", "host", "spider", "cell", "ant", "owl", "falcon")
PER_WORD = 30  # records per shifted word and side, at most
N = 700  # records per side
ANIMAL_LEXFILE = "05"  # noun.animal


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.lower()))


def software() -> list[tuple[str, str]]:
    rows = []
    with open(PYPI, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            summary = " ".join((row["summary"] or "").split())
            if 4 <= len(summary.split()) <= 40:
                rows.append((row["name"], summary))
    return rows


def animals() -> list[tuple[str, str]]:
    """WordNet noun.animal synsets as "lemma, lemma: gloss" (data.noun's documented line format)."""
    rows = []
    with open(WORDNET, encoding="utf-8") as f:
        for line in f:
            if line.startswith("  "):  # the licence header
                continue
            fields = line.split(" ")
            if fields[1] != ANIMAL_LEXFILE:
                continue
            count = int(fields[3], 16)
            lemmas = [re.sub(r"\(.*\)$", "", fields[4 + 2 * i]).replace("_", " ") for i in range(count)]
            gloss = line.split(" | ", 1)[1].strip()
            rows.append((f"wn:{fields[0]}", f"{', '.join(lemmas)}: {gloss}"))
    return rows


def pick(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    chosen: dict[str, str] = {}
    for word in SHIFTED:
        having = [r for r in rows if word in words(r[1])]
        stride = max(1, len(having) // PER_WORD)
        chosen.update(having[::stride][:PER_WORD])
    rest = [r for r in rows if r[0] not in chosen]
    stride = max(1, len(rest) // max(1, N - len(chosen)))
    for name, text in rest[::stride]:
        if len(chosen) >= N:
            break
        chosen[name] = text
    return sorted(chosen.items())


def write(name: str, rows: list[tuple[str, str]]) -> None:
    with open(HERE / name, "wb") as out:
        for rid, text in rows:
            out.write(orjson.dumps({"id": rid, "text": text}) + b"\n")


def main() -> None:
    write("terms-software.jsonl", pick(software()))
    write("terms-animals.jsonl", pick(animals()))


if __name__ == "__main__":
    main()
