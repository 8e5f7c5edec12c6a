"""Clustering unit vectors: spherical k-means, HDBSCAN, and threshold communities.

Results never depend on input order: rows are put in a canonical order (by a
fixed random projection, then their bytes) before any random choice, and
clusters are numbered by decreasing size. Noise is -1.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from embcli.env import current
from embcli.errors import InputError, UsageError
from embcli.search import neighbors
from embcli.search.neighbors import unit

ALGOS = ("kmeans", "hdbscan", "threshold")


@dataclass
class ClusterOptions:
    """How to cluster (the ``cluster`` command's clustering flags)."""

    algo: str = "kmeans"  # kmeans (spherical), hdbscan (density, -1 = noise), threshold (communities)
    k: int | str = 8  # kmeans: clusters, or "auto" (best silhouette in k_range)
    k_range: tuple[int, int] = (2, 20)
    n_init: int = 4
    seed: int = 0
    min_cluster_size: int = 5  # hdbscan
    threshold: float = 0.75  # threshold: cosine that joins a community
    min_size: int = 10  # threshold: smallest community


@dataclass
class Clustering:
    labels: np.ndarray  # (n,) cluster per row, -1 = noise
    centres: np.ndarray  # (n_clusters, d) unit vectors
    note: str = ""  # what was chosen and why (k auto)
    sims: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # each row's cosine to its centre

    @property
    def n_clusters(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    @property
    def noise(self) -> int:
        return int((self.labels < 0).sum())

    def similarity(self, x: np.ndarray) -> np.ndarray:
        """Each row's cosine to its cluster's centre (NaN for noise)."""
        sims = np.full(len(x), np.nan, dtype=np.float32)
        member = self.labels >= 0
        sims[member] = (x[member] * self.centres[self.labels[member]]).sum(axis=1)
        return sims


def canonical_order(x: np.ndarray) -> np.ndarray:
    """A row order that depends on the vectors only, not on where they sit in the input."""
    projection = x @ np.random.default_rng(20240601).standard_normal(x.shape[1]).astype(np.float32)
    return np.lexsort((*[x[:, j] for j in range(min(8, x.shape[1]))][::-1], projection))


def _renumber(labels: np.ndarray) -> np.ndarray:
    """Clusters numbered by decreasing size (ties: first member in canonical order); noise stays -1."""
    counts = Counter(int(c) for c in labels if c >= 0)
    first = {}
    for i, c in enumerate(labels):
        first.setdefault(int(c), i)
    ranked = sorted(counts, key=lambda c: (-counts[c], first[c]))
    mapping = {c: i for i, c in enumerate(ranked)}
    return np.array([mapping.get(int(c), -1) for c in labels], dtype=np.int64)


def _centres(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    n = labels.max() + 1 if len(labels) and labels.max() >= 0 else 0
    out = np.zeros((n, x.shape[1]), dtype=np.float32)
    np.add.at(out, labels[labels >= 0], x[labels >= 0])
    return unit(out)


def _in_canonical_order(x: np.ndarray, run, large: int | None = None) -> Clustering:
    """Run ``run`` on canonically ordered unit rows; map labels back to input order.

    Above ``large`` rows (default LARGE) centres and similarities are computed in blocks.
    """
    x = unit(x)
    order = canonical_order(x)
    labels, note = run(x[order])
    labels = _renumber(labels)
    out = np.empty_like(labels)
    out[order] = labels
    if len(x) > (LARGE if large is None else large):  # the same figures in bounded memory: products in blocks
        centres = unit(_sums(x, out, int(out.max()) + 1 if out.max() >= 0 else 0))
        result = Clustering(out, centres, note)
        result.sims = _similarity(x, out, centres)
        return result
    result = Clustering(out, _centres(x, out), note)
    result.sims = result.similarity(x)
    return result


# --------------------------------------------------------------------------- k-means


def _kmeans_once(x: np.ndarray, k: int, rng: np.random.Generator, max_iter: int) -> tuple[np.ndarray, float]:
    """Spherical k-means (cosine), k-means++ seeding; returns labels and total cosine distance."""
    n = len(x)
    centres = np.empty((k, x.shape[1]), dtype=np.float32)
    centres[0] = x[rng.integers(n)]
    dist = 1 - x @ centres[0]
    for c in range(1, k):
        weights = np.clip(dist, 0, None) ** 2
        total = weights.sum()
        pick = rng.choice(n, p=weights / total) if total > 0 else rng.integers(n)
        centres[c] = x[pick]
        dist = np.minimum(dist, 1 - x @ centres[c])
    labels = np.full(n, -1)
    for _ in range(max_iter):
        sims = x @ centres.T
        new = sims.argmax(axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        for c in range(k):
            members = x[labels == c]
            # An emptied cluster restarts at the point farthest from its centre.
            centres[c] = unit(members.sum(0, keepdims=True))[0] if len(members) else x[sims.max(axis=1).argmin()]
    cost = float((1 - (x * centres[labels]).sum(axis=1)).sum())
    return labels, cost


def kmeans(
    x: np.ndarray,
    k: int,
    *,
    n_init: int = 4,
    seed: int = 0,
    max_iter: int = 100,
    phase: str = "",
    large: int | None = None,
    sample: int | None = None,
) -> Clustering:
    """Spherical k-means, the best of ``n_init`` restarts; ``phase``: what the restarts report as (k auto's step).

    Above ``large`` rows (default LARGE) the restarts run on a sample of ``sample`` rows (default
    SAMPLE) and the best is refined on every row (``_kmeans_large``); up to it, every restart
    runs on every row.
    """
    large = LARGE if large is None else large
    sample = SAMPLE if sample is None else sample
    if not 1 <= k <= len(x):
        raise UsageError(f"--k {k} must be between 1 and the number of vectors ({len(x)})")
    env = current()
    phase = phase or f"fitting k-means k={k} (seed {seed})"

    def once(xs: np.ndarray, rng: np.random.Generator, i: int) -> tuple[np.ndarray, float]:
        env.phase(f"{phase}, restart {i}/{n_init}…" if n_init > 1 else f"{phase}…")
        return _kmeans_once(xs, k, rng, max_iter)

    def run(xs: np.ndarray) -> tuple[np.ndarray, str]:
        if len(xs) > large:
            return _kmeans_large(xs, k, n_init, seed, max_iter, phase, sample), ""
        rng = np.random.default_rng(seed)
        best = min((once(xs, rng, i) for i in range(1, n_init + 1)), key=lambda r: r[1])
        return best[0], ""

    return _in_canonical_order(x, run, large)


# Above this many rows k-means runs its restarts on a SAMPLE of the rows (k-means++ and Lloyd to
# convergence, float32 products in blocks), then refines the best on every row until fewer than
# REFINE_TOL of the labels change (bench/analysis.py: at 1M, minutes less than 4 full restarts).
LARGE = 50_000
SAMPLE = 50_000
REFINE_TOL = 1e-4
CHUNK = 65_536  # rows per float32 product: bounded temporaries at any size


def _kmeans_large(
    xs: np.ndarray, k: int, n_init: int, seed: int, max_iter: int, phase: str, sample_size: int
) -> np.ndarray:
    """Restarts on a seeded sample of the (canonically ordered) rows, the best refined on all of them.

    Deterministic for the rows and the seed: the sample is drawn from the canonical order.
    """
    env = current()
    rng = np.random.default_rng(seed)
    size = min(len(xs), max(sample_size, 50 * k))
    sample = xs[np.sort(rng.choice(len(xs), size=size, replace=False))] if size < len(xs) else xs
    best: tuple[float, np.ndarray] | None = None
    for i in range(1, n_init + 1):
        env.phase(f"{phase}, restart {i}/{n_init} on {len(sample):,} sampled vectors…")
        centres = _seed_centres(sample, k, rng)
        _, centres, cost = _lloyd(sample, centres, max_iter, tol=0.0)
        if best is None or cost < best[0]:
            best = (cost, centres)
    env.phase(f"{phase}, refining the best restart on all {len(xs):,} vectors…")
    labels, _, _ = _lloyd(xs, best[1], max_iter, tol=REFINE_TOL)
    return labels


def _seed_centres(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding, as ``_kmeans_once`` does it."""
    n = len(x)
    centres = np.empty((k, x.shape[1]), dtype=np.float32)
    centres[0] = x[rng.integers(n)]
    dist = 1 - x @ centres[0]
    for c in range(1, k):
        weights = np.clip(dist, 0, None).astype(np.float64) ** 2
        total = weights.sum()
        pick = rng.choice(n, p=weights / total) if total > 0 else rng.integers(n)
        centres[c] = x[pick]
        dist = np.minimum(dist, 1 - x @ centres[c])
    return centres


def _lloyd(x: np.ndarray, centres: np.ndarray, max_iter: int, tol: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Lloyd iterations until at most ``tol`` of the labels change (0: none) or ``max_iter``.

    Returns the labels, the centres they were assigned to and the total cosine distance.
    One pass over x per iteration: a float32 product for the similarities, another (one-hot
    by rows) for the cluster sums. An emptied cluster restarts at the point farthest from its
    centre, as in ``_kmeans_once``.
    """
    labels: np.ndarray | None = None
    for _ in range(max_iter):
        new, best, sums = _assign(x, centres)
        assigned = centres
        changed = len(x) if labels is None else int((new != labels).sum())
        labels = new
        if changed <= tol * len(x):
            break
        empty = ~sums.any(axis=1)
        centres = unit(sums.astype(np.float32))
        centres[empty] = x[best.argmin()]
    return labels, assigned, float((1 - best.astype(np.float64)).sum())


def _assign(x: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's nearest centre and its cosine, and the per-cluster sums of the rows (float64)."""
    k = len(centres)
    labels = np.empty(len(x), np.int64)
    best = np.empty(len(x), np.float32)
    sums = np.zeros((k, x.shape[1]), np.float64)
    for start in range(0, len(x), CHUNK):
        part = x[start : start + CHUNK]
        sims = part @ centres.T
        lab = sims.argmax(axis=1)
        labels[start : start + len(part)] = lab
        best[start : start + len(part)] = sims[np.arange(len(part)), lab]
        sums += _block_sums(part, lab, k)
    return labels, best, sums


def _block_sums(part: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per-cluster sums of a block of rows, as one float32 product with the one-hot label matrix.

    Written rows-first (x.T @ onehot): OpenBLAS runs onehot @ x, the same product, ~40x slower.
    """
    onehot = np.zeros((len(labels), k), np.float32)
    onehot[np.arange(len(labels)), labels] = 1
    return (part.T @ onehot).T


def _sums(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Per-cluster sums of the rows (noise left out), by float32 products in blocks."""
    sums = np.zeros((k, x.shape[1]), np.float64)
    for start in range(0, len(x), CHUNK):
        lab = labels[start : start + CHUNK]
        member = lab >= 0
        sums += _block_sums(x[start : start + CHUNK][member], lab[member], k)
    return sums.astype(np.float32)


def _similarity(x: np.ndarray, labels: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """``Clustering.similarity`` in blocks."""
    sims = np.full(len(x), np.nan, dtype=np.float32)
    for start in range(0, len(x), CHUNK):
        lab = labels[start : start + CHUNK]
        member = np.flatnonzero(lab >= 0)
        part = x[start : start + CHUNK]
        sims[start + member] = np.einsum("ij,ij->i", part[member], centres[lab[member]])
    return sims


def kmeans_auto(
    x: np.ndarray, k_min: int, k_max: int, *, n_init: int = 4, seed: int = 0, sample: int = 2000
) -> Clustering:
    """k in [k_min, k_max] with the best cosine silhouette on a sample."""
    current().phase(f"choosing k in {k_min}:{k_max}…")  # importing scikit-learn alone takes a second or two
    from sklearn.metrics import silhouette_score

    k_max = min(k_max, len(x) - 1)
    if k_max < max(2, k_min):
        raise UsageError(f"--k auto needs more vectors than {k_min} (got {len(x)})")
    picked = np.random.default_rng(seed).choice(len(x), size=min(sample, len(x)), replace=False)
    scores: dict[int, float] = {}
    tried: dict[int, Clustering] = {}
    ks = range(max(2, k_min), k_max + 1)
    env = current()
    for i, k in enumerate(ks, start=1):
        step = f"choosing k: trying k={k} ({i}/{len(ks)})"
        tried[k] = kmeans(x, k, n_init=n_init, seed=seed, phase=step)
        labels = tried[k].labels[picked]
        if len(set(labels.tolist())) > 1:
            env.phase(f"{step}, silhouette…")
            scores[k] = float(silhouette_score(unit(x[picked]), labels, metric="cosine"))
    if not scores:
        raise InputError("no k in the range splits these vectors into two or more clusters")
    chosen = max(scores, key=scores.get)
    shown = ", ".join(f"{k}: {s:.3f}" for k, s in scores.items())
    best = tried[chosen]
    best.note = f"k = {chosen}: the best cosine silhouette on {len(picked):,} vectors ({shown})"
    return best


# --------------------------------------------------------------------------- density and threshold


def hdbscan(x: np.ndarray, *, min_cluster_size: int = 5) -> Clustering:
    current().phase(f"HDBSCAN on {len(x):,} vectors (min cluster size {min_cluster_size})…")
    from sklearn.cluster import HDBSCAN

    if len(x) < 2:
        raise InputError("hdbscan needs at least 2 vectors")

    def run(xs: np.ndarray) -> tuple[np.ndarray, str]:
        # Euclidean distance between unit vectors orders pairs exactly as cosine does.
        return HDBSCAN(min_cluster_size=min_cluster_size, copy=True).fit_predict(xs), ""

    return _in_canonical_order(x, run)


def communities(x: np.ndarray, *, threshold: float = 0.75, min_size: int = 10, max_neighbours: int = 256) -> Clustering:
    """Sentence-transformers' community detection on a kNN graph: greedy, largest communities first.

    A community is a point and its neighbours with cosine >= threshold (at most
    max_neighbours, from exact or HNSW search); communities are taken largest
    first and never overlap.
    """

    def run(xs: np.ndarray) -> tuple[np.ndarray, str]:
        env = current()
        env.phase(f"building kNN graph ({len(xs):,} vectors, {min(max_neighbours, len(xs))} neighbours each)…")
        idx, sims = neighbors.search(xs, xs, max_neighbours)
        env.phase(f"finding communities (cosine ≥ {threshold})…")
        candidates = []
        for i in range(len(xs)):
            members = idx[i][sims[i] >= threshold]
            if len(members) >= min_size:
                candidates.append(members)
        candidates.sort(key=lambda m: (-len(m), int(m.min())))
        labels = np.full(len(xs), -1)
        taken = np.zeros(len(xs), dtype=bool)
        for members in candidates:
            free = members[~taken[members]]
            if len(free) >= min_size:
                labels[free] = labels.max() + 1
                taken[free] = True
        capped = (
            f" (some communities may be larger than the {max_neighbours} neighbours searched per vector)"
            if (sims.shape[1] == max_neighbours and (sims[:, -1] >= threshold).any())
            else ""
        )
        return labels, capped

    return _in_canonical_order(x, run)


def cluster(x: np.ndarray, options: ClusterOptions) -> Clustering:
    """Cluster the rows of x as ``options`` say (what ``embcli cluster`` and ``embcli.cluster`` run)."""
    if options.algo == "kmeans":
        if options.k == "auto":
            lo, hi = options.k_range
            return kmeans_auto(x, lo, hi, n_init=options.n_init, seed=options.seed)
        if isinstance(options.k, str):
            raise UsageError(f"--k: expected a number or auto, got {options.k!r}")
        return kmeans(x, int(options.k), n_init=options.n_init, seed=options.seed)
    if options.algo == "hdbscan":
        return hdbscan(x, min_cluster_size=options.min_cluster_size)
    if options.algo == "threshold":
        return communities(x, threshold=options.threshold, min_size=options.min_size)
    raise UsageError(f"unknown algorithm {options.algo!r}; choose from {', '.join(ALGOS)}")


def annotate(records: list[dict], result: Clustering, output_field: str) -> None:
    """Each record's cluster id in ``output_field`` and its cosine to the centre in ``output_field``_similarity."""
    sim_field = f"{output_field}_similarity"
    for rec, label, sim in zip(records, result.labels, result.sims, strict=True):
        rec[output_field] = int(label)
        rec[sim_field] = None if label < 0 else round(float(sim), 6)


def metrics(gold: list, labels: np.ndarray) -> dict:
    """Agreement of the clusters with gold labels (``cluster --eval``)."""
    from sklearn import metrics as m

    gold = [str(g) for g in gold]
    return {
        "v_measure": float(m.v_measure_score(gold, labels)),
        "adjusted_rand": float(m.adjusted_rand_score(gold, labels)),
        "nmi": float(m.normalized_mutual_info_score(gold, labels)),
        "clusters": int(labels.max()) + 1,
    }


# --------------------------------------------------------------------------- summaries


def summary(records: list[dict], result: Clustering, text_field: str = "text", top: int = 5) -> list[dict]:
    """One line per cluster: its size, the ``top`` members nearest its centre, keywords and a label."""
    members: dict[int, list[int]] = {}
    for i, label in enumerate(result.labels):
        if label >= 0:
            members.setdefault(int(label), []).append(i)
    texts = {
        c: [records[i][text_field] for i in idx if isinstance(records[i].get(text_field), str)]
        for c, idx in members.items()
    }
    words = keywords(texts) if any(texts.values()) else {}
    lines = []
    for c in sorted(members):
        idx = np.array(members[c])
        best = idx[np.argsort(-result.sims[idx], kind="stable")[:top]]
        reps = [
            {f: records[i][f] for f in ("id", "row", text_field) if f in records[i]}
            | {"similarity": round(float(result.sims[i]), 6)}
            for i in best
        ]
        line = {"cluster": c, "size": len(idx), "representatives": reps}
        if words.get(c):
            line |= {"keywords": words[c], "label": " ".join(words[c][:3])}
        lines.append(line)
    return lines


_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_+-]{2,}")


def keywords(texts_by_cluster: dict[int, list[str]], top: int = 5) -> dict[int, list[str]]:
    """Class-based TF-IDF (BERTopic's c-TF-IDF): words frequent in a cluster and rare across clusters."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    counts = {
        c: Counter(w.lower() for t in texts for w in _WORD.findall(t) if w.lower() not in ENGLISH_STOP_WORDS)
        for c, texts in texts_by_cluster.items()
    }
    total = Counter()
    for cnt in counts.values():
        total.update(cnt)
    avg_words = sum(total.values()) / max(len(counts), 1)
    out = {}
    for c, cnt in counts.items():
        size = sum(cnt.values()) or 1
        scored = {w: (n / size) * np.log(1 + avg_words / total[w]) for w, n in cnt.items()}
        out[c] = [w for w, _ in sorted(scored.items(), key=lambda kv: (-kv[1], kv[0]))[:top]]
    return out
