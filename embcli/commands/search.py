"""embcli search: nearest neighbours of each query in one or more indexes."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from embcli.commands import _options as o
from embcli.commands._ui import progress, say, warn

SEARCH = "Search"
CHUNK = 256  # queries embedded and searched together


def search(
    indexes: Annotated[
        list[str], typer.Argument(help="Index path(s); several are searched as shards and merged.", metavar="INDEX...")
    ],
    queries: Annotated[
        Optional[str],
        typer.Option(
            "--queries", help="Read queries from FILE instead of stdin.", show_default=False, rich_help_panel=o.IO
        ),
    ] = None,
    k: Annotated[int, typer.Option("-k", min=1, metavar="N", help="Hits per query.", rich_help_panel=SEARCH)] = 10,
    exact: Annotated[
        bool, typer.Option("--exact", help="Brute force instead of the HNSW graph.", rich_help_panel=SEARCH)
    ] = False,
    where_: Annotated[
        Optional[str],
        typer.Option(
            "--where",
            metavar="EXPR",
            help="Filter on payload fields: =, !=, <, <=, >, >=, IN (...), IS NULL, BETWEEN, AND/OR/NOT, "
            "e.g. \"section = 'games' AND year >= 2020\".",
            show_default=False,
            rich_help_panel=SEARCH,
        ),
    ] = None,
    expansion_search: Annotated[
        Optional[int],
        typer.Option(
            "--expansion-search",
            metavar="N",
            min=1,
            help="HNSW candidate list (ef); more is slower and more exact. Default: the index's.",
            show_default=False,
            rich_help_panel=SEARCH,
        ),
    ] = None,
    rescore: Annotated[
        int,
        typer.Option(
            "--rescore",
            metavar="M",
            min=0,
            help="Take M·k candidates from a compact (i8, b1) index and re-rank them by float scores "
            "from the kept float vectors.",
            rich_help_panel=SEARCH,
        ),
    ] = 0,
    full_scan_threshold: Annotated[
        int,
        typer.Option(
            "--full-scan-threshold",
            metavar="N",
            min=0,
            help="With --where: filters matching at most N records are searched exactly; above it, "
            "the HNSW graph is searched with oversampling.",
            rich_help_panel=SEARCH,
        ),
    ] = 20_000,
    flat: Annotated[
        bool, typer.Option("--flat", help="One line per hit instead of one per query.", rich_help_panel=o.IO)
    ] = False,
    output_field: Annotated[
        str, typer.Option("--output-field", metavar="NAME", help="Field that holds the hits.", rich_help_panel=o.IO)
    ] = "results",
    query_prompt: Annotated[
        Optional[str],
        typer.Option(
            "--query-prompt",
            metavar="TEXT",
            help="Prompt for text queries instead of the index's (asymmetric models).",
            show_default=False,
            rich_help_panel=o.MODEL,
        ),
    ] = None,
    prompt_name: Annotated[
        Optional[str],
        typer.Option(
            "--prompt-name",
            metavar="NAME",
            help="Named prompt of the index's model for text queries (e.g. query).",
            show_default=False,
            rich_help_panel=o.MODEL,
        ),
    ] = None,
    text_field: o.TextField = "text",
    vector_field: o.VectorField = "embedding",
    model_field: o.ModelField = "embedding_model",
    on_error: o.OnErrorOpt = o.OnError.fail,
    device: o.DeviceOpt = o.Device.auto,
    threads: o.Threads = None,
    batch_size: o.BatchSize = 32,
    quiet: o.Quiet = False,
) -> None:
    """Search indexes with queries from stdin: JSONL with a text or a vector, or NPY.

    Text queries are embedded exactly as the index's vectors were (model and
    options from its manifest). Streams: one output line per query as it
    comes. Each query record's own fields are kept; hits carry id, score
    (higher is better: cosine, inner product, or minus the Euclidean distance),
    rank and the indexed payload.
    """
    import numpy as np

    from embcli.core.encoder import encoder_from_provenance
    from embcli.core.index import open_shards, search_shards
    from embcli.core.prefetch import chunked_prefetch
    from embcli.core.streams import (
        BadRecords,
        JsonlWriter,
        Record,
        Source,
        get_text,
        iter_npy,
        iter_records,
        output_stream,
        parse_vector,
        where,
    )
    from embcli.errors import IncompatibleError, InputError

    readers = open_shards(indexes)
    prov = readers[0].provenance
    dims = readers[0].dims
    bad = BadRecords(skip=on_error is o.OnError.skip)
    encoder = None

    def get_encoder():
        nonlocal encoder
        if encoder is None:
            if prov is None:
                raise IncompatibleError(
                    f"index {indexes[0]} records no model, so it cannot embed text queries",
                    hint="give queries with an embedding field, or rebuild the index from `embcli embed` output",
                )
            o.ensure_model(prov["model"], device.value)
            encoder = encoder_from_provenance(
                prov,
                prompt=query_prompt,
                prompt_name=prompt_name,
                device=device.value,
                threads=threads,
                batch_size=batch_size,
            )
        return encoder

    def prepared(src: Source):
        """Query records with either a checked vector or the tokens of their text."""
        for rec in iter_records(src, "jsonl", text_field, bad):
            loc = where(src.name, rec.line)
            try:
                if output_field in rec.data:
                    raise InputError(
                        f"query already has a {output_field!r} field, {loc}", hint="choose another --output-field"
                    )
                if vector_field in rec.data:
                    vec = parse_vector(rec.data[vector_field], vector_field, loc)
                    qprov = rec.data.get(model_field) if model_field else None
                    if qprov is not None and prov is not None and _differs(qprov, prov):
                        raise IncompatibleError(f"query vector made by another model or options than the index, {loc}")
                    if len(vec) != dims:
                        raise IncompatibleError(f"query vector has {len(vec)} dimensions, the index {dims}, {loc}")
                    rec.extra["vector"] = vec
                else:
                    rec.extra["tokens"] = get_encoder().tokenize(get_text(rec, text_field, src.name))
            except InputError as e:
                bad.handle(e)
                continue
            yield rec

    def vectors_for(chunk: list[Record]) -> np.ndarray:
        out = np.empty((len(chunk), dims), dtype=np.float32)
        texts = [i for i, r in enumerate(chunk) if "tokens" in r.extra]
        if texts:
            out[texts] = get_encoder().encode_ids([chunk[i].extra.pop("tokens").ids for i in texts])
        for i, r in enumerate(chunk):
            if "vector" in r.extra:
                out[i] = r.extra.pop("vector")
        return out

    options = {
        "exact": exact,
        "where": where_,
        "expansion_search": expansion_search,
        "full_scan_threshold": full_scan_threshold,
        "rescore": rescore,
    }
    n_queries = 0
    with Source(queries) as src, output_stream(None) as out, progress("searching", "queries", quiet) as bar:
        writer = JsonlWriter(out)
        if src.sniff() == "npy":
            row = 0
            for block in iter_npy(src):
                if block.shape[1] != dims:
                    raise IncompatibleError(
                        f"query vectors have {block.shape[1]} dimensions, the index {dims}, {src.name}"
                    )
                chunk = [Record(row + i, {"row": row + i}) for i in range(len(block))]
                row += len(block)
                _emit(
                    writer,
                    readers,
                    chunk,
                    search_shards(readers, block, k, **options),
                    flat,
                    output_field,
                    vector_field,
                    model_field,
                )
                n_queries += len(chunk)
                bar.advance(len(chunk))
        else:
            for chunk in chunked_prefetch(prepared(src), CHUNK):
                hits = search_shards(readers, vectors_for(chunk), k, **options)
                _emit(writer, readers, chunk, hits, flat, output_field, vector_field, model_field)
                n_queries += len(chunk)
                bar.advance(len(chunk))
        elapsed = bar.elapsed()
    if summary := bad.summary():
        warn(summary, quiet)
    shards = f" over {len(readers)} shards" if len(readers) > 1 else ""
    noun = "query" if n_queries == 1 else "queries"
    say(
        f"searched {n_queries:,} {noun}{shards} in {elapsed:.1f}s, {n_queries / max(elapsed, 1e-9):,.0f} queries/s",
        quiet,
    )


def _emit(writer, readers, chunk, hits, flat, output_field, vector_field, model_field) -> None:
    """Write one line per query (hits nested) or one per hit (--flat)."""
    payloads = [
        readers[s].payloads([key for per_query in hits for sh, key, _ in per_query if sh == s])
        for s in range(len(readers))
    ]
    lines = []
    for rec, per_query in zip(chunk, hits, strict=True):
        query = {k: v for k, v in rec.data.items() if k not in (vector_field, model_field)}
        results = []
        for rank, (s, key, score) in enumerate(per_query, start=1):
            rid, payload = payloads[s][key]
            hit = {"id": rid, "score": round(score, 6), "rank": rank}
            # Payload fields named like ours are kept under "payload", never dropped.
            clash = {k: v for k, v in payload.items() if k in hit and k != "id"}
            hit.update((k, v) for k, v in payload.items() if k not in hit)
            if clash:
                hit["payload"] = clash
            results.append(hit)
        if flat:
            lines.extend({"query": query, **hit} for hit in results)
        else:
            lines.append({**query, output_field: results})
    writer.write_many(lines)
    writer.flush()


def _differs(query: object, index: dict) -> bool:
    """A query vector must come from the index's model and options; only the prompt may differ."""
    if not isinstance(query, dict):
        return True
    return any(query.get(k) != v for k, v in index.items() if k != "prompt")
