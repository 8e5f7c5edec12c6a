"""embed --chunk and search --group-by on long real documents (tests/data/stdlib-longdocs.jsonl, make_longdocs.py)."""

from __future__ import annotations

import itertools

import numpy as np
import orjson
import pytest
from conftest import DATA, cli_inproc

import embcli
from embcli.runtime.chunking import CONTEXT_SEPARATOR, Chunker, Chunking, first_sentence

FEW = 8  # documents embedded by these tests (the machine is small); the spans are checked on all


def _read(name: str) -> list[dict]:
    with open(DATA / name, "rb") as f:
        return [orjson.loads(line) for line in f]


@pytest.fixture(scope="module")
def enc() -> embcli.Encoder:
    return embcli.Encoder(device="cpu")


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return _read("stdlib-longdocs.jsonl")


@pytest.fixture(scope="module")
def chunked(enc, docs) -> list[dict]:
    """The first FEW documents chunked and embedded once, by the Python API."""
    return list(enc.embed_records(docs[:FEW], chunking=Chunking()))


@pytest.fixture(scope="module")
def index_path(chunked, tmp_path_factory):
    path = tmp_path_factory.mktemp("chunks") / "c.idx"
    embcli.Index.build(path, chunked).close()
    return path


@pytest.fixture(scope="module")
def index(index_path):
    return embcli.Index.open(index_path)


def _write(path, records) -> str:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in records))
    return str(path)


def _chunker(enc: embcli.Encoder, options: Chunking) -> Chunker:
    rt = enc.runtime
    return Chunker(rt.tokenizer, rt.max_length, rt.prompt, options)


@pytest.fixture(scope="module")
def bare(enc):
    """The model's tokenizer, untruncated: (ids, offsets) of a text without special tokens."""
    tok = type(enc.runtime.tokenizer).from_str(enc.runtime.tokenizer.to_str())
    tok.no_truncation()
    tok.no_padding()

    def tokens(text: str) -> tuple[list[int], list[tuple[int, int]]]:
        e = tok.encode(text, add_special_tokens=False)
        return e.ids, e.offsets

    return tokens


# ---------------------------------------------------------------- spans


@pytest.mark.parametrize(
    "options",
    [Chunking(), Chunking(tokens=64, overlap=0), Chunking(tokens=100, overlap=40), Chunking(context_sentence=True)],
    ids=["defaults", "64-no-overlap", "100-overlap-40", "first-sentence"],
)
def test_spans_cover_every_document_and_every_chunk_fits(enc, docs, bare, options) -> None:
    chunker = _chunker(enc, options)
    for doc in docs:
        text = doc["text"]
        chunks = chunker.chunks(text)
        assert len(chunks) > 1  # every document here is longer than one window
        assert chunks[0].start == 0 and chunks[-1].end == len(text)
        for a, b in itertools.pairwise(chunks):
            assert a.start < b.start <= a.end  # in order, no gap: every character is in a chunk
        ids, offsets = bare(text)
        covered = 0
        for c in chunks:
            assert c.text == text[c.start : c.end]
            # Cut at word starts: the chunk tokenizes to exactly the document's tokens in its span.
            inside = [i for i, (s, e) in zip(ids, offsets, strict=True) if s >= c.start and e <= c.end]
            assert bare(c.text)[0] == inside
            assert len(inside) <= chunker.size
            assert not enc.runtime.tokenize(c.embedded).truncated  # the model sees all of it
            covered = max(covered, sum(1 for s, _ in offsets if s < c.end))
        assert covered == len(ids)
        for a, b in itertools.pairwise(chunks):  # neighbours share at least the overlap
            shared = sum(1 for s, e in offsets if s >= b.start and e <= a.end)
            assert shared >= chunker.overlap


def test_defaults_come_from_the_models_max_length(enc) -> None:
    chunker = _chunker(enc, Chunking())
    assert (chunker.size, chunker.overlap) == (254, 31)  # 256 less [CLS] and [SEP]; an eighth
    prompted = Chunker(enc.runtime.tokenizer, 256, "query: ", Chunking())
    assert prompted.size == 254 - 2  # "query", ":"


def test_a_short_text_is_one_chunk_unchanged(enc) -> None:
    text = "  Return the number of days in a month.\n"
    [only] = _chunker(enc, Chunking()).chunks(text)
    assert (only.start, only.end, only.text, only.embedded) == (0, len(text), text, text)


