"""embcli diff: is B like A? Two corpora in one space, or one corpus in two models' spaces."""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from embcli.commands import _options as o
from embcli.commands import _terms as terms_cli
from embcli.commands._ui import emit_report, phases, say, warn, write_output

if TYPE_CHECKING:
    from rich.console import Console

TESTS = "Tests"


class Kernel(str, Enum):
    rbf = "rbf"
    cos = "cos"


AOpt = Annotated[
    str,
    typer.Argument(
        metavar="A",
        help="The reference: embedded records (any input format) or NPY; a quoted glob or a directory is one "
        "side read in order; '-' for stdin.",
    ),
]
BOpt = Annotated[str, typer.Argument(metavar="B", help="The one compared with A.")]
ByOpt = o.option(
    Optional[str],
    "--by",
    metavar="FIELD",
    help="Aligned mode: A and B hold the same items (matched by FIELD, e.g. id) embedded by two models.",
    panel=TESTS,
    show_default=False,
)
AlphaOpt = o.option(
    float,
    "--alpha",
    min=0.0,
    max=1.0,
    help="Significance level for the verdict (Holm-corrected over the tests).",
    panel=TESTS,
)
KernelOpt = o.option(Kernel, "--kernel", help="MMD kernel: RBF with the median heuristic, or cosine.", panel=TESTS)
PermutationsOpt = o.option(
    int, "--permutations", min=19, metavar="N", help="Permutations for the MMD p-value.", panel=TESTS
)
MaxSamplesOpt = o.option(
    int,
    "--max-samples",
    min=5,
    metavar="N",
    help="Subsample each side to at most N vectors for the tests.",
    panel=TESTS,
)
SeedOpt = o.option(int, "--seed", help="Seed for subsampling, permutations and folds.", panel=TESTS)
KOpt = o.option(int, "-k", min=1, metavar="N", help="Aligned mode: neighbours compared per item.", panel=TESTS)
MinOverlapOpt = o.option(
    float,
    "--min-overlap",
    min=0.0,
    max=1.0,
    help="Aligned mode: mean Jaccard@k below this is a difference (exit 1).",
    panel=TESTS,
)
TopOpt = o.option(
    int,
    "--top",
    min=0,
    metavar="N",
    help="List the N items of B least like A and of A least like B (most changed ids in aligned mode; "
    "most moved words with --terms).",
    panel=o.IO,
)
ItemsOpt = o.option(
    bool, "--items", help="Write those items as JSONL on stdout (or -o); the verdict goes to stderr.", panel=o.IO
)
ADAPTER = "Adapter (aligned mode)"
FitAdapterOpt = o.option(
    Optional[str],
    "--fit-adapter",
    metavar="FILE",
    help="Aligned mode: fit a map from B's model (new) to A's (old) on the shared items and write it to FILE "
    "(NPZ) for search/embed/index --adapter; held-out figures go in the report under 'adapter'.",
    panel=ADAPTER,
    show_default=False,
)
AdapterKindOpt = o.option(
    o.AdapterKind,
    "--adapter-kind",
    help="Orthogonal Procrustes (same widths), ridge least squares (any widths), or auto: Procrustes when "
    "the widths match.",
    panel=ADAPTER,
)
HoldoutOpt = o.option(
    float,
    "--holdout",
    min=0.0,
    max=0.9,
    help="Share of the shared items held out to validate the adapter.",
    panel=ADAPTER,
)
FmtOpt = o.option(
    Optional[o.ReportFormat],
    "--format",
    help="Report as JSON, or a table. Default: a table on a terminal; JSON off one, and with -o.",
    panel=o.IO,
    show_default=False,
)


