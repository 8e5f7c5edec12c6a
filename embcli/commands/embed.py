"""embcli embed: texts in, vectors out."""

from __future__ import annotations

from typing import Optional

from embcli.commands import _options as o
from embcli.commands._ui import progress, say, warn

# Only embed reads plain text, so only its hint names --input-format.
TEXT_HINT = "for CSV/TSV with a header use --input-format csv|tsv; for one text per line, --input-format text"


PromptOpt = o.text_option(
    "--prompt", metavar="TEXT", help="Text put before every input (e.g. 'query: ').", panel=o.MODEL
)
PromptNameOpt = o.text_option(
    "--prompt-name", metavar="NAME", help="A prompt from the model's config_sentence_transformers.json.", panel=o.MODEL
)
MaxLengthOpt = o.option(
    Optional[int],
    "--max-length",
    metavar="N",
    min=2,
    show_default=False,
    help="Token limit per text, at most the model's positions. Default: the model's.",
    panel=o.MODEL,
)
TruncateOpt = o.option(
    bool,
    "--truncate/--no-truncate",
    help="Cut over-long texts to --max-length (counted on stderr), or treat them as bad records.",
    panel=o.MODEL,
)
PoolingOpt = o.option(
    Optional[o.Pooling], "--pooling", show_default=False, help="Token pooling. Default: the model's.", panel=o.MODEL
)
NormalizeOpt = o.option(
    Optional[bool],
    "--normalize/--no-normalize",
    show_default=False,
    help="L2-normalize vectors. Default: the model's.",
    panel=o.MODEL,
)
DimsOpt = o.option(
    Optional[int],
    "--dims",
    metavar="N",
    min=1,
    show_default=False,
    help="Matryoshka: keep the first N dimensions, then renormalize.",
    panel=o.MODEL,
)
CacheOpt = o.option(
    Optional[str],
    "--cache",
    metavar="FILE",
    envvar="EMBCLI_CACHE",
    show_default=False,
    help="SQLite cache of vectors by text, model and options: unchanged texts skip inference. Default: $EMBCLI_CACHE.",
    panel=o.SPEED,
)
NoCacheOpt = o.option(bool, "--no-cache", help="Ignore $EMBCLI_CACHE for this run.", panel=o.SPEED)
SCALE = o.SCALE
Engine = o.Engine
EngineOpt = o.option(
    Engine,
    "--engine",
    help="local: this process, streaming. ray: a Ray cluster ($RAY_ADDRESS, else a local one) embeds the input "
    "files in parts, written as -o DIR/part-NNNNN.<format> and DIR/_manifest.json (written last); a re-run "
    "skips finished parts. Needs the ray extra.",
    panel=SCALE,
)
ActorsOpt = o.option(
    Optional[int],
    "--actors",
    metavar="N",
    min=1,
    show_default=False,
    help="--engine ray: actors, each holding one model. Default: one per CPU (per GPU share), at most one per part.",
    panel=SCALE,
)
GpusPerActorOpt = o.option(
    Optional[float],
    "--gpus-per-actor",
    metavar="G",
    min=0,
    show_default=False,
    help="--engine ray: GPUs each actor reserves (0.5: two per GPU); the model runs on CUDA. Default: CPU only.",
    panel=SCALE,
)
PartRowsOpt = o.option(
    Optional[int],
    "--part-rows",
    metavar="R",
    min=1,
    show_default=False,
    help="--engine ray: records per part, cut at line or row-group boundaries (a smaller file is one part). "
    "Default: 50000.",
    panel=SCALE,
)
CHUNKING = "Long texts"
ChunkOpt = o.option(
    bool,
    "--chunk",
    help="Cut texts longer than the model takes into overlapping token windows, one record per chunk: "
    "id '<id>#<n>', parent (the record's id, else its number from 1), chunk (n from 0), span ([start, end) "
    "characters of the text) and the chunk's text as --text-field; other fields pass through. No text is "
    "dropped: the windows cover every token, and no chunk is truncated.",
    panel=CHUNKING,
)
ChunkTokensOpt = o.option(
    Optional[int],
    "--chunk-tokens",
    metavar="N",
    min=1,
    show_default=False,
    help="--chunk: most text tokens per chunk. Default: all the model takes (its max length less its special "
    "tokens and the prompt's; 254 for the built-in model).",
    panel=CHUNKING,
)
ChunkOverlapOpt = o.option(
    Optional[int],
    "--chunk-overlap",
    metavar="N",
    min=0,
    show_default=False,
    help="--chunk: tokens shared by neighbouring chunks (window edges move back to a word's start). "
    "Default: an eighth of --chunk-tokens.",
    panel=CHUNKING,
)
ContextFieldOpt = o.text_option(
    "--context-field",
    metavar="FIELD",
    help="--chunk: put this field (e.g. a title) and a blank line before every chunk's text as it is embedded "
    "(the record keeps the chunk alone). Its tokens come out of the window; one longer than half a window is cut.",
    panel=CHUNKING,
)
ContextSentenceOpt = o.option(
    bool,
    "--context-sentence",
    help="--chunk: put the text's first sentence (to a . ! or ? before whitespace, or its first blank line) "
    "before every chunk after the first, as --context-field does (after that field when both are given).",
    panel=CHUNKING,
)
MaxBatchTokensOpt = o.option(
    int,
    "--max-batch-tokens",
    metavar="N",
    min=1,
    help="Most padded tokens in one batch (caps memory on long texts).",
    panel=o.SPEED,
)


