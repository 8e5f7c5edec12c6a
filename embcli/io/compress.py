"""Compressed streams: gzip, bzip2, xz and zstd, found by magic bytes on input and by suffix on output.

Input is decompressed as it is read (bounded memory); a corrupt or cut stream is
bad input naming the file and how far it got. Output is compressed
deterministically (gzip with no name and mtime 0), so the same records give the
same bytes.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from typing import BinaryIO, Protocol

from embcli.errors import InputError, UsageError

# Magic bytes at the start of each kind of stream.
MAGIC = {
    "gzip": b"\x1f\x8b",
    "bzip2": b"BZh",
    "xz": b"\xfd7zXZ\x00",
    "zstd": b"\x28\xb5\x2f\xfd",
}
SUFFIXES = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zst": "zstd", ".zstd": "zstd"}
KINDS = ("gzip", "bzip2", "xz", "zstd")
_READ = 1 << 16


def sniff(head: bytes) -> str | None:
    """The compression a stream starting with ``head`` uses, or None."""
    for kind, magic in MAGIC.items():
        if head.startswith(magic):
            return kind
    return None


def suffix_kind(path: str) -> tuple[str, str | None]:
    """(path without its compression suffix, the compression it names or None)."""
    lower = path.lower()
    for suffix, kind in SUFFIXES.items():
        if lower.endswith(suffix):
            return path[: -len(suffix)], kind
    return path, None


def _zstd():
    try:
        import zstandard
    except ImportError:  # pragma: no cover - zstandard is a dependency
        raise UsageError("zstd needs the zstandard package", hint="pip install zstandard") from None
    return zstandard


class _Decompressor(Protocol):
    eof: bool
    unused_data: bytes

    def decompress(self, data: bytes) -> bytes: ...


def _decompressor(kind: str) -> _Decompressor:
    if kind == "gzip":
        return zlib.decompressobj(wbits=31)
    if kind == "bzip2":
        return bz2.BZ2Decompressor()
    if kind == "xz":
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    return _zstd().ZstdDecompressor().decompressobj()


class DecompressingReader:
    """A binary reader that decompresses ``raw`` as it is read.

    Concatenated members (``cat a.gz b.gz``) are read on, as gzip(1) does. A cut
    or corrupt stream raises one ``InputError`` naming ``name`` and the line
    ``lines()`` says was reached.
    """

    def __init__(self, raw: BinaryIO, kind: str, name: str, lines=lambda: 0) -> None:
        self.kind, self.name = kind, name
        self._raw = raw
        self._lines = lines
        self._d = _decompressor(kind)
        self._pending = b""  # decompressed; what is not yet read starts at _at
        self._at = 0
        self._done = False
        self._in_member = False
        self.raw_read = 0  # compressed bytes consumed, for progress

    def _fail(self, what: str) -> InputError:
        line = self._lines()
        where = f"after line {line}" if line else "at the start"
        return InputError(f"{what} {self.kind} data {where}, {self.name}")

    def _fill(self) -> None:
        while not self._pending and not self._done:
            chunk = self._raw.read(_READ)
            self.raw_read += len(chunk)
            if not chunk:
                self._done = True
                if self._in_member:  # the stream stopped inside a member: cut off
                    raise self._fail("truncated")
                return
            try:
                self._pending = self._decompress(chunk)
            except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError) as e:
                raise self._fail(f"corrupt ({e})") from None
            except Exception as e:  # zstandard.ZstdError derives from Exception only
                if type(e).__name__ != "ZstdError":
                    raise
                raise self._fail(f"corrupt ({e})") from None

    def _decompress(self, chunk: bytes) -> bytes:
        out = self._d.decompress(chunk)
        self._in_member = True
        # At the end of one member, what is left starts the next (concatenated streams).
        while self._d.eof:
            rest = self._d.unused_data
            self._d = _decompressor(self.kind)
            self._in_member = bool(rest)
            if not rest:
                break
            out += self._d.decompress(rest)
        return out

    def _take(self, n: int) -> bytes:
        """The next ``n`` pending bytes (by offset: slicing the rest off each time would be quadratic)."""
        head = self._pending[self._at : self._at + n]
        self._at += len(head)
        if self._at >= len(self._pending):
            self._pending, self._at = b"", 0
        return head

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            parts = []
            while chunk := self.read(_READ):
                parts.append(chunk)
            return b"".join(parts)
        out = bytearray()
        while len(out) < n:
            self._fill()
            if not self._pending:
                break
            out += self._take(n - len(out))
        return bytes(out)

    def read1(self, n: int = -1) -> bytes:
        self._fill()
        return self._take(len(self._pending) if n is None or n < 0 else n)

    def readline(self, limit: int = -1) -> bytes:
        out = bytearray()
        while limit < 0 or len(out) < limit:
            self._fill()
            if not self._pending:
                break
            end = len(self._pending) if limit < 0 else min(len(self._pending), self._at + limit - len(out))
            i = self._pending.find(b"\n", self._at, end)
            out += self._take((end if i < 0 else i + 1) - self._at)
            if i >= 0:
                break
        return bytes(out)

    def close(self) -> None:
        self._raw.close()


class CompressingWriter:
    """Compresses what is written to ``out`` (a checked output); ``close()`` writes the stream's end."""

    def __init__(self, out: BinaryIO, kind: str) -> None:
        self.kind = kind
        self._out = out
        if kind == "gzip":
            # zlib's gzip header carries no file name and mtime 0: deterministic bytes.
            self._c = zlib.compressobj(6, zlib.DEFLATED, 31)
        elif kind == "bzip2":
            self._c = bz2.BZ2Compressor(9)
        elif kind == "xz":
            self._c = lzma.LZMACompressor(format=lzma.FORMAT_XZ)
        elif kind == "zstd":
            self._c = _zstd().ZstdCompressor(level=3).compressobj()
        else:
            raise UsageError(f"unknown compression {kind!r}; choose one of {', '.join(KINDS)}")
        self.written = 0  # uncompressed bytes, like tell() on the plain stream

    def write(self, data: bytes, record_end: bytes | None = None) -> int:
        # record_end is a plain output's Ctrl-C boundary; a compressed stream cut anywhere is refused
        # by its reader, and a regular file is never renamed into place after an interrupt.
        self.written += len(data)
        if out := self._c.compress(bytes(data)):
            self._out.write(out)
        return len(data)

    def flush(self) -> None:
        """Nothing to do: flushing a compressor mid-stream costs ratio; close() ends the stream."""

    def tell(self) -> int:
        return self.written

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        if self._c is not None:
            self._out.write(self._c.flush())
            self._c = None
