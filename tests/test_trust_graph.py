"""The default model gives the same bytes everywhere: one graph per device kind, built deterministically
by an explicit step; pins apply only to the runs that ask; resolving a model never builds one."""

from __future__ import annotations

import ast
import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest
from conftest import DATA, EXAMPLES, ROOT, cli

GOLDEN_TEXTS = str(DATA / "golden-all-MiniLM-L6-v2.jsonl")
VEC = ("--vector-field", "vec")  # the golden records carry the reference vectors as "embedding"
BUILDERS = {
    "embcli.build.defaultgraph",
    "embcli.build.graphcheck",
    "embcli.build.modelimport",
    "embcli.build.onnx_build",
}


def _graph_records(graphs) -> dict[str, dict]:
    return {p.parent.name: orjson.loads(p.read_bytes()) for p in graphs.glob("*/*/graph.json")}


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> dict[str, dict]:
    """Two graph caches built from nothing by separate processes, and what they gave.

    Cache a gets two first runs at once (one builds, the other waits on the lock and uses that
    build); cache b is the session's own, built from nothing by conftest's first run (in CI; a
    developer's EMBCLI_GRAPHS_DIR was built from nothing too, by the same version).
    """
    root = tmp_path_factory.mktemp("fresh")
    first = {
        i: subprocess.Popen(
            [sys.executable, "-m", "embcli", "embed", *VEC, GOLDEN_TEXTS],
            env={**_env(), "EMBCLI_GRAPHS_DIR": str(root / "a")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in (0, 1)
    }
    done = {i: (p.communicate(timeout=600), p.returncode) for i, p in first.items()}
    for (_, err), code in done.values():
        assert code == 0, err.decode()
    assert done[0][0][0] == done[1][0][0]
    first_err = b"".join(done[i][0][1] for i in (0, 1)).decode()
    assert first_err.count("building the fused graph") == 1, "two first runs on one cache built the graph twice"
    runs: dict[str, dict] = {}
    for name, graphs in (("a", root / "a"), ("b", Path(os.environ["EMBCLI_GRAPHS_DIR"]))):
        env = {"EMBCLI_GRAPHS_DIR": str(graphs)}
        jsonl = cli("embed", *VEC, GOLDEN_TEXTS, env=env)
        assert jsonl.code == 0 and "building" not in jsonl.err, jsonl.err
        npy = cli("embed", "-q", "--format", "npy", *VEC, GOLDEN_TEXTS, env=env)
        info = cli("models", "info", "--json", env=env)
        assert npy.code == info.code == 0, npy.err + info.err
        runs[name] = {
            "env": env,
            "dir": graphs,
            "jsonl": jsonl.out,
            "npy": npy.out,
            "info": orjson.loads(info.out),
            "records": _graph_records(graphs),
        }
    assert runs["a"]["jsonl"] == done[0][0][0]
    runs["a"]["first_err"] = first_err
    return runs


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "EMBCLI_MODEL"} | {"HF_HUB_OFFLINE": "1"}


def test_two_fresh_builds_give_the_same_graph_and_the_same_bytes(fresh, golden):
    a, b = fresh["a"], fresh["b"]
    rec_a, rec_b = (next(r for r in x["records"].values() if r["kind"] == "fused") for x in (a, b))
    assert len(a["records"]) == 1 and set(a["records"]) <= set(b["records"])  # one slot: no per-machine key
    assert rec_a["kind"] == "fused" and rec_a["sha256"] == rec_b["sha256"]
    (graph_a,), (graph_b,) = (list(r["dir"].glob("*/*/model.fused.onnx")) for r in (a, b))
    assert graph_a.read_bytes() == graph_b.read_bytes()
    # The build itself: said once, gated (the plain fp32 graph, then the fused one, within 1e-4 of numpy).
    assert "using the fused graph" in a["first_err"]
    assert all(g["precision"] == "fp32" and g["max_abs"] <= 1e-4 for g in rec_a["gates"])
    assert a["info"]["sha256"] == b["info"]["sha256"] == rec_a["sha256"] == a["info"]["sha256_pinned"]
    assert a["info"]["graph"]["kind"] == "fused" and "fixed cpu graph" in a["info"]["graph"]["why"]
    assert a["jsonl"] == b["jsonl"] and a["npy"] == b["npy"]
    assert np.load(io.BytesIO(a["npy"])).shape == (len(a["jsonl"].splitlines()), 384)
    got = np.array([orjson.loads(line)["vec"] for line in a["jsonl"].splitlines()])
    want = np.array([g["embedding"] for g in golden])
    assert (np.einsum("ij,ij->i", got, want) / np.linalg.norm(want, axis=1)).min() >= 0.9999  # exact fp32


def test_a_corrupt_graph_is_rebuilt_with_the_same_bytes(fresh, tmp_path):
    graphs = tmp_path / "graphs"
    shutil.copytree(fresh["a"]["dir"], graphs)
    env = {"EMBCLI_GRAPHS_DIR": str(graphs)}
    (graph,) = graphs.glob("*/*/model.fused.onnx")
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    r = cli("embed", *VEC, GOLDEN_TEXTS, env=env)
    assert r.code == 0, r.err
    assert "corrupt (sha256 mismatch)" in r.err and "rebuilding it" in r.err
    assert r.out == fresh["a"]["jsonl"]
    sha = [next(iter(r.values()))["sha256"] for r in (_graph_records(graphs), fresh["a"]["records"])]
    assert sha[0] == sha[1]  # deterministic: the same bytes again
    again = cli("embed", *VEC, GOLDEN_TEXTS, env=env)
    assert again.code == 0 and "building" not in again.err and again.out == fresh["a"]["jsonl"]


def test_a_pin_applies_only_to_the_runs_that_ask_for_it(fresh, golden):
    """An int8 pin: built in a slot of its own, gated on real text, and no other run sees it."""
    a = fresh["a"]
    built = cli("models", "build-default", "--graph", "int8", env=a["env"])
    pinned_env = {**a["env"], "EMBCLI_DEFAULT_GRAPH": "int8"}
    if built.code != 0:  # refused: then it must say why, with the figures
        assert "fails the accuracy gate: cosine min" in built.err
    else:
        assert "building the int8 graph" in built.err
        (record,) = (r for r in _graph_records(a["dir"]).values() if r["kind"] == "int8")
        gate = record["gates"][-1]
        assert gate["precision"] == "int8" and gate["golden_min"] >= 0.998 and gate["real_min"] >= 0.995
        pinned = cli("embed", *VEC, GOLDEN_TEXTS, env=pinned_env)
        assert pinned.code == 0 and "building" not in pinned.err, pinned.err  # built above
        pinned_info = orjson.loads(cli("models", "info", "--json", env=pinned_env).out)
        assert pinned_info["graph"]["kind"] == "int8" and pinned_info["sha256"] != a["info"]["sha256"]
        assert "pinned" in pinned_info["graph"]["why"]
        got = np.array([r["vec"] for r in pinned.records()])
        want = np.array([g["embedding"] for g in golden])
        assert (np.einsum("ij,ij->i", got, want) / np.linalg.norm(want, axis=1)).min() >= 0.998
        # Real text against the exact fused fp32 default (the gate above saw other real text).
        packages = str(EXAMPLES / "packages.jsonl")
        mine = cli("embed", "-q", "--format", "npy", packages, env=pinned_env)
        exact = cli("embed", "-q", "--format", "npy", packages, env=a["env"])
        x, y = (np.load(io.BytesIO(r.out)) for r in (mine, exact))
        assert np.einsum("ij,ij->i", x, y).min() >= 0.995
    # Later unpinned runs get exactly what they got before the pin.
    after = cli("embed", *VEC, GOLDEN_TEXTS, env=a["env"])
    assert after.code == 0 and after.out == a["jsonl"]
    assert orjson.loads(cli("models", "info", "--json", env=a["env"]).out) == a["info"]


def test_an_unwritable_cache_builds_the_same_graph_for_the_run(fresh, tmp_path):
    """The same graph is built for the run alone: the same bytes as a cached run, and one notice saying why."""
    (tmp_path / "file").write_text("a regular file: nobody, root included, can make a directory under it")
    env = {"EMBCLI_GRAPHS_DIR": str(tmp_path / "file" / "graphs")}
    r = cli("embed", *VEC, GOLDEN_TEXTS, env=env)
    assert r.code == 0, r.err
    notices = [line for line in r.err.splitlines() if "graph cache" in line]
    assert len(notices) == 1 and "cannot write the graph cache" in notices[0], r.err
    assert "EMBCLI_GRAPHS_DIR" in notices[0] and "faster" in notices[0] and "shipped" not in r.err
    assert r.out == fresh["a"]["jsonl"]
    assert not (tmp_path / "file").is_dir()


def test_npy_onto_a_redirected_stdout_is_one_standard_array(tmp_path):
    texts = b"".join(orjson.dumps({"text": f"text number {i}"}) + b"\n" for i in range(4100))  # more than one chunk
    target = tmp_path / "v.npy"
    with open(target, "wb") as stdout:
        p = subprocess.run(
            [sys.executable, "-m", "embcli", "embed", "-q", "--format", "npy"],
            input=texts,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=_env(),
            timeout=600,
        )
    assert p.returncode == 0, p.stderr
    whole = np.load(target)
    assert whole.shape == (4100, 384)
    # A real pipe gets back-to-back arrays (the row count is not known up front), with the same rows.
    piped = cli("embed", "-q", "--format", "npy", input=texts)
    first = np.load(io.BytesIO(piped.out))
    assert len(first) < 4100
    np.testing.assert_array_equal(first, whole[: len(first)])
    assert len(piped.out) > target.stat().st_size  # more than one header


def test_resolving_the_built_in_model_never_builds(tmp_path, monkeypatch):
    from embcli.errors import EmbcliError
    from embcli.store.models import resolve_model

    monkeypatch.setenv("EMBCLI_GRAPHS_DIR", str(tmp_path / "graphs"))
    with pytest.raises(EmbcliError, match="graph of built-in model 'all-MiniLM-L6-v2' is not built yet") as e:
        resolve_model(None)
    assert e.value.exit_code == 1 and "build-default" in e.value.hint
    assert not (tmp_path / "graphs").exists()  # nothing written, nothing built


def _imports(module: str) -> set[str]:
    """The embcli modules ``module``'s source imports anywhere (top level or inside functions)."""
    path = ROOT / (module.replace(".", "/") + ".py")
    if not path.is_file():
        path = ROOT / module.replace(".", "/") / "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in found if m.startswith("embcli") and _is_module(m)}


def _is_module(name: str) -> bool:
    base = ROOT / name.replace(".", "/")
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def test_model_resolution_cannot_reach_the_builders():
    closure, todo = set(), ["embcli.store.models"]
    while todo:
        module = todo.pop()
        if module not in closure:
            closure.add(module)
            todo.extend(_imports(module))
    assert "embcli.store.graphs" in closure  # the walk follows lazy imports
    assert not closure & BUILDERS, sorted(closure & BUILDERS)
