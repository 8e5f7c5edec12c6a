"""embcli index: build, extend or prune an on-disk vector index."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from embcli.commands import _options as o
from embcli.commands._ui import progress, say, warn

INDEX = "Index"
BATCH = 4096  # vectors handed to usearch at once


class Metric(str, Enum):
    cos = "cos"
    ip = "ip"
    l2 = "l2"


class DType(str, Enum):
    f32 = "f32"
    f16 = "f16"
    i8 = "i8"
    b1 = "b1"


def index(
    input: o.InputArg = None,
    output: Annotated[
        Optional[str],
        typer.Option(
            "-o",
            "--output",
            metavar="PATH",
            help="The index (a directory) to write.",
            show_default=False,
            rich_help_panel=o.IO,
        ),
    ] = None,
    append: Annotated[
        bool,
        typer.Option(
            "--append",
            help="Add to the existing index; a known id replaces its record (upsert).",
            rich_help_panel=INDEX,
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild an existing index from this input.", rich_help_panel=INDEX)
    ] = False,
    delete_ids: Annotated[
        Optional[str],
        typer.Option(
            "--delete-ids",
            metavar="FILE",
            help="Remove the ids in FILE (one per line) from the index given as -o or INPUT.",
            show_default=False,
            rich_help_panel=INDEX,
        ),
    ] = None,
    ids: Annotated[
        Optional[str],
        typer.Option(
            "--ids",
            metavar="FILE",
            help="For NPY input: ids, one per line, in row order. Default: row numbers.",
            show_default=False,
            rich_help_panel=o.IO,
        ),
    ] = None,
    model: Annotated[
        Optional[str],
        typer.Option(
            "-m",
            "--model",
            metavar="NAME",
            help="Model of vectors that do not record one (NPY, or JSONL without a model field); "
            "checked against their width.",
            show_default=False,
            rich_help_panel=o.MODEL,
        ),
    ] = None,
    metric: Annotated[
        Metric, typer.Option("--metric", help="Similarity: cosine, inner product or Euclidean.", rich_help_panel=INDEX)
    ] = Metric.cos,
    dtype: Annotated[
        DType,
        typer.Option(
            "--dtype",
            help="Storage precision: f32, f16, i8, or b1 (sign bits, Hamming; pair with search --rescore).",
            rich_help_panel=INDEX,
        ),
    ] = DType.f32,
    connectivity: Annotated[
        int, typer.Option("--connectivity", min=2, metavar="N", help="HNSW edges per node (M).", rich_help_panel=INDEX)
    ] = 16,
    expansion_add: Annotated[
        int,
        typer.Option(
            "--expansion-add",
            metavar="N",
            min=1,
            help="HNSW candidate list while building (efConstruction).",
            rich_help_panel=INDEX,
        ),
    ] = 128,
    expansion_search: Annotated[
        int,
        typer.Option(
            "--expansion-search",
            metavar="N",
            min=1,
            help="Default HNSW candidate list at search time (ef).",
            rich_help_panel=INDEX,
        ),
    ] = 128,
    keep_floats: Annotated[
        Optional[bool],
        typer.Option(
            "--keep-floats/--no-keep-floats",
            help="Keep float32 vectors beside the index for `search --rescore` and exact search. "
            "Default: yes for i8 and b1.",
            show_default=False,
            rich_help_panel=INDEX,
        ),
    ] = None,
    store_text: Annotated[
        bool,
        typer.Option("--store-text/--no-store-text", help="Keep the text field in the payload.", rich_help_panel=INDEX),
    ] = True,
    text_field: o.TextField = "text",
    vector_field: o.VectorField = "embedding",
    model_field: o.ModelField = "embedding_model",
    on_error: o.OnErrorOpt = o.OnError.fail,
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            min=1,
            metavar="N",
            help="Build threads. 1 (default) builds the same graph every run; more is faster, "
            "but the graph then depends on thread timing.",
            rich_help_panel=o.SPEED,
        ),
    ] = 1,
    quiet: o.Quiet = False,
) -> None:
    """Index embedded records (JSONL with a vector, or NPY) for `embcli search`.

    Needs the whole input before the index is published. The index is a
    directory: usearch HNSW vectors, SQLite payloads (every field but the
    vector), and a manifest with the model, options and checksums. Writes are
    atomic: a crash leaves the previous index loadable.
    """
    from embcli.core.index import IndexOptions, IndexWriter, disk_bytes
    from embcli.core.streams import BadRecords, Source, iter_embedded, read_ids, where
    from embcli.errors import IncompatibleError, InputError, UsageError

    if delete_ids is not None:
        path = output or input
        if not path or (output and input):
            raise UsageError("--delete-ids takes the index as -o PATH (or as the argument), and no input")
        writer = IndexWriter(path, IndexOptions(), append=True)
        try:
            removed = writer.delete(read_ids(delete_ids))
            manifest = writer.commit()
        except BaseException:
            writer.abort()
            raise
        say(f"deleted {removed:,} of the given ids from {path}; {manifest['count']:,} vectors remain", quiet)
        return
    if not output:
        raise UsageError("give the index path with -o PATH")

    options = IndexOptions(metric.value, dtype.value, connectivity, expansion_add, expansion_search, keep_floats)
    writer = IndexWriter(
        output, options, append=append, force=force, store_text=store_text, text_field=text_field, threads=threads
    )
    bad = BadRecords(skip=on_error is o.OnError.skip)
    row_ids = read_ids(ids) if ids else None
    model_prov: dict | None = None
    rows = 0
    try:
        with Source(input) as src, progress("indexing", "vectors", quiet) as bar:
            is_npy = src.sniff() == "npy"
            if row_ids is not None and not is_npy:
                raise UsageError("--ids is for NPY input; JSONL records carry their own id")
            batch_ids: list[object | None] = []
            batch_payloads: list[dict] = []
            batch_vecs: list = []

            def flush() -> None:
                import numpy as np

                if batch_vecs:
                    writer.add(batch_ids, batch_payloads, np.vstack(batch_vecs))
                    bar.advance(len(batch_vecs))
                    for pending in (batch_ids, batch_payloads, batch_vecs):
                        pending.clear()

            for rec, vec in iter_embedded(src, vector_field, bad):
                loc = where(src.name, rec.line if rec else rows + 1)
                prov = rec.data.get(model_field) if rec is not None and model_field else None
                if prov is None and model:
                    if model_prov is None or model_prov["dims"] != len(vec):
                        model_prov = _provenance_for(model, len(vec))
                    prov = model_prov
                elif prov is not None and model and prov.get("model") != model:
                    raise IncompatibleError(f"records say model {prov.get('model')!r}, --model says {model!r}, {loc}")
                if prov is not None and not _valid_provenance(prov, len(vec)):
                    bad.handle(InputError(f"bad {model_field!r} field (not one written by embcli embed), {loc}"))
                    continue
                writer.set_provenance(prov, loc)
                if rec is None:
                    if row_ids is not None and rows >= len(row_ids):
                        raise InputError(f"--ids has {len(row_ids)} ids, but the input has more rows, {loc}")
                    batch_ids.append(row_ids[rows] if row_ids is not None else None)
                    batch_payloads.append({})
                else:
                    rid = rec.data.get("id")
                    if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (str, int))):
                        bad.handle(InputError(f"id must be a string or an integer, {loc}"))
                        continue
                    batch_ids.append(rid)
                    batch_payloads.append({k: v for k, v in rec.data.items() if k not in (vector_field, model_field)})
                batch_vecs.append(vec)
                rows += 1
                if len(batch_vecs) >= BATCH:
                    flush()
            flush()
            if row_ids is not None and rows != len(row_ids):
                raise InputError(f"--ids has {len(row_ids)} ids for {rows} rows, {src.name}")
            elapsed = bar.elapsed()
        if rows == 0:  # empty input: nothing to change, and an index needs at least its width
            writer.abort()
            say(f"no vectors in the input; {output} left as it was", quiet)
            return
        manifest = writer.commit()
    except BaseException:
        writer.abort()
        raise
    if summary := bad.summary():
        warn(summary, quiet)
    if manifest.get("provenance") is None:
        warn("no model is recorded for these vectors: search will take vector queries only (see --model)", quiet)
    size = disk_bytes(writer.path, manifest)
    say(
        f"indexed {rows:,} vectors ({writer.added:,} new, {writer.replaced:,} replaced) in {elapsed:.1f}s → "
        f"{output}: {manifest['count']:,} vectors, {manifest['dims']}-d {manifest['dtype']} {manifest['metric']}, "
        f"{size / 1e6:,.1f} MB",
        quiet,
    )


def _provenance_for(model: str, width: int) -> dict:
    """What `embed -m MODEL` would record for vectors of this width (Matryoshka if narrower)."""
    from embcli.core.encoder import Encoder
    from embcli.core.models import resolve_model
    from embcli.errors import IncompatibleError, UsageError

    o.ensure_model(model, "cpu")
    try:
        return Encoder(resolve_model(model), device="cpu", threads=1, dims=width).provenance()
    except UsageError as e:
        if "--dims" not in e.message:
            raise
        raise IncompatibleError(f"vectors have {width} dimensions, more than model {model!r} makes") from None


def _valid_provenance(prov: object, width: int) -> bool:
    keys = ("model", "model_sha256", "dims", "max_length", "pooling", "normalize", "prompt")
    return isinstance(prov, dict) and all(k in prov for k in keys) and prov["dims"] == width
