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
    source: PathOrFile | list[str] | None = None,
    *,
    input_format: str | None = None,
    text_field: str = "text",
    skip_bad: bool = False,
    infer_types: bool = False,
) -> Iterator[dict]:
    """Records from JSONL, text lines, CSV/TSV, Parquet or Arrow, compressed or not; None reads stdin.

    ``source`` may be a path, a glob, a directory, a list of those (read in order)
    or an open binary file. The format is found as the CLI finds it, or ``input_format``.
    """
    from embcli.io.readers import iter_records
    from embcli.io.streams import BadRecords

    bad = BadRecords(skip=skip_bad)
    if _is_paths(source):
        inputs = _inputs(source, input_format, infer_types)
        for rec in inputs.records(text_field, bad):
            yield rec.data
        return
    with _source(source) as src:
        for rec in iter_records(src, input_format, text_field, bad, infer_types=infer_types):
            yield rec.data


def read_vectors(
    source: PathOrFile | list[str] | None = None, *, vector_field: str = "embedding", input_format: str | None = None
) -> tuple[list[dict], np.ndarray]:
    """(records, float32 matrix) from records with a vector (any input format) or NPY (records are ``{}``)."""
    from embcli.io.readers import iter_embedded
    from embcli.io.streams import BadRecords

    records, rows = [], []
    if _is_paths(source):
        pairs = _inputs(source, input_format, False).embedded(vector_field, BadRecords())
        for rec, vec in pairs:
            records.append(rec.data)
            rows.append(vec)
    else:
        with _source(source) as src:
            for rec, vec in iter_embedded(src, vector_field, BadRecords(), input_format=input_format):
                records.append(rec.data)
                rows.append(vec)
    width = rows[0].shape[0] if rows else 0
    return records, (np.vstack(rows).astype(np.float32, copy=False) if rows else np.empty((0, width), np.float32))


def write_records(
    records: Iterable[dict] | np.ndarray,
    target: PathOrFile | None = None,
    *,
    format: str | None = None,
    compress: str | None = None,
    vector_field: str = "embedding",
    model_field: str = "embedding_model",
) -> int:
    """Write records (JSONL, Parquet, Arrow, CSV, TSV; vectors as arrays), or a matrix as NPY; returns the count.

    A path is written atomically (temp + fsync + rename); None writes stdout. The
    format is ``format``, else the path's suffix (``.parquet``, ``.jsonl.gz``, ...),
    else ``npy`` for an array and ``jsonl`` for records; compression likewise.
    """
    from embcli.io.outputs import open_output, output_spec, record_writer, vector_writer

    is_path = target is None or isinstance(target, (str, os.PathLike))
    name = os.fspath(target) if is_path and target is not None else None
    default = "npy" if isinstance(records, np.ndarray) else "jsonl"
    spec = output_spec(name, format, compress, default=default)

    def write(f: IO[bytes]) -> int:
        if spec.format == "npy":
            matrix = np.asarray(records if isinstance(records, np.ndarray) else [r for r in records], np.float32)
            npy = vector_writer(f, spec)
            npy.write(np.atleast_2d(matrix))
            npy.close()
            return len(matrix)
        if isinstance(records, np.ndarray):
            raise UsageError(f"an array is written as npy, not {spec.format}")
        writer, n = record_writer(f, spec, vector_field=vector_field, provenance_field=model_field or None), 0
        batch: list[dict] = []
        for rec in records:
            batch.append(rec)
            if len(batch) >= 1024:
                writer.write_many(batch)
                n, batch = n + len(batch), []
        writer.write_many(batch)
        writer.close()
        return n + len(batch)

    if is_path:
        with open_output(spec) as f:
            return write(f)
    return write(target)  # type: ignore[arg-type]


def _is_paths(source: object) -> bool:
    return source is None or isinstance(source, (str, os.PathLike, list, tuple))


def _inputs(source: object, input_format: str | None, infer_types: bool):
    from embcli.io.inputs import Inputs, ReadOptions

    many = source if isinstance(source, (list, tuple)) else [source]
    paths = None if source is None else [os.fspath(p) for p in many]
    return Inputs(paths, ReadOptions(input_format, infer_types))


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
