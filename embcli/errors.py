"""Errors that carry their exit code (DESIGN §5); raised by the core, mapped by the CLI."""

from __future__ import annotations

import os
from enum import IntEnum


class ExitCode(IntEnum):
    """Every exit status embcli uses (DESIGN §5); ``diff`` maps them with ``diff_exit_code``."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    BAD_INPUT = 3
    INCOMPATIBLE = 4
    INTERRUPTED = 130


class DiffExit(IntEnum):
    """``diff``'s own statuses, as diff(1) and cmp(1): a difference is not an error."""

    SAME = 0
    DIFFERENT = 1
    TROUBLE = 2  # the lowest error status: every failure of diff is 2 or more


def diff_exit_code(error: int) -> int:
    """The status ``diff`` exits with for an error that other commands exit ``error`` with.

    Errors keep their usual codes (2 usage, 3 bad input, 4 incompatible, 130
    interrupted), all of which already read as "trouble" to diff(1)'s callers;
    only a runtime failure (1, e.g. a write error) would read as "different",
    so it becomes 2.
    """
    return DiffExit.TROUBLE if error < DiffExit.TROUBLE else error


DIFF_COMMAND = "diff"  # the one command whose exit 1 is an answer, not a failure

EXIT_STATUS = {
    ExitCode.OK: "Success.",
    ExitCode.FAILURE: "Runtime failure (a write that failed included).",
    ExitCode.USAGE: "Usage error: a bad command, option or argument.",
    ExitCode.BAD_INPUT: "Bad input data.",
    ExitCode.INCOMPATIBLE: "Incompatible or corrupt index or model.",
    ExitCode.INTERRUPTED: "Interrupted.",
}


def exit_statuses(command: str) -> dict[int, str]:
    """What each exit status of ``command`` (a subcommand's name) means, for --help and man pages."""
    if command != DIFF_COMMAND:
        return {int(code): text for code, text in EXIT_STATUS.items()}
    table = {int(DiffExit.SAME): ["A and B are alike."], int(DiffExit.DIFFERENT): ["A and B differ."]}
    for code, text in EXIT_STATUS.items():
        if code != ExitCode.OK:
            table.setdefault(diff_exit_code(code), []).append(text)
    return {code: " ".join(texts) for code, texts in sorted(table.items())}


class EmbcliError(Exception):
    """A failure we can explain in one line. ``exit_code`` follows DESIGN §5."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(EmbcliError):
    """Bad options or arguments."""

    exit_code = ExitCode.USAGE


class InputError(EmbcliError):
    """Bad input data: the message names the source and line."""

    exit_code = ExitCode.BAD_INPUT


class IncompatibleError(EmbcliError):
    """A model or index that is missing, corrupt or does not fit the request."""

    exit_code = ExitCode.INCOMPATIBLE


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: object) -> str:
    """``text`` (a path, name or message) safe inside one line of stderr.

    Control characters are escaped the way ``repr`` writes them, and bytes that
    are not UTF-8 (which Python keeps as lone surrogates in paths and argv) as
    ``\\xNN``, so a file name with a newline cannot split or forge an error line.
    """
    s = os.fsdecode(text) if isinstance(text, bytes) else str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else _escape(c) for c in s)


def _escape(c: str) -> str:
    code = ord(c)
    if c in _ESCAPES:
        return _ESCAPES[c]
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the undecodable byte itself
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def undecodable_argument(argv: list[str]) -> str | None:
    """The first argument holding bytes that are not UTF-8, shown escaped; None when all decode."""
    for arg in argv:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            return printable(arg)
    return None
