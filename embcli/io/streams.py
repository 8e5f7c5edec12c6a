"""JSONL / NPY / text streams (DESIGN §2): detection, readers, writers, atomic files.

Readers yield as they read, so commands built on them stream with bounded memory.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import signal
import stat
import struct
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

import numpy as np
import orjson

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None

from embcli.errors import EmbcliError, InputError, UsageError
from embcli.io.files import STDOUT, atomic_file, write_error

NPY_MAGIC = b"\x93NUMPY"
# Rows per chunk when reading NPY: ~1 MiB of data, whatever the width.
_NPY_CHUNK_BYTES = 1 << 20
# Lines are read in pieces of this size: a line longer than this grows in place.
_LINE_CHUNK = 1 << 20


class Source:
    """A binary input (file or stdin) with push-back, so formats can be sniffed.

    A compressed input (gzip, bzip2, xz, zstd: found by magic bytes) is
    decompressed as it is read. ``path`` is the file itself when it can be read
    at random (a plain regular file), for formats that need that (Parquet).
    """

    def __init__(self, path: str | None, name: str | None = None) -> None:
        if path in (None, "-"):
            self.name = "<stdin>"
            raw: BinaryIO = sys.stdin.buffer
            self._owned = False
        else:
            self.name = name or str(path)  # name: what messages call it (the path as the user gave it)
            try:
                raw = open(path, "rb")  # noqa: SIM115 - closed in close()
            except OSError as e:
                raise UsageError(f"cannot open input: {e.strerror}, {path}") from None
            self._owned = True
        self._init(raw, None if path in (None, "-") else str(path))

    def _init(self, raw: BinaryIO, path: str | None, decompress: bool = True) -> None:
        self._f = raw
        self._raw = raw
        self._buf = b""
        self.lines = 0  # lines handed out by readline(), so a cut stream can say how far it got
        self.progress: Callable[[], float] | None = None  # set by a reader that knows better than bytes
        self.compression: str | None = None
        self.size = _regular_size(raw)
        head = self.peek(8)
        if decompress and (kind := sniff_compression(head)):
            from embcli.io.compress import DecompressingReader

            self.compression = kind
            self._f = DecompressingReader(_Prefixed(head, raw), kind, self.name, lambda: self.lines)
            self._buf = b""
        self.path = path if self.size is not None and self.compression is None else None

    @classmethod
    def from_file(cls, f: BinaryIO, name: str | None = None, *, decompress: bool = True) -> Source:
        """A source over an open binary file (left open: its owner closes it).

        ``decompress=False`` takes the bytes as they are: a slice of a plain file
        (one part of it) whose first bytes happen to look like a compression magic.
        """
        src = cls.__new__(cls)
        src.name = name or str(getattr(f, "name", "<file>"))
        src._owned = False
        src._init(f, None, decompress)
        return src

    def consumed(self) -> int | None:
        """Bytes of the underlying file read so far (compressed bytes for a compressed one), if known."""
        if self.size is None:
            return None
        try:
            return self._raw.tell()
        except (OSError, ValueError):
            return None

    def peek(self, n: int) -> bytes:
        """Up to ``n`` bytes from the front, without consuming them."""
        while len(self._buf) < n:
            chunk = self._f.read1(n - len(self._buf)) if hasattr(self._f, "read1") else self._f.read(n)
            if not chunk:
                break
            self._buf += chunk
        return self._buf[:n]

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes, or fewer at end of input."""
        head, self._buf = self._buf[:n], self._buf[n:]
        if len(head) == n:
            return head
        return head + self._f.read(n - len(head))

    def readline(self) -> bytes | bytearray:
        """One line with its newline; a huge line grows in place (a bytearray), never copied whole."""
        line = self._readline()
        if line:
            self.lines += 1
        return line

    def _readline(self) -> bytes | bytearray:
        if self._buf:
            i = self._buf.find(b"\n")
            if i >= 0:
                line, self._buf = self._buf[: i + 1], self._buf[i + 1 :]
                return line
            head, self._buf = self._buf, b""
        else:
            head = self._f.readline(_LINE_CHUNK)
            if len(head) < _LINE_CHUNK or head.endswith(b"\n"):
                return head  # the usual case: one read, plain bytes
        line = bytearray(head)
        while not line.endswith(b"\n") and (chunk := self._f.readline(_LINE_CHUNK)):
            line += chunk
        return line

    def sniff(self) -> str:
        """``npy`` when the stream starts with the NPY magic, else ``jsonl``."""
        return "npy" if self.peek(len(NPY_MAGIC)) == NPY_MAGIC else "jsonl"

    def close(self) -> None:
        if self._owned:
            self._raw.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sniff_compression(head: bytes) -> str | None:
    from embcli.io.compress import sniff

    return sniff(head)


