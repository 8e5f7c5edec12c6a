"""Records in, (records, vectors) out: the streaming embed loop every text command shares."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from embcli.core.encoder import Encoder
from embcli.core.prefetch import chunked_prefetch
from embcli.core.streams import BadRecords, Record, get_text, where
from embcli.errors import InputError

# Texts sorted together for batching; also the most records held at once (x3 with prefetch).
CHUNK = 1024


@dataclass
class EmbedStats:
    texts: int = 0
    tokens: int = 0
    truncated: int = 0


def embed_records(
    records: Iterable[Record],
    encoder: Encoder,
    *,
    source: str,
    text_field: str,
    bad: BadRecords,
    stats: EmbedStats,
    truncate: bool = True,
    reserved: tuple[str, ...] = (),
) -> Iterator[tuple[list[Record], np.ndarray]]:
    """Embed each record's text; yields chunks in input order, streaming.

    Parsing, checks and tokenization run in a reader thread, ahead of inference.
    ``reserved`` are the fields the caller will write: a record that already has
    one is bad input (the caller asked not to overwrite).
    """

    def tokenized() -> Iterator[Record]:
        for rec in records:
            try:
                for name in reserved:
                    if name in rec.data:
                        raise InputError(
                            f"record already has a {name!r} field, {where(source, rec.line)}",
                            hint="write elsewhere (--vector-field/--model-field NAME), or pass --overwrite",
                        )
                tokens = encoder.tokenize(get_text(rec, text_field, source))
                if tokens.truncated and not truncate:
                    raise InputError(
                        f"text is longer than {encoder.max_length} tokens, {where(source, rec.line)}",
                        hint="drop --no-truncate to cut it to the model's max length",
                    )
            except InputError as e:
                bad.handle(e)
                continue
            rec.extra["tokens"] = tokens
            yield rec

    for chunk in chunked_prefetch(tokenized(), CHUNK):
        ids = [rec.extra.pop("tokens") for rec in chunk]
        stats.texts += len(ids)
        stats.tokens += sum(len(t.ids) for t in ids)
        stats.truncated += sum(t.truncated for t in ids)
        yield chunk, encoder.encode_ids([t.ids for t in ids])
