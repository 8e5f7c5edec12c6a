"""Index files that cannot hurt: locks and manifests that are not what they seem, crafted
vectors files, failed writes, readers during appends, and models that moved (DESIGN §4, §5)."""

from __future__ import annotations

import hashlib
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest
from conftest import ROOT, cli, make_model_dir

from embcli.errors import IncompatibleError
from embcli.search.index import IndexOptions, IndexReader, IndexWriter
from embcli.search.usearch_file import check_usearch_file

DIMS = 16


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, DIMS)).astype(np.float32)


def _build(path: Path, n: int = 300, **options: object) -> Path:
    """A real index of random vectors (no model), built in-process; connectivity 4 gives upper levels."""
    w = IndexWriter(path, IndexOptions(connectivity=4, **options))
    w.add(list(range(n)), [{"n": i} for i in range(n)], _vectors(n))
    w.commit()
    return path


def _manifest(idx: Path) -> dict:
    return orjson.loads((idx / "manifest.json").read_bytes())


def _reseal(idx: Path, role: str = "vectors") -> None:
    """Record a changed file's size and sha256 in the manifest, as a forger would."""
    m = _manifest(idx)
    p = idx / m["files"][role]["name"]
    m["files"][role].update(bytes=p.stat().st_size, sha256=hashlib.sha256(p.read_bytes()).hexdigest())
    (idx / "manifest.json").write_bytes(orjson.dumps(m))


