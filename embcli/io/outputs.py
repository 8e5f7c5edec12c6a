"""Where results go: the output format and compression from ``--format``/``--compress`` or the ``-o``
suffix, and one record writer per format.

Every command that writes records or vectors opens its output here, so
``-o x.parquet``, ``-o out.jsonl.gz`` and ``--format csv`` mean the same in
each. An unknown suffix with no ``--format`` is a usage error, never silent
JSONL.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from embcli.choices import COMPRESSIONS
from embcli.choices import OUTPUT_FORMATS as FORMATS
from embcli.errors import UsageError
from embcli.io.compress import KINDS, CompressingWriter, suffix_kind
from embcli.io.readers import FORMAT_SUFFIXES
from embcli.io.streams import JsonlWriter, NpyWriter, output_stream

RECORD_FORMATS = tuple(f for f in FORMATS if f != "npy")


class RecordWriter(Protocol):
    def write_many(self, objs: list[dict]) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class OutputSpec:
    """What an output will be: its format, its compression (None: plain) and where (None: stdout)."""

    path: str | None
    format: str
    compression: str | None = None

    @property
    def to_file(self) -> bool:
        """A regular file (or a new path), as opposed to stdout, a pipe or a device."""
        if self.path in (None, "-"):
            return False
        try:
            import stat

            return stat.S_ISREG(os.stat(self.path).st_mode)
        except OSError:
            return True  # a new path becomes a regular file


def output_spec(
    path: str | None,
    fmt: str | None = None,
    compress: str | None = None,
    *,
    default: str = "jsonl",
    allowed: tuple[str, ...] = FORMATS,
) -> OutputSpec:
    """The format and compression of ``-o PATH``: the options when given, else PATH's suffixes.

    ``data.parquet``, ``OUT.JSONL.GZ``, ``codes.npy.zst``: the compression suffix
    comes last. A path with no suffix, and a FIFO or device whatever its name, takes ``default``.
    """
    target = None if path in (None, "-") else path
    stem, by_suffix = suffix_kind(target) if target else ("", None)
    compression = by_suffix if compress is None else (None if compress == "none" else compress)
    if compression is not None and compression not in KINDS:
        raise UsageError(f"unknown compression {compression!r}; choose one of {', '.join(COMPRESSIONS)}")
    if fmt is None:
        ext = os.path.splitext(os.path.basename(stem))[1].lower() if target else ""
        if not ext:
            fmt = default
        elif ext in FORMAT_SUFFIXES:
            fmt = FORMAT_SUFFIXES[ext]
        elif not OutputSpec(target, default).to_file:
            fmt = default  # a FIFO's or a device's name says nothing of a format
        else:
            raise UsageError(
                f"cannot tell the output format from the suffix {ext!r} of {path}",
                hint=f"name it with --format ({'|'.join(allowed)}), or use a suffix such as .{default}",
            )
    if fmt not in allowed:
        raise UsageError(f"this command cannot write {fmt} (it writes {', '.join(allowed)}), {path or 'stdout'}")
    return OutputSpec(target, fmt, compression)


@contextlib.contextmanager
def open_output(spec: OutputSpec) -> Iterator[BinaryIO]:
    """The output's byte stream: atomic for a file, compressed when asked; finished only on success."""
    with output_stream(spec.path) as raw:
        if spec.compression is None:
            yield raw
            return
        out = CompressingWriter(raw, spec.compression)
        yield out  # type: ignore[misc]
        out.close()  # not on an error: a cut stream fails its reader; a file is not renamed into place


def record_writer(
    f: BinaryIO,
    spec: OutputSpec,
    *,
    vector_field: str | None = "embedding",
    provenance_field: str | None = "embedding_model",
) -> RecordWriter:
    """A writer of records (dicts, vectors as numpy arrays or lists) in ``spec.format``."""
    if spec.format == "jsonl":
        return JsonlWriter(f)
    if spec.format == "npy":
        raise UsageError("npy holds vectors only; write records as jsonl, parquet, arrow, csv or tsv")
    from embcli.io.tables import TableWriter

    fmt = spec.format
    # Arrow's file format ends with a footer readers seek to: a pipe (or a .arrows file) gets the stream format.
    if fmt == "arrow" and (not spec.to_file or suffix_kind(spec.path or "")[0].lower().endswith(".arrows")):
        fmt = "arrows"
    return TableWriter(f, fmt, vector_field=vector_field, provenance_field=provenance_field)


@contextlib.contextmanager
def records_output(
    spec: OutputSpec, *, vector_field: str | None = "embedding", provenance_field: str | None = "embedding_model"
) -> Iterator[RecordWriter]:
    """A record writer on ``spec``'s output, finished (footer, compression end, rename) only on success."""
    with open_output(spec) as f:
        writer = record_writer(f, spec, vector_field=vector_field, provenance_field=provenance_field)
        yield writer
        writer.close()


def vector_writer(f: BinaryIO, spec: OutputSpec) -> NpyWriter:
    """An NPY writer: one standard array in a file, even a compressed one (spooled, then compressed)."""
    return NpyWriter(f, spool=spec.compression is not None and spec.to_file)
