"""The Python API: embcli's encoder, indexes, streams and analyses, for notebooks, jobs and clusters.

Every function here runs the same core as the matching command and gives the
same results; failures are the typed errors of ``embcli.errors`` that the CLI
maps to exit codes. Nothing here prints: notices go through ``embcli.env``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, TYPE_CHECKING

import numpy as np

from embcli.errors import UsageError

if TYPE_CHECKING:
    from embcli.runtime.encoder import Encoder as _RuntimeEncoder
    from embcli.search.query import Hit, Searcher
    from embcli.store.models import ModelSpec

PathOrFile = str | os.PathLike | IO[bytes]


def resolve(model: str | None = None, device: str = "auto") -> ModelSpec:
    """The model named ``model`` (default: $EMBCLI_MODEL, else the built-in one), built first if it must be."""
    from embcli.store.models import resolve_model

    return resolve_model(model)


class Encoder:
    """One model, loaded once, turning texts into vectors exactly as ``embcli embed`` does.

    >>> enc = Encoder()                                  # the built-in all-MiniLM-L6-v2
    >>> enc.embed(["first text", "second"]).shape
    (2, 384)
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "auto",
        threads: int | None = None,
        max_length: int | None = None,
        pooling: str | None = None,
        normalize: bool | None = None,
        prompt: str | None = None,
        prompt_name: str | None = None,
        dims: int | None = None,
        batch_size: int = 32,
        max_batch_tokens: int = 8192,
    ) -> None:
        from embcli.runtime.encoder import Encoder as RuntimeEncoder

        self._enc: _RuntimeEncoder = RuntimeEncoder(
            resolve(model, device),
            device=device,
            threads=threads,
            max_length=max_length,
            pooling=pooling,
            normalize=normalize,
            prompt=prompt,
            prompt_name=prompt_name,
            dims=dims,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
        )

    @property
    def dims(self) -> int:
        """Width of the vectors this encoder makes."""
        return self._enc.dim

    @property
    def device(self) -> str:
        """Where the model runs: ``cpu`` or ``cuda``."""
        return self._enc.device

    @property
    def max_length(self) -> int:
        return self._enc.max_length

    @property
    def provenance(self) -> dict:
        """The ``embedding_model`` record: model, graph sha256 prefix and options."""
        return self._enc.provenance()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of ``texts`` as float32 ``(n, dims)``, in input order."""
        if isinstance(texts, str):
            raise UsageError("embed() takes a list of texts, not one string")
        if not len(texts):
            return np.empty((0, self.dims), dtype=np.float32)
        return self._enc.encode(list(texts))

    def embed_records(
        self,
        records: Iterable[dict],
        *,
        text_field: str = "text",
        vector_field: str = "embedding",
        model_field: str = "embedding_model",
        overwrite: bool = False,
        skip_bad: bool = False,
    ) -> Iterator[dict]:
        """Each record with its vector (a float32 array) and provenance added, streaming, in input order.

        Bad records raise ``InputError`` (``skip_bad=True`` skips them), as ``embed`` does.
        """
        from embcli.io.streams import BadRecords, Record
        from embcli.runtime.embedding import EmbedStats, embed_records

        reserved = () if overwrite else tuple(f for f in (vector_field, model_field) if f)
        numbered = (Record(i, dict(r)) for i, r in enumerate(records, start=1))
        prov = self.provenance
        for recs, vecs in embed_records(
            numbered,
            self._enc,
            source="<records>",
            text_field=text_field,
            bad=BadRecords(skip=skip_bad),
            stats=EmbedStats(),
            reserved=reserved,
        ):
            for rec, vec in zip(recs, vecs, strict=True):
                rec.data[vector_field] = vec
                if model_field:
                    rec.data[model_field] = prov
                yield rec.data


class Index:
    """An on-disk index (one directory, or several shards searched as one).

    >>> Index.build("docs.idx", enc.embed_records(records))   # doctest: +SKIP
    >>> Index.open("docs.idx").search(["query text"], k=5)    # doctest: +SKIP
    """

    def __init__(self, searcher: Searcher) -> None:
        self._searcher = searcher

    @classmethod
    def build(
        cls,
        path: str | os.PathLike,
        records_or_vectors: Iterable[dict] | np.ndarray,
        *,
        ids: Sequence[object] | None = None,
        metric: str = "cos",
        dtype: str = "f32",
        model: str | None = None,
        append: bool = False,
        force: bool = False,
        vector_field: str = "embedding",
        model_field: str = "embedding_model",
        store_text: bool = True,
        text_field: str = "text",
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 128,
        keep_floats: bool = False,
        threads: int = 1,
    ) -> Index:
        """Build (or ``append`` to) the index at ``path`` from records with vectors, or from a 2-D array.

        Records keep every field but the vector as payload and their ``id``; array
        rows take ``ids`` (default: row numbers). The model comes from the records'
        provenance, or ``model`` for bare vectors.
        """
        from embcli.io.streams import BadRecords, Record, parse_vector
        from embcli.search.index import IndexOptions, IndexWriter
        from embcli.search.ingest import IngestOptions, add_all

        options = IndexOptions(metric, dtype, connectivity, expansion_add, expansion_search, keep_floats)
        if isinstance(records_or_vectors, np.ndarray):
            matrix = np.asarray(records_or_vectors, dtype=np.float32)
            if matrix.ndim != 2:
                raise UsageError(f"vectors must be a 2-D array, got shape {matrix.shape}")
            _check_finite(matrix)
            items: Iterable = ((Record(i, {}, npy=True), row) for i, row in enumerate(matrix, start=1))
            id_list = list(ids) if ids is not None else None
        else:
            if ids is not None:
                raise UsageError("ids are for an array of vectors; records carry their own id")

            def checked() -> Iterator:
                for i, rec in enumerate(records_or_vectors, start=1):
                    where = f"<records> record {i}"
                    vec = rec.get(vector_field)
                    if isinstance(vec, np.ndarray):
                        vec = vec.tolist()
                    yield Record(i, dict(rec)), parse_vector(vec, vector_field, where)

            items, id_list = checked(), None
        writer = IndexWriter(
            path, options, append=append, force=force, store_text=store_text, text_field=text_field, threads=threads
        )
        try:
            bad = BadRecords()
            ingest = IngestOptions(vector_field, model_field, model, id_list)
            rows = add_all(writer, items, "<records>", ingest, bad)
            if rows == 0 and not append:
                raise UsageError("no vectors to index")
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        return cls.open(path)

    @classmethod
    def open(
        cls,
        *paths: str | os.PathLike,
        device: str = "auto",
        threads: int | None = None,
        prompt: str | None = None,
        prompt_name: str | None = None,
    ) -> Index:
        """Open an index (several paths: shards searched together) after checking its files."""
        from embcli.search.query import QueryOptions, Searcher

        if not paths:
            raise UsageError("Index.open() needs a path")
        return cls(Searcher([os.fspath(p) for p in paths], QueryOptions(prompt, prompt_name, device, threads)))

    @property
    def dims(self) -> int:
        return self._searcher.dims

    @property
    def provenance(self) -> dict | None:
        """The model and options that made the indexed vectors (None when the index records none)."""
        return self._searcher.provenance

    def __len__(self) -> int:
        return sum(r.count for r in self._searcher.readers)

    def search(
        self,
        queries: Sequence[str] | np.ndarray,
        k: int = 10,
        *,
        where: str | None = None,
        exact: bool = False,
        expansion_search: int | None = None,
        full_scan_threshold: int | None = None,
        rescore: int = 0,
    ) -> list[list[Hit]]:
        """Top-``k`` hits per query, best first: texts (embedded as the index's manifest says) or vectors."""
        from embcli.search.query import SearchOptions

        if isinstance(queries, str):
            raise UsageError("search() takes a list of queries, not one string")
        if isinstance(queries, np.ndarray):
            vectors = np.atleast_2d(np.asarray(queries, dtype=np.float32))
            _check_finite(vectors)
        elif not len(queries):
            return []
        else:
            vectors = self._searcher.embed(list(queries))
        options = SearchOptions(k, exact, where, expansion_search, rescore=rescore)
        if full_scan_threshold is not None:
            options.full_scan_threshold = full_scan_threshold
        return self._searcher.search(vectors, options)

    def close(self) -> None:
        self._searcher.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_finite(x: np.ndarray) -> None:
    from embcli.errors import InputError

    bad = ~np.isfinite(x).all(axis=1) if x.ndim == 2 else ~np.isfinite(x)
    if bad.any():
        raise InputError(f"vector row {int(np.argmax(bad)) + 1} holds NaN or Inf")


def read_records(
    source: PathOrFile | None = None, *, input_format: str = "jsonl", text_field: str = "text", skip_bad: bool = False
) -> Iterator[dict]:
    """Records from a JSONL file (or plain text lines with ``input_format="text"``); None reads stdin."""
    from embcli.io.streams import BadRecords, iter_records

    with _source(source) as src:
        for rec in iter_records(src, input_format, text_field, BadRecords(skip=skip_bad)):
            yield rec.data


def read_vectors(source: PathOrFile | None = None, *, vector_field: str = "embedding") -> tuple[list[dict], np.ndarray]:
    """(records, float32 matrix) from embedded JSONL or NPY (records are ``{}`` for NPY rows)."""
    from embcli.io.streams import BadRecords, iter_embedded

    records, rows = [], []
    with _source(source) as src:
        for rec, vec in iter_embedded(src, vector_field, BadRecords()):
            records.append(rec.data)
            rows.append(vec)
    width = rows[0].shape[0] if rows else 0
    return records, (np.vstack(rows).astype(np.float32, copy=False) if rows else np.empty((0, width), np.float32))


def write_records(
    records: Iterable[dict] | np.ndarray, target: PathOrFile | None = None, *, format: str | None = None
) -> int:
    """Write records as JSONL (vectors as arrays), or a matrix as NPY; returns the count.

    A path is written atomically (temp + fsync + rename); None writes stdout.
    The format is ``format``, else ``npy`` for a ``.npy`` path or an array, else ``jsonl``.
    """
    from embcli.io.streams import JsonlWriter, NpyWriter, output_stream

    is_path = target is None or isinstance(target, (str, os.PathLike))
    name = os.fspath(target) if is_path and target is not None else None
    fmt = format or ("npy" if isinstance(records, np.ndarray) or (name or "").endswith(".npy") else "jsonl")
    if fmt not in ("jsonl", "npy"):
        raise UsageError(f"unknown format {fmt!r}; choose jsonl or npy")

    def write(f: IO[bytes]) -> int:
        if fmt == "npy":
            matrix = np.asarray(records if isinstance(records, np.ndarray) else [r for r in records], np.float32)
            writer = NpyWriter(f)
            writer.write(np.atleast_2d(matrix))
            writer.close()
            return len(matrix)
        jsonl, n = JsonlWriter(f), 0
        for rec in records:
            jsonl.write(rec)
            n += 1
        jsonl.flush()
        return n

    if is_path:
        with output_stream(name) as f:
            return write(f)
    return write(target)  # type: ignore[arg-type]


class _source:
    """A Source over a path, an open binary file, or stdin."""

    def __init__(self, source: PathOrFile | None) -> None:
        from embcli.io.streams import Source

        if source is None or isinstance(source, (str, os.PathLike)):
            self.src = Source(None if source is None else os.fspath(source))
        else:
            self.src = Source.from_file(source)

    def __enter__(self):
        return self.src

    def __exit__(self, *exc: object) -> None:
        self.src.close()




# --------------------------------------------------------------------------- analyses
#
# cluster, classify, detect_anomalies, diff and quantize: the cores the commands run, on a
# float32 matrix (one row per record, as ``read_vectors`` gives), with the commands' defaults.
# Rows with NaN or Inf are bad input (InputError), as they are on the command line.

from dataclasses import dataclass as _dataclass  # noqa: E402 - this section is appended to the API

if TYPE_CHECKING:
    from embcli.analysis.anomaly import Detector
    from embcli.analysis.classify import Head, LabelSpec
    from embcli.analysis.diff import DiffResult
    from embcli.analysis.quantize import Quantizer


def _matrix(vectors: np.ndarray) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise UsageError(f"vectors must be a 2-D array, got shape {x.shape}")
    _check_finite(x)
    return x


@_dataclass
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


@_dataclass
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


@_dataclass
class Anomalies:
    """``detect-anomalies``' answer: a score per row (higher = more anomalous) and the flags above ``threshold``."""

    scores: np.ndarray  # (n,)
    flags: np.ndarray  # (n,) bool
    threshold: float
    detector: Detector  # ``detector.save(path)`` keeps it, as ``--save-detector`` does


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
) -> Anomalies:
    """Score rows as ``embcli detect-anomalies`` does: each row against the others (outlier mode),
    or against ``reference`` rows / a fitted ``detector`` (novelty mode). Flags the top
    ``contamination`` share (default 0.01, of the reference in novelty mode), or scores above ``threshold``.
    """
    from embcli.analysis import anomaly as core

    if reference is not None and detector is not None:
        raise UsageError("give --reference or --detector-file, not both")
    options = core.AnomalyOptions(method, k, aggregate, seed, contamination, threshold)
    x = _matrix(vectors)
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


@_dataclass
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


__all__ += ["Anomalies", "Classification", "Clusters", "Quantized", "classify", "cluster", "detect_anomalies"]
__all__ += ["diff", "quantize"]
