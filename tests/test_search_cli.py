"""search --query/--like/--limit/-o, cluster -k, diff -o, index info, completions: real model, real indexes."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys

import numpy as np
import orjson
import pytest
from conftest import ROOT, cli, cli_inproc


@pytest.fixture(scope="module")
def ex(examples_vec, tmp_path_factory) -> dict:
    """An index of the 300 embedded example summaries, and the records it was built from."""
    d = tmp_path_factory.mktemp("search-cli")
    r = cli_inproc("index", "-q", "-o", str(d / "ex.idx"), str(examples_vec))
    assert r.code == 0, r.err
    records = [orjson.loads(line) for line in examples_vec.read_bytes().splitlines()]
    return {"dir": d, "idx": str(d / "ex.idx"), "vec": examples_vec, "records": records}


def _ok(r) -> list[dict]:
    assert r.code == 0, r.err
    return r.records()


def _line(rec: dict) -> bytes:
    """A record as a query line: its vector and the fields that made it, nothing else."""
    return orjson.dumps({"embedding": rec["embedding"], "embedding_model": rec["embedding_model"]}) + b"\n"


# ------------------------------------------------------------------ --query


def test_query_gives_the_same_line_as_the_stdin_query(ex):
    by_flag = cli_inproc("search", ex["idx"], "-k", "5", "--query", "http client")
    by_stdin = cli_inproc("search", ex["idx"], "-k", "5", input='{"text": "http client"}\n')
    assert by_flag.code == 0 and by_flag.out == by_stdin.out
    (rec,) = by_flag.records()
    assert rec["text"] == "http client" and len(rec["results"]) == 5
    # The query record uses --text-field, as a stdin record with that field would.
    renamed = cli_inproc("search", ex["idx"], "-k", "5", "--text-field", "q", "--query", "http client")
    stdin = cli_inproc("search", ex["idx"], "-k", "5", "--text-field", "q", input='{"q": "http client"}\n')
    assert renamed.out == stdin.out and _ok(renamed)[0]["q"] == "http client"


def test_repeated_query_gives_one_line_per_query_in_order(ex):
    texts = ["read and write YAML files", "http client", "testing framework"]
    args = [a for t in texts for a in ("--query", t)]
    recs = _ok(cli_inproc("search", ex["idx"], "-k", "3", *args))
    assert [rec["text"] for rec in recs] == texts
    stdin = b"".join(orjson.dumps({"text": t}) + b"\n" for t in texts)
    assert recs == cli_inproc("search", ex["idx"], "-k", "3", input=stdin).records()


def test_query_does_not_read_stdin_and_empty_query_is_a_usage_error(ex):
    r = cli_inproc("search", ex["idx"], "--query", "http client", input=b"{not json\n")
    assert len(_ok(r)) == 1  # the bad stdin was never read
    r = cli_inproc("search", ex["idx"], "--query", "   ")
    assert r.code == 2 and "--query" in r.err and r.out == b""
    r = cli_inproc("search", ex["idx"], "--query", "x", "--queries", "-")
    assert r.code == 2 and "--queries" in r.err


def test_query_with_where_keeps_to_the_filter(ex):
    where = "download_rank <= 100"
    recs = _ok(cli_inproc("search", ex["idx"], "-k", "5", "--where", where, "--query", "web framework"))
    rank = {rec["id"]: rec["download_rank"] for rec in ex["records"]}
    hits = recs[0]["results"]
    assert len(hits) == 5 and all(rank[h["id"]] <= 100 for h in hits)
    stdin = cli_inproc("search", ex["idx"], "-k", "5", "--where", where, input='{"text": "web framework"}\n')
    assert recs == stdin.records()


def test_limit_is_k(ex):
    a = cli_inproc("search", ex["idx"], "-k", "4", "--query", "database driver")
    b = cli_inproc("search", ex["idx"], "--limit", "4", "--query", "database driver")
    assert a.code == 0 and a.out == b.out and len(a.records()[0]["results"]) == 4


# ------------------------------------------------------------------ --like


def test_like_leaves_the_item_out_and_returns_k_hits(ex):
    item = ex["records"][0]
    recs = _ok(cli_inproc("search", ex["idx"], "-k", "5", "--exact", "--like", item["id"]))
    assert recs[0]["like"] == item["id"] and set(recs[0]) == {"like", "results"}
    hits = recs[0]["results"]
    assert len(hits) == 5 and item["id"] not in [h["id"] for h in hits]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    # The same as searching with the item's own vector for one more hit and dropping the item.
    own = _ok(cli_inproc("search", ex["idx"], "-k", "6", "--exact", input=_line(item)))[0]["results"]
    assert own[0]["id"] == item["id"]
    assert [h["id"] for h in hits] == [h["id"] for h in own[1:]]
    assert np.allclose([h["score"] for h in hits], [h["score"] for h in own[1:]], atol=1e-5)
    # The graph (no --exact) too leaves it out, and --flat keeps the query record.
    flat = _ok(cli_inproc("search", ex["idx"], "-k", "3", "--flat", "--like", item["id"]))
    assert len(flat) == 3 and all(h["query"] == {"like": item["id"]} and h["id"] != item["id"] for h in flat)


def test_like_mixes_with_query_and_where(ex):
    item = ex["records"][5]
    where = "download_rank > 50"
    recs = _ok(cli_inproc("search", ex["idx"], "-k", "3", "--where", where, "--like", item["id"], "--query", "yaml"))
    assert [set(r) - {"results"} for r in recs] == [{"text"}, {"like"}]  # texts first, then ids
    rank = {rec["id"]: rec["download_rank"] for rec in ex["records"]}
    for rec in recs:
        assert len(rec["results"]) == 3 and all(rank[h["id"]] > 50 for h in rec["results"])
    assert item["id"] not in [h["id"] for h in recs[1]["results"]]


def test_unknown_like_id_is_bad_input_naming_it(ex):
    r = cli("search", ex["idx"], "--like", ex["records"][0]["id"], "--like", "no-such-package")
    assert r.code == 3 and r.out == b""
    assert r.err.count("embcli: error:") == 1 and "no-such-package" in r.err and "Traceback" not in r.err


def test_like_over_shards_and_integer_ids(ex, tmp_path):
    lines = ex["vec"].read_bytes().splitlines(keepends=True)
    for part, chunk in (("a", lines[:150]), ("b", lines[150:])):
        (tmp_path / f"{part}.jsonl").write_bytes(b"".join(chunk))
        assert cli_inproc("index", "-q", "-o", str(tmp_path / f"{part}.idx"), str(tmp_path / f"{part}.jsonl")).code == 0
    item = ex["records"][200]  # in shard b
    one = _ok(cli_inproc("search", ex["idx"], "-k", "5", "--exact", "--like", item["id"]))
    two = _ok(
        cli_inproc(
            "search", str(tmp_path / "a.idx"), str(tmp_path / "b.idx"), "-k", "5", "--exact", "--like", item["id"]
        )
    )
    assert [round(h["score"], 5) for h in one[0]["results"]] == [round(h["score"], 5) for h in two[0]["results"]]
    assert item["id"] not in [h["id"] for h in two[0]["results"]]
    # NPY rows get their row numbers as integer ids: --like 3 is the integer 3.
    np.save(tmp_path / "v.npy", np.array([rec["embedding"] for rec in ex["records"][:50]], dtype=np.float32))
    assert cli_inproc("index", "-q", "-o", str(tmp_path / "n.idx"), str(tmp_path / "v.npy")).code == 0
    recs = _ok(cli_inproc("search", str(tmp_path / "n.idx"), "-k", "4", "--like", "3"))
    assert recs[0]["like"] == 3 and len(recs[0]["results"]) == 4 and 3 not in [h["id"] for h in recs[0]["results"]]


def test_like_on_sign_bits_without_floats_says_what_it_uses(ex, tmp_path):
    idx = str(tmp_path / "b1.idx")
    r = cli_inproc("index", "-q", "--dtype", "b1", "--no-keep-floats", "-o", idx, str(ex["vec"]))
    assert r.code == 0, r.err
    item = ex["records"][0]["id"]
    r = cli_inproc("search", idx, "-k", "5", "--like", item)
    hits = _ok(r)[0]["results"]
    assert len(hits) == 5 and item not in [h["id"] for h in hits]
    assert "sign bits" in r.err
    # With the float copies (the default for b1) the exact vector is used, and nothing is said.
    kept = str(tmp_path / "b1f.idx")
    assert cli_inproc("index", "-q", "--dtype", "b1", "-o", kept, str(ex["vec"])).code == 0
    r = cli_inproc("search", kept, "-k", "5", "--like", item)
    assert r.code == 0 and "float vectors" not in r.err


# ------------------------------------------------------------------ -o, cluster -k, diff -o


def test_search_output_file_is_written_atomically(ex, tmp_path):
    out = tmp_path / "hits.jsonl"
    r = cli("search", ex["idx"], "-k", "3", "--query", "yaml", "-o", str(out))
    assert r.code == 0 and r.out == b"", r.err
    assert out.read_bytes() == cli_inproc("search", ex["idx"], "-k", "3", "--query", "yaml").out
    # A failed run leaves the file as it was, and no temporary file beside it.
    before = out.read_bytes()
    r = cli("search", ex["idx"], "--like", "no-such-package", "-o", str(out))
    assert r.code == 3 and out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hits.jsonl"]


def test_cluster_short_k_is_k(ex):
    a = cli_inproc("cluster", "-q", "-k", "3", str(ex["vec"]))
    b = cli_inproc("cluster", "-q", "--k", "3", str(ex["vec"]))
    assert a.code == 0 and a.out == b.out
    assert {rec["cluster"] for rec in a.records()} == {0, 1, 2}
    r = cli_inproc("cluster", "-k", "auto", "--k-range", "2:3", str(ex["vec"]))
    assert r.code == 0 and len(r.records()) == 300


def test_diff_output_file(ex, tmp_path):
    lines = ex["vec"].read_bytes().splitlines(keepends=True)
    (tmp_path / "a.jsonl").write_bytes(b"".join(lines[:150]))
    (tmp_path / "b.jsonl").write_bytes(b"".join(lines[150:]))
    args = ("diff", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), "--permutations", "19")
    plain = cli_inproc(*args)
    r = cli_inproc(*args, "-o", str(tmp_path / "report.json"))
    assert r.code == plain.code and r.out == b""
    assert orjson.loads((tmp_path / "report.json").read_bytes()) == orjson.loads(plain.out)


# ------------------------------------------------------------------ index info


def test_index_info_in_words_and_json(ex):
    r = cli_inproc("index", "info", ex["idx"])
    assert r.code == 0, r.err
    words = r.out.decode()
    manifest = orjson.loads((ex["dir"] / "ex.idx" / "manifest.json").read_bytes())
    for expect in (
        "count: 300 vectors",
        "dimensions: 384",
        "dtype: f32",
        "metric: cos",
        "model: all-MiniLM-L6-v2",
        "pooling mean",
        f"generation: {manifest['generation']}",
        f"created: {manifest['created']}",
        manifest["files"]["vectors"]["name"],
        manifest["files"]["meta"]["name"],
    ):
        assert expect in words, (expect, words)
    r = cli_inproc("index", "info", ex["idx"], "--json")
    assert r.code == 0 and orjson.loads(r.out) == manifest
    assert cli_inproc("index", "--info", "-o", ex["idx"], "--json").out == r.out
    r = cli_inproc("index", "--json", ex["idx"])
    assert r.code == 2 and "--info" in r.err
    r = cli_inproc("index", "info", ex["idx"] + ".missing")
    assert r.code == 4 and r.out == b""


# ------------------------------------------------------------------ completions and the terminal hint


@pytest.mark.parametrize(
    ("shell", "path"), [("bash", "embcli.bash"), ("zsh", "_embcli"), ("fish", "embcli.fish")], ids=lambda v: v
)
def test_completions_print_the_committed_scripts(shell, path, tmp_path):
    # The package alone, as pip installs it: no completions/ folder anywhere near it.
    shutil.copytree(ROOT / "embcli", tmp_path / "embcli", ignore=shutil.ignore_patterns("__pycache__"))
    r = cli("completions", shell, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert r.code == 0 and r.err == ""
    assert r.out and r.out == (ROOT / "completions" / path).read_bytes()


def _search_on_a_terminal(idx: str, *args: str) -> tuple[int, bytes, str]:
    """search with a pty as stdin (one query, then Ctrl-D), stdout and stderr as pipes."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if k != "EMBCLI_MODEL"}
    try:
        p = subprocess.Popen(
            [sys.executable, "-m", "embcli", "search", idx, *args],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**env, "HF_HUB_OFFLINE": "1"},
        )
        os.close(slave)
        os.write(master, b'{"text": "yaml"}\n\x04')
        out, err = p.communicate(timeout=300)
    finally:
        os.close(master)
    return p.returncode, out, err.decode()


def test_terminal_stdin_gets_a_hint_unless_quiet(ex):
    code, out, err = _search_on_a_terminal(ex["idx"], "-k", "2")
    assert code == 0 and len(out.splitlines()) == 1
    assert 'embcli: reading queries from stdin (JSONL {"text": ...} per line, Ctrl-D to end)' in err
    code, out, err = _search_on_a_terminal(ex["idx"], "-k", "2", "-q")
    assert code == 0 and len(out.splitlines()) == 1 and err == ""
    # A pipe gets no hint.
    assert "reading queries" not in cli("search", ex["idx"], input='{"text": "yaml"}\n').err


def test_info_and_completions_load_no_native_library(ex):
    # index info reads a manifest, completions prints a template: neither needs onnxruntime or usearch.
    code = (
        "import sys\nfrom embcli.cli import run\n"
        f"codes = [run(['index', 'info', {ex['idx']!r}]), run(['completions', 'bash'])]\n"
        "heavy = [m for m in ('onnxruntime', 'tokenizers', 'usearch') if m in sys.modules]\n"
        "assert codes == [0, 0] and not heavy, (codes, heavy)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stderr
