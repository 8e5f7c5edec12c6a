"""Outputs never destroy what is at the path; every write is checked; records are whole (DESIGN §5).

Real CLI runs onto real character devices (made with mknod), FIFOs, symlinks, a
full device, a file-size limit (real short writes) and a real Ctrl-C.
"""

from __future__ import annotations

import fcntl
import os
import resource
import signal
import stat
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
from conftest import cli

from embcli.errors import EmbcliError, UsageError
from embcli.io.files import atomic_file
from embcli.io.streams import Source, iter_npy

TEXTS = b"".join(orjson.dumps({"id": i, "text": f"record {i} on trust and outputs"}) + b"\n" for i in range(5))
NO_SPACE = "embcli: error: no space left on device, writing {}\n"


def _env(unbuffered: bool = False) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("EMBCLI_MODEL", "PYTHONUNBUFFERED")}
    env["HF_HUB_OFFLINE"] = "1"
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    return env


def _run(args: list[str], stdout, input: bytes = b"", unbuffered: bool = False, fsize: int | None = None):
    """``embcli ARGS`` with stdout on a file we opened; ``fsize`` caps file sizes (real short writes)."""

    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    p = subprocess.run(
        [sys.executable, "-m", "embcli", *args],
        input=input,
        stdout=stdout,
        stderr=subprocess.PIPE,
        env=_env(unbuffered),
        preexec_fn=limit,
        timeout=300,
    )
    return p.returncode, p.stderr.decode("utf-8", "replace")


def _device(path: Path, minor: int) -> Path:
    """A character device of our own: minor 3 is a null device, 7 a full one (ENOSPC)."""
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    return path


