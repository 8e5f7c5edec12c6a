"""The CLI shell: fast help, lazy imports, the contract every stream command keeps."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import cli

HEAVY = ("onnxruntime", "tokenizers", "usearch")

# Commands that read a stream on stdin; each later subcommand joins this list.
STREAM_COMMANDS = [["embed"]]


@pytest.mark.parametrize("args", [["--help"], ["embed", "--help"], ["models", "--help"]])
def test_help_imports_no_heavy_module(args):
    code = (
        "import sys\nfrom embcli.cli import run\n"
        f"rc = run({args!r})\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(rc, heavy, file=sys.stderr)\n"
        "assert rc == 0 and not heavy, heavy\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "Usage" in p.stdout


@pytest.mark.parametrize("args", STREAM_COMMANDS, ids=lambda a: " ".join(a))
def test_contract_help_empty_malformed(args):
    r = cli(*args, "--help")
    assert r.code == 0 and b"Usage" in r.out
    r = cli(*args, input=b"")
    assert (r.code, r.out) == (0, b""), r.err
    r = cli(*args, input=b'{"text": "fine"}\n{not json\n')
    assert r.code == 3 and "line 2" in r.err and "Traceback" not in r.err


def test_version():
    r = cli("--version")
    assert r.code == 0 and r.out.startswith(b"embcli ")


def test_debug_shows_traceback():
    r = cli("--debug", "embed", "-m", "no-such-model", input=b"")
    assert r.code == 2 and "Traceback" in r.err and "embcli: error: unknown model" in r.err
