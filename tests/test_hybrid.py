"""Hybrid and lexical search on real package summaries: the full-text index in step with the index,
BM25 with filters and shards, fusion, user text that is not FTS5 syntax, old indexes, crashes."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from conftest import DATA, ROOT, cli, cli_inproc

import embcli
from embcli.search.fusion import fuse


def _records(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def _jsonl(records: list[dict]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


@pytest.fixture(scope="module")
def corpus(packages_vec, tmp_path_factory) -> dict:
    """The 2,000 embedded package summaries, indexed once (full-text index by default) and as 3 shards."""
    d = tmp_path_factory.mktemp("hybrid")
    assert cli_inproc("index", "-q", "-o", str(d / "pk.idx"), str(packages_vec)).code == 0
    assert cli_inproc("index", "-q", "--shards", "3", "-o", str(d / "sh.idx"), str(packages_vec)).code == 0
    return {
        "dir": d,
        "vec": packages_vec,
        "idx": d / "pk.idx",
        "sharded": d / "sh.idx",
        "records": _records(packages_vec),
    }


def _search(idx: Path, *args: str, input: bytes | str = b"") -> list[dict]:
    r = cli_inproc("search", "-q", str(idx), *args, input=input)
    assert r.code == 0, r.err
    return r.records()


def _ids(out: list[dict]) -> list[list]:
    return [[h["id"] for h in rec["results"]] for rec in out]


def _fts_rows(idx: Path) -> dict[int, str]:
    m = orjson.loads((idx / "manifest.json").read_bytes())
    db = sqlite3.connect(idx / m["files"]["meta"]["name"])
    try:
        return dict(db.execute("SELECT rowid, text FROM fts"))
    finally:
        db.close()


def _items(idx: Path) -> dict[int, str]:
    m = orjson.loads((idx / "manifest.json").read_bytes())
    db = sqlite3.connect(idx / m["files"]["meta"]["name"])
    try:
        return {k: orjson.loads(i) for k, i in db.execute("SELECT key, id FROM items")}
    finally:
        db.close()


# ---------------------------------------------------------------- the full-text index, in step


def test_manifest_records_the_full_text_index_and_info_shows_it(corpus):
    m = orjson.loads((corpus["idx"] / "manifest.json").read_bytes())
    assert m["fts"]["tokenizer"] == "porter" and m["fts"]["field"] == "text"
    assert m["fts"]["tokenize"] == "porter unicode61 remove_diacritics 2"
    # One row per record with a text, keyed by the record's key, holding that record's text.
    rows, items = _fts_rows(corpus["idx"]), _items(corpus["idx"])
    assert set(rows) == set(items) and len(rows) == 2000
    texts = {r["id"]: r["text"] for r in corpus["records"]}
    assert all(rows[k] == texts[items[k]] for k in rows)
    r = cli_inproc("index", "info", str(corpus["idx"]))
    assert "full-text index: field 'text', tokenizer porter" in r.out.decode()
    assert cli_inproc("index", "verify", str(corpus["idx"])).code == 0


def test_appends_upserts_and_deletes_keep_the_full_text_index_in_step(corpus, tmp_path):
    recs = corpus["records"]
    base = tmp_path / "base.jsonl"
    base.write_bytes(_jsonl(recs[:300]))
    idx = tmp_path / "i.idx"
    assert cli_inproc("index", "-q", "-o", str(idx), str(base)).code == 0
    target = recs[10]
    word = "zorblatt"  # no summary holds it
    assert _ids(_search(idx, "--lexical", "--query", word)) == [[]]
    # Upsert: the same id with a new text (and its old vector): the old words no longer find it.
    changed = {**target, "text": f"A {word} toolkit for quantum knitting"}
    more = tmp_path / "more.jsonl"
    more.write_bytes(_jsonl([changed, *recs[300:400]]))
    assert cli_inproc("index", "-q", "--append", "-o", str(idx), str(more)).code == 0
    assert _ids(_search(idx, "--lexical", "--query", word)) == [[target["id"]]]
    rows, items = _fts_rows(idx), _items(idx)
    assert [rows[k] for k, i in items.items() if i == target["id"]] == [changed["text"]]
    assert target["text"] not in rows.values()
    # Appended records are found by their words.
    new = recs[350]
    assert new["id"] in _ids(_search(idx, "--lexical", "-k", "5", "--query", new["text"]))[0]
    rows, items = _fts_rows(idx), _items(idx)
    assert set(rows) == set(items) and len(rows) == 400  # the replaced row went with its record
    # Delete: gone from both sides.
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{target['id']}\n{new['id']}\n")
    assert cli_inproc("index", "-q", "--delete-ids", str(ids), str(idx)).code == 0
    assert _ids(_search(idx, "--lexical", "--query", word)) == [[]]
    assert new["id"] not in _ids(_search(idx, "--lexical", "-k", "5", "--query", new["text"]))[0]
    rows, items = _fts_rows(idx), _items(idx)
    assert set(rows) == set(items) and len(rows) == 398
    assert cli_inproc("index", "verify", str(idx)).code == 0


def test_text_field_no_store_text_and_no_fts(corpus, tmp_path):
    recs = [{k: v for k, v in r.items() if k != "text"} | {"body": r["text"]} for r in corpus["records"][:200]]
    src = tmp_path / "body.jsonl"
    src.write_bytes(_jsonl(recs))
    idx = tmp_path / "body.idx"
    assert cli_inproc("index", "-q", "--text-field", "body", "--no-store-text", "-o", str(idx), str(src)).code == 0
    hit = _search(idx, "--lexical", "-k", "1", "--query", recs[5]["body"])[0]["results"][0]
    assert hit["id"] == recs[5]["id"] and "body" not in hit  # indexed by words, not stored in the payload
    # --no-fts: no table, and word search is refused as an incompatible index (exit 4), before any query.
    plain = tmp_path / "plain.idx"
    assert cli_inproc("index", "-q", "--no-fts", "-o", str(plain), str(src)).code == 0
    assert orjson.loads((plain / "manifest.json").read_bytes())["fts"] is None
    for mode in ("--hybrid", "--lexical"):
        r = cli_inproc("search", str(plain), mode, "--query", "x")
        assert r.code == 4 and "no full-text index" in r.err and "--force" in r.err, r.err
    # An append keeps what the index has; asking for the other is a usage error.
    r = cli_inproc("index", "--append", "--fts", "-o", str(plain), str(src))
    assert r.code == 2 and "has no full-text index" in r.err, r.err
    r = cli_inproc("index", "--append", "--no-fts", "-o", str(idx), str(src))
    assert r.code == 2 and "has a full-text index" in r.err, r.err


def test_an_index_from_before_the_full_text_index_still_opens(corpus, tmp_path):
    """An older embcli wrote no "fts" key and no table: dense search works, word search is exit 4."""
    idx = tmp_path / "old.idx"
    assert cli_inproc("index", "-q", "--no-fts", "-o", str(idx), str(corpus["vec"])).code == 0
    m = orjson.loads((idx / "manifest.json").read_bytes())
    del m["fts"]
    (idx / "manifest.json").write_bytes(orjson.dumps(m))
    assert len(_ids(_search(idx, "--query", "http client"))[0]) == 10
    r = cli_inproc("search", str(idx), "--hybrid", "--query", "http client")
    assert r.code == 4 and "no full-text index" in r.err, r.err
    assert "full-text index: none" in cli_inproc("index", "info", str(idx)).out.decode()
    # A manifest that claims a full-text index its database does not hold is refused on open.
    m["fts"] = {"tokenizer": "porter", "field": "text"}
    (idx / "manifest.json").write_bytes(orjson.dumps(m))
    r = cli_inproc("search", str(idx), "--query", "http client")
    assert r.code == 4 and "unreadable" in r.err, r.err
    m["fts"] = 5  # not what any embcli writes
    (idx / "manifest.json").write_bytes(orjson.dumps(m))
    r = cli_inproc("search", str(idx), "--query", "http client")
    assert r.code == 4 and "corrupt index manifest" in r.err, r.err


# ---------------------------------------------------------------- retrieval quality on real data


def _name_queries(records: list[dict]) -> list[tuple[str, str]]:
    """Known items: a package's name as words finds its summary (the name is not in the text)."""
    counts = Counter(r["text"].lower() for r in records)
    out = []
    for i, r in enumerate(records):
        words = " ".join(re.split(r"[-_.]+", r["id"])).strip()
        if i % 4 == 0 and counts[r["text"].lower()] == 1 and sum(c.isalpha() for c in words) >= 3:
            out.append((words, r["id"]))
    return out


