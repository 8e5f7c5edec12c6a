"""stderr messages and progress: shown to people, never mixed into the data on stdout."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager


def say(message: str, quiet: bool = False) -> None:
    if not quiet:
        print(f"embcli: {message}", file=sys.stderr, flush=True)


def warn(message: str, quiet: bool = False) -> None:
    say(f"warning: {message}", quiet)


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
