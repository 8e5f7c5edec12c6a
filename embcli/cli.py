"""The embcli entry point: the Typer app, global options, errors -> exit codes (DESIGN §5)."""

from __future__ import annotations

import io
import logging
import os
import signal
import sys
import traceback
import warnings
from typing import Annotated

import typer
import typer.completion

from embcli.commands import (
    _ui,
    anomalies,
    cache,
    classify,
    cluster,
    completions,
    diff,
    embed,
    evaluate,
    index,
    models,
    quantize,
    search,
)
from embcli.env import Env, current, using
from embcli.errors import (
    DIFF_COMMAND,
    EmbcliError,
    ExitCode,
    UsageError,
    diff_exit_code,
    printable,
    undecodable_argument,
)
from embcli.io.files import STDOUT, CheckedFile, StdoutClosed
from embcli.version import __version__

app = typer.Typer(
    name="embcli",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
# add_completion=False (no --install-completion noise) also skips registering the shell
# classes that `_EMBCLI_COMPLETE=complete_bash embcli` (completions/) needs.
typer.completion.completion_init()


def _version(value: bool) -> None:
    if value:
        typer.echo(f"embcli {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors (or set EMBCLI_DEBUG=1).")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Text embeddings in Unix pipelines: small commands over JSONL and NPY streams.

    Data goes to stdout, messages to stderr (-q: errors only, one line each).
    Exit codes: 0 ok, 1 failure (e.g. a write error), 2 usage error, 3 bad
    input data, 4 incompatible or corrupt index/model, 130 interrupted.
    diff exits 0 same, 1 different, and 2 or more on any error.
    """
    env = current()
    env.debug = env.debug or debug


app.command("embed")(embed.embed)
app.command("index", cls=index.IndexCommand)(index.index)
app.command("search")(search.search)
app.command("quantize")(quantize.quantize)
app.command("diff")(diff.diff)
app.command("cluster")(cluster.cluster)
app.command("classify")(classify.classify)
app.command("detect-anomalies")(anomalies.detect_anomalies)
app.command("eval")(evaluate.evaluate)
app.add_typer(models.app, name="models")
app.add_typer(cache.app, name="cache")
app.command("completions")(completions.completions)


def _error(message: str, hint: str | None = None) -> None:
    # One write, so a library's line from another thread cannot land inside ours;
    # printable() keeps a path with a newline (or stray bytes) from splitting the line.
    text = f"embcli: error: {printable(message)}\n"
    if hint:
        text += f"hint: {printable(hint)}\n"
    sys.stderr.write(text)
    sys.stderr.flush()


def _subcommand(args: list[str]) -> str | None:
    """The command being run: the first word after the global options (which take no values)."""
    return next((a for a in args if not a.startswith("-")), None)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; every failure becomes one stderr line."""
    args = sys.argv[1:] if argv is None else list(argv)
    # Library chatter (Python warnings, loggers without a handler) becomes one
    # 'embcli: warning:' line, and nothing under -q.
    warnings.showwarning = _ui.show_warning
    logging.lastResort = _ui.ChatterHandler()
    # This run's quiet/debug/notices: set by the options, read by the core, and by _report.
    with using(Env()):
        try:
            if bad := undecodable_argument(args):
                raise UsageError(f"argument is not valid UTF-8, {bad}", hint="pass paths and values as UTF-8")
            if bad := undecodable_argument([f"{k}={v}" for k, v in os.environ.items() if k.startswith("EMBCLI_")]):
                raise UsageError(f"environment variable is not valid UTF-8, {bad}")
            if not sys.stderr.isatty():  # DESIGN §5: progress bars only on a terminal (the hub's too)
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            rv = typer.main.get_command(app).main(args=args, prog_name="embcli", standalone_mode=False)
            return rv if isinstance(rv, int) else ExitCode.OK
        except (Exception, KeyboardInterrupt) as e:
            code = _report(e)
            # diff follows diff(1): its 1 means "different", so no error may exit 1 (DESIGN §5).
            return diff_exit_code(code) if _subcommand(args) == DIFF_COMMAND else code


def _report(e: BaseException) -> int:
    """Say what went wrong in one line and return the exit code for it (DESIGN §5)."""
    try:  # recent typer vendors click; older ones use the click package
        from typer._click import exceptions as click
    except ImportError:  # pragma: no cover
        from click import exceptions as click

    if isinstance(e, click.UsageError):
        if type(e).__name__ == "NoArgsIsHelpError":
            return ExitCode.USAGE  # the help text was shown
        path = e.ctx.command_path if e.ctx else "embcli"
        _error(e.format_message().replace("\n", " ").replace("Value error, ", ""), hint=f"see '{path} --help'")
        return ExitCode.USAGE
    if isinstance(e, click.ClickException):
        _error(e.format_message())
        return e.exit_code
    if isinstance(e, (typer.Abort, KeyboardInterrupt)):
        return ExitCode.INTERRUPTED
    if isinstance(e, StdoutClosed):
        return STDOUT_CLOSED
    if current().debug:
        traceback.print_exception(e)
    if isinstance(e, EmbcliError):
        _error(e.message, e.hint)
        return e.exit_code
    first = next(iter(str(e).splitlines()), "")  # library messages run to paragraphs; --debug has it all
    _error(f"internal error: {type(e).__name__}: {first}", hint="run with --debug for the traceback")
    return ExitCode.FAILURE


# The exit status of a run whose stdout reader left; main() ends it by SIGPIPE, as before.
STDOUT_CLOSED = 128 + 13


def main() -> None:
    # A closed pipe is EPIPE, not a silent death: an -o FIFO whose reader left is an
    # error naming it, and on stdout (`embcli embed | head -1`) we still end quietly.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    _checked_stdout()
    code = _flush_stdout(run(), is_diff=_subcommand(sys.argv[1:]) == DIFF_COMMAND)
    # Leave without interpreter finalization: a reader thread may still be blocked
    # on stdin (after Ctrl-C or an early error), and finalizing would abort on its lock.
    try:
        sys.stderr.flush()
    finally:
        if code == STDOUT_CLOSED and hasattr(signal, "SIGPIPE"):
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGPIPE)
        os._exit(code)


