"""Exit codes and messages follow the contract (DESIGN §5): diff's statuses, usage errors
for undecodable arguments and pathological filters, no chatter under -q, hints that
name only the running command's options, and error lines that stay one line."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import orjson
import pytest
from conftest import cli

from embcli.commands import _ui
from embcli.errors import (
    DiffExit,
    EmbcliError,
    ExitCode,
    IncompatibleError,
    InputError,
    UsageError,
    diff_exit_code,
    exit_statuses,
    printable,
)
from embcli.search.filters import MAX_CONDITIONS, MAX_DEPTH, compile_where


def run_raw(args: list[str | bytes], *, stdout=subprocess.PIPE, env: dict | None = None, drop: tuple = ()):
    """``embcli ARGS`` like conftest's cli(), but with bytes arguments, any stdout and env vars removed."""
    full_env = {k: v for k, v in os.environ.items() if k != "EMBCLI_MODEL" and k not in drop}
    full_env.update({"HF_HUB_OFFLINE": "1", **(env or {})})
    p = subprocess.run(
        [sys.executable, "-m", "embcli", *args], stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE,
        env=full_env, timeout=600,
    )  # fmt: skip
    return p.returncode, p.stderr.decode("utf-8", "replace")


def one_error(err: str) -> str:
    """The error line, checked to be the only line on stderr but for a hint."""
    lines = err.splitlines()
    assert len([x for x in lines if x.startswith("embcli: error: ")]) == 1, err
    assert all(x.startswith(("embcli: error: ", "hint: ")) for x in lines), err
    return lines[0]


def write_vectors(path: Path, x: np.ndarray) -> Path:
    path.write_bytes(b"".join(orjson.dumps({"id": i, "embedding": v.tolist()}) + b"\n" for i, v in enumerate(x)))
    return path


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("corpora")
    rng = np.random.default_rng(7)
    a = rng.normal(size=(40, 8)).astype(np.float32)
    far = a + np.float32(3.0) * (np.arange(8) < 4)  # half the dimensions moved: clearly another corpus
    bad = d / "bad.jsonl"
    bad.write_bytes(b'{"id": 0, "embedding": [0.1, 0.2]}\n{"id": 1, "embedding": [0.1, \n')
    nan = d / "nan.jsonl"  # NaN as JSON writers (Python's json) spell it
    nan.write_bytes(
        b"".join(b'{"id": %d, "embedding": [%s]}\n' % (i, b"NaN, 1.0" if i == 3 else b"0.5, 1.0") for i in range(8))
    )
    huge = d / "huge.jsonl"  # a number that parses to infinity
    huge.write_bytes(
        b"".join(b'{"id": %d, "embedding": [%s, 1.0]}\n' % (i, b"1e999" if i == 3 else b"0.5") for i in range(8))
    )
    return {"a": write_vectors(d / "a.jsonl", a), "far": write_vectors(d / "far.jsonl", far),
            "bad": bad, "nan": nan, "huge": huge, "dir": d}  # fmt: skip


# --------------------------------------------------------------------------- the enum and diff's mapping


def test_exit_codes_are_one_enum() -> None:
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 130]
    assert EmbcliError("x").exit_code is ExitCode.FAILURE
    assert UsageError("x").exit_code is ExitCode.USAGE
    assert InputError("x").exit_code is ExitCode.BAD_INPUT
    assert IncompatibleError("x").exit_code is ExitCode.INCOMPATIBLE
    # diff: no error may read as "different"; the others keep their meaning.
    assert {c.name: diff_exit_code(c) for c in ExitCode if c} == {
        "FAILURE": 2, "USAGE": 2, "BAD_INPUT": 3, "INCOMPATIBLE": 4, "INTERRUPTED": 130,
    }  # fmt: skip
    # The man pages' EXIT STATUS sections come from the same table.
    assert list(exit_statuses("embed")) == [int(c) for c in ExitCode]
    diff_table = exit_statuses("diff")
    assert list(diff_table) == [0, 1, 2, 3, 4, 130]
    assert diff_table[1] == "A and B differ." and "Runtime failure" in diff_table[2]


def test_diff_same_is_0_different_is_1(corpora) -> None:
    same = cli("diff", str(corpora["a"]), str(corpora["a"]), "--permutations", "19", "--format", "json")
    assert same.code == DiffExit.SAME, same.err
    assert orjson.loads(same.out)["verdict"] == "same"
    other = cli("diff", str(corpora["a"]), str(corpora["far"]), "--permutations", "19", "--format", "json")
    assert other.code == DiffExit.DIFFERENT, other.err
    assert orjson.loads(other.out)["verdict"] == "different"
    assert "error" not in same.err + other.err