def diff(
    a: AOpt,
    b: BOpt,
    output: o.Output = None,
    by: ByOpt = None,
    input_format: o.InputFormatOpt = None,
    alpha: AlphaOpt = 0.05,
    kernel: KernelOpt = Kernel.rbf,
    permutations: PermutationsOpt = 200,
    max_samples: MaxSamplesOpt = 2000,
    seed: SeedOpt = 0,
    k: KOpt = 10,
    min_overlap: MinOverlapOpt = 0.8,
    top: TopOpt = 10,
    items: ItemsOpt = False,
    fmt: FmtOpt = None,
    fit_adapter: FitAdapterOpt = None,
    adapter_kind: AdapterKindOpt = o.AdapterKind.auto,
    holdout: HoldoutOpt = 0.2,
    text_field: o.TextField = "text",
    vector_field: o.VectorField = "embedding",
    on_error: o.OnErrorOpt = o.OnError.fail,
    terms: terms_cli.TermsOpt = False,
    min_count: terms_cli.MinCountOpt = 10,
    max_occurrences: terms_cli.MaxOccurrencesOpt = 64,
    min_ratio: terms_cli.MinRatioOpt = 6.0,
    model: o.ModelOpt = None,
    device: o.DeviceOpt = o.Device.auto,
    threads: o.Threads = None,
    quiet: o.Quiet = False,
) -> None:
    """Compare two sets of embeddings; exit 0 when alike, 1 when different, 2 or more on any error.

    Corpus mode (default): are A and B drawn from the same distribution? MMD with
    a permutation test, a classifier two-sample test (cross-validated logistic
    regression AUC) and TTE depth with a rank-sum test, Holm-corrected at
    --alpha; plus centroid distance and the share of shifted dimensions. Aligned
    mode (--by id): does a model swap change who neighbours whom? Jaccard@k of
    each item's neighbours in A's and B's spaces. Terms mode (--terms, on texts):
    which words changed meaning? Each word's contexts in A and in B, as the
    model's token states, aligned on the stable words; different when a word
    moved beyond sampling noise (--min-ratio). Reads both inputs whole.

    Exit status, as diff(1): 0 same, 1 different; errors never exit 1: 2 usage
    error or failure (e.g. stdout cannot be written), 3 bad input data, 4
    incompatible input, 130 interrupted.
    """
    from embcli.analysis.diff import DiffOptions, compare, read_side
    from embcli.errors import UsageError
    from embcli.io.streams import BadRecords

    if a == "-" and b == "-":
        raise UsageError("only one of A and B can be stdin")
    if terms:
        if by:
            raise UsageError("--terms compares two corpora of texts; it cannot go with --by")
        if fit_adapter:
            raise UsageError("--fit-adapter pairs items of two models (--by); it cannot go with --terms")
        from embcli.analysis.terms import TermOptions

        run = terms_cli.TermsRun(
            o.value(input_format), text_field, on_error is o.OnError.skip, model, device.value, threads, quiet
        )
        result = terms_cli.compare_terms(a, b, run, TermOptions(min_count, max_occurrences, top, min_ratio=min_ratio))
        _finish(result, items, fmt, output, quiet)
        return
    if fit_adapter and not by:
        raise UsageError("--fit-adapter needs aligned mode: pair the items with --by FIELD (e.g. --by id)")
    bad = BadRecords(skip=on_error is o.OnError.skip)
    with phases(quiet):  # on a terminal: "reading a.jsonl… 12,345 vectors", replaced by the next phase
        xa, ra = read_side(a, vector_field, bad, o.value(input_format))
        xb, rb = read_side(b, vector_field, bad, o.value(input_format))
    if summary := bad.summary():
        warn(summary, quiet)
    options = DiffOptions(by, alpha, kernel.value, permutations, max_samples, seed, k, min_overlap, top, text_field)
    if not len(xa) and not len(xb):
        say("both inputs are empty: no difference", quiet)
    elif not by and max(len(xa), len(xb)) > max_samples and xa.shape[1] == xb.shape[1]:
        say(f"testing on a sample of at most {max_samples:,} vectors per side (--max-samples)", quiet)
    with phases(quiet):  # "testing: MMD…", "testing: classifier (fold 2/5)…"; gone before the report goes out
        result = compare(xa, ra, xb, rb, options, list_items=not items)
        if fit_adapter:
            from embcli.analysis.adapter import fit_from_sides

            adapter, result.report["adapter"] = fit_from_sides(
                xa, ra, xb, rb, by, kind=adapter_kind.value, holdout=holdout, seed=seed, k=k
            )
            adapter.save(fit_adapter)
    _finish(result, items, fmt, output, quiet)


def _finish(result, items: bool, fmt: o.ReportFormat | None, output: str | None, quiet: bool) -> None:
    """The report (or the listed items, with the verdict on stderr); exit 1 when A and B differ."""
    from embcli.errors import DiffExit

    if items:
        import orjson

        write_output(output, b"".join(orjson.dumps(line) + b"\n" for line in result.items))
        say(f"verdict: {result.verdict}", quiet)
    else:
        emit_report(result.report, o.value(fmt), output, _table, 100)
    if result.different:  # after the report is written: -o keeps it whatever the verdict
        raise typer.Exit(DiffExit.DIFFERENT)


def _table(report: dict, console: Console) -> None:
    from rich.table import Table

    if report["mode"] == "terms":
        terms_cli.table(report, console)
        return
    console.print(f"[bold]{report['verdict'].upper()}[/bold] ({report['mode']} mode)")
    if report["mode"] == "corpus" and "tests" in report:
        t = Table("test", "statistic", "p-value", "rejects")
        for name, res in report["tests"].items():
            label, key = {"mmd": ("MMD²", "mmd2"), "classifier": ("AUC", "auc"), "depth": ("Q", "q")}[name]
            stat = f"{label} {res[key]:.4g}"
            t.add_row(name, stat, f"{res['p_value']:.3g}", "yes" if res["rejects"] else "no")
        console.print(t)
        console.print(
            f"A {report['n_a']:,} vs B {report['n_b']:,} vectors; centroid cosine distance "
            f"{report['centroid_cosine_distance']:.4f}; shifted dimensions {report['shifted_dimensions']:.0%}"
        )
    elif report["mode"] == "aligned" and "mean_overlap" in report:
        console.print(
            f"{report['ids']:,} shared ids; mean Jaccard@{report['k']} {report['mean_overlap']:.3f}; "
            f"changed {report['changed_share']:.0%}, mostly changed {report['mostly_changed_share']:.0%}"
        )
    if "adapter" in report:
        from embcli.commands._adapter import adapter_table

        adapter_table(report["adapter"], console)
