"""Every input and output format through the real CLI (DESIGN §2, §5): several inputs, globs and directories,
compression, CSV/TSV, Parquet and Arrow (written by embcli, pandas, DuckDB and polars), round trips, and the
errors of corrupt inputs.

Each ``cli`` call is a real ``python -m embcli`` process (about 1-2 s with the model): a small real corpus is
embedded once per module and every test reuses it. io-level details are in test_tables.py.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import os
import re
import subprocess
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import orjson
import pytest
from conftest import EXAMPLES, cli

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pd = pytest.importorskip("pandas")
duckdb = pytest.importorskip("duckdb")
pl = pytest.importorskip("polars")
zstandard = pytest.importorskip("zstandard")

N_DOCS = 30
N_A = 12  # a.jsonl holds the first N_A records, b.jsonl the rest
DIMS = 384
MODEL = "all-MiniLM-L6-v2"
GZIP = b"\x1f\x8b"


def _records(data: bytes) -> list[dict]:
    return [orjson.loads(line) for line in data.splitlines()]


def _ok(r) -> None:
    assert r.code == 0, r.err


def _error_line(r) -> str:
    """The one line of an error without a hint, checked to be one line."""
    lines = r.err.splitlines()
    assert len(lines) == 1, r.err
    assert lines[0].startswith("embcli: error: "), r.err
    return lines[0][len("embcli: error: ") :]


def _vectors(recs: list[dict]) -> np.ndarray:
    return np.array([r["embedding"] for r in recs], dtype=np.float32)


def _write_delimited(path: Path, rows: list[list], delimiter: str = ",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter=delimiter, lineterminator="\n").writerows(rows)
    return path


def _manifest(idx: Path) -> dict:
    return orjson.loads((idx / "manifest.json").read_bytes())


# --------------------------------------------------------------------------- the corpus, embedded once


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> SimpleNamespace:
    """The first N_DOCS real package summaries, as docs.jsonl and as its two halves a.jsonl and b.jsonl."""
    d = tmp_path_factory.mktemp("formats")
    lines = (EXAMPLES / "packages.jsonl").read_bytes().splitlines(keepends=True)[:N_DOCS]
    docs = [orjson.loads(line) for line in lines]
    assert all("\t" not in r["text"] and "\n" not in r["text"] for r in docs)
    assert any("," in r["text"] for r in docs)  # CSV quoting is exercised
    (d / "docs.jsonl").write_bytes(b"".join(lines))
    (d / "a.jsonl").write_bytes(b"".join(lines[:N_A]))
    (d / "b.jsonl").write_bytes(b"".join(lines[N_A:]))
    return SimpleNamespace(dir=d, lines=lines, docs=docs)


@pytest.fixture(scope="module")
def vec(corpus) -> bytes:
    """``embcli embed docs.jsonl``: the JSONL every other output is compared with."""
    r = cli("embed", "-q", str(corpus.dir / "docs.jsonl"))
    _ok(r)
    assert len(r.out.splitlines()) == N_DOCS
    return r.out


@pytest.fixture(scope="module")
def vec_recs(vec) -> list[dict]:
    return _records(vec)


@pytest.fixture(scope="module")
def vec_parquet(corpus) -> Path:
    path = corpus.dir / "vec.parquet"
    _ok(cli("embed", "-q", str(corpus.dir / "docs.jsonl"), "-o", str(path)))
    return path


@pytest.fixture(scope="module")
def vec_arrow(corpus) -> Path:
    path = corpus.dir / "vec.arrow"
    _ok(cli("embed", "-q", str(corpus.dir / "docs.jsonl"), "-o", str(path)))
    return path


@pytest.fixture(scope="module")
def shards(corpus, vec_recs) -> Path:
    """embcli's vectors re-written by pandas (list<double>), DuckDB (FLOAT[384]) and polars (pl.Array), keyed by
    ``name`` (no ``id`` column) and with no model column: 10 records each, in vec/."""
    d = corpus.dir / "vec"
    d.mkdir()
    rows = [
        {"name": r["id"], "text": r["text"], "download_rank": r["download_rank"], "embedding": r["embedding"]}
        for r in vec_recs
    ]
    pd.DataFrame(rows[:10]).to_parquet(d / "1-pandas.parquet")
    con = duckdb.connect()
    con.register("recs", pd.DataFrame(rows[10:20]))
    con.sql(
        f"COPY (SELECT name, text, download_rank, embedding::FLOAT[{DIMS}] AS embedding FROM recs) "
        f"TO '{d / '2-duckdb.parquet'}' (FORMAT parquet)"
    )
    con.close()
    part = rows[20:]
    pl.DataFrame(
        {
            "name": [r["name"] for r in part],
            "text": [r["text"] for r in part],
            "download_rank": [r["download_rank"] for r in part],
            "embedding": _vectors(part),
        },
        schema={
            "name": pl.String,
            "text": pl.String,
            "download_rank": pl.Int64,
            "embedding": pl.Array(pl.Float32, DIMS),
        },
    ).write_parquet(d / "3-polars.parquet")
    # Each writer's own vector type reaches embcli.
    types = {p.name: pq.read_schema(p).field("embedding").type for p in sorted(d.iterdir())}
    assert types == {
        "1-pandas.parquet": pa.list_(pa.float64()),
        "2-duckdb.parquet": pa.list_(pa.float32()),
        "3-polars.parquet": pa.list_(pa.float32(), DIMS),
    }
    return d


@pytest.fixture(scope="module")
def glob_index(shards, corpus) -> SimpleNamespace:
    """``embcli index 'vec/*.parquet' --id-field name``: the glob quoted, so embcli expands it."""
    idx = corpus.dir / "glob.idx"
    r = cli("index", str(shards / "*.parquet"), "-o", str(idx), "--id-field", "name", "-m", MODEL)
    return SimpleNamespace(path=idx, result=r)


@pytest.fixture(scope="module")
def clustered(vec_parquet, corpus) -> bytes:
    """``embcli cluster vec.parquet -o rt.jsonl``: embcli's Parquet read back, records out as JSONL."""
    out = corpus.dir / "rt.jsonl"
    _ok(cli("cluster", "-q", str(vec_parquet), "-k", "3", "-o", str(out)))
    return out.read_bytes()


