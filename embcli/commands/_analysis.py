"""What cluster, classify and detect-anomalies share: reading a whole embedded input,
adding result fields without clobbering, and --eval reports."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from embcli.commands import _options as o

EvalField = Annotated[
    Optional[str],
    typer.Option(
        "--eval",
        metavar="FIELD",
        help="The input carries gold labels in FIELD: print the standard metrics on stderr.",
        show_default=False,
        rich_help_panel=o.IO,
    ),
]
EvalOut = Annotated[
    Optional[str],
    typer.Option(
        "--eval-out",
        metavar="FILE",
        help="Also write the --eval metrics as JSON.",
        show_default=False,
        rich_help_panel=o.IO,
    ),
]


def read_all(path: str | None, vector_field: str, bad) -> tuple[list[dict], np.ndarray, str]:  # noqa: F821
    """Every record (NPY rows become {"row": i}) and the stacked vectors; checks widths."""
    import numpy as np

    from embcli.errors import InputError
    from embcli.io.streams import Source, iter_embedded

    with Source(path) as src:
        pairs = list(iter_embedded(src, vector_field, bad))
        name = src.name
    records = [rec.fields() for rec, _ in pairs]
    if not pairs:
        return records, np.zeros((0, 0), np.float32), name
    widths = {len(v) for _, v in pairs}
    if len(widths) > 1:
        raise InputError(f"vectors of different widths {sorted(widths)}, {name}")
    return records, np.vstack([v for _, v in pairs]).astype(np.float32), name


def check_free(records: list[dict], fields: list[str], overwrite: bool, rename: str = "--output-field") -> None:
    """A result field the records already have is an error, unless --overwrite.

    ``rename``: the command's options that name its result fields, for the hint.
    """
    from embcli.errors import InputError

    if overwrite:
        return
    for i, rec in enumerate(records):
        for f in fields:
            if f in rec:
                raise InputError(
                    f"record {i + 1} already has a {f!r} field",
                    hint=f"name the result field with {rename}, or pass --overwrite",
                )


def write_records(records: list[dict], output: str | None) -> None:
    from embcli.io.streams import JsonlWriter, output_stream

    with output_stream(output) as out:
        writer = JsonlWriter(out)
        for start in range(0, len(records), 1024):
            writer.write_many(records[start : start + 1024])
        writer.flush()


def report_eval(metrics: dict, eval_out: str | None, quiet: bool) -> None:
    """Metrics on stderr (a line per figure, tables as they are) and as JSON on request."""
    import orjson

    if not quiet:
        for key, value in metrics.items():
            if isinstance(value, float):
                print(f"embcli: eval {key}: {value:.4f}", file=sys.stderr)
            elif isinstance(value, str):
                print(f"embcli: eval {key}:\n{value}", file=sys.stderr)
            else:
                print(f"embcli: eval {key}: {value}", file=sys.stderr)
    if eval_out:
        from embcli.io.files import atomic_file

        with atomic_file(eval_out) as f:
            f.write(orjson.dumps(metrics, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))


def gold_labels(records: list[dict], field: str) -> list:
    from embcli.errors import InputError

    missing = sum(field not in r for r in records)
    if missing:
        raise InputError(f"--eval {field}: {missing} records have no {field!r} field")
    return [r[field] for r in records]
