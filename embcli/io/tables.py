"""Tables (DESIGN §2): CSV/TSV, Parquet and Arrow IPC records in and out.

A row is a record. CSV/TSV need only the standard library; Parquet and Arrow
need pyarrow (the ``arrow`` extra), imported only when such a file is read or
written, so ``import embcli`` stays fast and works without it.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import math
import re
import tempfile
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

import numpy as np
import orjson

from embcli.errors import InputError, UsageError
from embcli.io.streams import BadRecords, Record, Source, at_line, at_row

# csv's default field limit (128 KiB) is too small for long documents. A larger one keeps them
# whole, while an unterminated quote still ends in an error once it has swallowed this much.
_FIELD_LIMIT = 256 << 20
# Rows converted to Python at a time: bounds the Python objects alive at once whatever the file's
# own batches or row groups are.
_BATCH_ROWS = 2048
# Copy size when spooling a non-seekable input to a temporary file.
_SPOOL_CHUNK = 1 << 20
# The schema metadata key embcli writes and reads back (provenance, JSON-text columns).
META_KEY = b"embcli"
_META_VERSION = 1
# A JSON number: the rule for --infer-types (so "007", "+1", "1." and "nan" stay text).
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_JSON_OPTS = orjson.OPT_SERIALIZE_NUMPY

FORMATS = ("parquet", "arrow", "arrows", "csv", "tsv")


def require_pyarrow(action: str = "reading Parquet") -> Any:
    """pyarrow, or the usage error that says how to get it (it is an optional extra)."""
    try:
        import pyarrow
    except ImportError:
        raise UsageError(f"{action} needs pyarrow", hint="pip install 'embcli[arrow]'") from None
    return pyarrow


# --------------------------------------------------------------------------- CSV / TSV


class _Lines:
    """Decoded lines of a source for csv.reader, counted, with UTF-8 errors noted rather than raised.

    csv.reader pulls lines itself; an exception raised here would end it for good, so
    an invalid line is decoded with replacement characters (never quotes or
    delimiters, so the row keeps its shape) and the reader's caller turns it into a
    bad record.
    """

    def __init__(self, src: Source) -> None:
        self._src = src
        self.lineno = 0  # physical lines handed to csv so far
        self.blank = False  # the last line was only whitespace
        self.bad: tuple[int, int] | None = None  # (line, byte) of the first invalid UTF-8 since reset

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        raw = self._src.readline()
        if not raw:
            raise StopIteration
        self.lineno += 1
        try:
            text = str(raw, "utf-8")
        except UnicodeDecodeError as e:
            if self.bad is None:
                self.bad = (self.lineno, e.start)
            text = str(raw, "utf-8", "replace")
        if self.lineno == 1 and text.startswith("\ufeff"):
            text = text[1:]  # a BOM (Excel writes one) is not part of the first column's name
        self.blank = text.isspace()
        return text


def iter_delimited(
    src: Source, delimiter: str, bad: BadRecords, *, infer_types: bool = False, data_line: int | None = None
) -> Iterator[Record]:
    """Records from CSV (``delimiter`` ",") or TSV ("\\t") with a header row, read as a stream.

    Quoting follows Python's csv module (RFC 4180 style, strict): a quoted field
    may hold delimiters, quotes (doubled) and line breaks. ``Record.line`` is the
    physical line where the row starts. Blank lines are skipped; a UTF-8 BOM
    before the header is dropped. A row with the wrong number of fields, bad
    quoting or invalid UTF-8 is a bad record (fail, or skip and count); a header
    with an empty or duplicate column name is an error.

    Values are strings. With ``infer_types``, a value that is exactly a JSON
    number becomes a number: an integer (no fraction or exponent, within int64)
    becomes ``int``, any other finite one ``float`` ("1.5", "-2", "1e3"). Every
    other value stays a string: "" (never null), "nan", "inf", "007", "+1",
    "1.", " 1", "true"/"false", and integers beyond int64.

    ``data_line``: ``src`` is the file's header followed by a later part of the
    file, whose first line is line ``data_line`` of the file (lines are numbered so).
    """
    csv.field_size_limit(max(csv.field_size_limit(), _FIELD_LIMIT))
    name = src.name
    lines = _Lines(src)
    reader = csv.reader(lines, delimiter=delimiter, strict=True)
    header: list[str] | None = None
    width = 0
    convert = _infer if infer_types else None
    while True:
        start = lines.lineno + 1
        lines.bad = None
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            err = _csv_error(e, name, start, lines.lineno)
            if header is None:
                raise err from None
            bad.handle(err)
            continue
        if not row or (len(row) == 1 and lines.blank and lines.lineno == start):
            continue  # a blank line: not a row
        if lines.bad is not None:
            line, byte = lines.bad
            err = InputError(f"invalid UTF-8 at byte {byte}, {at_line(name, line)}")
            if header is None:
                raise err
            bad.handle(err)
            continue
        if header is None:
            header = _check_header(row, name, start)
            width = len(header)
            if data_line is not None:
                lines.lineno = data_line - 1
            continue
        if len(row) != width:
            bad.handle(
                InputError(
                    f"row has {len(row)} field{'s' * (len(row) != 1)}, the header has {width}, {at_line(name, start)}"
                )
            )
            continue
        if convert is not None:
            row = [convert(v) for v in row]
        yield Record(start, dict(zip(header, row, strict=True)), source=name)


def _csv_error(e: csv.Error, name: str, start: int, line: int) -> InputError:
    msg = str(e)
    if msg.startswith("unexpected end of data"):
        return InputError(f"unterminated quoted field, {at_line(name, start)}")
    if msg.startswith("field larger than field limit"):
        return InputError(
            f"field longer than {_FIELD_LIMIT >> 20} MiB (an unterminated quote?), {at_line(name, start)}"
        )
    if msg.startswith("new-line character seen"):
        msg = "a carriage return inside an unquoted field"
    return InputError(f"bad CSV quoting ({msg}), {at_line(name, line)}")


def _check_header(row: list[str], name: str, line: int) -> list[str]:
    seen: set[str] = set()
    for i, col in enumerate(row, 1):
        if not col:
            raise InputError(f"column {i} of the header has no name, {at_line(name, line)}")
        if col in seen:
            raise InputError(f"the header names column {col!r} twice, {at_line(name, line)}")
        seen.add(col)
    return row


def _infer(value: str) -> str | int | float:
    """The --infer-types rule (see ``iter_delimited``)."""
    m = _NUMBER.fullmatch(value)
    if m is None:
        return value
    if m.group(1) is None and m.group(2) is None:
        n = int(value)
        return n if _INT64_MIN <= n <= _INT64_MAX else value
    x = float(value)
    return x if math.isfinite(x) else value


# --------------------------------------------------------------------------- Parquet / Arrow in


def iter_table(
    src: Source, bad: BadRecords, *, groups: tuple[int, int] | None = None, first_row: int = 1
) -> Iterator[Record]:
    """Records from Parquet, an Arrow IPC file or an Arrow IPC stream, one record batch at a time.

    ``groups`` (start, stop) reads only those row groups (Parquet) or record
    batches (Arrow IPC file): one part of the file, whose first row is row
    ``first_row`` of the file.

    ``Record.line`` is the 1-based row (``by_row``). Columns become record fields:

    - a list, large list or fixed-size list of floats (float16/32/64, e.g. a
      ``fixed_size_list<float32>[384]`` vector) becomes one numpy array per row,
      dtype kept (a null list is None);
    - timestamps, dates and times become text as Arrow writes it
      ("2024-05-01 12:00:00.000000", "2024-05-01"); decimals become text
      ("1.50"); durations their integer count in the column's unit; binary
      values their UTF-8 text, or base64 text when they are not UTF-8; maps
      become objects with text keys (nested values the same way);
    - anything else becomes the plain Python value (str, int, float, bool,
      None, list, dict).

    Metadata written by ``TableWriter`` is honoured: its JSON-text columns are
    decoded back, and its provenance value (``embedding_model``) is put back
    on every record. A corrupt or unreadable file is one InputError.
    """
    head = src.peek(8)
    if head.startswith(b"PAR1"):
        kind = "parquet"
    elif head.startswith(b"ARROW1"):
        kind = "arrow-file"
    elif head.startswith(b"\xff\xff\xff\xff"):
        kind = "arrow-stream"
    elif not head:
        raise InputError(f"empty input where a Parquet or Arrow file was expected, {src.name}")
    else:
        raise InputError(f"not a Parquet or Arrow file (no PAR1 or ARROW1 magic), {src.name}")
    label = "Parquet" if kind == "parquet" else "Arrow"
    pa = require_pyarrow(f"reading {label}")
    if groups is not None and kind == "arrow-stream":
        raise UsageError(f"an Arrow IPC stream cannot be read in parts, {src.name}")
    with _TableInput(src, kind, pa, groups) as batches:
        yield from _records(batches, src, bad, label, pa, first_row)


class _TableInput:
    """The batches of a table input, with whatever file it opened closed at the end."""

    def __init__(self, src: Source, kind: str, pa: Any, groups: tuple[int, int] | None = None) -> None:
        self._src, self._kind, self._pa, self._groups = src, kind, pa, groups
        self._handles: list[Any] = []
        self.rows: int | None = None

    def __enter__(self) -> _Batches:
        batches = _Batches(self._start, self._src, "Parquet" if self._kind == "parquet" else "Arrow", self._pa)
        batches.total = self.rows
        return batches

    def _start(self) -> tuple[Any, Iterator[Any]]:
        """(schema, batch iterator): called inside the error translation, so a bad footer is an InputError."""
        pa, src = self._pa, self._src
        if self._kind == "arrow-stream":
            # A stream is read front to back: the source itself will do, seekable or not.
            handle = pa.memory_map(src.path) if src.path else _Readable(src)
            self._handles.append(handle)
            reader = pa.ipc.open_stream(handle)
            return reader.schema, iter(reader)
        # Parquet and Arrow files keep their index at the end: they need random access.
        target: Any = src.path
        if target is None:
            target = _spool(src)
            self._handles.append(target)
        if self._kind == "arrow-file":
            handle = pa.memory_map(target) if isinstance(target, str) else pa.PythonFile(target, mode="r")
            self._handles.append(handle)
            reader = pa.ipc.open_file(handle)
            start, stop = self._groups or (0, reader.num_record_batches)
            stop = min(stop, reader.num_record_batches)
            # For progress: batches are mapped, not read, so counting their rows is cheap.
            self.rows = sum(reader.get_batch(i).num_rows for i in range(start, stop))
            return reader.schema, (reader.get_batch(i) for i in range(start, stop))
        import pyarrow.parquet as pq

        # pre_buffer off: with it on (pyarrow's default) the reader keeps every column chunk it
        # pre-fetched until the file is closed, so memory grew with the file (1.7 GB at 1M vectors)
        # instead of staying at one row group; reading is no slower without it.
        pf = pq.ParquetFile(target, pre_buffer=False)
        self._handles.append(pf)
        if self._groups is None:
            self.rows = pf.metadata.num_rows  # for progress: the footer knows the total
            return pf.schema_arrow, pf.iter_batches(batch_size=_BATCH_ROWS)
        chosen = list(range(self._groups[0], min(self._groups[1], pf.metadata.num_row_groups)))
        self.rows = sum(pf.metadata.row_group(i).num_rows for i in chosen)
        return pf.schema_arrow, pf.iter_batches(batch_size=_BATCH_ROWS, row_groups=chosen)

    def __exit__(self, *exc: object) -> None:
        for h in reversed(self._handles):
            with contextlib.suppress(Exception):  # a reader we are done with: nothing to report
                h.close()


def _spool(src: Source) -> BinaryIO:
    """The rest of ``src`` in an anonymous temporary file (stdin or a decompressed stream)."""
    tmp = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _TableInput
    try:
        while chunk := src.read(_SPOOL_CHUNK):
            tmp.write(chunk)
        tmp.seek(0)
    except BaseException:
        tmp.close()
        raise
    return tmp


class _Readable:
    """A Source as a read-only file object for pyarrow (which wants read, tell and closed)."""

    def __init__(self, src: Source) -> None:
        self._src = src
        self._pos = 0
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while chunk := self._src.read(_SPOOL_CHUNK):
                parts.append(chunk)
            data = b"".join(parts)
        else:
            data = self._src.read(n)
        self._pos += len(data)
        return data

    def tell(self) -> int:
        return self._pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True  # the Source is its owner's to close


class _Batches:
    """Record batches of at most _BATCH_ROWS rows; every pyarrow error becomes one InputError."""

    def __init__(self, start: Callable[[], tuple[Any, Iterator[Any]]], src: Source, label: str, pa: Any) -> None:
        self._src, self._label, self._pa = src, label, pa
        self.total: int | None = None  # rows, when the file says (Parquet's footer)
        self.schema, self._it = self.guard(start)

    def guard(self, fn: Callable[[], Any]) -> Any:
        """``fn()``, with pyarrow's errors (any type) as one InputError naming the input."""
        pa = self._pa
        try:
            return fn()
        except InputError:
            raise
        except pa.ArrowNotImplementedError as e:
            raise InputError(f"cannot read {self._label} ({_reason(e)}), {self._src.name}") from None
        except (pa.ArrowException, OSError, ValueError, EOFError, IndexError) as e:
            raise InputError(f"corrupt {self._label} ({_reason(e)}), {self._src.name}") from None

    def __iter__(self) -> Iterator[Any]:
        while (batch := self.guard(lambda: next(self._it, None))) is not None:
            # A file's own batch may be huge (one batch of a million rows): convert it in slices.
            for off in range(0, batch.num_rows, _BATCH_ROWS):
                yield batch.slice(off, _BATCH_ROWS)


