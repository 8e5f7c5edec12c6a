"""Hits grouped by a payload field (``search --group-by parent``): each document once, with its best chunk.

A group's score fuses the scores of its hits among the candidates: ``max`` (the best chunk's
score, the default: a document is as relevant as its most relevant passage) or ``sum`` (the sum
of its ``top`` best chunks' scores: documents matching in several places rise). Candidates are
over-fetched (GROUP_FETCH hits per group wanted), and fetched again four times deeper for the
queries that found fewer than ``k`` groups while the index had more to give. ``max`` is exact
over the candidates (a group's best hit is ranked where its group is); ``sum`` adds up the
group's hits among the candidates, so a group's deeper chunks may be missing from its sum.

A hit whose payload lacks the field is grouped by its id (an unchunked document in a chunked
index is its own parent).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import orjson

from embcli.choices import GROUP_FUSIONS
from embcli.errors import UsageError

# search.query.Hit (id, score, rank, payload, group_hits): not imported, query imports this module.
Hit = Any

GROUP_FETCH = 8  # candidates per group wanted, at first
GROUP_GROWTH = 4  # how much deeper a short query looks next time


def check_grouping(field: str | None, fusion: str, top: int) -> None:
    if field is not None and not field:
        raise UsageError("--group-by needs a field name")
    if fusion not in GROUP_FUSIONS:
        raise UsageError(f"unknown --group-fusion {fusion!r}; choose from {', '.join(GROUP_FUSIONS)}")
    if top < 1:
        raise UsageError(f"--group-top must be at least 1, got {top}")


def grouped_search(
    search: Callable[[Sequence[int], int], list[list[Hit]]],
    n_queries: int,
    k: int,
    field: str,
    *,
    fusion: str = "max",
    top: int = 3,
    total: int,
) -> list[list[Hit]]:
    """Top-``k`` groups per query. ``search(queries, n)`` gives the top-``n`` hits of those query numbers.

    ``total`` is the most hits any query can have (the items indexed): a query that got fewer
    hits than it asked for, or asked for ``total``, has seen every candidate.
    """
    check_grouping(field, fusion, top)
    out: list[list[Hit]] = [[] for _ in range(n_queries)]
    todo = list(range(n_queries))
    fetch = min(max(k * GROUP_FETCH, 32), max(total, 1))
    while todo:
        short = []
        for q, hits in zip(todo, search(todo, fetch), strict=True):
            out[q] = group_hits(hits, k, field, fusion=fusion, top=top)
            if len(out[q]) < k and len(hits) >= fetch and fetch < total:
                short.append(q)
        todo, fetch = short, min(fetch * GROUP_GROWTH, total)
    return out


def group_hits(hits: Sequence[Hit], k: int, field: str, *, fusion: str = "max", top: int = 3) -> list[Hit]:
    """The best ``k`` groups of one query's hits (best first): each its best hit, scored by ``fusion``."""
    groups: dict[bytes, list[Hit]] = {}
    for hit in hits:  # best first, so each group's list is too
        groups.setdefault(group_key(hit, field), []).append(hit)
    scored = []
    for members in groups.values():
        best = members[0]
        score = best.score if fusion == "max" else sum(h.score for h in members[:top])
        scored.append((score, best.rank, best, len(members)))
    scored.sort(key=lambda g: (-g[0], g[1]))
    return [
        replace(best, score=score, rank=rank, group_hits=n)
        for rank, (score, _, best, n) in enumerate(scored[:k], start=1)
    ]


def group_key(hit: Hit, field: str) -> bytes:
    """What a hit is grouped by: its payload's ``field`` (any JSON value), else its own id."""
    value = hit.payload[field] if field != "id" and field in hit.payload else hit.id
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