def _run(*args: str, stdin: bytes = b"", timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real CLI with a short timeout: a blocking read must fail the test, not hang it."""
    env = {k: v for k, v in os.environ.items() if k != "EMBCLI_MODEL"} | {"HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "embcli", *args],
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env=env,
        cwd=cwd or ROOT,
    )


def _npy(a: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


QUERY = _npy(_vectors(2, seed=1))


# ---------------------------------------------------------------- the usearch layout, parsed here on its own


class Layout:
    """Byte offsets in a dense usearch file (2.x), worked out independently of embcli's checker."""

    def __init__(self, b: bytes) -> None:
        rows, cols = np.frombuffer(b, "<u4", 2)
        self.head = 8 + int(rows) * int(cols)
        self.graph = self.head + 64
        n, conn, conn_base, self.max_level, self.entry = (int(x) for x in np.frombuffer(b, "<u8", 5, self.graph))
        self.n, self.level_table = n, self.graph + 40
        self.levels = np.frombuffer(b, "<i2", n, self.level_table).astype(np.int64)
        self.base, self.per_level = 4 + 4 * conn_base, 4 + 4 * conn
        sizes = 10 + self.base + self.levels * self.per_level
        self.nodes = self.level_table + 2 * n + np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.conn_base = conn_base

    def list_at(self, node: int, level: int) -> int:
        """Offset of a node's neighbour count at ``level`` (u32, then the slots)."""
        return int(self.nodes[node]) + 10 + (0 if level == 0 else self.base + (level - 1) * self.per_level)


def _craft(b: bytearray, kind: str) -> bytearray:
    lay = Layout(bytes(b))
    top = int(np.flatnonzero(lay.levels >= 1)[0])  # a node with an upper level
    low = int(np.flatnonzero(lay.levels == 0)[0])
    if kind == "slot-out-of-range":
        at = lay.list_at(0, 0)
        assert int.from_bytes(b[at : at + 4], "little") > 0
        b[at + 4 : at + 8] = (10**9).to_bytes(4, "little")
    elif kind == "count-over-capacity":
        at = lay.list_at(0, 0)
        b[at : at + 4] = (lay.conn_base + 50).to_bytes(4, "little")
    elif kind == "huge-level":
        b[lay.level_table : lay.level_table + 2] = (30000).to_bytes(2, "little")
    elif kind == "node-level-lies":  # the table is right, the node's own level field is not
        at = int(lay.nodes[low]) + 8
        b[at : at + 2] = (5).to_bytes(2, "little")
    elif kind == "neighbour-below-level":  # an upper-level edge to a node that has no such level
        at = lay.list_at(top, 1)
        b[at : at + 4] = (1).to_bytes(4, "little")
        b[at + 4 : at + 8] = low.to_bytes(4, "little")
    elif kind == "entry-out-of-range":
        at = lay.graph + 32
        b[at : at + 8] = (lay.n + 7).to_bytes(8, "little")
    elif kind == "node-count-mismatch":
        b[lay.graph : lay.graph + 8] = (lay.n - 1).to_bytes(8, "little")
    elif kind == "truncated":
        del b[len(b) - 100 :]
    else:
        raise AssertionError(kind)
    return b


CRAFTS = [
    "slot-out-of-range",
    "count-over-capacity",
    "huge-level",
    "node-level-lies",
    "neighbour-below-level",
    "entry-out-of-range",
    "node-count-mismatch",
    "truncated",
]


@pytest.fixture(scope="module")
def base_index(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("base") / "base.idx")


def _crafted(base: Path, dst: Path, kind: str) -> Path:
    shutil.copytree(base, dst)
    vec = dst / _manifest(dst)["files"]["vectors"]["name"]
    vec.write_bytes(_craft(bytearray(vec.read_bytes()), kind))
    _reseal(dst)  # checksums match: only the structural check can tell
    return dst


# ---------------------------------------------------------------- locks and manifests


def test_symlinked_lock_is_not_followed(base_index, tmp_path):
    idx = tmp_path / "i.idx"
    shutil.copytree(base_index, idx)
    target = tmp_path / "precious.txt"
    target.write_bytes(b"keep me\n")
    (idx / ".lock").unlink()
    (idx / ".lock").symlink_to(target)
    with pytest.raises(IncompatibleError, match="lock file is a symlink"):
        IndexWriter(idx, IndexOptions(), append=True)
    r = cli("index", "--append", "-o", str(idx), input=_npy(_vectors(3)))
    assert r.code == 4 and "symlink" in r.err and "Traceback" not in r.err
    assert target.read_bytes() == b"keep me\n"
    assert (idx / ".lock").is_symlink()
    assert IndexReader(idx).count == 300  # readers need no lock


@pytest.mark.parametrize("kind", ["fifo", "zero-device", "symlink-to-zero-device"])
def test_manifest_that_is_not_a_regular_file_is_refused_at_once(base_index, tmp_path, kind):
    idx = tmp_path / "i.idx"
    shutil.copytree(base_index, idx)
    manifest = idx / "manifest.json"
    manifest.unlink()
    if kind == "fifo":
        os.mkfifo(manifest)
    else:
        zero = manifest if kind == "zero-device" else tmp_path / "zero"
        os.mknod(zero, stat.S_IFCHR | 0o666, os.makedev(1, 5))  # /dev/zero: endless bytes
        if kind != "zero-device":
            manifest.symlink_to(zero)
    for args in (("search", str(idx)), ("index", "--append", "-o", str(idx))):
        r = _run(*args, stdin=QUERY, timeout=60)
        err = r.stderr.decode()
        assert r.returncode == 4, (args, r.returncode, err)
        assert "not a regular file" in err and "manifest.json" in err and "Traceback" not in err


# ---------------------------------------------------------------- crafted vectors files


@pytest.mark.parametrize("kind", CRAFTS)
def test_crafted_vectors_file_is_refused_in_process(base_index, tmp_path, kind):
    idx = _crafted(base_index, tmp_path / "c.idx", kind)
    with pytest.raises(IncompatibleError, match="corrupt"):
        IndexReader(idx)


def test_crafted_vectors_files_are_refused_by_the_cli_without_a_crash(base_index, tmp_path):
    for kind in ("slot-out-of-range", "neighbour-below-level", "huge-level", "truncated"):
        idx = _crafted(base_index, tmp_path / f"{kind}.idx", kind)
        r = _run("search", str(idx), "-k", "5", stdin=QUERY)
        err = r.stderr.decode()
        assert r.returncode == 4, (kind, r.returncode, err)  # a segfault would be -11
        assert "corrupt" in err and str(idx) in err and "Traceback" not in err and r.stdout == b""


def test_checker_passes_real_files_of_every_dtype(tmp_path):
    for dtype in ("f32", "f16", "i8", "b1"):
        idx = _build(tmp_path / f"{dtype}.idx", n=200, dtype=dtype)
        w = IndexWriter(idx, IndexOptions(), append=True)  # upserts and new keys: removed slots, reused slots
        w.add(list(range(150, 260)), [{}] * 110, _vectors(110, seed=2))
        w.delete([0, 1, 2])
        m = w.commit()
        buf = np.fromfile(idx / m["files"]["vectors"]["name"], dtype=np.uint8)
        check_usearch_file(buf, m, idx)
        r = IndexReader(idx)
        assert r.count == 257 and len(r.search(_vectors(1, seed=2), 3)[0]) == 3


def test_append_onto_a_crafted_graph_is_refused_and_publishes_nothing(base_index, tmp_path):
    idx = _crafted(base_index, tmp_path / "c.idx", "slot-out-of-range")
    before = {p.name: p.read_bytes() for p in idx.iterdir()}
    r = _run("index", "--append", "-o", str(idx), stdin=_npy(_vectors(5, seed=3)))
    assert r.returncode == 4 and b"corrupt" in r.stderr, r.stderr
    assert {p.name: p.read_bytes() for p in idx.iterdir()} == before


# ---------------------------------------------------------------- failed writes


def test_failed_append_on_bad_input_leaves_no_stray_files(base_index, tmp_path):
    idx = tmp_path / "i.idx"
    shutil.copytree(base_index, idx)
    before = sorted(p.name for p in idx.iterdir())
    good = b"".join(orjson.dumps({"id": f"g{i}", "embedding": v.tolist()}) + b"\n" for i, v in enumerate(_vectors(5)))
    r = cli("index", "--append", "-o", str(idx), input=good + b'{"id": "bad", "embedding": [1, "x"]}\n')
    assert r.code in (3, 4) and "line 6" in r.err, r.err
    assert sorted(p.name for p in idx.iterdir()) == before
    assert IndexReader(idx).count == 300


def _limit_file_size(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit, write() fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


# 65,000: above the new metadata file (53 kB with its full-text tables, empty: these records have no
# text), below the new vectors file (83 kB); 12,000: below either.
@pytest.mark.parametrize(("limit", "failing"), [(65_000, "vectors.2.usearch"), (12_000, "meta.2.sqlite")])
def test_write_failure_is_named_and_leaves_the_old_index(base_index, tmp_path, limit, failing):
    idx = tmp_path / "i.idx"
    shutil.copytree(base_index, idx)
    before = {p.name: p.read_bytes() for p in idx.iterdir()}
    assert os.path.getsize(idx / "meta.1.sqlite") > limit or failing != "meta.2.sqlite"
    p = subprocess.run(
        [sys.executable, "-m", "embcli", "index", "--append", "-o", str(idx)],
        input=_npy(_vectors(400, seed=4)),
        capture_output=True,
        timeout=120,
        cwd=ROOT,
        preexec_fn=_limit_file_size(limit),
    )
    err = p.stderr.decode()
    assert p.returncode == 1, err
    assert "cannot write index file" in err and str(idx / failing) in err, err
    assert "EFBIG" in err or "SQLITE_" in err, err
    assert "internal error" not in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in idx.iterdir()} == before


# ---------------------------------------------------------------- readers during appends


def test_readers_during_repeated_appends_never_fail(tmp_path):
    idx = _build(tmp_path / "i.idx", n=200)
    commits = 25
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, numpy as np\n"
            "from embcli.search.index import IndexOptions, IndexWriter\n"
            f"for i in range({commits}):\n"
            "    w = IndexWriter(sys.argv[1], IndexOptions(), append=True)\n"
            f"    w.add([1000 + i], [{{}}], np.ones((1, {DIMS}), dtype=np.float32))\n"
            "    w.commit()\n",
            str(idx),
        ],
        cwd=ROOT,
    )
    seen, failures = set(), []
    query = _vectors(1, seed=5)
    try:
        while writer.poll() is None:
            try:
                r = IndexReader(idx)
                assert len(r.search(query, 3)[0]) == 3
                seen.add(r.manifest["generation"])
                r.close()
            except IncompatibleError as e:
                failures.append(e.message)
    finally:
        writer.wait(timeout=300)
    assert writer.returncode == 0
    assert not failures, failures[:3]
    assert len(seen) > 1  # the reads did overlap the commits
    # And through the CLI: searches while another loop of appends commits.
    np.save(tmp_path / "more.npy", _vectors(20, seed=6))
    appends = subprocess.Popen(
        [
            "bash",
            "-c",
            'for i in $(seq 5); do "$0" -m embcli index -q --append -o "$1" - < "$2" || exit 1; done',
            sys.executable,
            str(idx),
            str(tmp_path / "more.npy"),
        ],
        cwd=ROOT,
    )
    codes = []
    try:
        while appends.poll() is None and len(codes) < 20:
            codes.append(_run("search", "-q", str(idx), "-k", "2", stdin=QUERY).returncode)
    finally:
        appends.wait(timeout=300)
    assert appends.returncode == 0 and codes and set(codes) == {0}