def _reason(e: BaseException) -> str:
    """A pyarrow message cut to one short line."""
    text = " ".join(str(e).split()) or type(e).__name__
    # pyarrow often adds a second sentence of guesses ("Either the file is corrupted or..."): one is enough.
    text = text.split(". ", 1)[0].rstrip(".")
    return text if len(text) <= 160 else text[:157] + "..."


def _records(
    batches: _Batches, src: Source, bad: BadRecords, label: str, pa: Any, first_row: int = 1
) -> Iterator[Record]:
    schema = batches.schema
    names = list(schema.names)
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise InputError(f"{label} file has two columns named {dup!r}, {src.name}")
    meta = _read_meta(schema, src.name)
    json_cols = {n for n in meta.get("json_columns", ()) if n in names}
    prov = meta.get("provenance")
    extra: tuple[int, str, object] | None = None
    if isinstance(prov, dict) and isinstance(prov.get("field"), str) and prov["field"] not in names:
        pos = prov.get("position")
        pos = pos if isinstance(pos, int) and 0 <= pos <= len(names) else len(names)
        extra = (pos, prov["field"], prov.get("value"))
    converters = [_converter(schema.field(i).type, pa) for i in range(len(names))]
    out_names = names if extra is None else [*names[: extra[0]], extra[1], *names[extra[0] :]]
    name = src.name
    row = first_row - 1
    if batches.total:  # progress by rows: pyarrow reads the file itself, so bytes read say nothing
        src.progress = lambda: (row - first_row + 1) / batches.total
    for batch in batches:
        n = batch.num_rows
        cols = batches.guard(lambda b=batch: [conv(b.column(i)) for i, conv in enumerate(converters)])
        if extra is not None:
            cols.insert(extra[0], [extra[2]] * n)  # one shared value: it is the same for every row
        for values in zip(*cols, strict=True) if cols else ((),) * n:
            row += 1
            data = dict(zip(out_names, values, strict=True))
            if json_cols and not _decode_json(data, json_cols, bad, name, row):
                continue
            yield Record(row, data, {}, False, name, True)  # positional: measurably cheaper per row


