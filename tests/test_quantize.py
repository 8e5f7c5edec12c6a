"""embcli quantize: exact codes on hand-made vectors, saved ranges, binary indexes with rescoring."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pytest
from conftest import cli_inproc

from embcli.analysis.quantize import Quantizer


@pytest.fixture(scope="module")
def vec_jsonl(examples_vec):
    return examples_vec  # examples/packages.jsonl, embedded once per session


def test_f16_round_trip():
    x = np.array([[0.5, -0.25, 1.0, 0.0], [0.125, 2.0, -3.0, 0.75]], dtype=np.float32)
    q = Quantizer("f16", 4)
    codes = q.encode(x)
    assert codes.dtype == np.float16
    np.testing.assert_array_equal(q.decode(codes), x)  # all exactly representable


def test_int8_and_uint8_map_ranges_onto_256_levels():
    calib = np.tile(np.array([[0.0, -1.0], [2.55, 1.55]], dtype=np.float32), (50, 1))  # 100 rows
    x = np.array([[0.0, -1.0], [2.55, 1.55], [1.0, 0.0], [9.0, -9.0]], dtype=np.float32)
    u = Quantizer("uint8", 2).fit(calib)
    assert u.encode(x).tolist() == [[0, 0], [255, 255], [100, 100], [255, 0]]  # step 0.01; clipped outside
    i = Quantizer("int8", 2).fit(calib)
    assert i.encode(x).tolist() == [[-128, -128], [127, 127], [-28, -28], [127, -128]]
    np.testing.assert_allclose(i.decode(i.encode(x[:3])), x[:3], atol=0.006)


def test_binary_signs_and_packing_order():
    x = np.array([[1, -1, 1, 1, -1, -1, -1, 1, 0.5, -2, 0, 0, 0, 0, 0, 3]], dtype=np.float32)
    # Dimension 0 is the most significant bit of byte 0; zero counts as negative.
    assert Quantizer("ubinary", 16).encode(x).tolist() == [[0b10110001, 0b10000001]]
    assert Quantizer("binary", 16).encode(x).tolist() == [[0b10110001 - 128, 0b10000001 - 128]]


def test_multibit_planes_encode_residual_signs():
    q = Quantizer("ubinary", 8, bits=2)
    q.scales = [0.5, 0.25]
    x = np.array([[0.7, -0.2, 0.3, -0.9, 0.5, -0.5, 0.1, -0.1]], dtype=np.float32)
    planes = q.unpack(q.encode(x))[0]
    assert planes[0].tolist() == [1, 0, 1, 0, 1, 0, 1, 0]  # signs
    # Residual after plane 1: x - 0.5·sign(x) = [.2, .3, -.2, -.4, 0, 0, -.4, .4]
    assert planes[1].tolist() == [1, 1, 0, 0, 0, 0, 0, 1]
    np.testing.assert_allclose(q.decode(q.encode(x))[0], [0.75, -0.25, 0.25, -0.75, 0.25, -0.75, 0.25, -0.25])


def test_fitted_scales_and_code_scores_track_inner_products(vec_jsonl):
    x = np.array([orjson.loads(line)["embedding"] for line in vec_jsonl.read_bytes().splitlines()], np.float32)
    exact = x[:50] @ x.T
    corr = []
    for bits in (1, 2, 3):
        q = Quantizer("binary", 384, bits).fit(x)
        assert q.scales == sorted(q.scales, reverse=True)  # each residual is smaller
        codes = q.encode(x)
        corr.append(np.corrcoef(q.code_scores(codes[:50], codes).ravel(), exact.ravel())[0, 1])
    assert corr == sorted(corr) and corr[1] > 0.95, corr


def test_saved_ranges_give_identical_codes(vec_jsonl, tmp_path):
    ranges = tmp_path / "r.json"
    corpus = cli_inproc("quantize", "--to", "int8", "--save-ranges", str(ranges), str(vec_jsonl))
    assert corpus.code == 0, corpus.err
    again = cli_inproc("quantize", "--ranges", str(ranges), str(vec_jsonl))
    assert again.out == corpus.out
    lines = vec_jsonl.read_bytes().splitlines(keepends=True)
    single = cli_inproc("quantize", "--ranges", str(ranges), input=lines[42])
    assert single.out == corpus.out.splitlines(keepends=True)[42]
    rec = single.records()[0]
    assert rec["quantization"]["scheme"] == "int8" and rec["quantization"]["dims"] == 384
    assert rec["id"] == orjson.loads(lines[42])["id"] and len(rec["embedding"]) == 384
    # One vector cannot calibrate int8 by itself: refused with the way out.
    r = cli_inproc("quantize", "--to", "int8", input=lines[42])
    assert r.code == 2 and "--ranges FILE" in r.err


def test_dims_and_npy_output(vec_jsonl):
    r = cli_inproc("quantize", "--to", "binary", "--bits", "2", "--dims", "128", "--format", "npy", str(vec_jsonl))
    assert r.code == 0, r.err
    codes = np.load(io.BytesIO(r.out))
    assert codes.shape == (300, 32) and codes.dtype == np.int8  # 128 dims x 2 bits / 8
    r = cli_inproc("quantize", "--to", "f16", "--dims", "64", input=vec_jsonl.read_bytes().splitlines(keepends=True)[0])
    rec = r.records()[0]
    assert len(rec["embedding"]) == 64 and rec["embedding_model"]["dims"] == 64
    assert abs(np.linalg.norm(rec["embedding"]) - 1) < 1e-3


def test_report_table(vec_jsonl):
    r = cli_inproc("quantize", "--report", "--queries", "100", str(vec_jsonl))
    assert r.code == 0, r.err
    rows = {row["scheme"]: row for row in r.records()}
    assert rows["f16"]["recall"] >= 0.99 and rows["int8"]["recall"] >= 0.95
    assert rows["binary"]["bytes"] == 48 and rows["binary"]["ratio"] == 32.0
    assert rows["binary + rescore 10"]["recall"] > rows["binary"]["recall"]
    assert "recall@10" in r.err


def test_binary_index_with_rescore_finds_each_document(vec_jsonl, tmp_path):
    idx = tmp_path / "b1.idx"
    r = cli_inproc("index", "--dtype", "b1", "-o", str(idx), str(vec_jsonl))
    assert r.code == 0, r.err
    recs = [orjson.loads(line) for line in vec_jsonl.read_bytes().splitlines()]
    x = np.array([rec["embedding"] for rec in recs], np.float32)
    best = (x @ x.T).max(axis=1)
    queries = b"".join(orjson.dumps({"text": rec["text"]}) + b"\n" for rec in recs)
    got = cli_inproc("search", str(idx), "-k", "1", "--rescore", "4", input=queries).records()
    # Same top-1 as float exact search (a duplicate summary scores the same).
    for i, out in enumerate(got):
        assert abs(out["results"][0]["score"] - best[i]) < 1e-5, recs[i]["id"]
    bare = tmp_path / "bare.idx"
    assert cli_inproc("index", "-q", "--dtype", "b1", "--no-keep-floats", "-o", str(bare), str(vec_jsonl)).code == 0
    r = cli_inproc("search", str(bare), "--rescore", "4", input=queries[:200].rsplit(b"\n", 1)[0] + b"\n")
    assert r.code == 4 and "keeps none" in r.err
