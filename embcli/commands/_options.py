"""Options shared by every command, so one flag means one thing everywhere (DESIGN §5)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

IO = "Input and output"
MODEL = "Model"
SPEED = "Performance"


class OnError(str, Enum):
    fail = "fail"
    skip = "skip"


class InputFormat(str, Enum):
    jsonl = "jsonl"
    text = "text"


class OutputFormat(str, Enum):
    jsonl = "jsonl"
    npy = "npy"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Pooling(str, Enum):
    mean = "mean"
    cls = "cls"
    max = "max"
    lasttoken = "lasttoken"
    mean_sqrt_len = "mean_sqrt_len"


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
    if value:  # the core's one-time notices (the default graph's first build) are not errors either
        from embcli.core import defaultgraph

        defaultgraph.notify = lambda message: None
    return value


def ensure_model(model: str | None, device: str = "cpu") -> None:
    """Build the built-in model's graph for the device(s) this run may use, before resolving the model.

    Resolution only reads the graph cache; this is the explicit build step, at first use.
    Other models are left alone: they are files that exist or not.
    """
    from embcli.core.models import is_builtin

    if not is_builtin(model):
        return
    from embcli.core.defaultgraph import ensure_default

    ensure_default("cpu")  # the spec resolves on CPU first; the encoder moves it to CUDA when that loads
    if device == "cuda" or (device == "auto" and _cuda_listed()):
        ensure_default("cuda")


def _cuda_listed() -> bool:
    import onnxruntime as ort

    return "CUDAExecutionProvider" in ort.get_available_providers()


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
