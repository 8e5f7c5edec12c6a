"""Sharded indexes (`index --shards N`): one path searched as one index, ids routed by a stable hash.

Real model, real records: the 300 embedded example summaries, indexed once as 4 shards and once
as one index; tests that change an index work on a copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import orjson
import pytest
from conftest import cli_inproc

import embcli
from embcli.search.index import IndexReader, read_manifest
from embcli.search.shards import read_shards, shard_of

QUERIES = ["http client library", "read and write YAML files", "testing framework", "date and time parsing"]
NEW_TEXT = "brews coffee with a quantum teapot over bluetooth"


@pytest.fixture(scope="module")
def built(examples_vec, tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("shards")
    for args in (("-o", str(d / "docs.idx"), "--shards", "4"), ("-o", str(d / "one.idx"))):
        r = cli_inproc("index", "-q", "--reproducible", str(examples_vec), *args)
        assert r.code == 0, r.err
    records = [orjson.loads(line) for line in examples_vec.read_bytes().splitlines()]
    return {"dir": d, "idx": d / "docs.idx", "one": d / "one.idx", "vec": examples_vec, "records": records}


@pytest.fixture()
def copy(built, tmp_path) -> Path:
    """A copy of the 4-shard index, for a test that changes it."""
    shutil.copytree(built["idx"], tmp_path / "docs.idx")
    return tmp_path / "docs.idx"


def _search(idx: Path, *args: str) -> list[dict]:
    r = cli_inproc("search", "-q", str(idx), *args)
    assert r.code == 0, r.err
    return r.records()


def _hits(recs: list[dict]) -> list[list[tuple[object, float]]]:
    return [[(h["id"], h["score"]) for h in rec["results"]] for rec in recs]


def _shard_ids(idx: Path) -> list[set]:
    """The ids each shard holds, read from the shard itself."""
    out = []
    for name in read_shards(idx)["shards"]:
        reader = IndexReader(idx / name)
        try:
            out.append({orjson.loads(i) for (i,) in reader.db.execute("SELECT id FROM items")})
        finally:
            reader.close()
    return out


def _generations(idx: Path) -> list[int]:
    return [read_manifest(idx / name)["generation"] for name in read_shards(idx)["shards"]]


# ------------------------------------------------------------------ search


def test_exact_search_over_shards_equals_one_index(built):
    args = ["--exact", "-k", "10", *(a for q in QUERIES for a in ("--query", q))]
    sharded, one = _search(built["idx"], *args), _search(built["one"], *args)
    assert _hits(sharded) == _hits(one) and len(sharded[0]["results"]) == 10
    assert sharded == one  # payloads and ranks too
    # Filters, more-like-this and the HNSW path see the whole index as well.
    where = ["--where", "download_rank <= 100", "--exact", "-k", "5", "--query", QUERIES[0], "--like", "requests"]
    assert _search(built["idx"], *where) == _search(built["one"], *where)
    ann = _search(built["idx"], "-k", "5", "--query", QUERIES[1])[0]["results"]
    assert ann[0]["id"] == _search(built["one"], "-k", "5", "--query", QUERIES[1])[0]["results"][0]["id"]


def test_rescore_over_compact_shards_equals_one_index(built, tmp_path):
    for args in (("-o", str(tmp_path / "i8.idx"), "--shards", "3"), ("-o", str(tmp_path / "one.idx"))):
        assert cli_inproc("index", "-q", str(built["vec"]), "--dtype", "i8", *args).code == 0
    args = ["--rescore", "4", "--exact", "-k", "5", "--query", QUERIES[2]]
    assert _hits(_search(tmp_path / "i8.idx", *args)) == _hits(_search(tmp_path / "one.idx", *args))


def test_python_api_opens_and_builds_a_sharded_index(built, tmp_path):
    with embcli.Index.open(built["idx"]) as idx, embcli.Index.open(built["one"]) as one:
        assert len(idx) == 300
        got, want = idx.search(QUERIES, k=5, exact=True), one.search(QUERIES, k=5, exact=True)
        assert [[(h.id, h.score) for h in q] for q in got] == [[(h.id, h.score) for h in q] for q in want]
    records = built["records"][:40]
    with embcli.Index.build(tmp_path / "api.idx", records, shards=2) as idx:
        assert len(idx) == 40 and read_shards(tmp_path / "api.idx")["n"] == 2
    assert _shard_ids(tmp_path / "api.idx") == [
        {r["id"] for r in records if shard_of(r["id"], 2) == s} for s in range(2)
    ]


# ------------------------------------------------------------------ routing


def test_every_id_lives_in_exactly_the_shard_it_routes_to(built):
    per_shard = _shard_ids(built["idx"])
    ids = [r["id"] for r in built["records"]]
    assert sum(len(s) for s in per_shard) == len(ids) == len(set().union(*per_shard))
    assert all(shard_of(i, 4) == s for s, held in enumerate(per_shard) for i in held)
    assert all(per_shard)  # 300 ids over 4 shards: none is empty


def test_routing_rule_is_the_documented_one():
    import hashlib

    for rid in ("requests", 1, "1", "ünïcode", 2**40):
        digest = hashlib.sha1(orjson.dumps(rid)).digest()
        assert shard_of(rid, 7) == int.from_bytes(digest[:8], "big") % 7
    assert shard_of(1, 1000) != shard_of("1", 1000)  # ids keep their JSON type


def test_records_without_ids_are_numbered_as_in_one_index(built, tmp_path):
    bare = tmp_path / "bare.jsonl"
    bare.write_bytes(
        b"".join(orjson.dumps({k: v for k, v in r.items() if k != "id"}) + b"\n" for r in built["records"])
    )
    for args in (("-o", str(tmp_path / "s.idx"), "--shards", "4"), ("-o", str(tmp_path / "o.idx"))):
        assert cli_inproc("index", "-q", str(bare), *args).code == 0
    args = ["--exact", "-k", "5", "--query", QUERIES[0]]
    assert _search(tmp_path / "s.idx", *args) == _search(tmp_path / "o.idx", *args)
    assert set().union(*_shard_ids(tmp_path / "s.idx")) == set(range(300))


def test_reproducible_builds_shards_at_once_with_the_same_graphs(built, tmp_path):
    args = ("-o", str(tmp_path / "t.idx"), "--shards", "4", "--threads", "3", "--reproducible")
    r = cli_inproc("index", "-q", str(built["vec"]), *args)
    assert r.code == 0, r.err
    for name in read_shards(built["idx"])["shards"]:
        a, b = read_manifest(built["idx"] / name)["files"], read_manifest(tmp_path / "t.idx" / name)["files"]
        assert {k: f["sha256"] for k, f in a.items()} == {k: f["sha256"] for k, f in b.items()}


# ------------------------------------------------------------------ append and delete


def test_append_replaces_records_in_their_shards_only(built, copy, tmp_path):
    changed = [dict(r, text=f"{NEW_TEXT} ({r['id']})") for r in built["records"][10:13]]
    texts = b"".join(orjson.dumps({k: r[k] for k in ("id", "text")}) + b"\n" for r in changed)
    emb = cli_inproc("embed", "-q", input=texts)
    assert emb.code == 0, emb.err
    (tmp_path / "changed.jsonl").write_bytes(emb.out)
    before = _generations(copy)
    r = cli_inproc("index", str(tmp_path / "changed.jsonl"), "-o", str(copy), "--append")
    assert r.code == 0, r.err
    assert "3 new" not in r.err and "3 replaced" in r.err
    touched = {shard_of(c["id"], 4) for c in changed}
    after = _generations(copy)
    assert [s for s in range(4) if after[s] != before[s]] == sorted(touched)
    per_shard = _shard_ids(copy)
    assert sum(len(s) for s in per_shard) == 300
    for c in changed:
        assert [s for s, held in enumerate(per_shard) if c["id"] in held] == [shard_of(c["id"], 4)]
    (hit,) = _search(copy, "--exact", "-k", "1", "--query", changed[0]["text"])
    assert hit["results"][0]["id"] == changed[0]["id"] and hit["results"][0]["text"] == changed[0]["text"]
    # The old vector is gone: the record's old text no longer finds it with a near-perfect score.
    old = built["records"][10]
    found = _search(copy, "--exact", "-k", "300", "--query", old["text"])[0]["results"]
    assert [h["text"] for h in found if h["id"] == old["id"]] == [changed[0]["text"]]
    # The same append again (as after a crash part-way): the same index.
    again = cli_inproc("index", "-q", str(tmp_path / "changed.jsonl"), "-o", str(copy), "--append")
    assert again.code == 0 and _shard_ids(copy) == per_shard


def test_delete_ids_touches_only_their_shards(built, copy, tmp_path):
    gone = [r["id"] for r in built["records"][:5]]
    (tmp_path / "ids.txt").write_text("".join(f"{i}\n" for i in [*gone, "no-such-id"]))
    before = _generations(copy)
    r = cli_inproc("index", "--delete-ids", str(tmp_path / "ids.txt"), str(copy))
    assert r.code == 0, r.err
    assert "deleted 5 of the given ids" in r.err and "295 vectors remain" in r.err
    after = _generations(copy)
    assert {s for s in range(4) if after[s] != before[s]} == {shard_of(i, 4) for i in gone}
    assert not set(gone) & set().union(*_shard_ids(copy))
    like = cli_inproc("search", str(copy), "--like", gone[0])
    assert like.code == 3 and "no item has the id" in like.err


# ------------------------------------------------------------------ info, verify, refusals


def test_info_json_gives_totals_and_per_shard_counts(built):
    r = cli_inproc("index", "info", str(built["idx"]), "--json")
    assert r.code == 0, r.err
    info = orjson.loads(r.out)
    assert info["n"] == 4 and info["count"] == 300 and info["routing"]["rule"] == "sha1-json-mod"
    assert [s["count"] for s in info["shard_info"]] == [len(s) for s in _shard_ids(built["idx"])]
    assert info["dims"] == 384 and info["provenance"]["model"] == "all-MiniLM-L6-v2"
    words = cli_inproc("index", "info", str(built["idx"]))
    assert words.code == 0 and "sharded: 4 shards" in words.out.decode() and "count: 300 vectors" in words.out.decode()


def test_verify_checks_every_shard(copy):
    ok = cli_inproc("index", "verify", str(copy))
    assert ok.code == 0 and "sound, 4 shards, 300 vectors" in ok.err
    shard = copy / read_shards(copy)["shards"][2]
    vectors = shard / read_manifest(shard)["files"]["vectors"]["name"]
    data = bytearray(vectors.read_bytes())
    data[20] ^= 0xFF  # inside the first vector: opening still works, the checksum does not match
    vectors.write_bytes(bytes(data))
    bad = cli_inproc("index", "verify", str(copy))
    assert bad.code == 4 and "checksum" in bad.err and "shard-00002" in bad.err


def test_verify_finds_an_id_in_the_wrong_shard(built, copy, tmp_path):
    stray = next(r for r in built["records"] if shard_of(r["id"], 4) != 0)
    rec = dict(stray, id=stray["id"])
    (tmp_path / "one.jsonl").write_bytes(orjson.dumps(rec) + b"\n")
    # Written into shard 0 directly, around the routing.
    direct = cli_inproc("index", "-q", str(tmp_path / "one.jsonl"), "-o", str(copy / "shard-00000"), "--append")
    assert direct.code == 0, direct.err
    bad = cli_inproc("index", "verify", str(copy))
    assert bad.code == 4 and "routes to shard" in bad.err


def test_missing_shards_json_is_refused_clearly(copy, built):
    (copy / "shards.json").unlink()
    for r in (
        cli_inproc("search", str(copy), "--query", "http"),
        cli_inproc("index", "info", str(copy)),
        cli_inproc("index", "verify", str(copy)),
    ):
        assert r.code == 4 and "unfinished sharded index" in r.err and "shards.json" in r.err, r.err
    again = cli_inproc("index", "-q", str(built["vec"]), "-o", str(copy), "--shards", "4")
    assert again.code == 2 and "unfinished sharded index" in again.err
    rebuilt = cli_inproc("index", "-q", str(built["vec"]), "-o", str(copy), "--shards", "4", "--force")
    assert rebuilt.code == 0 and _search(copy, "--exact", "--query", "http") == _search(
        built["idx"], "--exact", "--query", "http"
    )


def test_sharded_writes_are_refused_where_they_would_mix(built, copy, tmp_path):
    exists = cli_inproc("index", "-q", str(built["vec"]), "-o", str(copy))
    assert exists.code == 2 and "already exists" in exists.err
    reshard = cli_inproc("index", "-q", str(built["vec"]), "-o", str(copy), "--append", "--shards", "5")
    assert reshard.code == 2 and "re-sharded" in reshard.err
    plain = cli_inproc("index", "-q", str(built["vec"]), "-o", str(built["one"]), "--append", "--shards", "4")
    assert plain.code == 2 and "not sharded" in plain.err
    # A bad record fails a --force rebuild before the old index is touched.
    (tmp_path / "bad.jsonl").write_bytes(built["vec"].read_bytes() + b'{"id": "x", "embedding": [1, 2]}\n')
    forced = cli_inproc("index", "-q", str(tmp_path / "bad.jsonl"), "-o", str(copy), "--force", "--shards", "2")
    assert forced.code == 3 and read_shards(copy)["n"] == 4
    assert not [p for p in copy.iterdir() if p.name.startswith(".spool")]
    # A new sharded index that fails leaves nothing behind.
    fresh = cli_inproc("index", "-q", str(tmp_path / "bad.jsonl"), "-o", str(tmp_path / "new.idx"), "--shards", "2")
    assert fresh.code == 3 and not (tmp_path / "new.idx").exists()


def test_more_shards_than_records_gives_empty_shards_that_work(built, tmp_path):
    (tmp_path / "two.jsonl").write_bytes(b"".join(built["vec"].read_bytes().splitlines(keepends=True)[:2]))
    r = cli_inproc("index", "-q", str(tmp_path / "two.jsonl"), "-o", str(tmp_path / "s.idx"), "--shards", "8")
    assert r.code == 0, r.err
    assert sorted(len(s) for s in _shard_ids(tmp_path / "s.idx"))[-2:] in ([1, 1], [0, 2])
    assert cli_inproc("index", "verify", str(tmp_path / "s.idx")).code == 0
    hits = _search(tmp_path / "s.idx", "-k", "5", "--query", "aws")[0]["results"]
    assert len(hits) == 2
    vecs = np.array([built["records"][0]["embedding"]], dtype=np.float32)
    with embcli.Index.open(tmp_path / "s.idx") as idx:
        assert idx.search(vecs, k=1)[0][0].id == built["records"][0]["id"]
