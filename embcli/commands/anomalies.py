"""embcli detect-anomalies: score how unusual each embedded record is."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from embcli.commands import _options as o
from embcli.commands._analysis import EvalField, EvalOut, check_free, gold_labels, read_all, report_eval
from embcli.commands._ui import say, warn

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


def detect_anomalies(
    input: o.InputArg = None,
    output: o.Output = None,
    method: Annotated[
        Method,
        typer.Option(
            "--method",
            help="knn (cosine distance to the k nearest), lof, iforest, ecod or mahalanobis.",
            rich_help_panel=DETECT,
        ),
    ] = Method.knn,
    k: Annotated[
        int, typer.Option("-k", min=1, metavar="N", help="knn and lof: neighbours.", rich_help_panel=DETECT)
    ] = 10,
    aggregate: Annotated[
        Aggregate,
        typer.Option("--aggregate", help="knn: mean or largest distance to the k nearest.", rich_help_panel=DETECT),
    ] = Aggregate.mean,
    reference: Annotated[
        Optional[str],
        typer.Option(
            "--reference",
            metavar="FILE",
            help="Novelty mode: fit on these normal records, then score the input (streams).",
            show_default=False,
            rich_help_panel=DETECT,
        ),
    ] = None,
    contamination: Annotated[
        Optional[float],
        typer.Option(
            "--contamination",
            metavar="F",
            help="Flag the top F share as anomalies (of the input, or of the reference in novelty mode). Default 0.01.",
            show_default=False,
            rich_help_panel=DETECT,
        ),
    ] = None,
    threshold: Annotated[
        Optional[float],
        typer.Option(
            "--threshold", metavar="T", help="Flag scores above T instead.", show_default=False, rich_help_panel=DETECT
        ),
    ] = None,
    save_detector: Annotated[
        Optional[str],
        typer.Option(
            "--save-detector",
            metavar="FILE",
            help="Keep the fitted detector for later runs.",
            show_default=False,
            rich_help_panel=DETECT,
        ),
    ] = None,
    detector_file: Annotated[
        Optional[str],
        typer.Option(
            "--detector-file",
            metavar="FILE",
            help="Score with a saved detector (streams).",
            show_default=False,
            rich_help_panel=DETECT,
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="iforest: random state.", rich_help_panel=DETECT)] = 0,
    only_anomalies: Annotated[
        bool,
        typer.Option("--only-anomalies", help="Pass only the flagged records down the pipe.", rich_help_panel=o.IO),
    ] = False,
    score_field: Annotated[
        str,
        typer.Option(
            "--score-field", metavar="NAME", help="Field for the score (higher = more anomalous).", rich_help_panel=o.IO
        ),
    ] = "anomaly_score",
    flag_field: Annotated[
        str, typer.Option("--flag-field", metavar="NAME", help="Field for the flag.", rich_help_panel=o.IO)
    ] = "is_anomaly",
    overwrite: o.Overwrite = False,
    eval_field: EvalField = None,
    eval_out: EvalOut = None,
    vector_field: o.VectorField = "embedding",
    model_field: o.ModelField = "embedding_model",
    on_error: o.OnErrorOpt = o.OnError.fail,
    quiet: o.Quiet = False,
) -> None:
    """Score embedded records (JSONL with a vector, or NPY) by how anomalous they are.

    Outlier mode (default): each record against all the others (reads the whole
    input). Novelty mode: --reference FILE of normal records, or a saved
    --detector-file; the input then streams. Adds anomaly_score and is_anomaly.
    """
    import numpy as np

    from embcli.core.anomaly import Detector, contamination_threshold
    from embcli.core.streams import BadRecords, JsonlWriter, Source, iter_embedded, output_stream
    from embcli.errors import UsageError

    if reference and detector_file:
        raise UsageError("give --reference or --detector-file, not both")
    if contamination is not None and threshold is not None:
        raise UsageError("give --contamination or --threshold, not both")
    bad = BadRecords(skip=on_error is o.OnError.skip)
    fields = [score_field, flag_field]

    def prov_of(records: list[dict]):
        return next((r.get(model_field) for r in records if model_field and r.get(model_field)), None)

    def flag_level(fitted: Detector, scores: np.ndarray) -> float:
        if threshold is not None:
            return threshold
        if contamination is None and fitted.threshold is not None:
            return fitted.threshold
        return contamination_threshold(scores, contamination if contamination is not None else 0.01)

    counts = {"scored": 0, "flagged": 0}
    gold_rows: list[dict] = []  # only with --eval
    all_scores: list[float] = []
    with output_stream(output) as out:
        writer = JsonlWriter(out)

        def emit(records: list[dict], scores: np.ndarray, level: float) -> None:
            check_free(records, fields, overwrite)
            for rec, s in zip(records, scores, strict=True):
                rec[score_field], rec[flag_field] = round(float(s), 6), bool(s > level)
            kept = [r for r in records if r[flag_field]] if only_anomalies else records
            writer.write_many(kept)
            writer.flush()
            counts["scored"] += len(records)
            counts["flagged"] += sum(r[flag_field] for r in records)
            if eval_field:
                gold_rows.extend(records)
                all_scores.extend(float(s) for s in scores)

        if reference or detector_file:  # novelty: fit once, then stream the input
            if detector_file:
                det = Detector.load(detector_file)
            else:
                ref_records, ref_x, _ = read_all(reference, vector_field, BadRecords())
                det = Detector(method.value, k, aggregate.value, seed, provenance=prov_of(ref_records)).fit(ref_x)
                det.threshold = flag_level(det, det.score())  # the reference's own outlier scores
            level = flag_level(det, det.score())
            if save_detector:  # before the records: a reader that stops early (`| head`) keeps it
                det.save(save_detector)
            with Source(input) as src:
                batch: list = []
                for item in iter_embedded(src, vector_field, bad):
                    batch.append(item)
                    if len(batch) >= CHUNK:
                        _score_batch(det, batch, emit, level, model_field, counts["scored"])
                        batch = []
                _score_batch(det, batch, emit, level, model_field, counts["scored"])
        else:  # outlier mode: the input is its own reference
            records, x, _ = read_all(input, vector_field, bad)
            if records:
                det = Detector(method.value, k, aggregate.value, seed, provenance=prov_of(records)).fit(x)
                scores = det.score()
                level = flag_level(det, scores)
                det.threshold = level
                if save_detector:  # before the records, as above; not when they would be refused
                    check_free(records, fields, overwrite)
                    det.save(save_detector)
                emit(records, scores, level)
            else:
                det = None
    if save_detector and det is None:
        raise UsageError("no vectors to fit a detector on")
    if bad.summary():
        warn(bad.summary(), quiet)
    name = method.value if det is None else det.method
    say(f"scored {counts['scored']:,} records with {name}; {counts['flagged']:,} flagged as anomalies", quiet)
    if eval_field and gold_rows:
        from sklearn.metrics import average_precision_score, roc_auc_score

        gold = [1 if g in (1, True, "1", "true", "yes") else 0 for g in gold_labels(gold_rows, eval_field)]
        if len(set(gold)) < 2:
            warn(f"--eval {eval_field}: the gold labels are all one class; no AUROC", quiet)
            return
        report_eval(
            {
                "auroc": float(roc_auc_score(gold, all_scores)),
                "auprc": float(average_precision_score(gold, all_scores)),
            },
            eval_out,
            quiet,
        )


def _score_batch(det, batch, emit, level, model_field, offset: int) -> None:
    import numpy as np

    if not batch:
        return
    x = np.vstack([v for _, v in batch])
    records = [r.data if r is not None else {"row": offset + i} for i, (r, _) in enumerate(batch)]
    det.check(x.shape[1], next((r.get(model_field) for r in records if model_field and r.get(model_field)), None))
    emit(records, det.score(x), level)
