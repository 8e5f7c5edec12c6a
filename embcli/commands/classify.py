"""embcli classify: label embedded records, zero-shot or with a head fitted on labelled data."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from embcli.commands import _options as o
from embcli.commands._analysis import EvalField, EvalOut, check_free, gold_labels, report_eval
from embcli.commands._ui import say, warn

ZERO = "Zero-shot"
SUPERVISED = "Supervised"
CHUNK = 4096


class HeadKind(str, Enum):
    logreg = "logreg"
    knn = "knn"
    centroid = "centroid"


def classify(
    input: o.InputArg = None,
    output: o.Output = None,
    labels: Annotated[
        Optional[str],
        typer.Option(
            "--labels",
            metavar="A,B,…",
            help="Zero-shot: comma-separated label names.",
            show_default=False,
            rich_help_panel=ZERO,
        ),
    ] = None,
    labels_file: Annotated[
        Optional[str],
        typer.Option(
            "--labels-file",
            metavar="FILE",
            help='Zero-shot: one label per line, or JSONL {"label", "description", "keywords"}.',
            show_default=False,
            rich_help_panel=ZERO,
        ),
    ] = None,
    template: Annotated[
        str,
        typer.Option(
            "--template",
            metavar="TEXT",
            help="Zero-shot: how a label is put into words; {label} is replaced.",
            rich_help_panel=ZERO,
        ),
    ] = "This text is about {label}.",
    refine: Annotated[
        bool,
        typer.Option(
            "--refine",
            help="Zero-shot: move each label vector to the centroid of its nearest inputs (reads the whole input).",
            rich_help_panel=ZERO,
        ),
    ] = False,
    refine_top: Annotated[
        int,
        typer.Option(
            "--refine-top", min=1, metavar="N", help="--refine: documents per label centroid.", rich_help_panel=ZERO
        ),
    ] = 10,
    model: Annotated[
        Optional[str],
        typer.Option(
            "-m",
            "--model",
            metavar="NAME",
            help="Zero-shot: model for the labels when the records do not record one.",
            show_default=False,
            rich_help_panel=ZERO,
        ),
    ] = None,
    train: Annotated[
        Optional[str],
        typer.Option(
            "--train",
            metavar="FILE",
            help="Supervised: embedded records with labels to fit a head on.",
            show_default=False,
            rich_help_panel=SUPERVISED,
        ),
    ] = None,
    label_field: Annotated[
        str,
        typer.Option(
            "--label-field",
            metavar="NAME",
            help="Supervised: the label field of --train records.",
            rich_help_panel=SUPERVISED,
        ),
    ] = "label",
    head: Annotated[
        HeadKind,
        typer.Option(
            "--head",
            help="Supervised: logistic regression, weighted kNN vote, or nearest centroid.",
            rich_help_panel=SUPERVISED,
        ),
    ] = HeadKind.logreg,
    k: Annotated[
        int,
        typer.Option("-k", min=1, metavar="N", help="--head knn: neighbours that vote.", rich_help_panel=SUPERVISED),
    ] = 10,
    save_head: Annotated[
        Optional[str],
        typer.Option(
            "--save-head",
            metavar="FILE",
            help="Write the fitted head (or zero-shot label vectors) for later runs.",
            show_default=False,
            rich_help_panel=SUPERVISED,
        ),
    ] = None,
    head_file: Annotated[
        Optional[str],
        typer.Option(
            "--head-file",
            metavar="FILE",
            help="Apply a saved head: streams.",
            show_default=False,
            rich_help_panel=SUPERVISED,
        ),
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed for the logistic regression solver.", rich_help_panel=SUPERVISED)
    ] = 0,
    all_scores: Annotated[
        bool,
        typer.Option("--all-scores", help="Add every label's score (probabilities for logreg).", rich_help_panel=o.IO),
    ] = False,
    threshold: Annotated[
        Optional[float],
        typer.Option(
            "--threshold", help="Below this score the label is null.", show_default=False, rich_help_panel=o.IO
        ),
    ] = None,
    output_field: Annotated[
        str,
        typer.Option(
            "--output-field",
            metavar="NAME",
            help="Field for the label.",
            rich_help_panel=o.IO,
        ),
    ] = "label",
    score_field: Annotated[
        str, typer.Option("--score-field", metavar="NAME", help="Field for the label's score.", rich_help_panel=o.IO)
    ] = "score",
    scores_field: Annotated[
        str,
        typer.Option(
            "--scores-field", metavar="NAME", help="Field for every label's score (--all-scores).", rich_help_panel=o.IO
        ),
    ] = "scores",
    overwrite: o.Overwrite = False,
    eval_field: EvalField = None,
    eval_out: EvalOut = None,
    vector_field: o.VectorField = "embedding",
    model_field: o.ModelField = "embedding_model",
    on_error: o.OnErrorOpt = o.OnError.fail,
    quiet: o.Quiet = False,
) -> None:
    """Classify embedded records (JSONL with a vector, or NPY).

    Zero-shot: --labels or --labels-file, embedded through --template with the
    records' own model; scores are cosines. Supervised: --train FILE fits a head
    (logreg, knn or centroid) on labelled embedded records; --save-head keeps it
    and --head-file applies it in later runs. Streams, except with --refine.
    """
    import itertools

    import numpy as np

    from embcli.core.classify import Head, zero_shot
    from embcli.core.classify import refine as refine_head
    from embcli.core.streams import BadRecords, JsonlWriter, Source, iter_embedded, output_stream
    from embcli.errors import UsageError

    modes = [
        m
        for m, on in (("--labels/--labels-file", labels or labels_file), ("--train", train), ("--head-file", head_file))
        if on
    ]
    if len(modes) != 1:
        raise UsageError("give exactly one of --labels/--labels-file (zero-shot), --train FILE or --head-file FILE")
    if refine and not (labels or labels_file):
        raise UsageError("--refine is for zero-shot labels")
    result_fields = [output_field, score_field] + ([scores_field] if all_scores else [])
    bad = BadRecords(skip=on_error is o.OnError.skip)

    with Source(input) as src, output_stream(output) as out:
        stream = iter_embedded(src, vector_field, bad)
        first = list(itertools.islice(stream, CHUNK))
        provenance = next((r.data.get(model_field) for r, _ in first if r is not None and model_field), None)
        if head_file:
            clf = Head.load(head_file)
        elif train:
            clf = _fit_head(train, label_field, head.value, k, seed, vector_field, model_field)
        else:
            clf = _zero_shot_head(labels, labels_file, template, model, provenance, zero_shot)
        rest = itertools.chain([first], _chunks(stream)) if not refine else None
        if refine:
            everything = first + list(stream)
            if everything:
                clf = refine_head(clf, np.vstack([v for _, v in everything]), refine_top)
            rest = iter([everything])
        if save_head:
            clf.save(save_head)
        writer = JsonlWriter(out)
        gold, predicted, n = [], [], 0
        for chunk in rest:
            if not chunk:
                continue
            x = np.vstack([v for _, v in chunk])
            records = [r.data if r is not None else {"row": n + i} for i, (r, _) in enumerate(chunk)]
            check_free(records, result_fields, overwrite)
            clf.check(x.shape[1], provenance)
            scores = clf.scores(x)
            best = scores.argmax(axis=1)
            for rec, row, b in zip(records, scores, best, strict=True):
                score = float(row[b])
                label = clf.labels[b] if threshold is None or score >= threshold else None
                rec[output_field], rec[score_field] = label, round(score, 6)
                if all_scores:
                    rec[scores_field] = {name: round(float(s), 6) for name, s in zip(clf.labels, row, strict=True)}
                predicted.append(label)
            if eval_field:
                gold += [str(g) for g in gold_labels(records, eval_field)]
            writer.write_many(records)
            writer.flush()
            n += len(records)
    if bad.summary():
        warn(bad.summary(), quiet)
    say(f"classified {n:,} records with a {clf.kind} head over {len(clf.labels)} labels", quiet)
    if eval_field and n:
        _evaluate(gold, predicted, clf.labels, eval_out, quiet)


def _chunks(stream):
    import itertools

    while chunk := list(itertools.islice(stream, CHUNK)):
        yield chunk


def _fit_head(path, label_field, kind, k, seed, vector_field, model_field):
    import numpy as np

    from embcli.core.classify import fit
    from embcli.core.streams import BadRecords, Source, iter_embedded
    from embcli.errors import InputError

    with Source(path) as src:
        pairs = list(iter_embedded(src, vector_field, BadRecords()))
    if any(r is None for r, _ in pairs):
        raise InputError(f"--train needs JSONL records with a {label_field!r} field, not NPY, {path}")
    missing = [i + 1 for i, (r, _) in enumerate(pairs) if r.data.get(label_field) is None]
    if missing:
        raise InputError(
            f"--train record {missing[0]} has no {label_field!r} label, {path}", hint="name it with --label-field"
        )
    provs = {str(r.data.get(model_field)) for r, _ in pairs}
    if len(provs) > 1:
        raise InputError(f"--train mixes vectors from several models or options, {path}")
    prov = pairs[0][0].data.get(model_field) if pairs else None
    return fit(
        kind, np.vstack([v for _, v in pairs]), [r.data[label_field] for r, _ in pairs], k=k, seed=seed, provenance=prov
    )


def _zero_shot_head(labels, labels_file, template, model, provenance, zero_shot):
    from embcli.core.classify import LabelSpec
    from embcli.core.encoder import Encoder, encoder_from_provenance
    from embcli.core.models import resolve_model
    from embcli.errors import UsageError

    if "{label}" not in template:
        raise UsageError("--template must contain {label}")
    specs = [LabelSpec(s.strip()) for s in labels.split(",") if s.strip()] if labels else _read_labels(labels_file)
    o.ensure_model(provenance.get("model") if isinstance(provenance, dict) else model, "auto")
    if provenance is not None:
        encoder = encoder_from_provenance(provenance)
    else:
        encoder = Encoder(resolve_model(model))
        provenance = None if model is None else encoder.provenance()
    return zero_shot(specs, template, encoder.encode, provenance)


def _read_labels(path: str):
    import orjson

    from embcli.core.classify import LabelSpec
    from embcli.errors import InputError, UsageError

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


def _evaluate(gold: list[str], predicted: list, labels: list[str], eval_out: str | None, quiet: bool) -> None:
    from sklearn.metrics import accuracy_score, f1_score

    from embcli.core.classify import confusion_table

    pred = [p if p is not None else "(none)" for p in predicted]
    report_eval(
        {
            "accuracy": float(accuracy_score(gold, pred)),
            "macro_f1": float(f1_score(gold, pred, average="macro", zero_division=0)),
            "confusion": confusion_table(gold, predicted, labels),
        },
        eval_out,
        quiet,
    )
