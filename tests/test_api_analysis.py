"""The analysis API (embcli.cluster, classify, detect_anomalies, diff, quantize) gives the CLI's results.

Each test runs the real command and the API function on the same embedded docstrings
(tests/data/stdlib-docs.jsonl, real model) and compares labels, scores, codes and verdicts.
"""

from __future__ import annotations

import io
import json
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest
from conftest import DATA, ROOT, cli

import embcli
from embcli.analysis.classify import LabelSpec
from embcli.errors import IncompatibleError, InputError, UsageError

LABELS = [
    {"label": "math", "description": "mathematical functions on numbers"},
    {"label": "socket", "description": "network sockets and connections"},
    {"label": "turtle", "description": "turtle graphics drawing on a screen"},
    {"label": "logging", "description": "logging messages and handlers"},
]


def _write(path: Path, rows: list[dict]) -> str:
    path.write_bytes(b"".join(orjson.dumps(r, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> Path:
    """Standard-library docstrings (8 modules), embedded once, with a fixed train/test split."""
    d = tmp_path_factory.mktemp("api")
    r = cli("embed", "-q", str(DATA / "stdlib-docs.jsonl"))
    assert r.code == 0, r.err
    (d / "all.jsonl").write_bytes(r.out)
    lines = r.out.splitlines(keepends=True)
    random.Random(0).shuffle(lines)
    (d / "train.jsonl").write_bytes(b"".join(lines[:180]))
    (d / "test.jsonl").write_bytes(b"".join(lines[180:]))
    (d / "labels.jsonl").write_text("".join(json.dumps(lab) + "\n" for lab in LABELS))
    return d


def _npy_stream(data: bytes) -> np.ndarray:
    """Back-to-back NPY arrays, as the CLI writes them onto a pipe, as one array."""
    f, parts = io.BytesIO(data), []
    while f.tell() < len(data):
        parts.append(np.load(f))
    return np.concatenate(parts)


def _read(path: Path) -> tuple[list[dict], np.ndarray]:
    return embcli.read_vectors(str(path))


def test_cluster_matches_the_cli(docs):
    records, x = _read(docs / "all.jsonl")
    for args, kwargs in ((["--k", "8"], {"k": 8}), (["--algo", "hdbscan"], {"method": "hdbscan"})):
        r = cli("cluster", str(docs / "all.jsonl"), *args, "--summary", str(docs / "sum.jsonl"))
        assert r.code == 0, r.err
        got = embcli.cluster(x, **kwargs)
        assert [rec["cluster"] for rec in r.records()] == got.labels.tolist(), args
        sims = [None if c < 0 else round(float(s), 6) for c, s in zip(got.labels, got.similarity, strict=True)]
        assert [rec["cluster_similarity"] for rec in r.records()] == sims
        summary = [orjson.loads(line) for line in (docs / "sum.jsonl").read_bytes().splitlines()]
        assert got.summary(records) == summary and len(summary) == got.n_clusters


def test_zero_shot_classify_matches_the_cli(docs):
    records, x = _read(docs / "all.jsonl")
    prov = records[0]["embedding_model"]
    specs = [LabelSpec(lab["label"], lab["description"]) for lab in LABELS]
    r = cli("classify", str(docs / "all.jsonl"), "--labels-file", str(docs / "labels.jsonl"), "--all-scores")
    assert r.code == 0, r.err
    got = embcli.classify(x, labels=specs, provenance=prov)
    assert [rec["label"] for rec in r.records()] == got.labels
    assert [rec["score"] for rec in r.records()] == [round(float(s), 6) for s in got.scores]
    api_all = [{c: round(float(s), 6) for c, s in zip(got.classes, row, strict=True)} for row in got.all_scores]
    assert [rec["scores"] for rec in r.records()] == api_all
    refined = cli("classify", str(docs / "all.jsonl"), "--labels", "math,socket,turtle,logging", "--refine")
    got = embcli.classify(x, labels=["math", "socket", "turtle", "logging"], refine=True, provenance=prov)
    assert [rec["label"] for rec in refined.records()] == got.labels


def test_supervised_classify_and_saved_heads_match_the_cli(docs, tmp_path):
    train, xt = _read(docs / "train.jsonl")
    test, x = _read(docs / "test.jsonl")
    prov = test[0]["embedding_model"]
    r = cli("classify", str(docs / "test.jsonl"), "--train", str(docs / "train.jsonl"), "--label-field", "module",
            "--save-head", str(tmp_path / "h.npz"))  # fmt: skip
    assert r.code == 0, r.err
    got = embcli.classify(x, train=(xt, [t["module"] for t in train]), provenance=prov)
    assert [rec["label"] for rec in r.records()] == got.labels
    assert [rec["score"] for rec in r.records()] == [round(float(s), 6) for s in got.scores]
    assert embcli.classify(x, head=tmp_path / "h.npz", provenance=prov).labels == got.labels
    # A head fitted through the API serves the CLI.
    got.head.save(str(tmp_path / "api.npz"))
    assert cli("classify", str(docs / "test.jsonl"), "--head-file", str(tmp_path / "api.npz")).out == r.out


def test_detect_anomalies_matches_the_cli(docs, tmp_path):
    records, _ = _read(docs / "all.jsonl")
    math = [rec for rec in records if rec["module"] == "math"]
    odd = [rec for rec in records if rec["module"] == "turtle"][:4]
    mixed = _write(tmp_path / "mixed.jsonl", math + odd)
    x = np.array([rec["embedding"] for rec in math + odd], np.float32)
    for method in ("knn", "iforest"):
        r = cli("detect-anomalies", mixed, "--method", method, "--contamination", "0.05")
        assert r.code == 0, r.err
        got = embcli.detect_anomalies(x, method=method, contamination=0.05)
        assert [rec["anomaly_score"] for rec in r.records()] == [round(float(s), 6) for s in got.scores]
        assert [rec["is_anomaly"] for rec in r.records()] == got.flags.tolist() and got.flags.any()
    # Novelty mode: fitted on math, scoring turtle; the saved detector scores the same.
    ref = _write(tmp_path / "math.jsonl", math)
    new = _write(tmp_path / "turtle.jsonl", odd)
    r = cli("detect-anomalies", new, "--reference", ref, "--save-detector", str(tmp_path / "d.npz"))
    assert r.code == 0, r.err
    xm = np.array([rec["embedding"] for rec in math], np.float32)
    got = embcli.detect_anomalies(x[-4:], reference=xm)
    assert [rec["anomaly_score"] for rec in r.records()] == [round(float(s), 6) for s in got.scores]
    assert [rec["is_anomaly"] for rec in r.records()] == got.flags.tolist()
    again = embcli.detect_anomalies(x[-4:], detector=tmp_path / "d.npz")
    np.testing.assert_array_equal(again.scores, got.scores)


def test_diff_matches_the_cli(docs, tmp_path):
    records, _ = _read(docs / "all.jsonl")
    a = _write(tmp_path / "a.jsonl", [r for r in records if r["module"] in ("math", "socket", "turtle", "ast")])
    b = _write(tmp_path / "b.jsonl", [r for r in records if r["module"] not in ("math", "socket", "turtle", "ast")])
    r = cli("diff", a, b, "--permutations", "50", "--top", "3")
    assert r.code == 1, r.err
    got = embcli.diff(a, b, permutations=50, top=3)
    assert got.different and got.report == orjson.loads(r.out)
    # The same from matrices with their records, as read_vectors gives them.
    assert embcli.diff(_read(Path(a)), _read(Path(b)), permutations=50, top=3).report == got.report
    # Aligned mode: one corpus against itself with the ids shuffled.
    ids = np.random.default_rng(1).permutation([rec["id"] for rec in records]).tolist()
    shuffled = _write(tmp_path / "s.jsonl", [{**rec, "id": i} for rec, i in zip(records, ids, strict=True)])
    r = cli("diff", str(docs / "all.jsonl"), shuffled, "--by", "id")
    got = embcli.diff(docs / "all.jsonl", shuffled, by="id")
    assert r.code == 1 and got.verdict == "different" and got.report == orjson.loads(r.out)


def test_quantize_matches_the_cli(docs, tmp_path):
    _, x = _read(docs / "all.jsonl")
    _, xt = _read(docs / "train.jsonl")
    cases = [
        (["--to", "int8", "--calibration-rows", "150"], {"to": "int8", "calibration_rows": 150}),
        (["--to", "binary", "--bits", "2", "--dims", "128"], {"to": "binary", "bits": 2, "dims": 128}),
        (["--to", "uint8", "--calibration", str(docs / "train.jsonl")], {"to": "uint8", "calibration": xt}),
    ]
    for args, kwargs in cases:
        r = cli("quantize", "--format", "npy", str(docs / "all.jsonl"), *args)
        assert r.code == 0, r.err
        np.testing.assert_array_equal(_npy_stream(r.out), embcli.quantize(x, **kwargs).codes)
    # Ranges saved by the CLI code API vectors alike, and the records say how.
    r = cli("quantize", "--to", "int8", "--save-ranges", str(tmp_path / "r.json"), str(docs / "all.jsonl"))
    got = embcli.quantize(x[:1], ranges=tmp_path / "r.json")
    first = r.records()[0]
    assert first["embedding"] == got.codes[0].tolist() and first["quantization"] == got.info
    got.save_ranges(tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == (tmp_path / "r.json").read_bytes()


def test_errors_are_the_typed_exceptions_the_cli_maps(docs, tmp_path):
    records, x = _read(docs / "all.jsonl")
    few = _write(tmp_path / "few.jsonl", records[:12])
    short = _write(tmp_path / "short.jsonl", [{"embedding": r["embedding"][:64]} for r in records[:50]])
    (tmp_path / "bad.json").write_text("{}")
    cases = [
        (["cluster", "--k", "50", few], lambda: embcli.cluster(x[:12], k=50), UsageError, "--k 50"),
        (["quantize", "--to", "int8", few], lambda: embcli.quantize(x[:12], "int8"), UsageError, "too few"),
        (["quantize", "--ranges", str(tmp_path / "bad.json"), few],
         lambda: embcli.quantize(x, ranges=tmp_path / "bad.json"), IncompatibleError, "not an embcli ranges"),
        (["diff", few, short], lambda: embcli.diff(x[:12], x[:50, :64]), InputError, "compares one embedding space"),
        (["detect-anomalies", "--contamination", "0.1", "--threshold", "1", few],
         lambda: embcli.detect_anomalies(x, contamination=0.1, threshold=1.0), UsageError, "not both"),
        (["classify", few], lambda: embcli.classify(x), UsageError, "exactly one of"),
    ]  # fmt: skip
    for args, call, error, words in cases:
        r = cli(*args)
        assert r.code == error.exit_code and words in r.err, (args, r.err)
        with pytest.raises(error, match=re.escape(words)):
            call()
    head = embcli.classify(x, train=(x, [r["module"] for r in records])).head
    with pytest.raises(IncompatibleError, match="384-d"):
        embcli.classify(x[:, :64], head=head)
    nan = x[:20].copy()
    nan[3, 0] = np.nan
    with pytest.raises(InputError, match="row 4"):
        embcli.cluster(nan, k=2)


def test_public_names_without_the_cli_face():
    names = ("cluster", "classify", "detect_anomalies", "diff", "quantize")
    assert set(names) <= set(embcli.__all__)
    code = (
        "import sys, numpy as np, embcli\n"
        "x = np.random.default_rng(0).normal(size=(200, 16)).astype('f4')\n"
        "embcli.cluster(x, 3); embcli.quantize(x, 'int8'); embcli.detect_anomalies(x)\n"
        "embcli.classify(x, train=(x, [i % 2 for i in range(200)]))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'click')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr
    for path in [*(ROOT / "embcli" / "api").glob("*.py"), *(ROOT / "embcli" / "analysis").glob("*.py")]:
        source = path.read_text()
        assert "import typer" not in source and "import rich" not in source and "from rich" not in source, path