def _quality(hits: list[list], queries: list[tuple[str, str]]) -> tuple[float, float]:
    ranks = [next((h.rank for h in found if h.id == t), None) for (_, t), found in zip(queries, hits, strict=True)]
    return sum(r is not None for r in ranks) / len(ranks), sum(1 / r for r in ranks if r) / len(ranks)


def test_hybrid_beats_dense_and_bm25_on_real_known_items(corpus):
    queries = _name_queries(corpus["records"])
    assert len(queries) > 400
    texts = [q for q, _ in queries]
    with embcli.Index.open(corpus["idx"]) as index:
        dense = _quality(index.search(texts, k=10), queries)
        words = _quality(index.search(texts, k=10, mode="lexical"), queries)
        rrf = _quality(index.search(texts, k=10, mode="hybrid"), queries)
        linear = _quality(index.search(texts, k=10, mode="hybrid", fusion="linear"), queries)
    for fused in (rrf, linear):
        assert fused[0] > max(dense[0], words[0]), (fused, dense, words)  # recall@10
        assert fused[1] > max(dense[1], words[1]), (fused, dense, words)  # MRR@10


def test_cli_equals_the_python_api_and_explains_ranks(corpus):
    texts = ["pandas sql dataframe", "http client", "django rest auth"]
    out = _search(corpus["idx"], "--hybrid", "--explain", "-k", "5", *[a for t in texts for a in ("--query", t)])
    with embcli.Index.open(corpus["idx"]) as index:
        api = index.search(texts, k=5, mode="hybrid", explain=True)
        dense = index.search(texts, k=100)
        words = index.search(texts, k=100, mode="lexical")
    for rec, hits, d, w in zip(out, api, dense, words, strict=True):
        assert [(h["id"], h["score"], h["dense_rank"], h["lexical_rank"]) for h in rec["results"]] == [
            (h.id, round(h.score, 6), h.ranks["dense_rank"], h.ranks["lexical_rank"]) for h in hits
        ]
        d_rank = {h.id: h.rank for h in d}
        w_rank = {h.id: h.rank for h in w}
        for h in hits:  # the ranks are the hit's places in either ranking, and RRF sums 1/(60 + rank)
            assert h.ranks == {"dense_rank": d_rank.get(h.id), "lexical_rank": w_rank.get(h.id)}
            want = sum(1 / (60 + r) for r in h.ranks.values() if r is not None)
            assert abs(h.score - want) < 1e-12
    # Lexical runs BM25 alone: scores are -bm25, best first, and nothing needs the model.
    lex = _search(corpus["idx"], "--lexical", "--query", "pandas dataframe")[0]["results"]
    assert [h["rank"] for h in lex] == list(range(1, 11))
    assert all(a["score"] >= b["score"] > 0 for a, b in itertools.pairwise(lex))
    assert all("pandas" in h["text"].lower() or "datafram" in h["text"].lower() for h in lex)


