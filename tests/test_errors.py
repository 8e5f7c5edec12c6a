"""Bad input: one clear stderr line, the right exit code, nothing on stdout but valid data."""

from __future__ import annotations

import onnxruntime
import orjson
import pytest
from conftest import cli

GOOD = '{"id": 1, "text": "a good record"}\n'


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if not line.startswith("hint: ")]
    assert len(lines) == 1, err
    assert lines[0].startswith("embcli: error: ")
    assert "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (GOOD + GOOD + '{"id": 3, "text": "broken\n', "invalid JSON"),
        (GOOD + GOOD + '{"id": 3, "body": "no text here"}\n', "no 'text' field"),
        (GOOD + GOOD + '{"id": 3, "text": 42}\n', "is a number, not a string"),
        (GOOD.encode() * 2 + b'{"id": 3, "text": "caf\xe9"}\n', "UTF-8"),
        (GOOD + GOOD + '{"id": 3, "text": "nul \\u0000 byte"}\n', "NUL byte"),
        (GOOD + GOOD + '{"id": 3, "text": "  "}\n', "is empty"),
        (GOOD + GOOD + "[1, 2]\n", "expected a JSON object"),
    ],
    ids=["malformed-json", "missing-field", "non-string", "invalid-utf8", "nul-byte", "empty-text", "not-object"],
)
def test_bad_record_on_line_3(data, message):
    r = cli("embed", input=data)
    assert r.code == 3
    line = _one_error_line(r.err)
    assert message in line and "<stdin> line 3" in line
    # Only the valid records before the bad one reach stdout, each complete.
    assert [rec["id"] for rec in r.records()] == [1, 1]


def test_on_error_skip_skips_and_counts():
    data = GOOD + '{"oops\n' + '{"text": ""}\n' + '{"id": 2, "text": "another"}\n' + '{"text": 1}\n'
    r = cli("embed", "--on-error", "skip", input=data)
    assert r.code == 0, r.err
    assert [rec["id"] for rec in r.records()] == [1, 2]
    assert "skipped 3 bad records (first: invalid JSON" in r.err


def test_empty_input_gives_empty_output(tmp_path):
    for args in (["embed"], ["embed", "--format", "npy"], ["embed", "--input-format", "text"]):
        r = cli(*args, input=b"")
        assert r.code == 0 and r.out == b"", r.err
    out = tmp_path / "empty.npy"
    assert cli("embed", "-o", str(out), input=b"").code == 0
    import numpy as np

    assert np.load(out).shape == (0, 384)


def test_plain_text_without_flag_gets_a_hint():
    r = cli("embed", input="just some words\n")
    assert r.code == 3
    assert "--input-format text" in r.err


def test_failed_output_file_is_not_left_behind(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("previous contents\n")
    r = cli("embed", "-o", str(out), input=GOOD + "{bad\n")
    assert r.code == 3
    assert out.read_text() == "previous contents\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_head_closes_pipe_quietly(tmp_path):
    import subprocess
    import sys

    big = tmp_path / "big.jsonl"
    big.write_bytes(
        b"".join(orjson.dumps({"id": i, "text": f"record number {i} about pipes"}) + b"\n" for i in range(5000))
    )
    p = subprocess.run(
        f"'{sys.executable}' -m embcli embed < '{big}' | head -1",
        shell=True,
        capture_output=True,
        timeout=300,
    )
    assert p.returncode == 0
    assert orjson.loads(p.stdout)["id"] == 0
    assert p.stderr == b"", p.stderr.decode()


@pytest.mark.skipif("CUDAExecutionProvider" in onnxruntime.get_available_providers(), reason="this machine has CUDA")
def test_cuda_requested_without_cuda_fails_loudly():
    r = cli("embed", "--device", "cuda", input=GOOD)
    assert r.code == 1 and r.out == b""
    assert "CUDA" in _one_error_line(r.err)


def test_unknown_model_names_the_choices():
    r = cli("embed", "-m", "no-such-model", input=GOOD)
    assert r.code == 2 and r.out == b""
    assert "unknown model 'no-such-model'" in _one_error_line(r.err)
    assert "all-MiniLM-L6-v2" in r.err


def test_usage_errors_are_one_line_exit_2():
    r = cli("embed", "--no-such-flag")
    assert r.code == 2
    assert "No such option" in _one_error_line(r.err)
    r = cli("embed", "--dims", "999", input=GOOD)
    assert r.code == 2 and "--dims" in r.err


def test_missing_input_file():
    r = cli("embed", "/nonexistent/file.jsonl")
    assert r.code == 2 and "No such file" in _one_error_line(r.err)


def test_npy_given_to_embed_is_refused():
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.zeros((2, 3), dtype=np.float32))
    r = cli("embed", input=buf.getvalue())
    assert r.code == 3 and "NPY" in r.err


def test_interrupt_exits_130_and_leaves_no_partial_file(tmp_path):
    import contextlib
    import signal
    import subprocess
    import sys
    import time

    def parent_ignores_sigint() -> bool:
        with open("/proc/self/status") as f:
            mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigIgn:"))
        return bool(mask & (1 << (signal.SIGINT - 1)))

    out = tmp_path / "out.jsonl"
    p = subprocess.Popen(
        [sys.executable, "-m", "embcli", "embed", "-o", str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # As from an interactive shell: a process started with SIGINT ignored (as some test
        # runners leave it) rightly keeps ignoring Ctrl-C, so give the child the default.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    p.stdin.write(GOOD.encode())
    p.stdin.flush()
    # Wait until the first record is embedded and flushed to the temp file (stdin stays open):
    # a Ctrl-C during start-up may land in a library import that swallows it.
    deadline = time.monotonic() + 120
    while not any(f.stat().st_size for f in tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):  # stdin stays open: only the signal ends the run
        p.wait(timeout=30)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, f"{err.decode()} (test runner ignores SIGINT: {parent_ignores_sigint()})"
    assert b"Traceback" not in err and b"Fatal" not in err
    assert list(tmp_path.iterdir()) == []
