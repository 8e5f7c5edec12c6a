"""The environment the core reports through: output streams, quiet, debug and notices.

One ``Env`` per run replaces module globals and monkeypatching: the CLI makes one
from its options (``-q``, ``--debug``) and runs the command inside ``using(env)``;
an API caller gets a default that says notices on stderr, or passes its own.
The core only calls ``current().notice(...)`` and ``current().phase(...)``; it never prints by itself.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TextIO, TypeVar

T = TypeVar("T")


@dataclass
class Env:
    """Where messages go and how loud a run is."""

    quiet: bool = False
    debug: bool = field(default_factory=lambda: bool(os.environ.get("EMBCLI_DEBUG")))
    stderr: TextIO | None = None  # None: sys.stderr at the time of writing (pytest swaps it)
    # Another sink for notices (a notebook's logger, a Ray actor's log); replaces stderr when set.
    on_notice: Callable[[str], None] | None = None
    said: list[str] = field(default_factory=list)  # every notice of this run, shown or not
    # Where the core's phase reports go ("fitting k-means k=20 (seed 0)…"): the CLI's status line on a
    # terminal, or an API caller's callback. None (the default): phases are not even formatted.
    on_phase: Callable[[str], None] | None = None

    def notice(self, message: str) -> None:
        """A one-time remark from the core (a graph being built, a slower fallback): not data, not an error."""
        self.said.append(message)
        if self.quiet:
            return
        if self.on_notice is not None:
            self.on_notice(message)
        else:
            print(f"embcli: {message}", file=self.stderr or sys.stderr, flush=True)

    @property
    def phases_wanted(self) -> bool:
        """Whether anyone shows phase reports: a core loop checks this before it formats one per step."""
        return self.on_phase is not None and not self.quiet

    def phase(self, message: str) -> None:
        """What a long step is doing now ("building kNN graph…"), replacing the previous phase.

        Transient, unlike a notice: not kept in ``said``, never printed by the core itself.
        """
        if self.phases_wanted:
            self.on_phase(message)

    def counted(self, items: Iterable[T], label: str, unit: str, every: int = 1024, start: int = 0) -> Iterator[T]:
        """``items`` unchanged, reporting the phase "<label>… N <unit>" every ``every`` items and at the end.

        ``start``: items counted before these (N goes on from there).
        """
        if not self.phases_wanted:  # nobody listens: no per-item work at all
            yield from items
            return
        n = start
        self.phase(f"{label}…" if not n else f"{label}… {n:,} {unit}")
        for item in items:
            yield item
            n += 1
            if n % every == 0:
                self.phase(f"{label}… {n:,} {unit}")
        self.phase(f"{label}… {n:,} {unit}")


_current: ContextVar[Env] = ContextVar("embcli_env")


def current() -> Env:
    """The environment of the running command or API call (a default one outside any)."""
    try:
        return _current.get()
    except LookupError:
        env = Env()
        _current.set(env)
        return env


@contextmanager
def using(env: Env) -> Iterator[Env]:
    """Run a block with ``env`` as the current environment."""
    token = _current.set(env)
    try:
        yield env
    finally:
        _current.reset(token)