def test_fusion_by_hand():
    dense = [("a", 0.9), ("b", 0.8), ("c", 0.1)]
    words = [("c", 12.0), ("a", 3.0)]
    got = fuse(dense, words, 3)
    assert [(f.place, f.dense_rank, f.lexical_rank) for f in got] == [("a", 1, 2), ("c", 3, 1), ("b", 2, None)]
    assert got[0].score == pytest.approx(1 / 61 + 1 / 62) and got[2].score == pytest.approx(1 / 62)
    lin = fuse(dense, words, 3, method="linear", alpha=0.5)
    # min-max: dense a 1, b 0.875, c 0; words c 1, a 0.
    assert [(f.place, round(f.score, 6)) for f in lin] == [("a", 0.5), ("c", 0.5), ("b", 0.4375)]


def test_filters_apply_to_both_sides(corpus):
    where = "year >= 2024 AND top = false"
    for mode in ("--lexical", "--hybrid"):
        out = _search(
            corpus["idx"], mode, "--explain", "-k", "20", "--where", where, "--query", "python library for data"
        )
        hits = out[0]["results"]
        assert len(hits) == 20 and all(h["year"] >= 2024 and h["top"] is False for h in hits)
    # The filtered lexical ranking is the unfiltered one with the others taken out.
    every = _search(corpus["idx"], "--lexical", "-k", "2000", "--query", "python library for data")[0]["results"]
    kept = [h["id"] for h in every if h["year"] >= 2024 and not h["top"]][:20]
    got = _search(corpus["idx"], "--lexical", "-k", "20", "--where", where, "--query", "python library for data")
    assert _ids(got)[0] == kept
    r = cli_inproc("search", str(corpus["idx"]), "--lexical", "--where", "year >>= 3", "--query", "x")
    assert r.code == 2 and "--where" in r.err


# ---------------------------------------------------------------- shards


