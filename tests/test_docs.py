"""The generated man pages and completion scripts are up to date, and completion works through the real entry point."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from embcli.cli import app

ROOT = Path(__file__).resolve().parent.parent
BASH_SCRIPT = ROOT / "completions" / "embcli.bash"


def leaf_paths(cmd, path: str = "embcli") -> list[str]:
    """Command paths of the visible leaf commands, e.g. 'embcli models list'."""
    if not hasattr(cmd, "list_commands"):
        return [path]
    ctx = cmd.context_class(cmd, info_name=path.rsplit(" ", 1)[-1])
    subs = [(name, cmd.get_command(ctx, name)) for name in cmd.list_commands(ctx)]
    visible = [(name, sub) for name, sub in subs if sub is not None and not sub.hidden]
    return [leaf for name, sub in visible for leaf in leaf_paths(sub, f"{path} {name}")]


def entry_point() -> list[str]:
    """The installed `embcli` console script (next to this Python first), else the same main() via -m."""
    exe = shutil.which("embcli", path=str(Path(sys.executable).parent)) or shutil.which("embcli")
    return [exe] if exe else [sys.executable, "-m", "embcli"]


def complete(words: str, cword: int) -> list[str]:
    # Use the instruction the committed script sends, so the test checks that script and entry point agree.
    instruction = re.search(r"_EMBCLI_COMPLETE=(\S+)", BASH_SCRIPT.read_text())[1]
    env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": str(cword), "_EMBCLI_COMPLETE": instruction}
    proc = subprocess.run(entry_point(), env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"completion exited {proc.returncode}; stderr: {proc.stderr.strip()}"
    return proc.stdout.split()


def test_generated_files_are_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, "tools/gen_docs.py", "--check"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, (
        f"man pages or completions are out of date; run `python tools/gen_docs.py`:\n{proc.stdout}{proc.stderr}"
    )


def test_every_leaf_command_has_a_man_page() -> None:
    leaves = leaf_paths(typer.main.get_command(app))
    assert "embcli embed" in leaves
    missing = [p for p in leaves if not (ROOT / "man" / f"{p.replace(' ', '-')}.1").exists()]
    assert not missing, f"no man page for {missing}; run `python tools/gen_docs.py`"
    assert (ROOT / "man" / "embcli.1").exists()


def test_embed_page_documents_model_option() -> None:
    page = (ROOT / "man" / "embcli-embed.1").read_text()
    assert r"\fB\-\-model\fR" in page
    assert page.startswith('.\\"') and "\n.TH " in page


@pytest.mark.parametrize(
    ("words", "cword", "expected"),
    [("embcli em", 1, "embed"), ("embcli embed --dev", 2, "--device"), ("embcli models ", 2, "pull")],
)
def test_bash_completion_through_entry_point(words: str, cword: int, expected: str) -> None:
    assert expected in complete(words, cword)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_sourced_bash_script_completes() -> None:
    exe = entry_point()[0]
    if exe == sys.executable:
        pytest.skip("no installed embcli script for the completion script to call")
    func = re.search(r"complete .*-F (\S+)", BASH_SCRIPT.read_text())[1]
    script = f'source "{BASH_SCRIPT}"; COMP_WORDS=(embcli em); COMP_CWORD=1; {func} embcli; echo "${{COMPREPLY[@]}}"'
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(exe).parent), os.environ.get("PATH", "")])}
    proc = subprocess.run(["bash", "--norc", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["embed"], f"stdout: {proc.stdout!r}; stderr: {proc.stderr.strip()}"
