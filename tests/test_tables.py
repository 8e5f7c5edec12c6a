"""Tables as records (DESIGN §2): CSV/TSV, Parquet and Arrow IPC in; TableWriter out. io only, no model."""

from __future__ import annotations

import datetime
import decimal
import gzip
import io
import os
import sys
import threading

import numpy as np
import orjson
import pytest

from embcli.errors import InputError, UsageError
from embcli.io.readers import iter_embedded, iter_records
from embcli.io.streams import BadRecords, CheckedOutput, Source
from embcli.io.tables import TableWriter, iter_delimited, iter_table

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


def _write(path, data: bytes | str) -> str:
    mode = "w" if isinstance(data, str) else "wb"
    with open(path, mode, **({"newline": ""} if mode == "w" else {})) as f:
        f.write(data)
    return str(path)


def _csv(path, text: str | bytes, *, skip: bool = False, infer: bool = False, delimiter: str = ","):
    bad = BadRecords(skip=skip)
    with Source(_write(path, text)) as src:
        recs = list(iter_delimited(src, delimiter, bad, infer_types=infer))
    return recs, bad


def _records(path, fmt: str | None = None) -> list[dict]:
    with Source(str(path)) as src:
        return [r.data for r in iter_records(src, fmt, "text", BadRecords())]


def _embedded(path, field: str = "embedding", fmt: str | None = None):
    with Source(str(path)) as src:
        return list(iter_embedded(src, field, BadRecords(), input_format=fmt))


# --------------------------------------------------------------------------- CSV / TSV


def test_csv_quoted_fields_span_lines_and_records_know_their_first_line(tmp_path):
    text = 'id,text\n1,"one\ntwo, three"\n\n2,"say ""hi"""\r\n3,plain\n'
    recs, _ = _csv(tmp_path / "d.csv", text)
    assert [r.data for r in recs] == [
        {"id": "1", "text": "one\ntwo, three"},
        {"id": "2", "text": 'say "hi"'},
        {"id": "3", "text": "plain"},
    ]
    assert [r.line for r in recs] == [2, 5, 6]
    assert recs[1].where.endswith("d.csv line 5")


def test_csv_bom_is_dropped_and_blank_lines_skipped(tmp_path):
    recs, _ = _csv(tmp_path / "d.csv", "\ufeffid,text\n\n   \n7,x\n".encode())
    assert [r.data for r in recs] == [{"id": "7", "text": "x"}]


def test_csv_infer_types_rule(tmp_path):
    cells = ["1", "-2", "1.5", "1e3", "nan", "inf", "", "007", "+1", "1.", "true", " 1", str(1 << 63), "1e999"]
    text = ",".join(f"c{i}" for i in range(len(cells))) + "\n" + ",".join(cells) + "\n"
    recs, _ = _csv(tmp_path / "d.csv", text, infer=True)
    assert list(recs[0].data.values()) == [1, -2, 1.5, 1000.0, *cells[4:]]
    assert type(recs[0].data["c3"]) is float
    plain, _ = _csv(tmp_path / "e.csv", text)
    assert list(plain[0].data.values()) == cells  # without the option every value is a string


def test_csv_wrong_field_count_fails_naming_file_and_line(tmp_path):
    text = "a,b,c,d\n1,2,3,4\n1,2,3\n5,6,7,8\n"
    with pytest.raises(InputError) as e:
        _csv(tmp_path / "d.csv", text)
    assert e.value.message.endswith("row has 3 fields, the header has 4, " + str(tmp_path / "d.csv") + " line 3")
    recs, bad = _csv(tmp_path / "d.csv", text, skip=True)
    assert [r.data["a"] for r in recs] == ["1", "5"]
    assert bad.count == 1 and "line 3" in bad.first


def test_csv_stray_quote_is_a_bad_record_and_skipping_goes_on_at_the_next_line(tmp_path):
    text = 'a,b\n1,"x"y\n2,"multi\nline"z\n3,ok\n'
    with pytest.raises(InputError) as e:
        _csv(tmp_path / "d.csv", text)
    assert "bad CSV quoting" in e.value.message and e.value.message.endswith("d.csv line 2")
    recs, bad = _csv(tmp_path / "d.csv", text, skip=True)
    assert [(r.line, r.data) for r in recs] == [(5, {"a": "3", "b": "ok"})]
    assert bad.count == 2