def _checked_stdout() -> None:
    """Text on stdout (help, tables, echo) through a CheckedFile: every write checked, errors named.

    Under PYTHONUNBUFFERED, sys.stdout writes straight to the raw file, and nobody
    checks a short write there: a full disk would cut the output and still exit 0.
    """
    old = sys.stdout
    try:
        fd = old.fileno()
    except (AttributeError, ValueError, OSError):  # no stdout at all (`>&-`): os.write says so later
        return
    unbuffered = isinstance(getattr(old, "buffer", None), io.RawIOBase)
    sys.stdout = io.TextIOWrapper(
        CheckedFile(io.FileIO(fd, "w", closefd=False), STDOUT),
        encoding=old.encoding,
        errors=old.errors,
        line_buffering=old.line_buffering or unbuffered,
    )


def _flush_stdout(code: int, is_diff: bool = False) -> int:
    """The last of stdout goes out, or the run fails (exit 1; for diff 2, never "different") saying why."""
    if getattr(getattr(sys.stdout, "buffer", None), "failed", None):
        return code  # a write already failed and said so; what is left can't go out either
    try:
        sys.stdout.flush()
    except StdoutClosed:
        return STDOUT_CLOSED
    except (EmbcliError, OSError, ValueError) as e:  # OSError, ValueError: a stdout we did not wrap
        _error(e.message if isinstance(e, EmbcliError) else f"{e}, writing {STDOUT}")
        failed = e.exit_code if isinstance(e, EmbcliError) else ExitCode.FAILURE
        return diff_exit_code(failed) if is_diff else (code or failed)
    return code
