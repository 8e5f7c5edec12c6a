"""Vectors are checked wherever they come in; one enormous record keeps memory bounded.

NaN/Inf NPY rows are bad input in every vector command, saved heads and detectors
are checked before use, and a huge text is tokenized from a prefix that gives the
same ids as the whole text.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import orjson
import pytest
from conftest import DATA, cli

from embcli.analysis.anomaly import Detector
from embcli.analysis.classify import Head
from embcli.errors import IncompatibleError
from embcli.io.readers import iter_records
from embcli.io.streams import BadRecords, Source, iter_npy_rows
from embcli.runtime import encoder as encoder_module

WIDTH = 8
ROWS = 12


def _npy(a: np.ndarray) -> bytes:
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def _unit_rows(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, WIDTH)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def vecs(tmp_path_factory) -> dict:
    """Good vectors; a two-array stream with NaN at row 3 and +Inf at row 9 (row 3 of the second array);
    a head and an index fitted on the good vectors."""
    d = tmp_path_factory.mktemp("vecs")
    good = _unit_rows(ROWS, 0)
    (d / "good.npy").write_bytes(_npy(good))
    bad = good.copy()
    bad[2, 1] = np.nan
    bad[8, 4] = np.inf
    streams = {
        "nan": _npy(bad[:6]) + _npy(bad[6:]),  # back to back, as a pipe carries them: NaN in row 3
        "inf": _npy(good[:6]) + _npy(bad[6:]),  # +Inf in the second array's row 3: row 9 of the stream
        "both": _npy(bad[:6]) + _npy(bad[6:]),
    }
    for name, data in streams.items():
        (d / f"{name}.npy").write_bytes(data)
    Head("centroid", ["a", "b"], vectors=good[:2].copy()).save(str(d / "head.npz"))
    r = cli("index", "-q", "-o", str(d / "good.idx"), str(d / "good.npy"))
    assert r.code == 0, r.err
    return {"dir": d, "good": good, "bad": bad}


def _command(name: str, d: Path, npy: str) -> tuple[list[str], bytes]:
    """The command line (and stdin) that feeds the NPY stream ``npy`` to command ``name``."""
    stream = (d / f"{npy}.npy").read_bytes()
    return {
        "index": (["index", "-o", str(d / f"{npy}-{name}.idx"), "--force", "-"], stream),
        "search": (["search", str(d / "good.idx"), "-k", "1"], stream),
        "quantize": (["quantize", "--to", "f16"], stream),
        "cluster": (["cluster", "--k", "2"], stream),
        "classify": (["classify", "--head-file", str(d / "head.npz")], stream),
        "detect-anomalies": (["detect-anomalies"], stream),
        "diff": (["diff", str(d / "good.npy"), "-"], stream),
    }[name]


COMMANDS = ["index", "search", "quantize", "cluster", "classify", "detect-anomalies", "diff"]


# --------------------------------------------------------------------------- NaN / Inf in NPY input


@pytest.mark.parametrize("value, row", [("nan", 3), ("inf", 9)])
@pytest.mark.parametrize("command", COMMANDS)
def test_non_finite_npy_row_is_bad_input_in_every_command(vecs, command, value, row):
    args, stdin = _command(command, vecs["dir"], value)
    r = cli(*args, input=stdin)
    assert r.code == 3, (command, r.code, r.err)
    what = "NaN" if value == "nan" else "Inf"
    assert r.err.strip() == f"embcli: error: vector holds {what}, <stdin> row {row}", r.err
    if command == "search":  # it streams: only queries before the bad row may have been answered
        assert all(rec["row"] < row - 1 for rec in r.records())
    elif command != "index":
        assert r.out == b""


@pytest.mark.parametrize("command", ["search", "quantize", "cluster", "classify", "detect-anomalies", "diff"])
def test_on_error_skip_skips_non_finite_rows_and_counts_them(vecs, command):
    args, stdin = _command(command, vecs["dir"], "both")
    r = cli(*args, "--on-error", "skip", input=stdin)
    assert r.code in (0, 1) if command == "diff" else r.code == 0, (command, r.err)
    assert "skipped 2 bad records (first: vector holds NaN, <stdin> row 3)" in r.err, r.err
    if command == "diff":
        return
    records = r.records() if command != "quantize" else [orjson.loads(x) for x in r.out.splitlines()]
    assert len(records) == ROWS - 2
    if command in ("search", "cluster", "classify", "detect-anomalies"):
        # NPY rows are known by their 0-based row index, which skipping does not shift.
        assert [rec["row"] for rec in records] == [i for i in range(ROWS) if i not in (2, 8)]


def test_skipped_rows_keep_ids_aligned_in_an_index(vecs, tmp_path):
    ids = tmp_path / "ids.txt"
    ids.write_text("".join(f"r{i + 1}\n" for i in range(ROWS)))
    idx = tmp_path / "x.idx"
    r = cli(
        "index", "-o", str(idx), "--ids", str(ids), "--on-error", "skip", input=(vecs["dir"] / "both.npy").read_bytes()
    )
    assert r.code == 0 and "skipped 2 bad records" in r.err, r.err
    query = orjson.dumps({"embedding": vecs["good"][9].tolist()}) + b"\n"
    r = cli("search", str(idx), "-k", "1", input=query)
    assert r.code == 0, r.err
    assert r.records()[0]["results"][0]["id"] == "r10"  # row 10 keeps its id after rows 3 and 9 were skipped


def test_npy_rows_are_numbered_across_arrays_in_process(vecs, monkeypatch):
    import sys

    data = (vecs["dir"] / "both.npy").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))
    bad = BadRecords(skip=True)
    with Source("-") as src:
        got = list(iter_npy_rows(src, bad))
    numbers = np.concatenate([n for n, _ in got])
    assert numbers.tolist() == [1, 2, 4, 5, 6, 7, 8, 10, 11, 12]
    np.testing.assert_array_equal(np.vstack([c for _, c in got]), vecs["good"][numbers - 1])
    assert bad.count == 2


def test_float64_rows_beyond_float32_are_bad_rows(tmp_path):
    x = np.ones((3, WIDTH))
    x[1, 0] = 1e39  # finite in float64, Inf in the float32 every command computes in
    (tmp_path / "f64.npy").write_bytes(_npy(x))
    r = cli("cluster", "--k", "1", str(tmp_path / "f64.npy"))
    assert r.code == 3 and r.err.strip().endswith(f"vector holds a number beyond float32, {tmp_path}/f64.npy row 2")


# --------------------------------------------------------------------------- saved heads and detectors


def _save_npz(path: Path, meta: dict, compress: bool = False, **arrays: np.ndarray) -> str:
    import json

    (np.savez_compressed if compress else np.savez)(path, meta=np.array(json.dumps(meta)), **arrays)
    return str(path)


HEAD_META = {"format": "embcli-head", "version": 1, "kind": "centroid", "labels": ["a", "b"], "k": 10}
HEAD_META |= {"provenance": None, "extra": {}}
DET_META = {"format": "embcli-detector", "version": 1, "method": "knn", "k": 2, "aggregate": "mean"}
DET_META |= {"seed": 0, "threshold": None, "provenance": None}


def _bomb(path: Path, meta: dict, name: str, shape: tuple[int, ...], data_bytes: int) -> str:
    """A member whose .npy header declares ``shape`` but that holds ``data_bytes`` zero bytes, deflated."""
    import json

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    meta_npy = _npy(np.array(json.dumps(meta)))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("meta.npy", meta_npy)
        zf.writestr(f"{name}.npy", header.getvalue() + bytes(data_bytes))
    return str(path)


def _bad_heads(d: Path) -> dict[str, tuple[str, str]]:
    v = _unit_rows(2, 1)
    return {
        "missing key": (_save_npz(d / "h1.npz", HEAD_META), "no 'vectors' array"),
        "wrong dtype": (_save_npz(d / "h2.npz", HEAD_META, vectors=v.astype(np.int32)), "int32, not floating"),
        "rows vs labels": (_save_npz(d / "h3.npz", HEAD_META, vectors=_unit_rows(3, 1)), "3 rows for 2 labels"),
        "nan": (_save_npz(d / "h4.npz", HEAD_META, vectors=np.where(v > 0, np.nan, v)), "holds NaN or Inf"),
        "knn targets": (
            _save_npz(
                d / "h5.npz", {**HEAD_META, "kind": "knn"}, vectors=_unit_rows(4, 1), targets=np.array([0, 1, 2])
            ),
            "'targets' is int64 (3,), expected 4 integers",
        ),
        "logreg intercept": (
            _save_npz(d / "h6.npz", {**HEAD_META, "kind": "logreg"}, coef=v, intercept=np.zeros(3, np.float32)),
            "'intercept' has 3 rows for 2 labels",
        ),
        "labels": (_save_npz(d / "h7.npz", {**HEAD_META, "labels": ["a", 1]}, vectors=v), "'labels' must be"),
        "huge shape": (
            _bomb(d / "h8.npz", HEAD_META, "vectors", (10**9, 384), 64),
            "declares float32 (1000000000, 384)",
        ),
        "zip bomb": (_bomb(d / "h9.npz", HEAD_META, "vectors", (8192, 2048), 8192 * 2048 * 4), "would inflate"),
        "objects": (_save_npz(d / "h10.npz", HEAD_META, vectors=np.array([{}, []], dtype=object)), "Python objects"),
        "a detector": (_save_npz(d / "h11.npz", DET_META, reference=_unit_rows(5, 1)), "not an embcli head file"),
        "not npz": (str(DATA / "packages-2000.jsonl"), "not an embcli head file (not an NPZ)"),
    }


def _bad_detectors(d: Path) -> dict[str, tuple[str, str]]:
    ref = _unit_rows(5, 2)
    inf = ref.copy()
    inf[3, 3] = np.inf
    return {
        "missing key": (_save_npz(d / "d1.npz", DET_META), "no 'reference' array"),
        "wrong dtype": (_save_npz(d / "d2.npz", DET_META, reference=ref.astype(np.int8)), "int8, not floating"),
        "1-d": (_save_npz(d / "d3.npz", DET_META, reference=ref[0]), "expected 2 non-empty dimensions"),
        "inf": (_save_npz(d / "d4.npz", DET_META, reference=inf, compress=True), "holds NaN or Inf"),
        "method": (_save_npz(d / "d5.npz", {**DET_META, "method": "magic"}, reference=ref), "unknown method"),
        "huge shape": (_bomb(d / "d6.npz", DET_META, "reference", (10**9, 384), 64), "declares float32"),
        "extra member": (_save_npz(d / "d7.npz", DET_META, reference=ref, vectors=ref), "unexpected member"),
        "version": (_save_npz(d / "d8.npz", {**DET_META, "version": 7}, reference=ref), "format version 7"),
    }


def test_crafted_heads_are_refused_naming_the_file_and_the_fault(tmp_path):
    for case, (path, fault) in _bad_heads(tmp_path).items():
        with pytest.raises(IncompatibleError) as e:
            Head.load(path)
        assert fault in e.value.message and e.value.message.endswith(f", {path}"), (case, e.value.message)


def test_crafted_detectors_are_refused_naming_the_file_and_the_fault(tmp_path):
    for case, (path, fault) in _bad_detectors(tmp_path).items():
        with pytest.raises(IncompatibleError) as e:
            Detector.load(path)
        assert fault in e.value.message and e.value.message.endswith(f", {path}"), (case, e.value.message)


def test_crafted_head_and_detector_exit_4_through_the_cli(vecs, tmp_path):
    stream = (vecs["dir"] / "good.npy").read_bytes()
    head = _bomb(tmp_path / "h.npz", HEAD_META, "vectors", (10**9, 384), 64)
    r = cli("classify", "--head-file", head, input=stream)
    assert r.code == 4 and r.err.startswith("embcli: error: bad embcli head file: 'vectors.npy' declares"), r.err
    assert r.err.rstrip().endswith(head) and "Traceback" not in r.err
    det = _save_npz(tmp_path / "d.npz", DET_META, reference=np.full((4, WIDTH), np.nan, np.float32))
    r = cli("detect-anomalies", "--detector-file", det, input=stream)
    assert (
        r.code == 4 and r.err.strip() == f"embcli: error: bad embcli detector file: 'reference' holds NaN or Inf, {det}"
    )


def test_saved_heads_and_detectors_still_load_and_score_the_same(tmp_path):
    from embcli.analysis.classify import fit

    x = _unit_rows(20, 3)
    y = ["a" if v[0] > 0 else "b" for v in x]
    for kind in ("centroid", "knn", "logreg"):
        head = fit(kind, x, y, k=3)
        head.save(str(tmp_path / f"{kind}.npz"))
        again = Head.load(str(tmp_path / f"{kind}.npz"))
        np.testing.assert_array_equal(again.scores(x), head.scores(x))
    det = Detector("knn", 3).fit(x)
    det.save(str(tmp_path / "det.npz"))
    # Loading refits on the saved (already unit) reference: equal to float rounding.
    np.testing.assert_allclose(Detector.load(str(tmp_path / "det.npz")).score(x), det.score(x), rtol=1e-5)


# --------------------------------------------------------------------------- one enormous record


@pytest.fixture(scope="module")
def encoder():
    from embcli.runtime.encoder import Encoder
    from embcli.store.models import resolve_model

    return Encoder(resolve_model("all-MiniLM-L6-v2"), device="cpu", threads=1)


def _prose() -> str:
    with open(DATA / "packages-2000.jsonl", "rb") as f:
        return " ".join(orjson.loads(line)["text"] for line in f)


def _long_texts() -> dict[str, str]:
    prose = _prose()
    return {
        "prose": prose,  # real summaries, with emoji and accents
        "no whitespace": "".join(prose.split()),
        "chinese": "自然语言处理是计算机科学领域与人工智能领域中的一个重要方向。" * 800,
        "russian": "Обработка естественного языка — общее направление искусственного интеллекта. " * 800,
        "one long kana word": "これはとてもながいぶんしょうですからよくよんでください" * 800,
        "combining accents": "cafe\u0301 na\u0308ive " * 5000,
        "leading spaces": " " * 20000 + "hello world " * 500,
    }


class _Recording:
    """The real tokenizer, recording how many characters it was given each time."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer, self.sizes = tokenizer, []

    def encode(self, text: str):
        self.sizes.append(len(text))
        return self.tokenizer.encode(text)


