"""embcli embed against the fp32 reference vectors, through the real CLI."""

from __future__ import annotations

import io
import random
import subprocess
import sys
import time

import numpy as np
import orjson
from conftest import EXAMPLES, cli, cli_inproc

MIN_COSINE = 0.998  # int8-weight graph vs fp32 reference (measured min 0.99875)


def _cosines(vectors: np.ndarray, golden: list[dict]) -> np.ndarray:
    ref = np.array([g["embedding"] for g in golden], dtype=np.float32)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    return (vectors * ref).sum(axis=1) / np.linalg.norm(vectors, axis=1)


def _jsonl(golden: list[dict]) -> bytes:
    return b"".join(orjson.dumps({"id": i, "text": g["text"]}) + b"\n" for i, g in enumerate(golden))


def test_golden_one_at_a_time_jsonl(golden):
    r = cli_inproc("embed", "--batch-size", "1", "-q", input=_jsonl(golden))
    assert r.code == 0, r.err
    assert r.err == ""
    recs = r.records()
    assert [rec["id"] for rec in recs] == list(range(len(golden)))
    assert all(rec["text"] == g["text"] for rec, g in zip(recs, golden, strict=True))
    cos = _cosines(np.array([rec["embedding"] for rec in recs], dtype=np.float32), golden)
    assert cos.min() >= MIN_COSINE, (cos.min(), golden[int(cos.argmin())]["text"][:80])


def test_golden_shuffled_batches_jsonl_and_npy(golden):
    order = list(range(len(golden)))
    random.Random(7).shuffle(order)
    shuffled = [golden[i] for i in order]
    data = _jsonl(shuffled)
    # One big mixed-length batch, and the default length-sorted batches.
    for extra in (["--batch-size", "256", "--max-batch-tokens", "100000"], []):
        r = cli_inproc("embed", *extra, input=data)
        assert r.code == 0, r.err
        vecs = np.array([rec["embedding"] for rec in r.records()], dtype=np.float32)
        assert _cosines(vecs, shuffled).min() >= MIN_COSINE
    r = cli_inproc("embed", "--format", "npy", input=data)
    assert r.code == 0, r.err
    vecs = np.concatenate(list(_read_npy_stream(r.out)))
    assert vecs.shape == (len(golden), 384) and vecs.dtype == np.float32
    assert _cosines(vecs, shuffled).min() >= MIN_COSINE


def _read_npy_stream(buf: bytes):
    f = io.BytesIO(buf)
    while f.tell() < len(buf):
        yield np.load(f)


def test_same_input_gives_byte_identical_output():
    data = (EXAMPLES / "packages.jsonl").read_bytes()
    # A fresh process, and this one after other runs: "whatever ran before" (DESIGN §3).
    a, b = cli("embed", "-q", input=data), cli_inproc("embed", "-q", input=data)
    assert a.code == b.code == 0
    assert a.out == b.out and len(a.out) > 0
    a, b = cli("embed", "-q", "--format", "npy", input=data), cli_inproc("embed", "-q", "--format", "npy", input=data)
    assert a.out == b.out


def test_dims_truncates_then_renormalizes(examples_vec):
    data = (EXAMPLES / "packages.jsonl").read_bytes()
    full = np.array([orjson.loads(line)["embedding"] for line in examples_vec.read_bytes().splitlines()], np.float32)
    r = cli_inproc("embed", "--dims", "128", input=data)
    assert r.code == 0, r.err
    small = np.array([rec["embedding"] for rec in r.records()], dtype=np.float32)
    assert small.shape == (len(full), 128)
    np.testing.assert_allclose(np.linalg.norm(small, axis=1), 1.0, atol=1e-6)
    expected = full[:, :128] / np.linalg.norm(full[:, :128], axis=1, keepdims=True)
    np.testing.assert_allclose(small, expected, atol=1e-6)


def test_fields_pass_through_and_text_input():
    r = cli_inproc(
        "embed",
        "--vector-field",
        "vec",
        "--text-field",
        "body",
        input='{"id": "a", "body": "Fast JSON parsing", "meta": {"k": [1, 2]}, "n": null}\n',
    )
    assert r.code == 0, r.err
    (rec,) = r.records()
    assert list(rec) == ["id", "body", "meta", "n", "vec", "embedding_model"]
    assert rec["embedding_model"] == {
        "model": "all-MiniLM-L6-v2",
        "model_sha256": "53aa51172d142c89",  # the fp32 weights: the same whichever graph runs them
        "dims": 384,
        "max_length": 256,
        "pooling": "mean",
        "normalize": True,
        "prompt": "",
    }
    r = cli_inproc("embed", "--model-field", "", "--dims", "64", input='{"text": "no provenance"}\n')
    assert list(r.records()[0]) == ["text", "embedding"]
    assert rec["meta"] == {"k": [1, 2]} and len(rec["vec"]) == 384
    r = cli_inproc("embed", "--input-format", "text", input="first text\nsecond text\n")
    assert [rec["text"] for rec in r.records()] == ["first text", "second text"]


def test_existing_vector_field_is_not_overwritten_silently():
    line = '{"text": "hello", "embedding": [1, 2]}\n'
    r = cli_inproc("embed", input=line)
    assert r.code == 3 and r.out == b""
    assert "already has a 'embedding' field" in r.err and "--overwrite" in r.err
    r = cli_inproc("embed", "--overwrite", input=line)
    assert r.code == 0 and len(r.records()[0]["embedding"]) == 384


def test_streams_first_output_before_input_ends():
    """A slow writer keeps stdin open; a result must come out while it is still open."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "embcli", "embed", "-q"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        proc.stdin.write(b'{"id": 1, "text": "the first record"}\n')
        proc.stdin.flush()
        start = time.monotonic()
        line = proc.stdout.readline()  # blocks until embcli writes; stdin is still open
        assert orjson.loads(line)["id"] == 1
        assert proc.poll() is None, "embcli ended before its input did"
        assert time.monotonic() - start < 120
        proc.stdin.write(b'{"id": 2, "text": "the second record"}\n')
        proc.stdin.close()
        assert orjson.loads(proc.stdout.readline())["id"] == 2
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()


def test_truncation_is_counted_or_refused():
    long_text = "word " * 600
    r = cli_inproc("embed", input=orjson.dumps({"text": long_text}) + b"\n")
    assert r.code == 0
    assert "1 text truncated to 256 tokens" in r.err
    r = cli_inproc("embed", "--max-length", "8", input='{"text": "one two three four five six seven eight"}\n')
    assert "truncated to 8 tokens" in r.err
    r = cli_inproc("embed", "--no-truncate", input=orjson.dumps({"text": long_text}) + b"\n")
    assert r.code == 3 and r.out == b"" and "longer than 256 tokens" in r.err


def test_summary_on_stderr_and_quiet():
    r = cli("embed", input='{"text": "a b c"}\n')
    assert r.code == 0 and "embedded 1 text" in r.err
    assert cli("embed", "-q", input='{"text": "a b c"}\n').err == ""
