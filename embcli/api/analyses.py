"""The analyses from Python: cluster, classify, detect_anomalies, diff and quantize.

The cores the commands run, on a float32 matrix (one row per record, as
``read_vectors`` gives), with the commands' defaults and results. Rows with NaN
or Inf are bad input (InputError), as they are on the command line.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from embcli.api.encoding import ensure_model
from embcli.api.records import check_finite
from embcli.errors import UsageError

# --------------------------------------------------------------------------- analyses
#
# cluster, classify, detect_anomalies, diff and quantize: the cores the commands run, on a
# float32 matrix (one row per record, as ``read_vectors`` gives), with the commands' defaults.
# Rows with NaN or Inf are bad input (InputError), as they are on the command line.


if TYPE_CHECKING:
    from embcli.analysis.anomaly import Detector
    from embcli.analysis.classify import Head, LabelSpec
    from embcli.analysis.diff import DiffResult
    from embcli.analysis.quantize import Quantizer
    from embcli.analysis.terms import TermShift
    from embcli.runtime.adapter import Adapter


def _matrix(vectors: np.ndarray) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise UsageError(f"vectors must be a 2-D array, got shape {x.shape}")
    check_finite(x)
    return x


@dataclass
class Clusters:
    """``cluster``'s answer: a cluster per row (-1 = noise), numbered by decreasing size."""

    labels: np.ndarray  # (n,) int64
    similarity: np.ndarray  # (n,) float32 cosine to the cluster's centre; NaN for noise
    centres: np.ndarray  # (n_clusters, dims) unit vectors
    note: str = ""  # what was chosen and why (k="auto")

    @property
    def n_clusters(self) -> int:
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    def summary(self, records: Sequence[dict], *, text_field: str = "text", top: int = 5) -> list[dict]:
        """``cluster --summary``'s lines: size, representatives (from ``records``), keywords, label."""
        from embcli.analysis.cluster import Clustering, summary

        result = Clustering(self.labels, self.centres, self.note, self.similarity)
        return summary(list(records), result, text_field, top)


def cluster(
    vectors: np.ndarray,
    k: int | str = 8,
    *,
    method: str = "kmeans",
    k_range: tuple[int, int] = (2, 20),
    n_init: int = 4,
    seed: int = 0,
    min_cluster_size: int = 5,
    threshold: float = 0.75,
    min_size: int = 10,
) -> Clusters:
    """Cluster rows as ``embcli cluster`` does: ``method`` is kmeans (``k`` clusters, or ``"auto"``:
    best silhouette in ``k_range``), hdbscan (``min_cluster_size``) or threshold (cosine ``threshold``,
    communities of at least ``min_size``). The same rows and seed give the same labels in any order.
    """
    from embcli.analysis.cluster import ClusterOptions
    from embcli.analysis.cluster import cluster as run

    x = _matrix(vectors)
    if not len(x):
        return Clusters(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros((0, x.shape[1]), np.float32))
    result = run(x, ClusterOptions(method, k, tuple(k_range), n_init, seed, min_cluster_size, threshold, min_size))
    return Clusters(result.labels, result.sims, result.centres, result.note)


@dataclass
class Classification:
    """``classify``'s answer: per row the label (None below ``threshold``) and its score, every score, the head."""

    labels: list[str | None]
    scores: np.ndarray  # (n,) cosine (zero-shot, centroid), vote share (knn) or probability (logreg)
    all_scores: np.ndarray  # (n, len(classes))
    classes: list[str]
    head: Head  # ``head.save(path)`` keeps it, as ``--save-head`` does


