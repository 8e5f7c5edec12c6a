"""embcli classify: label embedded records, zero-shot or with a head fitted on labelled data."""

from __future__ import annotations

from enum import Enum
from typing import Optional

from embcli.commands import _options as o
from embcli.commands._analysis import EvalField, EvalOut, records_output, report_eval
from embcli.commands._ui import phases, progress, say, warn

ZERO = "Zero-shot"
SUPERVISED = "Supervised"
CHUNK = 4096


class HeadKind(str, Enum):
    logreg = "logreg"
    knn = "knn"
    centroid = "centroid"


Labels = o.option(
    Optional[str],
    "--labels",
    metavar="A,B,…",
    help="Zero-shot: comma-separated label names.",
    panel=ZERO,
    show_default=False,
)
LabelsFile = o.option(
    Optional[str],
    "--labels-file",
    metavar="FILE",
    help='Zero-shot: one label per line, or JSONL {"label", "description", "keywords"}.',
    panel=ZERO,
    show_default=False,
)
Template = o.option(
    str, "--template", metavar="TEXT", help="Zero-shot: how a label is put into words; {label} is replaced.", panel=ZERO
)
Refine = o.option(
    bool,
    "--refine",
    help="Zero-shot: move each label vector to the centroid of its nearest inputs (reads the whole input).",
    panel=ZERO,
)
RefineTop = o.option(
    int, "--refine-top", min=1, metavar="N", help="--refine: documents per label centroid.", panel=ZERO
)
Model = o.option(
    Optional[str],
    "-m",
    "--model",
    metavar="NAME",
    help="Zero-shot: model for the labels when the records do not record one.",
    panel=ZERO,
    show_default=False,
)
Train = o.option(
    Optional[str],
    "--train",
    metavar="FILE",
    help="Supervised: embedded records with labels to fit a head on.",
    panel=SUPERVISED,
    show_default=False,
)
LabelField = o.option(
    str, "--label-field", metavar="NAME", help="Supervised: the label field of --train records.", panel=SUPERVISED
)
HeadOpt = o.option(
    HeadKind,
    "--head",
    help="Supervised: logistic regression, weighted kNN vote, or nearest centroid.",
    panel=SUPERVISED,
)
K = o.option(int, "-k", min=1, metavar="N", help="--head knn: neighbours that vote.", panel=SUPERVISED)
SaveHead = o.option(
    Optional[str],
    "--save-head",
    metavar="FILE",
    help="Write the fitted head (or zero-shot label vectors) for later runs.",
    panel=SUPERVISED,
    show_default=False,
)
HeadFile = o.option(
    Optional[str],
    "--head-file",
    metavar="FILE",
    help="Apply a saved head: streams.",
    panel=SUPERVISED,
    show_default=False,
)
Seed = o.option(int, "--seed", help="Seed for the logistic regression solver.", panel=SUPERVISED)
AllScores = o.option(bool, "--all-scores", help="Add every label's score (probabilities for logreg).", panel=o.IO)
Threshold = o.option(
    Optional[float], "--threshold", help="Below this score the label is null.", panel=o.IO, show_default=False
)
OutputField = o.option(str, "--output-field", metavar="NAME", help="Field for the label.", panel=o.IO)
ScoreField = o.option(str, "--score-field", metavar="NAME", help="Field for the label's score.", panel=o.IO)
ScoresField = o.option(
    str, "--scores-field", metavar="NAME", help="Field for every label's score (--all-scores).", panel=o.IO
)