# --------------------------------------------------------------------------- 1. several inputs, globs, directories


@pytest.fixture(scope="module")
def alone(corpus) -> SimpleNamespace:
    """a.jsonl and b.jsonl each embedded alone: a to ``-o a.jsonl.gz``, b from xz on stdin."""
    a_gz = corpus.dir / "a-alone.jsonl.gz"
    ra = cli("embed", "-q", str(corpus.dir / "a.jsonl"), "-o", str(a_gz))
    _ok(ra)
    assert ra.out == b""
    rb = cli("embed", "-q", input=lzma.compress((corpus.dir / "b.jsonl").read_bytes()))
    _ok(rb)
    return SimpleNamespace(a_gz=a_gz, b=rb.out)


def test_several_inputs_are_read_in_order_as_one_stream(corpus, alone, vec):
    r = cli("embed", "-q", str(corpus.dir / "a.jsonl"), str(corpus.dir / "b.jsonl"))
    _ok(r)
    a = gzip.decompress(alone.a_gz.read_bytes())
    assert len(a.splitlines()) == N_A and len(alone.b.splitlines()) == N_DOCS - N_A
    assert r.out == a + alone.b  # the concatenation of each alone, byte for byte
    assert r.out == vec  # and the same as the one file that holds both


def test_a_directory_of_compressed_files_found_by_magic(corpus, vec):
    """gzip, bzip2, xz and zstd inputs with no telling suffix give what the plain file gives; a directory is read
    in name order, skipping names that start with '_' or '.'."""
    d = corpus.dir / "magic"
    d.mkdir()
    cut = [0, 7, 15, 22, N_DOCS]
    parts = [b"".join(corpus.lines[cut[i] : cut[i + 1]]) for i in range(4)]
    (d / "1").write_bytes(gzip.compress(parts[0]))
    (d / "2").write_bytes(bz2.compress(parts[1]))
    (d / "3").write_bytes(lzma.compress(parts[2]))
    (d / "4").write_bytes(zstandard.ZstdCompressor().compress(parts[3]))
    (d / "_manifest.json").write_bytes(b'{"not": "a record"}\n')  # would be a bad record if read
    (d / ".DS_Store").write_bytes(os.urandom(64))
    r = cli("embed", "-q", str(d))
    _ok(r)
    assert r.out == vec


