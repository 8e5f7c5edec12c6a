"""embcli detect-anomalies: score how unusual each embedded record is."""

from __future__ import annotations

from enum import Enum
from typing import Optional

from embcli import choices
from embcli.commands import _options as o
from embcli.commands._analysis import EvalField, EvalOut, records_output, report_eval
from embcli.commands._ui import phases, progress, say, warn

DETECT = "Detector"
CHUNK = 4096


class Method(str, Enum):
    knn = "knn"
    lof = "lof"
    iforest = "iforest"
    ecod = "ecod"
    mahalanobis = "mahalanobis"


class Aggregate(str, Enum):
    mean = "mean"
    max = "max"


MethodOpt = o.option(
    Method, "--method", help="knn (cosine distance to the k nearest), lof, iforest, ecod or mahalanobis.", panel=DETECT
)
KOpt = o.option(int, "-k", min=1, metavar="N", help="knn and lof: neighbours.", panel=DETECT)
AggregateOpt = o.option(Aggregate, "--aggregate", help="knn: mean or largest distance to the k nearest.", panel=DETECT)
ReferenceOpt = o.option(
    Optional[str],
    "--reference",
    metavar="FILE",
    help="Novelty mode: fit on these normal records, then score the input (streams).",
    panel=DETECT,
    show_default=False,
)
ContaminationOpt = o.option(
    Optional[float],
    "--contamination",
    metavar="F",
    help="Flag the top F share as anomalies (of the input, or of the reference in novelty mode). Default 0.01.",
    panel=DETECT,
    show_default=False,
)
ThresholdOpt = o.option(
    Optional[float], "--threshold", metavar="T", help="Flag scores above T instead.", panel=DETECT, show_default=False
)
SaveDetectorOpt = o.option(
    Optional[str],
    "--save-detector",
    metavar="FILE",
    help="Keep the fitted detector for later runs.",
    panel=DETECT,
    show_default=False,
)
DetectorFileOpt = o.option(
    Optional[str],
    "--detector-file",
    metavar="FILE",
    help="Score with a saved detector (streams).",
    panel=DETECT,
    show_default=False,
)
IndexOpt = o.option(
    Optional[str],
    "--index",
    metavar="IDX",
    help="knn: score against this index (built by `embcli index`; sharded too) instead of a graph built "
    "from the input. Records in it are not their own neighbours (--self-match).",
    panel=DETECT,
    show_default=False,
)
SelfMatch = o.choice("SelfMatch", choices.SELF_MATCHES)
SelfMatchOpt = o.option(
    SelfMatch,
    "--self-match",
    help="--index: how a record finds itself in the index to be left out: by its id (--id-field), by a stored "
    "vector identical to its own, auto (id when it has one, else vector), or none (new records).",
    panel=DETECT,
)
SeedOpt = o.option(int, "--seed", help="iforest: random state.", panel=DETECT)
OnlyAnomaliesOpt = o.option(bool, "--only-anomalies", help="Pass only the flagged records down the pipe.", panel=o.IO)
ScoreFieldOpt = o.option(
    str, "--score-field", metavar="NAME", help="Field for the score (higher = more anomalous).", panel=o.IO
)
FlagFieldOpt = o.option(str, "--flag-field", metavar="NAME", help="Field for the flag.", panel=o.IO)


