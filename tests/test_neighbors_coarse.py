"""The graph kNN paths above the exact-search limit (search/neighbors.py): the float graph that
classify and cluster use, and the coarse one (int8 graph, candidates re-ranked by exact cosine) that
detect-anomalies and aligned `diff --by` use. Real vectors with real-looking repeats (summaries share
vectors, hundreds at once), compared with exact search."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from embcli.search import neighbors

GROUPS = {0: 300, 1: 50, 2: 2, 3: 2}  # row of the real set -> extra exact copies of it


@pytest.fixture(scope="module")
def repeated(packages_vec) -> tuple[np.ndarray, list[np.ndarray]]:
    """2,000 real vectors, ten noisy copies of each, and exact copies of four, shuffled; the rows of each
    vector that has copies."""
    base = np.array([orjson.loads(line)["embedding"] for line in packages_vec.read_bytes().splitlines()], np.float32)
    rng = np.random.default_rng(0)
    noisy = [base + rng.normal(0, 0.03, base.shape).astype(np.float32) for _ in range(10)]
    x = neighbors.unit(np.vstack([base, *noisy]))
    x = np.vstack([x, *[np.repeat(x[[row]], n, axis=0) for row, n in GROUPS.items()]])
    x = x[rng.permutation(len(x))]
    assert len(x) > neighbors.EXACT_LIMIT
    _, group, count = np.unique(x, axis=0, return_inverse=True, return_counts=True)
    group = group.ravel()
    return x, [np.flatnonzero(group == g) for g in np.flatnonzero(count > 1)]


@pytest.mark.parametrize("coarse", [False, True], ids=["float-graph", "coarse"])
def test_graph_neighbours_are_exact_cosines_best_first_without_self(repeated, coarse):
    x, groups = repeated
    idx, sims = neighbors.search(x, x, 10, exclude_self=True, coarse=coarse)
    assert idx.shape == (len(x), 10) and (idx >= 0).all()
    assert not (idx == np.arange(len(x))[:, None]).any()
    assert (np.diff(sims, axis=1) <= 1e-6).all()
    assert np.allclose(sims, np.einsum("ij,ikj->ik", x, x[idx]), atol=1e-5)  # the cosines of the rows found
    q = np.arange(0, len(x), 44)  # ~500 queries: recall@10 against exact search (ties count)
    kth = np.sort(x[q] @ x.T, axis=1)[:, -11][:, None]  # the 10th best other than self (self ranks 1st)
    assert (sims[q] >= kth - 1e-6).mean() >= 0.9  # measured 0.976 (coarse) on 25k real vectors
    # Copies of one vector are each other's nearest rows, in row order, never lost on a plateau.
    sizes = sorted(len(rows) for rows in groups)
    assert sizes[-2:] == [51, 301] and sizes.count(3) >= 2
    for rows in groups:
        if len(rows) > 10:
            assert np.isin(idx[rows], rows).all() and np.allclose(sims[rows], 1, atol=1e-5)
            assert (np.diff(idx[rows], axis=1) > 0).all()
        else:
            for r in rows:
                assert set(idx[r, : len(rows) - 1]) == set(rows) - {r}


def test_queries_that_are_not_the_rows_get_every_copy(repeated):
    x, groups = repeated
    rows = next(rows for rows in groups if len(rows) == 51)
    q = x[rows[:1]] + 0.001  # near the 51 copies of one vector, none of them itself
    idx, sims = neighbors.search(x, neighbors.unit(q), 60)
    assert set(rows) <= set(idx[0]) and set(idx[0, :51]) == set(rows)
    assert (np.diff(idx[0, :51]) > 0).all() and np.all(sims[0, :51] == sims[0, 0])  # in row order, one score


def test_copies_found_by_hashing_rows_are_the_copies_sorting_finds(repeated):
    x, _ = repeated
    first, inverse = neighbors._equal_rows(x)
    rows = np.ascontiguousarray(x).view(np.dtype((np.void, 4 * x.shape[1]))).ravel()
    _, first_sorted, inverse_sorted = np.unique(rows, return_index=True, return_inverse=True)
    # Each row maps to the first row of its vector, the same either way.
    assert np.array_equal(first[inverse], first_sorted[inverse_sorted.ravel()])
    assert len(first) < len(x)
