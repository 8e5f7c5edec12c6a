"""embcli eval and embcli.evaluate: metrics checked by hand, qrels formats, configs, bad input, real data.

The end-to-end cases search an index of the 2,000 real package summaries (tests/data) with the
package-name queries and graded judgements that tests/data/make_eval.py builds from them.
"""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import orjson
import pytest
from conftest import DATA, cli_inproc

import embcli
from embcli.analysis.retrieval_metrics import mean_scores, metric_names, score_query
from embcli.errors import InputError, UsageError
from embcli.io.qrels import read_qrels
from embcli.search.configs import parse_config

QUERIES = str(DATA / "packages-queries.jsonl")
QRELS = str(DATA / "packages-qrels.trec")

# ------------------------------------------------------------------ the metrics, by hand

# Three queries, cutoffs 1, 2, 3. Relevance: rel >= 1 is relevant; gains are the relevance.
JUDGED = {
    "q1": {"a": 1, "b": 2, "c": 0, "x": 1},  # x is relevant and never retrieved
    "q2": {"d": 0},  # judged, nothing relevant
    "q3": {"e": -1, "f": 1},  # a negative judgement gains nothing
}
RUN = {"q1": ["a", "b", "c", "z"], "q2": ["d"], "q3": ["e", "f"]}
L3 = math.log2(3)  # 1.5849625: the discount at rank 2 (log2(rank + 1))
# q1: relevant a, b, x (3). Ranks: a(1) b(2) c(0) z(unjudged).
#   recall@1 = 1/3, recall@2 = recall@3 = 2/3
#   DCG@1 = 1/log2(2) = 1; ideal gains 2,1,1: IDCG@1 = 2                       -> nDCG@1 = 0.5
#   DCG@2 = 1 + 2/log2(3) = 2.2618595; IDCG@2 = 2 + 1/log2(3) = 2.6309298      -> nDCG@2 = 0.8597187
#   DCG@3 = 2.2618595 (c gains 0); IDCG@3 = 2.6309298 + 1/log2(4) = 3.1309298 -> nDCG@3 = 0.7224242
#   MRR@k = 1 (a at rank 1); AP = (1/1 + 2/2) / 3 relevant = 0.6666667
# q2: no relevant document: every metric 0.
# q3: relevant f (1). Ranks: e(-1) f(1).
#   recall@1 = 0, recall@2 = 1; nDCG@2 = (1/log2(3)) / 1 = 0.6309298; MRR@1 = 0, MRR@2 = 0.5; AP = (1/2)/1 = 0.5
EXPECTED = {
    "q1": {
        "recall@1": 1 / 3,
        "recall@2": 2 / 3,
        "recall@3": 2 / 3,
        "ndcg@1": 0.5,
        "ndcg@2": (1 + 2 / L3) / (2 + 1 / L3),
        "ndcg@3": (1 + 2 / L3) / (2 + 1 / L3 + 0.5),
        "mrr@1": 1.0,
        "mrr@2": 1.0,
        "mrr@3": 1.0,
        "map": 2 / 3,
    },
    "q2": dict.fromkeys(metric_names([1, 2, 3]), 0.0),
    "q3": {
        "recall@1": 0.0,
        "recall@2": 1.0,
        "recall@3": 1.0,
        "ndcg@1": 0.0,
        "ndcg@2": 1 / L3,
        "ndcg@3": 1 / L3,
        "mrr@1": 0.0,
        "mrr@2": 0.5,
        "mrr@3": 0.5,
        "map": 0.5,
    },
}
# Cross-checked once against pytrec_eval-terrier 0.5.11 (trec_eval 9) in a scratch venv, measures
# recall.1,2,3 ndcg_cut.1,2,3 recip_rank map: q1 0.3333/0.6667/0.6667, 0.5/0.859719/0.722424, 1.0,
# 0.666667; q2 all 0; q3 0/1/1, 0/0.630930/0.630930, 0.5, 0.5. ir-measures 0.4.3 agreed (nDCG@2
# mean 0.496883, AP mean 0.388889, RR@2 mean 0.5), and counted q2 in the means as we do.


