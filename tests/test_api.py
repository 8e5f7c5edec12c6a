"""The Python API, in-process: the same results as the CLI, the same typed errors, and the README's example."""

from __future__ import annotations

import os
import re
import textwrap

import numpy as np
import orjson
import pytest
from conftest import DATA, ROOT, cli

import embcli


@pytest.fixture(scope="module")
def enc() -> embcli.Encoder:
    return embcli.Encoder(device="cpu")


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    with open(DATA / "packages-2000.jsonl", "rb") as f:
        return [orjson.loads(line) for _, line in zip(range(300), f, strict=False)]


def test_embed_gives_the_clis_bytes(enc, golden, tmp_path) -> None:
    texts = [g["text"] for g in golden]
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"".join(orjson.dumps({"text": t}) + b"\n" for t in texts))
    r = cli("embed", "-q", "--format", "npy", "-o", str(tmp_path / "v.npy"), str(src))
    assert r.code == 0, r.err
    vecs = enc.embed(texts)
    assert vecs.dtype == np.float32 and vecs.shape == (len(texts), 384)
    assert np.array_equal(vecs, np.load(tmp_path / "v.npy"))
    # And the fp32 reference, as the CLI tests require.
    ref = np.array([g["embedding"] for g in golden], dtype=np.float32)
    assert (np.sum(vecs * ref, axis=1) >= 0.998).all()
    assert enc.embed([]).shape == (0, 384)


def test_embed_records_match_the_cli_records(enc, docs, tmp_path) -> None:
    src = tmp_path / "docs.jsonl"
    src.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    r = cli("embed", "-q", str(src))
    assert r.code == 0, r.err
    got = list(enc.embed_records(docs))
    want = r.records()
    assert [g["id"] for g in got] == [w["id"] for w in want]
    for g, w in zip(got, want, strict=True):
        assert g["embedding_model"] == w["embedding_model"] == enc.provenance
        assert np.array_equal(g["embedding"], np.asarray(w["embedding"], dtype=np.float32))
        assert {k: v for k, v in g.items() if k != "embedding"} == {k: v for k, v in w.items() if k != "embedding"}


def test_index_build_and_search_match_the_cli(enc, docs, tmp_path) -> None:
    records = list(enc.embed_records(docs))
    api_idx = embcli.Index.build(tmp_path / "api.idx", records)
    assert len(api_idx) == len(docs) and api_idx.dims == 384
    assert api_idx.provenance == enc.provenance

    vec_file = tmp_path / "vec.jsonl"
    embcli.write_records(records, vec_file)
    assert cli("index", "-q", str(vec_file), "-o", str(tmp_path / "cli.idx")).code == 0
    queries = ["read and write YAML files", "http client library", "plot charts"]
    r = cli(
        "search",
        "-q",
        str(tmp_path / "cli.idx"),
        "-k",
        "5",
        input=b"".join(orjson.dumps({"text": q}) + b"\n" for q in queries),
    )
    assert r.code == 0, r.err
    hits = api_idx.search(queries, k=5)
    for per_query, line in zip(hits, r.records(), strict=True):
        assert [h.as_record() for h in per_query] == line["results"]
        assert [h.rank for h in per_query] == [1, 2, 3, 4, 5]
    # The same queries as vectors, and against the CLI-built index opened from Python.
    with embcli.Index.open(tmp_path / "cli.idx") as cli_idx:
        by_vector = cli_idx.search(enc.embed(queries), k=5)
    assert [[h.id for h in q] for q in by_vector] == [[h.id for h in q] for q in hits]