def test_sharded_hybrid_and_lexical(corpus, tmp_path):
    texts = ["pandas sql dataframe", "http client", "django rest auth", "aws lambda"]
    args = [a for t in texts for a in ("--query", t)]
    one = _search(corpus["idx"], "--lexical", "-k", "2000", *args)
    sharded = _search(corpus["sharded"], "--lexical", "-k", "2000", *args)
    # Every match is found, whichever shard holds it (each shard ranks by its own BM25 statistics).
    assert [sorted(map(str, ids)) for ids in _ids(one)] == [sorted(map(str, ids)) for ids in _ids(sharded)]
    for a, b in zip(_ids(one), _ids(sharded), strict=True):  # and the tops mostly agree
        assert len(set(a[:10]) & set(b[:10])) >= 7, (a[:10], b[:10])
    hybrid = _search(corpus["sharded"], "--hybrid", "--explain", *args)
    for rec in hybrid:
        assert len(rec["results"]) == 10 and all(h["dense_rank"] or h["lexical_rank"] for h in rec["results"])
    # Appends and deletes route to their shards and keep each shard's full-text index in step.
    sh = tmp_path / "sh.idx"
    shutil.copytree(corpus["sharded"], sh)
    rec = {**corpus["records"][7], "text": "The zorblatt frobnicator"}
    src = tmp_path / "one.jsonl"
    src.write_bytes(_jsonl([rec]))
    assert cli_inproc("index", "-q", "--append", "-o", str(sh), str(src)).code == 0
    assert _ids(_search(sh, "--lexical", "--query", "zorblatt")) == [[rec["id"]]]
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{rec['id']}\n")
    assert cli_inproc("index", "-q", "--delete-ids", str(ids), str(sh)).code == 0
    assert _ids(_search(sh, "--lexical", "--query", "zorblatt")) == [[]]
    for shard in sorted(p for p in sh.iterdir() if p.name.startswith("shard-")):
        assert set(_fts_rows(shard)) == set(_items(shard))
    assert cli_inproc("index", "verify", str(sh)).code == 0
    # A sharded index built with --no-fts refuses word search (exit 4) naming a shard.
    plain = tmp_path / "plain.idx"
    assert cli_inproc("index", "-q", "--shards", "2", "--no-fts", "-o", str(plain), str(src)).code == 0
    r = cli_inproc("search", str(plain), "--hybrid", "--query", "x")
    assert r.code == 4 and "shard-0000" in r.err, r.err


# ---------------------------------------------------------------- user text is never FTS5 syntax


NASTY = [
    '"',
    '"unbalanced quote',
    "AND",
    "OR NOT",
    "pandas AND NOT",
    "NEAR(pandas sql, 2)",
    "pand*",
    "^pandas",
    "text:pandas",
    "(pandas",
    "pandas) OR (",
    "-pandas +sql",
    "!!! ??? ...",
    "'; DROP TABLE items; --",
    "ＰＡＮＤＡＳ résumé naïve",
    "a" * 5000,
]


def test_user_text_with_fts5_syntax_is_only_words(corpus):
    queries = _jsonl([{"text": t} for t in NASTY])
    for mode in ("--lexical", "--hybrid"):
        out = _search(corpus["idx"], mode, "-k", "3", input=queries)
        assert [rec["text"] for rec in out] == NASTY
        by_text = {rec["text"]: rec["results"] for rec in out}
        if mode == "--lexical":
            assert by_text["!!! ??? ..."] == [] and by_text['"'] == []  # no words, no BM25 hits
            assert by_text["AND"] == [] or all("and" in h["text"].lower() for h in by_text["AND"])
            # Operators are words: "pand*" is the word "pand", not a prefix query.
            assert _ids([{"results": by_text["pand*"]}]) == _ids(
                _search(corpus["idx"], mode, "-k", "3", "--query", "pand")
            )
        else:
            assert all(len(hits) == 3 for hits in by_text.values())  # the dense side answers every query
    assert _search(corpus["idx"], "--lexical", "--query", "'; DROP TABLE items; --")  # the index is unharmed
    assert cli_inproc("index", "verify", str(corpus["idx"])).code == 0
    # Empty and blank texts are bad input, as in dense search; on the command line, a usage error.
    r = cli_inproc("search", str(corpus["idx"]), "--lexical", input='{"text": "pandas"}\n{"text": "  "}\n')
    assert r.code == 3 and "line 2" in r.err and "empty" in r.err, r.err
    r = cli_inproc("search", str(corpus["idx"]), "--hybrid", "--query", "")
    assert r.code == 2 and "empty" in r.err, r.err
    # A vector query has no words: lexical and hybrid need a text.
    vec = corpus["records"][0]
    r = cli_inproc("search", str(corpus["idx"]), "--hybrid", input=_jsonl([{"embedding": vec["embedding"]}]))
    assert r.code == 3 and "'text'" in r.err, r.err
    r = cli_inproc("search", str(corpus["idx"]), "--lexical", "--like", str(vec["id"]))
    assert r.code == 2 and "--like" in r.err, r.err


