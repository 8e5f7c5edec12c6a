"""Retrieval metrics for one ranked list against graded judgements, as trec_eval defines them.

Pure functions over ids: no index, no model. ``embcli eval`` and ``embcli.evaluate`` score
every query with ``score_query`` and average with ``mean_scores``.

Definitions (trec_eval 9 / pytrec_eval; ir-measures names in brackets), with ``rel(d)`` the
judged relevance of document ``d`` (unjudged: 0) and a document relevant when ``rel(d) >= 1``
(trec_eval's default relevance level):

- recall@k [R@k]: relevant documents in the top k / all relevant documents judged for the query.
- nDCG@k [nDCG@k]: DCG@k / IDCG@k with DCG@k = sum over ranks r <= k of gain(r) / log2(r + 1)
  and *linear* gains, gain = rel (trec_eval's ``ndcg_cut``; not the exponential 2^rel - 1 of
  Burges et al.). Negative relevance gains nothing. IDCG@k is the DCG@k of all judged
  documents sorted by relevance, whether retrieved or not.
- MRR@k [RR@k]: 1 / the rank of the first relevant document within the top k, else 0
  (trec_eval's ``recip_rank`` on a run cut at k).
- MAP [AP]: the sum of precision@r over the ranks r holding a relevant document, divided by
  all relevant documents judged (not only those retrieved): trec_eval's ``map`` over the ranked
  list as given, so the list's depth bounds it (retrieve deeper for a deeper MAP).

A query judged but with no relevant document scores 0 on every metric and counts in the
means, as in trec_eval. Ties: the list is scored in the order given (the ranks ``search``
shows); trec_eval re-sorts tied scores by document id instead. A document that appears twice
in a list counts at its first rank only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

RELEVANT = 1  # trec_eval's default relevance level: rel >= 1 is relevant


def metric_names(cutoffs: Sequence[int]) -> list[str]:
    """The metrics' names in report order: recall@k for each cutoff, then nDCG@k, MRR@k, then map."""
    names = [f"recall@{k}" for k in cutoffs]
    names += [f"ndcg@{k}" for k in cutoffs]
    names += [f"mrr@{k}" for k in cutoffs]
    return [*names, "map"]


def score_query(ranked: Sequence[str], judged: Mapping[str, int], cutoffs: Sequence[int]) -> dict[str, float]:
    """Every metric for one query: ``ranked`` document ids best first, ``judged`` id -> relevance."""
    seen: set[str] = set()
    rels: list[int] = []  # relevance at each rank (1-based rank = index + 1), duplicates dropped
    for doc in ranked:
        if doc not in seen:
            seen.add(doc)
            rels.append(judged.get(doc, 0))
    n_relevant = sum(1 for r in judged.values() if r >= RELEVANT)
    ideal = sorted((r for r in judged.values() if r > 0), reverse=True)
    out: dict[str, float] = {}
    for k in cutoffs:
        top = rels[:k]
        found = sum(1 for r in top if r >= RELEVANT)
        out[f"recall@{k}"] = found / n_relevant if n_relevant else 0.0
    for k in cutoffs:
        idcg = _dcg(ideal[:k])
        out[f"ndcg@{k}"] = _dcg(rels[:k]) / idcg if idcg > 0 else 0.0
    for k in cutoffs:
        first = next((rank for rank, r in enumerate(rels[:k], start=1) if r >= RELEVANT), None)
        out[f"mrr@{k}"] = 1.0 / first if first else 0.0
    precision_sum, found = 0.0, 0
    for rank, r in enumerate(rels, start=1):
        if r >= RELEVANT:
            found += 1
            precision_sum += found / rank
    out["map"] = precision_sum / n_relevant if n_relevant else 0.0
    return out


def _dcg(gains: Iterable[int]) -> float:
    return sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, start=1) if g > 0)


def mean_scores(per_query: Sequence[Mapping[str, float]], names: Sequence[str]) -> dict[str, float]:
    """The arithmetic mean of each metric over the scored queries (0.0 for none)."""
    n = len(per_query)
    return {name: (math.fsum(q[name] for q in per_query) / n if n else 0.0) for name in names}
