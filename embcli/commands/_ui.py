"""stderr messages and progress: shown to people, never mixed into the data on stdout."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from embcli.env import current
from embcli.errors import printable


def silence() -> None:
    """-q (any command's): the run's notices and library chatter are silenced; errors still show."""
    current().quiet = True
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when huggingface_hub is imported
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when huggingface_hub is imported


def say(message: str, quiet: bool = False) -> None:
    if not quiet:
        sys.stderr.write(f"embcli: {printable(message)}\n")  # one write: lines from threads never mix
        sys.stderr.flush()


def warn(message: str, quiet: bool = False) -> None:
    say(f"warning: {message}", quiet)


def _chatter(source: str, message: str) -> None:
    if not current().quiet:
        warn(f"{source}: {' '.join(message.split())}")  # a library's paragraph, as one line


def show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` for the CLI: numpy's or sklearn's warnings as one line, none under -q."""
    _chatter(category.__name__, str(message))


class ChatterHandler(logging.Handler):
    """``logging.lastResort`` for the CLI: a library logger's warnings as one line, none under -q."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        _chatter(record.name, record.getMessage())


class Progress:
    """A live 'N texts, R texts/s' line on stderr, only when stderr is a terminal."""

    def __init__(self, label: str, unit: str, enabled: bool) -> None:
        self.label, self.unit = label, unit
        self.count = 0
        self.start = time.perf_counter()
        self._bar = None
        if enabled:
            from rich.console import Console
            from rich.progress import Progress as RichProgress
            from rich.progress import SpinnerColumn, TextColumn, TimeElapsedColumn

            self._bar = RichProgress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TextColumn("{task.completed:,} " + unit),
                TextColumn("[cyan]{task.fields[rate]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._bar.add_task(label, total=None, rate="")

    def advance(self, n: int) -> None:
        self.count += n
        if self._bar is not None:
            self._bar.update(self._task, advance=n, rate=f"{self.rate():,.0f} {self.unit}/s")

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def rate(self) -> float:
        return self.count / max(self.elapsed(), 1e-9)

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


@contextmanager
def progress(label: str, unit: str, quiet: bool) -> Iterator[Progress]:
    with Progress(label, unit, enabled=not quiet and sys.stderr.isatty()) as p:
        yield p