def test_csv_unterminated_quote_ends_in_an_error(tmp_path):
    with pytest.raises(InputError, match=r"unterminated quoted field, .*d\.csv line 3$"):
        _csv(tmp_path / "d.csv", 'a,b\n1,2\n3,"never closed\n4,5\n' + "x,y\n" * 1000)


def test_csv_invalid_utf8(tmp_path):
    data = b"a,b\n1,caf\xe9\n2,ok\n"
    with pytest.raises(InputError, match=r"invalid UTF-8 at byte 5, .*d\.csv line 2$"):
        _csv(tmp_path / "d.csv", data)
    recs, bad = _csv(tmp_path / "d.csv", data, skip=True)
    assert [r.data for r in recs] == [{"a": "2", "b": "ok"}] and bad.count == 1


@pytest.mark.parametrize(
    ("header", "msg"), [("a,b,a", "names column 'a' twice"), ("a,,c", "column 2 of the header has no name")]
)
def test_csv_header_needs_unique_names(tmp_path, header, msg):
    with pytest.raises(InputError, match=msg):
        _csv(tmp_path / "d.csv", header + "\n1,2,3\n")


def test_csv_empty_input_yields_nothing(tmp_path):
    assert _csv(tmp_path / "d.csv", "")[0] == []
    assert _csv(tmp_path / "e.csv", "a,b\n")[0] == []


def test_csv_long_field(tmp_path):
    long = "w " * 200_000  # beyond csv's default 128 KiB field limit
    recs, _ = _csv(tmp_path / "d.csv", f'id,text\n1,"{long}"\n')
    assert recs[0].data["text"] == long


def test_tsv_through_iter_records_and_vectors_as_json_text(tmp_path):
    path = _write(tmp_path / "d.tsv", 'id\ttext\tembedding\n1\ta, b\t"[0.5, 1, 2]"\n2\tc\t[3,4,5]\n')
    assert _records(path)[0] == {"id": "1", "text": "a, b", "embedding": "[0.5, 1, 2]"}
    pairs = _embedded(path)
    np.testing.assert_array_equal(pairs[1][1], np.array([3, 4, 5], np.float32))


# --------------------------------------------------------------------------- Parquet / Arrow in

VECS = np.arange(12, dtype=np.float32).reshape(3, 4) / 7


def _check_vectors(pairs, expected=VECS):
    got = np.stack([v for _, v in pairs])
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-6)


@pytest.mark.parametrize(
    "vtype",
    [pa.list_(pa.float32()), pa.large_list(pa.float64()), pa.list_(pa.float32(), 4), pa.list_(pa.float16())],
    ids=["list-float", "large-list-double", "fixed-float32", "list-half"],
)
def test_parquet_from_pyarrow_with_any_float_list(tmp_path, vtype):
    vecs = VECS.astype(np.float16) if pa.types.is_float16(vtype.value_type) else VECS
    table = pa.table({"id": [1, 2, 3], "text": ["a", "b", "c"], "embedding": pa.array(vecs.tolist(), vtype)})
    pq.write_table(table, tmp_path / "v.parquet")
    pairs = _embedded(tmp_path / "v.parquet")
    _check_vectors(pairs, vecs)
    rec = pairs[1][0]
    assert rec.data["id"] == 2 and rec.data["text"] == "b"
    assert rec.where == f"{tmp_path / 'v.parquet'} row 2"
    # The reader keeps the column's own dtype; parse_vector makes float32.
    raw = _records(tmp_path / "v.parquet")[0]["embedding"]
    assert raw.dtype == {pa.float32(): np.float32, pa.float64(): np.float64, pa.float16(): np.float16}[vtype.value_type]


def test_parquet_memory_stays_at_one_row_group(tmp_path):
    """Reading holds about one row group, not the file: pyarrow's pre-buffering kept every chunk it read."""
    rows, groups, dims = 1_000, 48, 96
    vecs = np.random.default_rng(0).standard_normal((rows, dims), dtype=np.float32)
    schema = pa.schema([("id", pa.int64()), ("embedding", pa.list_(pa.float32(), dims))])
    with pq.ParquetWriter(tmp_path / "v.parquet", schema, compression="none") as w:
        for g in range(groups):
            ids = pa.array(np.arange(g * rows, (g + 1) * rows))
            w.write_table(pa.table([ids, pa.FixedSizeListArray.from_arrays(vecs.ravel(), dims)], schema=schema))
    group_bytes = rows * dims * 4
    most, seen = 0, 0
    with Source(str(tmp_path / "v.parquet")) as src:
        for _rec, vec in iter_embedded(src, "embedding", BadRecords()):
            seen += 1
            if seen % 500 == 0:
                most = max(most, pa.total_allocated_bytes())
            assert vec.shape == (dims,)
    assert seen == rows * groups
    # The reader's 2,048-row batches and its read-ahead hold a few groups; pre-buffering held twice the file.
    assert most < groups / 3 * group_bytes, f"{most / group_bytes:.1f} of {groups} row groups held at once"


