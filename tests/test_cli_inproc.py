"""The in-process CLI harness: the subprocess's results, and nothing carried from one run to the next."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from conftest import cli, cli_inproc

GOOD = '{"id": 1, "text": "a good record"}\n'


def test_same_stdout_stderr_and_code_as_a_subprocess(tmp_path: Path) -> None:
    # -q: the summary line holds a rate, which differs from run to run.
    cases = [(["embed", "-q"], GOOD), (["embed", "-q", "--format", "npy"], GOOD), (["embed"], GOOD + "{bad\n")]
    for args, data in cases:
        real, here = cli(*args, input=data), cli_inproc(*args, input=data)
        assert (here.code, here.out, here.err) == (real.code, real.out, real.err), args


def test_options_and_environment_do_not_carry_over(tmp_path: Path) -> None:
    cwd, environ, streams = os.getcwd(), dict(os.environ), (sys.stdin, sys.stdout, sys.stderr)
    assert cli_inproc("embed", "-q", input=GOOD).err == ""
    assert "embedded 1 text" in cli_inproc("embed", input=GOOD).err  # -q did not stick
    assert "Traceback" in cli_inproc("--debug", "embed", "-m", "no-such-model", input=GOOD).err
    assert "Traceback" not in cli_inproc("embed", "-m", "no-such-model", input=GOOD).err  # nor did --debug
    # Variables and the working directory apply to the one run only.
    (tmp_path / "here.jsonl").write_text(GOOD)
    r = cli_inproc("embed", "here.jsonl", env={"EMBCLI_MODEL": "no-such-model"}, cwd=tmp_path)
    assert r.code == 2 and "unknown model 'no-such-model'" in r.err
    assert cli_inproc("embed", "-q", "here.jsonl", cwd=tmp_path).code == 0
    assert cli_inproc("embed", "-q", "here.jsonl").code == 2
    assert (os.getcwd(), dict(os.environ), (sys.stdin, sys.stdout, sys.stderr)) == (cwd, environ, streams)
