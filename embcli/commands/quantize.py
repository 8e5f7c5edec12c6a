"""embcli quantize: compact vectors (f16, int8, uint8, multi-bit binary), and a report to choose one."""

from __future__ import annotations

from enum import Enum
from typing import Optional

import typer

from embcli.commands import _options as o
from embcli.commands._ui import progress, say, warn

QUANT = "Quantization"


class Scheme(str, Enum):
    f16 = "f16"
    int8 = "int8"
    uint8 = "uint8"
    binary = "binary"
    ubinary = "ubinary"


To = o.option(Optional[Scheme], "--to", help="Target scheme.", panel=QUANT, show_default=False)
Bits = o.option(
    int, "--bits", min=1, max=4, metavar="B", help="Binary: bit planes per dimension (residual signs).", panel=QUANT
)
Dims = o.option(
    Optional[int],
    "--dims",
    min=1,
    metavar="N",
    show_default=False,
    help="Matryoshka: keep the first N dimensions and renormalize, then quantize.",
    panel=QUANT,
)
Calibration = o.option(
    Optional[str],
    "--calibration",
    metavar="FILE",
    help="Fit ranges/scales on these vectors (JSONL or NPY).",
    panel=QUANT,
    show_default=False,
)
CalibrationRows = o.option(
    int,
    "--calibration-rows",
    min=1,
    metavar="N",
    help="Without --calibration or --ranges: fit on the first N rows of the input.",
    panel=QUANT,
)
Ranges = o.option(
    Optional[str],
    "--ranges",
    metavar="FILE",
    help="Reuse ranges/scales saved by --save-ranges (same codes as the corpus run).",
    panel=QUANT,
    show_default=False,
)
SaveRanges = o.option(
    Optional[str],
    "--save-ranges",
    metavar="FILE",
    help="Write the fitted ranges/scales, to code queries the same way later.",
    panel=QUANT,
    show_default=False,
)
Report = o.option(
    bool,
    "--report",
    help="Instead of coding: measure bytes per vector and recall@k of every scheme on this input.",
    panel=QUANT,
)
K = o.option(int, "-k", min=1, metavar="N", help="--report: recall@k.", panel=QUANT)
Queries = o.option(
    int, "--queries", min=1, metavar="N", help="--report: how many input vectors serve as queries.", panel=QUANT
)
Seed = o.option(int, "--seed", help="--report: which vectors serve as queries.", panel=QUANT)
QuantField = o.option(
    str,
    "--quant-field",
    metavar="NAME",
    help="Field that records scheme, dims, bits and ranges for later stages; '' leaves it out.",
    panel=o.IO,
)


def quantize(
    input: o.InputArg = None,
    output: o.Output = None,
    fmt: o.FormatOpt = None,
    compress: o.CompressOpt = None,
    input_format: o.InputFormatOpt = None,
    to: To = None,
    bits: Bits = 1,
    dims: Dims = None,
    calibration: Calibration = None,
    calibration_rows: CalibrationRows = 10_000,
    ranges: Ranges = None,
    save_ranges: SaveRanges = None,
    report: Report = False,
    k: K = 10,
    queries: Queries = 500,
    seed: Seed = 0,
    vector_field: o.VectorField = "embedding",
    model_field: o.ModelField = "embedding_model",
    quant_field: QuantField = "quantization",
    on_error: o.OnErrorOpt = o.OnError.fail,
    quiet: o.Quiet = False,
) -> None:
    """Quantize float vectors (records with a vector, or NPY) into compact codes, streaming.

    int8/uint8 map each dimension's range onto 256 levels; binary keeps signs,
    and with --bits B also the signs of B-1 residuals (x ≈ Σ s_p·b_p). Ranges and
    scales are fitted on --calibration vectors or the first rows of the input;
    save them with --save-ranges and reuse them with --ranges so that a query
    coded alone gets the same code as inside the corpus. JSONL records keep every
    field; the vector becomes its codes and a quantization field says how.
    --report reads the whole input and prints a table instead.
    """
    from embcli.analysis.quantize import CodeStream, QuantizeOptions, Quantizer
    from embcli.io.inputs import Inputs, ReadOptions
    from embcli.io.outputs import open_output, output_spec, record_writer, vector_writer
    from embcli.io.streams import BadRecords

    bad = BadRecords(skip=on_error is o.OnError.skip)
    inputs = Inputs(input, ReadOptions(o.value(input_format)))
    if report:
        _report(inputs, vector_field, bad, dims, k, queries, seed, quiet)
        return
    spec = output_spec(output, o.value(fmt), o.value(compress))
    options = QuantizeOptions(
        to.value if to else None,
        bits,
        dims,
        calibration,
        calibration_rows,
        ranges,
        vector_field,
        model_field,
        quant_field,
    )

    def ready(q: Quantizer) -> None:
        if save_ranges:
            from embcli.io.files import atomic_file

            with atomic_file(save_ranges) as f:
                f.write(q.to_json())
        say(f"quantizing to {q.scheme} ({q.bytes_per_vector} bytes per vector)", quiet)

    stream = CodeStream(options, on_ready=ready)
    count = 0
    with open_output(spec) as out, progress("quantizing", "vectors", quiet, fraction=inputs.share) as bar:
        npy_out = vector_writer(out, spec) if spec.format == "npy" else None
        writer = None if npy_out else record_writer(out, spec, vector_field=vector_field, provenance_field=model_field)
        for records, codes in stream.chunks(inputs.embedded(vector_field, bad), records=writer is not None):
            if npy_out is not None:
                npy_out.write(codes)
                npy_out.flush()
            else:
                writer.write_many(records)
                writer.flush()
            count += len(codes)
            bar.advance(len(codes))
        (npy_out or writer).close()
        elapsed = bar.elapsed()
    if summary := bad.summary():
        warn(summary, quiet)
    say(f"quantized {count:,} vectors in {elapsed:.1f}s", quiet)


def _report(inputs, vector_field, bad, dims, k, n_queries, seed, quiet) -> None:
    """Recall@k of every scheme against float exact search, on the input's own vectors."""
    import sys

    import numpy as np
    import orjson

    from embcli.analysis.quantize import report_table

    rows = [v for _, v in inputs.embedded(vector_field, bad)]
    x = np.vstack(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32)
    table = report_table(x, k=k, n_queries=n_queries, seed=seed, dims=dims)
    for row in table:
        typer.echo(orjson.dumps(row).decode())
    if not quiet:
        print(
            f"embcli: {len(x):,} vectors of {x.shape[1]} dims; recall@{k} of {min(n_queries, len(x)):,} queries "
            "against float exact search (ties with the k-th exact score count as hits)",
            file=sys.stderr,
        )
        print(f"{'scheme':<28}{'bytes':>7}{'ratio':>8}{'recall@' + str(k):>11}", file=sys.stderr)
        for row in table:
            print(f"{row['scheme']:<28}{row['bytes']:>7}{row['ratio']:>7.1f}x{row['recall']:>11.3f}", file=sys.stderr)