def test_first_sentence() -> None:
    assert first_sentence("Read and write ZIP files. More here.") == "Read and write ZIP files."
    assert first_sentence("zipfile\n\nRead and write ZIP files.") == "zipfile"
    assert first_sentence("v1.2 is out\nnow. Next") == "v1.2 is out now."


# ---------------------------------------------------------------- records through the CLI


def test_chunk_records_round_trip(enc, docs, chunked, tmp_path) -> None:
    src = _write(tmp_path / "docs.jsonl", docs[:2])
    r = cli_inproc("embed", "--chunk", src)
    assert r.code == 0, r.err
    assert "chunked 2 texts into" in r.err and "truncated" not in r.err
    recs = r.records()
    by_id = {d["id"]: d for d in docs}
    assert [x["id"] for x in recs] == [f"{x['parent']}#{x['chunk']}" for x in recs]
    for rec in recs:
        doc = by_id[rec["parent"]]
        start, end = rec["span"]
        assert rec["text"] == doc["text"][start:end]
        assert rec["title"] == doc["title"]  # other fields pass through
    # The API gives the same records and vectors.
    api = [x for x in chunked if x["parent"] in {docs[0]["id"], docs[1]["id"]}]
    assert [x["id"] for x in api] == [x["id"] for x in recs]
    # (Embedded in other batches there, so equal to float rounding.)
    assert np.allclose(np.array([x["embedding"] for x in api]), np.array([x["embedding"] for x in recs]), atol=1e-5)
    # A chunk's vector is its text's: embedding the chunk records again, plainly, gives the same bytes.
    plain = [{"text": x["text"]} for x in recs]
    again = cli_inproc("embed", "--no-cache", input=b"".join(orjson.dumps(p) + b"\n" for p in plain))
    assert [x["embedding"] for x in again.records()] == [x["embedding"] for x in recs]
    # Parquet holds the same records, the span as a list.
    out = tmp_path / "chunks.parquet"
    assert cli_inproc("embed", "--chunk", "-q", src, "-o", str(out)).code == 0
    back = list(embcli.read_records(str(out)))
    assert [(x["id"], x["parent"], x["chunk"], list(x["span"])) for x in back] == [
        (x["id"], x["parent"], x["chunk"], x["span"]) for x in recs
    ]


def test_context_field_is_embedded_before_every_chunk(enc, docs, tmp_path) -> None:
    doc = docs[2]
    src = _write(tmp_path / "one.jsonl", [doc])
    r = cli_inproc("embed", "--chunk", "--context-field", "title", "--no-cache", src)
    assert r.code == 0, r.err
    recs = r.records()
    want = enc.embed([doc["title"] + CONTEXT_SEPARATOR + x["text"] for x in recs])
    assert np.array_equal(np.array([x["embedding"] for x in recs], np.float32), want)
    plain = list(enc.chunk_records([doc]))
    assert len(recs) >= len(plain)  # the title's tokens come out of each window
    assert all(not enc.runtime.tokenize(doc["title"] + CONTEXT_SEPARATOR + x["text"]).truncated for x in recs)


def test_first_sentence_context_and_a_long_context_cut(enc, docs, tmp_path) -> None:
    doc = dict(docs[3], title=" ".join(docs[4]["text"].split()[:400]))  # far longer than half a window
    src = _write(tmp_path / "one.jsonl", [doc])
    r = cli_inproc("embed", "--chunk", "--context-field", "title", "--context-sentence", "--no-cache", src)
    assert r.code == 0, r.err
    assert "1 context cut to half a window" in r.err and "truncated" not in r.err
    recs = r.records()
    assert recs[0]["span"][0] == 0 and recs[-1]["span"][1] == len(doc["text"])
    # The first chunk holds the first sentence already; later ones get it after the title.
    got = enc.embed([recs[1]["text"]])[0]
    assert not np.array_equal(np.asarray(recs[1]["embedding"], np.float32), got)
    chunker = _chunker(enc, Chunking(context_field="title", context_sentence=True))
    pieces = chunker.chunks(doc["text"], doc["title"])
    assert [p.text for p in pieces] == [x["text"] for x in recs]
    assert np.array_equal(enc.embed([p.embedded for p in pieces]), np.array([x["embedding"] for x in recs], np.float32))
    # The cut context (title, then sentence, joined) is the title's first half-window of tokens.
    prefix = pieces[1].embedded.removesuffix(recs[1]["text"])
    assert prefix.endswith(CONTEXT_SEPARATOR) and doc["title"].startswith(prefix.removesuffix(CONTEXT_SEPARATOR))
    assert 100 <= enc.runtime.tokenize(prefix).count <= 127 + 2
    assert pieces[0].embedded == prefix + recs[0]["text"]  # the title alone before the first chunk
    # With a title that fits: the title, then the first sentence, before every chunk but the first.
    title = docs[3]["title"]
    pieces = chunker.chunks(doc["text"], title)
    sentence = first_sentence(doc["text"])
    assert pieces[0].embedded == title + CONTEXT_SEPARATOR + pieces[0].text
    assert all(p.embedded == title + CONTEXT_SEPARATOR + sentence + CONTEXT_SEPARATOR + p.text for p in pieces[1:])