def _vectors(path: Path, n: int = 200, dims: int = 16, labelled: bool = False) -> Path:
    """Embedded-style records with random vectors: for the commands that need no model."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, dims)).astype(np.float32)
    with open(path, "wb") as f:
        for i, row in enumerate(x):
            rec = {"id": i, "text": f"item {i}", "embedding": row.tolist()}
            if labelled:
                rec["gold"] = f"l{i % 3}"
            f.write(orjson.dumps(rec) + b"\n")
    return path


def _no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


# `quantize` stands in for every record command where the model adds nothing: its output
# goes through the same output_stream as embed's, and it starts in a second, not three.
QUANTIZE = ["quantize", "-q", "--to", "int8"]


@pytest.fixture(scope="module")
def vectors(tmp_path_factory) -> Path:
    return _vectors(tmp_path_factory.mktemp("vectors") / "vec.jsonl")


@pytest.fixture(scope="module")
def reference(vectors) -> bytes:
    """What quantize writes on stdout: every other destination must get these same bytes."""
    r = cli(*QUANTIZE, str(vectors))
    assert r.code == 0, r.err
    return r.out


# --------------------------------------------------------------------------- 1. never destroy the path


def test_output_onto_a_character_device_writes_in_place(tmp_path):
    null = _device(tmp_path / "null", 3)
    r = cli("embed", "-q", "-o", str(null), input=TEXTS)
    assert (r.code, r.err) == (0, "")
    assert stat.S_ISCHR(os.lstat(null).st_mode) and os.lstat(null).st_rdev == os.makedev(1, 3)
    assert _no_temp_files(tmp_path)


def _fifo_reader(fifo: Path) -> tuple[threading.Thread, list[bytes]]:
    got: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as f:
            got.append(f.read())

    t = threading.Thread(target=read, daemon=True)
    t.start()
    return t, got


def _release(fifo: Path, reader: threading.Thread) -> None:
    """A reader still waiting for a writer (the run failed first) is let go."""
    reader.join(timeout=60)
    if reader.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=10)


def test_output_onto_a_fifo_reaches_its_reader(tmp_path, vectors, reference):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    reader, got = _fifo_reader(fifo)
    r = cli(*QUANTIZE, str(vectors), "-o", str(fifo))
    _release(fifo, reader)
    assert (r.code, r.err) == (0, "")
    assert got == [reference]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and _no_temp_files(tmp_path)


@pytest.mark.parametrize("dangling", [False, True], ids=["symlink", "dangling-symlink"])
def test_output_onto_a_symlink_replaces_its_target(tmp_path, vectors, reference, dangling):
    (tmp_path / "data").mkdir()
    target = tmp_path / "data" / "vectors.jsonl"
    if not dangling:
        target.write_bytes(b"old content\n")
        target.chmod(0o640)
    link = tmp_path / "latest.jsonl"
    link.symlink_to(target)
    r = cli(*QUANTIZE, str(vectors), "-o", str(link))
    assert (r.code, r.err) == (0, "")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == reference
    if not dangling:  # the replaced file's permissions stay
        assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert _no_temp_files(tmp_path) and _no_temp_files(tmp_path / "data")


def test_output_onto_a_link_to_a_pipe_writes_into_the_pipe(tmp_path, vectors, reference):
    """Like -o /dev/stdout with stdout on a pipe: the link names no file that could be renamed."""
    link = tmp_path / "stdout"
    link.symlink_to("/proc/self/fd/1")
    r = cli(*QUANTIZE, str(vectors), "-o", str(link))
    assert (r.code, r.out, r.err) == (0, reference, "")
    assert os.readlink(link) == "/proc/self/fd/1" and _no_temp_files(tmp_path)


def test_every_written_file_goes_through_fifos_devices_and_symlinks(tmp_path, vectors):
    """--summary onto a FIFO, --eval-out onto a device, --save-ranges onto a symlink."""
    vec = _vectors(tmp_path / "vec.jsonl", labelled=True)
    fifo = tmp_path / "summary.fifo"
    os.mkfifo(fifo)
    null = _device(tmp_path / "null", 3)
    reader, got = _fifo_reader(fifo)
    r = cli("cluster", str(vec), "-q", "--k", "3", "--summary", str(fifo), "--eval", "gold", "--eval-out", str(null),
            "-o", str(tmp_path / "c.jsonl"))  # fmt: skip
    _release(fifo, reader)
    assert r.code == 0, r.err
    assert [orjson.loads(line)["cluster"] for line in got[0].splitlines()] == [0, 1, 2]
    assert stat.S_ISCHR(os.lstat(null).st_mode)

    ranges = tmp_path / "ranges.json"
    ranges.write_bytes(b"{}")
    link = tmp_path / "ranges-link.json"
    link.symlink_to(ranges)
    r = cli(*QUANTIZE, str(vectors), "--save-ranges", str(link), "-o", str(tmp_path / "q.jsonl"))
    assert r.code == 0, r.err
    assert link.is_symlink() and orjson.loads(ranges.read_bytes())["scheme"] == "int8"
    assert _no_temp_files(tmp_path)


def test_atomic_file_refuses_a_directory_and_keeps_the_old_file_on_failure(tmp_path):
    with pytest.raises(UsageError, match="directory"), atomic_file(tmp_path):
        pass
    old = tmp_path / "keep.json"
    old.write_bytes(b"previous")
    with pytest.raises(RuntimeError), atomic_file(old) as f:
        f.write(b"half of the new")
        raise RuntimeError("the writer failed")
    assert old.read_bytes() == b"previous" and _no_temp_files(tmp_path)


# --------------------------------------------------------------------------- 2. every write checked


# Each case: the arguments and the stdin they read (None: the random vectors file).
STDOUT_CASES = {
    "embed-jsonl": (["embed"], TEXTS),
    "embed-npy": (["embed", "--format", "npy"], TEXTS),
    "quantize": (["quantize", "--to", "int8"], None),
    "detect-anomalies": (["detect-anomalies"], None),
    "version": (["--version"], b""),  # text through sys.stdout (echo, help, tables), not a record stream
}


@pytest.mark.parametrize(
    ("case", "unbuffered"),
    [(case, u) for case in ("embed-jsonl", "embed-npy") for u in (False, True)]
    + [("quantize", False), ("detect-anomalies", True), ("version", False), ("version", True)],
    ids=lambda v: {False: "buffered", True: "PYTHONUNBUFFERED"}.get(v, v) if isinstance(v, bool) else v,
)
def test_full_stdout_fails_with_one_line(tmp_path, case, unbuffered):
    args, stdin = STDOUT_CASES[case]
    if stdin is None:
        stdin = _vectors(tmp_path / "vec.jsonl").read_bytes()
    with open("/dev/full", "wb") as full:
        code, err = _run(args, full, stdin, unbuffered=unbuffered)
    # One line, and no summary that claims the records went out.
    assert code == 1 and err.endswith(NO_SPACE.format("stdout")) and err.count("error") == 1, err
    assert not any(word in err for word in ("embedded", "quantized", "scored")), err


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "PYTHONUNBUFFERED"])
def test_short_write_on_stdout_is_an_error_not_a_cut_output(tmp_path, unbuffered):
    """A file-size limit makes the write that crosses it short (then EFBIG), as a filling disk does."""
    out = tmp_path / "out.jsonl"
    texts = TEXTS * 6  # ~130 KB of records
    with open(out, "wb") as f:
        code, err = _run(["embed"], f, texts, unbuffered=unbuffered, fsize=16384)
    assert (code, err) == (1, "embcli: error: file too large, writing stdout\n")


def test_full_device_as_output_fails_naming_it(tmp_path):
    full = _device(tmp_path / "full", 7)
    r = cli("embed", "-o", str(full), input=TEXTS)
    assert (r.code, r.err) == (1, NO_SPACE.format(full))
    assert stat.S_ISCHR(os.lstat(full).st_mode)


def test_output_file_over_the_size_limit_fails_and_leaves_nothing(tmp_path):
    out = tmp_path / "out.npy"
    with open(os.devnull, "wb") as devnull:
        code, err = _run(["embed", "-o", str(out)], devnull, TEXTS * 6, fsize=4096)
    assert (code, err) == (1, f"embcli: error: file too large, writing {out}\n")
    assert list(tmp_path.iterdir()) == []


def test_fifo_reader_leaving_is_a_named_error(tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)

    def read_a_little() -> None:
        with open(fifo, "rb") as f:
            f.read(100)

    reader = threading.Thread(target=read_a_little, daemon=True)
    reader.start()
    r = cli("embed", "-q", "-o", str(fifo), input=TEXTS * 6)  # more than a pipe holds
    _release(fifo, reader)
    assert (r.code, r.err) == (1, f"embcli: error: broken pipe, writing {fifo}\n")


def test_cache_on_a_full_disk_is_named(tmp_path):
    cache = tmp_path / "cache.db"
    # 80 vectors (~120 KB) in a cache whose files may not pass 64 KB; the output is a device (no limit).
    texts = b"".join(orjson.dumps({"text": f"cached text number {i}"}) + b"\n" for i in range(80))
    null = _device(tmp_path / "null", 3)
    with open(os.devnull, "wb") as devnull:
        code, err = _run(["embed", "-q", "--cache", str(cache), "-o", str(null)], devnull, texts, fsize=65536)
    assert code == 1 and err.count("\n") == 1, err
    assert err.startswith("embcli: error: ") and f"writing embedding cache {cache}" in err
    assert "internal error" not in err


# --------------------------------------------------------------------------- files before records


def _pipe_to_head(args: list[str], stdin: Path) -> subprocess.CompletedProcess:
    cmd = " ".join(f"'{a}'" for a in args)
    return subprocess.run(
        f"'{sys.executable}' -m embcli {cmd} < '{stdin}' | head -1",
        shell=True,
        capture_output=True,
        env=_env(),
        timeout=300,
    )


def test_save_detector_and_head_survive_an_early_close(tmp_path):
    from embcli.analysis.anomaly import Detector
    from embcli.analysis.classify import Head

    vec = _vectors(tmp_path / "vec.jsonl", n=3000, labelled=True)  # ~600 KB out: far more than a pipe holds
    det = tmp_path / "det.npz"
    p = _pipe_to_head(["detect-anomalies", "-q", "--save-detector", str(det)], vec)
    assert p.stderr == b"" and orjson.loads(p.stdout)["id"] == 0
    assert Detector.load(str(det)).reference.shape == (3000, 16)

    head = tmp_path / "head.npz"
    train = ["--train", str(vec), "--label-field", "gold", "--head", "centroid"]
    p = _pipe_to_head(["classify", "-q", *train, "--save-head", str(head)], vec)
    assert p.stderr == b"" and orjson.loads(p.stdout)["id"] == 0
    assert Head.load(str(head)).labels == ["l0", "l1", "l2"]


# --------------------------------------------------------------------------- Ctrl-C: whole records


def _pipe_bytes(fd: int) -> int:
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


@pytest.mark.parametrize("case", ["embed-jsonl", "embed-npy", "detect-anomalies"])
def test_ctrl_c_leaves_only_whole_records(tmp_path, case):
    if case == "detect-anomalies":
        args, data = ["detect-anomalies"], _vectors(tmp_path / "vec.jsonl", n=3000).read_bytes()
    else:
        args, data = STDOUT_CASES[case][0], TEXTS * 40  # ~900 KB of records, ~300 KB of NPY
    src = tmp_path / "in.jsonl"
    src.write_bytes(data)
    with open(src, "rb") as stdin:
        p = subprocess.Popen(
            [sys.executable, "-m", "embcli", *args, "-q"],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
            # As from an interactive shell: SIGINT at its default, whatever the test runner has.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    # Nobody reads until the pipe is full: embcli is then blocked in the middle of a write.
    capacity = fcntl.fcntl(p.stdout.fileno(), getattr(fcntl, "F_GETPIPE_SZ", 1032))
    deadline = time.monotonic() + 120
    while _pipe_bytes(p.stdout.fileno()) < capacity - 4096 and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert p.poll() is None, p.stderr.read().decode()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err.decode()
    assert b"Traceback" not in err
    if case == "embed-npy":  # whole arrays back to back: a cut one is refused as truncated
        (tmp_path / "out.npy").write_bytes(out)
        with Source(str(tmp_path / "out.npy")) as got:
            rows = np.concatenate(list(iter_npy(got)))
        assert rows.shape[1] == 384 and len(out) > capacity
    else:
        assert out.endswith(b"\n") and len(out) > capacity
        for line in out.splitlines():
            orjson.loads(line)


def test_write_errors_are_embcli_errors_in_process(tmp_path):
    """The core's own API: a failed write is an EmbcliError naming the file (exit 1)."""
    full = _device(tmp_path / "full", 7)
    with pytest.raises(EmbcliError, match=f"^no space left on device, writing {full}$") as e, atomic_file(full) as f:
        f.write(b"x" * 100_000)
    assert e.value.exit_code == 1
