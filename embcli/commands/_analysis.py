"""What cluster, classify and detect-anomalies share on the command line: --eval options and reports,
and writing records (reading them and checking result fields is embcli.analysis.records)."""

from __future__ import annotations

import sys

from embcli.commands import _options as o

EvalField = o.text_option(
    "--eval",
    metavar="FIELD",
    help="The input carries gold labels in FIELD: print the standard metrics on stderr.",
    panel=o.IO,
)
EvalOut = o.text_option("--eval-out", metavar="FILE", help="Also write the --eval metrics as JSON.", panel=o.IO)


def records_output(output: str | None, fmt, compress, vector_field: str, model_field: str = "embedding_model"):
    """The analysis commands' record output: -o, --format and --compress as every command reads them."""
    from embcli.io.outputs import RECORD_FORMATS, output_spec
    from embcli.io.outputs import records_output as opened

    spec = output_spec(output, o.value(fmt), o.value(compress), allowed=RECORD_FORMATS)
    return opened(spec, vector_field=vector_field, provenance_field=model_field or None)


def write_records(records: list[dict], output: str | None, fmt, compress, vector_field: str) -> None:
    with records_output(output, fmt, compress, vector_field) as writer:
        for start in range(0, len(records), 1024):
            writer.write_many(records[start : start + 1024])


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