def test_parquet_from_pandas(tmp_path):
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"id": ["x", "y", "z"], "embedding": [list(map(float, v)) for v in VECS], "n": [1, 2, 3]})
    df.to_parquet(tmp_path / "p.parquet")
    pairs = _embedded(tmp_path / "p.parquet")
    _check_vectors(pairs)
    assert [r.data["id"] for r, _ in pairs] == ["x", "y", "z"]
    assert pairs[2][0].data["n"] == 3


def test_parquet_from_duckdb(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    path = tmp_path / "d.parquet"
    duckdb.sql(
        "COPY (SELECT i AS id, 'doc ' || i AS text, [i, i + 1, i + 2, i + 3]::FLOAT[4] AS embedding "
        f"FROM range(3) t(i) ORDER BY i) TO '{path}' (FORMAT parquet)"
    )
    pairs = _embedded(path)
    _check_vectors(pairs, np.arange(3)[:, None] + np.arange(4)[None, :])
    assert [r.data["text"] for r, _ in pairs] == ["doc 0", "doc 1", "doc 2"]


def test_parquet_from_polars_array(tmp_path):
    pl = pytest.importorskip("polars")
    schema = {"id": pl.Int64, "embedding": pl.Array(pl.Float32, 4)}
    df = pl.DataFrame({"id": [1, 2, 3], "embedding": VECS}, schema=schema)
    df.write_parquet(tmp_path / "p.parquet")
    _check_vectors(_embedded(tmp_path / "p.parquet"))


def _vector_table():
    return pa.table({"id": [1, 2, 3], "embedding": pa.array(VECS.tolist(), pa.list_(pa.float32(), 4))})


@pytest.mark.parametrize("kind", ["file", "stream"])
def test_arrow_ipc_from_a_path_and_from_stdin(tmp_path, monkeypatch, kind):
    table = _vector_table()
    path = tmp_path / f"v.{kind}"
    with pa.OSFile(str(path), "wb") as sink:
        writer = pa.ipc.new_file(sink, table.schema) if kind == "file" else pa.ipc.new_stream(sink, table.schema)
        for batch in table.to_batches(max_chunksize=2):
            writer.write_batch(batch)
        writer.close()
    _check_vectors(_embedded(path))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(io.BytesIO(path.read_bytes()))))
    with Source("-") as src:
        assert src.path is None  # stdin: the file format is spooled, the stream read as it comes
        pairs = list(iter_embedded(src, "embedding", BadRecords()))
    _check_vectors(pairs)
    assert pairs[0][0].where == "<stdin> row 1"


def test_gzip_parquet_is_spooled(tmp_path):
    buf = io.BytesIO()
    pq.write_table(_vector_table(), buf)
    path = _write(tmp_path / "v.parquet.gz", gzip.compress(buf.getvalue()))
    with Source(path) as src:
        assert src.compression == "gzip" and src.path is None
        pairs = list(iter_embedded(src, "embedding", BadRecords()))
    _check_vectors(pairs)


def test_big_batches_are_sliced_and_null_vectors_are_none(tmp_path):
    n = 5000  # one batch, larger than the reader's slice
    vecs = np.random.default_rng(0).random((n, 3), dtype=np.float32)
    fixed = pa.array([None if i % 1000 == 7 else list(v) for i, v in enumerate(vecs)], pa.list_(pa.float32(), 3))
    var = pa.array(
        [None if i % 1000 == 9 else list(v[: 1 + i % 3]) for i, v in enumerate(vecs)], pa.list_(pa.float64())
    )
    table = pa.table({"f": fixed, "v": var})
    path = tmp_path / "big.arrow"
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        w.write_table(table, max_chunksize=n)
    recs = _records(path)
    assert len(recs) == n
    for i in (0, 2047, 2048, 2049, 4999, 7, 1007, 9, 3009):
        f, v = recs[i]["f"], recs[i]["v"]
        if i % 1000 == 7:
            assert f is None
        else:
            np.testing.assert_array_equal(f, vecs[i])
        if i % 1000 == 9:
            assert v is None
        else:
            np.testing.assert_array_equal(v, vecs[i][: 1 + i % 3].astype(np.float64))


