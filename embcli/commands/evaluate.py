"""embcli eval: recall@k, nDCG@k, MRR@k and MAP of one or several search configurations on your own queries."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from embcli.commands import _options as o
from embcli.commands._ui import emit_report, phases, say

if TYPE_CHECKING:
    from rich.console import Console

EVAL = "Evaluation"


IndexesArg = Annotated[
    Optional[list[str]],
    typer.Argument(
        help="Index path(s) the configs search (several: searched as one, as `search` does); "
        "optional when every --config names its own index=PATH.",
        metavar="INDEX...",
        show_default=False,
    ),
]
QueriesOpt = o.option(
    str,
    "--queries",
    metavar="FILE",
    help="Queries: records with an id and a text (or a vector), in any input format; NPY rows "
    "are vector queries with their 0-based row number as id; '-' reads stdin.",
    panel=o.IO,
)
QrelsOpt = o.option(
    str,
    "--qrels",
    metavar="FILE",
    help='Relevance judgements: JSONL {"query_id", "doc_id", "relevance"}, TREC lines "QID 0 DOCID REL", '
    "or BEIR's TSV with a header; found by content.",
    panel=o.IO,
)
ConfigOpt = o.option(
    Optional[list[str]],
    "--config",
    metavar="TEXT",
    show_default=False,
    help="A search configuration, one column of the report (repeatable): 'dense' (the default), "
    "'hybrid', 'lexical', '--fusion linear --alpha 0.3', "
    "'ef=256' or '--expansion-search 256', '--rescore 4', '--exact', \"--where 'year >= 2020'\", "
    "'--query-prompt TEXT', 'index=OTHER.idx' (another index or model), 'name=LABEL'.",
    panel=EVAL,
)
KOpt = o.option(
    Optional[int],
    "-k",
    min=1,
    metavar="N",
    show_default=False,
    help="Cutoff for recall@k, nDCG@k and MRR@k. Default: 10 (unless --at gives cutoffs).",
    panel=EVAL,
)
AtOpt = o.text_option(
    "--at",
    metavar="K,K...",
    help="Several cutoffs, e.g. 1,5,10 (with -k: both).",
    panel=EVAL,
)
DepthOpt = o.option(
    Optional[int],
    "--depth",
    min=1,
    metavar="N",
    show_default=False,
    help="Hits retrieved per query, which MAP is computed over. Default: the largest cutoff.",
    panel=EVAL,
)
PerQueryOpt = o.text_option(
    "--per-query",
    metavar="FILE",
    help="Also write each query's scores per config as JSONL (with the relevant hits found and their ranks).",
    panel=o.IO,
)
FmtOpt = o.option(
    Optional[o.ReportFormat],
    "--format",
    help="Report as JSON, or a table. Default: a table on a terminal; JSON off one, and with -o.",
    panel=o.IO,
    show_default=False,
)
IdFieldOpt = o.option(str, "--id-field", metavar="NAME", help="Field that holds each query's id.", panel=o.IO)


def evaluate(
    indexes: IndexesArg = None,
    queries: QueriesOpt = ...,
    qrels: QrelsOpt = ...,
    config: ConfigOpt = None,
    k: KOpt = None,
    at: AtOpt = None,
    depth: DepthOpt = None,
    output: o.Output = None,
    fmt: FmtOpt = None,
    per_query: PerQueryOpt = None,
    input_format: o.InputFormatOpt = None,
    id_field: IdFieldOpt = "id",
    text_field: o.TextField = "text",
    vector_field: o.VectorField = "embedding",
    model_field: o.ModelField = "embedding_model",
    device: o.DeviceOpt = o.Device.auto,
    threads: o.Threads = None,
    batch_size: o.BatchSize = 32,
    quiet: o.Quiet = False,
) -> None:
    """Score search configurations on your queries and relevance judgements, side by side.

    Each --config is one real search (the code `search` runs) of every judged
    query, to the deepest cutoff; hits are scored as trec_eval does: recall@k,
    nDCG@k with linear gains (the judged relevance) and a log2(rank+1)
    discount, MRR@k, and MAP over the hits retrieved; relevant means
    relevance >= 1. Queries whose judgements are all non-relevant score 0;
    queries with no judgement are left out (counted). A judgement naming a
    query not in --queries is bad input (exit 3). Reads queries and qrels
    whole.
    """
    from embcli.analysis.evaluate import EvalOptions, read_queries
    from embcli.analysis.evaluate import evaluate as run
    from embcli.api.encoding import ensure_model
    from embcli.errors import UsageError
    from embcli.io.qrels import read_qrels
    from embcli.search.configs import DEFAULT, parse_config

    if queries == "-" and qrels == "-":
        raise UsageError("only one of --queries and --qrels can be stdin")
    cutoffs = _cutoffs(at, k)
    configs = [parse_config(text) for text in config or [DEFAULT]]
    with phases(quiet):
        query_list = read_queries(
            queries,
            input_format=o.value(input_format),
            id_field=id_field,
            text_field=text_field,
            vector_field=vector_field,
            model_field=model_field,
        )
        judgements = read_qrels(qrels)
        options = EvalOptions(cutoffs, depth, device.value, threads, batch_size, ensure_model)
        source = "<stdin>" if queries == "-" else queries
        result = run(indexes or [], query_list, judgements, configs, options, queries_source=source)
    report = result.report
    if per_query:
        import orjson

        from embcli.io.files import atomic_file

        with atomic_file(per_query) as f:
            f.write(b"".join(orjson.dumps(line) + b"\n" for line in result.per_query))
    emit_report(report, o.value(fmt), output, _table, 120)
    if report["unjudged_queries"]:
        say(f"{report['unjudged_queries']:,} queries have no judgement: left out of the means", quiet)
    if report["no_relevant_queries"]:
        say(f"{report['no_relevant_queries']:,} judged queries have no relevant document: they score 0", quiet)
    n = report["scored_queries"]
    say(f"evaluated {len(configs)} config{'s' * (len(configs) != 1)} on {n:,} quer{'y' if n == 1 else 'ies'}", quiet)


def _cutoffs(at: str | None, k: int | None) -> list[int]:
    from embcli.errors import UsageError

    cutoffs: set[int] = set()
    for word in (at or "").split(","):
        if not word.strip():
            continue
        try:
            value = int(word)
        except ValueError:
            raise UsageError(f"--at takes whole numbers separated by commas, got {word.strip()!r}") from None
        if value < 1:
            raise UsageError(f"--at: a cutoff must be at least 1, got {value}")
        cutoffs.add(value)
    if k is not None:
        cutoffs.add(k)
    return sorted(cutoffs) or [10]


LABELS = {"recall": "recall", "ndcg": "nDCG", "mrr": "MRR", "map": "MAP"}


def _table(report: dict, console: Console) -> None:
    from rich.table import Table

    t = Table("metric", *(c["name"] for c in report["configs"]))
    for name in report["metrics"]:
        kind, _, cut = name.partition("@")
        label = f"{LABELS[kind]}@{cut}" if cut else f"{LABELS[kind]} (top {report['depth']})"
        t.add_row(label, *(f"{c['metrics'][name]:.4f}" for c in report["configs"]))
    console.print(t)
    console.print(
        f"{report['scored_queries']:,} queries scored ({report['unjudged_queries']:,} unjudged, "
        f"{report['no_relevant_queries']:,} without a relevant document), {report['judgements']:,} judgements"
    )
