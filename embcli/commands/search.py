"""embcli search: nearest neighbours of each query in one or more indexes."""

from __future__ import annotations

import contextlib
import sys
from typing import Annotated, Optional

import typer

from embcli.choices import EXACT_SEARCH_LIMIT, FUSIONS, GROUP_FUSIONS
from embcli.commands import _options as o
from embcli.commands._ui import progress, say, warn

SEARCH = "Search"
WORDS = "Hybrid and lexical search"
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
Fusion = o.choice("Fusion", FUSIONS)
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
HybridOpt = o.option(
    bool,
    "--hybrid",
    help="Fuse the dense ranking with BM25 over the index's full-text index (text queries only): "
    "each side's top --fusion-depth candidates, fused by --fusion.",
    panel=WORDS,
)
LexicalOpt = o.option(bool, "--lexical", help="BM25 over the full-text index alone; nothing is embedded.", panel=WORDS)
FusionOpt = o.option(
    Fusion,
    "--fusion",
    help="rrf: reciprocal rank fusion, sum of 1/(K + rank) over both rankings (K = --rrf-k). "
    "linear: --alpha · dense + (1 - alpha) · BM25, each min-max normalised over its candidates.",
    panel=WORDS,
)
RrfKOpt = o.option(
    float, "--rrf-k", min=0, metavar="K", help="RRF's constant (60, as in Cormack et al. 2009).", panel=WORDS
)
AlphaOpt = o.option(
    float, "--alpha", min=0.0, max=1.0, metavar="A", help="--fusion linear: the dense side's weight.", panel=WORDS
)
FusionDepthOpt = o.option(
    int,
    "--fusion-depth",
    min=1,
    metavar="N",
    help="--hybrid: candidates taken from each side before fusing (at least -k).",
    panel=WORDS,
)
FtsSyntaxOpt = o.option(
    bool,
    "--fts-syntax",
    help='Query texts are SQLite FTS5 expressions (AND, OR, NOT, "phrases", prefix*, NEAR) for the BM25 '
    "side. Without it, a query's words are matched as words, whatever characters it holds.",
    panel=WORDS,
)
ExplainOpt = o.option(
    bool,
    "--explain",
    help="Hits carry dense_rank and lexical_rank: their place in either ranking (null: not among its candidates).",
    panel=WORDS,
)
GroupFusion = o.choice("GroupFusion", GROUP_FUSIONS)
GroupByOpt = o.text_option(
    "--group-by",
    metavar="FIELD",
    help="One hit per value of this payload field (e.g. parent, after `embed --chunk`): each document once, as its "
    "best chunk, scored by --group-fusion, with group_hits (its chunks among the candidates). Candidates are "
    "over-fetched (8 per group, 4x deeper while short) until k groups are found or the index has no more. "
    "A hit without the field is grouped by its id.",
    panel=SEARCH,
)
GroupFusionOpt = o.option(
    Optional[GroupFusion],
    "--group-fusion",
    show_default=False,
    help="--group-by: a group's score. max: its best hit's (default). sum: the sum of its --group-top best hits' "
    "scores among the candidates (documents that match in several places rise).",
    panel=SEARCH,
)
GroupTopOpt = o.option(
    Optional[int],
    "--group-top",
    metavar="N",
    min=1,
    show_default=False,
    help="--group-fusion sum: how many of a group's best hits are summed. Default: 3.",
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
    hybrid: HybridOpt = False,
    lexical: LexicalOpt = False,
    fusion: FusionOpt = Fusion.rrf,
    rrf_k: RrfKOpt = 60.0,
    alpha: AlphaOpt = 0.5,
    fusion_depth: FusionDepthOpt = 100,
    fts_syntax: FtsSyntaxOpt = False,
    explain: ExplainOpt = False,
    group_by: GroupByOpt = None,
    group_fusion: GroupFusionOpt = None,
    group_top: GroupTopOpt = None,
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
    payload. --hybrid fuses the dense ranking with BM25 over the index's
    full-text index; --lexical runs BM25 alone. --where filters both sides.
    With --group-by FIELD (e.g. parent, for an index of `embed
    --chunk` output) each value of the field comes once: a document as its
    best chunk.
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
        query_texts,
    )

    given = bool(query or like)
    if hybrid and lexical:
        raise UsageError("--hybrid fuses dense and BM25 rankings, --lexical is BM25 alone: give one")
    mode = "hybrid" if hybrid else "lexical" if lexical else "dense"
    if mode == "lexical" and (rescore or exact or expansion_search):
        raise UsageError("--rescore, --exact and --expansion-search are for the dense side: --lexical has none")
    if given and queries is not None:
        raise UsageError("--queries reads queries from a file; --query and --like give them: use one or the other")
    qopts = QueryOptions(query_prompt, prompt_name, device.value, threads, batch_size, model, ensure_model)
    if adapter:
        from embcli.runtime.adapter import load

        qopts.adapter = load(adapter)
    searcher = Searcher(indexes, qopts)
    if group_by is None and (group_fusion is not None or group_top is not None):
        raise UsageError("--group-fusion and --group-top go with --group-by")
    if group_top is not None and o.value(group_fusion) != "sum":
        raise UsageError("--group-top is for --group-fusion sum")
    options = SearchOptions(
        k,
        exact,
        where_,
        expansion_search,
        full_scan_threshold,
        rescore,
        mode=mode,
        fusion=fusion.value,
        rrf_k=rrf_k,
        alpha=alpha,
        depth=fusion_depth,
        fts_syntax=fts_syntax,
        explain=explain,
        group_by=group_by,
        group_fusion=o.value(group_fusion) or "max",
        group_top=group_top or 3,
    )
    if mode != "dense":
        searcher.check_words()  # an index without a full-text index fails before any query is read
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
            batches = given_queries(searcher, query or [], like or [], fields, mode)
        else:
            chunks = query_chunks(searcher, src, fields, bad, hint=QUERIES_HINT, mode=mode, fts_syntax=fts_syntax)
            batches = ((c, v, None) for c, v in chunks)
        for chunk, vectors, exclude in batches:
            hits = searcher.search(vectors, options, exclude, query_texts(chunk) if mode != "dense" else None)
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
