"""``diff --terms``: which words changed meaning between two corpora of texts (embcli.analysis.terms)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from embcli.commands import _options as o
from embcli.commands._ui import phases, say, warn

if TYPE_CHECKING:
    from rich.console import Console

    from embcli.analysis.terms import TermOptions, TermShift

TERMS = "Term shift (--terms)"

TermsOpt = o.option(
    bool,
    "--terms",
    help="Which words changed meaning: compare each word's contexts in A's texts and in B's "
    "(the model's token states, aligned on the words that did not move). A and B must carry texts.",
    panel=TERMS,
)
MinCountOpt = o.option(
    int, "--min-count", min=2, metavar="N", help="Compare words that occur at least N times on each side.", panel=TERMS
)
MaxOccurrencesOpt = o.option(
    int,
    "--max-occurrences",
    min=2,
    metavar="N",
    help="Encode at most N occurrences per word and side, spread over the corpus (bounds the cost).",
    panel=TERMS,
)
MinRatioOpt = o.option(
    float,
    "--min-ratio",
    min=0.0,
    metavar="R",
    help="A word moved (exit 1) when its squared shift is at least R times what sampling alone gives.",
    panel=TERMS,
)


@dataclass
class TermsRun:
    """What ``diff --terms`` reads and with which model."""

    input_format: str | None
    text_field: str
    skip_bad: bool
    model: str | None
    device: str
    threads: int | None
    quiet: bool


def compare_terms(a: str, b: str, run: TermsRun, options: TermOptions) -> TermShift:
    """Read both sides' texts, load the model, rank the words by shift."""
    from embcli.analysis.terms import read_texts, term_shift
    from embcli.api.encoding import Encoder
    from embcli.io.streams import BadRecords

    bad = BadRecords(skip=run.skip_bad)
    with phases(run.quiet):
        ta, ia = read_texts(a, run.text_field, bad, run.input_format, label="A")
        tb, ib = read_texts(b, run.text_field, bad, run.input_format, label="B")
    if summary := bad.summary():
        warn(summary, run.quiet)
    if not ta and not tb:
        say("both inputs are empty: no difference", run.quiet)
    encoder = Encoder(run.model, device=run.device, threads=run.threads).runtime
    with phases(run.quiet):
        return term_shift(ta, tb, encoder, options, ids_a=ia, ids_b=ib)


def table(report: dict, console: Console) -> None:
    """The most moved words, their shift and an example context from each side."""
    from rich.table import Table

    console.print(
        f"[bold]{report['verdict'].upper()}[/bold] (terms mode): {report.get('moved_words', 0):,} of "
        f"{report['words']:,} words moved (A {report['n_a']:,} texts, B {report['n_b']:,} texts)"
    )
    if not report["most_moved"]:
        return
    t = Table("word", "shift", "ratio", "n A/B", "in A", "in B")
    for w in report["most_moved"]:
        ex_a = w["examples_a"][0]["text"] if w.get("examples_a") else ""
        ex_b = w["examples_b"][0]["text"] if w.get("examples_b") else ""
        mark = "" if w["moved"] else " [dim](within noise)[/dim]"
        t.add_row(
            w["word"] + mark, f"{w['shift']:.3f}", f"{w['ratio']:.1f}", f"{w['used_a']}/{w['used_b']}", ex_a, ex_b
        )
    console.print(t)
    if stable := report.get("most_stable"):
        console.print("most stable: " + ", ".join(w["word"] for w in stable))
