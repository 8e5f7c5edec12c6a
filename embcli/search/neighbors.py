"""Nearest neighbours by cosine: exact (numpy, blocked) for small sets, usearch HNSW above.

Every analysis command (cluster, classify, detect-anomalies, diff) finds neighbours here,
so they all scale the same way: exact and deterministic up to EXACT_LIMIT rows, HNSW beyond.
The graph holds each distinct vector once: real data repeats (of 100,000 PyPI summaries, 7,319
share their vector, up to 598 at once), and HNSW's pruning keeps one edge among equal vectors,
so a group of copies becomes a plateau that traps searches landing on it. Over distinct rows,
with each found row standing for its copies, the kNN anomaly scores of 100,000 real summaries
agree with exact search on 0.841 of the top 1% (0.516 with every copy in the graph) and the
largest score error falls from 0.841 to 0.368 (bench/anomaly_quality.py).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from embcli.choices import EXACT_SEARCH_LIMIT
from embcli.runtime.vectors import unit  # noqa: F401 - the analysis modules take it from here

EXACT_LIMIT = EXACT_SEARCH_LIMIT
BLOCK = 2048
QUERY_BATCH = 16_384  # queries handed to a graph at once
HASH_BLOCK = 16_384  # rows hashed at once when looking for copies (50 MB of temporaries at 384-d)


def search(
    ref: np.ndarray, queries: np.ndarray, k: int, *, exclude_self: bool = False, coarse: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(indices, cosine similarities) of each query's k nearest rows of ref, best first.

    ``exclude_self``: queries are ref itself, and a row is not its own neighbour.
    ``coarse`` (above EXACT_LIMIT): an int8 graph, 2.3x cheaper to build, whose 2k candidates
    are re-ranked by exact float32 cosines (recall@10 0.940 against 0.938 for the float graph,
    44k real vectors); detect-anomalies and aligned diff use it.
    Both inputs must be unit vectors.
    """
    k = min(k, len(ref) - (1 if exclude_self else 0))
    if k < 1:
        return np.zeros((len(queries), 0), np.int64), np.zeros((len(queries), 0), np.float32)
    if len(ref) <= EXACT_LIMIT:
        return _exact(ref, queries, k, exclude_self)
    graph = _coarse if coarse else _hnsw
    copies = _Copies.of(ref)
    if copies is None:  # every row distinct
        return graph(ref, queries, k, exclude_self)
    return copies.search(graph, queries, k, exclude_self)


Graph = Callable[[np.ndarray, np.ndarray, int, bool], tuple[np.ndarray, np.ndarray]]