def test_chunks_come_from_the_cache_the_second_time(docs, tmp_path) -> None:
    src = _write(tmp_path / "docs.jsonl", docs[:1])
    cache = str(tmp_path / "cache.sqlite")
    first = cli_inproc("embed", "--chunk", "--context-field", "title", "--cache", cache, src)
    second = cli_inproc("embed", "--chunk", "--context-field", "title", "--cache", cache, src)
    assert first.code == second.code == 0, second.err
    n = len(first.records())
    assert f"{n} from the cache" in second.err and "model not loaded" in second.err  # the tokenizer alone
    assert first.out == second.out


def test_chunk_errors(docs, tmp_path) -> None:
    src = _write(tmp_path / "docs.jsonl", [docs[0], dict(docs[1], parent="x")])
    r = cli_inproc("embed", "--chunk", src)
    assert r.code == 3 and "already has a 'parent' field" in r.err and "line 2" in r.err
    r = cli_inproc("embed", "--chunk", "--overwrite", "-q", src)
    assert r.code == 0, r.err
    assert {x["parent"] for x in r.records()} == {docs[0]["id"], docs[1]["id"]}
    r = cli_inproc("embed", "--chunk", "--on-error", "skip", src)
    assert r.code == 0 and "skipped 1 bad record" in r.err
    assert {x["parent"] for x in r.records()} == {docs[0]["id"]}
    no_title = _write(tmp_path / "nt.jsonl", [{"id": 1, "text": "short"}])
    r = cli_inproc("embed", "--chunk", "--context-field", "title", no_title)
    assert r.code == 3 and "no 'title' field for --context-field" in r.err
    for args in (
        ["--chunk", "--chunk-tokens", "300"],
        ["--chunk", "--chunk-tokens", "50", "--chunk-overlap", "50"],
        ["--chunk-tokens", "50"],
        ["--context-field", "title"],
        ["--chunk", "--format", "npy"],
    ):
        r = cli_inproc("embed", *args, no_title)
        assert r.code == 2 and r.out == b"", (args, r.err)
        assert r.err.startswith("embcli: error: ") and "Traceback" not in r.err
    r = cli_inproc("embed", "--chunk", "-q", no_title)  # no id ... and short: one chunk
    assert r.code == 0
    [rec] = r.records()
    assert (rec["id"], rec["parent"], rec["chunk"], rec["span"], rec["text"]) == ("1#0", 1, 0, [0, 5], "short")


# ---------------------------------------------------------------- search --group-by


def _queries(docs: list[dict]) -> list[dict]:
    parents = {d["id"] for d in docs[:FEW]}
    return [q for q in _read("stdlib-longdocs-queries.jsonl") if q["target"] in parents]


def test_group_by_returns_distinct_parents_with_their_best_chunk(index, chunked, docs) -> None:
    queries = _queries(docs)
    texts = [q["text"] for q in queries]
    every = index.search(texts, k=len(chunked), exact=True)  # every chunk, ranked
    grouped = index.search(texts, k=5, group_by="parent", exact=True)
    for all_hits, groups in zip(every, grouped, strict=True):
        parents = [h.payload["parent"] for h in groups]
        assert len(groups) == 5 and len(set(parents)) == 5
        best: dict = {}
        for h in all_hits:
            best.setdefault(h.payload["parent"], h)
        want = sorted(best.values(), key=lambda h: -h.score)[:5]
        assert [h.id for h in groups] == [h.id for h in want]
        assert [h.rank for h in groups] == [1, 2, 3, 4, 5]
    # Where the answer lies past the first 256 tokens, the best chunk is a later one.
    found = [(g[0], q) for g, q in zip(grouped, queries, strict=True) if g[0].payload["parent"] == q["target"]]
    assert len(found) >= len(queries) // 2
    inside = [h for h, q in found if h.payload["span"][0] <= q["offset"] < h.payload["span"][1]]
    assert len(inside) >= len(found) // 2 and all(h.payload["chunk"] > 0 for h in inside)


