"""Build tests/data/known-items/: a known-item retrieval set from real PyPI packages.

The task: a user remembers a package's name and looks for the package; the index
holds package summaries only (the name is the id, not part of the text). So the
query is the name with its separators as spaces ("django-rest-auth" → "django rest
auth") and the one relevant document is that package's summary. Names are rare
words, compounds and abbreviations, where matching words exactly (BM25) and
matching meaning (dense) each find what the other misses.

A second query set simulates a user who remembers a few words of what they read,
the way Azzopardi, de Rijke and Balog build known-item queries ("Building simulated
queries for known-item topics", SIGIR 2007): three distinct words of the target
summary (not stopwords, at least 3 characters), each drawn with probability
proportional to its idf in the corpus (discriminative terms, as their model
prefers), in the order drawn. Exact words help BM25 here; their meaning still
helps dense retrieval.

- corpus.jsonl            {"id": name, "text": summary, "year": int, "top": bool}, 3,000 packages
- queries.jsonl           {"id": "q0001", "text": name as words, "target": name}, ~500 of them
- qrels.jsonl             {"query_id", "doc_id", "relevance": 1} (for `embcli eval`)
- keyword-queries.jsonl   {"id": "k0001", "text": three words, "target": name}, the same targets
- keyword-qrels.jsonl

Packages are taken at a fixed stride over the workplace's package list (summaries
of at least 5 words, not shared with any other package in the set, so each query
has exactly one right answer); every 6th becomes a query whose name has at least
3 letters. Deterministic. Run: python tests/data/make_known_items.py [PYPI_TSV]
"""

from __future__ import annotations

import csv
import math
import random
import re
import sys
from collections import Counter
from pathlib import Path

import orjson

SRC = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/.library/env/packages/pypi.tsv")
OUT = Path(__file__).with_name("known-items")
N = 3000
QUERY_EVERY = 6
KEYWORDS = 3
SEED = 17
STOPWORDS = set(
    [
        "the",
        "and",
        "for",
        "with",
        "from",
        "that",
        "this",
        "into",
        "your",
        "you",
        "are",
        "was",
        "were",
        "its",
        "it's",
        "not",
        "but",
        "can",
        "all",
        "any",
        "via",
        "using",
        "use",
        "based",
        "has",
        "have",
        "more",
        "than",
        "other",
        "some",
        "such",
        "which",
        "what",
        "when",
        "will",
        "also",
        "just",
        "only",
        "one",
        "two",
        "over",
    ]
)


def main() -> None:
    rows = []
    with open(SRC, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            summary = " ".join((row["summary"] or "").split())
            if len(summary.split()) >= 5 and row["month"][:4].isdigit():
                top = bool(row["rank_among_15000_most_downloaded"])
                rows.append((row["name"], summary, int(row["month"][:4]), top))
    counts = Counter(summary.lower() for _, summary, _, _ in rows)
    rows = [r for r in rows if counts[r[1].lower()] == 1]  # one right answer per query
    stride = len(rows) // N
    corpus = rows[::stride][:N]
    OUT.mkdir(exist_ok=True)
    queries = []
    with open(OUT / "corpus.jsonl", "wb") as out:
        for i, (name, summary, year, top) in enumerate(corpus):
            out.write(orjson.dumps({"id": name, "text": summary, "year": year, "top": top}) + b"\n")
            words = " ".join(re.split(r"[-_.]+", name)).strip()
            if i % QUERY_EVERY == 0 and sum(c.isalpha() for c in words) >= 3:
                queries.append((f"q{len(queries) + 1:04d}", words, name))
    with open(OUT / "queries.jsonl", "wb") as out:
        for qid, words, name in queries:
            out.write(orjson.dumps({"id": qid, "text": words, "target": name}) + b"\n")
    _write(OUT / "qrels.jsonl", [(qid, name) for qid, _, name in queries])
    # Simulated keyword queries for the same targets.
    words_of = {name: _words(summary) for name, summary, _, _ in corpus}
    df = Counter(w for words in words_of.values() for w in set(words))
    rng = random.Random(SEED)
    keyword_queries = []
    for _, _, name in queries:
        pool = list(dict.fromkeys(words_of[name]))
        weights = [math.log(len(corpus) / df[w]) for w in pool]
        drawn: list[str] = []
        while pool and len(drawn) < KEYWORDS:
            i = rng.choices(range(len(pool)), weights=weights)[0]
            drawn.append(pool.pop(i))
            weights.pop(i)
        if len(drawn) >= 2:
            keyword_queries.append((f"k{len(keyword_queries) + 1:04d}", " ".join(drawn), name))
    with open(OUT / "keyword-queries.jsonl", "wb") as out:
        for qid, words, name in keyword_queries:
            out.write(orjson.dumps({"id": qid, "text": words, "target": name}) + b"\n")
    _write(OUT / "keyword-qrels.jsonl", [(qid, name) for qid, _, name in keyword_queries])
    print(f"{len(corpus)} documents, {len(queries)} + {len(keyword_queries)} queries → {OUT}", file=sys.stderr)


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) >= 3 and w not in STOPWORDS]


def _write(path: Path, pairs: list[tuple[str, str]]) -> None:
    with open(path, "wb") as out:
        for qid, name in pairs:
            out.write(orjson.dumps({"query_id": qid, "doc_id": name, "relevance": 1}) + b"\n")


if __name__ == "__main__":
    main()