@pytest.mark.parametrize(
    ("b", "extra", "code"),
    [
        ("bad", (), ExitCode.BAD_INPUT),
        ("nan", (), ExitCode.BAD_INPUT),
        ("huge", (), ExitCode.BAD_INPUT),
        ("missing.jsonl", (), ExitCode.USAGE),
        ("a", ("--alpha", "5"), ExitCode.USAGE),
        ("-", (), ExitCode.USAGE),  # with A on stdin too: only one of them can be
    ],
)
def test_diff_errors_exit_2_or_more(corpora, b: str, extra: tuple, code: int) -> None:
    path = str(corpora[b]) if b in corpora else ("-" if b == "-" else str(corpora["dir"] / b))
    a = "-" if b == "-" else str(corpora["a"])
    r = cli("diff", a, path, *extra, "--format", "json")
    assert r.code == code >= 2, r.err
    assert r.out == b""
    one_error(r.err)


def test_diff_nan_npy_is_an_error_not_a_verdict(corpora, tmp_path) -> None:
    x = np.ones((8, 4), np.float32)
    x[2, 1] = np.nan
    np.save(tmp_path / "nan.npy", x)
    r = cli("diff", str(corpora["a"]), str(tmp_path / "nan.npy"), "--format", "json")
    assert r.code >= 2, r.err
    one_error(r.err)


def test_diff_to_a_full_stdout_is_an_error(corpora, tmp_path) -> None:
    # The verdict would be "same" (0): the lost report must not look like it, nor like "different".
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    for args in ([corpora["a"], corpora["a"], "--permutations", "19"], [empty, empty, "--format", "table", "-q"]):
        with open("/dev/full", "wb") as full:
            code, err = run_raw(["diff", *map(str, args)], stdout=full)
        assert code == DiffExit.TROUBLE, err
        assert "no space left on device, writing stdout" in one_error(err).lower()


# --------------------------------------------------------------------------- usage errors


@pytest.mark.parametrize(
    "args",
    [[b"embed", b"\xff.jsonl"], [b"diff", b"a.jsonl", b"b-\xfe\xff.jsonl"], [b"embed", b"--text-field", b"t\xff"]],
)
def test_non_utf8_argument_is_a_usage_error(args: list[bytes], tmp_path) -> None:
    code, err = run_raw(args)
    assert code == ExitCode.USAGE, err
    line = one_error(err)
    assert "not valid UTF-8" in line
    bad = args[-1].decode("utf-8", "surrogateescape")
    assert printable(bad) in line and "\\x" in line  # the bytes, escaped


def test_non_utf8_embcli_variable_is_a_usage_error() -> None:
    code, err = run_raw(["embed"], env={"EMBCLI_MODEL": os.fsdecode(b"model-\xff")})
    assert code == ExitCode.USAGE, err
    assert "EMBCLI_MODEL=model-\\xff" in one_error(err)


@pytest.fixture(scope="module")
def small_index(corpora) -> Path:
    path = corpora["dir"] / "small.idx"
    r = cli("index", "-q", "-o", str(path), str(corpora["a"]))
    assert r.code == 0, r.err
    return path


@pytest.mark.parametrize(
    "where",
    ["(" * 5000 + "a = 1" + ")" * 5000, "NOT " * 5000 + "a = 1", " AND ".join(["a = 1"] * 5000)],
    ids=["parentheses", "nots", "conditions"],
)
def test_pathological_where_is_a_usage_error(small_index, where: str) -> None:
    query = orjson.dumps({"embedding": [0.1] * 8}) + b"\n"
    r = cli("search", str(small_index), "--where", where, input=query)
    assert r.code == ExitCode.USAGE, r.err
    assert one_error(r.err).startswith("embcli: error: --where: ")