def _read_meta(schema: Any, name: str) -> dict:
    raw = (schema.metadata or {}).get(META_KEY)
    if raw is None:
        return {}
    try:
        meta = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InputError(f"corrupt embcli metadata in the schema, {name}") from None
    return meta if isinstance(meta, dict) else {}


def _decode_json(data: dict, cols: set[str], bad: BadRecords, name: str, row: int) -> bool:
    for col in cols:
        v = data[col]
        if v is None:
            continue
        try:
            data[col] = orjson.loads(v)
        except (orjson.JSONDecodeError, TypeError):
            bad.handle(InputError(f"column {col!r} should hold JSON text but does not, {at_row(name, row)}"))
            return False
    return True


def _converter(t: Any, pa: Any) -> Callable[[Any], list]:
    """How one column of a batch becomes a list of Python values (chosen once, from the schema)."""
    types = pa.types
    if (types.is_list(t) or types.is_large_list(t) or types.is_fixed_size_list(t)) and types.is_floating(t.value_type):
        return _fixed_vectors if types.is_fixed_size_list(t) else _list_vectors
    if isinstance(t, pa.ExtensionType):
        inner = _converter(t.storage_type, pa)
        return lambda col: inner(col.storage)
    plain = _plain_type(t, pa)
    fix = _needs_python_fix(plain, pa)
    maps = _has_map(plain, pa)

    def convert(col: Any) -> list:
        if plain is not t:
            col = col.cast(plain)
        values = col.to_pylist(maps_as_pydicts="lossy") if maps else col.to_pylist()
        return [_jsonable(v) for v in values] if fix else values

    return convert


