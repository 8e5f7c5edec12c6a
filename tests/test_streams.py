"""The stream layer on its own: NPY stream framing, sniffing, JSONL vectors."""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

from embcli.errors import InputError
from embcli.io.readers import iter_embedded, iter_records
from embcli.io.streams import BadRecords, NpyWriter, Source, iter_npy


def _source(data: bytes, monkeypatch) -> Source:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(data))))
    return Source("-")


def test_pipe_writer_emits_back_to_back_arrays_that_readers_concatenate(monkeypatch):
    buf = io.BytesIO()
    buf.fileno = lambda: (_ for _ in ()).throw(OSError())  # behaves like a pipe: not a regular file
    w = NpyWriter(buf)
    a, b = np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(6, 9, dtype=np.float32).reshape(1, 3)
    w.write(a)
    w.write(b)
    w.close()
    raw = buf.getvalue()
    first = np.load(io.BytesIO(raw))  # each part is a standard array
    np.testing.assert_array_equal(first, a)
    rows = np.concatenate(list(iter_npy(_source(raw, monkeypatch))))
    np.testing.assert_array_equal(rows, np.vstack([a, b]))


def test_file_writer_makes_one_standard_array(tmp_path):
    path = tmp_path / "v.npy"
    with open(path, "wb") as f:
        w = NpyWriter(f)
        for i in range(3):
            w.write(np.full((i + 1, 4), i, dtype=np.float32))
        w.close()
    arr = np.load(path)
    assert arr.shape == (6, 4) and arr[-1, 0] == 2


def test_npy_reader_refuses_mixed_widths_and_truncation(monkeypatch):
    def npy(a: np.ndarray) -> bytes:
        b = io.BytesIO()
        np.save(b, a)
        return b.getvalue()

    mixed = npy(np.zeros((2, 3), np.float32)) + npy(np.zeros((2, 4), np.float32))
    with pytest.raises(InputError, match="the stream began with float32 x 3"):
        list(iter_npy(_source(mixed, monkeypatch)))
    cut = npy(np.zeros((5, 3), np.float32))[:-7]
    with pytest.raises(InputError, match="truncated: 4 of 5 rows"):
        list(iter_npy(_source(cut, monkeypatch)))
    with pytest.raises(InputError, match="unexpected bytes after NPY array 1"):
        list(iter_npy(_source(npy(np.zeros((1, 3), np.float32)) + b"junk", monkeypatch)))


def test_embedded_records_from_jsonl_and_npy(monkeypatch):
    data = b'{"id": 1, "embedding": [1, 0]}\n\n{"id": 2, "embedding": [0, 1]}\n{"id": 3, "embedding": [1]}\n'
    bad = BadRecords(skip=True)
    got = list(iter_embedded(_source(data, monkeypatch), "embedding", bad))
    assert [rec.data["id"] for rec, _ in got] == [1, 2]
    assert bad.count == 1 and "1 dimensions, earlier ones 2, <stdin> line 4" in bad.first
    b = io.BytesIO()
    np.save(b, np.eye(2, dtype=np.float16))
    got = list(iter_embedded(_source(b.getvalue(), monkeypatch), "embedding", BadRecords()))
    assert [(rec.npy, rec.line, rec.data) for rec, _ in got] == [(True, 1, {}), (True, 2, {})]
    assert got[1][1].dtype == np.float16


def test_text_lines_keep_their_content(monkeypatch):
    src = _source(b"first\r\nsecond line\nno newline at end", monkeypatch)
    recs = list(iter_records(src, "text", "body", BadRecords()))
    assert [r.data["body"] for r in recs] == ["first", "second line", "no newline at end"]
    assert [r.line for r in recs] == [1, 2, 3]
