"""Are two sets of embeddings alike? Two-sample tests between corpora, and neighbourhood
overlap between two embeddings of the same items.

Corpus mode runs three tests of "A and B come from one distribution", each with
a p-value, and combines them with Holm's correction:

- MMD² (maximum mean discrepancy) with a cosine or RBF kernel (median heuristic),
  p-value from a permutation test;
- a classifier two-sample test: cross-validated AUC of a logistic regression
  telling A from B, p-value from the Mann-Whitney null of its held-out scores;
- TTE depth (Seegmiller & Preum, 2023): each item's depth in A is 2 minus its
  mean cosine distance to A's items; Q = P(depth of an A item ≤ depth of a B
  item); Wilcoxon rank-sum p-value between the two sets of depths.

Aligned mode compares, id by id, the k nearest neighbours of an item in A's
space and in B's (Jaccard@k): it works across dimensions and is blind to
rotations, so it says whether a model swap changes what is near what.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embcli.env import current
from embcli.errors import InputError
from embcli.search import neighbors
from embcli.search.neighbors import unit


def subsample(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, size=limit, replace=False)) if n > limit else np.arange(n)


# --------------------------------------------------------------------------- corpus tests


def mmd_test(a: np.ndarray, b: np.ndarray, kernel: str, permutations: int, rng: np.random.Generator) -> dict:
    """Biased MMD² and its permutation p-value; all permutations in one matrix product."""
    env = current()
    env.phase(f"testing: MMD kernel on {len(a):,} + {len(b):,} vectors…")
    x = np.vstack([a, b]).astype(np.float32)
    n, na = len(x), len(a)
    if kernel == "cos":
        k = x @ x.T
        bandwidth = None
    else:
        sq = (x * x).sum(1)
        d2 = np.clip(sq[:, None] + sq[None, :] - 2 * (x @ x.T), 0, None)
        i, j = rng.integers(0, n, size=(2, min(200_000, n * n)))  # median heuristic on sampled pairs
        bandwidth = float(np.median(d2[i[i != j], j[i != j]])) or 1.0
        k = np.exp(-d2 / bandwidth)
    labels = np.zeros((n, permutations + 1), dtype=np.float32)
    labels[:na, 0] = 1
    for p in range(1, permutations + 1):
        labels[rng.permutation(n)[:na], p] = 1
        if p % 50 == 0 and env.phases_wanted:
            env.phase(f"testing: MMD (permutations {p:,}/{permutations:,})…")
    env.phase(f"testing: MMD ({permutations:,} permutations)…")  # the one matrix product that tests them all
    w = labels / na - (1 - labels) / (n - na)  # mean over A minus mean over B
    stats = (w * (k @ w)).sum(axis=0)
    observed = float(stats[0])
    p_value = float((1 + (stats[1:] >= observed - 1e-12).sum()) / (permutations + 1))
    out = {"mmd2": observed, "p_value": p_value, "kernel": kernel, "permutations": permutations}
    if bandwidth is not None:
        out["bandwidth"] = bandwidth
    return out


def classifier_test(a: np.ndarray, b: np.ndarray, seed: int, folds: int = 5) -> dict:
    """Cross-validated AUC of logistic regression telling A from B, with a Mann-Whitney p-value."""
    current().phase("testing: classifier…")  # importing scikit-learn takes a second or two
    from scipy.stats import mannwhitneyu
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    x = np.vstack([a, b])
    y = np.r_[np.zeros(len(a)), np.ones(len(b))]
    scores = np.empty(len(x))
    folds = min(folds, len(a), len(b))
    splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y)
    for fold, (train, test) in enumerate(splits, start=1):
        current().phase(f"testing: classifier (fold {fold}/{folds})…")
        model = LogisticRegression(C=1.0, max_iter=1000).fit(x[train], y[train])
        scores[test] = model.decision_function(x[test])
    # Held-out scores of B above those of A; under the null, U is the Mann-Whitney U of noise.
    u, p = mannwhitneyu(scores[y == 1], scores[y == 0], alternative="greater")
    return {"auc": float(u / (len(a) * len(b))), "p_value": float(p), "folds": folds}


def depth_in(x: np.ndarray, ref: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    """TTE depth of each row of x in ref: 2 − mean cosine distance = 1 + x·mean(ref) for unit vectors."""
    total = ref.sum(axis=0)
    if exclude_self:  # x is ref: leave each item out of its own reference set
        return 1 + ((x @ total) - (x * x).sum(1)) / (len(ref) - 1)
    return 1 + (x @ total) / len(ref)


def depth_test(a: np.ndarray, b: np.ndarray) -> dict:
    from scipy.stats import ranksums

    current().phase("testing: depth…")
    da, db = depth_in(a, a, exclude_self=True), depth_in(b, a)
    _, p = ranksums(da, db)
    # Q: how often an A item is no deeper in A than a B item (0.5 when alike, lower when B sits apart).
    q = float(np.mean(da[:, None] <= db[None, :])) if len(da) * len(db) <= 25_000_000 else float("nan")
    return {"q": q, "p_value": float(p), "mean_depth_a": float(da.mean()), "mean_depth_b": float(db.mean())}


def dimension_shift(a: np.ndarray, b: np.ndarray, alpha: float) -> float:
    """Share of dimensions whose values differ between A and B (Kolmogorov-Smirnov, Benjamini-Hochberg)."""
    from scipy.stats import false_discovery_control, ks_2samp

    current().phase(f"testing: shifted dimensions ({a.shape[1]:,})…")
    p = np.array([ks_2samp(a[:, d], b[:, d]).pvalue for d in range(a.shape[1])])
    return float((false_discovery_control(p) < alpha).mean())


def holm(p_values: dict[str, float], alpha: float) -> dict[str, bool]:
    """Which tests reject at family-wise level alpha (Holm-Bonferroni)."""
    order = sorted(p_values, key=p_values.get)
    rejected, m = {}, len(order)
    still = True
    for i, name in enumerate(order):
        still = still and p_values[name] <= alpha / (m - i)
        rejected[name] = still
    return rejected


@dataclass
class CorpusReport:
    report: dict
    different: bool


def compare_corpora(
    a: np.ndarray,
    b: np.ndarray,
    *,
    alpha: float = 0.05,
    kernel: str = "rbf",
    permutations: int = 200,
    max_samples: int = 2000,
    seed: int = 0,
) -> CorpusReport:
    for name, x in (("A", a), ("B", b)):
        if len(x) < 5:
            raise InputError(f"{name} has {len(x)} vectors; corpus tests need at least 5 on each side")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"A has {a.shape[1]} dimensions and B {b.shape[1]}: corpus mode compares one embedding space")
    rng = np.random.default_rng(seed)
    sa, sb = unit(a[subsample(len(a), max_samples, rng)]), unit(b[subsample(len(b), max_samples, rng)])
    ma, mb = unit(a).mean(axis=0), unit(b).mean(axis=0)
    tests = {
        "mmd": mmd_test(sa, sb, kernel, permutations, rng),
        "classifier": classifier_test(sa, sb, seed),
        "depth": depth_test(sa, sb),
    }
    rejected = holm({name: t["p_value"] for name, t in tests.items()}, alpha)
    for name, t in tests.items():
        t["rejects"] = rejected[name]
    different = any(rejected.values())
    report = {
        "mode": "corpus",
        "verdict": "different" if different else "same",
        "alpha": alpha,
        "correction": "holm",
        "n_a": len(a),
        "n_b": len(b),
        "sampled_a": len(sa),
        "sampled_b": len(sb),
        "dims": a.shape[1],
        "centroid_cosine_distance": float(1 - ma @ mb / max(np.linalg.norm(ma) * np.linalg.norm(mb), 1e-12)),
        "shifted_dimensions": dimension_shift(sa, sb, alpha),
        "tests": tests,
    }
    return CorpusReport(report, different)


def outliers(x: np.ndarray, ref: np.ndarray, top: int, same: bool = False) -> list[tuple[int, float]]:
    """The ``top`` rows of x least deep in ref: (row, depth), shallowest first."""
    d = depth_in(unit(x), unit(ref), exclude_self=same)
    order = np.argsort(d, kind="stable")[:top]
    return [(int(i), float(d[i])) for i in order]


# --------------------------------------------------------------------------- aligned mode


def compare_aligned(a: np.ndarray, b: np.ndarray, ids: list, *, k: int = 10, top: int = 10) -> dict:
    """Per-id neighbourhood overlap between two embeddings of the same items."""
    if len(a) < 2:
        raise InputError(f"aligned mode needs at least 2 shared ids, found {len(a)}")
    env = current()
    env.phase(f"finding {k} neighbours of {len(a):,} items in A's space…")
    na = neighbors.search(unit(a), unit(a), k, exclude_self=True, coarse=True)[0]
    env.phase(f"finding {k} neighbours of {len(b):,} items in B's space…")
    nb = neighbors.search(unit(b), unit(b), k, exclude_self=True, coarse=True)[0]
    env.phase("comparing neighbourhoods…")
    overlap = np.array(
        [len(set(r1) & set(r2)) / len(set(r1) | set(r2)) for r1, r2 in zip(na, nb, strict=True)], dtype=np.float64
    )
    report = {
        "mode": "aligned",
        "ids": len(ids),
        "k": int(na.shape[1]),
        "mean_overlap": float(overlap.mean()),
        "changed_share": float((overlap < 1).mean()),
        "mostly_changed_share": float((overlap < 0.5).mean()),
    }
    if a.shape[1] == b.shape[1]:
        report["mean_cosine_between_versions"] = float((unit(a) * unit(b)).sum(axis=1).mean())
    order = np.argsort(overlap, kind="stable")[:top]
    report["most_changed"] = [{"id": ids[i], "overlap": float(overlap[i])} for i in order]
    return report


# --------------------------------------------------------------------------- the whole comparison


@dataclass
class DiffOptions:
    """What ``diff`` tests and lists (the command's test flags)."""

    by: str | None = None  # aligned mode: match items by this field
    alpha: float = 0.05
    kernel: str = "rbf"
    permutations: int = 200
    max_samples: int = 2000
    seed: int = 0
    k: int = 10  # aligned mode: neighbours compared per item
    min_overlap: float = 0.8  # aligned mode: mean Jaccard@k below this is a difference
    top: int = 10  # items least like the other side (most changed ids in aligned mode)
    text_field: str = "text"


@dataclass
class DiffResult:
    """The report (as ``diff`` prints it), whether A and B differ, and the listed items (as ``--items`` writes)."""

    report: dict
    different: bool
    items: list[dict]

    @property
    def verdict(self) -> str:
        return self.report["verdict"]


def read_side(
    path: str | None, vector_field: str, bad, input_format: str | None = None
) -> tuple[np.ndarray, list[dict]]:
    """One side's vectors and records (NPY rows become {"row": i}); one width per side.

    ``path`` may be a glob or a directory: its files are one side, read in order.
    """
    from embcli.analysis.records import reading
    from embcli.io.inputs import Inputs, ReadOptions

    inputs = Inputs(None if path is None else [path], ReadOptions(input_format))
    pairs = list(reading(inputs.embedded(vector_field, bad), inputs.name))
    recs = [rec.fields() for rec, _ in pairs]
    width = {len(v) for _, v in pairs}
    if len(width) > 1:
        raise InputError(f"vectors of different widths {sorted(width)} in one input, {path}")
    return (np.vstack([v for _, v in pairs]) if pairs else np.zeros((0, 0), np.float32)), recs


def compare(
    xa: np.ndarray, ra: list[dict], xb: np.ndarray, rb: list[dict], options: DiffOptions, *, list_items: bool = True
) -> DiffResult:
    """Corpus mode, or aligned mode with ``options.by``; ``list_items`` puts the listed items in the report too."""
    if not len(xa) and not len(xb):
        report = {"mode": "aligned" if options.by else "corpus", "verdict": "same", "n_a": 0, "n_b": 0}
        return DiffResult(report, False, [])
    if options.by:
        return _aligned(xa, ra, xb, rb, options)
    o = options
    if min(len(xa), len(xb)) >= 5 and xa.shape[1] != xb.shape[1]:
        raise InputError(
            f"A has {xa.shape[1]} dimensions and B {xb.shape[1]}: corpus mode compares one embedding space",
            hint="to compare two models on the same items, use --by id",
        )
    result = compare_corpora(
        xa, xb, alpha=o.alpha, kernel=o.kernel, permutations=o.permutations, max_samples=o.max_samples, seed=o.seed
    )

    def brief(rec: dict, extra: dict) -> dict:
        return {**{f: rec[f] for f in ("id", "row", o.text_field) if f in rec}, **extra}

    current().phase("finding the items least like the other side…")
    new = [brief(rb[i], {"side": "B", "kind": "new", "depth_in_a": d}) for i, d in outliers(xb, xa, o.top)]
    gone = [brief(ra[i], {"side": "A", "kind": "gone", "depth_in_b": d}) for i, d in outliers(xa, xb, o.top)]
    if o.top and list_items:
        result.report["least_like_a"], result.report["least_like_b"] = new, gone
    return DiffResult(result.report, result.different, new + gone)


def _aligned(xa: np.ndarray, ra: list[dict], xb: np.ndarray, rb: list[dict], options: DiffOptions) -> DiffResult:
    by = options.by
    ia = {r.get(by): i for i, r in enumerate(ra) if r.get(by) is not None}
    ib = {r.get(by): i for i, r in enumerate(rb) if r.get(by) is not None}
    shared = [key for key in ia if key in ib]
    if not shared:
        raise InputError(f"A and B share no {by!r} values", hint="aligned mode matches items by --by FIELD")
    a, b = xa[[ia[s] for s in shared]], xb[[ib[s] for s in shared]]
    report = compare_aligned(a, b, shared, k=options.k, top=options.top)
    report.update(only_in_a=len(ia) - len(shared), only_in_b=len(ib) - len(shared))
    different = report["mean_overlap"] < options.min_overlap
    report["verdict"] = "different" if different else "same"
    return DiffResult(report, different, [{"side": "both", "kind": "changed", **m} for m in report["most_changed"]])