def _fixed_vectors(col: Any) -> list:
    """A fixed-size float list column as numpy row views into one flat array (no copy per row)."""
    n, size = len(col), col.type.list_size
    # .values is the whole child, not sliced: the batch's rows start at col.offset.
    flat = col.values.slice(col.offset * size, n * size).to_numpy(zero_copy_only=False)
    rows = list(flat.reshape(n, size))
    if col.null_count:
        for i in np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False)):
            rows[i] = None
    return rows


def _list_vectors(col: Any) -> list:
    """A variable-length float list column as numpy slices of one flat array."""
    n = len(col)
    offsets = col.offsets.to_numpy()  # already shifted for a sliced column; index col.values
    lo, hi = int(offsets[0]), int(offsets[-1])
    flat = col.values.slice(lo, hi - lo).to_numpy(zero_copy_only=False)
    bounds = (offsets - lo).tolist()
    rows: list = [flat[bounds[i] : bounds[i + 1]] for i in range(n)]
    if col.null_count:
        for i in np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False)):
            rows[i] = None
    return rows


def _plain_type(t: Any, pa: Any) -> Any:
    """``t`` with the types Python/JSON cannot carry as they are swapped for ones they can (cast)."""
    types = pa.types
    if types.is_timestamp(t) or types.is_date(t) or types.is_time(t) or types.is_decimal(t):
        return pa.string()
    if types.is_duration(t):
        return pa.int64()
    if types.is_float16(t):
        return pa.float64()
    if types.is_dictionary(t):
        return _plain_type(t.value_type, pa)
    if types.is_map(t):
        k, v = _plain_type(t.key_type, pa), _plain_type(t.item_type, pa)
        key = k if types.is_string(k) or types.is_large_string(k) else pa.string()
        return t if key is t.key_type and v is t.item_type else pa.map_(key, v)
    if types.is_list(t) or types.is_large_list(t) or types.is_fixed_size_list(t):
        v = _plain_type(t.value_type, pa)
        if v is t.value_type:
            return t
        if types.is_fixed_size_list(t):
            return pa.list_(v, t.list_size)
        return pa.large_list(v) if types.is_large_list(t) else pa.list_(v)
    if types.is_struct(t):
        fields = [t.field(i) for i in range(t.num_fields)]
        plain = [_plain_type(f.type, pa) for f in fields]
        if all(p is f.type for p, f in zip(plain, fields, strict=True)):
            return t
        return pa.struct([f.with_type(p) for p, f in zip(plain, fields, strict=True)])
    return t


