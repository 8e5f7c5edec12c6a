"""Query-drift adapters: diff --fit-adapter, search/embed/index --adapter and the Python API, on real text.

The "new model" is the built-in model run another way, as the issue allows when a second model
cannot be shipped with the tests: CLS pooling (same width: Procrustes) and 128-d Matryoshka
truncation (another width: ridge). Both are real shifts: MiniLM was trained for mean pooling and
not for truncation, so a search of the old index with their vectors as they are loses hits.
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from conftest import DATA, cli_inproc

import embcli

QUERIES = [
    "read excel spreadsheets into dataframes",
    "asynchronous http client",
    "command line argument parsing",
    "train neural networks on gpus",
    "parse and validate json schemas",
    "image resizing and thumbnails",
    "send email with smtp",
    "django rest api framework",
]


def _ok(r, code: int = 0):
    assert r.code == code, r.err
    return r


@pytest.fixture(scope="module")
def sides(tmp_path_factory, packages_vec):
    """The 2,000 package summaries embedded by the old way (mean pooling) and the two new ways."""
    d = tmp_path_factory.mktemp("adapter")
    src = str(DATA / "packages-2000.jsonl")
    (d / "cls.jsonl").write_bytes(_ok(cli_inproc("embed", "-q", src, "--pooling", "cls")).out)
    (d / "d128.jsonl").write_bytes(_ok(cli_inproc("embed", "-q", src, "--dims", "128")).out)
    _ok(cli_inproc("index", "-q", str(packages_vec), "-o", str(d / "old.idx")))
    return d


@pytest.fixture(scope="module")
def cls_adapter(sides, packages_vec):
    path = sides / "cls.npz"
    r = cli_inproc("diff", str(packages_vec), str(sides / "cls.jsonl"), "--by", "id", "--fit-adapter", str(path))
    assert r.code == 1, r.err  # the models differ: diff(1) says so, and the adapter is written all the same
    return path, orjson.loads(r.out)["adapter"]


def _hits(r) -> list[list]:
    return [[h["id"] for h in rec["results"]] for rec in r.records()]


def _search(index, *extra: str) -> list[list]:
    args = [x for q in QUERIES for x in ("--query", q)]
    return _hits(_ok(cli_inproc("search", "-q", str(index), *args, "-k", "10", *extra)))


def _recall(got: list[list], want: list[list]) -> float:
    return float(np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got, want, strict=True)]))


def test_fit_procrustes_reports_held_out_figures_before_and_after(cls_adapter):
    path, fit = cls_adapter
    assert fit["kind"] == "procrustes"
    assert (fit["pairs"], fit["train"], fit["held_out"]) == (2000, 1600, 400)
    assert fit["after"]["cosine"] > fit["before"]["cosine"] + 0.1
    assert fit["after"]["overlap@10"] > fit["before"]["overlap@10"]
    adapter = embcli.load_adapter(path)
    assert adapter.new["pooling"] == "cls" and adapter.old["pooling"] == "mean"
    assert np.allclose(adapter.weight.T @ adapter.weight, np.eye(384), atol=1e-4)  # a rotation


def test_fit_is_deterministic_by_seed(sides, packages_vec, cls_adapter, tmp_path):
    path, _ = cls_adapter
    again, other = tmp_path / "again.npz", tmp_path / "other.npz"
    for out, seed in ((again, "0"), (other, "1")):
        args = ["diff", str(packages_vec), str(sides / "cls.jsonl"), "--by", "id", "--seed", seed]
        _ok(cli_inproc(*args, "--fit-adapter", str(out)), 1)
    assert again.read_bytes() == path.read_bytes()
    assert other.read_bytes() != path.read_bytes()


def test_search_through_an_adapter_finds_what_the_old_model_finds(sides, cls_adapter):
    path, _ = cls_adapter
    index = sides / "old.idx"
    old = _search(index)
    adapted = _search(index, "--adapter", str(path), "-m", "all-MiniLM-L6-v2")
    assert _recall(adapted, old) >= 0.5
    # The same as embedding by the new model, mapping, and searching with the vectors.
    mapped = embcli.load_adapter(path).map(embcli.Encoder(pooling="cls").embed(QUERIES))
    with embcli.Index.open(index) as idx:
        assert [[h.id for h in hits] for hits in idx.search(mapped, k=10)] == adapted


def test_ridge_adapter_maps_another_width(sides, packages_vec, tmp_path):
    path = tmp_path / "d128.npz"
    args = ["diff", str(packages_vec), str(sides / "d128.jsonl"), "--by", "id", "--fit-adapter", str(path)]
    fit = orjson.loads(_ok(cli_inproc(*args, "--adapter-kind", "auto"), 1).out)["adapter"]
    assert fit["kind"] == "ridge" and fit["before"]["cosine"] is None
    assert fit["after"]["overlap@10"] > 0.4
    old = _search(sides / "old.idx")
    adapted = _search(sides / "old.idx", "--adapter", str(path))
    assert _recall(adapted, old) >= 0.5
    r = cli_inproc(*args, "--adapter-kind", "procrustes")
    assert r.code == 2 and "Procrustes maps spaces of one width" in r.err


def test_python_api_fits_and_searches_as_the_cli(sides, packages_vec, cls_adapter, tmp_path):
    path, fit = cls_adapter
    adapter = embcli.fit_adapter(packages_vec, sides / "cls.jsonl", path=tmp_path / "api.npz")
    assert (tmp_path / "api.npz").read_bytes() == path.read_bytes()
    assert adapter.meta["fit"]["after"] == fit["after"]
    with embcli.Index.open(sides / "old.idx", adapter=adapter) as idx:
        api = [[h.id for h in hits] for hits in idx.search(QUERIES, k=10)]
    assert api == _search(sides / "old.idx", "--adapter", str(path))


def test_an_adapter_of_other_models_is_refused_naming_both(sides, cls_adapter, tmp_path):
    path, _ = cls_adapter
    other = tmp_path / "d128.idx"
    _ok(cli_inproc("index", "-q", str(sides / "d128.jsonl"), "-o", str(other)))
    r = cli_inproc("search", str(other), "--adapter", str(path), "--query", "http client")
    assert r.code == 4 and r.out == b""
    assert "cls pooling" in r.err and "128-d" in r.err and r.err.count("\n") <= 2
    with pytest.raises(embcli.IncompatibleError, match="128-d"):
        embcli.Index.open(other, adapter=path)
    # The adapter's new model, run another way than it was fitted for, is refused too.
    r = cli_inproc("embed", "--adapter", str(path), "--pooling", "max", input='{"text": "x"}\n')
    assert r.code == 4 and "max pooling" in r.err and "cls pooling" in r.err


def test_embed_with_adapter_appends_to_the_old_index_only_with_that_adapter(sides, packages_vec, cls_adapter, tmp_path):
    path, _ = cls_adapter
    docs = '{"id": "new-xls", "text": "Read and write Excel xlsx spreadsheets from pandas"}\n'
    mapped = _ok(cli_inproc("embed", "-q", "--adapter", str(path), input=docs)).records()
    prov = mapped[0]["embedding_model"]
    assert prov["pooling"] == "mean" and prov["adapter"]["from"]["pooling"] == "cls"
    assert abs(np.linalg.norm(mapped[0]["embedding"]) - 1) < 1e-5  # normalized as the old index expects
    src = tmp_path / "mapped.jsonl"
    src.write_bytes(b"".join(orjson.dumps(m) + b"\n" for m in mapped))
    index = tmp_path / "old.idx"
    _ok(cli_inproc("index", "-q", str(packages_vec), "-o", str(index)))

    r = cli_inproc("index", "-q", str(src), "--append", "-o", str(index))
    assert r.code == 4 and "--adapter" in r.err
    d128 = tmp_path / "d128.npz"
    _ok(cli_inproc("diff", str(packages_vec), str(sides / "d128.jsonl"), "--by", "id", "--fit-adapter", str(d128)), 1)
    r = cli_inproc("index", "-q", str(src), "--append", "-o", str(index), "--adapter", str(d128))
    assert r.code == 4 and "not by the adapter given" in r.err
    assert len(embcli.Index.open(index)) == 2000  # both refusals left the index as it was

    _ok(cli_inproc("index", "-q", str(src), "--append", "-o", str(index), "--adapter", str(path)))
    with embcli.Index.open(index) as idx:
        assert len(idx) == 2001
        assert idx.search(["excel spreadsheets in pandas"], k=3)[0][0].id == "new-xls"


def test_bad_adapter_files(sides, tmp_path):
    index = str(sides / "old.idx")
    r = cli_inproc("search", index, "--adapter", str(tmp_path / "missing.npz"), "--query", "x")
    assert r.code == 2 and "missing.npz" in r.err
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    r = cli_inproc("search", index, "--adapter", str(junk), "--query", "x")
    assert r.code == 4 and "junk.npz" in r.err


def test_fit_adapter_needs_by_and_provenance(sides, packages_vec, tmp_path):
    out = str(tmp_path / "a.npz")
    r = cli_inproc("diff", str(packages_vec), str(sides / "cls.jsonl"), "--fit-adapter", out)
    assert r.code == 2 and "--by" in r.err
    bare = tmp_path / "bare.jsonl"
    bare.write_bytes(
        b"".join(
            orjson.dumps({k: v for k, v in orjson.loads(line).items() if k != "embedding_model"}) + b"\n"
            for line in (sides / "cls.jsonl").read_bytes().splitlines()
        )
    )
    r = cli_inproc("diff", str(packages_vec), str(bare), "--by", "id", "--fit-adapter", out)
    assert r.code == 3 and "embedding_model" in r.err
    assert not (tmp_path / "a.npz").exists()