def test_metrics_match_the_hand_checked_case():
    names = metric_names([1, 2, 3])
    per_query = {q: score_query(RUN[q], JUDGED[q], [1, 2, 3]) for q in JUDGED}
    for q, expected in EXPECTED.items():
        assert list(per_query[q]) == names
        for name in names:
            assert per_query[q][name] == pytest.approx(expected[name], abs=1e-12), (q, name)
    means = mean_scores(list(per_query.values()), names)
    assert means["ndcg@2"] == pytest.approx((0.8597186998521972 + 0 + 0.6309297535714575) / 3)
    assert means["map"] == pytest.approx((2 / 3 + 0 + 0.5) / 3)  # ir-measures' AP: 0.388889


def test_a_document_twice_in_a_list_counts_once_and_the_order_given_is_the_ranking():
    # b again at rank 3 would add to recall and MAP if counted; the list's order decides ranks, not ids.
    assert score_query(["b", "z", "b"], {"b": 1, "y": 1}, [3]) == score_query(["b", "z"], {"b": 1, "y": 1}, [3])
    assert score_query(["z", "b"], {"b": 1}, [2])["mrr@2"] == 0.5


# ------------------------------------------------------------------ qrels formats


def _write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_qrels_jsonl_trec_and_tsv_read_the_same(tmp_path):
    jsonl = _write(
        tmp_path / "q.jsonl",
        '{"query_id": "q1", "doc_id": "a", "relevance": 2}\n\n{"query_id": 7, "doc_id": 42, "relevance": 0}\n',
    )
    trec = _write(tmp_path / "q.trec", "q1 0 a 2\n7\tQ0\t42 0\n")
    tsv = _write(tmp_path / "q.tsv", "query-id\tcorpus-id\tscore\nq1\ta\t2\n7\t42\t0\n")
    read = [read_qrels(p) for p in (jsonl, trec, tsv)]
    assert [q.format for q in read] == ["jsonl", "trec", "tsv"]
    assert read[0].by_query() == read[1].by_query() == read[2].by_query() == {"q1": {"a": 2}, "7": {"42": 0}}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("q1 0 a 1\nq1 0 b\n", "expected 4 fields (QID ITER DOCID REL), got 3, {path} line 2"),
        ("q1 0 a high\n", "relevance 'high' is not an integer, {path} line 1"),
        ("q1 0 a 1\nq1 0 a 2\n", "judges document 'a' twice (first at line 1), {path} line 2"),
        ('{"query_id": "q1", "doc_id": "a"}\n', "no 'relevance' field, {path} line 1"),
        (
            '{"query_id": "q1", "doc_id": "a", "relevance": 1.5}\n',
            "relevance must be an integer, got 1.5, {path} line 1",
        ),
        ('{"query_id": true, "doc_id": "a", "relevance": 1}\n', "must be strings or integers, {path} line 1"),
        ("\n\n", "no relevance judgements in {path}"),
        ("", "no relevance judgements in {path}"),
    ],
)
def test_bad_qrels_are_bad_input_naming_the_line(tmp_path, text, message):
    path = _write(tmp_path / "bad.qrels", text)
    with pytest.raises(InputError) as e:
        read_qrels(path)
    assert message.format(path=path) in e.value.message


# ------------------------------------------------------------------ configs


def test_config_strings_become_search_options():
    c = parse_config('--rescore 4 ef=256 --exact --where "year >= 2020" name=mine')
    assert (c.name, c.search.rescore, c.search.expansion_search, c.search.exact, c.search.where) == (
        "mine",
        4,
        256,
        True,
        "year >= 2020",
    )
    assert c.settings() == {"exact": True, "where": "year >= 2020", "expansion_search": 256, "rescore": 4}
    c = parse_config("index=a.idx --index b.idx --query-prompt 'query: ' --expansion-search=64")
    assert (c.paths, c.query.prompt, c.search.expansion_search, c.name) == (
        ["a.idx", "b.idx"],
        "query: ",
        64,
        "index=a.idx --index b.idx --query-prompt 'query: ' --expansion-search=64",
    )
    assert parse_config("dense").settings() == {}
    assert parse_config("exact").search.exact and parse_config("--exact=true").search.exact
    c = parse_config("--hybrid --fusion linear --alpha 0.3 --rrf-k 10")
    assert (c.search.mode, c.search.fusion, c.search.alpha, c.search.rrf_k) == ("hybrid", "linear", 0.3, 10.0)
    assert parse_config("lexical").search.mode == "lexical" and parse_config("dense").search.mode == "dense"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hybrid --lexical", "names two retrieval modes, hybrid and lexical"),
        ("--alpha half", "--alpha takes a number, got 'half'"),
        ("--group-top 0", "--group-top must be at least 1, got 0"),
        ("--bogus 3", "unknown setting '--bogus'"),
        ("ef=many", "--ef takes a number, got 'many'"),
        ("--rescore", "--rescore needs a value"),
        ("-k 5", "the cutoffs are eval's -k/--at"),
        ("--where 'open", "No closing quotation"),
    ],
)
def test_bad_configs_are_usage_errors(text, message):
    with pytest.raises(UsageError) as e:
        parse_config(text)
    assert message in e.value.message


