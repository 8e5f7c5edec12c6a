"""stderr messages and progress: shown to people, never mixed into the data on stdout."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
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


class _StatusLine:
    """The run's one transient line at the bottom of stderr (rich allows one live display per console).

    Phases and progress counters push a source of text onto it; the innermost one shows. rich's refresh
    thread redraws it at most 10 times a second, so what callers do per batch is only arithmetic.
    """

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live
        from rich.spinner import Spinner

        self.sources: tuple[Callable[[], tuple[str, float | None]], ...] = ()
        self._spinner = Spinner("dots", style="cyan")
        # stdout stays the process's own: records go there by file descriptor, never through rich.
        self._live = Live(
            self,
            console=Console(stderr=True),
            transient=True,
            refresh_per_second=10,
            redirect_stdout=False,
            redirect_stderr=True,  # our own stderr lines (say, warn, notices) print above the live line
        )

    def __rich__(self) -> object:
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        sources = self.sources  # a tuple swapped whole by the main thread: safe to read from rich's thread
        text, done = sources[-1]() if sources else ("", None)
        grid = Table.grid(padding=(0, 1))
        grid.add_column(no_wrap=True)
        if done is not None:
            grid.add_column(no_wrap=True)
        grid.add_column(no_wrap=True, overflow="ellipsis")
        row: list[object] = [self._spinner]
        if done is not None:
            row.append(ProgressBar(total=1.0, completed=done, width=20))
        grid.add_row(*row, Text(text, no_wrap=True, overflow="ellipsis"))
        return grid

    def push(self, source: Callable[[], tuple[str, float | None]]) -> None:
        self.sources = (*self.sources, source)
        if len(self.sources) == 1:
            self._live.start(refresh=True)

    def pop(self) -> None:
        if len(self.sources) == 1:
            self._live.stop()  # draws the last state once more, then erases the line
        else:
            self._live.refresh()  # a nested counter's last state, drawn once as stop() would
        self.sources = self.sources[:-1]


_line: _StatusLine | None = None


@contextmanager
def _showing(source: Callable[[], tuple[str, float | None]]) -> Iterator[None]:
    """``source`` (text, done fraction or None) on the run's status line while the block runs."""
    global _line
    if _line is None:
        _line = _StatusLine()
    line = _line
    line.push(source)
    try:
        yield
    finally:
        line.pop()
        if not line.sources:
            _line = None


def _live_allowed(quiet: bool) -> bool:
    # DESIGN §5: progress only when stderr is a terminal, and nothing under -q.
    return not quiet and not current().quiet and sys.stderr.isatty()