def detect_anomalies(
    input: o.InputArg = None,
    fmt: o.RecordFormatOpt = None,
    compress: o.CompressOpt = None,
    input_format: o.InputFormatOpt = None,
    output: o.Output = None,
    method: MethodOpt = Method.knn,
    k: KOpt = 10,
    aggregate: AggregateOpt = Aggregate.mean,
    reference: ReferenceOpt = None,
    contamination: ContaminationOpt = None,
    threshold: ThresholdOpt = None,
    save_detector: SaveDetectorOpt = None,
    detector_file: DetectorFileOpt = None,
    index: IndexOpt = None,
    self_match: SelfMatchOpt = SelfMatch.auto,
    id_field: o.IdField = "id",
    seed: SeedOpt = 0,
    only_anomalies: OnlyAnomaliesOpt = False,
    score_field: ScoreFieldOpt = "anomaly_score",
    flag_field: FlagFieldOpt = "is_anomaly",
    overwrite: o.Overwrite = False,
    eval_field: EvalField = None,
    eval_out: EvalOut = None,
    vector_field: o.VectorField = "embedding",
    model_field: o.ModelField = "embedding_model",
    on_error: o.OnErrorOpt = o.OnError.fail,
    quiet: o.Quiet = False,
) -> None:
    """Score embedded records (records with a vector, or NPY) by how anomalous they are.

    Outlier mode (default): each record against all the others (reads the whole
    input). Novelty mode: --reference FILE of normal records, or a saved
    --detector-file; the input then streams. Adds anomaly_score and is_anomaly.
    """
    from embcli.analysis import anomaly as core
    from embcli.analysis.records import check_free, gold_labels, provenance_of, read_all
    from embcli.errors import UsageError
    from embcli.io.inputs import Inputs, ReadOptions
    from embcli.io.streams import BadRecords

    if reference and detector_file:
        raise UsageError("give --reference or --detector-file, not both")
    if index and (reference or detector_file or save_detector):
        raise UsageError("--index scores against the index: give no --reference, --detector-file or --save-detector")
    options = core.AnomalyOptions(method.value, k, aggregate.value, seed, contamination, threshold)
    bad = BadRecords(skip=on_error is o.OnError.skip)
    counts = {"scored": 0, "flagged": 0}
    gold_rows: list[dict] = []  # only with --eval
    all_scores: list[float] = []
    inputs = Inputs(input, ReadOptions(o.value(input_format)))
    with records_output(output, fmt, compress, vector_field, model_field) as writer:

        def emit(records: list[dict], scores, level: float) -> None:
            check_free(records, [score_field, flag_field], overwrite, rename="--score-field/--flag-field")
            core.mark(records, scores, level, score_field, flag_field)
            writer.write_many([r for r in records if r[flag_field]] if only_anomalies else records)
            writer.flush()
            counts["scored"] += len(records)
            counts["flagged"] += sum(r[flag_field] for r in records)
            if eval_field:
                gold_rows.extend(records)
                all_scores.extend(float(s) for s in scores)

        if reference or detector_file:  # novelty: fit once, then stream the input
            with phases(quiet):  # on a terminal: "reading ref.jsonl…", "fitting knn…", "scoring…"
                if detector_file:
                    det = core.Detector.load(detector_file)
                else:
                    ref_records, ref_x, _ = read_all(reference, vector_field, BadRecords())
                    det = core.fit_reference(ref_x, options, provenance_of(ref_records, model_field))
                level = core.flag_level(det, det.score(), options)
            if save_detector:  # before the records: a reader that stops early (`| head`) keeps it
                det.save(save_detector)
            with progress("scoring", "records", quiet, fraction=inputs.share) as bar:
                for batch in _batches(inputs.embedded(vector_field, bad)):
                    _score_batch(det, batch, emit, level, model_field)
                    bar.advance(len(batch))
        elif index:  # the index is the reference; the input is read whole for its contamination share
            from embcli.search.shards import open_readers

            readers = open_readers([index])
            try:
                with phases(quiet):
                    records, x, name = read_all(inputs.paths, vector_field, bad, o.value(input_format))
                    if records:
                        check_free(records, [score_field, flag_field], overwrite, rename="--score-field/--flag-field")
                        scores, level = core.score_against_index(
                            x,
                            [r.get(id_field) for r in records],
                            readers,
                            options,
                            provenance_of(records, model_field),
                            self_match=self_match.value,
                            where=name,
                        )
            finally:
                for r in readers:
                    r.close()
            det = None
            if records:
                emit(records, scores, level)
        else:  # outlier mode: the input is its own reference
            with phases(quiet):  # on a terminal: "reading…", "scoring…"; gone before the records go out
                records, x, _ = read_all(inputs.paths, vector_field, bad, o.value(input_format))
                det = None
                if records:
                    det, scores, level = core.score_outliers(x, options, provenance_of(records, model_field))
            if records:
                if save_detector:  # before the records, as above; not when they would be refused
                    check_free(records, [score_field, flag_field], overwrite, rename="--score-field/--flag-field")
                    det.save(save_detector)
                emit(records, scores, level)
    if save_detector and det is None:
        raise UsageError("no vectors to fit a detector on")
    if bad.summary():
        warn(bad.summary(), quiet)
    name = method.value if det is None else det.method
    say(f"scored {counts['scored']:,} records with {name}; {counts['flagged']:,} flagged as anomalies", quiet)
    if eval_field and gold_rows:
        metrics = core.metrics(gold_labels(gold_rows, eval_field), all_scores)
        if metrics is None:
            warn(f"--eval {eval_field}: the gold labels are all one class; no AUROC", quiet)
            return
        report_eval(metrics, eval_out, quiet)


def _batches(pairs):
    batch: list = []
    for item in pairs:
        batch.append(item)
        if len(batch) >= CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def _score_batch(det, batch, emit, level, model_field) -> None:
    import numpy as np

    from embcli.analysis.records import provenance_of

    x = np.vstack([v for _, v in batch])
    records = [r.fields() for r, _ in batch]
    det.check(x.shape[1], provenance_of(records, model_field))
    emit(records, det.score(x), level)
