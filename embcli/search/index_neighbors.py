"""The k nearest indexed items of many query vectors by cosine, with each query's own item left out.

What ``detect-anomalies --index`` scores with: records against an index built once by
``embcli index`` (one index or a sharded one), instead of a throwaway graph of the input.
It mirrors ``neighbors.search``: exact (numpy, blocked, the same arithmetic) while the index
holds at most EXACT_LIMIT items, the index's HNSW graph above, queried in batches on every
core.

A query that is itself in the index must not count itself as its own neighbour. Which
indexed item is "itself" is decided per query (``SelfMatch``):

- by id: the item stored under the query record's id (the index's id ↔ key map), wherever
  its vector now lies;
- by vector: one item whose stored float vector is bit-for-bit the query's (for records
  without ids, such as NPY rows). Identical copies are indistinguishable, so leaving out
  any one of them leaves the same distances as leaving out the query itself;
- none: nothing is left out (new records scored against a reference index).

Every query asks the index for one neighbour more than ``k`` when it may hold itself and
drops its own match, else the farthest: k neighbours remain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embcli.choices import SELF_MATCHES
from embcli.errors import IncompatibleError, UsageError
from embcli.runtime import provenance
from embcli.search.index import IndexReader, _id_key
from embcli.search.neighbors import BLOCK, EXACT_LIMIT, QUERY_BATCH, unit

SAME = 1e-4  # a neighbour this close in cosine is checked for an identical stored vector
# Candidates per wanted neighbour from a graph of compact codes, re-ranked by float cosine: by an int8
# graph's own top 7, a third of 2,000 real vectors got other than their exact 7 (test_anomaly_index).
RERANK_FETCH = 4


@dataclass
class SelfMatch:
    """Per query, how its own item is found: ``keys[i]`` is (shard, key) by id, else by vector if ``by_vector[i]``."""

    shards: np.ndarray  # (n,) int64, -1: no item of this id
    keys: np.ndarray  # (n,) int64
    by_vector: np.ndarray  # (n,) bool

    @classmethod
    def nothing(cls, n: int) -> SelfMatch:
        return cls(np.full(n, -1, np.int64), np.full(n, -1, np.int64), np.zeros(n, bool))

    @property
    def any(self) -> bool:
        return bool((self.shards >= 0).any() or self.by_vector.any())


def self_match(readers: Sequence[IndexReader], ids: Sequence[object | None], how: str) -> SelfMatch:
    """Each query's own item: ``how`` is auto (by id when the query has one, else by vector), id, vector or none."""
    if how not in SELF_MATCHES:
        raise UsageError(f"unknown self match {how!r}; choose from {', '.join(SELF_MATCHES)}")
    n = len(ids)
    found = SelfMatch.nothing(n)
    if how == "none":
        return found
    has_id = np.array([i is not None for i in ids], dtype=bool)
    if how in ("auto", "vector"):
        found.by_vector = ~has_id if how == "auto" else np.ones(n, bool)
    if how in ("auto", "id"):
        texts = {_id_key(i): row for row, i in enumerate(ids) if i is not None}
        names = list(texts)
        for s, reader in enumerate(readers):
            for start in range(0, len(names), 500):
                part = names[start : start + 500]
                q = f"SELECT id, key FROM items WHERE id IN ({','.join('?' * len(part))})"
                for id_text, key in reader.db.execute(q, part):
                    row = texts[id_text]
                    found.shards[row], found.keys[row] = s, key
    return found


def check_vectors(readers: Sequence[IndexReader], dims: int, made_by: dict | None, where: str) -> None:
    """Vectors scored against an index must have its width and come from its model and options (exit 4)."""
    index, known = readers[0], readers[0].provenance
    if dims != index.dims:
        raise IncompatibleError(
            f"the vectors have {dims} dimensions ({_describe(made_by)}), the index {index.dims} "
            f"({_describe(known)}), {where}"
        )
    if made_by is not None and known is not None and provenance.differs_from_index(made_by, known):
        raise IncompatibleError(
            f"vectors from another model or options ({_describe(made_by)}) than the index "
            f"({_describe(known)}), {where}",
            hint="score them against an index of their own model",
        )


def _describe(prov: object) -> str:
    if not isinstance(prov, dict):
        return "no recorded model"
    extra = ", ".join(f"{k} {prov[k]!r}" for k in ("prompt", "pooling") if prov.get(k))
    return f"{prov.get('model')} {prov.get('dims')}-d" + (f", {extra}" if extra else "")


def neighbours(
    readers: Sequence[IndexReader],
    queries: np.ndarray,
    k: int,
    own: SelfMatch | None = None,
    *,
    exact: bool | None = None,
    expansion_search: int | None = None,
) -> np.ndarray:
    """Cosine similarities of each query's k nearest indexed items, best first, its own item left out.

    ``exact`` None: exact while the index holds at most EXACT_LIMIT items (as ``neighbors.search``).
    Fewer than k items (left) in the index: as many as there are.
    """
    if not readers:
        raise IncompatibleError("no index to score against")
    dims = readers[0].dims
    if queries.ndim != 2 or queries.shape[1] != dims:
        raise IncompatibleError(f"vectors have {queries.shape[-1]} dimensions, the index {dims}")
    own = own or SelfMatch.nothing(len(queries))
    total = sum(r.count for r in readers)
    extra = 1 if own.any else 0
    want = min(k + extra, total)
    keep = min(k, total - extra)
    if keep < 1 or not len(queries):
        return np.zeros((len(queries), 0), np.float32)
    exact = total <= EXACT_LIMIT if exact is None else exact
    out = np.empty((len(queries), keep), np.float32)
    step = BLOCK if exact else QUERY_BATCH
    ref = _all_vectors(readers) if exact else None
    for start in range(0, len(queries), step):
        q = np.ascontiguousarray(queries[start : start + step], dtype=np.float32)
        if exact:
            sims, shards, keys = _exact(ref, unit(q), want)
        else:
            sims, shards, keys = _graph(readers, q, want, expansion_search)
        part = slice(start, start + len(q))
        if extra:
            sims = _drop_own(readers, q, sims, shards, keys, own.shards[part], own.keys[part], own.by_vector[part])
        out[part] = sims[:, :keep]
    return out


