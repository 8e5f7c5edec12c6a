"""embcli quantize: compact vectors (f16, int8, uint8, multi-bit binary), and a report to choose one."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from embcli.commands import _options as o
from embcli.commands._ui import progress, say, warn

QUANT = "Quantization"
CHUNK = 4096


class Scheme(str, Enum):
    f16 = "f16"
    int8 = "int8"
    uint8 = "uint8"
    binary = "binary"
    ubinary = "ubinary"


def quantize(
    input: o.InputArg = None,
    output: o.Output = None,
    fmt: o.FormatOpt = None,
    to: Annotated[
        Optional[Scheme], typer.Option("--to", help="Target scheme.", show_default=False, rich_help_panel=QUANT)
    ] = None,
    bits: Annotated[
        int,
        typer.Option(
            "--bits",
            min=1,
            max=4,
            metavar="B",
            help="Binary: bit planes per dimension (residual signs).",
            rich_help_panel=QUANT,
        ),
    ] = 1,
    dims: Annotated[
        Optional[int],
        typer.Option(
            "--dims",
            min=1,
            metavar="N",
            help="Matryoshka: keep the first N dimensions and renormalize, then quantize.",
            show_default=False,
            rich_help_panel=QUANT,
        ),
    ] = None,
    calibration: Annotated[
        Optional[str],
        typer.Option(
            "--calibration",
            metavar="FILE",
            help="Fit ranges/scales on these vectors (JSONL or NPY).",
            show_default=False,
            rich_help_panel=QUANT,
        ),
    ] = None,
    calibration_rows: Annotated[
        int,
        typer.Option(
            "--calibration-rows",
            min=1,
            metavar="N",
            help="Without --calibration or --ranges: fit on the first N rows of the input.",
            rich_help_panel=QUANT,
        ),
    ] = 10_000,
    ranges: Annotated[
        Optional[str],
        typer.Option(
            "--ranges",
            metavar="FILE",
            help="Reuse ranges/scales saved by --save-ranges (same codes as the corpus run).",
            show_default=False,
            rich_help_panel=QUANT,
        ),
    ] = None,
    save_ranges: Annotated[
        Optional[str],
        typer.Option(
            "--save-ranges",
            metavar="FILE",
            help="Write the fitted ranges/scales, to code queries the same way later.",
            show_default=False,
            rich_help_panel=QUANT,
        ),
    ] = None,
    report: Annotated[
        bool,
        typer.Option(
            "--report",
            help="Instead of coding: measure bytes per vector and recall@k of every scheme on this input.",
            rich_help_panel=QUANT,
        ),
    ] = False,
    k: Annotated[int, typer.Option("-k", min=1, metavar="N", help="--report: recall@k.", rich_help_panel=QUANT)] = 10,
    queries: Annotated[
        int,
        typer.Option(
            "--queries",
            min=1,
            metavar="N",
            help="--report: how many input vectors serve as queries.",
            rich_help_panel=QUANT,
        ),
    ] = 500,
    seed: Annotated[
        int, typer.Option("--seed", help="--report: which vectors serve as queries.", rich_help_panel=QUANT)
    ] = 0,
    vector_field: o.VectorField = "embedding",
    model_field: o.ModelField = "embedding_model",
    quant_field: Annotated[
        str,
        typer.Option(
            "--quant-field",
            metavar="NAME",
            help="Field that records scheme, dims, bits and ranges for later stages; '' leaves it out.",
            rich_help_panel=o.IO,
        ),
    ] = "quantization",
    on_error: o.OnErrorOpt = o.OnError.fail,
    quiet: o.Quiet = False,
) -> None:
    """Quantize float vectors (JSONL or NPY) into compact codes, streaming.

    int8/uint8 map each dimension's range onto 256 levels; binary keeps signs,
    and with --bits B also the signs of B-1 residuals (x ≈ Σ s_p·b_p). Ranges and
    scales are fitted on --calibration vectors or the first rows of the input;
    save them with --save-ranges and reuse them with --ranges so that a query
    coded alone gets the same code as inside the corpus. JSONL records keep every
    field; the vector becomes its codes and a quantization field says how.
    --report reads the whole input and prints a table instead.
    """
    import numpy as np

    from embcli.analysis.quantize import Quantizer
    from embcli.errors import UsageError
    from embcli.io.streams import (
        BadRecords,
        JsonlWriter,
        NpyWriter,
        Source,
        iter_embedded,
        output_stream,
    )

    bad = BadRecords(skip=on_error is o.OnError.skip)
    if report:
        _report(input, vector_field, bad, dims, k, queries, seed, quiet)
        return
    if to is None and ranges is None:
        raise UsageError("give the target scheme with --to (f16, int8, uint8, binary, ubinary), or --ranges FILE")

    fixed: Quantizer | None = None
    if ranges:
        fixed = Quantizer.from_json(_read(ranges), ranges)
        if to is not None and (to.value, bits) != (fixed.scheme, fixed.bits):
            raise UsageError(
                f"--ranges holds {fixed.scheme} with {fixed.bits} bit(s), not --to {to.value} --bits {bits}"
            )

    def truncate(x: np.ndarray) -> np.ndarray:
        if dims is None:
            return x
        if dims > x.shape[1]:
            raise UsageError(f"--dims {dims} is more than the vectors' {x.shape[1]} dimensions")
        x = x[:, :dims]
        return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)

    def make(width: int, calib: np.ndarray | None) -> Quantizer:
        if fixed is not None:
            if fixed.dims != width:
                raise UsageError(f"--ranges is for {fixed.dims} dimensions, the vectors have {width}")
            return fixed
        q = Quantizer(to.value, width, bits)
        if q.needs_fit:
            if calibration:
                with Source(calibration) as csrc:
                    rows = [v for _, v in iter_embedded(csrc, vector_field, BadRecords())]
                calib = truncate(np.vstack(rows)) if rows else np.zeros((0, width), np.float32)
            q.fit(calib if calib is not None else np.zeros((0, width), np.float32))
        if save_ranges:
            from embcli.io.files import atomic_file

            with atomic_file(save_ranges) as f:
                f.write(q.to_json())
        return q

    out_format = fmt or (o.OutputFormat.npy if output and output.endswith(".npy") else o.OutputFormat.jsonl)
    quantizer: Quantizer | None = None
    count = 0
    with Source(input) as src, output_stream(output) as out, progress("quantizing", "vectors", quiet) as bar:
        npy_out = NpyWriter(out) if out_format is o.OutputFormat.npy else None
        jsonl = JsonlWriter(out)
        pending: list = []

        def flush() -> None:
            nonlocal quantizer, count
            if not pending:
                return
            x = truncate(np.vstack([v for _, v in pending]))
            if quantizer is None:  # the first rows calibrate when nothing else was given
                quantizer = make(x.shape[1], x)
                say(f"quantizing to {quantizer.scheme} ({quantizer.bytes_per_vector} bytes per vector)", quiet)
            codes = quantizer.encode(x)
            if npy_out is not None:
                npy_out.write(codes)
                npy_out.flush()
            else:
                meta = quantizer.describe()
                lines = []
                for (rec, _), code in zip(pending, codes, strict=True):
                    data = dict(rec.data)  # an NPY row has none
                    data[vector_field] = code
                    if quant_field:
                        data[quant_field] = meta
                    if dims and model_field and isinstance(data.get(model_field), dict):
                        data[model_field] = {**data[model_field], "dims": dims}  # as `embed --dims` records it
                    lines.append(data)
                jsonl.write_many(lines)
                jsonl.flush()
            count += len(pending)
            bar.advance(len(pending))
            pending.clear()

        needs_calibration = (
            fixed is None and not calibration and to is not None and Quantizer(to.value, 1, bits).needs_fit
        )
        first_batch = calibration_rows if needs_calibration else CHUNK
        for item in iter_embedded(src, vector_field, bad):
            pending.append(item)
            if len(pending) >= (first_batch if quantizer is None else CHUNK):
                flush()
        flush()
        if npy_out is not None:
            npy_out.close()
        elapsed = bar.elapsed()
    if summary := bad.summary():
        warn(summary, quiet)
    say(f"quantized {count:,} vectors in {elapsed:.1f}s", quiet)


def _read(path: str) -> bytes:
    from embcli.errors import UsageError

    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"cannot read ranges: {e.strerror}, {path}") from None


def _report(input, vector_field, bad, dims, k, n_queries, seed, quiet) -> None:
    """Recall@k of every scheme against float exact search, on the input's own vectors."""
    import numpy as np
    import orjson

    from embcli.analysis.quantize import report_rows
    from embcli.errors import InputError
    from embcli.io.streams import Source, iter_embedded

    with Source(input) as src:
        rows = [v for _, v in iter_embedded(src, vector_field, bad)]
    if len(rows) < 2 * k:
        raise InputError(f"--report needs at least {2 * k} vectors, got {len(rows)}")
    x = np.vstack(rows).astype(np.float32)
    table = report_rows(x, k=k, n_queries=n_queries, seed=seed, dims=[dims] if dims else [256, 128])
    for row in table:
        typer.echo(orjson.dumps(row).decode())
    if not quiet:
        import sys

        print(
            f"embcli: {len(x):,} vectors of {x.shape[1]} dims; recall@{k} of {min(n_queries, len(x)):,} queries "
            "against float exact search (ties with the k-th exact score count as hits)",
            file=sys.stderr,
        )
        print(f"{'scheme':<28}{'bytes':>7}{'ratio':>8}{'recall@' + str(k):>11}", file=sys.stderr)
        for row in table:
            print(f"{row['scheme']:<28}{row['bytes']:>7}{row['ratio']:>7.1f}x{row['recall']:>11.3f}", file=sys.stderr)
