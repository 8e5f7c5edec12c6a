"""Classification heads over unit vectors: zero-shot label vectors, centroids, kNN vote, logistic regression.

A head is fitted once and applied in any later run: ``save`` writes an NPZ of
plain arrays (no pickle), with the labels and the provenance of the vectors it
was fitted on, so it refuses vectors from another model.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from embcli.env import current
from embcli.errors import IncompatibleError, InputError, UsageError
from embcli.search import neighbors
from embcli.search.neighbors import unit

KINDS = ("zero-shot", "centroid", "knn", "logreg")


@dataclass
class Head:
    kind: str
    labels: list[str]
    provenance: dict | None = None
    vectors: np.ndarray | None = None  # zero-shot / centroid: one unit vector per label; knn: training vectors
    targets: np.ndarray | None = None  # knn: label index per training vector
    coef: np.ndarray | None = None  # logreg: (labels, dims)
    intercept: np.ndarray | None = None
    k: int = 10
    extra: dict = field(default_factory=dict)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """(n, labels): cosine (zero-shot, centroid), vote share (knn) or probability (logreg)."""
        x = unit(x)
        if self.kind in ("zero-shot", "centroid"):
            return x @ self.vectors.T
        if self.kind == "knn":
            idx, sims = neighbors.search(self.vectors, x, self.k)
            votes = np.zeros((len(x), len(self.labels)), dtype=np.float64)
            weights = np.clip(sims, 0, None) + 1e-6  # similarity-weighted vote
            np.add.at(votes, (np.repeat(np.arange(len(x)), idx.shape[1]), self.targets[idx].ravel()), weights.ravel())
            return votes / votes.sum(axis=1, keepdims=True)
        logits = x @ self.coef.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def check(self, dims: int, provenance: dict | None) -> None:
        width = self.coef.shape[1] if self.coef is not None else self.vectors.shape[1]
        if dims != width:
            raise IncompatibleError(f"the head was fitted on {width}-d vectors, these have {dims}")
        if provenance and self.provenance and provenance != self.provenance:
            raise IncompatibleError(
                f"the head was fitted on vectors of {self.provenance.get('model')} "
                f"({self.provenance.get('dims')}-d, prompt {self.provenance.get('prompt')!r}), not these"
            )

    def save(self, path: str) -> None:
        from embcli.io.files import atomic_file

        settings = ("kind", "labels", "k", "provenance", "extra")
        meta = {"format": "embcli-head", "version": 1, **{name: getattr(self, name) for name in settings}}
        arrays = {n: a for n in ("vectors", "targets", "coef", "intercept") if (a := getattr(self, n)) is not None}
        with atomic_file(path) as f:
            np.savez(f, meta=np.array(json.dumps(meta)), **arrays)

    @classmethod
    def load(cls, path: str) -> Head:
        """A saved head, checked before use: its kind's arrays, their dtypes and shapes, finite values."""
        from embcli.io import npzfile

        meta, arrays = npzfile.load(path, "embcli-head", ("vectors", "targets", "coef", "intercept"))
        kind, labels, k = meta.get("kind"), meta.get("labels"), meta.get("k")
        if kind not in KINDS:
            raise npzfile.bad(path, "embcli-head", f"unknown kind {kind!r}")
        if not (isinstance(labels, list) and all(isinstance(v, str) for v in labels) and len(set(labels)) >= 2):
            raise npzfile.bad(path, "embcli-head", "'labels' must be 2 or more distinct strings")
        if len(set(labels)) != len(labels):
            raise npzfile.bad(path, "embcli-head", "'labels' repeats a label")
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise npzfile.bad(path, "embcli-head", f"'k' is {k!r}, not a positive integer")
        if not isinstance(meta.get("provenance"), (dict, type(None))) or not isinstance(meta.get("extra"), dict):
            raise npzfile.bad(path, "embcli-head", "'provenance' or 'extra' is not an object")
        checked = _head_arrays(kind, len(labels), arrays, path)
        if extra := sorted(set(arrays) - set(checked)):
            raise npzfile.bad(path, "embcli-head", f"unexpected array {extra[0]!r} for a {kind} head")
        return cls(kind, labels, meta["provenance"], k=k, extra=meta["extra"], **checked)