def test_a_quoted_glob_counts_every_file(glob_index):
    r = glob_index.result
    _ok(r)
    assert f"indexed {N_DOCS} vectors" in r.err
    m = _manifest(glob_index.path)
    assert m["count"] == N_DOCS and m["dims"] == DIMS
    assert m["provenance"]["model"] == MODEL  # -m gives the model the bare vectors lack


def test_a_glob_that_matches_nothing_is_a_usage_error(tmp_path):
    pattern = str(tmp_path / "nothing" / "*.parquet")
    r = cli("index", pattern, "-o", str(tmp_path / "x.idx"))
    assert r.code == 2
    assert _error_line(r) == f"no files match {pattern}"
    assert not (tmp_path / "x.idx").exists()


# --------------------------------------------------------------------------- 2. compression


def test_compressed_stdin_and_output_bytes_are_deterministic(corpus, alone):
    """zstd on stdin, gzip onto stdout with --compress: the same bytes as ``-o a.jsonl.gz`` in another run."""
    zst = zstandard.ZstdCompressor().compress((corpus.dir / "a.jsonl").read_bytes())
    r = cli("embed", "-q", "--compress", "gzip", input=zst)
    _ok(r)
    written = alone.a_gz.read_bytes()
    assert r.out[:2] == GZIP
    assert r.out == written  # two runs (file and pipe), same bytes
    assert written[4:8] == b"\0\0\0\0" and not written[3] & 0x08  # mtime 0, no file name in the header
    assert len(gzip.decompress(written).splitlines()) == N_A


