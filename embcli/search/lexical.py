"""The full-text side of an index: an SQLite FTS5 table beside the payloads, ranked by BM25.

The table lives in the same metadata database as the payloads (``meta.<gen>.sqlite``),
so it is written, fsynced and published with the generation that names it: a crash
leaves the old database with its full-text index, or the new one with its own.

    CREATE VIRTUAL TABLE fts USING fts5(text, tokenize='porter unicode61 remove_diacritics 2')

Row ``rowid`` is the record's key in ``items``; the text is the record's text field
(``index --text-field``) as it came in, even with ``--no-store-text`` (FTS5 keeps its
own copy: a contentless table cannot delete a row without being given its old text
back, and with --no-store-text nothing has it). Records without a text get no row.

Tokenizers (``index --fts-tokenizer``, recorded in the manifest):

- ``porter`` (default): Unicode 6.1 word splitting, case folding and diacritics
  removed (``remove_diacritics 2`` also folds letters with several marks), then the
  Porter stemmer, so "parsing", "parser" and "parses" meet at "pars". English only:
  it leaves words it does not recognise as they are.
- ``unicode61``: the same without stemming, for text that is not English.

Ranking is FTS5's ``bm25()`` with its constants k1 = 1.2 and b = 0.75 (Robertson's
usual ones); scores are given negated so that higher is better, as dense scores are.

Query text is never FTS5 syntax unless asked (``raw``): it is split into words and
each word is quoted as a string (the tokenizer splits it again inside the quotes,
so "state-of-the-art" is the phrase "state of the art"), joined by OR, as BM25
retrieval expects. Quotes, AND/OR/NOT, NEAR, ``*``, ``^``, ``:`` and parentheses in
a user's text are only text.
"""

from __future__ import annotations

import re
import sqlite3

from embcli.choices import FTS_TOKENIZERS
from embcli.errors import IncompatibleError, UsageError
from embcli.search.filters import compile_where

TABLE = "fts"
TOKENIZE = {
    "porter": "porter unicode61 remove_diacritics 2",
    "unicode61": "unicode61 remove_diacritics 2",
}
BM25 = {"k1": 1.2, "b": 0.75}  # FTS5's built-in constants, recorded in the manifest for the reader's sake
# A word as FTS5's unicode61 sees one, near enough: letters and digits. Each is quoted anyway,
# so the exact split only decides which words are OR-ed, never what reaches the FTS5 parser.
_WORD = re.compile(r"[^\W_]+")


def fts_manifest(tokenizer: str, field: str) -> dict:
    """What the manifest records of an index's full-text index."""
    if tokenizer not in FTS_TOKENIZERS:
        raise UsageError(f"unknown full-text tokenizer {tokenizer!r}; choose from {', '.join(FTS_TOKENIZERS)}")
    return {"tokenizer": tokenizer, "tokenize": TOKENIZE[tokenizer], "field": field, "ranking": {"bm25": BM25}}


def check_fts_manifest(fts: object) -> bool:
    """Whether a manifest's ``fts`` entry is well formed (None: the index has none).

    A tokenizer this embcli does not know (a later one's) is fine: the table carries its own
    tokenizer, and queries are tokenized by it.
    """
    return fts is None or (
        isinstance(fts, dict) and isinstance(fts.get("tokenizer"), str) and isinstance(fts.get("field"), str)
    )


def create_table(db: sqlite3.Connection, fts: dict) -> None:
    db.execute(f"CREATE VIRTUAL TABLE {TABLE} USING fts5(text, tokenize='{TOKENIZE[fts['tokenizer']]}')")


def check_table(db: sqlite3.Connection) -> None:
    """Opens the table now (a missing or broken one is an sqlite3.Error here, not at the first query)."""
    db.execute(f"SELECT rowid FROM {TABLE} LIMIT 0").fetchall()


def text_of(payload: dict, field: str) -> str | None:
    """The text a record contributes to the full-text index: its text field, when it is a non-blank string."""
    text = payload.get(field)
    return text if isinstance(text, str) and text.strip() else None


def add(db: sqlite3.Connection, keys: list[int], payloads: list[dict], field: str) -> None:
    db.executemany(
        f"INSERT INTO {TABLE} (rowid, text) VALUES (?, ?)",
        [(k, t) for k, p in zip(keys, payloads, strict=True) if (t := text_of(p, field)) is not None],
    )


def remove(db: sqlite3.Connection, keys: list[int]) -> None:
    db.executemany(f"DELETE FROM {TABLE} WHERE rowid = ?", [(k,) for k in keys])


def optimize(db: sqlite3.Connection) -> None:
    """Merge the table's segments into one: fewer b-trees to read per query, and a smaller file."""
    db.execute(f"INSERT INTO {TABLE}({TABLE}) VALUES ('optimize')")


def match_expression(text: str) -> str | None:
    """A user's text as a safe FTS5 query: its distinct words, each quoted, OR-ed; None if it has none."""
    words = dict.fromkeys(w.lower() for w in _WORD.findall(text))
    return " OR ".join(f'"{w}"' for w in words) or None


def search(
    db: sqlite3.Connection, expression: str, k: int, where: str | None = None, *, where_from: str = ""
) -> list[tuple[int, float]]:
    """Top-``k`` (key, score) by BM25 for an FTS5 ``expression``, best first; score = -bm25 (higher is better).

    ``where`` filters on payload fields, as dense search does, joined to the items table.
    Ties go to the lower key, so results are the same every run.
    """
    if where:
        cond, params = compile_where(where)
        sql = (
            f"SELECT {TABLE}.rowid, bm25({TABLE}) AS s FROM {TABLE} JOIN items ON items.key = {TABLE}.rowid "
            f"WHERE {TABLE} MATCH ? AND ({cond}) ORDER BY s, {TABLE}.rowid LIMIT ?"
        )
        args: list[object] = [expression, *params, k]
    else:
        sql = f"SELECT rowid, bm25({TABLE}) AS s FROM {TABLE} WHERE {TABLE} MATCH ? ORDER BY s, rowid LIMIT ?"
        args = [expression, k]
    try:
        rows = db.execute(sql, args).fetchall()
    except sqlite3.OperationalError as e:
        if "fts5" in str(e) or "syntax" in str(e) or "no such column" in str(e):
            raise UsageError(f"full-text query {expression!r}: {e}") from None
        if where:
            raise UsageError(f"--where: {e}") from None
        raise
    except sqlite3.DatabaseError as e:
        raise IncompatibleError(f"index full-text table is unreadable ({e}){where_from}") from None
    return [(int(key), -float(score)) for key, score in rows]


def check_expression(expression: str) -> str | None:
    """Why ``expression`` is not a valid FTS5 query (``search --fts-syntax``), or None when it is."""
    db = sqlite3.connect(":memory:")
    try:
        db.execute(f"CREATE VIRTUAL TABLE {TABLE} USING fts5(text)")
        db.execute(f"SELECT rowid FROM {TABLE} WHERE {TABLE} MATCH ?", (expression,)).fetchall()
    except sqlite3.OperationalError as e:
        return str(e)
    finally:
        db.close()
    return None


def expression_for(text: str, raw: bool = False) -> str | None:
    """The FTS5 query for a user's text: its words quoted and OR-ed, or (``raw``) the text as FTS5 syntax."""
    if not raw:
        return match_expression(text)
    if why := check_expression(text):
        raise UsageError(f"not an FTS5 query ({why}), {text!r}")
    return text
