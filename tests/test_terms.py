"""diff --terms: which words changed meaning between two real corpora (tests/data/make_terms.py).

The software side is real PyPI summaries, the animal side real WordNet noun.animal
glosses; "python", "mouse", "shell", … mean different things in them, "the", "of",
"and" do not.
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from conftest import DATA, cli_inproc

import embcli
from embcli.runtime.encoder import pool
from embcli.runtime.vectors import unit

SOFTWARE = DATA / "terms-software.jsonl"
ANIMALS = DATA / "terms-animals.jsonl"
PLANTED = ("python", "mouse", "shell", "bug", "host", "spider", "cell", "ant", "owl", "falcon")
FUNCTION = ("the", "of", "and", "a", "in", "to", "for", "with")


def _records(path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture(scope="module")
def encoder():
    return embcli.Encoder(device="cpu")


def test_token_states_pool_to_the_pinned_vectors(encoder):
    texts = ["The python swallowed a mouse whole.", "pip install python-dateutil", "ok"]
    states = encoder.runtime.token_states(texts)
    assert [s.vectors.shape[1] for s in states] == [384] * 3
    for s in states:
        assert s.word_ids[0] is None and s.word_ids[-1] is None  # [CLS] and [SEP]
        assert len(s.word_ids) == len(s.offsets) == len(s.vectors)
    # Mean pooling the token states, then normalizing, is exactly what embed makes.
    pooled = [unit(pool(s.vectors[None], np.ones((1, len(s.vectors)), np.int64), "mean")) for s in states]
    for got, want in zip(pooled, encoder.embed(texts), strict=True):
        assert abs(got[0] - want).max() < 1e-5
    spans = zip(states[0].word_ids, states[0].offsets, strict=True)
    words = {texts[0][a:b].lower() for w, (a, b) in spans if w is not None}
    assert {"python", "mouse"} <= words


@pytest.fixture(scope="module")
def topics(encoder):
    return embcli.term_shift(_records(SOFTWARE), _records(ANIMALS), min_count=3, top=1000, device="cpu")


def test_words_whose_sense_differs_rank_at_the_top(topics):
    ranked = [w["word"] for w in topics.report["most_moved"]]
    rank = {w: i for i, w in enumerate(ranked)}
    assert all(w in rank for w in PLANTED + FUNCTION), [w for w in PLANTED + FUNCTION if w not in rank]
    planted = sorted(rank[w] for w in PLANTED)
    function = sorted(rank[w] for w in FUNCTION)
    # Most of the planted words lead the ranking; the rest of the top are real shifts too ("deep", "type").
    assert sum(r < 15 for r in planted) >= 7, dict(zip(PLANTED, [rank[w] for w in PLANTED], strict=True))
    # Every function word sits in the bottom half, below every planted word.
    assert min(function) >= len(ranked) // 2, {w: rank[w] for w in FUNCTION}
    assert max(planted) < min(function)
    assert topics.different and topics.verdict == "different"
    moved = {w["word"] for w in topics.report["most_moved"] if w["moved"]}
    assert len(moved & set(PLANTED)) >= 8


def test_examples_come_from_each_side(topics):
    python = next(w for w in topics.report["most_moved"] if w["word"] == "python")
    assert python["examples_a"] and python["examples_b"]
    assert all("python" in e["text"].lower() for e in python["examples_a"] + python["examples_b"])
    assert all(not str(e["id"]).startswith("wn:") for e in python["examples_a"])
    assert all(str(e["id"]).startswith("wn:") for e in python["examples_b"])
    assert python["used_a"] <= 64 and python["count_a"] > python["used_a"]  # capped, from many


def test_two_halves_of_one_corpus_move_no_word():
    recs = _records(SOFTWARE)
    result = embcli.term_shift(recs[::2], recs[1::2], min_count=3, top=1000, device="cpu")
    assert result.report["words"] >= 50
    assert not result.different, [(w["word"], w["ratio"]) for w in result.report["most_moved"][:5]]
    assert result.verdict == "same"


def test_cli_terms_report_and_exit_codes(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_bytes(b"".join(SOFTWARE.read_bytes().splitlines(keepends=True)[:150]))
    b.write_bytes(b"".join(ANIMALS.read_bytes().splitlines(keepends=True)[:150]))
    r = cli_inproc("diff", str(a), str(b), "--terms", "--min-count", "3", "--top", "5", "--format", "json")
    assert r.code == 1, r.err  # diff(1): different
    report = orjson.loads(r.out)
    assert report["mode"] == "terms" and report["verdict"] == "different"
    assert len(report["most_moved"]) == 5 and report["min_count"] == 3
    shifts = [w["shift"] for w in report["most_moved"]]
    assert shifts == sorted(shifts, reverse=True)
    out = tmp_path / "report.txt"
    r = cli_inproc("diff", str(a), str(b), "--terms", "--min-count", "3", "--format", "table", "-o", str(out))
    assert r.code == 1 and r.out == b""
    assert "terms mode" in out.read_text()
    r = cli_inproc("diff", str(a), str(b), "--terms", "--min-count", "3", "--top", "3", "--items")
    assert r.code == 1 and len(r.records()) == 3 and "verdict: different" in r.err


def test_cli_terms_needs_texts(tmp_path):
    npy = tmp_path / "x.npy"
    np.save(npy, np.zeros((3, 4), np.float32))
    r = cli_inproc("diff", str(npy), str(ANIMALS), "--terms")
    assert r.code == 2 and "--terms compares texts, and A is NPY vectors" in r.err
    nofield = tmp_path / "c.jsonl"
    nofield.write_text('{"title": "x"}\n')
    r = cli_inproc("diff", str(ANIMALS), str(nofield), "--terms")
    assert r.code == 2 and "B's records have no 'text' field" in r.err and "--text-field" in r.err
    r = cli_inproc("diff", str(ANIMALS), str(ANIMALS), "--terms", "--by", "id")
    assert r.code == 2 and "--by" in r.err


def test_cli_terms_empty_and_bad_input(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    r = cli_inproc("diff", str(empty), str(empty), "--terms", "--format", "json")
    assert r.code == 0 and orjson.loads(r.out)["verdict"] == "same"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a python"}\n{"text": 3}\n')
    r = cli_inproc("diff", str(bad), str(ANIMALS), "--terms")
    assert r.code == 3 and "bad.jsonl line 2" in r.err
    few = tmp_path / "few.jsonl"
    few.write_text('{"text": "a python"}\n')
    r = cli_inproc("diff", str(few), str(ANIMALS), "--terms")
    assert r.code == 3 and "--min-count" in r.err


def test_api_term_shift_checks_its_sides():
    with pytest.raises(embcli.UsageError, match="B must be texts"):
        embcli.term_shift(["a python"], [3])
    with pytest.raises(embcli.UsageError, match="min_count"):
        embcli.term_shift(["a"], ["b"], min_count=1)


def test_alignment_undoes_a_rotation_when_there_are_enough_words():
    from embcli.analysis.terms import TermOptions, align, standardized

    rng = np.random.default_rng(0)
    ma = rng.normal(size=(60, 8))
    rotation, _ = np.linalg.qr(rng.normal(size=(8, 8)))
    mb = (ma + 0.01 * rng.normal(size=ma.shape)) @ rotation.T + 5.0  # B: A turned and moved, a little noise
    mb[:3] = rng.normal(size=(3, 8)) + 5.0  # three words whose vectors really moved
    spread = (np.full(60, 0.5), np.full(60, 0.5))
    used = (np.full(60, 1e6), np.full(60, 1e6))  # so many occurrences that sampling noise is nil
    xa, xb, info = align(ma, mb, spread, used, TermOptions())
    assert "rotated" in info["method"] and info["compass_words"] == 45
    shift = standardized(xa, xb, spread, used)
    assert set(np.argsort(-shift)[:3]) == {0, 1, 2}
    assert np.abs(xa[3:] - xb[3:]).max() < 0.1  # the rest line up again