def _regular_size(f: BinaryIO) -> int | None:
    """The size of a regular file (for progress and random access); None for pipes and terminals."""
    try:
        st = os.fstat(f.fileno())
    except (OSError, ValueError, AttributeError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


class _Prefixed:
    """``prefix`` then the rest of ``raw``: hands the bytes a sniff read back to a decompressor."""

    def __init__(self, prefix: bytes, raw: BinaryIO) -> None:
        self._prefix, self._raw = prefix, raw

    def read(self, n: int) -> bytes:
        if self._prefix:
            head, self._prefix = self._prefix[:n], self._prefix[n:]
            return head
        return self._raw.read1(n) if hasattr(self._raw, "read1") else self._raw.read(n)

    def close(self) -> None:
        self._raw.close()


# --------------------------------------------------------------------------- bad records


@dataclass
class BadRecords:
    """The ``--on-error`` policy: fail on the first bad record, or skip and count."""

    skip: bool = False
    count: int = 0
    first: str | None = None

    def handle(self, err: InputError) -> None:
        if not self.skip:
            raise err
        self.count += 1
        if self.first is None:
            self.first = err.message

    def summary(self) -> str | None:
        if not self.count:
            return None
        return f"skipped {self.count} bad record{'s' * (self.count != 1)} (first: {self.first})"


def at_line(source: str, line: int) -> str:
    return f"{source} line {line}"


def at_row(source: str, row: int) -> str:
    """Where an NPY row is: 1-based, counted across back-to-back arrays."""
    return f"{source} row {row}"


# --------------------------------------------------------------------------- record readers


@dataclass(slots=True)
class Record:
    """One input record: where it came from and the parsed object.

    ``line`` is the 1-based line (JSONL, text, CSV) or row (NPY, Parquet, Arrow:
    ``by_row``) in ``source``. An NPY row is a record too (``npy``): ``data`` is
    empty, so row numbers survive skipped rows.
    """

    line: int
    data: dict
    extra: dict = field(default_factory=dict)  # per-command scratch (e.g. tokens)
    npy: bool = False
    source: str = "<input>"
    by_row: bool = False

    @property
    def where(self) -> str:
        """Where the record is, for messages: ``docs.csv line 7`` or ``vec.parquet row 7``."""
        return at_row(self.source, self.line) if self.npy or self.by_row else at_line(self.source, self.line)

    def fields(self) -> dict:
        """What a result record starts from: the JSON object, or ``{"row": i}`` (0-based) for an NPY row."""
        return {"row": self.line - 1} if self.npy else self.data


# What to say when the first line is not JSON. Callers pass their own: a hint must never
# name an option the running command lacks (only embed has --input-format).
JSONL_HINT = "each line must be one JSON object"
VECTORS_HINT = (
    "this command reads embedded records (from `embcli embed`) or NPY vectors; "
    "for CSV/TSV on stdin or under another name, use --input-format csv|tsv"
)


def iter_jsonl(
    src: Source, fmt: str, text_field: str, bad: BadRecords, *, json_hint: str = JSONL_HINT, first_line: int = 1
) -> Iterator[Record]:
    """Records from JSONL (objects), or from plain text (``fmt`` "text": one text per line, as ``text_field``).

    ``json_hint`` goes with an invalid first line: it is the caller's, which knows its options.
    ``first_line`` is the number of ``src``'s first line in its file (a part of a file starts later).
    """
    name = src.name
    lineno = first_line - 1
    while line := src.readline():
        lineno += 1
        if fmt == "text":
            try:
                text = _line_text(line)
            except UnicodeDecodeError as e:
                bad.handle(InputError(f"invalid UTF-8 at byte {e.start}, {at_line(name, lineno)}"))
                continue
            del line
            yield Record(lineno, {text_field: text}, source=name)
            continue
        if line.isspace():  # not line.strip(): that copies a huge line
            # Blank lines between JSONL records are common (editors, `echo`); not data.
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            msg = str(e).split(": line ")[0]
            hint = json_hint if lineno == 1 else None
            bad.handle(InputError(f"invalid JSON ({msg}), {at_line(name, lineno)}", hint=hint))
            continue
        del line  # one huge line is held once (as its parsed text), not twice
        if not isinstance(obj, dict):
            bad.handle(InputError(f"expected a JSON object, got {_json_type(obj)}, {at_line(name, lineno)}"))
            continue
        yield Record(lineno, obj, source=name)


def _line_text(line: bytes | bytearray) -> str:
    """A text line without its line ending, decoded without copying the bytes first."""
    end = len(line)
    if line.endswith(b"\n"):
        while end and line[end - 1] in b"\r\n":
            end -= 1
    return str(memoryview(line)[:end], "utf-8")


def get_text(rec: Record, text_field: str) -> str:
    """The record's text, checked: present, a string, non-empty, no NUL bytes."""
    loc = rec.where
    if text_field not in rec.data:
        have = ", ".join(list(rec.data)[:8]) or "none"
        raise InputError(
            f"record has no {text_field!r} field (fields: {have}), {loc}",
            hint="choose the field with --text-field NAME",
        )
    text = rec.data[text_field]
    if not isinstance(text, str):
        raise InputError(f"field {text_field!r} is {_json_type(text)}, not a string, {loc}")
    if "\x00" in text:
        raise InputError(f"field {text_field!r} contains a NUL byte, {loc}")
    if not text or text.isspace():  # not text.strip(): that copies a huge text
        raise InputError(f"field {text_field!r} is empty, {loc}")
    return text


def _json_type(v: object) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(v), type(v).__name__)


