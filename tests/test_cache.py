"""embed --cache: unchanged texts skip inference, everything else misses, concurrent and killed jobs are safe."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import orjson
from conftest import DATA, EXAMPLES, cli_inproc, make_model_dir

DOCS = (EXAMPLES / "packages.jsonl").read_bytes()


def _counts(err: str) -> tuple[int, int]:
    m = re.search(r"([\d,]+) from the cache, ([\d,]+) model batches", err)
    assert m, err
    return int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))


def test_second_run_does_no_inference_and_is_identical(tmp_path, examples_vec):
    cache = str(tmp_path / "c.db")
    first = cli_inproc("embed", "--cache", cache, input=DOCS)
    second = cli_inproc("embed", input=DOCS, env={"EMBCLI_CACHE": cache})  # $EMBCLI_CACHE is the default
    assert first.code == second.code == 0
    assert _counts(first.err) == (0, 10)
    assert _counts(second.err) == (300, 0)
    assert first.out == second.out == examples_vec.read_bytes()  # DOCS embedded without a cache
    r = cli_inproc("cache", "stats", cache)
    assert r.code == 0 and b"299 vectors" in r.out


def test_options_and_model_files_are_part_of_the_key(tmp_path):
    cache = str(tmp_path / "c.db")
    cli_inproc("embed", "-q", "--cache", cache, input=DOCS)
    for extra in (["--dims", "128"], ["--prompt", "query: "], ["--max-length", "64"], ["--pooling", "cls"]):
        r = cli_inproc("embed", "--cache", cache, *extra, input=DOCS)
        assert _counts(r.err)[0] == 0, extra
    # Same graph, other tokenizer file: another model as far as the cache knows.
    d = make_model_dir(tmp_path / "m")
    tok = orjson.loads((d / "tokenizer.json").read_bytes())
    tok["normalizer"]["strip_accents"] = True
    (d / "tokenizer.json").write_bytes(orjson.dumps(tok))
    assert _counts(cli_inproc("embed", "--cache", cache, "-m", str(d), input=DOCS).err)[0] == 0
    # The same files under another path are the same model: hits.
    same = make_model_dir(tmp_path / "same")
    assert _counts(cli_inproc("embed", "--cache", cache, "-m", str(same), input=DOCS).err) == (300, 0)


def test_metadata_changes_hit_and_come_from_the_input(tmp_path, examples_vec):
    cache = str(tmp_path / "c.db")
    cli_inproc("embed", "-q", "--cache", cache, input=DOCS)
    changed = b"".join(
        orjson.dumps({**orjson.loads(line), "released": "tomorrow", "new": i}) + b"\n"
        for i, line in enumerate(DOCS.splitlines())
    )
    r = cli_inproc("embed", "--cache", cache, input=changed)
    assert _counts(r.err) == (300, 0)
    recs = r.records()
    assert all(rec["released"] == "tomorrow" and rec["new"] == i for i, rec in enumerate(recs))
    uncached = [orjson.loads(line) for line in examples_vec.read_bytes().splitlines()]  # DOCS, no cache
    assert [rec["embedding"] for rec in recs] == [rec["embedding"] for rec in uncached]


def _rows(path: str) -> int:
    import sqlite3

    try:
        db = sqlite3.connect(path, timeout=10)
        try:
            return db.execute("SELECT count(*) FROM vectors").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:
        return 0  # not created yet


def test_killed_run_leaves_a_usable_cache(tmp_path, packages_vec):
    cache = str(tmp_path / "c.db")
    data = (DATA / "packages-2000.jsonl").read_bytes()
    p = subprocess.Popen(
        [sys.executable, "-m", "embcli", "embed", "--cache", cache],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    half = data.splitlines(keepends=True)[:1000]
    p.stdin.write(b"".join(half))  # then the input pauses: the chunk so far is embedded and committed
    p.stdin.flush()
    deadline = time.monotonic() + 300
    while _rows(cache) == 0 and time.monotonic() < deadline:  # kill once a chunk is committed
        time.sleep(0.2)
    p.send_signal(signal.SIGKILL)
    p.wait()
    p.stdin.close()
    r = cli_inproc("embed", "--cache", cache, input=data)
    assert r.code == 0, r.err
    hits, _ = _counts(r.err)
    assert 0 < hits < 2000  # resumed from what the killed job had committed
    assert r.out == packages_vec.read_bytes()


def test_two_jobs_share_one_cache(tmp_path, packages_vec):
    import threading

    cache = str(tmp_path / "c.db")
    lines = (DATA / "packages-2000.jsonl").read_bytes().splitlines(keepends=True)[:1600]
    expected = packages_vec.read_bytes().splitlines(keepends=True)  # the same texts embedded without a cache
    parts = [(0, 1000), (600, 1600)]  # overlapping: both jobs write the shared texts
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "embcli", "embed", "--cache", cache],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in parts
    ]
    outs: dict[int, tuple[bytes, bytes]] = {}

    def feed(i: int) -> None:
        lo, hi = parts[i]
        outs[i] = procs[i].communicate(b"".join(lines[lo:hi]), timeout=600)

    threads = [threading.Thread(target=feed, args=(i,)) for i in range(len(parts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.returncode for p in procs] == [0, 0], [outs[i][1].decode() for i in outs]
    for i, (lo, hi) in enumerate(parts):
        assert outs[i][0] == b"".join(expected[lo:hi])
    r = cli_inproc("embed", "--cache", cache, input=b"".join(lines))
    assert _counts(r.err) == (1600, 0)


def test_prune(tmp_path):
    cache = str(tmp_path / "c.db")
    cli_inproc("embed", "-q", "--cache", cache, input=DOCS)
    assert cli_inproc("cache", "prune", cache, "--older-than", "1d").err.startswith("embcli: pruned 0 vectors")
    time.sleep(2.1)  # "used" has one-second resolution
    assert "pruned 299 vectors" in cli_inproc("cache", "prune", cache, "--older-than", "1s").err
    assert _counts(cli_inproc("embed", "--cache", cache, input=DOCS).err)[0] == 0
    assert cli_inproc("cache", "prune", cache, "--older-than", "soon").code == 2


# Runs embed in a fresh interpreter, then says which native runtimes that process imported.
_LOADS = (
    "import sys\n"
    "from embcli.cli import run\n"
    "code = run(sys.argv[1:])\n"
    "print(sorted(m for m in ('onnxruntime', 'tokenizers') if m in sys.modules), file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def _embed_reporting_loads(tmp_path, cache: str, data: bytes) -> tuple[bytes, str]:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_bytes(data)
    out.unlink(missing_ok=True)
    p = subprocess.run(
        [sys.executable, "-c", _LOADS, "embed", "--cache", cache, "-o", str(out), str(src)],
        capture_output=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr.decode()
    return out.read_bytes(), p.stderr.decode()


def test_a_run_where_every_text_hits_loads_no_model(tmp_path, examples_vec):
    cache = str(tmp_path / "c.db")
    assert cli_inproc("embed", "-q", "--cache", cache, input=DOCS).code == 0  # the first run loads the model
    out, err = _embed_reporting_loads(tmp_path, cache, DOCS)
    assert _counts(err) == (300, 0)
    assert "[]" in err.splitlines()[-1]  # neither onnxruntime nor tokenizers was even imported
    assert "model not loaded" in err
    assert out == examples_vec.read_bytes()  # the bytes of a run without a cache: vectors and provenance


def test_one_miss_loads_the_model_and_gives_the_same_bytes(tmp_path):
    cache = str(tmp_path / "c.db")
    assert cli_inproc("embed", "-q", "--cache", cache, input=DOCS).code == 0
    lines = DOCS.splitlines(keepends=True)
    rec = orjson.loads(lines[150])
    lines[150] = orjson.dumps({**rec, "text": rec["text"] + " (updated)"}) + b"\n"
    changed = b"".join(lines)
    out, err = _embed_reporting_loads(tmp_path, cache, changed)
    assert _counts(err) == (299, 1)
    assert "['onnxruntime', 'tokenizers']" in err.splitlines()[-1]
    uncached = cli_inproc("embed", "-q", input=changed)
    assert uncached.code == 0 and out == uncached.out
    # The lazily loaded run stored its vector under the key an eager run looks up.
    assert _counts(cli_inproc("embed", "--cache", cache, input=changed).err) == (300, 0)


def test_no_truncate_with_the_cache_fails_on_the_first_long_text_hit_or_miss(tmp_path):
    cache = str(tmp_path / "c.db")
    long_text = " ".join(["word"] * 400)
    data = b"".join(orjson.dumps({"text": t}) + b"\n" for t in ("short one", long_text, "another"))
    for _ in range(2):  # first a miss (tokenized), then a hit (its truncation recorded in the cache)
        r = cli_inproc("embed", "--cache", cache, "--no-truncate", input=data)
        assert r.code == 3 and "longer than 256 tokens, <stdin> line 2" in r.err, r.err
        r = cli_inproc("embed", "-q", "--cache", cache, input=data)  # truncates: stores all three
        assert r.code == 0
    r = cli_inproc("embed", "--cache", cache, "--no-truncate", "--on-error", "skip", input=data)
    assert r.code == 0 and len(r.records()) == 2 and "skipped 1 bad record" in r.err