def _head_arrays(kind: str, n_labels: int, arrays: dict, path: str) -> dict[str, np.ndarray]:
    """The arrays a head of ``kind`` needs, checked to agree with each other and with its labels."""
    from embcli.io.npzfile import bad, float_array

    def rows_per_label(name: str, a: np.ndarray) -> np.ndarray:
        if len(a) != n_labels:
            raise bad(path, "embcli-head", f"{name!r} has {len(a)} rows for {n_labels} labels")
        return a

    if kind in ("zero-shot", "centroid"):
        return {"vectors": rows_per_label("vectors", float_array(arrays, "vectors", 2, path, "embcli-head"))}
    if kind == "logreg":
        coef = rows_per_label("coef", float_array(arrays, "coef", 2, path, "embcli-head"))
        intercept = rows_per_label("intercept", float_array(arrays, "intercept", 1, path, "embcli-head"))
        return {"coef": coef, "intercept": intercept}
    vectors = float_array(arrays, "vectors", 2, path, "embcli-head")
    targets = arrays.get("targets")
    if targets is None or targets.dtype.kind not in "iu" or targets.shape != (len(vectors),):
        what = "missing" if targets is None else f"{targets.dtype} {targets.shape}"
        raise bad(path, "embcli-head", f"'targets' is {what}, expected {len(vectors)} integers (one per vector)")
    if len(targets) and not (targets.min() >= 0 and targets.max() < n_labels):
        raise bad(path, "embcli-head", f"'targets' points outside the {n_labels} labels")
    return {"vectors": vectors, "targets": targets}


def fit(kind: str, x: np.ndarray, y: list, *, k: int = 10, seed: int = 0, provenance: dict | None = None) -> Head:
    """A supervised head from labelled vectors."""
    labels = sorted({str(v) for v in y})
    if len(labels) < 2:
        raise InputError(f"training data needs at least 2 labels, found {len(labels)}")
    current().phase(f"fitting a {kind} head on {len(y):,} vectors, {len(labels)} labels…")
    target = np.array([labels.index(str(v)) for v in y])
    x = unit(x)
    if kind == "centroid":
        vectors = unit(np.vstack([x[target == i].mean(axis=0) for i in range(len(labels))]))
        return Head("centroid", labels, provenance, vectors=vectors)
    if kind == "knn":
        return Head("knn", labels, provenance, vectors=x, targets=target, k=k)
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=10.0, max_iter=2000, random_state=seed).fit(x, target)
    coef, intercept = model.coef_.astype(np.float32), model.intercept_.astype(np.float32)
    if len(labels) == 2:  # sklearn fits one row for two classes: softmax([0, z]) == sigmoid(z)
        coef, intercept = np.vstack([np.zeros_like(coef), coef]), np.r_[0.0, intercept].astype(np.float32)
    return Head("logreg", labels, provenance, coef=coef, intercept=intercept)


@dataclass
class LabelSpec:
    name: str
    description: str = ""
    keywords: list[str] = field(default_factory=list)


def label_texts(spec: LabelSpec, template: str) -> list[str]:
    """What stands for a label: the template around it, its own words, description and keywords."""
    texts = [template.format(label=spec.name), spec.name]
    if spec.description:
        texts.append(spec.description)
    if spec.keywords:
        texts.append(", ".join(spec.keywords))
    return texts


def zero_shot(specs: list[LabelSpec], template: str, encode, provenance: dict | None) -> Head:
    """Each label's vector: the normalized mean of its texts' vectors."""
    if len({s.name for s in specs}) != len(specs) or len(specs) < 2:
        raise UsageError("give at least 2 distinct labels")
    current().phase(f"embedding {len(specs)} labels…")
    vectors = unit(np.vstack([unit(encode(label_texts(s, template))).mean(axis=0) for s in specs]))
    return Head("zero-shot", [s.name for s in specs], provenance, vectors=vectors, extra={"template": template})