@dataclass
class _Stored:
    """Every live item of the indexes, as unit float vectors in (shard, key) order."""

    vectors: np.ndarray
    shards: np.ndarray
    keys: np.ndarray


def _all_vectors(readers: Sequence[IndexReader]) -> _Stored:
    vectors, shards, keys = [], [], []
    for s, reader in enumerate(readers):
        live = np.sort(reader.matching_keys(None))
        if len(live):
            vectors.append(reader.stored_vectors(live))
            shards.append(np.full(len(live), s, np.int64))
            keys.append(live.astype(np.int64))
    return _Stored(unit(np.vstack(vectors)), np.concatenate(shards), np.concatenate(keys))


def _exact(ref: _Stored, q: np.ndarray, want: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top ``want`` by the arithmetic of ``neighbors._exact``: one float32 product, ties by position."""
    s = q @ ref.vectors.T
    if want < s.shape[1]:
        top = np.argpartition(-s, want - 1, axis=1)[:, :want]
    else:
        top = np.tile(np.arange(want), (len(s), 1))
    top_s = np.take_along_axis(s, top, axis=1)
    order = np.lexsort((top, -top_s), axis=1)
    top = np.take_along_axis(top, order, axis=1)
    return np.take_along_axis(top_s, order, axis=1), ref.shards[top], ref.keys[top]


def _graph(
    readers: Sequence[IndexReader], q: np.ndarray, want: int, ef: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top ``want`` from every shard's graph, merged by similarity (ties: shard, then key).

    A graph of compact codes (or another metric) ranks by its own distance: it gives RERANK_FETCH
    times the candidates, re-ranked by the float cosine of the stored vectors.
    """
    sims, shards, keys = [], [], []
    for s, reader in enumerate(readers):
        if reader.count == 0:
            continue
        exact_sims = reader.dtype == "f32" and reader.metric == "cos"
        n = min(want * (1 if exact_sims else RERANK_FETCH), reader.count)
        coded = np.packbits(q > 0, axis=1) if reader.dtype == "b1" else q
        default = reader.index.expansion_search
        reader.index.expansion_search = max(ef or default, 2 * n)
        try:
            found = reader.index.search(coded, n, threads=0)
        finally:
            reader.index.expansion_search = default
        got = np.atleast_2d(found.keys).astype(np.int64)
        counts = np.atleast_1d(found.counts)
        missing = np.arange(n)[None, :] >= counts[:, None]  # a graph may return fewer than asked
        if exact_sims:
            sim = 1 - np.atleast_2d(found.distances).astype(np.float32)
        else:  # compact codes or another metric: cosine of the stored (float) vectors
            sim = _cosines(reader, q, np.where(missing, 0, got))
        sim[missing] = -np.inf
        sims.append(sim)
        shards.append(np.full(sim.shape, s, np.int64))
        keys.append(got)
    sim, shard, key = np.hstack(sims), np.hstack(shards), np.hstack(keys)
    order = np.lexsort((key, shard, -sim), axis=1)[:, :want]
    return (np.take_along_axis(a, order, axis=1) for a in (sim, shard, key))


def _cosines(reader: IndexReader, q: np.ndarray, keys: np.ndarray) -> np.ndarray:
    stored = unit(reader.stored_vectors(keys.reshape(-1).astype(np.uint64))).reshape(*keys.shape, -1)
    return np.einsum("ij,ikj->ik", unit(q), stored).astype(np.float32)


def _drop_own(
    readers: Sequence[IndexReader],
    q: np.ndarray,
    sims: np.ndarray,
    shards: np.ndarray,
    keys: np.ndarray,
    own_shard: np.ndarray,
    own_key: np.ndarray,
    by_vector: np.ndarray,
) -> np.ndarray:
    """``sims`` less one column per row: the query's own item where found, else the last (farthest)."""
    drop = (shards == own_shard[:, None]) & (keys == own_key[:, None]) & (own_shard[:, None] >= 0)
    pending = by_vector & ~drop.any(axis=1)
    for j in range(sims.shape[1]):  # best first: the first identical item is the one left out
        rows = np.flatnonzero(pending & (sims[:, j] >= 1 - SAME))  # only near-identical ones are compared
        if not len(rows):
            continue
        same = np.all(_stored(readers, shards[rows, j], keys[rows, j]) == q[rows], axis=1)
        drop[rows[same], j] = True
        pending[rows[same]] = False
    first = np.where(drop.any(axis=1), drop.argmax(axis=1), sims.shape[1] - 1)
    mask = np.ones(sims.shape, bool)
    mask[np.arange(len(sims)), first] = False
    return sims[mask].reshape(len(sims), -1)


def _stored(readers: Sequence[IndexReader], shards: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """The stored float vectors of (shard, key) pairs, in their order."""
    out = np.empty((len(keys), readers[0].dims), np.float32)
    for s in np.unique(shards):
        rows = np.flatnonzero(shards == s)
        out[rows] = readers[s].stored_vectors(keys[rows].astype(np.uint64))
    return out