def test_fts_syntax_when_asked(corpus):
    out = _search(corpus["idx"], "--lexical", "--fts-syntax", "-k", "50", "--query", "pand* NOT sql")
    hits = out[0]["results"]
    assert hits and all(re.search(r"\bpand", h["text"].lower()) and "sql" not in h["text"].lower() for h in hits)
    r = cli_inproc("search", str(corpus["idx"]), "--lexical", "--fts-syntax", "--query", "pandas AND (")
    assert r.code == 2 and "not an FTS5 query" in r.err, r.err
    r = cli_inproc(
        "search", str(corpus["idx"]), "--lexical", "--fts-syntax", input='{"text": "sql"}\n{"text": "a OR"}\n'
    )
    assert r.code == 3 and "line 2" in r.err and "FTS5" in r.err, r.err


# ---------------------------------------------------------------- crashes leave the old or the new


def _limit_file_size(limit: int):
    import resource

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def _lexical_state(idx: Path) -> tuple[int, list]:
    out = _search(idx, "--lexical", "-k", "5", "--query", "zorblatt", "--query", "pandas dataframe")
    return orjson.loads((idx / "manifest.json").read_bytes())["count"], _ids(out)


def test_failed_and_killed_appends_leave_the_old_full_text_index_or_the_new(corpus, tmp_path):
    recs = corpus["records"]
    (tmp_path / "base.jsonl").write_bytes(_jsonl(recs[:300]))
    more = tmp_path / "more.jsonl"
    more.write_bytes(_jsonl([{**recs[5], "text": "zorblatt pandas dataframe"}, *recs[300:]]))
    base = tmp_path / "base.idx"
    assert cli_inproc("index", "-q", "-o", str(base), str(tmp_path / "base.jsonl")).code == 0
    before = _lexical_state(base)
    done = tmp_path / "done.idx"
    shutil.copytree(base, done)
    assert cli_inproc("index", "-q", "--append", "-o", str(done), str(more)).code == 0
    after = _lexical_state(done)
    assert before[0] == 300 and after[0] == 2000 and before[1] != after[1]

    # A write that fails in the metadata database (file size limit): the old index, byte for byte.
    failed = tmp_path / "failed.idx"
    shutil.copytree(base, failed)
    files = {p.name: p.read_bytes() for p in failed.iterdir()}
    limit = (failed / "meta.1.sqlite").stat().st_size + 4096
    p = subprocess.run(
        [sys.executable, "-m", "embcli", "index", "--append", "-o", str(failed), str(more)],
        capture_output=True,
        timeout=300,
        cwd=ROOT,
        preexec_fn=_limit_file_size(limit),
    )
    assert p.returncode == 1 and "cannot write index file" in p.stderr.decode(), p.stderr.decode()
    assert {p.name: p.read_bytes() for p in failed.iterdir()} == files
    assert _lexical_state(failed) == before

    # Killed at points through the write: always loadable, and the old state or the new one.
    shutil.copytree(base, tmp_path / "timing.idx")
    start = time.monotonic()
    cli("index", "-q", "--append", "-o", str(tmp_path / "timing.idx"), str(more))
    full = time.monotonic() - start  # how long a whole append takes here, now
    for i, fraction in enumerate((0.3, 0.6, 0.8, 0.9, 0.97, 1.3)):
        idx = tmp_path / f"k{i}.idx"
        shutil.copytree(base, idx)
        proc = subprocess.Popen(
            [sys.executable, "-m", "embcli", "index", "-q", "--append", "-o", str(idx), str(more)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=ROOT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
        time.sleep(full * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        got = _lexical_state(idx)
        assert got in (before, after), f"killed at {fraction:.0%}: neither the old nor the new full-text index"
        assert set(_fts_rows(idx)) == set(_items(idx))


def test_known_item_files_are_what_the_script_builds():
    """The shipped set holds its documented shape: one relevant summary per query, every target indexed."""
    d = DATA / "known-items"
    corpus = _records(d / "corpus.jsonl")
    ids = {r["id"] for r in corpus}
    assert len(corpus) == 3000 and len(ids) == 3000
    for queries, qrels in (("queries.jsonl", "qrels.jsonl"), ("keyword-queries.jsonl", "keyword-qrels.jsonl")):
        qs, rel = _records(d / queries), _records(d / qrels)
        assert len(qs) > 450 and [(q["id"], q["target"]) for q in qs] == [(r["query_id"], r["doc_id"]) for r in rel]
        assert all(q["target"] in ids and q["text"].strip() for q in qs)