def refine(head: Head, x: np.ndarray, top: int) -> Head:
    """Lbl2TransformerVec: each label vector becomes the centroid of the documents nearest to it."""
    current().phase(f"refining {len(head.labels)} label vectors on {len(x):,} vectors…")
    x = unit(x)
    sims = x @ head.vectors.T
    best = sims.argmax(axis=1)
    vectors = head.vectors.copy()
    for i in range(len(head.labels)):
        # Documents this label wins, most similar first; fall back to its nearest ones overall.
        own = np.flatnonzero(best == i)
        pool = own if len(own) else np.arange(len(x))
        chosen = pool[np.argsort(-sims[pool, i], kind="stable")[:top]]
        vectors[i] = unit(x[chosen].mean(axis=0, keepdims=True))[0]
    return Head(head.kind, head.labels, head.provenance, vectors=vectors, extra={**head.extra, "refined_top": top})


def confusion_table(gold: list[str], pred: list[str | None], labels: list[str]) -> str:
    names = sorted(set(labels) | set(gold) | {p for p in pred if p is not None})
    cols = [*names, "(none)"] if any(p is None for p in pred) else names
    index = {n: i for i, n in enumerate(cols)}
    m = np.zeros((len(names), len(cols)), dtype=int)
    for g, p in zip(gold, pred, strict=True):
        m[names.index(g), index[p if p is not None else "(none)"]] += 1
    corner = "gold \\ predicted"
    first = max(len(corner), *(len(n) for n in names))
    width = max(6, *(len(c) for c in cols))
    lines = [corner.ljust(first) + "".join(c.rjust(width + 1) for c in cols)]
    for i, name in enumerate(names):
        lines.append(name.ljust(first) + "".join(str(v).rjust(width + 1) for v in m[i]))
    return "\n".join(lines)


# --------------------------------------------------------------------------- heads from options and files


def parse_labels(names: str) -> list[LabelSpec]:
    """Comma-separated label names (``--labels``)."""
    return [LabelSpec(s.strip()) for s in names.split(",") if s.strip()]


def read_labels(path: str) -> list[LabelSpec]:
    """``--labels-file``: one label per line, or JSONL {"label", "description", "keywords"}."""
    import orjson

    try:
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError as e:
        raise UsageError(f"cannot read labels: {e.strerror}, {path}") from None
    specs = []
    for i, line in enumerate(lines, start=1):
        if line.startswith("{"):
            try:
                d = orjson.loads(line)
                specs.append(
                    LabelSpec(
                        str(d["label"]), str(d.get("description") or ""), [str(w) for w in d.get("keywords") or []]
                    )
                )
            except (orjson.JSONDecodeError, KeyError, TypeError):
                raise InputError(f"label record without a 'label', {path} line {i}") from None
        else:
            specs.append(LabelSpec(line))
    if not specs:
        raise InputError(f"no labels in {path}")
    return specs


def zero_shot_model(model: str | None, provenance: dict | None) -> str | None:
    """The model zero-shot labels are embedded with: the records', else ``model`` (None: the default)."""
    return provenance.get("model") if isinstance(provenance, dict) else model


def zero_shot_head(
    specs: list[LabelSpec], template: str, *, model: str | None = None, provenance: dict | None = None
) -> Head:
    """Label vectors embedded the way the records were (their ``provenance``), else with ``model``.

    The caller builds the built-in model's graph first if it is that one (``api.ensure_model``).
    """
    from embcli.runtime.encoder import Encoder, encoder_from_provenance
    from embcli.store.models import resolve_model

    if "{label}" not in template:
        raise UsageError("--template must contain {label}")
    current().phase("loading the model for the labels…")
    if provenance is not None:
        encoder = encoder_from_provenance(provenance)
    else:
        encoder = Encoder(resolve_model(model))
        provenance = None if model is None else encoder.provenance()
    return zero_shot(specs, template, encoder.encode, provenance)


