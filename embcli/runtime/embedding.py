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
CHUNK = 1024


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

    Parsing, checks, cache look-ups and tokenization run in a reader thread,
    ahead of inference. ``reserved`` are the fields the caller will write: a
    record that already has one is bad input (the caller asked not to
    overwrite). With a ``cache``, known texts skip tokenization and inference,
    and new vectors are stored, one transaction per chunk.
    """

    def tokenized() -> Iterator[Record]:
        lookup = cache.clone() if cache else None  # the reader thread's own connection
        try:
            yield from checked(lookup)
        finally:
            if lookup is not None:
                lookup.close()

    def checked(lookup: EmbeddingCache | None) -> Iterator[Record]:
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
                if lookup is not None:
                    key = text_hash(text)
                    rec.extra["key"] = key
                    if hit := lookup.get(key):
                        tokens = Tokens([], hit[2], hit[1])
                        rec.extra["vector"] = hit[0]
                    else:
                        tokens = encoder.tokenize(text)
                else:
                    tokens = encoder.tokenize(text)
                if tokens.truncated and not truncate:
                    raise InputError(
                        f"text is longer than {encoder.max_length} tokens, {rec.where}",
                        hint="drop --no-truncate to cut it to the model's max length",
                    )
            except InputError as e:
                bad.handle(e)
                continue
            rec.extra["tokens"] = tokens
            yield rec

    for chunk in chunked_prefetch(tokenized(), CHUNK):
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
        yield chunk, vectors


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