def test_group_fusion_sum_adds_the_top_hits(index, chunked, docs) -> None:
    texts = [q["text"] for q in _queries(docs)[:5]]
    every = index.search(texts, k=len(chunked), exact=True)
    grouped = index.search(texts, k=3, group_by="parent", group_fusion="sum", group_top=2, exact=True)
    for all_hits, groups in zip(every, grouped, strict=True):
        scores: dict = {}
        for h in all_hits:
            scores.setdefault(h.payload["parent"], []).append(h.score)
        want = sorted(((sum(s[:2]), p) for p, s in scores.items()), reverse=True)[:3]
        assert [h.payload["parent"] for h in groups] == [p for _, p in want]
        assert [h.score for h in groups] == pytest.approx([s for s, _ in want], abs=1e-5)


def test_group_by_cli_with_where_and_shards(chunked, docs, tmp_path) -> None:
    src = _write(tmp_path / "chunks.jsonl", [{**x, "embedding": x["embedding"].tolist()} for x in chunked])
    one, sharded = tmp_path / "one.idx", tmp_path / "sharded.idx"
    assert cli_inproc("index", "-q", src, "-o", str(one)).code == 0
    assert cli_inproc("index", "-q", "--shards", "3", src, "-o", str(sharded)).code == 0
    q = _queries(docs)[0]
    skip = docs[0]["id"]
    args = ["--query", q["text"], "-k", "4", "--exact", "--group-by", "parent", "--where", f"parent != '{skip}'"]
    a = cli_inproc("search", *args, str(one))
    b = cli_inproc("search", *args, str(sharded))
    assert a.code == b.code == 0, a.err + b.err
    [ra], [rb] = a.records(), b.records()
    assert [h["id"] for h in ra["results"]] == [h["id"] for h in rb["results"]]
    parents = [h["parent"] for h in ra["results"]]
    assert len(parents) == 4 == len(set(parents)) and skip not in parents
    assert all(h["group_hits"] >= 1 for h in ra["results"])
    # More groups asked for than there are: every document once.
    r = cli_inproc("search", "--query", q["text"], "-k", "50", "--group-by", "parent", str(one))
    assert sorted(h["parent"] for h in r.records()[0]["results"]) == sorted(d["id"] for d in docs[:FEW])
    for args in (["--group-top", "2"], ["--group-by", "parent", "--group-top", "2"], ["--group-by", ""]):
        r = cli_inproc("search", "--query", "x", *args, str(one))
        assert r.code == 2 and r.out == b"", (args, r.err)


def test_group_by_over_hybrid_groups_the_fused_ranking(index, docs) -> None:
    """Grouping comes after the fusion: each parent's best fused hit, in fused order."""
    texts = [q["text"] for q in _queries(docs)[:6]]
    flat = index.search(texts, k=100, mode="hybrid", exact=True)  # the fused top 100 (fusion depth 100)
    grouped = index.search(texts, k=5, mode="hybrid", group_by="parent", exact=True)
    for hits, groups in zip(flat, grouped, strict=True):
        best: dict = {}
        for h in hits:
            best.setdefault(h.payload["parent"], h)
        assert [h.id for h in groups] == [h.id for h in list(best.values())[:5]]
        assert [h.score for h in groups] == pytest.approx([h.score for h in list(best.values())[:5]])


def test_eval_with_group_by_scores_documents(index, index_path, docs) -> None:
    """`eval --config "--group-by parent"` judges the parents that grouped search returns, not chunk ids."""
    queries = [{"id": f"q{i}", "text": q["text"]} for i, q in enumerate(_queries(docs))]
    qrels = {f"q{i}": {q["target"]: 1} for i, q in enumerate(_queries(docs))}
    got = embcli.evaluate(index_path, queries, qrels, configs=["--group-by parent --exact"], k=[1, 5])
    grouped = index.search([q["text"] for q in queries], k=5, group_by="parent", exact=True)
    hit1 = [g[0].payload["parent"] == qrels[q["id"]].popitem()[0] for g, q in zip(grouped, queries, strict=True)]
    assert got.metrics("--group-by parent --exact")["recall@1"] == pytest.approx(sum(hit1) / len(hit1))
    assert got.report["configs"][0]["relevant_not_in_index"] is None  # group values are not index ids: unchecked