# ------------------------------------------------------------------ end to end, real data


@pytest.fixture(scope="module")
def idx(packages_vec, tmp_path_factory) -> dict:
    """f32 and i8 (floats kept) indexes of the 2,000 embedded package summaries."""
    d = tmp_path_factory.mktemp("eval")
    assert cli_inproc("index", "-q", "-o", str(d / "p.idx"), str(packages_vec)).code == 0
    r = cli_inproc("index", "-q", "--dtype", "i8", "--keep-floats", "-o", str(d / "p8.idx"), str(packages_vec))
    assert r.code == 0, r.err
    return {"dir": d, "f32": str(d / "p.idx"), "i8": str(d / "p8.idx"), "vec": packages_vec}


def _report(*args: str) -> dict:
    r = cli_inproc("eval", *args)
    assert r.code == 0, r.err
    return orjson.loads(r.out)


def test_eval_reports_configs_side_by_side_with_per_query_lines(idx):
    pq = idx["dir"] / "per-query.jsonl"
    configs = ["dense", "--exact", "ef=16", f"index={idx['i8']} --rescore 4 name=i8+rescore"]
    args = [idx["f32"], "--queries", QUERIES, "--qrels", QRELS, "--at", "1,5", "-k", "10"]
    r = cli_inproc("eval", *args, *(a for c in configs for a in ("--config", c)), "--per-query", str(pq))
    assert r.code == 0, r.err
    report = orjson.loads(r.out)
    assert (report["cutoffs"], report["depth"], report["queries"], report["scored_queries"]) == (
        [1, 5, 10],
        10,
        200,
        200,
    )
    assert (report["unjudged_queries"], report["no_relevant_queries"], report["judgements"]) == (0, 0, 239)
    assert [c["name"] for c in report["configs"]] == ["dense", "--exact", "ef=16", "i8+rescore"]
    assert report["configs"][3]["index"] == [idx["i8"]] and report["configs"][3]["settings"] == {"rescore": 4}
    assert report["configs"][2]["settings"] == {"expansion_search": 16}
    names = metric_names([1, 5, 10])
    lines = [orjson.loads(line) for line in pq.read_bytes().splitlines()]
    assert len(lines) == 4 * 200
    for column in report["configs"]:
        mine = [line for line in lines if line["config"] == column["name"]]
        assert list(column["metrics"]) == names
        assert all(0.0 <= v <= 1.0 for v in column["metrics"].values())
        assert column["metrics"] == pytest.approx(mean_scores(mine, names))
        assert column["relevant_not_in_index"] == 0
    # Every query has its package in the index (relevance 2): found at a rank <= 10 or not at all.
    first = lines[0]
    assert first["query_id"] == "q001" and first["relevant"] == 1
    assert first["found"] == [{"id": "3d-converter", "rank": 1, "relevance": 2}]
    assert "evaluated 4 configs on 200 queries" in r.err


def test_eval_dense_scores_the_hits_search_returns(idx):
    """The dense column is `embcli search -k 10` scored: the same hits, the same code path."""
    r = cli_inproc("search", "-q", idx["f32"], "-k", "10", "--queries", QUERIES)
    assert r.code == 0, r.err
    judged = read_qrels(QRELS).by_query()
    names = metric_names([10])
    per_query = [score_query([h["id"] for h in q["results"]], judged[q["id"]], [10]) for q in r.records()]
    report = _report(idx["f32"], "--queries", QUERIES, "--qrels", QRELS)
    assert report["configs"][0]["metrics"] == pytest.approx(mean_scores(per_query, names), abs=1e-12)


