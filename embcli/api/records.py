"""Record and vector streams from Python: the readers and writers the CLI uses."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import IO

import numpy as np

from embcli.errors import UsageError

PathOrFile = str | os.PathLike | IO[bytes]


def check_finite(x: np.ndarray, source: str = "<array>") -> None:
    """Refuse a matrix with a NaN or Inf row, as every command refuses such an NPY row (InputError)."""
    from embcli.io.streams import at_row, finite_rows, non_finite

    finite = finite_rows(np.atleast_2d(x))
    if finite is not None:
        i = int(np.flatnonzero(~finite)[0])
        raise non_finite(np.atleast_2d(x)[i], at_row(source, i + 1))


def read_records(
    source: PathOrFile | None = None, *, input_format: str = "jsonl", text_field: str = "text", skip_bad: bool = False
) -> Iterator[dict]:
    """Records from a JSONL file (or plain text lines with ``input_format="text"``); None reads stdin."""
    from embcli.io.streams import BadRecords, iter_records

    with _source(source) as src:
        for rec in iter_records(src, input_format, text_field, BadRecords(skip=skip_bad)):
            yield rec.data


def read_vectors(source: PathOrFile | None = None, *, vector_field: str = "embedding") -> tuple[list[dict], np.ndarray]:
    """(records, float32 matrix) from embedded JSONL or NPY (records are ``{}`` for NPY rows)."""
    from embcli.io.streams import BadRecords, iter_embedded

    records, rows = [], []
    with _source(source) as src:
        for rec, vec in iter_embedded(src, vector_field, BadRecords()):
            records.append(rec.data)
            rows.append(vec)
    width = rows[0].shape[0] if rows else 0
    return records, (np.vstack(rows).astype(np.float32, copy=False) if rows else np.empty((0, width), np.float32))


def write_records(
    records: Iterable[dict] | np.ndarray, target: PathOrFile | None = None, *, format: str | None = None
) -> int:
    """Write records as JSONL (vectors as arrays), or a matrix as NPY; returns the count.

    A path is written atomically (temp + fsync + rename); None writes stdout.
    The format is ``format``, else ``npy`` for a ``.npy`` path or an array, else ``jsonl``.
    """
    from embcli.io.streams import JsonlWriter, NpyWriter, output_stream

    is_path = target is None or isinstance(target, (str, os.PathLike))
    name = os.fspath(target) if is_path and target is not None else None
    fmt = format or ("npy" if isinstance(records, np.ndarray) or (name or "").endswith(".npy") else "jsonl")
    if fmt not in ("jsonl", "npy"):
        raise UsageError(f"unknown format {fmt!r}; choose jsonl or npy")

    def write(f: IO[bytes]) -> int:
        if fmt == "npy":
            matrix = np.asarray(records if isinstance(records, np.ndarray) else [r for r in records], np.float32)
            writer = NpyWriter(f)
            writer.write(np.atleast_2d(matrix))
            writer.close()
            return len(matrix)
        jsonl, n = JsonlWriter(f), 0
        for rec in records:
            jsonl.write(rec)
            n += 1
        jsonl.flush()
        return n

    if is_path:
        with output_stream(name) as f:
            return write(f)
    return write(target)  # type: ignore[arg-type]


class _source:
    """A Source over a path, an open binary file, or stdin."""

    def __init__(self, source: PathOrFile | None) -> None:
        from embcli.io.streams import Source

        if source is None or isinstance(source, (str, os.PathLike)):
            self.src = Source(None if source is None else os.fspath(source))
        else:
            self.src = Source.from_file(source)

    def __enter__(self):
        return self.src

    def __exit__(self, *exc: object) -> None:
        self.src.close()
