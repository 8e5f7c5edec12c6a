"""Records in, (records, vectors) out: the streaming embed loop every text command shares."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from embcli.errors import InputError
from embcli.io.outputs import OutputSpec, record_writer, vector_writer
from embcli.io.prefetch import chunked_prefetch
from embcli.io.streams import BadRecords, Record, get_text
from embcli.runtime.cache import EmbeddingCache, text_hash
from embcli.runtime.encoder import Encoder, Tokens

# Texts sorted together for batching; also the most records held at once (x3 with prefetch).
# 4,096, not 1,024: less padding, ~10% less CPU on 3,000 real summaries (README Performance); a
# text's vector does not depend on its batch, so the bytes are the same as with 1,024.
CHUNK = 4096


@dataclass
class EmbedStats:
    texts: int = 0
    tokens: int = 0
    truncated: int = 0
    cached: int = 0  # vectors taken from the cache, no inference


def embed_records(
    records: Iterable[Record],
    encoder: Encoder,
    *,
    text_field: str,
    bad: BadRecords,
    stats: EmbedStats,
    truncate: bool = True,
    reserved: tuple[str, ...] = (),
    cache: EmbeddingCache | None = None,
) -> Iterator[tuple[list[Record], np.ndarray]]:
    """Embed each record's text; yields chunks in input order, streaming.

    Parsing, checks and tokenization run in a reader thread, ahead of
    inference. ``reserved`` are the fields the caller will write: a record that
    already has one is bad input (the caller asked not to overwrite). With a
    ``cache``, each chunk's texts are looked up at once (one query per batch of
    keys, here in the consumer), only the misses are tokenized (in one batch)
    and run, and new vectors are stored, one transaction per chunk: a chunk of
    hits needs no model at all (a lazy encoder is never loaded).
    """

    def checked() -> Iterator[Record]:
        for rec in records:
            try:
                for name in reserved:
                    if name in rec.data:
                        raise InputError(
                            f"record already has a {name!r} field, {rec.where}",
                            hint="write elsewhere (--vector-field/--model-field NAME), or pass --overwrite",
                        )
                # A chunk with a context (embed --chunk) is embedded with it; its text field holds the chunk alone.
                text = rec.extra.pop("embed_text", None) or get_text(rec, text_field)
                if cache is not None:
                    rec.extra["text"] = text  # looked up, and tokenized if missing, with its chunk
                    yield rec
                    continue
                tokens = encoder.tokenize(text)
                if tokens.truncated and not truncate:
                    raise too_long(rec)
            except InputError as e:
                bad.handle(e)
                continue
            rec.extra["tokens"] = tokens
            yield rec

    def too_long(rec: Record) -> InputError:
        return InputError(
            f"text is longer than {encoder.max_length} tokens, {rec.where}",
            hint="drop --no-truncate to cut it to the model's max length",
        )

    for chunk in chunked_prefetch(checked(), CHUNK):
        failure: InputError | None = None
        if cache is not None:
            chunk, failure = _look_up(chunk, cache, encoder, truncate, bad, too_long)
        if chunk:
            yield _embedded(chunk, encoder, stats, cache)
        if failure is not None:
            raise failure


def _look_up(
    chunk: list[Record],
    cache: EmbeddingCache,
    encoder: Encoder,
    truncate: bool,
    bad: BadRecords,
    too_long: Callable[[Record], InputError],
) -> tuple[list[Record], InputError | None]:
    """A chunk's records with their cache hits' vectors, the rest tokenized; and the bad record that ends it.

    Records too long under --no-truncate are handled in input order: skipped, or the
    chunk ends before the first one, whose error the caller raises after it.
    """
    texts = [rec.extra.pop("text") for rec in chunk]
    keys = [text_hash(t) for t in texts]
    found = cache.get_many(keys)
    misses = [i for i, k in enumerate(keys) if k not in found]
    tokenized = dict(zip(misses, encoder.tokenize_many([texts[i] for i in misses]) if misses else [], strict=True))
    kept: list[Record] = []
    for i, rec in enumerate(chunk):
        rec.extra["key"] = keys[i]
        if (hit := found.get(keys[i])) is not None:
            tokens = Tokens([], hit[2], hit[1])
            rec.extra["vector"] = hit[0]
        else:
            tokens = tokenized[i]
        if tokens.truncated and not truncate:
            try:
                bad.handle(too_long(rec))
            except InputError as e:
                return kept, e
            continue
        rec.extra["tokens"] = tokens
        kept.append(rec)
    return kept, None


def _embedded(
    chunk: list[Record], encoder: Encoder, stats: EmbedStats, cache: EmbeddingCache | None
) -> tuple[list[Record], np.ndarray]:
    """The chunk's vectors: from the cache, or run through the model (and stored)."""
    tokens = [rec.extra.pop("tokens") for rec in chunk]
    stats.texts += len(tokens)
    stats.tokens += sum(t.count for t in tokens)
    stats.truncated += sum(t.truncated for t in tokens)
    todo = [i for i, rec in enumerate(chunk) if "vector" not in rec.extra]
    vectors = np.empty((len(chunk), encoder.dim), dtype=np.float32)
    if todo:
        vectors[todo] = encoder.encode_ids([tokens[i].ids for i in todo])
    for i, rec in enumerate(chunk):
        if "vector" in rec.extra:
            vectors[i] = rec.extra.pop("vector")
    if cache is not None:
        new = [(chunk[i].extra["key"], vectors[i], tokens[i].count, tokens[i].truncated) for i in todo]
        computed = set(todo)
        hits = [rec.extra["key"] for i, rec in enumerate(chunk) if i not in computed]
        cache.put_and_touch(new, hits)
        stats.cached += len(chunk) - len(todo)
        for rec in chunk:
            rec.extra.pop("key")
    return chunk, vectors


def write_embedded(
    records: Iterable[Record],
    encoder: Encoder,
    out: BinaryIO,
    spec: OutputSpec,
    *,
    text_field: str,
    vector_field: str,
    model_field: str,
    bad: BadRecords,
    stats: EmbedStats,
    truncate: bool = True,
    reserved: tuple[str, ...] = (),
    cache: EmbeddingCache | None = None,
    advance: Callable[[int], None] = lambda n: None,
) -> None:
    """Embed ``records`` and write them to ``out`` in ``spec``'s format: the bytes ``embcli embed`` writes.

    Records get their vector as ``vector_field`` and the provenance as
    ``model_field`` ('' leaves it out); NPY gets the vectors alone. ``advance``
    is told how many records went out after each chunk (progress).
    """
    chunks = embed_records(
        records,
        encoder,
        text_field=text_field,
        bad=bad,
        stats=stats,
        truncate=truncate,
        reserved=reserved,
        cache=cache,
    )
    if spec.format == "npy":
        npy = vector_writer(out, spec)
        for recs, vecs in chunks:
            npy.write(vecs)
            npy.flush()
            advance(len(recs))
        npy.close(width=encoder.dim)
        return
    writer = record_writer(out, spec, vector_field=vector_field, provenance_field=model_field or None)
    provenance = encoder.provenance()
    for recs, vecs in chunks:
        for rec, vec in zip(recs, vecs, strict=True):
            rec.data[vector_field] = vec
            if model_field:
                rec.data[model_field] = provenance
        writer.write_many([rec.data for rec in recs])
        writer.flush()
        advance(len(recs))
    writer.close()
