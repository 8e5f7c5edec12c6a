"""Shared helpers: run the real CLI (in a subprocess, or in-process) and look at stdout, stderr and exit code."""

from __future__ import annotations

import gc
import io
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parent.parent
EXAMPLES = ROOT / "examples"


@dataclass
class Result:
    code: int
    out: bytes
    err: str

    def records(self) -> list[dict]:
        return [orjson.loads(line) for line in self.out.splitlines()]


def cli(*args: str, input: bytes | str = b"", env: dict | None = None, cwd: Path | None = None) -> Result:
    """Run ``embcli ARGS`` through its real entry point (``python -m embcli``)."""
    if isinstance(input, str):
        input = input.encode()
    full_env = {k: v for k, v in os.environ.items() if k != "EMBCLI_MODEL"}
    full_env.update({"HF_HUB_OFFLINE": "1", **(env or {})})
    p = subprocess.run(
        [sys.executable, "-m", "embcli", *args], input=input, capture_output=True, env=full_env, cwd=cwd, timeout=600
    )
    return Result(p.returncode, p.stdout, p.stderr.decode("utf-8", "replace"))


class _Output(io.BytesIO):
    """stdout's bytes, kept readable after a command closes its stream."""

    def close(self) -> None:
        self.flush()


def cli_inproc(*args: str, input: bytes | str = b"", env: dict | None = None, cwd: Path | None = None) -> Result:
    """Run ``embcli ARGS`` in this process: ``embcli.cli.run`` with stdin/stdout/stderr as buffers.

    The same Typer app, commands and exit-code mapping as ``cli()``, without a Python and
    onnxruntime start-up per call. For tests of what a command computes; anything that needs a
    process of its own (signals, pipes, file descriptors, process exit, lazy imports, stderr
    written by native code) uses ``cli()``. Everything a run may change process-wide is put back
    afterwards, and a run that leaves a thread or a file descriptor behind fails the test.
    """
    if isinstance(input, str):
        input = input.encode()
    from embcli import cli as entry

    out, err = _Output(), io.StringIO()
    stdin = io.TextIOWrapper(io.BufferedReader(io.BytesIO(input)), encoding="utf-8")
    stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
    saved = _ProcessState.save()
    try:
        os.environ.pop("EMBCLI_MODEL", None)
        os.environ.update({"HF_HUB_OFFLINE": "1", **(env or {})})
        if cwd is not None:
            os.chdir(cwd)
        sys.stdin, sys.stdout, sys.stderr = stdin, stdout, err
        try:  # run() makes the run's own Env (quiet, debug, notices), as main() does
            code = entry.run(list(args))
        except SystemExit as e:  # pragma: no cover - run() returns codes; a stray exit still counts
            code = e.code if isinstance(e.code, int) else 1
        stdout.flush()
    finally:
        saved.restore()
    saved.check_nothing_left()
    return Result(int(code), out.getvalue(), err.getvalue())


_SIGNALS = [getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGPIPE") if hasattr(signal, name)]


@dataclass
class _ProcessState:
    """What an in-process run may change for the rest of the process, saved to be put back."""

    environ: dict
    cwd: str
    streams: tuple
    handlers: dict
    showwarning: object
    last_resort: object
    threads: set
    fds: set

    @classmethod
    def save(cls) -> _ProcessState:
        return cls(
            dict(os.environ),
            os.getcwd(),
            (sys.stdin, sys.stdout, sys.stderr),
            {sig: signal.getsignal(sig) for sig in _SIGNALS},
            warnings.showwarning,
            logging.lastResort,
            set(threading.enumerate()),
            _open_fds(),
        )

    def restore(self) -> None:
        sys.stdin, sys.stdout, sys.stderr = self.streams
        os.chdir(self.cwd)
        os.environ.clear()
        os.environ.update(self.environ)
        for sig, handler in self.handlers.items():
            signal.signal(sig, handler)
        warnings.showwarning = self.showwarning
        logging.lastResort = self.last_resort

    def check_nothing_left(self) -> None:
        for t in set(threading.enumerate()) - self.threads:
            t.join(timeout=30)  # a reader thread finishing its last read
            assert not t.is_alive(), f"an in-process run left thread {t.name!r} running"
        gc.collect()  # a file object dropped without close() is closed here, as at process exit
        left = [fd for fd in _describe_fds(_open_fds() - self.fds) if _LIBRARY_FILES not in fd]
        assert not left, f"an in-process run left file descriptors open: {left}"


# onnxruntime opens its usage database once per process, on its first session, and keeps it.
_LIBRARY_FILES = "/.onnxruntime/"


def _open_fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")} if os.path.isdir("/proc/self/fd") else set()


def _describe_fds(fds: set[int]) -> list[str]:
    names = []
    for fd in sorted(fds):
        try:
            names.append(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            names.append(str(fd))  # closed since: listdir's own descriptor
    return names


def pytest_configure(config) -> None:
    # The built-in model runs a graph built from its fp32 weights on first use: tests get a
    # cache of their own (set EMBCLI_GRAPHS_DIR to keep one between runs), built once below.
    if "EMBCLI_GRAPHS_DIR" not in os.environ:
        os.environ["EMBCLI_GRAPHS_DIR"] = tempfile.mkdtemp(prefix="embcli-graphs-")
        config._embcli_graphs = os.environ["EMBCLI_GRAPHS_DIR"]
    os.environ.pop("EMBCLI_DEFAULT_GRAPH", None)


def pytest_unconfigure(config) -> None:
    if hasattr(config, "_embcli_graphs"):
        shutil.rmtree(config._embcli_graphs, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def default_graph_built() -> None:
    """Build the default graph before any test reads stderr (the first build says so there)."""
    r = cli("embed", "-q", input='{"text": "warm up"}\n')
    assert r.code == 0, r.err


@pytest.fixture(scope="session")
def golden() -> list[dict]:
    with open(DATA / "golden-all-MiniLM-L6-v2.jsonl", "rb") as f:
        return [orjson.loads(line) for line in f]


def make_model_dir(dst: Path, **json_files: dict) -> Path:
    """A sentence-transformers directory built from the built-in model's real files.

    ``json_files`` adds or replaces configs, e.g. ``config_sentence_transformers={...}``.
    """
    import shutil

    from embcli.store.models import resolve_model

    spec = resolve_model("all-MiniLM-L6-v2")
    shutil.copytree(spec.directory, dst)
    (dst / "onnx").mkdir()
    (dst / "onnx" / "model.onnx").symlink_to(spec.onnx_path)
    for name, content in json_files.items():
        (dst / f"{name}.json").write_bytes(orjson.dumps(content))
    return dst


@pytest.fixture(scope="session")
def packages_vec(tmp_path_factory) -> Path:
    """The 2,000 real package summaries (tests/data), embedded once per test session."""
    path = tmp_path_factory.mktemp("packages") / "vec.jsonl"
    r = cli_inproc("embed", "-q", str(DATA / "packages-2000.jsonl"))
    assert r.code == 0, r.err
    path.write_bytes(r.out)
    return path


@pytest.fixture(scope="session")
def examples_vec(tmp_path_factory) -> Path:
    """examples/packages.jsonl (300 package summaries), embedded once per test session."""
    path = tmp_path_factory.mktemp("examples") / "vec.jsonl"
    r = cli_inproc("embed", "-q", str(EXAMPLES / "packages.jsonl"))
    assert r.code == 0, r.err
    path.write_bytes(r.out)
    return path
