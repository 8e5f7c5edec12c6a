"""detect-anomalies --index: records scored against an index built by `embcli index` (real summaries, real
indexes) give the scores of the throwaway-graph run over the same records; bad inputs are refused.

At 2,000 records both sides search exactly (numpy, the same float32 arithmetic), so the scores must be
equal, not merely close: a record's own item is left out by its id, or for NPY rows by its identical
stored vector, and the remaining distances are the ones outlier mode sees.
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from conftest import cli_inproc

import embcli


def _ok(r):
    assert r.code == 0, r.err
    return r


@pytest.fixture(scope="module")
def built(packages_vec, tmp_path_factory):
    """The embedded summaries, their index, a 3-shard index and an NPY copy with its own index."""
    d = tmp_path_factory.mktemp("anomaly-index")
    _ok(cli_inproc("index", "-q", "-o", str(d / "one.idx"), str(packages_vec)))
    _ok(cli_inproc("index", "-q", "--shards", "3", "-o", str(d / "three.idx"), str(packages_vec)))
    recs = [orjson.loads(line) for line in packages_vec.read_bytes().splitlines()]
    x = np.array([r["embedding"] for r in recs], dtype=np.float32)
    np.save(d / "x.npy", x)
    _ok(cli_inproc("index", "-q", "-o", str(d / "npy.idx"), str(d / "x.npy")))
    return d, recs, x


def _scores(r) -> list[float]:
    return [rec["anomaly_score"] for rec in r.records()]


@pytest.mark.parametrize("aggregate", ["mean", "max"])
def test_index_scores_equal_the_throwaway_graph_scores(packages_vec, built, aggregate):
    d = built[0]
    plain = _ok(cli_inproc("detect-anomalies", "-q", "--aggregate", aggregate, "-k", "7", str(packages_vec)))
    # By id: each record's own key is left out. One index holds the items in input order: the same bytes.
    one = _ok(cli_inproc("detect-anomalies", "-q", "--aggregate", aggregate, "-k", "7", "--index",
                         str(d / "one.idx"), str(packages_vec)))  # fmt: skip
    assert one.out == plain.out
    assert sum(r["is_anomaly"] for r in plain.records()) == 20  # the default 1% of 2,000
    # Shards put items in other columns of the float32 product, which may round a cosine one unit
    # apart (~6e-8): the same flags, scores equal to the printed digits but for that.
    three = _ok(cli_inproc("detect-anomalies", "-q", "--aggregate", aggregate, "-k", "7", "--index",
                           str(d / "three.idx"), str(packages_vec))).records()  # fmt: skip
    assert [r["id"] for r in three] == [r["id"] for r in plain.records()]
    assert [r["is_anomaly"] for r in three] == [r["is_anomaly"] for r in plain.records()]
    assert np.abs(np.array(_scores(plain)) - [r["anomaly_score"] for r in three]).max() <= 2e-6


def test_npy_rows_leave_out_their_identical_stored_vector(built):
    d, _, x = built
    plain = embcli.detect_anomalies(x).scores
    # Package summaries repeat: a row with identical twins may have a twin left out instead of itself,
    # whose cosine the float32 product may round one unit apart (it sits in another column).
    _, inverse, counts = np.unique(x, axis=0, return_inverse=True, return_counts=True)
    twins = counts[inverse.ravel()] > 1
    assert 0 < twins.sum() < 100
    for idx in ("npy.idx", "one.idx"):  # the NPY rows' own index, and the records' one (items in input order)
        got = embcli.detect_anomalies(x, index=d / idx).scores
        assert np.array_equal(got[~twins], plain[~twins]), idx
        assert np.abs(got[twins] - plain[twins]).max() <= 1e-6, idx
    sharded = embcli.detect_anomalies(x, index=d / "three.idx").scores  # other columns: rounding only
    assert np.abs(sharded - plain).max() <= 1e-6
    cli_plain = _ok(cli_inproc("detect-anomalies", "-q", str(d / "x.npy"))).records()
    by_vector = _ok(cli_inproc("detect-anomalies", "-q", "--index", str(d / "npy.idx"), str(d / "x.npy"))).records()
    assert [r["row"] for r in by_vector] == list(range(len(x)))
    assert [r["is_anomaly"] for r in by_vector] == [r["is_anomaly"] for r in cli_plain]
    assert (
        np.abs(np.array([r["anomaly_score"] for r in by_vector]) - [r["anomaly_score"] for r in cli_plain]).max()
        <= 2e-6
    )


def test_self_match_none_scores_new_records_as_novelty_mode(packages_vec, built, tmp_path):
    d, recs, _ = built
    head, tail = recs[:1500], recs[1500:]
    ref = tmp_path / "ref.jsonl"
    new = tmp_path / "new.jsonl"
    ref.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in head))
    new.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in tail))
    _ok(cli_inproc("index", "-q", "-o", str(tmp_path / "ref.idx"), str(ref)))
    novelty = _ok(cli_inproc("detect-anomalies", "-q", "--reference", str(ref), "--threshold", "0.5", str(new)))
    for how in ("none", "auto", "id"):  # auto/id: these ids are not in the index, so nothing is left out
        got = _ok(cli_inproc("detect-anomalies", "-q", "--index", str(tmp_path / "ref.idx"), "--self-match", how,
                             "--threshold", "0.5", str(new)))  # fmt: skip
        assert _scores(got) == _scores(novelty), how
    # Scored against an index that holds them, with no self match each record is its own nearest neighbour.
    alone = _ok(cli_inproc("detect-anomalies", "-q", "--index", str(d / "one.idx"), "--self-match", "none", "-k", "1",
                           str(new)))  # fmt: skip
    assert set(_scores(alone)) == {0.0}


def test_python_api_matches_the_cli(packages_vec, built):
    d, recs, x = built
    r = _ok(cli_inproc("detect-anomalies", "-q", "--contamination", "0.05", "--index", str(d / "one.idx"),
                       str(packages_vec)))  # fmt: skip
    got = embcli.detect_anomalies(x, index=d / "one.idx", ids=[rec["id"] for rec in recs], contamination=0.05)
    assert _scores(r) == [round(float(s), 6) for s in got.scores]
    assert [rec["is_anomaly"] for rec in r.records()] == got.flags.tolist() and got.detector is None
    plain = embcli.detect_anomalies(x, contamination=0.05)
    assert np.array_equal(got.scores, plain.scores)
    by_vector = embcli.detect_anomalies(x, index=d / "three.idx", contamination=0.05)  # no ids: by vector
    assert np.abs(by_vector.scores - plain.scores).max() <= 1e-6 and by_vector.flags.sum() == plain.flags.sum()


@pytest.mark.parametrize("name", ["one.idx", "three.idx", "i8.idx"])
def test_graph_path_finds_the_exact_neighbours_and_leaves_out_its_own(built, name):
    """Above EXACT_LIMIT items the scores come from the index's graph: forced here on 2,000 items, where a
    search beam of at least twice k finds the exact neighbours (ties aside), and the own item is still left
    out by id; an int8 graph's candidates get float cosines from the stored vectors."""
    from embcli.search import index_neighbors
    from embcli.search.shards import open_readers

    d, recs, x = built
    if name == "i8.idx" and not (d / name).exists():
        _ok(cli_inproc("index", "-q", "--dtype", "i8", "-o", str(d / name), str(d / "x.npy")))
    readers = open_readers([d / name])
    try:
        ids = [rec["id"] for rec in recs] if name != "i8.idx" else [None] * len(recs)
        own = index_neighbors.self_match(readers, ids, "auto")
        exact = index_neighbors.neighbours(readers, x, 7, own, exact=True)
        graph = index_neighbors.neighbours(readers, x, 7, own, exact=False)
    finally:
        for r in readers:
            r.close()
    assert graph.shape == exact.shape == (len(x), 7)
    close = np.abs(graph - exact).max(axis=1) <= 1e-5
    assert close.mean() >= 0.99, f"{(~close).sum()} of {len(x)} rows differ"
    # The own item is out: a record's best neighbour is no better than its exact best other item
    # (1.0 only where the summary repeats another one word for word).
    assert np.all(graph[:, 0] <= exact[:, 0] + 1e-5)
    assert np.all(np.diff(graph, axis=1) <= 1e-6)  # best first


