"""Shared helpers: run the real CLI in a subprocess and look at stdout, stderr and exit code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
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
    r = cli("embed", "-q", str(DATA / "packages-2000.jsonl"))
    assert r.code == 0, r.err
    path.write_bytes(r.out)
    return path
