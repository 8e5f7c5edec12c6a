"""embcli cluster: group embedded records."""

from __future__ import annotations

from enum import Enum
from typing import Optional

from embcli.commands import _options as o
from embcli.commands._analysis import EvalField, EvalOut, report_eval, write_records
from embcli.commands._ui import phases, say, warn

ALGO = "Clustering"


class Algo(str, Enum):
    kmeans = "kmeans"
    hdbscan = "hdbscan"
    threshold = "threshold"


AlgoOpt = o.option(
    Algo, "--algo", help="kmeans (spherical), hdbscan (density, -1 = noise), threshold (communities).", panel=ALGO
)
KOpt = o.option(
    str,
    "-k",
    "--k",
    metavar="N|auto",
    help="kmeans: number of clusters, or auto (best silhouette in --k-range).",
    panel=ALGO,
)
KRangeOpt = o.option(str, "--k-range", metavar="MIN:MAX", help="--k auto: the range tried.", panel=ALGO)
NInitOpt = o.option(int, "--n-init", min=1, metavar="N", help="kmeans: restarts; the lowest cost wins.", panel=ALGO)
SeedOpt = o.option(int, "--seed", help="Seed for k-means++ and sampling.", panel=ALGO)
MinClusterSizeOpt = o.option(
    int, "--min-cluster-size", min=2, metavar="N", help="hdbscan: smallest cluster.", panel=ALGO
)
ThresholdOpt = o.option(
    float, "--threshold", min=-1.0, max=1.0, help="threshold: cosine that joins a community.", panel=ALGO
)
MinSizeOpt = o.option(int, "--min-size", min=1, metavar="N", help="threshold: smallest community.", panel=ALGO)
SummaryOpt = o.option(
    Optional[str],
    "--summary",
    metavar="FILE",
    help="Write one JSONL line per cluster: size, representative members, keywords, label.",
    panel=o.IO,
    show_default=False,
)
OutputFieldOpt = o.option(
    str,
    "--output-field",
    metavar="NAME",
    help="Field for the cluster id (NAME_similarity holds the cosine to its centre).",
    panel=o.IO,
)


def cluster(
    input: o.InputArg = None,
    output: o.Output = None,
    fmt: o.RecordFormatOpt = None,
    compress: o.CompressOpt = None,
    input_format: o.InputFormatOpt = None,
    algo: AlgoOpt = Algo.kmeans,
    k: KOpt = "8",
    k_range: KRangeOpt = "2:20",
    n_init: NInitOpt = 4,
    seed: SeedOpt = 0,
    min_cluster_size: MinClusterSizeOpt = 5,
    threshold: ThresholdOpt = 0.75,
    min_size: MinSizeOpt = 10,
    summary: SummaryOpt = None,
    output_field: OutputFieldOpt = "cluster",
    overwrite: o.Overwrite = False,
    eval_field: EvalField = None,
    eval_out: EvalOut = None,
    text_field: o.TextField = "text",
    vector_field: o.VectorField = "embedding",
    on_error: o.OnErrorOpt = o.OnError.fail,
    quiet: o.Quiet = False,
) -> None:
    """Cluster embedded records (records with a vector, or NPY); needs the whole input.

    Each record gets a cluster id (-1 = noise) and its cosine to the cluster's
    centre. The same input and seed give the same clusters whatever the input
    order (rows are clustered in a canonical order, clusters numbered by size).
    """
    from embcli.analysis import cluster as core
    from embcli.analysis.records import check_free, gold_labels, read_all
    from embcli.io.streams import BadRecords

    bad = BadRecords(skip=on_error is o.OnError.skip)
    with phases(quiet):  # on a terminal: "reading vec.jsonl… 12,345 vectors", replaced by the next phase
        records, x, _ = read_all(input, vector_field, bad, o.value(input_format))
    check_free(records, [output_field, f"{output_field}_similarity"], overwrite)
    if not records:
        write_records([], output, fmt, compress, vector_field)
        return
    options = core.ClusterOptions(
        algo.value, _parse_k(k), _parse_range(k_range), n_init, seed, min_cluster_size, threshold, min_size
    )
    with phases(quiet):  # "fitting k-means k=20 (seed 0)…", "choosing k: …"; gone before the records go out
        result = core.cluster(x, options)
    core.annotate(records, result, output_field)
    write_records(records, output, fmt, compress, vector_field)
    if summary:
        _write_summary(summary, core.summary(records, result, text_field))
    if bad.summary():
        warn(bad.summary(), quiet)
    if result.note:
        say(result.note, quiet)
    noise_note = f", {result.noise:,} noise" if result.noise else ""
    say(f"clustered {len(records):,} records into {result.n_clusters:,} clusters ({algo.value}){noise_note}", quiet)
    if eval_field:
        report_eval(core.metrics(gold_labels(records, eval_field), result.labels), eval_out, quiet)


def _parse_k(k: str) -> int | str:
    from embcli.errors import UsageError

    if k == "auto":
        return k
    try:
        return int(k)
    except ValueError:
        raise UsageError(f"--k: expected a number or auto, got {k!r}") from None


def _parse_range(k_range: str) -> tuple[int, int]:
    from embcli.errors import UsageError

    try:
        lo, hi = (int(v) for v in k_range.split(":"))
    except ValueError:
        raise UsageError(f"--k-range: expected MIN:MAX, got {k_range!r}") from None
    return lo, hi


def _write_summary(path: str, lines: list[dict]) -> None:
    import orjson

    from embcli.io.files import atomic_file

    with atomic_file(path) as f:
        for line in lines:
            f.write(orjson.dumps(line) + b"\n")