def _unzstd(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompressobj().decompress(data)


@pytest.mark.parametrize(
    ("source", "name", "magic", "decompress"),
    [
        pytest.param("jsonl-bzip2-stdin", "rt.jsonl.zst", b"\x28\xb5\x2f\xfd", _unzstd, id="bz2-stdin-to-zst"),
        pytest.param("arrow-file", "RT.JSONL.XZ", b"\xfd7zXZ\x00", lzma.decompress, id="arrow-file-to-XZ"),
    ],
)
def test_output_compressed_by_the_o_suffix(vec, vec_arrow, clustered, source, name, magic, decompress):
    """cluster over embed's JSONL (bzip2 on stdin) and over its Arrow file: the same records as over its Parquet,
    compressed as the -o suffix says."""
    out = vec_arrow.parent / name
    if source == "arrow-file":
        r = cli("cluster", "-q", str(vec_arrow), "-k", "3", "-o", str(out))
    else:
        r = cli("cluster", "-q", "-k", "3", "-o", str(out), input=bz2.compress(vec))
    _ok(r)
    data = out.read_bytes()
    assert data.startswith(magic)
    assert decompress(data) == clustered


def test_truncated_gzip_is_bad_input_naming_file_and_line(corpus, tmp_path):
    whole = gzip.compress((corpus.dir / "docs.jsonl").read_bytes())
    cut = whole[: len(whole) * 3 // 5]
    lines = zlib.decompressobj(wbits=31).decompress(cut).count(b"\n")  # the whole lines before the cut
    assert 0 < lines < N_DOCS
    src = tmp_path / "docs.jsonl.gz"
    src.write_bytes(cut)
    out = tmp_path / "out.jsonl"
    r = cli("embed", "-q", str(src), "-o", str(out))
    assert r.code == 3
    assert _error_line(r) == f"truncated gzip data after line {lines}, {src}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl.gz"]  # nothing at -o, no temp file left


# --------------------------------------------------------------------------- 3. CSV / TSV


def _rows(docs: list[dict], header: tuple[str, ...] = ("id", "text", "download_rank", "released")) -> list[list]:
    return [list(header)] + [[d["id"], d["text"], d["download_rank"], d["released"]] for d in docs]


def test_csv_and_tsv_by_extension_skipping_a_row_of_the_wrong_width(corpus, vec_recs, tmp_path):
    part1 = _write_delimited(tmp_path / "part1.csv", _rows(corpus.docs[:N_A]))
    rows = _rows(corpus.docs[N_A:])
    rows.insert(4, ["stray", "a row with two fields"])  # line 5 of the file
    part2 = _write_delimited(tmp_path / "part2.tsv", rows, "\t")
    r = cli("embed", str(part1), str(part2), "--on-error", "skip")
    _ok(r)
    assert f"skipped 1 bad record (first: row has 2 fields, the header has 4, {part2} line 5)" in r.err
    got = _records(r.out)
    assert len(got) == N_DOCS
    # Every cell is a string without --infer-types; the vectors are those of the same texts from JSONL.
    assert got == [{**v, "download_rank": str(v["download_rank"])} for v in vec_recs]
    assert [list(g) for g in got] == [list(v) for v in vec_recs]  # the header's order, then the added fields


def test_gzip_csv_on_stdin_with_input_format_text_field_and_infer_types(corpus, vec_recs):
    data = io.StringIO()
    rows = _rows(corpus.docs[:N_A], ("name", "body", "download_rank", "released"))
    csv.writer(data, lineterminator="\n").writerows(rows)
    # gzip on stdin too: undone first, then read as the CSV --input-format names.
    compressed = gzip.compress(data.getvalue().encode())
    r = cli("embed", "-q", "--input-format", "csv", "--text-field", "body", "--infer-types", input=compressed)
    _ok(r)
    got = _records(r.out)
    assert [g["name"] for g in got] == [d["id"] for d in corpus.docs[:N_A]]
    assert [g["download_rank"] for g in got] == [d["download_rank"] for d in corpus.docs[:N_A]]  # numbers now
    assert all(type(g["download_rank"]) is int and type(g["released"]) is str for g in got)  # "2026-11" stays text
    np.testing.assert_array_equal(_vectors(got), _vectors(vec_recs[:N_A]))


def test_csv_with_a_stray_quote_is_bad_input_naming_file_and_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text('id,text\n1,"a fine row"\n2,"a stray" quote\n3,never read\n')
    out = tmp_path / "out.jsonl"
    r = cli("embed", "-q", str(path), "-o", str(out))
    assert r.code == 3
    msg = _error_line(r)
    assert msg.startswith("bad CSV quoting (") and msg.endswith(f"), {path} line 3")
    assert not out.exists()


# --------------------------------------------------------------------------- 4. Parquet and Arrow


def test_embed_writes_an_arrow_file(vec_arrow, vec_recs):
    data = vec_arrow.read_bytes()
    assert data[:6] == b"ARROW1"
    table = pa.ipc.open_file(pa.py_buffer(data)).read_all()
    assert table.num_rows == N_DOCS
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), DIMS)
    assert "embedding_model" not in table.schema.names  # it is in the metadata, once
    meta = orjson.loads(table.schema.metadata[b"embcli"])
    assert meta["provenance"]["value"] == vec_recs[0]["embedding_model"]
    np.testing.assert_array_equal(
        np.stack(table.column("embedding").to_numpy(zero_copy_only=False)), _vectors(vec_recs)
    )


def test_arrow_stream_through_a_pipe_into_index(corpus, tmp_path):
    """``embcli embed --format arrow | embcli index``: a real pipe, so embed writes the Arrow stream format."""
    stream, idx = tmp_path / "stream.arrows", tmp_path / "piped.idx"
    embcli = f"{sys.executable} -m embcli"
    script = (
        f"set -o pipefail; {embcli} embed -q --format arrow {corpus.dir / 'docs.jsonl'} | tee {stream} "
        f"| {embcli} index -q -o {idx}"
    )
    env = {k: v for k, v in os.environ.items() if k != "EMBCLI_MODEL"}
    p = subprocess.run(["bash", "-c", script], capture_output=True, env={**env, "HF_HUB_OFFLINE": "1"}, timeout=300)
    assert p.returncode == 0, p.stderr.decode()
    assert stream.read_bytes()[:4] == b"\xff\xff\xff\xff"  # the stream format (no ARROW1 file magic)
    assert pa.ipc.open_stream(stream.read_bytes()).read_all().num_rows == N_DOCS
    m = _manifest(idx)
    assert m["count"] == N_DOCS and m["provenance"]["model"] == MODEL  # the provenance crossed the pipe