def test_where_limits_are_what_sqlite_can_take() -> None:
    """The deepest and largest filters compile_where accepts run in SQLite; one level more is refused."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE items (key INTEGER, payload TEXT)")
    db.execute("""INSERT INTO items VALUES (1, '{"a": 1, "b": 2}')""")
    # SQLite's parser stack is the tightest on groups that hold both OR and AND.
    for wrap in ("({} OR a = 1 AND b = 2)", "NOT ({})", "(a = 1 AND b = 2 OR {})", "(b = 2 AND NOT {})"):
        expr = "a = 1"
        while True:
            deeper = wrap.format(expr)
            try:
                compile_where(deeper)
            except UsageError as e:
                assert f"more than {MAX_DEPTH} levels" in e.message
                break
            expr = deeper
        sql, params = compile_where(expr)
        db.execute(f"SELECT key FROM items WHERE {sql}", params).fetchall()
    # The longest chain, next to the deepest nesting, stays under SQLite's expression depth.
    nested = "NOT " * MAX_DEPTH + "a = 1"
    sql, params = compile_where(" OR ".join([nested] + ["b = 2"] * (MAX_CONDITIONS - 1)))
    assert db.execute(f"SELECT key FROM items WHERE {sql}", params).fetchall() == [(1,)]
    with pytest.raises(UsageError, match="conditions"):
        compile_where(" OR ".join(["b = 2"] * (MAX_CONDITIONS + 1)))


# --------------------------------------------------------------------------- no chatter


def test_quiet_embed_with_unwritable_home_prints_nothing(tmp_path) -> None:
    (tmp_path / "file").write_bytes(b"")
    home = tmp_path / "file" / "sub"  # under a regular file: not even root can create it
    with pytest.raises(NotADirectoryError):
        home.mkdir(parents=True)
    (tmp_path / "in.jsonl").write_bytes(b'{"text": "hello"}\n')
    args = ["embed", str(tmp_path / "in.jsonl")]
    env = {"HOME": str(home)}
    drop = ("XDG_CACHE_HOME", "ORT_DISABLE_TELEMETRY")  # onnxruntime's telemetry state goes under HOME
    out = tmp_path / "out"
    with open(out, "wb") as f:
        code, err = run_raw([*args, "-q"], stdout=f, env=env, drop=drop)
    assert (code, err) == (0, "")
    assert len(orjson.loads(out.read_bytes())["embedding"]) == 384
    code, err = run_raw(args, env=env, drop=drop)  # not quiet: still no library log line
    assert code == 0
    assert "onnxruntime" not in err and "\x1b[" not in err, err


def test_library_warnings_are_one_line_and_none_under_quiet(capsys) -> None:
    """The CLI's warnings.showwarning, as cli.run installs it, on a real multi-line warning."""
    from embcli.env import Env, using

    with warnings.catch_warnings(), using(Env()):  # restores showwarning and the filters; a run's own Env
        warnings.simplefilter("always")
        warnings.showwarning = _ui.show_warning
        warnings.warn("overflow encountered\nin matmul", RuntimeWarning, stacklevel=1)
        assert capsys.readouterr().err == "embcli: warning: RuntimeWarning: overflow encountered in matmul\n"
        _ui.silence()
        warnings.warn("more", RuntimeWarning, stacklevel=1)
        assert capsys.readouterr().err == ""


# --------------------------------------------------------------------------- hints and paths


def _options(command: str) -> set[str]:
    r = cli(command, "--help", env={"COLUMNS": "200"})
    assert r.code == 0, r.err
    return set(re.findall(r"--[a-z][a-z-]+", r.out.decode()))


@pytest.mark.parametrize("command", ["search", "index", "cluster", "embed"])
def test_hints_on_text_input_name_only_the_commands_options(command: str, small_index, tmp_path) -> None:
    args = {
        "search": ["search", str(small_index)],
        "index": ["index", "-o", str(tmp_path / "x.idx")],
        "cluster": ["cluster"],
        "embed": ["embed"],
    }[command]
    r = cli(*args, input="how do I resize images\nsecond line\n")
    assert r.code == ExitCode.BAD_INPUT, r.err
    one_error(r.err)
    named = set(re.findall(r"--[a-z][a-z-]+", r.err))
    assert named <= _options(command), r.err
    # A command that can read other formats says how; one that cannot (search's queries) does not.
    assert ("--input-format" in r.err) == ("--input-format" in _options(command)), r.err


def test_path_with_newline_is_escaped_in_the_error_line(tmp_path) -> None:
    bad = tmp_path / "evil\nembcli: error: forged.jsonl"
    bad.write_bytes(b"not json\n")
    r = cli("embed", "-q", str(bad))
    assert r.code == ExitCode.BAD_INPUT
    line = one_error(r.err)
    assert "evil\\nembcli: error: forged.jsonl line 1" in line
    missing = tmp_path / "no\nsuch\tfile.jsonl"
    r = cli("diff", str(missing), str(bad))
    assert r.code >= 2
    assert "no\\nsuch\\tfile.jsonl" in one_error(r.err)