def _clock(seconds: float) -> str:
    """0:09, 12:34, 1:02:03."""
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """A live counter on stderr, only when stderr is a terminal (the summary line uses ``elapsed``/``rate``).

    With ``total`` (items expected): "1,234/5,000 texts · 410 texts/s · ETA 0:09". With ``fraction``
    (a callable given the count done, returning the share of the input that makes, 0..1, or None while
    unknown): "24% · 1,234 texts · 410 texts/s · ETA 0:09". With neither: "1,234 texts · 410 texts/s ·
    0:03" (elapsed). Both may also be set once the bar runs (``bar.total = n``), e.g. when a header says
    how many rows follow.
    """

    SAMPLE_EVERY = 0.1  # seconds between calls of ``fraction``: it may cost a syscall (a file's position)

    def __init__(
        self,
        label: str,
        unit: str,
        enabled: bool,
        *,
        total: int | None = None,
        fraction: Callable[[int], float | None] | None = None,
    ) -> None:
        self.label, self.unit = label, unit
        self.total, self.fraction = total, fraction
        self.count = 0
        self.start = time.perf_counter()
        self.enabled = enabled
        self._done: float | None = None  # the latest sample of ``fraction``
        self._sampled = float("-inf")
        self._showing = _showing(self.line) if enabled else None

    def advance(self, n: int) -> None:
        self.count += n
        if self.fraction is not None and self.enabled:
            now = time.perf_counter()
            if now - self._sampled >= self.SAMPLE_EVERY:
                self._sampled = now
                self._sample()

    def _sample(self) -> None:
        try:
            done = self.fraction(self.count)
        except Exception:  # a display must never fail the run: show the count alone from now on
            self.fraction, done = None, None
        self._done = None if done is None else min(max(float(done), 0.0), 1.0)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def rate(self) -> float:
        return self.count / max(self.elapsed(), 1e-9)

    def line(self) -> tuple[str, float | None]:
        """The live text and the done fraction for the bar (None: unknown); called by rich's refresh thread."""
        count, elapsed, total, unit = self.count, self.elapsed(), self.total, self.unit
        rate = count / max(elapsed, 1e-9)
        parts: list[str] = []
        if total is not None:
            done = min(count / total, 1.0) if total > 0 else 1.0
            parts.append(f"{count:,}/{total:,} {unit}")
            left = max(total - count, 0) / rate if rate > 0 else None
        elif self._done is not None:
            done = self._done
            parts += [f"{int(done * 100)}%", f"{count:,} {unit}"]  # floor: 100% only when it is
            left = elapsed * (1 - done) / done if done > 0 else None
        else:
            done, left = None, None
            parts.append(f"{count:,} {unit}")
        parts.append(f"{rate:,.0f} {unit}/s")
        if done is None:
            parts.append(_clock(elapsed))
        else:
            parts.append(f"ETA {_clock(left)}" if left is not None else "ETA -:--")
        return f"{self.label} " + " · ".join(parts), done

    def __enter__(self) -> Progress:
        if self._showing is not None:
            self._showing.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._showing is not None:
            if self.fraction is not None:
                self._sample()  # the last redraw shows where the input really ended
            self._showing.__exit__(None, None, None)


@contextmanager
def progress(
    label: str,
    unit: str,
    quiet: bool,
    *,
    total: int | None = None,
    fraction: Callable[[int], float | None] | None = None,
) -> Iterator[Progress]:
    """A live counter of ``unit`` (see ``Progress``) on a terminal; off one, or under -q, only the count."""
    with Progress(label, unit, _live_allowed(quiet), total=total, fraction=fraction) as p:
        yield p


class _Phase:
    """The latest phase the core reported, and how long the run has been at it."""

    def __init__(self) -> None:
        self.text = ""
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        self.text = message  # only a store: rich's refresh thread draws it

    def line(self) -> tuple[str, float | None]:
        return f"{self.text} {_clock(time.perf_counter() - self.start)}".lstrip(), None


@contextmanager
def phases(quiet: bool) -> Iterator[None]:
    """The core's phase reports (``Env.phase``) as one line on stderr, each replacing the last, gone at the end.

    Only on a terminal and without -q: otherwise no one listens and the core does not even format them.
    """
    if not _live_allowed(quiet):
        yield
        return
    env, phase = current(), _Phase()
    previous, env.on_phase = env.on_phase, phase
    try:
        with _showing(phase.line):
            yield
    finally:
        env.on_phase = previous


def write_output(output: str | None, data: bytes) -> None:
    """``data`` on stdout, or in the file ``output`` (atomically), whole and checked."""
    from embcli.io.streams import output_stream

    with output_stream(output) as out:
        out.write(data)


def emit_report(report: dict, fmt: str | None, output: str | None, draw: Callable[..., None], width: int) -> None:
    """A command's report: JSON, or ``draw(report, console)`` as a table (``fmt`` "table", or no
    format on a terminal); into a file, the table is plain text ``width`` columns wide."""
    if fmt == "table" or (fmt is None and not output and sys.stdout.isatty()):
        import io

        from rich.console import Console

        if not output:
            draw(report, Console())
            return
        buf = io.StringIO()
        draw(report, Console(file=buf, width=width, no_color=True, highlight=False))
        write_output(output, buf.getvalue().encode())
    else:
        import orjson

        write_output(output, orjson.dumps(report) + b"\n")
