"""The embcli entry point: the Typer app, global options, errors -> exit codes (DESIGN §5)."""

from __future__ import annotations

import io
import os
import signal
import sys
import traceback
from typing import Annotated

import typer
import typer.completion

from embcli import __version__
from embcli.commands import anomalies, cache, classify, cluster, diff, embed, index, models, quantize, search
from embcli.core.fsutil import STDOUT, CheckedFile, StdoutClosed
from embcli.errors import EmbcliError

app = typer.Typer(
    name="embcli",
    help="Text embeddings in Unix pipelines: small commands over JSONL and NPY streams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)
# add_completion=False (no --install-completion noise) also skips registering the shell
# classes that `_EMBCLI_COMPLETE=complete_bash embcli` (completions/) needs.
typer.completion.completion_init()
_debug = {"on": bool(os.environ.get("EMBCLI_DEBUG"))}


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

    Data goes to stdout, messages to stderr. Exit codes: 0 ok, 1 failure,
    2 usage error, 3 bad input data, 4 incompatible or corrupt index/model,
    130 interrupted.
    """
    _debug["on"] = _debug["on"] or debug


app.command("embed")(embed.embed)
app.command("index")(index.index)
app.command("search")(search.search)
app.command("quantize")(quantize.quantize)
app.command("diff")(diff.diff)
app.command("cluster")(cluster.cluster)
app.command("classify")(classify.classify)
app.command("detect-anomalies")(anomalies.detect_anomalies)
app.add_typer(models.app, name="models")
app.add_typer(cache.app, name="cache")


def _error(message: str, hint: str | None = None) -> None:
    print(f"embcli: error: {message}", file=sys.stderr)
    if hint:
        print(f"hint: {hint}", file=sys.stderr)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return its exit code; every failure becomes one stderr line."""
    try:  # recent typer vendors click; older ones use the click package
        from typer._click import exceptions as click
    except ImportError:  # pragma: no cover
        from click import exceptions as click

    try:
        rv = typer.main.get_command(app).main(args=argv, prog_name="embcli", standalone_mode=False)
        return rv if isinstance(rv, int) else 0
    except click.UsageError as e:
        if type(e).__name__ == "NoArgsIsHelpError":
            return 2  # the help text was shown
        path = e.ctx.command_path if e.ctx else "embcli"
        _error(e.format_message().replace("\n", " ").replace("Value error, ", ""), hint=f"see '{path} --help'")
        return 2
    except click.ClickException as e:
        _error(e.format_message())
        return e.exit_code
    except typer.Abort:
        return 130
    except EmbcliError as e:
        if _debug["on"]:
            traceback.print_exc()
        _error(e.message, e.hint)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except StdoutClosed:
        return STDOUT_CLOSED
    except Exception as e:
        if _debug["on"]:
            traceback.print_exc()
        _error(f"internal error: {type(e).__name__}: {e}", hint="run with --debug for the traceback")
        return 1


# The exit status of a run whose stdout reader left; main() ends it by SIGPIPE, as before.
STDOUT_CLOSED = 128 + 13


def main() -> None:
    # A closed pipe is EPIPE, not a silent death: an -o FIFO whose reader left is an
    # error naming it, and on stdout (`embcli embed | head -1`) we still end quietly.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    _checked_stdout()
    code = _flush_stdout(run())
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


def _flush_stdout(code: int) -> int:
    """The last of stdout goes out, or the run fails (exit 1) saying why."""
    if getattr(getattr(sys.stdout, "buffer", None), "failed", None):
        return code  # a write already failed and said so; what is left can't go out either
    try:
        sys.stdout.flush()
    except StdoutClosed:
        return STDOUT_CLOSED
    except EmbcliError as e:
        _error(e.message)
        return code or e.exit_code
    except (OSError, ValueError) as e:  # a stdout we did not wrap
        _error(f"{e}, writing {STDOUT}")
        return code or 1
    return code
