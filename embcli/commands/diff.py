"""embcli diff: is B like A? Two corpora in one space, or one corpus in two models' spaces."""

from __future__ import annotations

import sys
from enum import Enum
from typing import Annotated, Optional

import typer

from embcli.commands import _options as o
from embcli.commands._ui import say, warn

TESTS = "Tests"


class Kernel(str, Enum):
    rbf = "rbf"
    cos = "cos"


class ReportFormat(str, Enum):
    json = "json"
    table = "table"


def diff(
    a: Annotated[
        str, typer.Argument(metavar="A", help="The reference: embedded records (JSONL) or NPY; '-' for stdin.")
    ],
    b: Annotated[str, typer.Argument(metavar="B", help="The one compared with A.")],
    by: Annotated[
        Optional[str],
        typer.Option(
            "--by",
            metavar="FIELD",
            help="Aligned mode: A and B hold the same items (matched by FIELD, e.g. id) embedded by two models.",
            show_default=False,
            rich_help_panel=TESTS,
        ),
    ] = None,
    alpha: Annotated[
        float,
        typer.Option(
            "--alpha",
            min=0.0,
            max=1.0,
            help="Significance level for the verdict (Holm-corrected over the tests).",
            rich_help_panel=TESTS,
        ),
    ] = 0.05,
    kernel: Annotated[
        Kernel,
        typer.Option("--kernel", help="MMD kernel: RBF with the median heuristic, or cosine.", rich_help_panel=TESTS),
    ] = Kernel.rbf,
    permutations: Annotated[
        int,
        typer.Option(
            "--permutations", min=19, metavar="N", help="Permutations for the MMD p-value.", rich_help_panel=TESTS
        ),
    ] = 200,
    max_samples: Annotated[
        int,
        typer.Option(
            "--max-samples",
            min=5,
            metavar="N",
            help="Subsample each side to at most N vectors for the tests.",
            rich_help_panel=TESTS,
        ),
    ] = 2000,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed for subsampling, permutations and folds.", rich_help_panel=TESTS)
    ] = 0,
    k: Annotated[
        int,
        typer.Option(
            "-k", min=1, metavar="N", help="Aligned mode: neighbours compared per item.", rich_help_panel=TESTS
        ),
    ] = 10,
    min_overlap: Annotated[
        float,
        typer.Option(
            "--min-overlap",
            min=0.0,
            max=1.0,
            help="Aligned mode: mean Jaccard@k below this is a difference (exit 1).",
            rich_help_panel=TESTS,
        ),
    ] = 0.8,
    top: Annotated[
        int,
        typer.Option(
            "--top",
            min=0,
            metavar="N",
            help="List the N items of B least like A and of A least like B (most changed ids in aligned mode).",
            rich_help_panel=o.IO,
        ),
    ] = 10,
    items: Annotated[
        bool,
        typer.Option(
            "--items", help="Write those items as JSONL on stdout; the verdict goes to stderr.", rich_help_panel=o.IO
        ),
    ] = False,
    fmt: Annotated[
        Optional[ReportFormat],
        typer.Option(
            "--format",
            help="Report as JSON, or a table. Default: table on a terminal, else JSON.",
            show_default=False,
            rich_help_panel=o.IO,
        ),
    ] = None,
    text_field: o.TextField = "text",
    vector_field: o.VectorField = "embedding",
    on_error: o.OnErrorOpt = o.OnError.fail,
    quiet: o.Quiet = False,
) -> None:
    """Compare two sets of embeddings; exit 0 when alike, 1 when different (errors: 2 and up).

    Corpus mode (default): are A and B drawn from the same distribution? MMD with
    a permutation test, a classifier two-sample test (cross-validated logistic
    regression AUC) and TTE depth with a rank-sum test, Holm-corrected at
    --alpha; plus centroid distance and the share of shifted dimensions. Aligned
    mode (--by id): does a model swap change who neighbours whom? Jaccard@k of
    each item's neighbours in A's and B's spaces. Reads both inputs whole.
    """
    import numpy as np

    from embcli.core.diff import compare_aligned, compare_corpora, outliers
    from embcli.core.streams import BadRecords, Source, iter_embedded
    from embcli.errors import InputError, UsageError

    if a == "-" and b == "-":
        raise UsageError("only one of A and B can be stdin")
    bad = BadRecords(skip=on_error is o.OnError.skip)

    def load(path: str) -> tuple[np.ndarray, list[dict]]:
        with Source(path) as src:
            pairs = list(iter_embedded(src, vector_field, bad))
        recs = [rec.data if rec is not None else {"row": i} for i, (rec, _) in enumerate(pairs)]
        width = {len(v) for _, v in pairs}
        if len(width) > 1:
            raise InputError(f"vectors of different widths {sorted(width)} in one input, {path}")
        return (np.vstack([v for _, v in pairs]) if pairs else np.zeros((0, 0), np.float32)), recs

    xa, ra = load(a)
    xb, rb = load(b)
    if summary := bad.summary():
        warn(summary, quiet)
    if not len(xa) and not len(xb):
        say("both inputs are empty: no difference", quiet)
        _emit({"mode": "aligned" if by else "corpus", "verdict": "same", "n_a": 0, "n_b": 0}, fmt, items)
        return

    def brief(rec: dict, extra: dict) -> dict:
        keep = {f: rec[f] for f in ("id", "row", text_field) if f in rec}
        return {**keep, **extra}

    if by:
        ia = {r.get(by): i for i, r in enumerate(ra) if r.get(by) is not None}
        ib = {r.get(by): i for i, r in enumerate(rb) if r.get(by) is not None}
        shared = [key for key in ia if key in ib]
        if not shared:
            raise InputError(f"A and B share no {by!r} values", hint="aligned mode matches items by --by FIELD")
        report = compare_aligned(xa[[ia[s] for s in shared]], xb[[ib[s] for s in shared]], shared, k=k, top=top)
        report.update(only_in_a=len(ia) - len(shared), only_in_b=len(ib) - len(shared))
        different = report["mean_overlap"] < min_overlap
        report["verdict"] = "different" if different else "same"
        lines = [{"side": "both", "kind": "changed", **m} for m in report["most_changed"]]
    else:
        if min(len(xa), len(xb)) >= 5 and xa.shape[1] != xb.shape[1]:
            raise InputError(
                f"A has {xa.shape[1]} dimensions and B {xb.shape[1]}: corpus mode compares one embedding space",
                hint="to compare two models on the same items, use --by id",
            )
        if max(len(xa), len(xb)) > max_samples:
            say(f"testing on a sample of at most {max_samples:,} vectors per side (--max-samples)", quiet)
        result = compare_corpora(
            xa, xb, alpha=alpha, kernel=kernel.value, permutations=permutations, max_samples=max_samples, seed=seed
        )
        report, different = result.report, result.different
        new = [brief(rb[i], {"side": "B", "kind": "new", "depth_in_a": d}) for i, d in outliers(xb, xa, top)]
        gone = [brief(ra[i], {"side": "A", "kind": "gone", "depth_in_b": d}) for i, d in outliers(xa, xb, top)]
        lines = new + gone
        if top and not items:
            report["least_like_a"], report["least_like_b"] = new, gone
    if items:
        import orjson

        from embcli.core.streams import write_stdout

        write_stdout(b"".join(orjson.dumps(line) + b"\n" for line in lines))
        say(f"verdict: {report['verdict']}", quiet)
    else:
        _emit(report, fmt, items)
    if different:
        raise typer.Exit(1)


def _emit(report: dict, fmt: ReportFormat | None, items: bool) -> None:
    import orjson

    if items:
        return
    if fmt is ReportFormat.table or (fmt is None and sys.stdout.isatty()):
        _table(report)
    else:
        from embcli.core.streams import write_stdout

        write_stdout(orjson.dumps(report) + b"\n")


def _table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
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
