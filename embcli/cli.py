"""The embcli entry point: the Typer app, global options, errors -> exit codes (DESIGN §5)."""

from __future__ import annotations

import os
import signal
import sys
import traceback
from typing import Annotated

import typer
import typer.completion

from embcli import __version__
from embcli.commands import anomalies, cache, classify, cluster, diff, embed, index, models, quantize, search
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
app.command("index", cls=index.IndexCommand)(index.index)
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
    except Exception as e:
        if _debug["on"]:
            traceback.print_exc()
        _error(f"internal error: {type(e).__name__}: {e}", hint="run with --debug for the traceback")
        return 1


def main() -> None:
    # Die quietly on a closed pipe (`embcli embed | head -1`), like cat and jq do.
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    code = run()
    # Leave without interpreter finalization: a reader thread may still be blocked
    # on stdin (after Ctrl-C or an early error), and finalizing would abort on its lock.
    try:
        sys.stdout.flush()
    finally:
        sys.stderr.flush()
        os._exit(code)