def test_other_arrow_types_become_json_ready_values(tmp_path):
    table = pa.table(
        {
            "ts": pa.array([datetime.datetime(2024, 5, 1, 12, 0, 0, 123)], pa.timestamp("ns", tz="UTC")),
            "day": pa.array([datetime.date(2024, 5, 1)]),
            "price": pa.array([decimal.Decimal("1.50")]),
            "blob": pa.array([b"\xff\x00"], pa.binary()),
            "utf8blob": pa.array([b"caf\xc3\xa9"], pa.binary()),
            "tags": pa.array([[("k", 1)]], pa.map_(pa.string(), pa.int64())),
            "nested": pa.array([{"when": datetime.date(2024, 1, 2), "n": [1, 2]}]),
            "cat": pa.array(["red"]).dictionary_encode(),
            "ints": pa.array([[1, 2]], pa.list_(pa.int32())),
            "dur": pa.array([datetime.timedelta(seconds=2)], pa.duration("s")),
        }
    )
    pq.write_table(table, tmp_path / "t.parquet")
    rec = _records(tmp_path / "t.parquet")[0]
    assert rec == {
        "ts": "2024-05-01 12:00:00.000123000Z",
        "day": "2024-05-01",
        "price": "1.50",
        "blob": "/wA=",
        "utf8blob": "café",
        "tags": {"k": 1},
        "nested": {"when": "2024-01-02", "n": [1, 2]},
        "cat": "red",
        "ints": [1, 2],
        "dur": 2,
    }
    orjson.dumps(rec)


def _parquet_bytes() -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"id": list(range(1000)), "text": [f"t{i}" for i in range(1000)]}), buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(lambda b: b[: len(b) // 2], id="cut-in-half"),
        pytest.param(lambda b: b"PAR1" + os.urandom(64), id="garbage-after-magic"),
        pytest.param(lambda b: b[:-8] + b"\x00" * 8, id="bad-footer"),
        pytest.param(lambda b: b"PAR1", id="magic-only"),
    ],
)
def test_corrupt_parquet_is_one_input_error(tmp_path, data):
    path = _write(tmp_path / "bad.parquet", data(_parquet_bytes()))
    with pytest.raises(InputError) as e:
        _records(path)
    msg = e.value.message
    assert msg.startswith("corrupt Parquet (") and msg.endswith(f"), {path}") and "\n" not in msg


def test_corrupt_arrow_and_not_a_table(tmp_path):
    buf = io.BytesIO()
    with pa.ipc.new_file(buf, _vector_table().schema) as w:
        w.write_table(_vector_table())
    path = _write(tmp_path / "bad.arrow", buf.getvalue()[:40])
    with pytest.raises(InputError, match=r"^corrupt Arrow \(.*\), .*bad\.arrow$"):
        _records(path)
    with (
        pytest.raises(InputError, match="not a Parquet or Arrow file"),
        Source(_write(tmp_path / "x.parquet", b"hello")) as src,
    ):
        list(iter_table(src, BadRecords()))


def test_missing_pyarrow_is_a_usage_error(tmp_path, monkeypatch):
    path = tmp_path / "v.parquet"
    pq.write_table(_vector_table(), path)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(UsageError, match="reading Parquet needs pyarrow") as e:
        _records(path)
    assert e.value.hint == "pip install 'embcli[arrow]'"


# --------------------------------------------------------------------------- TableWriter

MODEL = {"name": "test-model", "dim": 4, "normalized": True}


def _originals(n: int = 7) -> list[dict]:
    rng = np.random.default_rng(1)
    recs = []
    for i in range(n):
        recs.append(
            {
                "id": i if i % 2 else f"doc-{i}",
                "text": f"text number {i}, with a comma\nand a line",
                "meta": {"source": "s", "page": i, "nested": [1, {"x": None}]},
                "tags": ["a", "b"][: i % 3],
                "score": i / 2 if i else 0,
                "flag": bool(i % 2),
                "embedding": rng.random(4, dtype=np.float32),
                "embedding_model": MODEL,
            }
        )
    return recs


