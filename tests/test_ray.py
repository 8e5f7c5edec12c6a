"""embcli on Ray: ``embed --engine ray`` (parts, manifest, resume, errors) and ``Embedder`` for Ray Data.

One local Ray cluster for the module (2 CPUs, no dashboard, a small object
store), shut down afterwards; the CLI runs in subprocesses that join it through
``RAY_ADDRESS``, as a cron job would join a real one. Every test has a hard
timeout (SIGALRM): a Ray job that hangs fails its test instead of the run.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from conftest import DATA, ROOT, cli, cli_inproc

ray = pytest.importorskip("ray")
ray_data = pytest.importorskip("ray.data")
pytest.importorskip("pyarrow")

TIMEOUT = 120  # seconds, per test (and for starting the cluster)


def _alarm(signum: int, frame: object) -> None:
    raise TimeoutError(f"test ran longer than {TIMEOUT}s")


@pytest.fixture(autouse=True)
def hard_timeout() -> Iterator[None]:
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIMEOUT)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray cluster for this module; its address, for the CLI's RAY_ADDRESS."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(TIMEOUT)
    try:
        ctx = ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=200 * 1024 * 1024,
            logging_level=logging.ERROR,
            log_to_driver=False,
            # Workers import this checkout's embcli, as the driver does.
            runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "EMBCLI_GRAPHS_DIR": os.environ["EMBCLI_GRAPHS_DIR"]}},
        )
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    try:
        ray_data.DataContext.get_current().enable_progress_bars = False
        yield ctx.address_info["address"]
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> tuple[Path, Path]:
    """Two real JSONL inputs: a.jsonl (60 lines: two parts of 30) and b.jsonl (20 lines: one part)."""
    d = tmp_path_factory.mktemp("inputs")
    lines = (DATA / "stdlib-docs.jsonl").read_bytes().splitlines(keepends=True)
    a, b = d / "a.jsonl", d / "b.jsonl"
    a.write_bytes(b"".join(lines[:60]))
    b.write_bytes(b"".join(lines[60:80]))
    return a, b


def ray_cli(address: str, *args: str):
    return cli(*args, env={"RAY_ADDRESS": address})


def test_parts_are_the_bytes_of_one_embed_and_a_rerun_does_nothing(cluster, inputs, tmp_path) -> None:
    a, b = inputs
    out = tmp_path / "vec"
    r = ray_cli(cluster, "embed", "--engine", "ray", str(a), str(b), "-o", str(out), "--part-rows", "30")
    assert r.code == 0, r.err
    assert r.out == b""
    assert "embedded 3 of 3 parts (80 texts" in r.err, r.err
    parts = sorted(out.glob("part-*.jsonl"))
    assert [p.name for p in parts] == ["part-00000.jsonl", "part-00001.jsonl", "part-00002.jsonl"]

    single = cli("embed", "-q", str(a), str(b))
    assert single.code == 0, single.err
    assert b"".join(p.read_bytes() for p in parts) == single.out  # byte-identical, concatenated in order

    manifest = orjson.loads((out / "_manifest.json").read_bytes())
    assert manifest["rows"] == 80
    assert [(p["input"], p["rows"]) for p in manifest["parts"]] == [(str(a), 30), (str(a), 30), (str(b), 20)]
    assert [p["first"] for p in manifest["parts"]] == [1, 31, 1]
    assert [i["path"] for i in manifest["inputs"]] == [str(a), str(b)]
    assert manifest["provenance"]["model"] == "all-MiniLM-L6-v2" and manifest["device"] == "cpu"
    assert len(manifest["graph_sha256"]) == 64
    import hashlib

    assert [p["sha256"] for p in manifest["parts"]] == [hashlib.sha256(p.read_bytes()).hexdigest() for p in parts]

    # The same job again: every part is found done (its record's key and its file's sha256), nothing runs.
    # Detected by the summary line ("embedded 0 of 3 parts") and by the part files, left untouched.
    stamps = [p.stat().st_mtime_ns for p in parts]
    again = ray_cli(cluster, "embed", "--engine", "ray", str(a), str(b), "-o", str(out), "--part-rows", "30")
    assert again.code == 0, again.err
    assert "embedded 0 of 3 parts: all 3 already done (80 records)" in again.err, again.err
    assert [p.stat().st_mtime_ns for p in parts] == stamps
    assert orjson.loads((out / "_manifest.json").read_bytes()) == manifest


def test_a_bad_record_fails_the_job_with_its_file_and_line_and_no_manifest(cluster, inputs, tmp_path) -> None:
    a, _ = inputs
    lines = a.read_bytes().splitlines(keepends=True)
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"".join([*lines[:44], b'{"text": 7}\n', *lines[44:]]))  # line 45: in the second part
    out = tmp_path / "vec"
    r = ray_cli(cluster, "embed", "--engine", "ray", str(bad), "-o", str(out), "--part-rows", "30")
    assert r.code == 3, r.err
    assert r.err.strip().splitlines()[-1] == f"embcli: error: field 'text' is a number, not a string, {bad} line 45"
    assert not (out / "_manifest.json").exists()
    single = cli("embed", str(bad))  # the message a single-process embed gives
    assert single.code == 3 and single.err.strip().splitlines()[-1] == r.err.strip().splitlines()[-1]


def test_graph_pinned_by_the_driver_is_checked_by_every_actor(cluster, inputs, tmp_path) -> None:
    from embcli.errors import IncompatibleError
    from embcli.integrations.ray import Embedder, embed_job

    a, _ = inputs
    with pytest.raises(IncompatibleError, match="but the job pinned 0000000000000000"):
        embed_job([str(a)], str(tmp_path / "vec"), graph_sha256="0" * 64, actors=1)
    assert not (tmp_path / "vec" / "_manifest.json").exists()
    with pytest.raises(IncompatibleError, match="runs graph sha256"):
        Embedder(graph_sha256="f" * 64, threads=1)


def test_embedder_in_ray_data_gives_the_vectors_of_encoder_embed(cluster) -> None:
    from embcli.api.encoding import Encoder
    from embcli.integrations.ray import Embedder, pinned_graph

    rows = [orjson.loads(line) for line in (DATA / "stdlib-docs.jsonl").read_bytes().splitlines()[:40]]
    items = [{"id": r["id"], "text": r["text"]} for r in rows]
    ds = ray_data.from_items(items).map_batches(
        Embedder,
        fn_constructor_kwargs={"graph_sha256": pinned_graph(), "threads": 1},
        batch_format="pyarrow",
        batch_size=16,
        compute=ray_data.ActorPoolStrategy(size=1),
        num_cpus=0.5,
    )
    got = {row["id"]: np.asarray(row["embedding"], dtype=np.float32) for row in ds.take_all()}
    want = Encoder(threads=1).embed([r["text"] for r in rows])
    assert sorted(got) == sorted(r["id"] for r in rows)
    assert np.array_equal(np.stack([got[r["id"]] for r in rows]), want)


def test_embed_arrow_adds_the_vector_column_and_provenance_as_embcli_writes_them(tmp_path) -> None:
    import pyarrow as pa

    from embcli.api import Encoder, embed_arrow, read_records
    from embcli.errors import InputError

    enc = Encoder(threads=1)
    batch = pa.RecordBatch.from_pylist([{"id": 1, "text": "first text"}, {"id": 2, "text": "second"}])
    out = embed_arrow(batch, enc)
    assert out.schema.names == ["id", "text", "embedding"]
    assert out.schema.field("embedding").type == pa.list_(pa.float32(), enc.dims)
    assert np.array_equal(np.stack(out.column(2).to_numpy(zero_copy_only=False)), enc.embed(["first text", "second"]))
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_batches([out]), tmp_path / "x.parquet")
    back = list(read_records(str(tmp_path / "x.parquet")))
    assert back[0]["embedding_model"] == enc.provenance  # embcli reads the provenance back from the metadata

    with pytest.raises(InputError, match="field 'text' is null, not a string, <batch> row 2"):
        embed_arrow(pa.RecordBatch.from_pylist([{"text": "a"}, {"text": None}]), enc)
    kept = embed_arrow(pa.RecordBatch.from_pylist([{"text": "a"}, {"text": ""}]), enc, skip_bad=True)
    assert kept.num_rows == 1
    with pytest.raises(InputError, match="already has a 'embedding' column"):
        embed_arrow(out, enc)


def test_usage_errors_need_no_cluster(tmp_path, inputs) -> None:
    a, _ = inputs
    r = cli("embed", "--engine", "ray", "-o", str(tmp_path / "vec"), input='{"text": "x"}\n')
    assert r.code == 2 and "not stdin" in r.err, r.err
    r = cli("embed", "--engine", "ray", str(a))
    assert r.code == 2 and "give -o DIR" in r.err, r.err
    r = cli("embed", "--actors", "2", str(a))
    assert r.code == 2 and "--engine ray" in r.err, r.err
    # Without Ray installed (a stand-in package that fails to import): exit 2, naming the extra.
    fake = tmp_path / "noray" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    r = cli(
        "embed", "--engine", "ray", str(a), "-o", str(tmp_path / "vec"), env={"PYTHONPATH": f"{fake.parent}:{ROOT}"}
    )
    assert r.code == 2, r.err
    assert "pip install 'embcli[ray]'" in r.err
    r = cli(
        "index", "--engine", "ray", str(a), "-o", str(tmp_path / "x.idx"), env={"PYTHONPATH": f"{fake.parent}:{ROOT}"}
    )
    assert r.code == 2 and "pip install 'embcli[ray]'" in r.err, r.err
    r = cli("index", "--engine", "ray", str(a), "-o", str(tmp_path / "x.idx"))
    assert r.code == 2 and "--engine ray builds a sharded index: give --shards N" in r.err, r.err
    assert not (tmp_path / "x.idx").exists()


# --------------------------------------------------------------------------- index --engine ray

QUERIES = ["http client library", "read and write YAML files", "testing framework", "date and time parsing"]


def _exact(idx: Path) -> list[list[tuple[object, float]]]:
    """`search --exact` over every query: ids and scores, in rank order."""
    args = [a for q in QUERIES for a in ("--query", q)]
    r = cli_inproc("search", "-q", str(idx), "--exact", "-k", "10", *args)
    assert r.code == 0, r.err
    return [[(h["id"], h["score"]) for h in rec["results"]] for rec in r.records()]


def _same_shards(a: Path, b: Path) -> None:
    """Two sharded indexes hold the same bytes: every shard's files (usearch graph, SQLite payloads, floats),
    and every manifest and shards.json but for their timestamps."""
    from embcli.search.index import read_manifest
    from embcli.search.shards import read_shards

    def strip(m: dict) -> dict:
        return {k: v for k, v in m.items() if k not in ("created", "updated")}

    assert strip(read_shards(a)) == strip(read_shards(b))
    for name in read_shards(a)["shards"]:
        ma, mb = read_manifest(a / name), read_manifest(b / name)
        assert strip(ma) == strip(mb), name  # the files' names, sizes and sha256 included
        files = sorted(f["name"] for f in ma["files"].values())
        assert files == sorted(p.name for p in (a / name).glob("*.*.*")) and len(files) >= 2
        assert all((a / name / f).read_bytes() == (b / name / f).read_bytes() for f in files), name


def _shard_ids(idx: Path) -> list[set]:
    from embcli.search.index import IndexReader
    from embcli.search.shards import read_shards

    out = []
    for name in read_shards(idx)["shards"]:
        reader = IndexReader(idx / name)
        try:
            out.append({orjson.loads(i) for (i,) in reader.db.execute("SELECT id FROM items")})
        finally:
            reader.close()
    return out


def test_index_on_ray_is_the_local_sharded_index(cluster, examples_vec, tmp_path) -> None:
    from embcli.search.shards import shard_of

    ray_idx, local, one = tmp_path / "ray.idx", tmp_path / "local.idx", tmp_path / "one.idx"
    r = ray_cli(cluster, "index", "--engine", "ray", str(examples_vec), "-o", str(ray_idx), "--shards", "4")
    assert r.code == 0, r.err
    assert "indexed 300 vectors (300 new, 0 replaced)" in r.err and "on Ray" in r.err, r.err
    for args in (("--shards", "4", "-o", str(local)), ("-o", str(one))):
        assert cli_inproc("index", "-q", "--reproducible", str(examples_vec), *args).code == 0
    _same_shards(ray_idx, local)
    hits = _exact(ray_idx)
    assert hits == _exact(local) == _exact(one) and all(len(h) == 10 for h in hits)
    # Every id in exactly one shard: the one it routes to.
    ids = [orjson.loads(line)["id"] for line in examples_vec.read_bytes().splitlines()]
    per_shard = _shard_ids(ray_idx)
    assert sum(map(len, per_shard)) == len(ids) == len(set().union(*per_shard))
    assert all(shard_of(i, 4) == s for s, held in enumerate(per_shard) for i in held)

    # --append on Ray: changed payloads land in their shards only, as a local append puts them.
    records = [orjson.loads(line) for line in examples_vec.read_bytes().splitlines()[10:13]]
    changed = tmp_path / "changed.jsonl"
    changed.write_bytes(b"".join(orjson.dumps(dict(rec, text=f"changed {rec['id']}")) + b"\n" for rec in records))
    r = ray_cli(cluster, "index", "--engine", "ray", "--append", str(changed), "-o", str(ray_idx))
    assert r.code == 0, r.err
    touched = len({shard_of(rec["id"], 4) for rec in records})
    assert "(0 new, 3 replaced)" in r.err and f"4 shards ({touched} written)" in r.err, r.err
    assert cli_inproc("index", "-q", "--reproducible", "--append", str(changed), "-o", str(local)).code == 0
    _same_shards(ray_idx, local)


def test_index_on_ray_with_a_bad_record_fails_with_its_file_and_line_and_no_shards_json(
    cluster, examples_vec, tmp_path
) -> None:
    lines = examples_vec.read_bytes().splitlines(keepends=True)
    rec = orjson.loads(lines[44])
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"".join([*lines[:44], orjson.dumps(dict(rec, id=[1])) + b"\n", *lines[45:]]))
    out = tmp_path / "docs.idx"
    r = ray_cli(cluster, "index", "--engine", "ray", str(bad), "-o", str(out), "--shards", "4")
    assert r.code == 3, r.err
    assert r.err.strip().splitlines()[-1] == f"embcli: error: id must be a string or an integer, {bad} line 45"
    assert not (out / "shards.json").exists() and not out.exists()  # a new index leaves nothing behind


def test_a_shard_task_that_fails_fails_the_build_and_leaves_no_shards_json(cluster, examples_vec, tmp_path) -> None:
    """A failure on the cluster (here: a shard's spool file gone) comes back typed; the new index is removed."""
    from embcli.errors import EmbcliError
    from embcli.integrations.ray import build_shards
    from embcli.search.index import IndexOptions
    from embcli.search.ingest import Row
    from embcli.search.shards import ShardedWriter

    records = [orjson.loads(line) for line in examples_vec.read_bytes().splitlines()[:40]]
    rows = [Row(r["id"], {"text": r["text"]}, np.asarray(r["embedding"], dtype=np.float32), None) for r in records]
    out = tmp_path / "docs.idx"
    with ShardedWriter(out, IndexOptions(), shards=4) as w:
        assert w.route(rows) == 40
        w.spool.file(2).unlink()
        with pytest.raises(EmbcliError, match=r"cannot read spool file: .*shard-00002\.pickle"):
            build_shards(w)
    assert not out.exists()