class _Copies:
    """The distinct rows of a matrix (numbered by first occurrence) and the copies each one stands for."""

    def __init__(self, x: np.ndarray, first: np.ndarray, group: np.ndarray) -> None:
        self.distinct = np.ascontiguousarray(x[first])
        self.group = group  # the distinct vector of each row
        self.members = np.argsort(group, kind="stable")  # rows by distinct vector, ascending within one
        self.count = np.bincount(group, minlength=len(first))
        self.start = np.concatenate([[0], np.cumsum(self.count)[:-1]])

    @classmethod
    def of(cls, x: np.ndarray) -> _Copies | None:
        """None when every row is distinct."""
        first, inverse = _equal_rows(np.ascontiguousarray(x))
        if len(first) == len(x):
            return None
        order = np.argsort(first)
        rank = np.empty(len(first), np.int64)
        rank[order] = np.arange(len(first))
        return cls(x, first[order], rank[inverse])

    def search(self, graph: Graph, queries: np.ndarray, k: int, exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
        """Each query's k nearest rows: ``graph`` over the distinct vectors, each vector it finds expanded
        to its copies in row order. With ``exclude_self`` (the queries are the rows) each distinct vector
        is searched once for all its copies, and a row is left out of its own result."""
        extra = 1 if exclude_self else 0
        asked = self.distinct if exclude_self else queries
        want = min(k + extra, len(self.distinct))
        found, sims = graph(self.distinct, asked, want, False)
        idx, out, short = self._expand(found, sims, k + extra)
        if len(short):  # a graph may return fewer than asked: those queries exactly, over the distinct vectors
            found, sims = _exact(self.distinct, asked[short], want, False)
            idx[short], out[short], _ = self._expand(found, sims, k + extra)
        if exclude_self:  # per row: its vector's answer, less the row itself (else the farthest)
            idx, out = idx[self.group], out[self.group]
            own = idx == np.arange(len(idx))[:, None]
            drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
            keep = np.ones(idx.shape, bool)
            keep[np.arange(len(idx)), drop] = False
            idx, out = idx[keep].reshape(len(idx), k), out[keep].reshape(len(idx), k)
        return idx, out

    def _expand(self, found: np.ndarray, sims: np.ndarray, slots: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The first ``slots`` rows behind each query's distinct neighbours, best first; and the queries
        whose neighbours hold fewer rows than that."""
        idx = np.full((len(found), slots), -1, np.int64)
        out = np.full((len(found), slots), -np.inf, np.float32)
        filled = np.zeros(len(found), np.int64)
        for j in range(found.shape[1]):
            vec = found[:, j]
            valid = (vec >= 0) & (vec < len(self.distinct))
            vec = np.where(valid, vec, 0)
            take = np.where(valid, np.minimum(self.count[vec], slots - filled), 0)
            for t in range(slots):  # the t-th copy of this neighbour, where it still fits
                rows = np.flatnonzero(take > t)
                if not len(rows):
                    break
                idx[rows, filled[rows] + t] = self.members[self.start[vec[rows]] + t]
                out[rows, filled[rows] + t] = sims[rows, j]
            filled += take
        return idx, out, np.flatnonzero(filled < slots)


def _equal_rows(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first row of each distinct row of ``x`` and the distinct row of each row (``np.unique``'s
    index and inverse), from a 64-bit hash of each row's bytes: sorting the rows themselves would take
    two more copies of the matrix (2.9 GB at 1M x 384). Every row is then checked against the first
    row of its hash; a collision (never seen) falls back to sorting the rows."""
    words = x.view(np.uint32) if x.dtype.itemsize == 4 else None
    if words is not None:
        mult = np.random.default_rng(0).integers(1, 2**63, size=words.shape[1], dtype=np.uint64) * 2 + 1
        hashes = np.empty(len(x), np.uint64)
        for start in range(0, len(x), HASH_BLOCK):  # odd multipliers: rows one word apart never collide
            hashes[start : start + HASH_BLOCK] = (words[start : start + HASH_BLOCK] * mult).sum(axis=1)
        _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        inverse = inverse.ravel()
        if all(
            np.array_equal(x[start : start + HASH_BLOCK], x[first[inverse[start : start + HASH_BLOCK]]])
            for start in range(0, len(x), HASH_BLOCK)
        ):
            return first, inverse
    rows = x.view(np.dtype((np.void, x.dtype.itemsize * x.shape[1]))).ravel()
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    return first, inverse.ravel()


def _exact(ref: np.ndarray, queries: np.ndarray, k: int, exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
    idx = np.empty((len(queries), k), dtype=np.int64)
    sims = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), BLOCK):
        block = queries[start : start + BLOCK]
        if block.shape == ref.shape and np.shares_memory(block, ref):
            # numpy computes a @ a.T by syrk, rounded unlike the sgemm of every other block and of
            # scoring against an index (search/index_neighbors.py): one kind of product everywhere.
            block = block.copy()
        s = block @ ref.T
        if exclude_self:
            rows = np.arange(len(s))
            s[rows, start + rows] = -np.inf
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        top_s = np.take_along_axis(s, top, axis=1)
        order = np.lexsort((top, -top_s), axis=1)  # best first; ties by index: deterministic
        idx[start : start + len(s)] = np.take_along_axis(top, order, axis=1)
        sims[start : start + len(s)] = np.take_along_axis(top_s, order, axis=1)
    return idx, sims


def _coarse(ref: np.ndarray, queries: np.ndarray, k: int, exclude_self: bool) -> tuple[np.ndarray, np.ndarray]:
    """2k candidates from an int8 graph, re-ranked by exact cosine; ties by index."""
    want = min(2 * k, len(ref) - (1 if exclude_self else 0))
    cand, _ = _hnsw(ref, queries, want, exclude_self, dtype="i8")
    idx = np.empty((len(queries), k), dtype=np.int64)
    sims = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), BLOCK):
        c = cand[start : start + BLOCK]
        s = np.einsum("ij,ikj->ik", queries[start : start + BLOCK], ref[c])
        order = np.lexsort((c, -s), axis=1)[:, :k]
        idx[start : start + len(c)] = np.take_along_axis(c, order, axis=1)
        sims[start : start + len(c)] = np.take_along_axis(s, order, axis=1)
    return idx, sims


def _hnsw(
    ref: np.ndarray, queries: np.ndarray, k: int, exclude_self: bool, dtype: str = "f32"
) -> tuple[np.ndarray, np.ndarray]:
    from embcli.runtime.native import usearch_index

    # A throwaway graph: a smaller build beam than `embcli index` uses (its cost dominates at 1M),
    # and a search beam of at least twice k.
    ef = max(64, 2 * (k + 1))
    index = usearch_index()(
        ndim=ref.shape[1], metric="cos", dtype=dtype, connectivity=16, expansion_add=64, expansion_search=ef
    )
    index.add(np.arange(len(ref), dtype=np.uint64), ref, threads=0)
    extra = 1 if exclude_self else 0
    idx = np.empty((len(queries), k), dtype=np.int64)
    out = np.empty((len(queries), k), dtype=np.float32)
    for start in range(0, len(queries), QUERY_BATCH):  # bounded result arrays; each batch on every core
        found = index.search(queries[start : start + QUERY_BATCH], k + extra, threads=0)
        keys = np.atleast_2d(found.keys).astype(np.int64)
        sims = 1 - np.atleast_2d(found.distances).astype(np.float32)
        if exclude_self:  # drop the row itself where the graph found it, else the farthest
            rows = np.arange(start, start + len(keys))
            own = keys == rows[:, None]
            drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
            keep = np.ones(keys.shape, bool)
            keep[np.arange(len(keys)), drop] = False
            keys, sims = keys[keep].reshape(len(keys), k), sims[keep].reshape(len(keys), k)
        idx[start : start + len(keys)], out[start : start + len(keys)] = keys[:, :k], sims[:, :k]
    return idx, out
