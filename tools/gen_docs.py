#!/usr/bin/env python3
"""Generate embcli's man pages and shell completion scripts from its click command tree.

    python tools/gen_docs.py            # write man/*.1 and completions/* under the repo root
    python tools/gen_docs.py --check    # exit 1 if the committed files differ from fresh ones

Nothing here names a command: pages follow the tree, so new subcommands get documented on the next run.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer.main
from rich.errors import MarkupError
from rich.text import Text

from embcli import __version__
from embcli.cli import app
from embcli.commands.completions import HEADER, PROG, completion_script
from embcli.errors import exit_statuses

ROOT = Path(__file__).resolve().parent.parent
COMPLETIONS = {"bash": "completions/embcli.bash", "zsh": "completions/_embcli", "fish": "completions/embcli.fish"}

ENVIRONMENT = {
    "EMBCLI_MODEL": "Model used when --model is not given: a built-in name, local model directory or hub repo id.",
    "EMBCLI_MODELS_DIR": "Where hub models are kept. Default: $XDG_CACHE_HOME/embcli/models or ~/.cache/embcli/models.",
    "EMBCLI_CACHE": "Vector cache file for embed --cache (and cache stats/prune) when no path is given.",
    "EMBCLI_DEBUG": "If set and not empty, print tracebacks on errors, like --debug.",
}

Command = Any  # typer's vendored click.Command (or click's own on older Typer)
Context = Any


# --- the command tree ---


def context(cmd: Command, name: str, parent: Context | None = None) -> Context:
    # Built by hand: make_context() would parse argv and run callbacks. context_settings carries -h.
    return cmd.context_class(cmd, info_name=name, parent=parent, **cmd.context_settings)


def is_group(cmd: Command) -> bool:
    return hasattr(cmd, "list_commands")


def walk(cmd: Command, ctx: Context) -> Iterator[tuple[Command, Context]]:
    """Every visible command with its context, depth first, in declaration order."""
    yield cmd, ctx
    if is_group(cmd):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from walk(sub, context(sub, name, ctx))


def page_name(ctx: Context) -> str:
    return ctx.command_path.replace(" ", "-")


# --- text and roff ---


def plain(text: str | None) -> str:
    """Help text as --help shows it: click's \\f cut-off applied, rich markup ([bold]...) removed."""
    text = inspect.cleandoc((text or "").split("\f")[0])
    try:  # rich drops control characters: carry click's \b (keep line breaks) through as a NUL
        return Text.from_markup(text.replace("\b", "\0"), emoji=False).plain.replace("\0", "\b")
    except MarkupError:  # not markup after all (e.g. a stray [/x]): keep it verbatim
        return text


def paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]


def summary(cmd: Command) -> str:
    first = (paragraphs(plain(cmd.short_help or cmd.help)) or [""])[0]
    return " ".join(first.replace("\b", "").split()).rstrip(".")


