"""Fusing a dense and a lexical (BM25) ranking into one (``search --hybrid``).

Both inputs are best-first lists of (place, score) for one query, each already
merged over every searched index or shard (so fusion is global: see the README's
Hybrid search for why not per shard). Ties in the fused score go to the lower
place (shard, then key), so the result is the same every run.

- ``rrf`` (default): reciprocal rank fusion, score = sum over the lists a hit is in
  of 1 / (K + rank), rank 1-based, K = 60 as in Cormack, Clarke and Büttcher,
  "Reciprocal rank fusion outperforms Condorcet and individual rank learning
  methods" (SIGIR 2009). Only ranks count, so BM25's unbounded scores and cosine
  similarities need no common scale.
- ``linear``: each list's scores min-max normalised to [0, 1] over its own
  candidates (a list whose scores are all equal gives each 1), then
  score = alpha · dense + (1 - alpha) · lexical, a hit missing from a list taking 0
  there. ``alpha`` 0.5 by default: equal weight, no tuning to any data set.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from embcli.errors import UsageError

RRF_K = 60  # Cormack et al. 2009
ALPHA = 0.5  # linear fusion: the dense side's weight
# Candidates taken from each side before fusing: a hit ranked below this on both sides cannot be fused
# into the top k anyway for k ≤ DEPTH, and 100 is the depth RRF's authors and most later work fuse.
DEPTH = 100


@dataclass
class Fused:
    place: Hashable
    score: float
    dense_rank: int | None
    lexical_rank: int | None


def fuse(
    dense: Sequence[tuple[Hashable, float]],
    lexical: Sequence[tuple[Hashable, float]],
    k: int,
    *,
    method: str = "rrf",
    rrf_k: float = RRF_K,
    alpha: float = ALPHA,
) -> list[Fused]:
    """The top ``k`` of the fused ranking, best first, each with its rank on either side (None: not there)."""
    if rrf_k < 0:
        raise UsageError(f"the RRF constant must be at least 0, not {rrf_k}")
    if not 0.0 <= alpha <= 1.0:
        raise UsageError(f"--alpha must be between 0 and 1, not {alpha}")
    d_rank = {place: r for r, (place, _) in enumerate(dense, start=1)}
    l_rank = {place: r for r, (place, _) in enumerate(lexical, start=1)}
    places = list(d_rank) + [p for p in l_rank if p not in d_rank]
    if method == "rrf":
        scores = {
            p: (1.0 / (rrf_k + d_rank[p]) if p in d_rank else 0.0) + (1.0 / (rrf_k + l_rank[p]) if p in l_rank else 0.0)
            for p in places
        }
    elif method == "linear":
        d_norm, l_norm = _min_max(dense), _min_max(lexical)
        scores = {p: alpha * d_norm.get(p, 0.0) + (1.0 - alpha) * l_norm.get(p, 0.0) for p in places}
    else:
        raise UsageError(f"unknown fusion {method!r}; choose rrf or linear")
    ranked = sorted(places, key=lambda p: (-scores[p], p))[:k]
    return [Fused(p, scores[p], d_rank.get(p), l_rank.get(p)) for p in ranked]


def _min_max(hits: Sequence[tuple[Hashable, float]]) -> dict[Hashable, float]:
    if not hits:
        return {}
    lo, hi = min(s for _, s in hits), max(s for _, s in hits)
    if hi == lo:
        return {p: 1.0 for p, _ in hits}
    return {p: (s - lo) / (hi - lo) for p, s in hits}