def test_search_queries_from_parquet_hit_the_table_keys(glob_index, vec_recs, tmp_path):
    """Queries from a pandas Parquet file, against the index of the three writers' shards keyed by ``name``."""
    _ok(glob_index.result)
    picks = [0, 13, 25]  # one document from each shard
    queries = tmp_path / "queries.parquet"
    pd.DataFrame({"qid": [1, 2, 3], "text": [vec_recs[i]["text"] for i in picks]}).to_parquet(queries)
    r = cli("search", "-q", str(glob_index.path), "--queries", str(queries), "-k", "2")
    _ok(r)
    got = _records(r.out)
    assert [g["qid"] for g in got] == [1, 2, 3]
    for g, i in zip(got, picks, strict=True):
        top = g["results"][0]
        assert top["id"] == top["name"] == vec_recs[i]["id"]  # the table's key is the hit's id
        assert top["score"] > 0.999 and len(g["results"]) == 2


def test_cluster_reads_the_three_writers_parquet_through_a_glob(shards, clustered, vec_recs, tmp_path):
    out = tmp_path / "clusters.jsonl.bz2"
    _ok(cli("cluster", "-q", str(shards / "*.parquet"), "-k", "3", "-o", str(out)))
    data = out.read_bytes()
    assert data[:3] == b"BZh"
    got = _records(bz2.decompress(data))
    assert [g["name"] for g in got] == [v["id"] for v in vec_recs]
    # The same vectors give the same clusters as embcli's own Parquet gave.
    want = _records(clustered)
    assert [g["cluster"] for g in got] == [w["cluster"] for w in want]
    assert len({g["cluster"] for g in got}) == 3


def test_classify_zero_shot_on_pandas_parquet(shards):
    r = cli(
        "classify",
        "-q",
        str(shards / "1-pandas.parquet"),
        "--labels",
        "cloud computing,software testing,web design",
        "-m",
        MODEL,
    )
    _ok(r)
    got = _records(r.out)
    assert len(got) == 10
    assert list(got[0]) == ["name", "text", "download_rank", "embedding", "label", "score"]
    assert all(g["label"] in {"cloud computing", "software testing", "web design"} for g in got)
    by_name = {g["name"]: g["label"] for g in got}
    assert by_name["boto3"] == "cloud computing"  # "The AWS SDK for Python": the vectors were read as written


def test_detect_anomalies_on_polars_parquet_to_an_upper_case_parquet_suffix(shards, vec_recs, tmp_path):
    out = tmp_path / "ANOMALIES.PARQUET"
    _ok(cli("detect-anomalies", "-q", str(shards / "3-polars.parquet"), "-k", "3", "-o", str(out)))
    assert out.read_bytes()[:4] == b"PAR1"  # the suffix is read case-insensitively
    table = pq.read_table(out)
    assert table.num_rows == 10
    assert table.column("name").to_pylist() == [v["id"] for v in vec_recs[20:]]
    assert {"anomaly_score", "is_anomaly"} <= set(table.schema.names)


def test_diff_reads_pandas_and_duckdb_parquet(shards):
    r = cli("diff", "-q", "--permutations", "19", str(shards / "1-pandas.parquet"), str(shards / "2-duckdb.parquet"))
    assert r.code in (0, 1), r.err
    report = orjson.loads(r.out)
    assert (report["n_a"], report["n_b"], report["dims"]) == (10, 10, DIMS)


