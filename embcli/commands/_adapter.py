"""The adapter part of diff's table report (``--fit-adapter``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console


def adapter_table(fit: dict, console: Console) -> None:
    from rich.table import Table

    console.print(
        f"adapter ({fit['kind']}) {fit['new']} → {fit['old']}: fitted on {fit['train']:,} pairs, "
        f"{fit['held_out']:,} held out"
    )
    if "after" not in fit:
        return
    t = Table("held out", "cosine to old", f"overlap@{fit['k']}")
    key = f"overlap@{fit['k']}"
    for name in ("before", "after"):
        row = fit[name]
        t.add_row(f"{name} mapping", *("–" if row[m] is None else f"{row[m]:.3f}" for m in ("cosine", key)))
    console.print(t)
