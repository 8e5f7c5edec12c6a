"""embcli search: nearest neighbours of each query in one or more indexes."""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated, Optional

import typer

from embcli.choices import EXACT_SEARCH_LIMIT
from embcli.commands import _options as o
from embcli.commands._ui import progress, say, warn

SEARCH = "Search"
QUERIES_HINT = 'queries are JSON objects, one per line: {"text": "..."} or an embedding field; or pass --query TEXT'


IndexesOpt = Annotated[
    list[str],
    typer.Argument(
        help="Index path(s): an index, a sharded index (its shards searched as one), or several, merged by score.",
        metavar="INDEX...",
    ),
]
QueriesOpt = o.option(
    Optional[str],
    "--queries",
    metavar="FILE",
    show_default=False,
    help="Read queries from FILE instead of stdin.",
    panel=o.IO,
)
QueryOpt = o.option(
    Optional[list[str]],
    "--query",
    metavar="TEXT",
    show_default=False,
    help="Search for TEXT (repeatable), embedded as the index's manifest says; stdin is not read.",
    panel=o.IO,
)
LikeOpt = o.option(
    Optional[list[str]],
    "--like",
    metavar="ID",
    show_default=False,
    help="Search with the stored vector of the item with this id (repeatable), leaving the item out of "
    "its own hits; stdin is not read.",
    panel=o.IO,
)
KOpt = o.option(int, "-k", "--limit", min=1, metavar="N", help="Hits per query.", panel=SEARCH)
ExactOpt = o.option(bool, "--exact", help="Brute force instead of the HNSW graph.", panel=SEARCH)
WhereOpt = o.text_option(
    "--where",
    metavar="EXPR",
    help="Filter on payload fields: =, !=, <, <=, >, >=, IN (...), IS NULL, BETWEEN, AND/OR/NOT, "
    "e.g. \"section = 'games' AND year >= 2020\".",
    panel=SEARCH,
)
ExpansionSearchOpt = o.option(
    Optional[int],
    "--expansion-search",
    metavar="N",
    min=1,
    show_default=False,
    help="HNSW candidate list (ef); more is slower and more exact. Default: the index's.",
    panel=SEARCH,
)
RescoreOpt = o.option(
    int,
    "--rescore",
    metavar="M",
    min=0,
    help="Take M·k candidates from a compact (i8, b1) index and re-rank them by float scores "
    "from the kept float vectors.",
    panel=SEARCH,
)
FullScanThresholdOpt = o.option(
    int,
    "--full-scan-threshold",
    metavar="N",
    min=0,
    help="With --where: filters matching at most N records are searched exactly; above it, "
    "the HNSW graph is searched with oversampling.",
    panel=SEARCH,
)
FlatOpt = o.option(bool, "--flat", help="One line per hit instead of one per query.", panel=o.IO)
OutputFieldOpt = o.option(str, "--output-field", metavar="NAME", help="Field that holds the hits.", panel=o.IO)
QueryPromptOpt = o.text_option(
    "--query-prompt",
    metavar="TEXT",
    help="Prompt for text queries instead of the index's (asymmetric models).",
    panel=o.MODEL,
)
PromptNameOpt = o.text_option(
    "--prompt-name",
    metavar="NAME",
    help="Named prompt of the index's model for text queries (e.g. query).",
    panel=o.MODEL,
)

ModelOpt = o.text_option(
    "-m",
    "--model",
    metavar="NAME",
    help="Where the index's model is now (e.g. a moved model directory) for text queries; "
    "it must be the same model (checked by sha256). Default: the model the index records. "
    "With --adapter: where the adapter's new model is.",
    panel=o.MODEL,
)