@pytest.mark.parametrize("mode", ["hybrid", "lexical"])
def test_eval_hybrid_and_lexical_score_the_hits_search_returns(idx, mode):
    """`--config hybrid` / `lexical` is `embcli search --hybrid` / `--lexical` scored, hit for hit."""
    r = cli_inproc("search", "-q", idx["f32"], f"--{mode}", "-k", "10", "--queries", QUERIES)
    assert r.code == 0, r.err
    judged = read_qrels(QRELS).by_query()
    per_query = [score_query([h["id"] for h in q["results"]], judged[q["id"]], [10]) for q in r.records()]
    report = _report(idx["f32"], "--queries", QUERIES, "--qrels", QRELS, "--config", mode)
    assert report["configs"][0]["metrics"] == pytest.approx(mean_scores(per_query, metric_names([10])), abs=1e-12)


def test_qrels_and_queries_in_other_formats_give_the_same_report(idx, tmp_path):
    base = _report(idx["f32"], "--queries", QUERIES, "--qrels", QRELS)
    jsonl = tmp_path / "qrels.jsonl.gz"
    rows = [line.split() for line in Path(QRELS).read_text().splitlines()]
    jsonl.write_bytes(
        gzip.compress(
            b"".join(orjson.dumps({"query_id": q, "doc_id": d, "relevance": int(r)}) + b"\n" for q, _, d, r in rows)
        )
    )
    csv = tmp_path / "queries.csv"
    csv.write_text(
        "id,text\n"
        + "".join(f"{q['id']},{q['text']}\n" for q in map(orjson.loads, Path(QUERIES).read_bytes().splitlines())),
        encoding="utf-8",
    )
    assert _report(idx["f32"], "--queries", str(csv), "--qrels", str(jsonl)) == base
    # Vector queries: the same texts embedded by `embcli embed` search with the same vectors.
    embedded = tmp_path / "queries-vec.jsonl"
    r = cli_inproc("embed", "-q", QUERIES, "-o", str(embedded))
    assert r.code == 0, r.err
    assert _report(idx["f32"], "--queries", str(embedded), "--qrels", QRELS) == base


def test_python_api_gives_the_cli_report(idx):
    report = _report(idx["f32"], "--queries", QUERIES, "--qrels", QRELS, "--at", "1,10", "--config", "dense")
    result = embcli.evaluate(idx["f32"], QUERIES, QRELS, k=[1, 10])
    assert result.report == report
    assert result.metrics("dense") == report["configs"][0]["metrics"]
    # Records and a mapping work too.
    queries = [orjson.loads(line) for line in Path(QUERIES).read_bytes().splitlines()]
    judged = read_qrels(QRELS).by_query()
    assert embcli.evaluate([idx["f32"]], queries, judged, k=[1, 10]).report["configs"] == report["configs"]


def test_table_on_request(idx):
    r = cli_inproc("eval", idx["f32"], "--queries", QUERIES, "--qrels", QRELS, "--format", "table")
    assert r.code == 0, r.err
    text = r.out.decode()
    for label in ("recall@10", "nDCG@10", "MRR@10", "MAP (top 10)", "200 queries scored"):
        assert label in text


def test_queries_without_judgements_are_left_out_and_counted(idx, tmp_path):
    qrels = tmp_path / "some.trec"
    # q001 keeps its judgement; q002 is judged non-relevant only (scores 0, counts); the rest unjudged.
    qrels.write_text("q001 0 3d-converter 2\nq002 0 acs-toolbox 0\n", encoding="utf-8")
    report = _report(idx["f32"], "--queries", QUERIES, "--qrels", str(qrels), "-k", "10")
    assert (report["scored_queries"], report["unjudged_queries"], report["no_relevant_queries"]) == (2, 198, 1)
    assert report["configs"][0]["metrics"]["recall@10"] == 0.5  # q001 found (1.0), q002 has nothing (0.0)


# ------------------------------------------------------------------ bad input, per the contract


def test_a_judgement_naming_an_unknown_query_is_exit_3_with_file_and_line(idx, tmp_path):
    qrels = tmp_path / "q.trec"
    qrels.write_text("q001 0 3d-converter 2\nq999 0 3d-converter 1\n", encoding="utf-8")
    r = cli_inproc("eval", idx["f32"], "--queries", QUERIES, "--qrels", str(qrels))
    assert r.code == 3 and r.out == b""
    assert f"judgement names query 'q999', which {QUERIES} do not hold, {qrels} line 2" in r.err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("q001 0 3d-converter\n", "expected 4 fields"),
        ("", "no relevance judgements"),
    ],
)
def test_malformed_or_empty_qrels_exit_3(idx, tmp_path, text, message):
    qrels = tmp_path / "q.trec"
    qrels.write_text(text, encoding="utf-8")
    r = cli_inproc("eval", idx["f32"], "--queries", QUERIES, "--qrels", str(qrels))
    assert r.code == 3 and message in r.err and r.out == b"", r.err