def classify(
    vectors: np.ndarray,
    *,
    labels: Sequence[str | LabelSpec] | None = None,
    train: tuple[np.ndarray, Sequence[object]] | None = None,
    head: Head | str | os.PathLike | None = None,
    template: str = "This text is about {label}.",
    refine: bool = False,
    refine_top: int = 10,
    model: str | None = None,
    provenance: dict | None = None,
    kind: str = "logreg",
    k: int = 10,
    seed: int = 0,
    threshold: float | None = None,
) -> Classification:
    """Label rows as ``embcli classify`` does, with exactly one of:

    - ``labels``: zero-shot label names (or ``LabelSpec`` with description and keywords), embedded
      through ``template`` by the model that ``provenance`` (the records' ``embedding_model``)
      names, else ``model``, else the built-in one; ``refine`` moves them to their nearest rows;
    - ``train=(vectors, labels)``: a ``kind`` head (logreg, knn with ``k``, centroid) fitted on them;
    - ``head``: a fitted head, or the path of one saved by ``--save-head``.
    """
    from embcli.analysis import classify as core

    x = _matrix(vectors)
    core.check_mode(labels is not None, train is not None, head is not None, refine)
    if labels is not None:
        specs = [s if isinstance(s, core.LabelSpec) else core.LabelSpec(str(s)) for s in labels]
        ensure_model(core.zero_shot_model(model, provenance), "auto")
        clf = core.zero_shot_head(specs, template, model=model, provenance=provenance)
        if refine and len(x):
            clf = core.refine(clf, x, refine_top)
    elif train is not None:
        clf = core.fit(kind, _matrix(train[0]), list(train[1]), k=k, seed=seed, provenance=provenance)
    else:
        clf = head if isinstance(head, core.Head) else core.Head.load(os.fspath(head))
    if not len(x):
        return Classification([], np.zeros(0, np.float32), np.zeros((0, len(clf.labels))), list(clf.labels), clf)
    clf.check(x.shape[1], provenance)
    pred = core.predict(clf, x, threshold)
    return Classification(pred.labels, pred.scores, pred.all_scores, pred.classes, clf)


@dataclass
class Anomalies:
    """``detect-anomalies``' answer: a score per row (higher = more anomalous) and the flags above ``threshold``."""

    scores: np.ndarray  # (n,)
    flags: np.ndarray  # (n,) bool
    threshold: float
    detector: Detector | None  # ``detector.save(path)`` keeps it, as ``--save-detector`` does; None with ``index``


def detect_anomalies(
    vectors: np.ndarray,
    *,
    method: str = "knn",
    k: int = 10,
    aggregate: str = "mean",
    contamination: float | None = None,
    threshold: float | None = None,
    reference: np.ndarray | None = None,
    detector: Detector | str | os.PathLike | None = None,
    seed: int = 0,
    provenance: dict | None = None,
    index: str | os.PathLike | None = None,
    ids: Sequence[object | None] | None = None,
    self_match: str = "auto",
) -> Anomalies:
    """Score rows as ``embcli detect-anomalies`` does: each row against the others (outlier mode),
    or against ``reference`` rows / a fitted ``detector`` (novelty mode), or (knn) against the items
    of an ``index`` built by ``embcli index`` (``--index``), where a row's own item is left out: found
    by its id in ``ids`` or by an identical stored vector (``self_match``: auto, id, vector, none).
    Flags the top ``contamination`` share (default 0.01, of the reference in novelty mode), or
    scores above ``threshold``. ``detector`` is None in the answer of an index run.
    """
    from embcli.analysis import anomaly as core

    if reference is not None and detector is not None:
        raise UsageError("give --reference or --detector-file, not both")
    options = core.AnomalyOptions(method, k, aggregate, seed, contamination, threshold)
    x = _matrix(vectors)
    if index is not None:
        return _against_index(x, os.fspath(index), ids, self_match, options, provenance, reference, detector)
    if reference is None and detector is None:
        det, scores, level = core.score_outliers(x, options, provenance)
        return Anomalies(scores, scores > level, level, det)
    if detector is not None:
        det = detector if isinstance(detector, core.Detector) else core.Detector.load(os.fspath(detector))
    else:
        det = core.fit_reference(_matrix(reference), options, provenance)
    level = core.flag_level(det, det.score(), options)
    if not len(x):
        return Anomalies(np.zeros(0), np.zeros(0, bool), level, det)
    det.check(x.shape[1], provenance)
    scores = det.score(x)
    return Anomalies(scores, scores > level, level, det)