def search(
    indexes: IndexesOpt,
    query: QueryOpt = None,
    like: LikeOpt = None,
    queries: QueriesOpt = None,
    output: o.Output = None,
    k: KOpt = 10,
    exact: ExactOpt = False,
    where_: WhereOpt = None,
    expansion_search: ExpansionSearchOpt = None,
    rescore: RescoreOpt = 0,
    full_scan_threshold: FullScanThresholdOpt = EXACT_SEARCH_LIMIT,
    flat: FlatOpt = False,
    output_field: OutputFieldOpt = "results",
    query_prompt: QueryPromptOpt = None,
    prompt_name: PromptNameOpt = None,
    model: ModelOpt = None,
    adapter: o.AdapterFile = None,
    text_field: o.TextField = "text",
    vector_field: o.VectorField = "embedding",
    model_field: o.ModelField = "embedding_model",
    on_error: o.OnErrorOpt = o.OnError.fail,
    device: o.DeviceOpt = o.Device.auto,
    threads: o.Threads = None,
    batch_size: o.BatchSize = 32,
    quiet: o.Quiet = False,
) -> None:
    """Search indexes with --query texts, --like ids, or queries from stdin (JSONL with a text or a vector, or NPY).

    Text queries are embedded exactly as the index's vectors were (model and
    options from its manifest). Streams: one output line per query as it
    comes. Each query record's own fields are kept ({"text": ...} for --query,
    {"like": ID} for --like); hits carry id, score (higher is better: cosine,
    inner product, or minus the Euclidean distance), rank and the indexed
    payload.
    """
    from embcli.api.encoding import ensure_model
    from embcli.errors import UsageError
    from embcli.io.streams import BadRecords, JsonlWriter, Source, output_stream
    from embcli.search.query import (
        QueryFields,
        QueryOptions,
        Searcher,
        SearchOptions,
        given_queries,
        query_chunks,
    )

    given = bool(query or like)
    if given and queries is not None:
        raise UsageError("--queries reads queries from a file; --query and --like give them: use one or the other")
    qopts = QueryOptions(query_prompt, prompt_name, device.value, threads, batch_size, model, ensure_model)
    if adapter:
        from embcli.runtime.adapter import load

        qopts.adapter = load(adapter)
    searcher = Searcher(indexes, qopts)
    options = SearchOptions(k, exact, where_, expansion_search, full_scan_threshold, rescore)
    bad = BadRecords(skip=on_error is o.OnError.skip)
    fields = QueryFields(text_field, vector_field, model_field, output_field)
    if not given and queries in (None, "-") and not quiet and _is_tty(sys.stdin):
        # Someone typed `embcli search x.idx` at a prompt: say what the silence is waiting for.
        say(f'reading queries from stdin (JSONL {{"{text_field}": ...}} per line, Ctrl-D to end); or pass --query TEXT')

    n_queries = 0
    with (
        contextlib.nullcontext() if given else Source(queries) as src,
        output_stream(output) as out,
        progress("searching", "queries", quiet) as bar,
    ):
        writer = JsonlWriter(out)
        if given:
            batches = given_queries(searcher, query or [], like or [], fields)
        else:
            batches = ((c, v, None) for c, v in query_chunks(searcher, src, fields, bad, hint=QUERIES_HINT))
        for chunk, vectors, exclude in batches:
            hits = searcher.search(vectors, options, exclude)
            _emit(writer, chunk, hits, flat, output_field, (vector_field, model_field))
            n_queries += len(chunk)
            bar.advance(len(chunk))
        elapsed = bar.elapsed()
    if summary := bad.summary():
        warn(summary, quiet)
    shards = f" over {len(searcher.readers)} shards" if len(searcher.readers) > 1 else ""
    noun = "query" if n_queries == 1 else "queries"
    say(
        f"searched {n_queries:,} {noun}{shards} in {elapsed:.1f}s, {n_queries / max(elapsed, 1e-9):,.0f} queries/s",
        quiet,
    )


def _is_tty(stream: object) -> bool:
    try:
        return bool(stream.isatty())  # type: ignore[attr-defined]
    except (AttributeError, ValueError, OSError):  # no stdin at all, or a closed one
        return False


def _emit(writer, chunk, hits, flat: bool, output_field: str, dropped: tuple[str, ...]) -> None:
    """Write one line per query (hits nested) or one per hit (--flat)."""
    lines = []
    for rec, per_query in zip(chunk, hits, strict=True):
        query = {k: v for k, v in rec.data.items() if k not in dropped}
        results = [hit.as_record() for hit in per_query]
        if flat:
            lines.extend({"query": query, **hit} for hit in results)
        else:
            lines.append({**query, output_field: results})
    writer.write_many(lines)
    writer.flush()
