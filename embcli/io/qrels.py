"""Relevance judgements (qrels) for ``embcli eval``: JSONL, TREC or BEIR's TSV, found by content.

- JSONL: ``{"query_id": "q1", "doc_id": "d7", "relevance": 2}`` per line (ir_datasets' names;
  ids are strings or integers, relevance an integer).
- TREC: ``q1 0 d7 2`` per line: query id, an unused iteration column, document id, relevance,
  separated by blanks (trec_eval's format).
- TSV with a header row ``query-id<TAB>corpus-id<TAB>score`` (BEIR's ``qrels/*.tsv``).

The first line that is not blank decides: ``{`` is JSONL, a tab-separated header naming a query
id column is TSV, anything else TREC. Ids are compared as text (``id_key``): the integer id 7
and the TREC word ``7`` are the same id. Compressed files are read as they are everywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import orjson

from embcli.errors import InputError
from embcli.io.streams import Source, at_line

QUERY_HEADERS = ("query-id", "query_id", "qid")


@dataclass(frozen=True, slots=True)
class Judgement:
    query: str  # id_key of the query id
    doc: str  # id_key of the document id
    relevance: int
    line: int  # where it is in its file, for messages


@dataclass
class Qrels:
    source: str  # the file's name, for messages
    format: str  # jsonl, trec or tsv
    judgements: list[Judgement]

    def by_query(self) -> dict[str, dict[str, int]]:
        """query -> {doc: relevance}, in file order."""
        out: dict[str, dict[str, int]] = {}
        for j in self.judgements:
            out.setdefault(j.query, {})[j.doc] = j.relevance
        return out


def id_key(value: object) -> str | None:
    """An id as text, so ids from JSON (strings, integers) and from TREC words compare; None if not an id."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    return str(value)


def read_qrels(path: str) -> Qrels:
    """Every judgement in ``path`` ('-': stdin), checked; bad lines and an empty file are InputError."""
    with Source(path) as src:
        name = src.name
        lines = list(_lines(src))  # judgements are small: thousands of lines, read whole
        first = next(((n, text) for n, text in lines if text.strip()), None)
        if first is None:
            raise InputError(f"no relevance judgements in {name}", hint=_FORMATS)
        fmt = _detect(first[1])
        judgements: list[Judgement] = []
        seen: dict[tuple[str, str], int] = {}
        for n, text in lines:
            if not text.strip():
                continue
            if fmt == "tsv" and n == first[0]:
                continue  # the header row
            j = _parse(fmt, text, name, n)
            if (before := seen.get((j.query, j.doc))) is not None:
                raise InputError(
                    f"query {j.query!r} judges document {j.doc!r} twice (first at line {before}), {at_line(name, n)}"
                )
            seen[(j.query, j.doc)] = n
            judgements.append(j)
    if not judgements:
        raise InputError(f"no relevance judgements in {name}", hint=_FORMATS)
    return Qrels(name, fmt, judgements)


_FORMATS = (
    'qrels are JSONL {"query_id": ..., "doc_id": ..., "relevance": N}, TREC lines "QID 0 DOCID REL", '
    "or BEIR's TSV with a query-id/corpus-id/score header"
)


def _lines(src: Source) -> Iterator[tuple[int, str]]:
    n = 0
    while line := src.readline():
        n += 1
        try:
            yield n, bytes(line).decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as e:
            raise InputError(f"invalid UTF-8 at byte {e.start}, {at_line(src.name, n)}") from None


def _detect(line: str) -> str:
    text = line.lstrip()
    if text.startswith("{"):
        return "jsonl"
    cells = line.split("\t")
    if len(cells) == 3 and cells[0].strip().lower() in QUERY_HEADERS:
        return "tsv"
    return "trec"


def _parse(fmt: str, text: str, name: str, n: int) -> Judgement:
    where = at_line(name, n)
    if fmt == "jsonl":
        try:
            obj = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            raise InputError(f"invalid JSON ({str(e).split(': line ')[0]}), {where}", hint=_FORMATS) from None
        if not isinstance(obj, dict):
            raise InputError(f"expected a JSON object, {where}", hint=_FORMATS)
        for key in ("query_id", "doc_id", "relevance"):
            if key not in obj:
                raise InputError(f"judgement has no {key!r} field, {where}", hint=_FORMATS)
        query, doc, rel = obj["query_id"], obj["doc_id"], obj["relevance"]
    else:
        cells = text.split("\t") if fmt == "tsv" else text.split()
        want = 3 if fmt == "tsv" else 4
        if len(cells) != want:
            shape = "QUERY-ID<TAB>CORPUS-ID<TAB>SCORE" if fmt == "tsv" else "QID ITER DOCID REL"
            raise InputError(f"expected {want} fields ({shape}), got {len(cells)}, {where}", hint=_FORMATS)
        query, doc, rel = (cells[0], cells[1], cells[2]) if fmt == "tsv" else (cells[0], cells[2], cells[3])
        query, doc = query.strip(), doc.strip()
        try:
            rel = int(rel)
        except ValueError:
            raise InputError(f"relevance {rel.strip()!r} is not an integer, {where}") from None
        if not query or not doc:
            raise InputError(f"empty id, {where}")
    q, d = id_key(query), id_key(doc)
    if q is None or d is None:
        raise InputError(f"query_id and doc_id must be strings or integers, {where}")
    if isinstance(rel, bool) or not isinstance(rel, int):
        raise InputError(f"relevance must be an integer, got {rel!r}, {where}")
    return Judgement(q, d, rel, n)