def _children(t: Any, pa: Any) -> list:
    types = pa.types
    if types.is_map(t):
        return [t.key_type, t.item_type]
    if types.is_list(t) or types.is_large_list(t) or types.is_fixed_size_list(t):
        return [t.value_type]
    if types.is_struct(t) or types.is_union(t):
        return [t.field(i).type for i in range(t.num_fields)]
    return []


def _needs_python_fix(t: Any, pa: Any) -> bool:
    """Whether values of ``t`` can hold bytes (or anything else orjson refuses) once made Python."""
    types = pa.types
    if types.is_binary(t) or types.is_large_binary(t) or types.is_fixed_size_binary(t):
        return True
    if getattr(types, "is_binary_view", None) and types.is_binary_view(t):
        return True
    if types.is_union(t) or isinstance(t, pa.ExtensionType):
        return True  # a union's members were not cast: convert whatever comes out
    return any(_needs_python_fix(c, pa) for c in _children(t, pa))


def _has_map(t: Any, pa: Any) -> bool:
    return pa.types.is_map(t) or any(_has_map(c, pa) for c in _children(t, pa))


def _jsonable(v: Any) -> Any:
    """A Python value from Arrow made JSON-ready: bytes as text, temporal values as ISO text."""
    if isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(b).decode("ascii")
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if hasattr(v, "isoformat"):  # datetime, date, time (inside a union, which is not cast)
        return v.isoformat()
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)  # Decimal, timedelta, UUID...: text, never an object orjson refuses


# --------------------------------------------------------------------------- writer