def test_bad_inputs(packages_vec, built, tmp_path):
    d, recs, x = built
    idx = str(d / "one.idx")
    narrow = tmp_path / "narrow.npy"
    np.save(narrow, x[:50, :128])
    r = cli_inproc("detect-anomalies", "--index", idx, str(narrow))
    assert r.code == 4 and "128 dimensions" in r.err and "384" in r.err and "all-MiniLM-L6-v2" in r.err, r.err
    other = dict(recs[0]["embedding_model"], normalize=False)
    alien = tmp_path / "alien.jsonl"
    alien.write_bytes(b"".join(orjson.dumps({**rec, "embedding_model": other}) + b"\n" for rec in recs[:20]))
    r = cli_inproc("detect-anomalies", "--index", idx, str(alien))
    assert r.code == 4 and "another model or options" in r.err and r.err.count("all-MiniLM-L6-v2") == 2, r.err
    assert r.out == b""
    r = cli_inproc("detect-anomalies", "--index", str(tmp_path / "nothing.idx"), str(packages_vec))
    assert r.code == 4 and "no index" in r.err, r.err
    for extra, says in (
        (["--method", "lof"], "knn only"),
        (["--reference", str(packages_vec)], "--index scores against the index"),
        (["--save-detector", str(tmp_path / "d.npz")], "--index scores against the index"),
        (["--self-match", "twin"], "twin"),
    ):
        r = cli_inproc("detect-anomalies", "--index", idx, *extra, str(packages_vec))
        assert r.code == 2 and says in r.err, (extra, r.err)
    assert not (tmp_path / "d.npz").exists()
    tiny = tmp_path / "tiny.jsonl"
    tiny.write_bytes(b"".join(orjson.dumps(rec) + b"\n" for rec in recs[:2]))
    _ok(cli_inproc("index", "-q", "-o", str(tmp_path / "tiny.idx"), str(tiny)))
    r = cli_inproc("detect-anomalies", "--index", str(tmp_path / "tiny.idx"), str(packages_vec))
    assert r.code == 3 and "at least 3" in r.err, r.err
    empty = _ok(cli_inproc("detect-anomalies", "--index", idx, input=b""))
    assert empty.out == b""
    with pytest.raises(embcli.UsageError, match="ids"):
        embcli.detect_anomalies(x, index=idx, ids=["a"])
