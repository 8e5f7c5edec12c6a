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
    quiet: o.Quiet = False,
) -> None:
    """Embed texts: records (JSONL, CSV/TSV, Parquet, Arrow) or text lines in, records with a vector (or NPY) out.

    Streams: output starts before the input ends, and memory stays bounded
    whatever the input size. Every field of a record passes through; the vector
    is added as --vector-field. Texts are batched by token length and written
    back in input order; the same input and options give the same bytes.
    """
    from embcli.api.encoding import Encoder
    from embcli.io.inputs import Inputs, ReadOptions
    from embcli.io.outputs import open_output, output_spec
    from embcli.io.streams import BadRecords
    from embcli.runtime.embedding import EmbedStats, write_embedded

    spec = output_spec(output, o.value(fmt), o.value(compress))
    inputs = Inputs(input, ReadOptions(o.value(input_format), infer_types))
    encoder = Encoder(
        model,
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
    ).runtime
    bad = BadRecords(skip=on_error is o.OnError.skip)
    stats = EmbedStats()
    store = None
    if cache and not no_cache:
        from embcli.runtime.cache import EmbeddingCache, spec_of

        store = EmbeddingCache(cache, spec_of(encoder), encoder.dim)
    with open_output(spec) as out, progress("embedding", "texts", quiet, fraction=inputs.fraction) as bar:
        write_embedded(
            inputs.records(text_field, bad, json_hint=TEXT_HINT),
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
    if summary := bad.summary():
        warn(summary, quiet)
    cached = f"; {stats.cached:,} from the cache, {encoder.batches_run:,} model batches" if store else ""
    say(
        f"embedded {stats.texts:,} text{'s' * (stats.texts != 1)} ({stats.tokens:,} tokens{cached}) in {elapsed:.1f}s, "
        f"{stats.texts / max(elapsed, 1e-9):,.0f} texts/s · {encoder.spec.name}, {encoder.dim}-d, {encoder.device}",
        quiet,
    )