def classify(
    input: o.InputArg = None,
    output: o.Output = None,
    fmt: o.RecordFormatOpt = None,
    compress: o.CompressOpt = None,
    input_format: o.InputFormatOpt = None,
    labels: Labels = None,
    labels_file: LabelsFile = None,
    template: Template = "This text is about {label}.",
    refine: Refine = False,
    refine_top: RefineTop = 10,
    model: Model = None,
    train: Train = None,
    label_field: LabelField = "label",
    head: HeadOpt = HeadKind.logreg,
    k: K = 10,
    save_head: SaveHead = None,
    head_file: HeadFile = None,
    seed: Seed = 0,
    all_scores: AllScores = False,
    threshold: Threshold = None,
    output_field: OutputField = "label",
    score_field: ScoreField = "score",
    scores_field: ScoresField = "scores",
    overwrite: o.Overwrite = False,
    eval_field: EvalField = None,
    eval_out: EvalOut = None,
    vector_field: o.VectorField = "embedding",
    model_field: o.ModelField = "embedding_model",
    on_error: o.OnErrorOpt = o.OnError.fail,
    quiet: o.Quiet = False,
) -> None:
    """Classify embedded records (records with a vector, or NPY).

    Zero-shot: --labels or --labels-file, embedded through --template with the
    records' own model; scores are cosines. Supervised: --train FILE fits a head
    (logreg, knn or centroid) on labelled embedded records; --save-head keeps it
    and --head-file applies it in later runs. Streams, except with --refine.
    """
    import itertools

    import numpy as np

    from embcli.analysis import classify as core
    from embcli.analysis.records import gold_labels, reading
    from embcli.api.encoding import ensure_model
    from embcli.io.inputs import Inputs, ReadOptions
    from embcli.io.readers import iter_embedded
    from embcli.io.streams import BadRecords, Source

    core.check_mode(bool(labels or labels_file), bool(train), bool(head_file), refine)
    options = core.LabelOptions(threshold, all_scores, output_field, score_field, scores_field, overwrite)
    bad = BadRecords(skip=on_error is o.OnError.skip)

    inputs = Inputs(input, ReadOptions(o.value(input_format)))
    # On a terminal: the phases ("fitting a logreg head…", "embedding 4 labels…"), then a count of records.
    with records_output(output, fmt, compress, vector_field, model_field) as writer, phases(quiet):
        stream = inputs.embedded(vector_field, bad)
        first = list(itertools.islice(stream, CHUNK))
        provenance = next((r.data.get(model_field) for r, _ in first if model_field), None)
        if head_file:
            clf = core.Head.load(head_file)
        elif train:
            with Source(train) as tsrc:
                pairs = list(reading(iter_embedded(tsrc, vector_field, BadRecords()), tsrc.name))
            fit = {"label_field": label_field, "kind": head.value, "k": k, "seed": seed, "model_field": model_field}
            clf = core.fit_records(pairs, train, **fit)
        else:
            specs = core.parse_labels(labels) if labels else core.read_labels(labels_file)
            ensure_model(core.zero_shot_model(model, provenance), "auto")
            clf = core.zero_shot_head(specs, template, model=model, provenance=provenance)
        rest = itertools.chain([first], _chunks(stream)) if not refine else None
        if refine:
            everything = first + list(reading(stream, inputs.name, start=len(first)))
            if everything:
                clf = core.refine(clf, np.vstack([v for _, v in everything]), refine_top)
            rest = iter([everything])
        if save_head:
            clf.save(save_head)
        gold, predicted, n = [], [], 0
        total = len(everything) if refine else None  # streaming: the count is known only at the end
        with progress("classifying", "records", quiet, total=total) as bar:
            for records, pred in core.label_chunks(clf, rest, provenance, options):
                predicted += pred.labels
                if eval_field:
                    gold += gold_labels(records, eval_field)
                writer.write_many(records)
                writer.flush()
                n += len(records)
                bar.advance(len(records))
    if bad.summary():
        warn(bad.summary(), quiet)
    say(f"classified {n:,} records with a {clf.kind} head over {len(clf.labels)} labels", quiet)
    if eval_field and n:
        report_eval(core.metrics(gold, predicted, clf.labels), eval_out, quiet)


def _chunks(stream):
    import itertools

    while chunk := list(itertools.islice(stream, CHUNK)):
        yield chunk