# ---------------------------------------------------------------- models: stored absolute, missing, moved


def test_relative_model_dir_is_stored_absolute_and_can_move(tmp_path):
    make_model_dir(tmp_path / "m")
    vecs = cli("embed", "-q", "-m", "all-MiniLM-L6-v2", "--format", "npy", input='{"text": "rust web framework"}\n')
    (tmp_path / "v.npy").write_bytes(vecs.out)
    # Run from tmp_path (a relative --model), with this checkout's embcli on the path.
    r = cli("index", "-q", "-o", "i.idx", "--model", "./m", "v.npy", cwd=tmp_path, env={"PYTHONPATH": str(ROOT)})
    assert r.code == 0, r.err
    recorded = _manifest(tmp_path / "i.idx")["provenance"]["model"]
    assert recorded == str(tmp_path.resolve() / "m")
    query = '{"text": "rust web framework"}\n'
    r = cli("search", str(tmp_path / "i.idx"), "-k", "1", input=query)  # from another cwd
    assert r.code == 0 and r.records()[0]["results"][0]["score"] > 0.999, r.err
    (tmp_path / "m").rename(tmp_path / "moved")
    r = cli("search", str(tmp_path / "i.idx"), input=query)
    assert r.code == 4 and "model" in r.err and "missing" in r.err and "--model" in r.err, (r.code, r.err)
    r = cli("search", str(tmp_path / "i.idx"), "-k", "1", "--model", str(tmp_path / "moved"), input=query)
    assert r.code == 0 and r.records()[0]["results"][0]["score"] > 0.999, r.err


# ---------------------------------------------------------------- checksums: on write and by index verify


def test_verify_checks_what_opening_does_not(base_index, tmp_path):
    idx = tmp_path / "i.idx"
    shutil.copytree(base_index, idx)
    r = cli("index", "verify", str(idx))
    assert r.code == 0 and "sound" in r.err, r.err
    vec = idx / _manifest(idx)["files"]["vectors"]["name"]
    b = bytearray(vec.read_bytes())
    b[8 + 5] ^= 0xFF  # a byte of a vector: structure intact, checksum broken
    vec.write_bytes(b)
    assert _run("search", str(idx), stdin=QUERY).returncode == 0  # opening is cheap: no full hash
    r = cli("index", "verify", str(idx))
    assert r.code == 4 and "checksum" in r.err and str(vec) in r.err, r.err
    r = cli("index", "--append", "-o", str(idx), input=_npy(_vectors(3)))  # writes verify what they build on
    assert r.code == 4 and "checksum" in r.err, r.err
