"""Options shared by every command, so one flag means one thing everywhere (DESIGN §5)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Optional

import typer

from embcli import choices

IO = "Input and output"
MODEL = "Model"
SPEED = "Performance"
SCALE = "Scale out"


def choice(name: str, values: tuple[str, ...]) -> type[Enum]:
    """A Typer choice enum made from one of the core's choice sets (embcli/choices.py)."""
    return Enum(name, {v: v for v in values}, type=str)


OnError = choice("OnError", choices.ON_ERROR)
InputFormat = choice("InputFormat", choices.INPUT_FORMATS)
OutputFormat = choice("OutputFormat", choices.OUTPUT_FORMATS)
Compression = choice("Compression", choices.COMPRESSIONS)
ReportFormat = choice("ReportFormat", choices.REPORT_FORMATS)
Device = choice("Device", choices.DEVICES)
Pooling = choice("Pooling", choices.POOLINGS)
Engine = choice("Engine", ("local", "ray"))
AdapterKind = choice("AdapterKind", choices.ADAPTER_KINDS)


def value(choice: Enum | None) -> str | None:
    """An optional choice's string (None stays None), as the core takes it."""
    return None if choice is None else choice.value


def option(kind: Any, *flags: str, help: str, panel: str = IO, **settings: Any) -> Any:
    """A flag of type ``kind`` in a help panel: one line per option instead of an Annotated block."""
    return Annotated[kind, typer.Option(*flags, help=help, rich_help_panel=panel, **settings)]


def text_option(*flags: str, metavar: str, help: str, panel: str = IO) -> Any:
    """An optional text-valued flag with no default shown: the commonest option shape here."""
    return option(Optional[str], *flags, metavar=metavar, help=help, panel=panel, show_default=False)


InputArg = Annotated[
    Optional[list[str]],
    typer.Argument(
        help="Input files, globs (quoted: 'vec/*.parquet') or directories, read in order; '-' or none reads stdin.",
        show_default=False,
        metavar="INPUT",
    ),
]
Output = option(
    Optional[str], "-o", "--output", metavar="PATH", help="Write to this file (atomically) instead of stdout.", panel=IO
)
InputFormatOpt = option(
    Optional[InputFormat],
    "--input-format",
    show_default=False,
    help="jsonl: a JSON object per line; text: a text per line; csv/tsv: a header row, then a record per row; "
    "parquet, arrow. Default: found by content (NPY, Parquet, Arrow; gzip/bzip2/xz/zstd are undone first), "
    "else by suffix (.csv, .tsv, ...), else jsonl.",
    panel=IO,
)
InferTypesOpt = option(
    bool, "--infer-types", help="CSV/TSV: cells that are numbers become numbers (else every cell is text).", panel=IO
)
FormatOpt = option(
    Optional[OutputFormat],
    "--format",
    show_default=False,
    help="Output format. Default: from the -o suffix (.jsonl .npy .parquet .arrow .csv .tsv), else jsonl.",
    panel=IO,
)
RecordFormatOpt = option(
    Optional[OutputFormat],
    "--format",
    show_default=False,
    help="Output format (npy holds vectors only, so not here). Default: from the -o suffix "
    "(.jsonl .parquet .arrow .csv .tsv), else jsonl.",
    panel=IO,
)
CompressOpt = option(
    Optional[Compression],
    "--compress",
    show_default=False,
    help="Compress the output. Default: from the -o suffix (.gz .bz2 .xz .zst), else none.",
    panel=IO,
)
IdField = option(str, "--id-field", metavar="NAME", help="Field that holds each record's id.", panel=IO)
TextField = option(str, "--text-field", metavar="NAME", help="Field that holds the text.", panel=IO)
VectorField = option(str, "--vector-field", metavar="NAME", help="Field that holds the vector.", panel=IO)
OnErrorOpt = option(OnError, "--on-error", help="Bad records: fail on the first, or skip them and count.", panel=IO)


def _quiet(value: bool) -> bool:
    if value:  # the core's notices (the default graph's first build) and libraries' chatter are not errors
        from embcli.commands import _ui

        _ui.silence()
    return value


Quiet = option(bool, "-q", "--quiet", callback=_quiet, help="Print nothing on stderr but errors.", panel=IO)
ModelOpt = text_option(
    "-m",
    "--model",
    metavar="NAME",
    help="Built-in name, local model directory, or hub repo id. Default: $EMBCLI_MODEL, else all-MiniLM-L6-v2.",
    panel=MODEL,
)
DeviceOpt = option(
    Device, "--device", help="auto: CUDA when it really loads, else CPU. cuda: fail rather than use CPU.", panel=SPEED
)
Threads = option(
    Optional[int],
    "--threads",
    min=1,
    show_default=False,
    help="CPU threads for inference. Default: all cores.",
    panel=SPEED,
)
BatchSize = option(int, "--batch-size", min=1, metavar="N", help="Most texts in one inference batch.", panel=SPEED)
ModelField = option(
    str,
    "--model-field",
    metavar="NAME",
    help="Field that records the model and options that made the vector, so `index` and `search` "
    "can check and reproduce them; '' leaves it out.",
    panel=IO,
)
Overwrite = option(bool, "--overwrite", help="Replace result fields the records already have.", panel=IO)


AdapterFile = text_option(
    "--adapter",
    metavar="FILE",
    help="Query-drift adapter (from `diff --fit-adapter`): vectors of its new model mapped into its old model's space.",
    panel=MODEL,
)
