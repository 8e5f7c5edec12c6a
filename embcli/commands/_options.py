"""Options shared by every command, so one flag means one thing everywhere (DESIGN §5)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from embcli import choices

IO = "Input and output"
MODEL = "Model"
SPEED = "Performance"


def choice(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A Typer choice enum made from one of the core's choice sets (embcli/choices.py)."""
    return Enum(name, {v: v for v in values}, type=str)


OnError = choice("OnError", choices.ON_ERROR)
InputFormat = choice("InputFormat", choices.INPUT_FORMATS)
OutputFormat = choice("OutputFormat", choices.OUTPUT_FORMATS)
Device = choice("Device", choices.DEVICES)
Pooling = choice("Pooling", choices.POOLINGS)


InputArg = Annotated[
    Optional[str],
    typer.Argument(help="Input file; '-' or none reads stdin.", show_default=False, metavar="INPUT"),
]
Output = Annotated[
    Optional[str],
    typer.Option(
        "-o", "--output", metavar="PATH", help="Write to this file (atomically) instead of stdout.", rich_help_panel=IO
    ),
]
InputFormatOpt = Annotated[
    InputFormat,
    typer.Option(
        "--input-format", help="jsonl: one JSON object per line; text: one text per line.", rich_help_panel=IO
    ),
]
FormatOpt = Annotated[
    Optional[OutputFormat],
    typer.Option(
        "--format",
        help="Output format: jsonl records, or npy vectors. Default: npy when -o ends in .npy, else jsonl.",
        show_default=False,
        rich_help_panel=IO,
    ),
]
TextField = Annotated[
    str, typer.Option("--text-field", metavar="NAME", help="Field that holds the text.", rich_help_panel=IO)
]
VectorField = Annotated[
    str, typer.Option("--vector-field", metavar="NAME", help="Field that holds the vector.", rich_help_panel=IO)
]
OnErrorOpt = Annotated[
    OnError,
    typer.Option("--on-error", help="Bad records: fail on the first, or skip them and count.", rich_help_panel=IO),
]


def _quiet(value: bool) -> bool:
    if value:  # the core's notices (the default graph's first build) and libraries' chatter are not errors
        from embcli.commands import _ui

        _ui.silence()
    return value


Quiet = Annotated[
    bool,
    typer.Option("-q", "--quiet", help="Print nothing on stderr but errors.", rich_help_panel=IO, callback=_quiet),
]
ModelOpt = Annotated[
    Optional[str],
    typer.Option(
        "-m",
        "--model",
        metavar="NAME",
        help="Built-in name, local model directory, or hub repo id. Default: $EMBCLI_MODEL, else all-MiniLM-L6-v2.",
        show_default=False,
        rich_help_panel=MODEL,
    ),
]
DeviceOpt = Annotated[
    Device,
    typer.Option(
        "--device",
        help="auto: CUDA when it really loads, else CPU. cuda: fail rather than use CPU.",
        rich_help_panel=SPEED,
    ),
]
Threads = Annotated[
    Optional[int],
    typer.Option(
        "--threads",
        min=1,
        help="CPU threads for inference. Default: all cores.",
        show_default=False,
        rich_help_panel=SPEED,
    ),
]
BatchSize = Annotated[
    int,
    typer.Option("--batch-size", min=1, metavar="N", help="Most texts in one inference batch.", rich_help_panel=SPEED),
]
ModelField = Annotated[
    str,
    typer.Option(
        "--model-field",
        metavar="NAME",
        help="Field that records the model and options that made the vector, so `index` and `search` "
        "can check and reproduce them; '' leaves it out.",
        rich_help_panel=IO,
    ),
]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Replace result fields the records already have.", rich_help_panel=IO)
]


def optional(*flags: str, help: str, panel: str, metavar: str | None = None) -> typer.models.OptionInfo:
    """An option that is off unless given: no default shown."""
    return typer.Option(*flags, metavar=metavar, help=help, show_default=False, rich_help_panel=panel)
