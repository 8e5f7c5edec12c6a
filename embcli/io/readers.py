"""Records and vectors from any input format: the format is found, then its reader runs.

Above ``streams`` (JSONL, text, NPY) and ``tables`` (CSV/TSV, Parquet, Arrow),
so every command reads every format through the same two functions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np

from embcli.errors import InputError, UsageError
from embcli.io import tables
from embcli.io.compress import suffix_kind
from embcli.io.streams import (
    JSONL_HINT,
    NPY_MAGIC,
    VECTORS_HINT,
    BadRecords,
    Record,
    Source,
    iter_jsonl,
    iter_npy_rows,
    parse_vector,
)

# Formats a reader can find by content: binary magic always wins over a declared or suffix format.
_CONTENT_MAGIC = (
    (NPY_MAGIC, "npy"),
    (b"PAR1", "parquet"),
    (b"ARROW1", "arrow"),
    (b"\xff\xff\xff\xff", "arrow"),  # an Arrow IPC stream's first message
)
# By suffix (after any compression suffix), when the content says nothing.
FORMAT_SUFFIXES = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".npy": "npy",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".arrow": "arrow",
    ".arrows": "arrow",
    ".feather": "arrow",
    ".ipc": "arrow",
}


def detect_format(src: Source, declared: str | None = None) -> str:
    """The input's format: binary magic, else what the user declared, else the file's suffix, else JSONL."""
    head = src.peek(8)
    for magic, fmt in _CONTENT_MAGIC:
        if head.startswith(magic):
            return fmt
    if declared:
        return declared
    stem, _ = suffix_kind(src.name)
    return FORMAT_SUFFIXES.get(os.path.splitext(stem)[1].lower(), "jsonl")


def iter_records(
    src: Source,
    input_format: str | None,
    text_field: str,
    bad: BadRecords,
    *,
    json_hint: str = JSONL_HINT,
    infer_types: bool = False,
) -> Iterator[Record]:
    """Records from JSONL, plain text (one text per line, as ``text_field``), CSV/TSV, Parquet or Arrow.

    ``input_format`` None finds the format (``detect_format``). ``json_hint`` goes
    with an invalid first JSONL line: it is the caller's, which knows its options.
    """
    fmt = detect_format(src, input_format)
    if fmt == "npy":
        raise InputError(
            f"expected records but got an NPY array, {src.name}",
            hint="this command reads text; NPY holds vectors only",
        )
    if fmt in ("csv", "tsv", "parquet", "arrow"):
        if fmt in ("csv", "tsv"):
            yield from tables.iter_delimited(src, "," if fmt == "csv" else "\t", bad, infer_types=infer_types)
        else:
            yield from tables.iter_table(src, bad)
        return
    yield from iter_jsonl(src, fmt, text_field, bad, json_hint=json_hint)


def iter_embedded(
    src: Source,
    vector_field: str,
    bad: BadRecords,
    *,
    input_format: str | None = None,
    json_hint: str = VECTORS_HINT,
) -> Iterator[tuple[Record, np.ndarray]]:
    """(record, vector) pairs from records with a vector field (JSONL, CSV/TSV, Parquet, Arrow), or from
    NPY rows (``Record.npy``, empty data).

    Vectors are checked the same way from every format: finite numbers, one width.
    """
    fmt = detect_format(src, input_format)
    if fmt == "npy":
        name = src.name
        for numbers, chunk in iter_npy_rows(src, bad):
            for row, vec in zip(numbers.tolist(), chunk, strict=True):
                yield Record(row, {}, {}, True, name), vec  # positional: measurably cheaper per row
        return
    if fmt == "text":
        raise UsageError(
            "text lines carry no vectors", hint="embed them first: embcli embed --input-format text FILE | ..."
        )
    width: int | None = None
    for rec in iter_records(src, fmt, "text", bad, json_hint=json_hint):
        try:
            arr = parse_vector(rec.data.get(vector_field), vector_field, rec.where)
            if width is None:
                width = arr.shape[0]
            elif arr.shape[0] != width:
                raise InputError(f"vector has {arr.shape[0]} dimensions, earlier ones {width}, {rec.where}")
        except InputError as e:
            bad.handle(e)
            continue
        yield rec, arr