class TableWriter:
    """Records as Parquet, Arrow IPC (file or stream) or CSV/TSV, streamed in row groups.

    ``fmt``: "parquet", "arrow" (IPC file), "arrows" (IPC stream: for pipes), "csv", "tsv".
    ``f`` is any binary file object with ``write``; it need not be seekable (a pipe).
    Records are buffered ``row_group_rows`` at a time, then written as one row group
    (Parquet) or record batch (Arrow): memory stays bounded.

    Rules:

    - Columns are the fields of the first ``row_group_rows`` records, in order of
      first appearance; their types are fixed by those records. A field missing
      from a record is null. A later record with a new field, or a value that
      does not fit its column, is an error (write JSONL to keep any shape).
    - The vector field (``embedding``: numpy arrays or lists of numbers, one
      length) becomes ``fixed_size_list<float32>[D]``, stored uncompressed
      (floats barely compress; reading stays fast). polars reads it as Array,
      pyarrow and pandas as fixed-size lists; DuckDB's Parquet reader as
      FLOAT[] (Parquet has no fixed-size list: ``embedding::FLOAT[D]``), its
      Arrow import as FLOAT[D].
    - The provenance field (``embedding_model``) is not a column: its value is
      stored once, in the schema metadata (key ``embcli``), and put back on
      every record when embcli reads the file. Records with different values
      are an error. (CSV/TSV: it is an ordinary column, as JSON text.)
    - Other columns: all strings → string; all booleans → bool; all integers →
      int64; integers and floats → float64; lists of strings / booleans /
      integers → list of that; lists of numbers with a float → list<double>;
      objects, nested lists and mixed types → JSON text in a string column,
      listed in the metadata so embcli reads the values back unchanged; all
      null → string. Later values must fit: an integer fits float64, anything
      fits a JSON-text column.
    - CSV/TSV: a header row, then one row per record: strings as they are,
      numbers as JSON, booleans as true/false, null as an empty field, lists,
      objects and vectors as JSON text; NaN and infinities as nan/inf/-inf.
      Quoting only where needed, "\\n" line ends.
    - The same records give the same bytes (no timestamps). No records: an
      empty CSV, or a valid Parquet/Arrow file with no columns.
    """

    def __init__(
        self,
        f: BinaryIO,
        fmt: str,
        *,
        vector_field: str | None = "embedding",
        provenance_field: str | None = "embedding_model",
        row_group_rows: int = 10_000,
    ) -> None:
        if fmt not in FORMATS:
            raise UsageError(f"unknown table format {fmt!r}; choose one of {', '.join(FORMATS)}")
        if fmt not in ("csv", "tsv"):
            require_pyarrow(f"writing {'Parquet' if fmt == 'parquet' else 'Arrow'}")
        self._f = f
        self.fmt = fmt
        self._vector_field = vector_field
        # CSV has no metadata to hold the provenance: there it is an ordinary column.
        self._prov_field = provenance_field if fmt not in ("csv", "tsv") else None
        self._group = max(1, int(row_group_rows))
        self._buf: list[dict] = []
        self._count = 0  # records written out, for the numbers in error messages
        self._columns: list[_Column] | None = None
        self._first_rows = 0
        self._prov: object = _MISSING
        self._prov_pos = 0
        self._out: Any = None  # the pyarrow writer, or the CSV header once written
        self._sink: _Sink | None = None
        self._schema: Any = None
        self._closed = False
        self._failed = False  # after an error nothing more is written: the output is bad anyway

    def write(self, obj: dict) -> None:
        self.write_many([obj])

    def write_many(self, objs: list[dict]) -> None:
        self._buf.extend(objs)
        while len(self._buf) >= self._group:
            chunk, self._buf = self._buf[: self._group], self._buf[self._group :]
            self._write_group(chunk)

    def flush(self) -> None:
        """Pass on what is written; buffered records wait for their row group (small groups cost)."""
        if self._sink is not None:
            self._sink.drain()
        flush = getattr(self._f, "flush", None)
        if flush is not None:
            flush()

    def close(self) -> None:
        """Write what is buffered and the file's end (the Parquet footer, the Arrow end marker)."""
        if self._closed or self._failed:
            return
        self._closed = True
        if self._buf:
            chunk, self._buf = self._buf, []
            self._write_group(chunk)
        if self.fmt in ("csv", "tsv"):
            return
        pa = require_pyarrow()
        if self._out is None:  # no records: a valid file with an empty schema
            self._open(pa, pa.schema([], metadata={META_KEY: self._meta([])}))
        try:
            self._out.close()
        except pa.ArrowException as e:
            raise InputError(f"cannot write {self.fmt} ({_reason(e)})") from None
        assert self._sink is not None
        self._sink.drain()

    # ---- one row group

    def _write_group(self, chunk: list[dict]) -> None:
        if self._failed:
            raise UsageError("TableWriter used after an error")
        self._failed = True  # until this group is written
        first = self._count + 1
        if self._columns is None:
            self._columns = self._infer(chunk)
            self._first_rows = len(chunk)
        self._check_fields(chunk, first)
        if self.fmt in ("csv", "tsv"):
            self._write_csv(chunk)
        else:
            self._write_arrow(chunk, first)
        self._count += len(chunk)
        self._failed = False

    def _infer(self, chunk: list[dict]) -> list[_Column]:
        names: dict[str, None] = {}
        for obj in chunk:
            for k in obj:
                names[k] = None
        if self._prov_field is not None:
            head = chunk[0]
            self._prov = head.get(self._prov_field, _MISSING)
            if self._prov is not _MISSING:
                self._prov_pos = list(head).index(self._prov_field)
            names.pop(self._prov_field, None)
        if self.fmt in ("csv", "tsv"):
            return [_Column(n, "json") for n in names]
        return [_infer_column(n, [obj.get(n) for obj in chunk], n == self._vector_field) for n in names]

    def _check_fields(self, chunk: list[dict], first: int) -> None:
        assert self._columns is not None
        known = {c.name for c in self._columns}
        prov_field, prov = self._prov_field, self._prov
        for i, obj in enumerate(chunk):
            if prov_field is not None:
                v = obj.get(prov_field, _MISSING)
                if v is not prov and v != prov:
                    raise InputError(
                        f"records carry different {prov_field} values (record {first + i} differs from the first); "
                        f"{_label(self.fmt)} keeps one in its metadata: write JSONL"
                    )
            if not obj.keys() <= known and (extra := [k for k in obj if k not in known and k != prov_field]):
                raise InputError(
                    f"record {first + i} has field {extra[0]!r}, which the first {self._first_rows} records lack",
                    hint=self._hint(),
                )

    def _hint(self) -> str:
        return (
            f"Parquet/CSV columns have one type, fixed by the first {self._first_rows} records; "
            "write JSONL to keep any shape"
        )

    def _meta(self, json_columns: list[str]) -> bytes:
        meta: dict[str, Any] = {"version": _META_VERSION}
        if self._prov is not _MISSING:
            meta["provenance"] = {"field": self._prov_field, "value": self._prov, "position": self._prov_pos}
        meta["json_columns"] = json_columns
        try:
            return orjson.dumps(meta, option=_JSON_OPTS)
        except TypeError as e:
            raise InputError(f"the {self._prov_field} value cannot be written as JSON ({e})") from None

    def _open(self, pa: Any, schema: Any) -> None:
        self._schema = schema
        self._sink = _Sink(self._f)
        out = pa.PythonFile(self._sink, mode="w")
        if self.fmt == "parquet":
            import pyarrow.parquet as pq

            vector = {c.name for c in self._columns or () if c.kind == "vector"}
            self._out = pq.ParquetWriter(
                out,
                schema,
                # Float vectors barely compress (zstd saves ~8%) and decompressing them would be most of
                # the reading time: they are stored plain; text and the rest compress well.
                compression={n: "none" if n in vector else "zstd" for n in schema.names},
                # Dictionaries help repeated labels, never float vectors: do not try them there.
                use_dictionary=[n for n in schema.names if n not in vector],
            )
        elif self.fmt == "arrow":
            self._out = pa.ipc.new_file(out, schema)
        else:
            self._out = pa.ipc.new_stream(out, schema)

    def _write_arrow(self, chunk: list[dict], first: int) -> None:
        pa = require_pyarrow()
        assert self._columns is not None
        try:
            arrays = [
                _column_array(col, [obj.get(col.name) for obj in chunk], first, self._hint, pa) for col in self._columns
            ]
        except (pa.ArrowException, OverflowError) as e:  # checked above; whatever slips through is still bad input
            raise InputError(
                f"cannot write records {first}-{first + len(chunk) - 1} as {self.fmt} ({_reason(e)})"
            ) from None
        if self._out is None:
            json_cols = [c.name for c in self._columns if c.kind == "json"]
            fields = [pa.field(c.name, c.arrow_type(pa)) for c in self._columns]
            self._open(pa, pa.schema(fields, metadata={META_KEY: self._meta(json_cols)}))
        batch = pa.RecordBatch.from_arrays(arrays, schema=self._schema)
        try:
            if self.fmt == "parquet":
                self._out.write_batch(batch, row_group_size=len(chunk))
            else:
                self._out.write_batch(batch)
        except pa.ArrowException as e:
            raise InputError(f"cannot write {self.fmt} ({_reason(e)})") from None
        assert self._sink is not None
        self._sink.drain()

    def _write_csv(self, chunk: list[dict]) -> None:
        assert self._columns is not None
        text = io.StringIO()
        w = csv.writer(text, delimiter="," if self.fmt == "csv" else "\t", lineterminator="\n")
        names = [c.name for c in self._columns]
        if self._out is None:
            if names:
                w.writerow(names)
            self._out = names
        for obj in chunk:
            w.writerow([_csv_cell(obj.get(n)) for n in names])
        self._f.write(text.getvalue().encode("utf-8"))