def embed(
    input: o.InputArg = None,
    output: o.Output = None,
    fmt: o.FormatOpt = None,
    compress: o.CompressOpt = None,
    input_format: o.InputFormatOpt = None,
    infer_types: o.InferTypesOpt = False,
    text_field: o.TextField = "text",
    vector_field: o.VectorField = "embedding",
    model_field: o.ModelField = "embedding_model",
    overwrite: o.Overwrite = False,
    on_error: o.OnErrorOpt = o.OnError.fail,
    model: o.ModelOpt = None,
    adapter: o.AdapterFile = None,
    prompt: PromptOpt = None,
    prompt_name: PromptNameOpt = None,
    max_length: MaxLengthOpt = None,
    truncate: TruncateOpt = True,
    pooling: PoolingOpt = None,
    normalize: NormalizeOpt = None,
    dims: DimsOpt = None,
    cache: CacheOpt = None,
    no_cache: NoCacheOpt = False,
    device: o.DeviceOpt = o.Device.auto,
    threads: o.Threads = None,
    batch_size: o.BatchSize = 32,
    max_batch_tokens: MaxBatchTokensOpt = 8192,
    engine: EngineOpt = Engine.local,
    actors: ActorsOpt = None,
    gpus_per_actor: GpusPerActorOpt = None,
    part_rows: PartRowsOpt = None,
    chunk: ChunkOpt = False,
    chunk_tokens: ChunkTokensOpt = None,
    chunk_overlap: ChunkOverlapOpt = None,
    context_field: ContextFieldOpt = None,
    context_sentence: ContextSentenceOpt = False,
    quiet: o.Quiet = False,
) -> None:
    """Embed texts: records (JSONL, CSV/TSV, Parquet, Arrow) or text lines in, records with a vector (or NPY) out.

    Streams: output starts before the input ends, and memory stays bounded
    whatever the input size. Every field of a record passes through; the vector
    is added as --vector-field. Texts are batched by token length and written
    back in input order; the same input and options give the same bytes.

    With --chunk, a text longer than the model takes becomes several records,
    one per overlapping window of tokens, each with its parent's id and its
    character span; `embcli search --group-by parent` answers with documents.

    With --engine ray the input files are cut into parts that a Ray cluster
    embeds in parallel, into -o DIR: DIR/part-NNNNN.<format> (each the bytes
    this command writes for that part; together, in order, the bytes it writes
    for the whole input) and DIR/_manifest.json, written last. A re-run with
    the same inputs and options embeds only the parts not yet done.
    """
    chunking = _chunking(chunk, chunk_tokens, chunk_overlap, context_field, context_sentence)
    if engine.value == "ray":
        if chunking is not None:
            from embcli.errors import UsageError

            raise UsageError("--chunk runs with --engine local only")
        if adapter:
            from embcli.errors import UsageError

            raise UsageError("--adapter is not yet supported with --engine ray")
        _embed_ray(**locals())
        return
    if actors is not None or gpus_per_actor is not None or part_rows is not None:
        from embcli.errors import UsageError

        raise UsageError("--actors, --gpus-per-actor and --part-rows go with --engine ray")
    from embcli.api.encoding import Encoder
    from embcli.io.inputs import Inputs, ReadOptions
    from embcli.io.outputs import open_output, output_spec
    from embcli.io.streams import BadRecords
    from embcli.runtime.embedding import EmbedStats, write_embedded

    spec = output_spec(output, o.value(fmt), o.value(compress))
    if chunking is not None and spec.format == "npy":
        from embcli.errors import UsageError

        raise UsageError("--chunk writes records (a parent and a span per chunk): NPY holds vectors alone")
    inputs = Inputs(input, ReadOptions(o.value(input_format), infer_types))
    fitted = None
    if adapter:  # the adapter's new model and options, unless flags say otherwise (then they must agree)
        from embcli.runtime.adapter import load

        fitted = load(adapter)
        new = fitted.new
        model, max_length, dims = model or new["model"], max_length or new["max_length"], dims or new["dims"]
        pooling = pooling or o.Pooling(new["pooling"])
        normalize = new["normalize"] if normalize is None else normalize
        prompt = new["prompt"] if prompt is None and prompt_name is None else prompt
    options = dict(
        device=device.value,
        threads=threads,
        max_length=max_length,
        pooling=pooling.value if pooling else None,
        normalize=normalize,
        prompt=prompt,
        prompt_name=prompt_name,
        dims=dims,
        batch_size=batch_size,
        max_batch_tokens=max_batch_tokens,
    )
    store = None
    if cache and not no_cache and fitted is None:
        from embcli.api.encoding import cached_encoder

        encoder, store = cached_encoder(cache, model, **options)  # the model loads on the first miss
    else:
        encoder = Encoder(model, **options).runtime  # type: ignore[arg-type]
    if fitted is not None:
        from embcli.runtime.adapter import AdaptedEncoder

        encoder = AdaptedEncoder(encoder, fitted, adapter)
        if cache and not no_cache:  # keyed by the adapter too (it is in the provenance): never plain vectors
            from embcli.runtime.cache import EmbeddingCache, spec_of

            store = EmbeddingCache(cache, spec_of(encoder), encoder.dim)
    bad = BadRecords(skip=on_error is o.OnError.skip)
    stats = EmbedStats()
    records = inputs.records(text_field, bad, json_hint=TEXT_HINT)
    chunker = None
    if chunking is not None:
        from embcli.runtime.chunking import Chunker

        chunker = Chunker(encoder.ensure_tokenizer(), encoder.max_length, encoder.prompt, chunking)
        records = chunker.records(records, text_field=text_field, bad=bad, overwrite=overwrite)
    with open_output(spec) as out, progress("embedding", "texts", quiet, fraction=inputs.share) as bar:
        write_embedded(
            records,
            encoder,
            out,
            spec,
            text_field=text_field,
            vector_field=vector_field,
            model_field=model_field,
            bad=bad,
            stats=stats,
            truncate=truncate,
            reserved=() if overwrite else tuple(f for f in (vector_field, model_field) if f),
            cache=store,
            advance=bar.advance,
        )
        elapsed = bar.elapsed()

    if store is not None:
        store.close()
    if stats.truncated:
        warn(f"{stats.truncated} text{'s' * (stats.truncated != 1)} truncated to {encoder.max_length} tokens", quiet)
    if chunker is not None:
        c = chunker.stats
        n_cut = c.contexts_cut
        cut = f"; {n_cut:,} context{'s' * (n_cut != 1)} cut to half a window" if n_cut else ""
        say(
            f"chunked {c.documents:,} text{'s' * (c.documents != 1)} into {c.chunks:,} chunk{'s' * (c.chunks != 1)} "
            f"({c.split:,} longer than one chunk of {chunker.size} tokens, overlap {chunker.overlap}){cut}",
            quiet,
        )
    if summary := bad.summary():
        warn(summary, quiet)
    cached = f"; {stats.cached:,} from the cache, {encoder.batches_run:,} model batches" if store else ""
    say(
        f"embedded {stats.texts:,} text{'s' * (stats.texts != 1)} ({stats.tokens:,} tokens{cached}) in {elapsed:.1f}s, "
        f"{stats.texts / max(elapsed, 1e-9):,.0f} texts/s · {encoder.spec.name}, {encoder.dim}-d, "
        f"{encoder.device or 'model not loaded'}",
        quiet,
    )


