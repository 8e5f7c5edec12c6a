"""embcli cache: inspect and trim the vector cache of `embed --cache`."""

from __future__ import annotations

import re
from typing import Annotated, Optional

import typer

from embcli.commands._ui import say
from embcli.errors import UsageError

app = typer.Typer(help="Inspect and trim the vector cache used by `embed --cache`.", no_args_is_help=True)

CachePath = Annotated[
    Optional[str],
    typer.Argument(help="The cache file. Default: $EMBCLI_CACHE.", envvar="EMBCLI_CACHE", show_default=False),
]
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _path(path: str | None) -> str:
    import os

    if not path:
        raise UsageError("give the cache file (or set EMBCLI_CACHE)")
    if not os.path.isfile(path):
        raise UsageError(f"no cache file at {path}")
    return path


def parse_age(text: str) -> float:
    """'30d', '12h', '90m', '2w' or plain seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not m:
        raise UsageError(f"--older-than: cannot read {text!r}; use e.g. 30d, 12h, 2w")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


@app.command("stats")
def stats(path: CachePath = None, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """How many vectors the cache holds, for which models and options, and its size."""
    import datetime

    import orjson

    from embcli.runtime.cache import cache_stats

    info = cache_stats(_path(path))
    if as_json:
        typer.echo(orjson.dumps(info, option=orjson.OPT_INDENT_2).decode())
        return

    def day(ts: int | None) -> str:
        return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d") if ts else "-"

    lines = [f"{info['path']}: {info['vectors']:,} vectors, {info['bytes'] / 1e6:,.1f} MB"]
    for s in info["specs"]:
        spec = s["spec"]
        lines.append(
            f"  {s['vectors']:>10,}  model {spec['model_sha256'][:12]}, {spec['dims']}-d, prompt {spec['prompt']!r}, "
            f"used {day(s['oldest_use'])} .. {day(s['newest_use'])}"
        )
    typer.echo("\n".join(lines))


@app.command("prune")
def prune(
    path: CachePath = None,
    older_than: Annotated[
        str, typer.Option("--older-than", help="Drop vectors not used for this long: 30d, 12h, 2w, or seconds.")
    ] = "30d",
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="Print nothing on stderr but errors.")] = False,
) -> None:
    """Drop vectors not used recently, and give the space back."""
    from embcli.runtime.cache import prune as prune_cache

    seconds = parse_age(older_than)
    n = prune_cache(_path(path), seconds)
    say(f"pruned {n:,} vectors unused for {older_than}", quiet)
