"""embcli index and search on real embeddings: round trips, upserts, filters, corruption."""

from __future__ import annotations

import shutil

import numpy as np
import orjson
import pytest
from conftest import cli, cli_inproc


@pytest.fixture(scope="module")
def corpus(packages_vec, tmp_path_factory) -> dict:
    """A default index of the embedded package summaries."""
    d = tmp_path_factory.mktemp("corpus")
    r = cli_inproc("index", "-q", "-o", str(d / "pk.idx"), str(packages_vec))
    assert r.code == 0, r.err
    return {"dir": d, "vec": packages_vec, "idx": d / "pk.idx", "records": _records(packages_vec)}


def _records(path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _queries(records: list[dict], fields=("id", "text")) -> bytes:
    return b"".join(orjson.dumps({f"q{f}": rec[f] for f in fields} | {"text": rec["text"]}) + b"\n" for rec in records)


def _ids(r) -> list[list]:
    assert r.code == 0, r.err
    return [[h["id"] for h in rec["results"]] for rec in r.records()]


def test_each_document_finds_itself_and_exact_agrees(corpus):
    recs = corpus["records"]
    queries = _queries(recs)
    ann = cli_inproc("search", str(corpus["idx"]), "-k", "3", input=queries)
    # Exact search with the documents' own vectors: the same queries, without embedding them again.
    exact = cli_inproc("search", str(corpus["idx"]), "-k", "3", "--exact", input=corpus["vec"].read_bytes())
    ann_ids, exact_ids = _ids(ann), _ids(exact)
    vectors = {rec["id"]: np.array(rec["embedding"]) for rec in recs}
    for rec, got, out, ex in zip(recs, ann_ids, ann.records(), exact_ids, strict=True):
        assert out["qid"] == rec["id"]
        # Its own text finds the document first, or a duplicate summary with the same vector.
        top = out["results"][0]
        assert top["id"] == rec["id"] or np.allclose(vectors[top["id"]], vectors[rec["id"]], atol=1e-6), (
            rec["id"],
            got,
        )
        assert top["score"] > 0.999
        assert np.allclose(vectors[got[0]], vectors[ex[0]], atol=1e-6)


def test_hits_carry_payload_and_flat_output(corpus):
    r = cli_inproc("search", str(corpus["idx"]), "-k", "2", input='{"qid": 7, "text": "http client library"}\n')
    (out,) = r.records()
    assert out["qid"] == 7 and out["text"] == "http client library"
    hit = out["results"][0]
    assert set(hit) == {"id", "score", "rank", "text", "year", "top"} and hit["rank"] == 1
    r = cli_inproc(
        "search", str(corpus["idx"]), "-k", "2", "--flat", input='{"qid": 7, "text": "http client library"}\n'
    )
    flat = r.records()
    assert [h["rank"] for h in flat] == [1, 2] and flat[0]["query"] == {"qid": 7, "text": "http client library"}
    assert flat[0]["id"] == hit["id"]


def test_text_query_scores_equal_hand_embedded_query(corpus):
    q = '{"text": "tools for scientific computing with arrays"}\n'
    by_text = cli_inproc("search", str(corpus["idx"]), "-k", "5", "--exact", input=q).records()[0]["results"]
    embedded = cli_inproc("embed", "-q", input=q).out
    by_vec = cli_inproc("search", str(corpus["idx"]), "-k", "5", "--exact", input=embedded).records()[0]["results"]
    assert by_text == by_vec
    # NPY queries give the same hits.
    npy = cli_inproc("embed", "-q", "--format", "npy", input=q).out
    assert cli_inproc("search", str(corpus["idx"]), "-k", "5", "--exact", input=npy).records()[0]["results"] == by_vec


@pytest.mark.parametrize("where", ["year <= 2010", "year >= 2025"], ids=["selective", "broad"])
def test_filtered_search_recall(corpus, where):
    recs = corpus["records"]
    queries = _queries(recs[::10])
    exact = _ids(cli_inproc("search", str(corpus["idx"]), "-k", "10", "--exact", "--where", where, input=queries))
    allowed = {rec["id"] for rec in recs if eval(where.replace("=<", "<="), {}, {"year": rec["year"]})}
    # Default strategy, and the HNSW graph forced for every filter (oversampling and widening).
    for extra in ([], ["--full-scan-threshold", "0"]):
        got = _ids(cli_inproc("search", str(corpus["idx"]), "-k", "10", "--where", where, *extra, input=queries))
        assert all(set(hits) <= allowed for hits in got)
        assert all(len(hits) == min(10, len(allowed)) for hits in got)
        recall = np.mean([len(set(g) & set(e)) / len(e) for g, e in zip(got, exact, strict=True)])
        assert recall >= 0.95, (where, extra, recall)


def test_where_errors_are_usage_errors(corpus):
    r = cli_inproc("search", str(corpus["idx"]), "--where", "year >", input='{"text": "x"}\n')
    assert r.code == 2 and "--where" in r.err and r.out == b""


def test_upsert_append_and_delete(corpus, tmp_path):
    idx = tmp_path / "small.idx"
    shutil.copytree(corpus["idx"], idx)
    probe = b'{"text": "a brand new package for quantum llama grooming"}\n'
    new = cli_inproc(
        "embed", "-q", input=b'{"id": "llama-groomer", "text": "quantum llama grooming toolkit", "year": 2026}\n'
    ).out
    r = cli_inproc("index", "--append", "-o", str(idx), input=new)
    assert r.code == 0 and "1 new, 0 replaced" in r.err
    assert _ids(cli_inproc("search", str(idx), "-k", "1", input=probe))[0] == ["llama-groomer"]
    # Upsert: same id, new text and payload.
    changed = cli_inproc(
        "embed", "-q", input=b'{"id": "llama-groomer", "text": "database migrations", "year": 2020}\n'
    ).out
    r = cli_inproc("index", "--append", "-o", str(idx), input=changed)
    assert "0 new, 1 replaced" in r.err
    hits = cli_inproc("search", str(idx), "-k", "1", input=b'{"text": "database migrations"}\n').records()[0]["results"]
    assert hits[0]["id"] == "llama-groomer" and hits[0]["year"] == 2020
    assert "llama-groomer" not in _ids(cli_inproc("search", str(idx), "-k", "1", input=probe))[0]
    manifest = orjson.loads((idx / "manifest.json").read_bytes())
    assert manifest["count"] == 2001
    (tmp_path / "ids.txt").write_text("llama-groomer\nnot-there\n")
    r = cli_inproc("index", str(idx), "--delete-ids", str(tmp_path / "ids.txt"))
    assert r.code == 0 and "deleted 1 of the given ids" in r.err and "2,000 vectors remain" in r.err
    r = cli_inproc(
        "search", str(idx), "-k", "3", "--where", "id = 'llama-groomer'", input=b'{"text": "database migrations"}\n'
    )
    assert r.records()[0]["results"] == []


def test_append_from_another_model_or_dimension_is_refused(corpus, tmp_path):
    idx = tmp_path / "m.idx"
    shutil.copytree(corpus["idx"], idx)
    before = (idx / "manifest.json").read_bytes()
    short = cli_inproc("embed", "-q", "--dims", "128", input=b'{"id": "x", "text": "some text"}\n').out
    r = cli_inproc("index", "--append", "-o", str(idx), input=short)
    assert r.code == 4 and "another model or options" in r.err
    prompted = cli_inproc("embed", "-q", "--prompt", "query: ", input=b'{"id": "x", "text": "some text"}\n').out
    r = cli_inproc("index", "--append", "-o", str(idx), input=prompted)
    assert r.code == 4 and "prompt 'query: '" in r.err
    assert (idx / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in idx.iterdir()) == sorted(p.name for p in corpus["idx"].iterdir())


def test_npy_with_ids_and_model(corpus, tmp_path):
    texts = b"".join(orjson.dumps({"text": rec["text"]}) + b"\n" for rec in corpus["records"][:50])
    (tmp_path / "v.npy").write_bytes(b"")
    assert cli_inproc("embed", "-q", "-o", str(tmp_path / "v.npy"), input=texts).code == 0
    assert np.load(tmp_path / "v.npy").shape == (50, 384)  # -o FILE.npy is one standard array
    (tmp_path / "ids.txt").write_text("".join(f"{rec['id']}\n" for rec in corpus["records"][:50]))
    r = cli_inproc(
        "index",
        "-o",
        str(tmp_path / "n.idx"),
        "--ids",
        str(tmp_path / "ids.txt"),
        "-m",
        "all-MiniLM-L6-v2",
        str(tmp_path / "v.npy"),
    )
    assert r.code == 0, r.err
    got = _ids(cli_inproc("search", str(tmp_path / "n.idx"), "-k", "1", input=texts))
    assert [g[0] for g in got][:5] == [rec["id"] for rec in corpus["records"][:5]]
    # Without --model the index holds no model: vector queries only, said clearly.
    r = cli_inproc("index", "-o", str(tmp_path / "bare.idx"), str(tmp_path / "v.npy"))
    assert r.code == 0 and "no model is recorded" in r.err
    r = cli_inproc("search", str(tmp_path / "bare.idx"), input=texts)
    assert r.code == 4 and "cannot embed text queries" in r.err


def test_shards_merge_like_one_index(corpus, tmp_path):
    lines = corpus["vec"].read_bytes().splitlines(keepends=True)
    (tmp_path / "a.jsonl").write_bytes(b"".join(lines[:1000]))
    (tmp_path / "b.jsonl").write_bytes(b"".join(lines[1000:]))
    for part in ("a", "b"):
        assert cli_inproc("index", "-q", "-o", str(tmp_path / f"{part}.idx"), str(tmp_path / f"{part}.jsonl")).code == 0
    queries = _queries(corpus["records"][::50])
    one = cli_inproc("search", str(corpus["idx"]), "-k", "5", "--exact", input=queries).records()
    two = cli_inproc(
        "search", str(tmp_path / "a.idx"), str(tmp_path / "b.idx"), "-k", "5", "--exact", input=queries
    ).records()
    # Same scores in the same order (duplicate summaries tie, so ids of equal scores may swap).
    assert [[round(h["score"], 5) for h in r["results"]] for r in one] == [
        [round(h["score"], 5) for h in r["results"]] for r in two
    ]
    assert sum(r1["results"][0]["id"] == r2["results"][0]["id"] for r1, r2 in zip(one, two, strict=True)) >= 35


def test_existing_index_needs_append_or_force(corpus, tmp_path):
    idx = tmp_path / "x.idx"
    shutil.copytree(corpus["idx"], idx)
    r = cli_inproc("index", "-o", str(idx), input=corpus["vec"].read_bytes()[:20000].rsplit(b"\n", 1)[0] + b"\n")
    assert r.code == 2 and "--append" in r.err


@pytest.mark.parametrize(
    "damage", ["truncated", "zero-bytes", "random-bytes", "other-dimension", "not-an-index", "bad-manifest"]
)
def test_corrupt_index_is_refused(corpus, tmp_path, damage):
    idx = tmp_path / "c.idx"
    shutil.copytree(corpus["idx"], idx)
    manifest = orjson.loads((idx / "manifest.json").read_bytes())
    vec = idx / manifest["files"]["vectors"]["name"]
    expect = {
        "truncated": "truncated",
        "zero-bytes": "truncated",
        "random-bytes": "corrupt",  # opening checks structure; checksums are for writes and index verify
        "other-dimension": "disagree",
        "not-an-index": "not an embcli index",
        "bad-manifest": "corrupt index manifest",
    }[damage]
    if damage == "truncated":
        vec.write_bytes(vec.read_bytes()[: vec.stat().st_size // 2])
    elif damage == "zero-bytes":
        vec.write_bytes(b"")
    elif damage == "random-bytes":
        vec.write_bytes(np.random.default_rng(0).bytes(vec.stat().st_size))
    elif damage == "other-dimension":
        manifest["dims"] = 128
        (idx / "manifest.json").write_bytes(orjson.dumps(manifest))
    elif damage == "not-an-index":
        shutil.rmtree(idx)
        idx.write_bytes(np.random.default_rng(1).bytes(4096))
    elif damage == "bad-manifest":
        (idx / "manifest.json").write_bytes(b'{"format": "embcli-index", "version": 1')
    # A process of its own: a crash on a damaged file must fail this test, not end the session.
    r = cli("search", str(idx), input=b'{"text": "anything"}\n')
    assert r.code == 4, (r.code, r.err)
    assert expect in r.err and "Traceback" not in r.err and r.out == b""
    r = cli("index", "--append", "-o", str(idx), input=b"")
    assert r.code in (2, 4) and "Traceback" not in r.err


def test_sigkill_during_append_leaves_old_or_new_index(corpus, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    lines = corpus["vec"].read_bytes().splitlines(keepends=True)
    (tmp_path / "base.jsonl").write_bytes(b"".join(lines[:300]))
    (tmp_path / "more.jsonl").write_bytes(b"".join(lines[300:]))
    base = tmp_path / "base.idx"
    assert cli_inproc("index", "-q", "-o", str(base), str(tmp_path / "base.jsonl")).code == 0
    queries = b"".join(lines[250:350:10])  # vectors from both halves

    def state(idx) -> tuple[int, list]:
        r = cli_inproc("search", "-q", str(idx), "-k", "5", "--exact", input=queries)
        assert r.code == 0, r.err  # always loadable
        count = orjson.loads((idx / "manifest.json").read_bytes())["count"]
        return count, [[h["id"] for h in rec["results"]] for rec in r.records()]

    before = state(base)
    done = tmp_path / "done.idx"
    shutil.copytree(base, done)
    assert cli_inproc("index", "-q", "--append", "-o", str(done), str(tmp_path / "more.jsonl")).code == 0
    after = state(done)
    assert before[0] == 300 and after[0] == 2000 and before != after

    start = time.monotonic()
    cli("index", "-q", "--append", "-o", str(done), str(tmp_path / "more.jsonl"))  # how long a killed run's write takes
    full = time.monotonic() - start
    outcomes = set()
    for i, fraction in enumerate((0.05, 0.2, 0.35, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.1)):
        idx = tmp_path / f"k{i}.idx"
        shutil.copytree(base, idx)
        p = subprocess.Popen(
            [sys.executable, "-m", "embcli", "index", "-q", "--append", "-o", str(idx), str(tmp_path / "more.jsonl")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(full * fraction)
        p.send_signal(signal.SIGKILL)
        p.wait()
        got = state(idx)
        assert got in (before, after), f"killed at {fraction:.0%}: index is neither old nor new"
        outcomes.add(got == after)
        # The next writer cleans up and succeeds.
        assert cli_inproc("index", "-q", "--append", "-o", str(idx), str(tmp_path / "more.jsonl")).code == 0
        assert state(idx) == after
        assert len(list(idx.iterdir())) == 4  # manifest, lock, vectors, meta: no leftovers
    assert False in outcomes  # at least one kill landed mid-write
