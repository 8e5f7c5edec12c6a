"""Several inputs read in order as one stream: files, globs, directories and stdin.

Every command that reads records or vectors goes through ``Inputs``, so each
format, each compression and the error locations (file and line or row) are
the same everywhere.
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from embcli.errors import InputError, UsageError
from embcli.io.readers import iter_embedded, iter_records
from embcli.io.streams import VECTORS_HINT, BadRecords, Record, Source

STDIN = "-"


def expand(args: Sequence[str] | None) -> list[str]:
    """Input arguments as the files to read, in order; ``-`` (or no argument) is stdin.

    A glob (``'vec/*.parquet'``, quoted so embcli expands it) gives its matches
    sorted; a directory gives its files sorted, skipping names that start with
    ``_`` or ``.`` (``_manifest.json``, ``.DS_Store``: the convention of Spark and
    Ray outputs). A glob or directory that matches nothing is a usage error.
    """
    if not args:
        return [STDIN]
    files: list[str] = []
    for arg in args:
        if arg == STDIN or (os.path.exists(arg) and not os.path.isdir(arg)):
            files.append(arg)
        elif os.path.isdir(arg):
            found = sorted(
                os.path.join(arg, n)
                for n in os.listdir(arg)
                if not n.startswith(("_", ".")) and os.path.isfile(os.path.join(arg, n))
            )
            if not found:
                raise UsageError(f"no input files in directory {arg}")
            files.extend(found)
        elif glob.has_magic(arg):
            found = sorted(p for p in glob.glob(arg, recursive=True) if os.path.isfile(p))
            if not found:
                raise UsageError(f"no files match {arg}")
            files.extend(found)
        else:
            raise UsageError(f"cannot open input: No such file or directory, {arg}")
    if files.count(STDIN) > 1:
        raise UsageError("stdin ('-') can be read only once")
    return files


@dataclass
class ReadOptions:
    """How records are read: the format (None: found per input), and CSV's typing."""

    input_format: str | None = None
    infer_types: bool = False


class Inputs:
    """Inputs read one after another; errors name the input and its line or row."""

    def __init__(self, args: Sequence[str] | None, options: ReadOptions | None = None) -> None:
        self.paths = expand(args)
        self.options = options or ReadOptions()
        self.current: Source | None = None
        self._done_bytes = 0
        self.handed = 0  # records handed out so far
        sizes = [_size(p) for p in self.paths]
        self.total_bytes: int | None = None if None in sizes else sum(s for s in sizes if s is not None)

    @property
    def name(self) -> str:
        """The input being read (the first before reading starts): for messages."""
        if self.current is not None:
            return self.current.name
        return "<stdin>" if self.paths[0] == STDIN else self.paths[0]

    def _sources(self) -> Iterator[Source]:
        for path in self.paths:
            with Source(path) as src:
                self.current = src
                yield src
                self._done_bytes += src.size or 0

    def records(self, text_field: str, bad: BadRecords, *, json_hint: str | None = None) -> Iterator[Record]:
        """Every record of every input, in order."""
        hint = {"json_hint": json_hint} if json_hint else {}
        for src in self._sources():
            fmt = self.options.input_format
            for rec in iter_records(src, fmt, text_field, bad, infer_types=self.options.infer_types, **hint):
                self.handed += 1
                yield rec

    def embedded(
        self, vector_field: str, bad: BadRecords, *, json_hint: str = VECTORS_HINT
    ) -> Iterator[tuple[Record, np.ndarray]]:
        """Every (record, vector) of every input, in order; every vector has the first one's width."""
        width: int | None = None
        for src in self._sources():
            for rec, vec in iter_embedded(
                src, vector_field, bad, input_format=self.options.input_format, json_hint=json_hint
            ):
                if width is None:
                    width = vec.shape[0]
                elif vec.shape[0] != width:
                    bad.handle(InputError(f"vector has {vec.shape[0]} dimensions, earlier ones {width}, {rec.where}"))
                    continue
                self.handed += 1
                yield rec, vec

    def share(self, done: int) -> float | None:
        """The share of the whole input that ``done`` records make (for progress), or None when unknown.

        The readers run ahead of the consumer (prefetching, batching), so the share
        of bytes read overstates progress; it says instead how many records the
        input holds at the rate read so far, and ``done`` is counted against that.
        """
        read = self.fraction()
        if not read or not self.handed:
            return None
        return min(1.0, done * read / self.handed)

    def fraction(self) -> float | None:
        """How much of the input is read, when every input is a regular file."""
        if not self.total_bytes or self.current is None:
            return None
        src = self.current
        now = src.progress() * (src.size or 0) if src.progress else src.consumed() or 0
        return min(1.0, (self._done_bytes + now) / self.total_bytes)


def _size(path: str) -> int | None:
    """A regular file's size; None for stdin, FIFOs and devices, whose length is unknown."""
    if path == STDIN:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None
