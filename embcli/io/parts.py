"""Input files cut into parts, and each part read back as the records a whole-file read gives there.

A distributed ``embed`` (``--engine ray``) embeds each part on its own and
writes it as one output file, so the parts' outputs, concatenated in order, are
the output of one ``embcli embed`` over the same inputs. Cuts fall only where a
record ends:

- JSONL and text: after a line (every ``part_rows`` lines);
- CSV/TSV: after a row, found by parsing (a quoted field may span lines); each
  later part is read with the file's header row in front;
- Parquet: between row groups; an Arrow IPC file: between record batches;
- anything else (compressed files, Arrow IPC streams, NPY, a file that cannot
  be parsed up front) and every file that fits in one part: the whole file, read
  exactly as ``Inputs`` reads it.

A part's records carry the file's own line or row numbers and the file's name
as the user gave it, so a bad record is reported as a single-process run
reports it.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from embcli.errors import InputError, UsageError
from embcli.io import tables
from embcli.io.readers import detect_format, iter_records
from embcli.io.streams import JSONL_HINT, BadRecords, Record, Source, iter_jsonl

_CHUNK = 1 << 20

WHOLE = "whole"  # the whole file, read as Inputs reads it
LINES = "lines"  # a byte range of JSONL or text lines
ROWS = "rows"  # a byte range of CSV/TSV rows (the header read from the file's start)
GROUPS = "groups"  # Parquet row groups, or an Arrow IPC file's record batches


@dataclass(frozen=True)
class InputFile:
    """One input file: its name as given (for messages), where it is, and what it holds."""

    name: str
    path: str  # absolute: workers may run in another directory
    sha256: str
    bytes: int
    format: str  # as detected (jsonl, text, csv, tsv, parquet, arrow, npy), or "compressed"


@dataclass(frozen=True)
class Part:
    """Records ``[start, stop)`` of one input: bytes for LINES/ROWS, row groups or batches for GROUPS.

    ``first`` is the file's line (LINES, ROWS) or row (GROUPS) number of the part's
    first record; ``header`` the byte length of a CSV/TSV file's header row, put in
    front of every part but the first. ``rows`` is the plan's count of lines or rows
    (blank lines included): for progress, not a promise.
    """

    index: int
    name: str
    path: str
    kind: str
    format: str
    size: int  # the input's size when planned: a file that changed since is refused
    start: int = 0
    stop: int = 0
    first: int = 1
    header: int = 0
    rows: int | None = None

    def describe(self) -> dict:
        """What the part is, independent of where the file lies (for the job's part records)."""
        d = asdict(self)
        for k in ("index", "name", "path", "rows"):
            d.pop(k)
        return d


def plan(names: Sequence[str], part_rows: int, input_format: str | None = None) -> tuple[list[InputFile], list[Part]]:
    """The inputs (hashed) and their parts, in order. ``names`` are files (no stdin: a part is re-read)."""
    if part_rows < 1:
        raise UsageError(f"--part-rows must be at least 1, got {part_rows}")
    inputs: list[InputFile] = []
    parts: list[Part] = []
    for name in names:
        if name == "-":
            raise UsageError("stdin cannot be cut into parts; give input files, globs or directories")
        path = os.path.abspath(name)
        with Source(path, name) as src:
            fmt = "compressed" if src.compression else detect_format(src, input_format)
        sha = hashlib.sha256()
        size = os.path.getsize(path)
        if fmt in ("jsonl", "text"):
            kind, spans = LINES, _line_spans(path, size, part_rows, sha)
        elif fmt in ("csv", "tsv"):
            kind, spans = ROWS, _row_spans(path, size, part_rows, "," if fmt == "csv" else "\t", sha)
        elif fmt in ("parquet", "arrow"):
            kind, spans = GROUPS, _group_spans(path, fmt, part_rows)
            _hash(path, sha)
        else:
            kind, spans = WHOLE, []
            _hash(path, sha)
        inputs.append(InputFile(name, path, sha.hexdigest(), size, fmt))
        if len(spans) <= 1:  # one part: the whole file, read as a single-process run reads it
            rows = spans[0][4] if spans else None
            parts.append(Part(len(parts), name, path, WHOLE, fmt, size, rows=rows))
            continue
        for start, stop, first, header, rows in spans:
            parts.append(Part(len(parts), name, path, kind, fmt, size, start, stop, first, header, rows))
    return inputs, parts


def _hash(path: str, sha: Any) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)


Span = tuple[int, int, int, int, int]  # start, stop, first line/row, header bytes, rows


def _line_spans(path: str, size: int, part_rows: int, sha: Any) -> list[Span]:
    """Cuts after every ``part_rows`` lines (newlines found with numpy: a few ms per MiB)."""
    starts = [(0, 1)]  # (byte offset, line number) where a part begins
    lines = pos = 0
    cut = part_rows
    last = b""
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
            last = chunk[-1:]
            newlines = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 10)
            while lines + len(newlines) >= cut:
                end = pos + int(newlines[cut - lines - 1]) + 1
                if end < size:
                    starts.append((end, cut + 1))
                cut += part_rows
            lines += len(newlines)
            pos += len(chunk)
    if last not in (b"", b"\n"):
        lines += 1  # a last line without its newline
    return _spans(starts, size, lines)


