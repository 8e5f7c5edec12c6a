"""embcli diff: calibrated two-sample tests between corpora, neighbourhood overlap between models."""

from __future__ import annotations

import re

import numpy as np
import orjson
import pytest
from conftest import cli_inproc

from embcli.analysis.diff import compare_corpora

WEB = re.compile(r"\b(django|flask|web|http|html|css|website|browser|fastapi)\b", re.I)
ML = re.compile(
    r"\b(machine learning|neural|deep learning|dataset|tensor|pandas|numpy|statistic\w*|regression|model)\b", re.I
)


@pytest.fixture(scope="module")
def records(packages_vec) -> list[dict]:
    return [orjson.loads(line) for line in packages_vec.read_bytes().splitlines()]


def _write(path, recs) -> str:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in recs))
    return str(path)


def test_random_halves_of_one_corpus_are_rarely_called_different(records):
    x = np.array([r["embedding"] for r in records], dtype=np.float32)
    verdicts = []
    for seed in range(20):
        perm = np.random.default_rng(100 + seed).permutation(len(x))
        half = len(x) // 2
        result = compare_corpora(x[perm[:half]], x[perm[half:]], permutations=100, max_samples=600, seed=seed)
        verdicts.append(result.different)
    assert sum(verdicts) <= 2, verdicts


def test_different_topics_are_different(records, tmp_path):
    web = [r for r in records if WEB.search(r["text"]) and not ML.search(r["text"])]
    ml = [r for r in records if ML.search(r["text"]) and not WEB.search(r["text"])]
    assert len(web) > 80 and len(ml) > 80
    r = cli_inproc("diff", _write(tmp_path / "web.jsonl", web), _write(tmp_path / "ml.jsonl", ml), "--top", "3")
    assert r.code == 1, r.err  # different
    report = orjson.loads(r.out)
    assert report["verdict"] == "different"
    assert all(t["p_value"] < 0.01 and t["rejects"] for t in report["tests"].values()), report["tests"]
    assert report["tests"]["classifier"]["auc"] > 0.8
    # The B items least like A are listed with their ids and texts.
    assert len(report["least_like_a"]) == 3 and all("text" in item for item in report["least_like_a"])
    r = cli_inproc("diff", str(tmp_path / "web.jsonl"), str(tmp_path / "ml.jsonl"), "--items", "--top", "2")
    lines = r.records()
    assert [line["kind"] for line in lines] == ["new", "new", "gone", "gone"] and "verdict: different" in r.err


def test_same_corpus_split_via_cli_exits_0(records, tmp_path):
    a, b = _write(tmp_path / "a.jsonl", records[::2]), _write(tmp_path / "b.jsonl", records[1::2])
    r = cli_inproc("diff", a, b, "--format", "json")
    assert r.code == 0, r.err
    assert orjson.loads(r.out)["verdict"] == "same"


def test_aligned_mode_overlap(records, tmp_path):
    recs = records[:500]
    x = np.array([r["embedding"] for r in recs], dtype=np.float32)
    a = _write(tmp_path / "a.jsonl", recs)
    rotation, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(384, 384)))
    rotated = [{"id": r["id"], "embedding": (v @ rotation).tolist()} for r, v in zip(recs, x, strict=True)]
    shuffled_ids = np.random.default_rng(1).permutation([r["id"] for r in recs])
    shuffled = [{"id": str(i), "embedding": r["embedding"]} for i, r in zip(shuffled_ids, recs, strict=True)]
    for other, expect_code, lo, hi in (
        (a, 0, 1.0, 1.0),
        (_write(tmp_path / "rot.jsonl", rotated), 0, 0.999, 1.0),
        (_write(tmp_path / "shuf.jsonl", shuffled), 1, 0.0, 0.1),
    ):
        r = cli_inproc("diff", a, other, "--by", "id")
        assert r.code == expect_code, r.err
        report = orjson.loads(r.out)
        assert lo <= report["mean_overlap"] <= hi, report["mean_overlap"]
        assert report["ids"] == 500
    # Across dimensions (a Matryoshka-truncated version) it still compares neighbourhoods.
    short = [{"id": r["id"], "embedding": r["embedding"][:128]} for r in recs]
    report = orjson.loads(cli_inproc("diff", a, _write(tmp_path / "short.jsonl", short), "--by", "id").out)
    assert 0.2 < report["mean_overlap"] < 1.0 and "mean_cosine_between_versions" not in report


def test_bad_inputs(records, tmp_path):
    a = _write(tmp_path / "a.jsonl", records[:50])
    short = _write(tmp_path / "s.jsonl", [{"embedding": r["embedding"][:64]} for r in records[:50]])
    r = cli_inproc("diff", a, short)
    assert r.code == 3 and "64" in r.err and "--by id" in r.err
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    assert cli_inproc("diff", str(empty), str(empty)).code == 0
    r = cli_inproc("diff", a, str(empty))
    assert r.code == 3 and "at least 5" in r.err
    r = cli_inproc("diff", "-", "-")
    assert r.code == 2