def test_quantize_duckdb_parquet_to_parquet_codes(shards, vec_recs, tmp_path):
    out = tmp_path / "codes.parquet"
    _ok(cli("quantize", "-q", "--to", "ubinary", str(shards / "2-duckdb.parquet"), "-o", str(out)))
    table = pq.read_table(out)
    assert table.num_rows == 10
    assert table.schema.field("embedding").type == pa.list_(pa.uint8(), DIMS // 8)
    codes = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    np.testing.assert_array_equal(codes, np.packbits(_vectors(vec_recs[10:20]) > 0, axis=1))


def test_parquet_cut_in_half_is_bad_input_naming_the_file(vec_parquet, tmp_path):
    half = tmp_path / "half.parquet"
    data = vec_parquet.read_bytes()
    half.write_bytes(data[: len(data) // 2])
    r = cli("index", str(half), "-o", str(tmp_path / "x.idx"))
    assert r.code == 3
    msg = _error_line(r)
    assert msg.startswith("corrupt Parquet (") and msg.endswith(f"), {half}")
    assert not (tmp_path / "x.idx").exists()


# --------------------------------------------------------------------------- 5. round trips


def test_jsonl_to_parquet_to_jsonl_keeps_every_field(vec, clustered):
    """embed -o x.parquet, then cluster x.parquet -o y.jsonl: each line is embed's JSONL line, byte for byte, plus
    the cluster fields (floats, field order and the embedding_model provenance included)."""
    got = _records(clustered)
    assert len(got) == N_DOCS
    for line, rec in zip(vec.splitlines(), got, strict=True):
        assert list(rec)[-2:] == ["cluster", "cluster_similarity"]
        rest = {k: v for k, v in rec.items() if k not in ("cluster", "cluster_similarity")}
        assert orjson.dumps(rest) == line


def test_duckdb_reads_embcli_parquet_and_its_provenance(vec_parquet, vec_recs):
    rows = duckdb.sql(f"SELECT count(*), min(len(embedding)), max(len(embedding)) FROM '{vec_parquet}'").fetchall()
    assert rows == [(N_DOCS, DIMS, DIMS)]
    schema = pq.read_schema(vec_parquet)
    assert schema.field("embedding").type == pa.list_(pa.float32(), DIMS)
    meta = orjson.loads(schema.metadata[b"embcli"])
    assert meta["provenance"] == {
        "field": "embedding_model",
        "value": vec_recs[0]["embedding_model"],
        "position": list(vec_recs[0]).index("embedding_model"),
    }
    assert meta["provenance"]["value"]["model"] == MODEL


# --------------------------------------------------------------------------- 6. output format rules


def test_an_unknown_o_suffix_is_a_usage_error_and_creates_nothing(corpus, tmp_path):
    out = tmp_path / "out.txt"
    r = cli("embed", "-q", str(corpus.dir / "a.jsonl"), "-o", str(out))
    assert r.code == 2
    lines = r.err.splitlines()
    assert lines[0] == f"embcli: error: cannot tell the output format from the suffix '.txt' of {out}"
    assert lines[1:] == [
        "hint: name it with --format (jsonl|npy|parquet|arrow|csv|tsv), or use a suffix such as .jsonl"
    ]
    assert r.out == b"" and list(tmp_path.iterdir()) == []


def test_text_lines_from_several_files_to_gzip_npy(corpus, vec_recs, tmp_path):
    """--input-format text over two files, --format npy -o v.npy.gz: one standard array, gzip-compressed."""
    t1, t2 = tmp_path / "t1.txt", tmp_path / "t2.txt"
    t1.write_text("".join(d["text"] + "\n" for d in corpus.docs[:N_A]))
    t2.write_text("".join(d["text"] + "\n" for d in corpus.docs[N_A:]))
    out = tmp_path / "v.npy.gz"
    _ok(cli("embed", "-q", "--input-format", "text", str(t1), str(t2), "--format", "npy", "-o", str(out)))
    assert out.read_bytes()[:2] == GZIP
    with gzip.open(out) as f:
        arr = np.load(f)
    assert arr.dtype == np.float32 and arr.shape == (N_DOCS, DIMS)
    np.testing.assert_array_equal(arr, _vectors(vec_recs))


# --------------------------------------------------------------------------- 7. hints name only real options


def _options(command: str) -> set[str]:
    import typer

    from embcli.cli import app

    cmd = typer.main.get_command(app).commands[command]
    return {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts) if opt.startswith("--")}


@pytest.mark.parametrize("command", ["index", "search"])
def test_csv_on_stdin_the_hint_names_only_options_the_command_has(glob_index, command, tmp_path):
    """index reads records (it has --input-format); search reads queries (it has no --input-format)."""
    args = ("-o", str(tmp_path / "x.idx")) if command == "index" else (str(glob_index.path),)
    r = cli(command, *args, input="id,text,embedding\n1,hello,[0.5]\n")
    assert r.code == 3
    lines = r.err.splitlines()
    assert len(lines) == 2, r.err
    assert lines[0].startswith("embcli: error: invalid JSON (") and lines[0].endswith("<stdin> line 1")
    assert lines[1].startswith("hint: ")
    named = set(re.findall(r"--[a-z][a-z-]*", r.err))
    options = _options(command)
    assert ("--input-format" in options) == (command == "index")
    assert named <= options, named - options
    assert list(tmp_path.iterdir()) == []