def _written(fmt: str, recs: list[dict], **kw) -> bytes:
    buf = io.BytesIO()
    w = TableWriter(buf, fmt, **kw)
    w.write_many(recs)
    w.close()
    return buf.getvalue()


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if k == "embedding":
            np.testing.assert_array_equal(np.asarray(a[k], np.float32), np.asarray(b[k], np.float32))
        else:
            assert a[k] == b[k], k


@pytest.mark.parametrize("fmt", ["parquet", "arrow", "arrows"])
def test_writer_round_trip_binary(tmp_path, fmt):
    recs = _originals()
    path = _write(tmp_path / f"out.{fmt}", _written(fmt, recs, row_group_rows=3))
    back = _records(path)
    assert len(back) == len(recs)
    for a, b in zip(recs, back, strict=True):
        _same(a, b)
        assert list(a) == list(b)  # field order kept, provenance back in its place
    assert back[0]["embedding"].dtype == np.float32
    assert back[0]["embedding_model"] is back[1]["embedding_model"]  # one shared value
    if fmt == "parquet":
        f = pq.ParquetFile(path)
        assert f.metadata.num_row_groups == 3
        assert "embedding_model" not in f.schema_arrow.names
        assert f.schema_arrow.field("embedding").type == pa.list_(pa.float32(), 4)
        assert f.schema_arrow.field("id").type == pa.string()  # mixed int/str ids: JSON text, read back as they were
        meta = orjson.loads(f.schema_arrow.metadata[b"embcli"])
        assert meta["provenance"]["value"] == MODEL and set(meta["json_columns"]) == {"id", "meta"}


def test_writer_column_types(tmp_path):
    recs = [
        {"s": "a", "b": True, "i": 1, "f": 1, "li": [1, 2], "lf": [1, 2.5], "ls": ["x"], "n": None, "e": [0.5, 1]},
        {"s": None, "b": False, "i": 2, "f": 2.5, "li": [], "lf": None, "ls": [], "e": np.ones(2, np.float64)},
    ]
    schema = pq.read_schema(io.BytesIO(_written("parquet", recs, vector_field="e")))
    types = {f.name: f.type for f in schema}
    assert types == {
        "s": pa.string(),
        "b": pa.bool_(),
        "i": pa.int64(),
        "f": pa.float64(),
        "li": pa.list_(pa.int64()),
        "lf": pa.list_(pa.float64()),
        "ls": pa.list_(pa.string()),
        "n": pa.string(),
        "e": pa.list_(pa.float32(), 2),
    }
    path = _write(tmp_path / "t.parquet", _written("parquet", recs, vector_field="e"))
    back = _records(path)
    assert back[1]["n"] is None  # a missing field reads back as null
    assert back[0]["lf"].tolist() == [1.0, 2.5]  # float lists come back as numpy arrays


def test_writer_csv_round_trip(tmp_path):
    recs = _originals(5)
    data = _written("csv", recs, row_group_rows=2)
    path = _write(tmp_path / "out.csv", data)
    assert data.startswith(b"id,text,meta,tags,score,flag,embedding,embedding_model\n")
    with Source(path) as src:
        back = [r.data for r in iter_records(src, None, "text", BadRecords(), infer_types=True)]
    for a, b in zip(recs, back, strict=True):
        assert b["id"] == a["id"] and b["text"] == a["text"] and b["score"] == a["score"]
        assert orjson.loads(b["meta"]) == a["meta"] and orjson.loads(b["tags"]) == a["tags"]
        assert b["flag"] == ("true" if a["flag"] else "false")
        assert orjson.loads(b["embedding_model"]) == MODEL
    pairs = _embedded(path)
    np.testing.assert_array_equal(np.stack([v for _, v in pairs]), np.stack([r["embedding"] for r in recs]))
    tsv = _written("tsv", [{"a": "x\ty", "b": None, "c": float("nan")}])
    assert tsv == b'a\tb\tc\n"x\ty"\t\tnan\n'


def test_writer_output_is_deterministic():
    for fmt in ("parquet", "arrow", "arrows", "csv"):
        assert _written(fmt, _originals()) == _written(fmt, _originals())


def test_writer_empty_output_is_still_readable():
    assert _written("csv", []) == b""
    assert pq.read_table(io.BytesIO(_written("parquet", []))).num_rows == 0
    assert pa.ipc.open_file(io.BytesIO(_written("arrow", []))).read_all().num_rows == 0
    assert pa.ipc.open_stream(io.BytesIO(_written("arrows", []))).read_all().num_rows == 0


