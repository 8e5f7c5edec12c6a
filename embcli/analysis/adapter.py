"""Fitting a query-drift adapter: a linear map from a new model's space into an old one's.

The items embedded by both models (matched by id) are split, by seed, into a
training and a held-out part. On the training part the map is fitted:

- orthogonal Procrustes when both spaces have the same width: the rotation
  ``W = U Vᵀ`` from the SVD of ``Xᵀ Y`` on centred vectors, plus the shift of
  the means (centring matters: sentence embeddings share a large common
  direction, and a rotation fitted on raw vectors spends itself aligning that
  one, losing neighbours — held-out overlap@10 0.40 raw vs 0.59 centred on 600
  package summaries, CLS → mean pooling);
- ridge least squares otherwise (centred, with an intercept; the penalty is
  chosen from a small grid on a further split of the training part).

On the held-out part it is judged by what a search of the old index sees: the
mean cosine of mapped new vectors to the old ones, and neighbour overlap@k —
the share of an item's k nearest neighbours among the old vectors (itself left
out) that the mapped new vector finds too; before mapping where the widths
allow it (that is, searching the old index with new vectors "by force").
"""

from __future__ import annotations

import numpy as np

from embcli.env import current
from embcli.errors import InputError, UsageError
from embcli.runtime.adapter import Adapter, describe
from embcli.search import neighbors
from embcli.search.neighbors import unit

RIDGE_GRID = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)  # penalties relative to the mean eigenvalue of XᵀX
MIN_PAIRS = 10


def procrustes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The orthogonal W minimising ‖XW − Y‖ (same widths)."""
    u, _, vt = np.linalg.svd(x.astype(np.float64).T @ y.astype(np.float64))
    return (u @ vt).astype(np.float32)


def ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(W, b) minimising ‖XW + b − Y‖² + λ‖W‖², λ = alpha × the mean eigenvalue of the centred XᵀX."""
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    mx, my = x64.mean(axis=0), y64.mean(axis=0)
    xc, yc = x64 - mx, y64 - my
    gram = xc.T @ xc
    lam = alpha * max(np.trace(gram) / len(gram), 1e-12)
    w = np.linalg.solve(gram + lam * np.eye(len(gram)), xc.T @ yc)
    return w.astype(np.float32), (my - mx @ w).astype(np.float32)


def _mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float((unit(a) * unit(b)).sum(axis=1).mean())


