"""Errors that carry their exit code (DESIGN §5); raised by the core, mapped by the CLI."""

from __future__ import annotations


class EmbcliError(Exception):
    """A failure we can explain in one line. ``exit_code`` follows DESIGN §5."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(EmbcliError):
    """Bad options or arguments."""

    exit_code = 2


class InputError(EmbcliError):
    """Bad input data: the message names the source and line."""

    exit_code = 3


class IncompatibleError(EmbcliError):
    """A model or index that is missing, corrupt or does not fit the request."""

    exit_code = 4