_MISSING: Any = object()


def _label(fmt: str) -> str:
    return "Parquet" if fmt == "parquet" else "Arrow"


class _Sink:
    """What pyarrow writes to: buffered, counting its own position, so a pipe will do.

    pyarrow writes many small pieces (page headers); they are gathered and passed on
    in large writes, and at least once per row group, so a reader downstream sees
    each row group as it is done. Closing it leaves ``f`` open: that is its owner's.
    """

    _LIMIT = 1 << 20

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._buf = bytearray()
        self._pos = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        n = len(data)
        self._buf += data
        self._pos += n
        if len(self._buf) >= self._LIMIT:
            self.drain()
        return n

    def drain(self) -> None:
        if self._buf:
            data, self._buf = bytes(self._buf), bytearray()
            self._f.write(data)

    def tell(self) -> int:
        return self._pos

    def flush(self) -> None:
        """Kept until the row group ends: see drain()."""

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.drain()
        self.closed = True


class _Column:
    """One output column: name, kind (vector, string, bool, int, float, list, json), list item kind, width."""

    __slots__ = ("dims", "item", "kind", "name")

    def __init__(self, name: str, kind: str, item: str = "", dims: int = 0) -> None:
        self.name, self.kind, self.item, self.dims = name, kind, item, dims

    def arrow_type(self, pa: Any) -> Any:
        if self.kind == "vector":
            return pa.list_(pa.from_numpy_dtype(np.dtype(self.item or "float32")), self.dims)
        if self.kind == "list":
            return pa.list_(_SCALAR_TYPES[self.item](pa))
        return _SCALAR_TYPES[self.kind](pa)

    def describe(self) -> str:
        if self.kind == "vector":
            return f"{self.dims}-dimensional vectors"
        if self.kind == "list":
            return f"lists of {_KIND_WORDS[self.item]}"
        return _KIND_WORDS[self.kind]


_SCALAR_TYPES: dict[str, Callable[[Any], Any]] = {
    "str": lambda pa: pa.string(),
    "json": lambda pa: pa.string(),
    "bool": lambda pa: pa.bool_(),
    "int": lambda pa: pa.int64(),
    "float": lambda pa: pa.float64(),
}
_KIND_WORDS = {
    "str": "strings",
    "json": "JSON",
    "bool": "booleans",
    "int": "integers",
    "float": "numbers",
}


def _kind(v: Any) -> str:
    """A value's kind for column typing: null, str, bool, int, float, list:<item>, or json."""
    if v is None:
        return "null"
    if isinstance(v, str):
        return "str"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int" if _INT64_MIN <= v <= _INT64_MAX else "json"
    if isinstance(v, float):
        return "float"
    if isinstance(v, np.generic):
        return _kind(v.item())
    if isinstance(v, np.ndarray):
        if v.ndim == 1 and v.dtype.kind in "biuf":
            return "list:" + {"b": "bool", "i": "int", "u": "int", "f": "float"}[v.dtype.kind]
        return "json"
    if isinstance(v, (list, tuple)):
        items = {_kind(x) for x in v} - {"null"}
        if not items:
            return "list:"
        if len(items) == 1 and (item := next(iter(items))) in ("str", "bool", "int", "float"):
            return "list:" + item
        if items == {"int", "float"}:
            return "list:float"
        return "json"
    return "json"


_CODE_DTYPES = (np.dtype(np.int8), np.dtype(np.uint8))