# --------------------------------------------------------------------------- NPY


def npy_header(dtype: np.dtype, shape: tuple[int, ...], size: int | None = None) -> bytes:
    """A version 1.0 NPY header; ``size`` pads it to a fixed length (for patching later)."""
    d = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (
        np.lib.format.dtype_to_descr(np.dtype(dtype)),
        tuple(shape),
    )
    body = len(d) + 1  # + "\n"
    total = size if size is not None else math.ceil((10 + body) / 64) * 64
    if total - 10 < body:
        raise ValueError("NPY header does not fit")
    return (
        NPY_MAGIC
        + b"\x01\x00"
        + struct.pack("<H", total - 10)
        + (d + " " * (total - 10 - body) + "\n").encode("latin1")
    )


def iter_npy(src: Source, bad: BadRecords | None = None) -> Iterator[np.ndarray]:
    """Row chunks from one or more back-to-back NPY arrays; rows with NaN or Inf are bad records."""
    for _, chunk in iter_npy_rows(src, bad):
        yield chunk


def iter_npy_rows(src: Source, bad: BadRecords | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(1-based row numbers, rows) chunks, checked: a row with NaN or Inf fails, or is skipped and counted.

    Row numbers run on across back-to-back arrays, so they name the row in the whole stream.
    """
    bad = bad if bad is not None else BadRecords()
    first = 1
    for chunk in _npy_chunks(src):
        numbers = np.arange(first, first + len(chunk))
        first += len(chunk)
        finite = finite_rows(chunk)
        if finite is not None:
            for i in np.flatnonzero(~finite):
                bad.handle(non_finite(chunk[i], at_row(src.name, int(numbers[i]))))
            chunk, numbers = chunk[finite], numbers[finite]
        if len(chunk):
            yield numbers, chunk


def non_finite(row: np.ndarray, where: str) -> InputError:
    """The bad-input error for a row that ``finite_rows`` refused, saying what it holds."""
    what = "NaN" if np.isnan(row).any() else "Inf" if np.isinf(row).any() else "a number beyond float32"
    return InputError(f"vector holds {what}, {where}")


def finite_rows(rows: np.ndarray) -> np.ndarray | None:
    """A mask of the rows that are all finite as float32 (what every command computes in), or None
    when every row is (one vectorized pass)."""
    if rows.dtype.kind not in "fc":  # integers and booleans cannot hold NaN or Inf
        return None
    if rows.dtype.kind == "c" or rows.dtype.itemsize > 4:
        finite = np.isfinite(rows).all(axis=1) & (np.abs(rows) <= np.finfo(np.float32).max).all(axis=1)
    else:
        finite = np.isfinite(rows).all(axis=1)
    return None if finite.all() else finite


def _npy_chunks(src: Source) -> Iterator[np.ndarray]:
    """Row chunks from one or more back-to-back NPY arrays of the same dtype and width."""
    dtype: np.dtype | None = None
    width: int | None = None
    n_array = 0
    while True:
        head = src.peek(len(NPY_MAGIC))
        if not head:
            return
        n_array += 1
        if head != NPY_MAGIC:
            raise InputError(f"unexpected bytes after NPY array {n_array - 1}, {src.name}")
        try:
            version = np.lib.format.read_magic(src)
            if version == (1, 0):
                shape, fortran, dt = np.lib.format.read_array_header_1_0(src)
            elif version == (2, 0):
                shape, fortran, dt = np.lib.format.read_array_header_2_0(src)
            else:
                raise ValueError(f"unsupported NPY version {version}")
        except (ValueError, SyntaxError, EOFError, struct.error) as e:
            raise InputError(f"corrupt NPY header in array {n_array} ({e}), {src.name}") from None
        if fortran and len(shape) > 1 and shape[0] > 1:
            raise InputError(f"Fortran-ordered NPY is not supported, {src.name}")
        if dt.hasobject or len(shape) not in (1, 2):
            raise InputError(f"NPY array {n_array} must be numeric 1-D or 2-D, got {dt} {shape}, {src.name}")
        rows, w = (1, shape[0]) if len(shape) == 1 else shape
        if dtype is None:
            dtype, width = dt, w
        elif (dt, w) != (dtype, width):
            raise InputError(
                f"NPY array {n_array} is {dt} x {w}, but the stream began with {dtype} x {width}, {src.name}"
            )
        row_bytes = max(1, w * dt.itemsize)
        per_chunk = max(1, _NPY_CHUNK_BYTES // row_bytes)
        left = rows
        while left:
            n = min(per_chunk, left)
            buf = src.read(n * row_bytes)
            if len(buf) != n * row_bytes:
                got = rows - left + len(buf) // row_bytes
                raise InputError(f"NPY array {n_array} is truncated: {got} of {rows} rows, {src.name}")
            yield np.frombuffer(buf, dtype=dt).reshape(n, w)
            left -= n


def parse_vector(value: object, vector_field: str, loc: str) -> np.ndarray:
    """A record's vector field as float32, checked: a flat array of finite numbers.

    The field may be a JSON array, a numpy row (Parquet/Arrow readers give those),
    or JSON text of an array (a CSV cell).
    """
    if isinstance(value, np.ndarray):
        arr = value if value.dtype == np.float32 else _as_float32(value, vector_field, loc)
    else:
        if isinstance(value, str) and value.startswith("["):
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise InputError(f"field {vector_field!r} is not a JSON array, {loc}") from None
        if not isinstance(value, list) or not value:
            raise InputError(
                f"record has no {vector_field!r} array, {loc}",
                hint="embed it first (embcli embed), or name the field with --vector-field",
            )
        arr = _as_float32(value, vector_field, loc)
    if arr.ndim != 1 or not arr.size or not np.isfinite(arr).all():
        raise InputError(f"field {vector_field!r} must be a flat array of finite numbers, {loc}")
    return arr


def _as_float32(value: object, vector_field: str, loc: str) -> np.ndarray:
    try:
        with np.errstate(over="ignore"):  # 1e39 becomes Inf, refused by the caller: no warning on stderr
            return np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError(f"field {vector_field!r} holds non-numbers, {loc}") from None


# --------------------------------------------------------------------------- writers


class JsonlWriter:
    """One JSON object per line; numpy vectors are written as arrays."""

    _OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE

    def __init__(self, f: BinaryIO) -> None:
        self._f = f

    def write(self, obj: dict) -> None:
        self._put(orjson.dumps(obj, option=self._OPTS))

    def write_many(self, objs: list[dict]) -> None:
        self._put(b"".join(orjson.dumps(o, option=self._OPTS) for o in objs))

    def _put(self, data: bytes) -> None:
        if isinstance(self._f, CheckedOutput):
            self._f.write(data, record_end=b"\n")  # a Ctrl-C may stop after any whole line
        else:
            self._f.write(data)

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        self._f.flush()


class NpyWriter:
    """Vectors as NPY.

    On a seekable regular file the result is one standard array: the header is
    written with room for any row count and patched on close. On a pipe, where
    nothing can be patched, each ``write`` is one complete array, back to back.
    With ``spool`` (a compressed file: no patching either) the array is written
    to a temporary file and copied to ``f`` on close, so the file still holds one
    standard array.
    """

    _HEADER_SIZE = 128  # room for shape (10**18, 10**9) and any simple dtype

    def __init__(self, f: BinaryIO, *, spool: bool = False) -> None:
        self._target = f if spool else None
        self._f = tempfile.TemporaryFile() if spool else f  # noqa: SIM115 - closed in close()
        self._single = _is_fresh_regular_file(self._f)
        self._dtype: np.dtype | None = None
        self._width: int | None = None
        self._rows = 0

    def write(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows)
        if self._dtype is None:
            self._dtype, self._width = rows.dtype, rows.shape[1]
            if self._single:
                self._f.write(npy_header(self._dtype, (0, self._width), self._HEADER_SIZE))
        if not len(rows):
            return
        if self._single:
            self._f.write(rows.tobytes())
        else:
            self._f.write(npy_header(rows.dtype, rows.shape) + rows.tobytes())
        self._rows += len(rows)

    def flush(self) -> None:
        self._f.flush()

    def close(self, width: int | None = None, dtype: np.dtype | None = None) -> None:
        """Finish the array; ``width``/``dtype`` shape the empty array when nothing was written."""
        if self._dtype is None:
            # Empty input still gives a valid (0, D) array on a file; nothing on a pipe.
            if self._single and width is not None:
                self._f.write(npy_header(dtype or np.float32, (0, width), self._HEADER_SIZE))
        elif self._single:
            self._f.seek(0)
            self._f.write(npy_header(self._dtype, (self._rows, self._width), self._HEADER_SIZE))
            self._f.seek(0, os.SEEK_END)
        self._f.flush()
        if self._target is not None:
            self._f.seek(0)
            while chunk := self._f.read(_NPY_CHUNK_BYTES):
                self._target.write(chunk)
            self._f.close()
            self._target = None


def _is_fresh_regular_file(f: BinaryIO) -> bool:
    try:
        fd = f.fileno()
        # In append mode (`>> x.npy`) the header patch at offset 0 would land at the end.
        appending = fcntl is not None and fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND
        return stat.S_ISREG(os.fstat(fd).st_mode) and not appending and f.seekable() and f.tell() == 0
    except (OSError, ValueError):
        return False


class CheckedOutput:
    """An output file descriptor written whole: every write checked, no half record on Ctrl-C.

    Bytes go straight to the descriptor in an ``os.write`` loop (no buffer that a
    Ctrl-C or an exit could leave half-flushed), so a short write is finished or
    fails; a failure raises one line naming ``where`` (a path, or "stdout").
    A Ctrl-C during a write is held until the bytes end on a record boundary;
    a second one stops at once (a reader that never reads would hang us).
    """

    def __init__(self, fd: int, where: str) -> None:
        self._fd = fd
        self.where = where

    def fileno(self) -> int:
        return self._fd

    def write(self, data: bytes, record_end: bytes | None = None) -> int:
        """Write all of ``data``; an interrupt may stop it only after a ``record_end`` byte."""
        view = memoryview(data).cast("B")
        pos, stop, cut = 0, len(view), False
        with _HeldInterrupt() as held:
            while pos < stop:
                if held.pending and not cut and record_end is not None:
                    stop, cut = _record_boundary(data, pos, record_end), True
                    continue
                pos += self._write_some(view[pos:stop])
        return pos

    def _write_some(self, view: memoryview) -> int:
        while True:
            try:
                n = os.write(self._fd, view)
            except BlockingIOError:  # a non-blocking descriptor, inherited: wait until it takes more
                select.select([], [self._fd], [])
                continue
            except OSError as e:
                raise write_error(e, self.where) from None
            if n <= 0:
                raise EmbcliError(f"short write ({n} of {len(view)} bytes), writing {self.where}")
            return n

    def flush(self) -> None:
        """Nothing is buffered here."""

    def seekable(self) -> bool:
        try:
            os.lseek(self._fd, 0, os.SEEK_CUR)
        except OSError:
            return False
        return True

    def tell(self) -> int:
        return os.lseek(self._fd, 0, os.SEEK_CUR)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self._fd, offset, whence)


def _record_boundary(data: bytes, pos: int, record_end: bytes) -> int:
    """Where the record being written at ``pos`` ends (``pos`` itself when none is begun)."""
    if pos == 0 or data[pos - 1 : pos] == record_end:
        return pos
    end = data.find(record_end, pos)
    return len(data) if end < 0 else end + 1


class _HeldInterrupt:
    """Hold SIGINT for the length of a write and raise it after; a second SIGINT is raised at once.

    Only where Python's own Ctrl-C handler is in place (the main thread, no
    handler set by the caller): anything else is left as it is.
    """

    def __init__(self) -> None:
        self.pending = False
        self._old: object = None

    def _hold(self, signum: int, frame: object) -> None:
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True

    def __enter__(self) -> _HeldInterrupt:
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        ):
            self._old = signal.signal(signal.SIGINT, self._hold)
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        if self.pending and exc_type is None:
            raise KeyboardInterrupt


@contextlib.contextmanager
def output_stream(path: str | None) -> Iterator[CheckedOutput | BinaryIO]:
    """stdout for ``None``/``-``, else an atomic file (in place for a device or FIFO)."""
    if path in (None, "-"):
        try:  # what went out through sys.stdout before goes first
            sys.stdout.flush()
        except OSError as e:
            raise write_error(e, STDOUT) from None
        try:
            fd = sys.stdout.fileno()
        except (AttributeError, ValueError, OSError):  # stdout replaced in-process (a test's capture)
            yield sys.stdout.buffer
            sys.stdout.buffer.flush()
            return
        yield CheckedOutput(fd, STDOUT)
    else:
        with atomic_file(path) as f:
            yield CheckedOutput(f.fileno(), path)


def write_stdout(data: bytes) -> None:
    """``data`` on stdout now, whole and checked (for commands that print one report)."""
    with output_stream(None) as out:
        out.write(data)


def read_ids(path: str) -> list[object]:
    """Ids, one per line: JSON strings/integers as such, any other line as a plain string."""
    ids: list[object] = []
    with Source(path) as src:
        lineno = 0
        while line := src.readline():
            lineno += 1
            text = line.strip()
            if not text:
                continue
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError:
                value = None
            if not (isinstance(value, (str, int)) and not isinstance(value, bool)):
                try:
                    value = text.decode("utf-8")
                except UnicodeDecodeError:
                    raise InputError(f"invalid UTF-8 in id, {at_line(src.name, lineno)}") from None
            ids.append(value)
    return ids