def _chunking(
    chunk: bool, tokens: int | None, overlap: int | None, context_field: str | None, context_sentence: bool
) -> object | None:
    """The --chunk options as the core's ``Chunking`` (None without --chunk; its options alone are a usage error)."""
    if not chunk:
        if tokens is not None or overlap is not None or context_field or context_sentence:
            from embcli.errors import UsageError

            raise UsageError("--chunk-tokens, --chunk-overlap, --context-field and --context-sentence go with --chunk")
        return None
    from embcli.runtime.chunking import Chunking

    return Chunking(tokens, overlap, context_field, context_sentence)


def _embed_ray(**a: object) -> None:
    """``embed --engine ray``: the parts on a Ray cluster, a summary on stderr."""
    from embcli.errors import UsageError
    from embcli.io.outputs import output_spec

    quiet = bool(a["quiet"])
    try:
        from embcli.integrations.embedjob import DEFAULT_PART_ROWS, EmbedOptions
        from embcli.integrations.ray import embed_job, require_ray
    except ImportError:  # pragma: no cover - the module itself needs nothing beyond the core
        raise UsageError("the Ray engine is not available", hint="pip install 'embcli[ray]'") from None
    require_ray()
    if not a["output"]:
        raise UsageError("--engine ray writes a directory of parts: give -o DIR")
    if not a["input"] or "-" in a["input"]:  # type: ignore[operator]
        raise UsageError(
            "--engine ray reads input files, not stdin (each part is read by a worker)",
            hint="give input files, globs or directories, or drop --engine ray",
        )
    if a["cache"] and not a["no_cache"]:
        warn("--cache is not used with --engine ray (a re-run skips finished parts instead)", quiet)
    spec = output_spec(None, o.value(a["fmt"]), o.value(a["compress"]))  # type: ignore[arg-type]
    device = a["device"].value  # type: ignore[attr-defined]
    gpus = a["gpus_per_actor"] or 0.0
    if device == "cpu" and gpus:
        raise UsageError("--gpus-per-actor runs the model on CUDA: drop --device cpu")
    pooling = a["pooling"]
    options = EmbedOptions(
        model=a["model"],  # type: ignore[arg-type]
        device="cuda" if gpus or device == "cuda" else "cpu",
        max_length=a["max_length"],  # type: ignore[arg-type]
        pooling=pooling.value if pooling else None,  # type: ignore[attr-defined]
        normalize=a["normalize"],  # type: ignore[arg-type]
        prompt=a["prompt"],  # type: ignore[arg-type]
        prompt_name=a["prompt_name"],  # type: ignore[arg-type]
        dims=a["dims"],  # type: ignore[arg-type]
        batch_size=a["batch_size"],  # type: ignore[arg-type]
        max_batch_tokens=a["max_batch_tokens"],  # type: ignore[arg-type]
        truncate=a["truncate"],  # type: ignore[arg-type]
        text_field=a["text_field"],  # type: ignore[arg-type]
        vector_field=a["vector_field"],  # type: ignore[arg-type]
        model_field=a["model_field"],  # type: ignore[arg-type]
        overwrite=a["overwrite"],  # type: ignore[arg-type]
        skip_bad=a["on_error"] is o.OnError.skip,
        input_format=o.value(a["input_format"]),  # type: ignore[arg-type]
        infer_types=a["infer_types"],  # type: ignore[arg-type]
        format=spec.format,
        compression=spec.compression,
        json_hint=TEXT_HINT,
    )
    with progress("embedding", "texts", quiet) as bar:

        def planned(job: object) -> None:
            bar.total = sum(p.rows or 0 for p in job.todo) or None  # type: ignore[attr-defined]

        result = embed_job(
            a["input"],  # type: ignore[arg-type]
            a["output"],  # type: ignore[arg-type]
            options,
            actors=a["actors"],  # type: ignore[arg-type]
            threads=a["threads"],  # type: ignore[arg-type]
            gpus_per_actor=gpus,
            part_rows=a["part_rows"] or DEFAULT_PART_ROWS,  # type: ignore[arg-type]
            on_start=planned,
            on_part=lambda rec: bar.advance(rec["rows"] + rec["skipped"]),
        )
    r = result
    if r.truncated:
        warn(f"{r.truncated} text{'s' * (r.truncated != 1)} truncated to their max length", quiet)
    if r.skipped:
        warn(f"skipped {r.skipped} bad record{'s' * (r.skipped != 1)} (first: {r.first_bad})", quiet)
    prov = r.manifest["provenance"]
    where = f"{prov['model']}, {prov['dims']}-d, {r.manifest['device']}"
    done = f"{r.reused} already done, " if r.reused else ""
    if r.embedded:
        rate = f"{r.texts / max(r.seconds, 1e-9):,.0f} texts/s"
        how = f" · {r.actors} actor{'s' * (r.actors != 1)} × {r.threads} thread{'s' * (r.threads != 1)}"
        say(
            f"embedded {r.embedded} of {r.parts} parts ({r.texts:,} texts, {r.tokens:,} tokens; {done}"
            f"{r.rows:,} records in all) in {r.seconds:.1f}s, {rate} · {where}{how} · {r.manifest_path}",
            quiet,
        )
    else:
        say(
            f"embedded 0 of {r.parts} parts: all {r.parts} already done ({r.rows:,} records) · {where} · "
            f"{r.manifest_path}",
            quiet,
        )
