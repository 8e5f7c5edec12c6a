"""Build the retrieval set for ``embcli eval``'s tests: package-name queries over packages-2000.jsonl.

Known-item search on real data: the query is a package's name as a person would type it
(``abstract-turtle`` -> "abstract turtle"), the target its summary in tests/data/packages-2000.jsonl.
Judgements are graded: relevance 2 for the package itself, 1 for the other packages of its family
(names sharing its first word, e.g. the other ``django-*`` packages) when the family is small
(2 to 8 packages in the file). Every 10th package whose name has a letter is a query (200).

Writes packages-queries.jsonl ({"id": "q001", "text": ...}) and packages-qrels.trec
("q001 0 abstract-turtle 2", trec_eval's format). Run: python tests/data/make_eval.py
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import orjson

HERE = Path(__file__).parent
DOCS = HERE / "packages-2000.jsonl"
QUERIES = HERE / "packages-queries.jsonl"
QRELS = HERE / "packages-qrels.trec"
STRIDE = 10
FAMILY = (2, 8)  # a first word shared by this many packages is a family; more is too broad a topic


def words(name: str) -> list[str]:
    return [w for w in re.split(r"[-_.]+", name.lower()) if w]


def main() -> None:
    names = [orjson.loads(line)["id"] for line in DOCS.read_bytes().splitlines()]
    families: dict[str, list[str]] = defaultdict(list)
    for name in names:
        if len(words(name)) > 1:  # a one-word name has no family word
            families[words(name)[0]].append(name)
    with open(QUERIES, "wb") as q, open(QRELS, "w", encoding="utf-8") as r:
        asked = [name for name in names if re.search("[a-z]", name)]  # "0-0-1" is nobody's query
        for n, name in enumerate(asked[::STRIDE][:200], start=1):
            qid = f"q{n:03d}"
            q.write(orjson.dumps({"id": qid, "text": " ".join(words(name))}) + b"\n")
            r.write(f"{qid} 0 {name} 2\n")
            family = families.get(words(name)[0], []) if len(words(name)) > 1 else []
            if FAMILY[0] <= len(family) <= FAMILY[1]:
                for other in family:
                    if other != name:
                        r.write(f"{qid} 0 {other} 1\n")


if __name__ == "__main__":
    main()