def test_search_filters_and_arrays(enc, docs, tmp_path) -> None:
    vectors = enc.embed([d["text"] for d in docs])
    idx = embcli.Index.build(tmp_path / "arr.idx", vectors, ids=[d["id"] for d in docs], model="all-MiniLM-L6-v2")
    top = idx.search([docs[7]["text"]], k=1)[0][0]
    assert top.id == docs[7]["id"] and top.score > 0.999  # text queries work: the model was recorded
    with_payload = embcli.Index.build(tmp_path / "rec.idx", enc.embed_records(docs))
    hits = with_payload.search(["json parsing"], k=10, where="year >= 2020 AND top = false")[0]
    assert len(hits) == 10 and all(h.payload["year"] >= 2020 and h.payload["top"] is False for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_errors_are_the_clis_typed_errors(enc, tmp_path) -> None:
    with pytest.raises(embcli.InputError, match="line 2"):
        list(enc.embed_records([{"text": "fine"}, {"title": "no text here"}]))
    assert [r["text"] for r in enc.embed_records([{"text": "a"}, {"nope": 1}, {"text": "b"}], skip_bad=True)] == [
        "a",
        "b",
    ]
    with pytest.raises(embcli.UsageError):
        enc.embed("one string, not a list")
    with pytest.raises(embcli.UsageError):
        embcli.Encoder(device="tpu")
    x = enc.embed(["a", "b"])
    x[1, 0] = np.nan
    with pytest.raises(embcli.InputError, match="row 2"):
        embcli.Index.build(tmp_path / "nan.idx", x)
    idx_path = tmp_path / "ok.idx"
    embcli.Index.build(idx_path, enc.embed(["a", "b", "c"]))
    vectors = next(p for p in idx_path.iterdir() if p.name.startswith("vectors."))
    vectors.write_bytes(b"\0" * vectors.stat().st_size)
    with pytest.raises(embcli.IncompatibleError):
        embcli.Index.open(idx_path)
    with pytest.raises(embcli.IncompatibleError, match="records no model"):
        embcli.Index.build(tmp_path / "bare.idx", enc.embed(["a", "b"])).search(["text query"])


def test_records_round_trip_through_files(tmp_path) -> None:
    records = [{"id": 1, "text": "a", "embedding": np.ones(3, dtype=np.float32)}, {"id": "x", "text": "b"}]
    assert embcli.write_records(records, tmp_path / "r.jsonl") == 2
    back = list(embcli.read_records(tmp_path / "r.jsonl"))
    assert back[0]["embedding"] == [1.0, 1.0, 1.0] and back[1] == {"id": "x", "text": "b"}
    with open(tmp_path / "r.jsonl", "rb") as f:
        assert len(list(embcli.read_records(f))) == 2
    matrix = np.arange(12, dtype=np.float32).reshape(4, 3)
    embcli.write_records(matrix, tmp_path / "m.npy")
    assert np.array_equal(np.load(tmp_path / "m.npy"), matrix)
    recs, again = embcli.read_vectors(tmp_path / "m.npy")
    assert np.array_equal(again, matrix) and recs == [{}] * 4
    (tmp_path / "bad.jsonl").write_bytes(b'{"text": "ok"}\n{not json\n')
    with pytest.raises(embcli.InputError, match="line 2"):
        list(embcli.read_records(tmp_path / "bad.jsonl"))


def test_notices_go_through_the_env() -> None:
    heard: list[str] = []
    with embcli.using(embcli.Env(on_notice=heard.append)) as env:
        from embcli.env import current

        current().notice("hello")
    assert heard == ["hello"] and env.said == ["hello"]
    with embcli.using(embcli.Env(quiet=True, on_notice=heard.append)) as env:
        current().notice("quiet")
    assert heard == ["hello"] and env.said == ["quiet"]


def test_readme_python_example_runs(tmp_path, monkeypatch) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python API", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "README's Python API section has no python example"
    monkeypatch.chdir(tmp_path)
    os.symlink(ROOT / "examples", tmp_path / "examples")
    for block in blocks:
        exec(compile(textwrap.dedent(block), "README.md", "exec"), {})


def test_readme_npy_stream_reader_reads_back_to_back_arrays(tmp_path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Formats", 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```python\n(.*?)```", section, flags=re.S)[0]
    namespace: dict = {}
    exec(compile(textwrap.dedent(block), "README.md", "exec"), namespace)
    r = cli("embed", "-q", "--format", "npy", input=b'{"text": "a"}\n')  # a pipe: one array per chunk
    stream = tmp_path / "stream.npy"
    stream.write_bytes(r.out + r.out)
    got = namespace["read_npy_stream"](stream)
    assert got.shape == (2, 384) and np.array_equal(got[0], got[1])
    assert np.array_equal(embcli.read_vectors(stream)[1], got)