def _infer_column(name: str, values: list, is_vector: bool) -> _Column:
    """A column's type from its values in the first row group (the class docstring's rules)."""
    if is_vector and (dims := _vector_dims(values)):
        # Codes (quantize's int8/uint8 arrays) keep their integer type; anything else is float32.
        dtypes = {v.dtype for v in values if isinstance(v, np.ndarray)}
        code = next(iter(dtypes)) if len(dtypes) == 1 and next(iter(dtypes)) in _CODE_DTYPES else None
        return _Column(name, "vector", item=code.name if code is not None else "float32", dims=dims)
    kinds = {_kind(v) for v in values} - {"null"}
    if not kinds:
        return _Column(name, "str")
    if len(kinds) == 1 and (k := next(iter(kinds))) in ("str", "bool", "int", "float", "json"):
        return _Column(name, k)
    if kinds == {"int", "float"}:
        return _Column(name, "float")
    if all(k.startswith("list:") for k in kinds):
        items = {k[5:] for k in kinds} - {""}
        if not items:
            return _Column(name, "list", "str")
        if len(items) == 1:
            return _Column(name, "list", next(iter(items)))
        if items == {"int", "float"}:
            return _Column(name, "list", "float")
    return _Column(name, "json")


def _vector_dims(values: list) -> int:
    """The common length of the values when every non-null one is a flat array of numbers, else 0."""
    dims = 0
    for v in values:
        if v is None:
            continue
        if isinstance(v, np.ndarray):
            if v.ndim != 1 or v.dtype.kind not in "iuf":
                return 0
            n = v.shape[0]
        elif isinstance(v, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            n = len(v)
        else:
            return 0
        if not n or (dims and n != dims):
            return 0
        dims = n
    return dims


def _what(v: Any) -> str:
    """A value's type in words, for error messages."""
    k = _kind(v)
    if k.startswith("list:"):
        return f"a list of {_KIND_WORDS[k[5:]]}" if k[5:] else "an empty list"
    if isinstance(v, dict):
        return "an object"
    return {
        "str": "a string",
        "bool": "a boolean",
        "int": "an integer",
        "float": "a number",
        "json": "a nested value",
    }.get(k, type(v).__name__)


def _column_array(col: _Column, values: list, first: int, hint: Callable[[], str], pa: Any) -> Any:
    """One column of a row group as an Arrow array, each value checked against the column's type."""

    def misfit(i: int, why: str = "") -> InputError:
        what = why or f"is {_what(values[i])}"
        return InputError(
            f"field {col.name!r} of record {first + i} {what}, but its column holds {col.describe()}", hint=hint()
        )

    kind = col.kind
    if kind == "vector":
        return _vector_array(col, values, misfit, pa)
    if kind == "json":
        out: list = []
        for i, v in enumerate(values):
            if v is None:
                out.append(None)
                continue
            try:
                out.append(orjson.dumps(v, option=_JSON_OPTS).decode())
            except TypeError as e:
                raise InputError(
                    f"field {col.name!r} of record {first + i} cannot be written as JSON ({e})", hint=hint()
                ) from None
        return pa.array(out, type=pa.string())
    if kind == "list":
        item = col.item
        out = []
        for i, v in enumerate(values):
            if v is None:
                out.append(None)
                continue
            if isinstance(v, np.ndarray):
                v = v.tolist()
            k = _kind(v)
            if not (k == "list:" or k == f"list:{item}" or (item == "float" and k == "list:int")):
                raise misfit(i)
            out.append(v)
        return pa.array(out, type=col.arrow_type(pa))
    out = values
    fits = _FITS[kind]
    for i, v in enumerate(values):
        if v is not None and not fits(v):
            if isinstance(v, np.generic) and fits(v.item()):
                if out is values:
                    out = list(values)
                out[i] = v.item()
                continue
            raise misfit(i)
    return pa.array(out, type=col.arrow_type(pa))


_FITS: dict[str, Callable[[Any], bool]] = {
    "str": lambda v: isinstance(v, str),
    "bool": lambda v: isinstance(v, bool),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool) and _INT64_MIN <= v <= _INT64_MAX,
    "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


def _vector_array(col: _Column, values: list, misfit: Callable[..., InputError], pa: Any) -> Any:
    dims = col.dims
    n = len(values)
    mat = np.zeros((n, dims), dtype=np.dtype(col.item or "float32"))
    valid = np.ones(n, dtype=bool)
    for i, v in enumerate(values):
        if v is None:
            valid[i] = False
            continue
        a = v if isinstance(v, np.ndarray) else np.asarray(v) if isinstance(v, list) else None
        if a is None or a.dtype.kind not in "iuf" or a.ndim != 1:
            raise misfit(i)
        if a.shape[0] != dims:
            raise misfit(i, f"has {a.shape[0]} dimensions")
        mat[i] = a
    flat = pa.array(mat.reshape(-1))
    vtype = col.arrow_type(pa)
    if valid.all():
        return pa.FixedSizeListArray.from_arrays(flat, dims)
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little").tobytes())
    return pa.Array.from_buffers(vtype, n, [bitmap], null_count=int(n - valid.sum()), children=[flat])


def _csv_cell(v: Any) -> str:
    """One CSV field (see TableWriter's rules)."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if v != v else ("inf" if v > 0 else "-inf")
    try:
        return orjson.dumps(v, option=_JSON_OPTS).decode()
    except TypeError:
        return str(v)