@pytest.mark.parametrize("max_length, prompt", [(256, ""), (16, "query: ")])
def test_prefix_tokenization_equals_whole_text_tokenization(encoder, monkeypatch, max_length, prompt):
    monkeypatch.setattr(encoder, "max_length", max_length)
    monkeypatch.setattr(encoder, "prompt", prompt)
    encoder.tokenizer.enable_truncation(max_length)
    try:
        for name, text in _long_texts().items():
            whole = encoder.tokenizer.encode(prompt + text)
            got = encoder.tokenize(text)
            assert got.ids == whole.ids, name
            assert got.truncated == bool(whole.overflowing), name
    finally:
        encoder.tokenizer.enable_truncation(encoder.spec.max_length)


def test_an_enormous_text_is_tokenized_from_a_prefix(encoder, monkeypatch):
    text = _prose() * 40  # ~5 M characters
    whole_ids = encoder.tokenizer.encode(text[:200_000]).ids  # the whole text's first tokens
    recorder = _Recording(encoder.tokenizer)
    monkeypatch.setattr(encoder, "tokenizer", recorder)
    got = encoder.tokenize(text)
    assert got.truncated and got.ids == whole_ids
    assert max(recorder.sizes) <= encoder_module.PREFIX_CHARS_PER_TOKEN * encoder.max_length * 2
    # One enormous word never proves its prefix: it is cut at MAX_PREFIX_CHARS and counted as truncated.
    recorder.sizes.clear()
    got = encoder.tokenize("a" * (3 << 20))
    assert got.truncated and got.ids == recorder.tokenizer.encode("a" * 200).ids  # [CLS] [UNK] [SEP], as whole
    assert max(recorder.sizes) == encoder_module.MAX_PREFIX_CHARS