def test_duckdb_reads_the_written_vectors(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    recs = _originals()
    path = _write(tmp_path / "out.parquet", _written("parquet", recs))
    # Parquet has no fixed-size list: DuckDB's reader sees FLOAT[] (as for its own FLOAT[4] output),
    # and a cast gives FLOAT[4]; through Arrow it sees FLOAT[4] directly.
    rows = duckdb.sql(
        f"SELECT typeof(embedding::FLOAT[4]), len(embedding), typeof(embedding), text FROM '{path}'"
    ).fetchall()
    assert rows[0][:3] == ("FLOAT[4]", 4, "FLOAT[]") and rows[0][3] == recs[0]["text"]
    written = pq.read_table(path)  # noqa: F841 - DuckDB finds it by name
    assert duckdb.sql("SELECT typeof(embedding) FROM written LIMIT 1").fetchall() == [("FLOAT[4]",)]
    got = np.array(duckdb.sql(f"SELECT embedding FROM '{path}'").fetchnumpy()["embedding"].tolist(), np.float32)
    np.testing.assert_array_equal(got, np.stack([r["embedding"] for r in recs]))


@pytest.mark.parametrize("fmt", ["parquet", "arrows"])
def test_writer_onto_a_real_pipe(tmp_path, fmt):
    r, w = os.pipe()
    got: list[bytes] = []

    def drain():
        with os.fdopen(r, "rb") as f:
            got.append(f.read())

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        out = CheckedOutput(w, "stdout")
        assert not out.seekable()
        tw = TableWriter(out, fmt, row_group_rows=2)
        recs = _originals(5)
        tw.write_many(recs[:3])
        tw.write_many(recs[3:])
        tw.close()
    finally:
        os.close(w)
        reader.join()
    path = _write(tmp_path / f"piped.{fmt}", got[0])
    for a, b in zip(recs, _records(path), strict=True):
        _same(a, b)


def test_writer_type_mismatch_in_a_later_row_group_is_an_input_error():
    good = [{"id": i, "score": 0.5, "embedding": np.ones(3, np.float32)} for i in range(4)]
    cases = [
        ({"id": "x", "score": 0.5}, r"field 'id' of record 5 is a string, but its column holds integers"),
        ({"id": 5, "score": "high"}, r"field 'score' of record 5 is a string, but its column holds numbers"),
        ({"id": 5, "embedding": np.ones(4, np.float32)}, r"field 'embedding' of record 5 has 4 dimensions"),
        ({"id": 5, "label": "new"}, r"record 5 has field 'label', which the first 4 records lack"),
    ]
    for late, msg in cases:
        for fmt in ("parquet", "arrow"):
            w = TableWriter(io.BytesIO(), fmt, row_group_rows=4)
            with pytest.raises(InputError, match=msg) as e:
                w.write_many([*good, late])
                w.close()
            assert e.value.hint == (
                "Parquet/CSV columns have one type, fixed by the first 4 records; write JSONL to keep any shape"
            )
    # An integer into a float column is fine; so is anything into a JSON-text column.
    mixed = [{"v": 1.5, "j": {"a": 1}}, {"v": 2, "j": [1, "x"]}]
    _written("parquet", mixed, row_group_rows=1)
    with pytest.raises(InputError, match="record 2 has field 'b'"):
        _written("csv", [{"a": 1}, {"b": 2}], row_group_rows=1)


def test_writer_refuses_different_provenance():
    recs = _originals(3)
    recs[2] = {**recs[2], "embedding_model": {**MODEL, "name": "other"}}
    with pytest.raises(InputError, match="records carry different embedding_model values"):
        _written("parquet", recs)
    _written("csv", recs)  # a CSV column holds any value per row


def test_writer_unknown_format():
    with pytest.raises(UsageError, match="unknown table format 'xlsx'"):
        TableWriter(io.BytesIO(), "xlsx")


def test_writer_through_compression_reads_back(tmp_path):
    from embcli.io.compress import CompressingWriter

    buf = io.BytesIO()
    gz = CompressingWriter(buf, "gzip")
    w = TableWriter(gz, "parquet", row_group_rows=2)
    recs = _originals(5)
    w.write_many(recs)
    w.close()
    gz.close()
    path = _write(tmp_path / "out.parquet.gz", buf.getvalue())
    for a, b in zip(recs, _records(path), strict=True):
        _same(a, b)


def test_importing_the_module_does_not_import_pyarrow():
    import subprocess

    code = "import sys, embcli.io.tables; assert 'pyarrow' not in sys.modules, 'pyarrow imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))