def test_unknown_documents_are_counted_and_all_unknown_is_exit_3(idx, tmp_path):
    qrels = tmp_path / "q.trec"
    qrels.write_text("q001 0 3d-converter 2\nq001 0 no-such-package 1\n", encoding="utf-8")
    r = cli_inproc("eval", idx["f32"], "--queries", QUERIES, "--qrels", str(qrels))
    assert r.code == 0, r.err
    assert "1 of 2 relevant documents are not in the index (e.g. 'no-such-package')" in r.err
    report = orjson.loads(r.out)
    assert report["configs"][0]["relevant_not_in_index"] == 1
    assert report["configs"][0]["metrics"]["recall@10"] == 0.5  # the missing one counts, never found
    qrels.write_text("q001 0 nope 1\nq002 0 nor-this 1\n", encoding="utf-8")
    r = cli_inproc("eval", idx["f32"], "--queries", QUERIES, "--qrels", str(qrels))
    assert r.code == 3 and "none of the 2 relevant documents in the qrels is in" in r.err


def test_bad_queries_and_options(idx, tmp_path):
    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": "q1", "text": "a"}\n{"id": "q1", "text": "b"}\n', encoding="utf-8")
    r = cli_inproc("eval", idx["f32"], "--queries", str(dup), "--qrels", QRELS)
    assert r.code == 3 and f"query id 'q1' again (first at {dup} line 1), {dup} line 2" in r.err
    noid = tmp_path / "noid.jsonl"
    noid.write_text('{"text": "a"}\n', encoding="utf-8")
    r = cli_inproc("eval", idx["f32"], "--queries", str(noid), "--qrels", QRELS)
    assert r.code == 3 and "query has no 'id' field" in r.err
    r = cli_inproc("eval", idx["f32"], "--queries", QUERIES, "--qrels", QRELS, "--config", "--group-top 0")
    assert r.code == 2 and "--group-top must be at least 1" in r.err
    r = cli_inproc("eval", "--queries", QUERIES, "--qrels", QRELS)
    assert r.code == 2 and "names no index" in r.err
    r = cli_inproc("eval", idx["f32"], "--queries", QUERIES, "--qrels", QRELS, "--at", "1,x")
    assert r.code == 2 and "--at takes whole numbers" in r.err
    r = cli_inproc("eval", idx["f32"], "--queries", QUERIES, "--qrels", QRELS, "--config", "ef=64", "--config", "ef=64")
    assert r.code == 2 and "two configs have the same name" in r.err


def test_queries_from_stdin_and_npy_rows(idx, tmp_path):
    base = _report(idx["f32"], "--queries", QUERIES, "--qrels", QRELS)
    r = cli_inproc("eval", idx["f32"], "--queries", "-", "--qrels", QRELS, input=Path(QUERIES).read_bytes())
    assert r.code == 0, r.err
    assert orjson.loads(r.out) == base
    # NPY rows are vector queries named by their 0-based row: rows 0 and 2 of the first three queries.
    npy = tmp_path / "q.npy"
    head = b"".join(Path(QUERIES).read_bytes().splitlines(keepends=True)[:3])
    assert cli_inproc("embed", "-q", "--format", "npy", "-o", str(npy), input=head).code == 0
    qrels = tmp_path / "rows.trec"
    qrels.write_text("0 0 3d-converter 2\n2 0 aerographite 1\n", encoding="utf-8")
    report = _report(idx["f32"], "--queries", str(npy), "--qrels", str(qrels))
    assert (report["queries"], report["scored_queries"], report["unjudged_queries"]) == (3, 2, 1)


def test_a_bad_where_names_its_config(idx):
    r = cli_inproc("eval", idx["f32"], "--queries", QUERIES, "--qrels", QRELS, "--config", "--where 'year >' name=w")
    assert r.code == 2 and "config 'w': --where:" in r.err and r.out == b""