def _against_index(x, index, ids, self_match, options, provenance, reference, detector) -> Anomalies:
    from embcli.analysis.anomaly import score_against_index
    from embcli.search.shards import open_readers

    if reference is not None or detector is not None:
        raise UsageError("index scores against the index: give no reference or detector")
    if ids is not None and len(ids) != len(x):
        raise UsageError(f"ids: {len(ids)} ids for {len(x)} vectors")
    readers = open_readers([index])
    try:
        if not len(x):
            return Anomalies(np.zeros(0, np.float32), np.zeros(0, bool), float("nan"), None)
        ids = list(ids) if ids is not None else [None] * len(x)
        scores, level = score_against_index(x, ids, readers, options, provenance, self_match=self_match, where=index)
    finally:
        for r in readers:
            r.close()
    return Anomalies(scores, scores > level, level, None)


def _side(side: np.ndarray | tuple[list[dict], np.ndarray] | str | os.PathLike) -> tuple[np.ndarray, list[dict]]:
    from embcli.analysis.diff import read_side
    from embcli.io.streams import BadRecords

    if isinstance(side, (str, os.PathLike)):
        return read_side(os.fspath(side), "embedding", BadRecords())
    if isinstance(side, tuple):
        records, x = side
        return _matrix(x), [r or {"row": i} for i, r in enumerate(records)]
    x = _matrix(side)
    return x, [{"row": i} for i in range(len(x))]


def diff(
    a: np.ndarray | tuple[list[dict], np.ndarray] | str | os.PathLike,
    b: np.ndarray | tuple[list[dict], np.ndarray] | str | os.PathLike,
    *,
    by: str | None = None,
    alpha: float = 0.05,
    kernel: str = "rbf",
    permutations: int = 200,
    max_samples: int = 2000,
    seed: int = 0,
    k: int = 10,
    min_overlap: float = 0.8,
    top: int = 10,
    text_field: str = "text",
) -> DiffResult:
    """Is B like A? ``embcli diff``'s report, ``.different`` (its exit 1) and ``.items`` (``--items``' lines).

    Each side is a matrix, ``(records, matrix)`` as ``read_vectors`` returns, or a path. Corpus mode
    by default; ``by="id"`` compares the neighbourhoods of the same items (aligned mode).
    """
    from embcli.analysis.diff import DiffOptions, compare

    (xa, ra), (xb, rb) = _side(a), _side(b)
    options = DiffOptions(by, alpha, kernel, permutations, max_samples, seed, k, min_overlap, top, text_field)
    return compare(xa, ra, xb, rb, options)


def _texts(side: Sequence[str] | Sequence[dict] | str | os.PathLike, text_field: str, label: str):
    from embcli.analysis.terms import read_texts
    from embcli.io.streams import BadRecords

    if isinstance(side, (str, os.PathLike)):
        return read_texts(os.fspath(side), text_field, BadRecords(), label=label)
    items = list(side)
    if all(isinstance(t, str) for t in items):
        return items, [None] * len(items)
    if not all(isinstance(r, dict) and isinstance(r.get(text_field), str) for r in items):
        raise UsageError(f"{label} must be texts, records with a {text_field!r} string field, or a path")
    return [r[text_field] for r in items], [r.get("id") for r in items]


def term_shift(
    a: Sequence[str] | Sequence[dict] | str | os.PathLike,
    b: Sequence[str] | Sequence[dict] | str | os.PathLike,
    *,
    model: str | None = None,
    device: str = "auto",
    threads: int | None = None,
    text_field: str = "text",
    min_count: int = 10,
    max_occurrences: int = 64,
    min_ratio: float = 6.0,
    top: int = 10,
    examples: int = 2,
) -> TermShift:
    """Which words changed meaning from A to B, as ``embcli diff A B --terms`` says.

    Each side is a list of texts, a list of records (``text_field``, and ``id`` when
    present, for the example contexts) or a path. Words that occur at least ``min_count``
    times on both sides get a contextual vector per side from the model's token states
    (at most ``max_occurrences`` occurrences each); ``.report["most_moved"]`` ranks the
    ``top`` that moved most, with example contexts; ``.different`` is diff's exit 1.
    """
    from embcli.analysis.terms import TermOptions
    from embcli.analysis.terms import term_shift as run
    from embcli.api.encoding import Encoder

    if min_count < 2 or max_occurrences < 2:
        raise UsageError("min_count and max_occurrences must be at least 2")
    (ta, ia), (tb, ib) = _texts(a, text_field, "A"), _texts(b, text_field, "B")
    encoder = Encoder(model, device=device, threads=threads).runtime
    options = TermOptions(min_count, max_occurrences, top, examples, min_ratio)
    return run(ta, tb, encoder, options, ids_a=ia, ids_b=ib)