def fit_records(
    pairs: list[tuple], where: str, *, label_field: str, kind: str, k: int, seed: int, model_field: str
) -> Head:
    """A supervised head fitted on embedded records (``--train``): (record, vector) pairs from ``where``."""
    if any(r.npy for r, _ in pairs):
        raise InputError(f"--train needs JSONL records with a {label_field!r} field, not NPY, {where}")
    missing = [i + 1 for i, (r, _) in enumerate(pairs) if r.data.get(label_field) is None]
    if missing:
        raise InputError(
            f"--train record {missing[0]} has no {label_field!r} label, {where}", hint="name it with --label-field"
        )
    provs = {str(r.data.get(model_field)) for r, _ in pairs}
    if len(provs) > 1:
        raise InputError(f"--train mixes vectors from several models or options, {where}")
    prov = pairs[0][0].data.get(model_field) if pairs else None
    x = np.vstack([v for _, v in pairs]) if pairs else np.zeros((0, 0), np.float32)
    return fit(kind, x, [r.data[label_field] for r, _ in pairs], k=k, seed=seed, provenance=prov)


# --------------------------------------------------------------------------- applying a head


@dataclass
class LabelOptions:
    """How predictions become record fields (the ``classify`` command's output flags)."""

    threshold: float | None = None  # below this score the label is None
    all_scores: bool = False
    output_field: str = "label"
    score_field: str = "score"
    scores_field: str = "scores"
    overwrite: bool = False

    @property
    def fields(self) -> list[str]:
        return [self.output_field, self.score_field] + ([self.scores_field] if self.all_scores else [])


@dataclass
class Predictions:
    """A head's answer for n vectors: the label (None below the threshold), its score, and every score."""

    labels: list[str | None]
    scores: np.ndarray  # (n,) the best label's score
    all_scores: np.ndarray  # (n, len(classes))
    classes: list[str]


def predict(head: Head, x: np.ndarray, threshold: float | None = None) -> Predictions:
    scores = head.scores(x)
    best = scores.argmax(axis=1)
    top = scores[np.arange(len(scores)), best]
    labels = [
        head.labels[b] if threshold is None or float(s) >= threshold else None for b, s in zip(best, top, strict=True)
    ]
    return Predictions(labels, top, scores, list(head.labels))


def label_records(
    head: Head, records: list[dict], x: np.ndarray, provenance: dict | None, options: LabelOptions
) -> Predictions:
    """Check the vectors against the head, predict, and add the result fields to the records."""
    from embcli.analysis.records import check_free

    check_free(records, options.fields, options.overwrite, rename="--output-field/--score-field/--scores-field")
    head.check(x.shape[1], provenance)
    pred = predict(head, x, options.threshold)
    for i, rec in enumerate(records):
        rec[options.output_field], rec[options.score_field] = pred.labels[i], round(float(pred.scores[i]), 6)
        if options.all_scores:
            row = pred.all_scores[i]
            rec[options.scores_field] = {name: round(float(s), 6) for name, s in zip(head.labels, row, strict=True)}
    return pred


def metrics(gold: list, predicted: list[str | None], labels: list[str]) -> dict:
    """Accuracy, macro F1 and the confusion table against gold labels (``classify --eval``)."""
    from sklearn.metrics import accuracy_score, f1_score

    gold = [str(g) for g in gold]
    pred = [p if p is not None else "(none)" for p in predicted]
    return {
        "accuracy": float(accuracy_score(gold, pred)),
        "macro_f1": float(f1_score(gold, pred, average="macro", zero_division=0)),
        "confusion": confusion_table(gold, predicted, labels),
    }


def check_mode(zero_shot: bool, train: bool, head: bool, refine: bool) -> None:
    """Exactly one way to get a head: zero-shot labels, training records, or a saved head."""
    if zero_shot + train + head != 1:
        raise UsageError("give exactly one of --labels/--labels-file (zero-shot), --train FILE or --head-file FILE")
    if refine and not zero_shot:
        raise UsageError("--refine is for zero-shot labels")


def label_chunks(
    head: Head, chunks: Iterable[list[tuple]], provenance: dict | None, options: LabelOptions
) -> Iterator[tuple[list[dict], Predictions]]:
    """Label (record, vector) chunks as they come: NPY rows become {"row": i}."""
    for chunk in chunks:
        if not chunk:
            continue
        x = np.vstack([v for _, v in chunk])
        records = [r.fields() for r, _ in chunk]
        yield records, label_records(head, records, x, provenance, options)