def esc(text: str) -> str:
    """Escape for roff. Every '-' becomes '\\-' so flags, model ids and paths copy-paste as typed."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "".join(c if c.isascii() else f"\\[u{ord(c):04X}]" for c in text)


def line(text: str) -> str:
    """A roff text line; a leading '.' or "'" would be read as a request, so guard it with \\&."""
    text = esc(text)
    return "\\&" + text if text[:1] in (".", "'") else text


def bold(text: str) -> str:
    return f"\\fB{esc(text)}\\fR"


def ital(text: str) -> str:
    return f"\\fI{esc(text)}\\fR"


def prose(text: str) -> list[str]:
    out: list[str] = []
    for para in paragraphs(text):
        if para.startswith("\b"):  # click's "keep my line breaks" marker
            out += [".PP", ".nf", *(line(s) for s in para.splitlines()[1:]), ".fi"]
        else:
            out += [".PP", line(" ".join(para.split()))]
    return out


def tag(names: str, kind: str) -> str:
    """'-o, --output <str>' -> bold flags, italic metavar; '<a|b>' choices in bold, as typed."""
    out = []
    for i, seg in enumerate(re.split(r"(, | / |; )", names)):
        if i % 2:  # a separator
            out.append(esc(seg))
            continue
        word, _, meta = seg.partition(" ")
        out.append(ital(word) if kind == "argument" else bold(word))
        if m := re.fullmatch(r"([<\[{]?)([^<>\[\]{}|]+(?:\|[^<>\[\]{}|]+)+)([>\]}]?)", meta):
            out.append(" " + esc(m[1]) + "|".join(bold(c) for c in m[2].split("|")) + esc(m[3]))
        elif meta:
            out.append(" " + ital(meta))
    return "".join(out)


def param_items(cmd: Command, ctx: Context, kind: str) -> list[str]:
    out: list[str] = []
    for p in cmd.get_params(ctx):
        record = p.get_help_record(ctx) if p.param_type_name == kind else None
        if record is None:  # the other kind, or hidden
            continue
        names, text = record
        raw = getattr(p, "help", None) or ""
        # click/Typer append '  [default: ...; x>=1]' to the help: keep it, but strip markup from the help only.
        extra = text[len(raw) :].strip() if text.startswith(raw) else ""
        body = " ".join(" ".join([plain(raw), extra]).split())
        out += [".TP", tag(names, kind), *([line(body)] if body else [])]
    return out


def synopsis(cmd: Command, ctx: Context) -> str:
    usage = " ".join(cmd.collect_usage_pieces(ctx))
    usage = re.sub(r"\{(\w+)\}", r"\1", usage)  # Typer writes a required argument as {x}; man(7) leaves it bare
    return bold(ctx.command_path) + " " + re.sub(r"[A-Za-z_][\w-]*", lambda m: ital(m[0]), usage)


def see_also(names: list[str]) -> list[str]:
    return [".SH SEE ALSO", ",\n".join(f"{bold(n)}(1)" for n in names)]


def man_page(cmd: Command, ctx: Context, leaves: list[tuple[Command, Context]]) -> str:
    name = page_name(ctx)
    lines = [
        f'.\\" {HEADER}',
        f'.TH "{esc(name.upper())}" 1 "" "{PROG} {esc(__version__)}" "User Commands"',
        ".nh",  # no hyphenation, no justification: words and flags stay whole for copy-paste
        ".ad l",
        ".SH NAME",
        line(f"{name} - {summary(cmd)}"),
        ".SH SYNOPSIS",
        synopsis(cmd, ctx),
        ".SH DESCRIPTION",
        *prose(plain(cmd.help)),
    ]
    if args := param_items(cmd, ctx, "argument"):
        lines += [".SH ARGUMENTS", *args]
    if opts := param_items(cmd, ctx, "option"):
        lines += [".SH OPTIONS", *opts]
    if ctx.parent is None:
        lines.append(".SH COMMANDS")
        for leaf, leaf_ctx in leaves:
            see = f"See {bold(page_name(leaf_ctx))}(1)."
            lines += [".TP", bold(leaf_ctx.command_path), f"{line(summary(leaf) + '.')} {see}"]
    lines.append(".SH ENVIRONMENT")
    for var, text in ENVIRONMENT.items():
        lines += [".TP", bold(var), line(text)]
    lines.append(".SH EXIT STATUS")
    for code, text in exit_statuses(ctx.info_name if ctx.parent else "").items():
        lines += [".TP", bold(str(code)), line(text)]
    if ctx.parent is None:
        lines += see_also([page_name(c) for _, c in leaves])
    else:
        siblings = [page_name(c) for _, c in leaves if c.parent is ctx.parent and c is not ctx]
        lines += see_also([PROG, *siblings])
    return "\n".join(lines) + "\n"


def completion(cli: Command, shell: str) -> str:
    # The same code path as `embcli completions SHELL`, so the command prints these very files.
    return completion_script(cli, shell)


# --- files ---


def render() -> dict[str, str]:
    """Relative path -> content of every generated file."""
    cli = typer.main.get_command(app)
    tree = list(walk(cli, context(cli, PROG)))
    leaves = [(c, x) for c, x in tree if not is_group(c)]
    files = {f"man/{page_name(x)}.1": man_page(c, x, leaves) for c, x in [tree[0], *leaves]}
    files |= {path: completion(cli, shell) for shell, path in COMPLETIONS.items()}
    return files


def owned(out: Path) -> set[str]:
    """Generated files already under out, so that pages of removed commands count as extra."""
    return {p.relative_to(out).as_posix() for p in out.glob("man/*.1")} | {
        p for p in COMPLETIONS.values() if (out / p).exists()
    }


def write(out: Path, files: dict[str, str]) -> None:
    for rel in owned(out) - files.keys():
        (out / rel).unlink()
    for rel, content in files.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_bytes(content.encode())


def check(out: Path, files: dict[str, str]) -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        write(Path(tmp), files)
        problems = [f"missing: {rel}" for rel in sorted(files) if not (out / rel).exists()]
        problems += [
            f"stale: {rel}"
            for rel in sorted(files)
            if (out / rel).exists() and (out / rel).read_bytes() != (Path(tmp) / rel).read_bytes()
        ]
        problems += [f"extra: {rel}" for rel in sorted(owned(out) - files.keys())]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="Exit 1 if the files under DIR are not up to date.")
    parser.add_argument("--out", type=Path, default=ROOT, metavar="DIR", help="Root to write under (default: repo).")
    args = parser.parse_args(argv)
    files = render()
    if not args.check:
        write(args.out, files)
        return 0
    problems = check(args.out, files)
    for problem in problems:
        print(f"gen_docs: {problem}", file=sys.stderr)
    if problems:
        print("hint: run `python tools/gen_docs.py` and commit the result", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