def fit_adapter(
    old: tuple[list[dict], np.ndarray] | str | os.PathLike,
    new: tuple[list[dict], np.ndarray] | str | os.PathLike,
    *,
    by: str = "id",
    kind: str = "auto",
    holdout: float = 0.2,
    seed: int = 0,
    k: int = 10,
    path: str | os.PathLike | None = None,
    model_field: str = "embedding_model",
) -> Adapter:
    """A query-drift adapter from ``new``'s model to ``old``'s, as ``embcli diff OLD NEW --by id --fit-adapter``.

    Each side is embedded records (a path, or ``(records, matrix)`` as ``read_vectors`` returns) whose
    provenance names its model; items are paired by ``by``. The held-out report is ``adapter.meta["fit"]``;
    ``path`` writes the adapter file too. Use it with ``Index.open(old_index, adapter=...)``.
    """
    from embcli.analysis.adapter import fit_from_sides
    from embcli.choices import ADAPTER_KINDS

    if kind not in ADAPTER_KINDS:
        raise UsageError(f"unknown adapter kind {kind!r}; choose from {', '.join(ADAPTER_KINDS)}")
    (xa, ra), (xb, rb) = _side(old), _side(new)
    adapter, _ = fit_from_sides(xa, ra, xb, rb, by, model_field=model_field, kind=kind, holdout=holdout, seed=seed, k=k)
    if path is not None:
        adapter.save(os.fspath(path))
    return adapter


def load_adapter(path: str | os.PathLike) -> Adapter:
    """An adapter file written by ``fit_adapter`` or ``diff --fit-adapter``, checked."""
    from embcli.runtime.adapter import load

    return load(os.fspath(path))


@dataclass
class Quantized:
    """``quantize``'s answer: the codes, one row per vector, and the quantizer that made them."""

    codes: np.ndarray  # f16, int8 or uint8 (binary: packed bit planes)
    quantizer: Quantizer | None  # None only for no vectors

    @property
    def info(self) -> dict:
        """The ``quantization`` field that records carry: scheme, dims, bits, dtype, ranges hash."""
        return self.quantizer.describe() if self.quantizer is not None else {}

    def save_ranges(self, path: str | os.PathLike) -> None:
        """Write the fitted ranges/scales as ``--save-ranges`` does, to code queries the same way later."""
        from embcli.io.files import atomic_file

        with atomic_file(os.fspath(path)) as f:
            f.write(self.quantizer.to_json())


def quantize(
    vectors: np.ndarray,
    to: str | None = None,
    *,
    bits: int = 1,
    dims: int | None = None,
    calibration: np.ndarray | str | os.PathLike | None = None,
    calibration_rows: int = 10_000,
    ranges: Quantizer | str | os.PathLike | None = None,
) -> Quantized:
    """Code rows as ``embcli quantize --to`` does: f16, int8, uint8, binary or ubinary (``bits`` planes),
    after keeping the first ``dims`` dimensions (renormalized). Ranges come from ``ranges`` (a saved
    file or a quantizer), else are fitted on ``calibration``, else on the first ``calibration_rows`` rows.
    """
    from embcli.analysis.quantize import CodeStream, QuantizeOptions

    x = _matrix(vectors)
    calib = calibration if calibration is None or isinstance(calibration, np.ndarray) else os.fspath(calibration)
    fixed = ranges if ranges is None or not isinstance(ranges, (str, os.PathLike)) else os.fspath(ranges)
    stream = CodeStream(QuantizeOptions(to, bits, dims, calib, calibration_rows, fixed))
    chunks = [codes for _, codes in stream.chunks(((None, row) for row in x), records=False)]
    codes = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
    return Quantized(codes, stream.quantizer)