def _spans(starts: list[tuple[int, int]], size: int, lines: int, header: int = 0) -> list[Span]:
    out: list[Span] = []
    for i, (start, first) in enumerate(starts):
        stop, nxt = starts[i + 1] if i + 1 < len(starts) else (size, lines + 1)
        out.append((start, stop, first, header if i else 0, nxt - first))
    return out


def _row_spans(path: str, size: int, part_rows: int, delimiter: str, sha: Any) -> list[Span]:
    """Cuts after every ``part_rows`` CSV/TSV rows, found by parsing (quoted fields may hold line breaks).

    Where the file cannot be parsed (bad quoting), no cut is made after that point:
    the rest stays in the last part, whose reader reports the error with its line.
    """
    csv.field_size_limit(max(csv.field_size_limit(), tables._FIELD_LIMIT))
    offset = lineno = 0
    starts = [(0, 1)]
    header = 0
    with open(path, "rb") as f:

        def lines() -> Iterator[str]:
            nonlocal offset, lineno
            for raw in f:
                sha.update(raw)
                offset += len(raw)
                lineno += 1
                yield str(raw, "utf-8", "replace")

        rows = 0
        with contextlib.suppress(csv.Error):
            for row in csv.reader(lines(), delimiter=delimiter, strict=True):
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if not header:
                    header = offset
                    continue
                rows += 1
                if rows % part_rows == 0 and offset < size:
                    starts.append((offset, lineno + 1))
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
            lineno += chunk.count(b"\n")
    return _spans(starts, size, lineno, header)


def _group_spans(path: str, fmt: str, part_rows: int) -> list[Span]:
    """Row groups (Parquet) or record batches (Arrow IPC file) gathered into parts of about ``part_rows`` rows."""
    pa = tables.require_pyarrow(f"reading {'Parquet' if fmt == 'parquet' else 'Arrow'}")
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            md = pq.ParquetFile(path).metadata
            sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        else:
            with pa.memory_map(path) as mm:
                reader = pa.ipc.open_file(mm)
                sizes = [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)]
    except (pa.ArrowException, OSError, ValueError):
        return []  # an Arrow stream, or unreadable: one part, whose reader says what is wrong
    spans: list[Span] = []
    start = rows = 0
    first = 1
    for i, n in enumerate(sizes):
        rows += n
        if rows >= part_rows or i == len(sizes) - 1:
            spans.append((start, i + 1, first, 0, rows))
            start, first, rows = i + 1, first + rows, 0
    return spans


# --------------------------------------------------------------------------- reading a part


def read_part(
    part: Part,
    text_field: str,
    bad: BadRecords,
    *,
    input_format: str | None = None,
    infer_types: bool = False,
    json_hint: str = JSONL_HINT,
) -> Iterator[Record]:
    """The part's records, numbered and named as a read of the whole input numbers and names them."""
    if part.kind == WHOLE:
        with Source(part.path, part.name) as src:
            yield from iter_records(src, input_format, text_field, bad, json_hint=json_hint, infer_types=infer_types)
        return
    try:
        size = os.path.getsize(part.path)
    except OSError as e:
        raise UsageError(f"cannot open input: {e.strerror}, {part.name}") from None
    if size != part.size:
        raise InputError(f"the input changed since the job was planned ({part.size} bytes, now {size}), {part.name}")
    if part.kind == GROUPS:
        with Source(part.path, part.name) as src:
            yield from tables.iter_table(src, bad, groups=(part.start, part.stop), first_row=part.first)
        return
    prefix = b""
    if part.header:
        with open(part.path, "rb") as f:
            prefix = f.read(part.header)
    with io.BufferedReader(_Slice(part.path, part.start, part.stop, prefix), _CHUNK) as f:
        src = Source.from_file(f, part.name, decompress=False)
        if part.kind == ROWS:
            delimiter = "," if part.format == "csv" else "\t"
            data_line = part.first if part.header else None
            yield from tables.iter_delimited(src, delimiter, bad, infer_types=infer_types, data_line=data_line)
        else:
            yield from iter_jsonl(src, part.format, text_field, bad, json_hint=json_hint, first_line=part.first)


class _Slice(io.RawIOBase):
    """Bytes ``[start, stop)`` of a file, after ``prefix``."""

    def __init__(self, path: str, start: int, stop: int, prefix: bytes = b"") -> None:
        self._f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed in close()
        self._f.seek(start)
        self._left = stop - start
        self._prefix = prefix

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(b).cast("B")
        if self._prefix:
            n = min(len(view), len(self._prefix))
            view[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        n = min(len(view), self._left)
        if n <= 0:
            return 0
        got = self._f.readinto(view[:n]) or 0
        self._left -= got
        return got

    def close(self) -> None:
        self._f.close()
        super().close()