def test_a_several_mb_record_embeds_truncated_and_counted(tmp_path):
    text = _prose() * 25  # ~3 MB
    record = orjson.dumps({"id": "big", "text": text, "keep": True}) + b"\n"
    path = tmp_path / "big.jsonl"
    path.write_bytes(record + b'{"id": "small", "text": "a short one"}\n')
    r = cli("embed", str(path))
    assert r.code == 0, r.err
    assert "embcli: warning: 1 text truncated to 256 tokens" in r.err
    big, small = r.records()
    assert big["text"] == text and big["keep"] is True and small["id"] == "small"
    assert abs(np.linalg.norm(big["embedding"]) - 1) < 1e-5
    r = cli("embed", "--no-truncate", str(path))
    assert r.code == 3 and "longer than 256 tokens" in r.err and f"{path} line 1" in r.err


def test_huge_lines_are_read_whole_and_in_order(tmp_path):
    big = "x" * (3 << 20)
    path = tmp_path / "lines.txt"
    path.write_bytes(f"{big}\r\nsecond\n\n{big}y\nlast, no newline".encode())
    with Source(str(path)) as src:
        texts = [r.data["text"] for r in iter_records(src, "text", "text", BadRecords())]
    assert texts == [big, "second", "", big + "y", "last, no newline"]
    path.write_bytes(orjson.dumps({"text": big}) + b"\n \n" + orjson.dumps({"text": "b"}))
    with Source(str(path)) as src:
        recs = list(iter_records(src, "jsonl", "text", BadRecords()))
    assert [r.data["text"] for r in recs] == [big, "b"] and [r.line for r in recs] == [1, 3]


def test_max_length_beyond_the_model_positions_is_refused_up_front():
    r = cli("embed", "--max-length", "100000", input=b'{"text": "hello"}\n')
    assert r.code == 2 and r.out == b""
    assert "embcli: error: --max-length 100000 is more than the 512 positions of model 'all-MiniLM-L6-v2'" in r.err


def test_saved_quantizer_ranges_must_be_finite():
    from embcli.analysis.quantize import Quantizer

    good = Quantizer("int8", WIDTH).fit(_unit_rows(100, 4))
    assert Quantizer.from_json(good.to_json(), "r.json").fitted
    data = orjson.loads(good.to_json())
    data["max"][3] = 1e39  # valid JSON, Inf as float32
    with pytest.raises(IncompatibleError, match=r"not an embcli ranges file, r\.json"):
        Quantizer.from_json(orjson.dumps(data), "r.json")