def _choose_alpha(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> float:
    """The grid penalty whose fit on 80% of the training pairs maps the other 20% closest (cosine)."""
    order = rng.permutation(len(x))
    cut = max(1, len(x) // 5)
    val, train = order[:cut], order[cut:]
    scores = []
    for alpha in RIDGE_GRID:
        w, b = ridge(x[train], y[train], alpha)
        scores.append(_mean_cosine(x[val] @ w + b, y[val]))
    return RIDGE_GRID[int(np.argmax(scores))]  # first best: ties go to the smaller penalty


def overlap_at_k(queries: np.ndarray, old: np.ndarray, rows: np.ndarray, k: int) -> float:
    """Mean share of each held-out item's k old-space neighbours (itself left out) that its query finds."""
    ref = unit(old)
    want, _ = neighbors.search(ref, ref[rows], k + 1)
    got, _ = neighbors.search(ref, unit(queries), k + 1)
    shares = []
    for row, w, g in zip(rows, want, got, strict=True):
        w = [i for i in w if i != row][:k]
        g = [i for i in g if i != row][:k]
        shares.append(len(set(w) & set(g)) / max(len(w), 1))
    return float(np.mean(shares))


def fit_adapter(
    new: np.ndarray,
    old: np.ndarray,
    new_prov: dict,
    old_prov: dict,
    *,
    kind: str = "auto",
    holdout: float = 0.2,
    seed: int = 0,
    k: int = 10,
) -> tuple[Adapter, dict]:
    """Fit the map new → old on paired rows; returns the adapter and its validation report.

    The adapter is fitted on the training part only, so the held-out figures describe
    exactly the map that is saved. ``holdout`` 0 fits on every pair and reports none.
    """
    if len(new) != len(old):
        raise InputError(f"{len(new)} new vectors for {len(old)} old ones: the pairs must line up")
    if len(new) < MIN_PAIRS:
        raise InputError(
            f"fitting an adapter needs at least {MIN_PAIRS} items embedded by both models, found {len(new)}"
        )
    dn, do = new.shape[1], old.shape[1]
    if kind == "auto":
        kind = "procrustes" if dn == do else "ridge"
    if kind == "procrustes" and dn != do:
        raise UsageError(
            f"Procrustes maps spaces of one width; these are {dn}-d (new) and {do}-d (old)",
            hint="use --adapter-kind ridge (or auto)",
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(new))
    n_val = round(len(new) * holdout)
    if holdout > 0 and n_val < 2:
        n_val = 2
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    if len(train) < 2:
        raise InputError(f"--holdout {holdout} leaves {len(train)} pairs to fit on")
    env = current()
    env.phase(f"fitting the adapter ({kind}) on {len(train):,} pairs…")
    report: dict = {"kind": kind, "new": describe(new_prov), "old": describe(old_prov), "pairs": len(new)}
    report.update(train=len(train), held_out=len(val), seed=seed)
    if kind == "procrustes":
        mean_new, mean_old = new[train].mean(axis=0), old[train].mean(axis=0)
        weight = procrustes(new[train] - mean_new, old[train] - mean_old)
        bias = (mean_old - mean_new @ weight).astype(np.float32)
    else:
        alpha = _choose_alpha(new[train], old[train], rng)
        weight, bias = ridge(new[train], old[train], alpha)
        report["ridge_alpha"] = alpha
    adapter = Adapter(kind, weight, bias, dict(new_prov), dict(old_prov), {})
    if len(val):
        env.phase(f"validating the adapter on {len(val):,} held-out pairs…")
        mapped = adapter.map(new[val])
        kk = min(k, len(new) - 1)
        before = {"cosine": None, f"overlap@{kk}": None}
        if dn == do:  # new vectors searched against old ones as they are ("by force")
            before = {"cosine": _mean_cosine(new[val], old[val]), f"overlap@{kk}": overlap_at_k(new[val], old, val, kk)}
        after = {"cosine": _mean_cosine(mapped, old[val]), f"overlap@{kk}": overlap_at_k(mapped, old, val, kk)}
        report.update(k=kk, before=before, after=after)
    adapter.meta = {"fit": report}
    report["sha256"] = adapter.sha256
    return adapter, report


def side_provenance(recs: list[dict], field: str, side: str) -> dict:
    """The one model that embedded a side's records (bad input when none or several)."""
    from embcli.runtime import provenance

    provs = {repr(sorted(r[field].items())) if isinstance(r.get(field), dict) else None for r in recs}
    if None in provs or not recs:
        raise InputError(
            f"{side}'s records do not all say which model made them (no {field!r} field)",
            hint="an adapter records both models: fit it on `embcli embed` output (JSONL or a table)",
        )
    if len(provs) > 1:
        raise InputError(f"{side}'s records come from {len(provs)} models or option sets; one side is one model")
    prov = recs[0][field]
    if not all(k in prov for k in provenance.KEYS):
        raise InputError(f"{side}'s {field!r} field is not one written by embcli embed")
    return prov


def fit_from_sides(
    xa: np.ndarray,
    ra: list[dict],
    xb: np.ndarray,
    rb: list[dict],
    by: str,
    *,
    model_field: str = "embedding_model",
    kind: str = "auto",
    holdout: float = 0.2,
    seed: int = 0,
    k: int = 10,
) -> tuple[Adapter, dict]:
    """``diff OLD NEW --by FIELD --fit-adapter``: A is the old model's side, B the new one's."""
    old_prov = side_provenance(ra, model_field, "A (old)")
    new_prov = side_provenance(rb, model_field, "B (new)")
    ia = {r.get(by): i for i, r in enumerate(ra) if r.get(by) is not None}
    ib = {r.get(by): i for i, r in enumerate(rb) if r.get(by) is not None}
    shared = [key for key in ia if key in ib]
    old = xa[[ia[s] for s in shared]] if shared else np.zeros((0, xa.shape[1] if xa.ndim == 2 else 0), np.float32)
    new = xb[[ib[s] for s in shared]] if shared else np.zeros((0, xb.shape[1] if xb.ndim == 2 else 0), np.float32)
    return fit_adapter(new, old, new_prov, old_prov, kind=kind, holdout=holdout, seed=seed, k=k)
