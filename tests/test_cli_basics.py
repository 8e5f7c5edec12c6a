"""The CLI shell: fast help, lazy imports, the contract every stream command keeps."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import EXAMPLES, cli, cli_inproc

HEAVY = ("onnxruntime", "tokenizers", "usearch")

# Commands that read a stream on stdin; each later subcommand joins this list.
# "{idx}" stands for a small index built from the example file.
# The last item names the input for the `| head` case: raw text records or embedded ones.
STREAM_COMMANDS = [
    ["embed", "{text}"],
    ["index", "-o", "{new}", "{vec}"],
    ["search", "{idx}", "{vec}"],
    ["quantize", "--to", "binary", "{vec}"],
    ["cluster", "--k", "3", "{vec}"],
    ["classify", "--labels", "web,data", "{vec}"],
    ["detect-anomalies", "{vec}"],
]


@pytest.fixture(scope="module")
def paths(tmp_path_factory, examples_vec) -> dict:
    d = tmp_path_factory.mktemp("contract")
    (d / "vec.jsonl").write_bytes(examples_vec.read_bytes())
    assert cli_inproc("index", "-q", "-o", str(d / "ex.idx"), str(d / "vec.jsonl")).code == 0
    return {
        "idx": str(d / "ex.idx"),
        "new": str(d / "new.idx"),
        "vec": str(d / "vec.jsonl"),
        "text": str(EXAMPLES / "packages.jsonl"),
    }


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        *(
            [cmd, "--help"]
            for cmd in (
                "embed",
                "models",
                "index",
                "search",
                "quantize",
                "cache",
                "diff",
                "cluster",
                "classify",
                "detect-anomalies",
                "eval",
            )
        ),
    ],
)
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


@pytest.mark.parametrize("template", STREAM_COMMANDS, ids=lambda a: a[0])
def test_contract_help_empty_malformed_head(template, paths):
    *args, head_input = [a.format(**paths) for a in template]
    r = cli(*args, "--help")
    assert r.code == 0 and b"Usage" in r.out
    r = cli(*args, input=b"")
    assert (r.code, r.out) == (0, b""), r.err
    r = cli(*args, input=b"{not json\n")
    assert r.code == 3 and "invalid JSON" in r.err and "line 1" in r.err and "Traceback" not in r.err
    # Closing the pipe early ends quietly: no traceback, no "Exception ignored".
    cmd = " ".join(f"'{a}'" for a in args)
    p = subprocess.run(
        f"'{sys.executable}' -m embcli {cmd} -q < '{head_input}' | head -c 10",
        shell=True,
        capture_output=True,
        timeout=300,
    )
    assert p.stderr == b"", p.stderr.decode()


def test_version():
    r = cli("--version")
    assert r.code == 0 and r.out.startswith(b"embcli ")


def test_debug_shows_traceback():
    r = cli("--debug", "embed", "-m", "no-such-model", input=b"")
    assert r.code == 2 and "Traceback" in r.err and "embcli: error: unknown model" in r.err
