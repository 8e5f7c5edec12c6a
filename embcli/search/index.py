"""The on-disk index (DESIGN §4): usearch vectors + SQLite payloads + a manifest.

An index is a directory:

    manifest.json          the commit record: options, provenance, counts, checksums
    vectors.<gen>.usearch  HNSW graph and vectors of generation <gen>
    meta.<gen>.sqlite      id <-> key map, each record's payload, and the full-text index of its
                           text (an FTS5 table, search/lexical.py; not with --no-fts)
    floats.<gen>.npy       float32 vectors by key, for rescoring (compact dtypes, or --keep-floats)

A write never touches a committed generation: it builds generation <gen+1>
beside it, fsyncs it, and commits by atomically replacing manifest.json. A
process killed at any moment leaves either the old or the new manifest, each
naming complete files. Files no manifest names are leftovers, removed by the
next writer. Opening checks sizes, headers and the graph's structure (numpy
over the mapped file) before usearch maps a byte; full sha256 checksums are
verified on write (an append re-reads the files it builds on) and by
``verify_index`` (`embcli index verify`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
import shutil
import sqlite3
import stat
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import orjson

from embcli.choices import DTYPES, EXACT_SEARCH_LIMIT, FTS_TOKENIZERS, METRICS
from embcli.env import current
from embcli.errors import EmbcliError, IncompatibleError, InputError, UsageError
from embcli.io.files import atomic_file, fsync_dir, sha256_file
from embcli.io.streams import NpyWriter
from embcli.runtime.native import usearch_index
from embcli.search import lexical
from embcli.search.filters import compile_where
from embcli.search.usearch_file import USEARCH_METRIC, check_usearch_file, unreachable_keys
from embcli.version import __version__

FORMAT = "embcli-index"
VERSION = 1
MANIFEST = "manifest.json"
MANIFEST_MAX = 1 << 20  # a manifest is a few KB; anything far bigger is not one
SHARDS = "shards.json"  # what makes a directory of indexes one sharded index (search/shards.py)
# b1: one sign bit per dimension, searched by Hamming distance (pair it with --rescore).
COMPACT = ("i8", "b1")  # dtypes that keep float vectors beside them for rescoring, by default
# What a compact index gives back for a stored vector when it keeps no float copy (search --like).
STORED_AS = {"f16": "its f16 vectors, rounded", "i8": "its i8 codes, dequantized", "b1": "its sign bits, as ±1"}
# Filters matching at most this many records are searched exactly (brute force over them):
# cheap at this size, and exact. Above it, the HNSW graph with oversampling.
FULL_SCAN_THRESHOLD = EXACT_SEARCH_LIMIT
# Shards searched at once. usearch spreads each search over every core already (threads=0):
# more shard threads than cores only add contention.
SEARCH_THREADS = max(1, min(8, os.cpu_count() or 1))
# Rounds of re-inserting unreachable nodes after a build (see IndexWriter._repair): one almost
# always does; a node the pruning heuristic keeps dropping goes back in with its neighbours.
REPAIR_ROUNDS = 8
REPAIR_NEIGHBOURS = 8  # nearest nodes re-inserted after an unreachable one from the second round on


def build_threads(threads: int | None = None, reproducible: bool = False) -> int:
    """Threads for an HNSW build: ``threads``, else every core; one when ``reproducible``.

    One thread inserts in input order and builds the same graph every run. More
    threads insert concurrently: about N times faster on N cores, but the graph
    (and so which near-ties a search returns) depends on thread timing.
    """
    if reproducible:
        if threads not in (None, 1):
            raise UsageError("--reproducible builds with one thread: drop --threads (or give --threads 1)")
        return 1
    if threads is not None and threads < 1:
        raise UsageError("--threads must be positive")
    return threads or max(1, os.cpu_count() or 1)


_SCHEMA = """
CREATE TABLE items (key INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, payload TEXT NOT NULL);
"""


@dataclass
class IndexOptions:
    metric: str = "cos"
    dtype: str = "f32"
    connectivity: int = 16
    expansion_add: int = 128
    expansion_search: int = 128  # usearch uses 64; recall@10 on 100k real vectors: 0.956 at 64, 0.981 at 128
    keep_floats: bool | None = None  # None: yes for compact dtypes
    # A full-text index of the text field beside the payloads (search --hybrid, --lexical).
    # None: yes for a new index; an append keeps what the index has.
    fts: bool | None = None
    fts_tokenizer: str = "porter"

    def check(self) -> None:
        if self.fts_tokenizer not in FTS_TOKENIZERS:
            raise UsageError(
                f"unknown full-text tokenizer {self.fts_tokenizer!r}; choose from {', '.join(FTS_TOKENIZERS)}"
            )
        if self.metric not in METRICS:
            raise UsageError(f"unknown metric {self.metric!r}; choose from {', '.join(METRICS)}")
        if self.dtype not in DTYPES:
            raise UsageError(f"unknown dtype {self.dtype!r}; choose from {', '.join(DTYPES)}")
        for name in ("connectivity", "expansion_add", "expansion_search"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be positive")


def _id_key(value: object) -> str:
    """Ids keep their JSON type: 1 and "1" are different ids."""
    return orjson.dumps(value).decode()


def read_manifest(path: Path) -> dict:
    """The manifest of the index at ``path``, validated (exit 4 on anything odd)."""
    if not path.exists():
        raise IncompatibleError(f"no index at {path}")
    if not path.is_dir():
        raise IncompatibleError(f"not an embcli index (expected a directory with {MANIFEST}), {path}")
    try:
        fd = _open_regular(path / MANIFEST, "index manifest")
    except FileNotFoundError:
        if (path / SHARDS).exists():
            raise IncompatibleError(f"a sharded index, not one index (it has {SHARDS}), {path}") from None
        if any(p.name.startswith("shard-") and p.is_dir() for p in path.iterdir()):
            # Shards are published by writing shards.json last: without it, the build never finished.
            raise IncompatibleError(
                f"an unfinished sharded index: shard directories but no {SHARDS} (its build did not finish), {path}",
                hint="build it again with --force",
            ) from None
        raise IncompatibleError(f"not an embcli index (no {MANIFEST}), {path}") from None
    m = read_format_json(fd, path / MANIFEST, "index manifest", MANIFEST_MAX, (FORMAT, VERSION), "index", path)
    try:
        ok = (
            isinstance(m["dims"], int)
            and m["dims"] > 0
            and m["metric"] in METRICS
            and m["dtype"] in DTYPES
            and isinstance(m["count"], int)
            and isinstance(m["next_key"], int)
            and isinstance(m["files"], dict)
            and {"vectors", "meta"} <= set(m["files"])
            and lexical.check_fts_manifest(m.get("fts"))
            and all(
                isinstance(f["name"], str) and isinstance(f["bytes"], int) and isinstance(f["sha256"], str)
                for f in m["files"].values()
            )
        )
    except (KeyError, TypeError, AttributeError):
        ok = False
    if not ok:
        raise IncompatibleError(f"corrupt index manifest (missing or bad fields), {path / MANIFEST}")
    return m


def _open_regular(p: Path, what: str) -> int:
    """A read-only descriptor of ``p``, refused unless it is a regular file.

    Non-blocking, so a FIFO planted in the index opens at once and is refused
    instead of waiting for a writer; a device (a symlink to /dev/zero) is
    refused before a byte of it is read. FileNotFoundError passes through.
    """
    fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IncompatibleError(f"{what} is not a regular file, {p}")
    return fd


def read_format_json(
    fd: int, p: Path, what: str, limit: int, format_version: tuple[str, int], kind: str, where: Path
) -> dict:
    """The JSON object in ``fd`` (a file of embcli's own: a manifest, shards.json), checked.

    At most ``limit`` bytes are read; it must be an object of embcli's ``format`` at
    the ``version`` this embcli reads. Anything else is one IncompatibleError.
    """
    fmt, version = format_version
    with open(fd, "rb") as f:
        raw = f.read(limit + 1)
    if len(raw) > limit:
        raise IncompatibleError(f"corrupt {what} (over {limit:,} bytes), {p}")
    try:
        m = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise IncompatibleError(f"corrupt {what} (not JSON), {p}") from None
    if not isinstance(m, dict) or m.get("format") != fmt:
        raise IncompatibleError(f"not an embcli {what}, {p}")
    if m.get("version") != version:
        raise IncompatibleError(
            f"{kind} format version {m.get('version')} is not supported (this embcli reads {version}), {where}"
        )
    return m


def _open_index_file(p: Path) -> int:
    try:
        return _open_regular(p, "index file")
    except FileNotFoundError:
        raise IncompatibleError(f"index file is missing, {p}") from None


def _file_path(path: Path, m: dict, role: str) -> Path:
    name = m["files"][role]["name"]
    if not isinstance(name, str) or os.path.basename(name) != name or name in ("", ".", ".."):
        raise IncompatibleError(f"corrupt index manifest (bad file name), {path / MANIFEST}")
    return path / name


def _map_file(path: Path, m: dict, role: str) -> mmap.mmap | None:
    """The file of ``role`` mapped read-only, after checking it is a regular file of the recorded size.

    The mapping keeps the bytes readable even after a writer unlinks the file,
    and it is the very bytes that get checked and then handed to usearch.
    None for an empty file (mmap cannot map 0 bytes; no index file is empty).
    """
    p = _file_path(path, m, role)
    fd = _open_index_file(p)
    try:
        size = os.fstat(fd).st_size
        want = m["files"][role]["bytes"]
        if size != want:
            raise IncompatibleError(f"index file is truncated or changed ({size} bytes, expected {want}), {p}")
        return mmap.mmap(fd, size, access=mmap.ACCESS_READ) if size else None
    finally:
        os.close(fd)


def verify_checksums(path: Path, m: dict) -> None:
    """Full sha256 of every file the manifest names (on write and by `index verify`, not on open)."""
    for role, f in m["files"].items():
        p = _file_path(path, m, role)
        os.close(_open_index_file(p))
        if sha256_file(p) != f["sha256"]:
            raise IncompatibleError(f"index file fails its checksum (corrupt), {p}")


def _restore(vectors: mmap.mmap, p: Path, view: bool) -> object:
    """usearch over checked bytes; anything it still refuses is a corrupt index, not an internal error."""
    try:
        index = usearch_index().restore(vectors, view=view)
    except (RuntimeError, ValueError) as e:
        raise IncompatibleError(f"index vectors file is corrupt (usearch: {e}), {p}") from None
    if index is None:
        raise IncompatibleError(f"index vectors file is corrupt (not a usearch file), {p}")
    return index


OPEN_RETRIES = 20  # generations a reader may see replaced under it before it gives up
SQLITE_MAGIC = b"SQLite format 3\x00"


def _open_meta(p: Path, m: dict) -> sqlite3.Connection:
    """The payload database, read-only; its header checked before SQLite parses it."""
    fd = _open_index_file(p)
    try:
        size, magic = os.fstat(fd).st_size, os.pread(fd, 16, 0)
    finally:
        os.close(fd)
    if size != m["files"]["meta"]["bytes"]:
        raise IncompatibleError(f"index file is truncated or changed ({size} bytes), {p}")
    if magic != SQLITE_MAGIC:
        raise IncompatibleError(f"index metadata is not an SQLite file, {p}")
    db = sqlite3.connect(p.resolve().as_uri() + "?mode=ro&immutable=1", uri=True, check_same_thread=False)
    try:
        db.execute("SELECT key, id, payload FROM items LIMIT 0").fetchall()  # opens the file now, checks the table
        if m.get("fts") is not None:
            lexical.check_table(db)
    except sqlite3.Error:
        db.close()
        raise
    return db


def _open_floats(path: Path, m: dict) -> np.ndarray:
    """The kept float32 vectors (row i = key i), header and size checked, memory-mapped."""
    p = _file_path(path, m, "floats")
    fd = _open_index_file(p)
    with open(fd, "rb") as f:
        try:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else None
            read_header = read_header or np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
        except (ValueError, OSError) as e:
            raise IncompatibleError(f"index float vectors are not an NPY array ({e}), {p}") from None
        offset, size = f.tell(), os.fstat(fd).st_size
        want = (m["next_key"], m["dims"])
        if tuple(shape) != want or fortran or dtype != np.dtype("<f4") or offset + 4 * want[0] * want[1] != size:
            raise IncompatibleError(f"index float vectors are {shape} {dtype}, expected {want} float32, {p}")
        return np.memmap(f, dtype="<f4", mode="r", offset=offset, shape=want)


class IndexReader:
    """A committed index, checked and opened for search (vectors memory-mapped)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        # A writer may commit a new generation and unlink this one at any moment. Whatever
        # fails while it does is retried on the new manifest; mapped files stay readable
        # after their unlink. Readers take no lock: they never block a writer.
        for attempt in range(OPEN_RETRIES):
            self.manifest = read_manifest(self.path)
            try:
                self._open(self.manifest)
                break
            except (IncompatibleError, sqlite3.Error) as e:
                if attempt == OPEN_RETRIES - 1 or read_manifest(self.path) == self.manifest:
                    if isinstance(e, sqlite3.Error):
                        meta = self.path / self.manifest["files"]["meta"]["name"]
                        raise IncompatibleError(f"index metadata is unreadable ({e}), {meta}") from None
                    raise
        m = self.manifest
        self.dims: int = m["dims"]
        self.metric: str = m["metric"]
        self.dtype: str = m["dtype"]
        self.count: int = m["count"]
        # The full-text index's manifest entry (tokenizer, field), or None: --no-fts, or built before embcli kept one.
        self.fts: dict | None = m.get("fts")

    def _open(self, m: dict) -> None:
        vectors = _map_file(self.path, m, "vectors")
        if vectors is None:
            raise IncompatibleError(f"index file is empty, {_file_path(self.path, m, 'vectors')}")
        check_usearch_file(np.frombuffer(vectors, dtype=np.uint8), m, _file_path(self.path, m, "vectors"))
        self._mapped = vectors  # usearch reads from it: it must live as long as the index
        self.index = _restore(vectors, _file_path(self.path, m, "vectors"), view=True)
        self.index.expansion_search = m["expansion_search"]
        self.db = _open_meta(_file_path(self.path, m, "meta"), m)
        try:
            # Float vectors for rescoring and exact search: memory-mapped, read only where touched.
            self.floats = _open_floats(self.path, m) if "floats" in m["files"] else None
        except BaseException:
            self.db.close()
            raise

    @property
    def provenance(self) -> dict | None:
        return self.manifest.get("provenance")

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ search

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        exact: bool = False,
        where: str | None = None,
        expansion_search: int | None = None,
        full_scan_threshold: int = FULL_SCAN_THRESHOLD,
        rescore: int = 0,
    ) -> list[list[tuple[int, float]]]:
        """Top-``k`` (key, score) per query, best first; score is higher-is-better.

        ``rescore`` M: take M·k candidates from the (compact) index and re-rank them
        by float scores from the kept float vectors.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dims:
            raise IncompatibleError(f"query vectors have {queries.shape[-1]} dimensions, the index {self.dims}")
        if self.count == 0 or k < 1 or not len(queries):
            return [[] for _ in queries]
        default_ef = self.index.expansion_search
        if expansion_search:
            self.index.expansion_search = expansion_search  # for this call only
        try:
            return self._search(queries, k, exact, where, full_scan_threshold, rescore)
        finally:
            self.index.expansion_search = default_ef

    def _search(
        self, queries: np.ndarray, k: int, exact: bool, where: str | None, full_scan_threshold: int, rescore: int
    ) -> list[list[tuple[int, float]]]:
        if rescore and self.floats is None and self.dtype == "b1":
            raise IncompatibleError(
                f"--rescore needs the float vectors, and this index keeps none, {self.path}",
                hint="rebuild it with `embcli index --keep-floats`",
            )
        fetch = k * max(rescore, 1)
        # Exact search over kept floats is exact even for compact dtypes.
        if where or (exact and self.floats is not None):
            hits = self._filtered(queries, fetch, where, exact, full_scan_threshold)
        else:
            hits = self._ann(queries, min(fetch, self.count), exact)
        return self._rescore(queries, hits, k) if rescore else hits

    def _ann(self, queries: np.ndarray, k: int, exact: bool = False) -> list[list[tuple[int, float]]]:
        coded = np.packbits(queries > 0, axis=1) if self.dtype == "b1" else queries
        ef = self.index.expansion_search
        # Oversampled fetches (filters, rescoring) need a beam wider than the results asked for:
        # at ef == k the deep ranks are poor (filtered recall@10 0.948 at 50% selectivity, 100k).
        self.index.expansion_search = max(ef, 2 * k)
        try:
            matches = self.index.search(coded, k, exact=exact, threads=0)
        finally:
            self.index.expansion_search = ef
        keys, dists = np.atleast_2d(matches.keys), np.atleast_2d(matches.distances)
        counts = np.atleast_1d(getattr(matches, "counts", len(matches.keys)))
        return [
            [(int(key), self._score(d)) for key, d in zip(keys[i, : counts[i]], dists[i, : counts[i]], strict=True)]
            for i in range(len(queries))
        ]

    def _score(self, distance: float) -> float:
        # usearch distances: cos/ip = 1 - similarity; l2sq = squared distance;
        # Hamming on sign bits: (D - 2·ham) / D is the cosine of the ±1 vectors.
        if self.dtype == "b1":
            return float(1.0 - 2.0 * distance / self.dims)
        if self.metric == "l2":
            return -float(np.sqrt(max(distance, 0.0)))
        return float(1.0 - distance)

    def matching_keys(self, where: str | None) -> np.ndarray:
        """Keys of the records that pass the filter (all keys for None)."""
        sql, params = compile_where(where) if where else ("1", [])
        try:
            rows = self.db.execute(f"SELECT key FROM items WHERE {sql}", params).fetchall()
        except sqlite3.Error as e:
            raise UsageError(f"--where: {e}") from None
        return np.fromiter((r[0] for r in rows), dtype=np.uint64, count=len(rows))

    def _filtered(
        self, queries: np.ndarray, k: int, where: str | None, exact: bool, full_scan_threshold: int
    ) -> list[list[tuple[int, float]]]:
        """Few matches: exact over them. Many: ANN, oversampled by 1/selectivity, widened until k pass."""
        allowed = self.matching_keys(where)
        if not len(allowed):
            return [[] for _ in queries]
        if exact or len(allowed) <= max(full_scan_threshold, k):
            return self._exact_subset(queries, allowed, k)
        mask = np.zeros(int(allowed.max()) + 1, dtype=bool)
        mask[allowed] = True
        want = min(k, len(allowed))
        fetch = int(np.ceil(want * self.count / len(allowed) * 3)) + 10  # 3x oversampling: deep ranks are weaker
        results: list[list[tuple[int, float]]] = [[] for _ in queries]
        todo = np.arange(len(queries))
        while len(todo):
            if fetch >= self.count:  # the graph cannot give more: finish these exactly
                for i, hits in zip(todo, self._exact_subset(queries[todo], allowed, k), strict=True):
                    results[i] = hits
                break
            found = self._ann(queries[todo], fetch)
            short = []
            for i, hits in zip(todo, found, strict=True):
                kept = [(key, s) for key, s in hits if key < len(mask) and mask[key]][:k]
                if len(kept) >= want:
                    results[i] = kept
                else:
                    short.append(i)
            todo = np.array(short, dtype=np.int64)
            fetch *= 4
        return results

    def _exact_subset(self, queries: np.ndarray, keys: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        out: list[list[tuple[int, float]]] = [[] for _ in queries]
        scores_all = []
        for start in range(0, len(keys), 65536):  # bounded memory on large subsets
            scores_all.append(self._scores(queries, self._vectors(keys[start : start + 65536])))
        scores = np.hstack(scores_all)
        k = min(k, len(keys))
        top = (
            np.argpartition(-scores, k - 1, axis=1)[:, :k]
            if k < len(keys)
            else np.tile(np.arange(len(keys)), (len(queries), 1))
        )
        for i in range(len(queries)):
            order = top[i][np.lexsort((keys[top[i]], -scores[i, top[i]]))]
            out[i] = [(int(keys[j]), float(scores[i, j])) for j in order]
        return out

    def _vectors(self, keys: np.ndarray) -> np.ndarray:
        """Float vectors for keys: the kept floats when there are, else decoded from the index."""
        if self.floats is not None:
            return np.asarray(self.floats[np.asarray(keys, dtype=np.int64)], dtype=np.float32)
        if self.dtype == "b1":
            bits = np.vstack(self.index.get(keys)).reshape(len(keys), -1)
            return np.unpackbits(bits, axis=1)[:, : self.dims].astype(np.float32) * 2 - 1
        return np.vstack(self.index.get(keys, dtype=np.float32)).reshape(len(keys), self.dims)

    def _rescore(
        self, queries: np.ndarray, hits: list[list[tuple[int, float]]], k: int
    ) -> list[list[tuple[int, float]]]:
        out = []
        for q, found in zip(queries, hits, strict=True):
            if not found:
                out.append([])
                continue
            keys = np.array([key for key, _ in found], dtype=np.uint64)
            scores = self._scores(q[None, :], self._vectors(keys))[0]
            order = np.lexsort((keys, -scores))[:k]
            out.append([(int(keys[i]), float(scores[i])) for i in order])
        return out

    def _scores(self, q: np.ndarray, v: np.ndarray) -> np.ndarray:
        if self.metric == "cos":
            q = q / np.clip(np.linalg.norm(q, axis=1, keepdims=True), 1e-12, None)
            v = v / np.clip(np.linalg.norm(v, axis=1, keepdims=True), 1e-12, None)
            return q @ v.T
        if self.metric == "ip":
            return q @ v.T
        d2 = (q * q).sum(1)[:, None] - 2 * q @ v.T + (v * v).sum(1)[None, :]
        return -np.sqrt(np.clip(d2, 0, None))

    def lexical(self, expressions: list[str | None], k: int, where: str | None = None) -> list[list[tuple[int, float]]]:
        """Top-``k`` (key, score) by BM25 per FTS5 expression (``lexical.match_expression``; None: no words)."""
        if self.fts is None:
            raise IncompatibleError(
                f"this index has no full-text index (built with --no-fts, or by an embcli before it kept one), "
                f"so it cannot be searched by words, {self.path}",
                hint="rebuild it with `embcli index --force` (the full-text index is built by default)",
            )
        return [
            lexical.search(self.db, e, k, where, where_from=f", {self.path}") if e and self.count and k > 0 else []
            for e in expressions
        ]

    def key_of(self, id_value: object) -> int | None:
        """The key of the record with this id (ids keep their JSON type), or None."""
        row = self.db.execute("SELECT key FROM items WHERE id = ?", (_id_key(id_value),)).fetchone()
        return None if row is None else int(row[0])

    def stored_vector(self, key: int) -> np.ndarray:
        """The vector stored under ``key``, as float32: see ``stored_vectors_are`` for how exact it is."""
        return self._vectors(np.array([key], dtype=np.uint64))[0]

    def stored_vectors(self, keys: np.ndarray) -> np.ndarray:
        """The vectors stored under ``keys`` (live ones), as float32 rows, exact as ``stored_vectors_are`` says."""
        return self._vectors(np.asarray(keys, dtype=np.uint64))

    @property
    def stored_vectors_are(self) -> str | None:
        """None when ``stored_vector`` gives back the indexed vectors exactly, else what it gives instead."""
        if self.floats is not None or self.dtype == "f32":
            return None
        return STORED_AS[self.dtype]

    def payloads(self, keys: Iterable[int]) -> dict[int, tuple[object, dict]]:
        """key -> (id, payload) for the given keys."""
        keys = list(set(keys))
        out: dict[int, tuple[object, dict]] = {}
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            q = f"SELECT key, id, payload FROM items WHERE key IN ({','.join('?' * len(part))})"
            for key, id_json, payload in self.db.execute(q, part):
                out[key] = (orjson.loads(id_json), orjson.loads(payload))
        return out


def _lock_index(path: Path) -> int:
    """Take the index's writer lock; the lock file is never followed through a symlink nor truncated."""
    lock = path / ".lock"
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise IncompatibleError(
                f"index lock file is a symlink, not followed, {lock}", hint="remove it if nothing is writing the index"
            ) from None
        raise EmbcliError(f"cannot open the index lock file: {_errno_text(e)}, {lock}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IncompatibleError(f"index lock file is not a regular file, {lock}")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UsageError(f"index is being written by another embcli process, {path}") from None
    return fd


def _errno_text(e: OSError) -> str:
    """'No space left on device (ENOSPC)': the message and the errno's name."""
    name = errno.errorcode.get(e.errno or 0)
    return f"{e.strerror or e} ({name})" if name else str(e.strerror or e)


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Name a failed write (full disk, I/O error, broken pipe) with its errno and the file (exit 1)."""
    try:
        yield
    except OSError as e:
        raise EmbcliError(f"cannot write index file: {_errno_text(e)}, {path}") from None
    except sqlite3.OperationalError as e:
        code = getattr(e, "sqlite_errorname", None)
        raise EmbcliError(f"cannot write index file: {e}{f' ({code})' if code else ''}, {path}") from None


def _save_usearch(index: object, path: Path) -> None:
    """usearch's save, with a failure named by its errno, which usearch drops.

    usearch reports a failed write as "Failed to serialize into stream" and
    never checks fclose, so a failed final flush leaves a short file and no
    error. Either way, writing the missing bytes ourselves gets the errno back
    (ENOSPC, EIO, EFBIG, ...): the half-written file is removed by abort anyway.
    """
    try:
        index.save(str(path))
        failed = None
    except RuntimeError as e:
        failed = str(e).strip()
    want = index.serialized_length
    size = path.stat().st_size if path.exists() else 0
    if failed is None and size == want:
        return
    with _writing(path):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, bytes(max(1, min(want - size, 1 << 20))))
            os.fsync(fd)
        finally:
            os.close(fd)
    why = f"usearch: {failed}" if failed else f"short write, {size:,} of {want:,} bytes"
    raise EmbcliError(f"cannot write index file: {why}, {path}")


class IndexWriter:
    """Builds the next generation of an index; nothing is visible until ``commit``."""

    def __init__(
        self,
        path: str | os.PathLike,
        options: IndexOptions,
        *,
        append: bool = False,
        force: bool = False,
        store_text: bool = True,
        text_field: str = "text",
        threads: int | None = None,
        reproducible: bool = False,
    ) -> None:
        self.path = Path(path)
        self.threads = build_threads(threads, reproducible)
        self.store_text, self.text_field = store_text, text_field
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"index path exists and is not a directory, {self.path}")
        if (self.path / SHARDS).exists():  # search/shards.py writes those, shard by shard
            raise UsageError(f"a sharded index is written through its shards, not as one index, {self.path}")
        exists = (self.path / MANIFEST).exists()
        if exists and not (append or force):
            raise UsageError(f"an index already exists at {self.path}", hint="--append adds to it, --force rebuilds it")
        foreign = [p for p in self.path.iterdir() if not _is_ours(p.name)] if self.path.is_dir() else []
        if not exists and foreign and not force:
            raise UsageError(f"directory is not empty and holds no index, {self.path}")
        self._created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = _lock_index(self.path)
        # Everything below may fail (bad old files, a full disk): then nothing of it stays.
        self._floats = None
        self.db: sqlite3.Connection | None = None
        self.vec_name = self.meta_name = self.floats_name = ""
        try:
            self._start(exists and append, options)
        except BaseException:
            self.abort()
            raise
        self.added = self.replaced = self.deleted = 0
        self.repaired = 0  # nodes re-inserted at commit because no search could reach them
        self.unreachable = 0  # nodes still unreachable after the last repair round
        self.twins = 0  # unreachable nodes left as they are: exact copies of a vector a search reaches
        self._provenance_known = self.old is not None

    def _start(self, append: bool, options: IndexOptions) -> None:
        # An append reads the manifest before any cleanup: an odd one is refused with nothing removed.
        self.old = read_manifest(self.path) if append else None
        self._remove_leftovers(keep=())
        gen = (self.old["generation"] + 1) if self.old else _next_generation(self.path)
        self.vec_name, self.meta_name = f"vectors.{gen}.usearch", f"meta.{gen}.sqlite"
        self.floats_name = f"floats.{gen}.npy"
        self.generation = gen
        meta_path = self.path / self.meta_name
        if self.old:
            self._load_old()
            with _writing(meta_path):
                shutil.copyfile(self.path / self.old["files"]["meta"]["name"], meta_path)
            self.db = sqlite3.connect(meta_path)
            self.fts = self.old.get("fts")
            if options.fts is not None and options.fts != (self.fts is not None):
                has = "has a full-text index" if self.fts else "has no full-text index"
                raise UsageError(
                    f"--{'' if options.fts else 'no-'}fts with --append: the index {has}, and an append keeps it so, "
                    f"{self.path}",
                    hint=f"rebuild it with --force{'' if options.fts else ' --no-fts'}",
                )
        else:
            options.check()
            self.options, self.dims, self.provenance, self.next_key = options, None, None, 0
            self.index = None
            wants_fts = options.fts is not False
            self.fts = lexical.fts_manifest(options.fts_tokenizer, self.text_field) if wants_fts else None
            self.db = sqlite3.connect(meta_path)
            with _writing(meta_path):
                self.db.executescript(_SCHEMA)
                if self.fts is not None:
                    lexical.create_table(self.db, self.fts)
        if self.options.keep_floats is None:
            self.options.keep_floats = self.options.dtype in COMPACT
        if self.options.keep_floats:
            floats_path = self.path / self.floats_name
            self._floats = open(floats_path, "wb")  # noqa: SIM115 - closed at commit/abort
            self._floats_writer = NpyWriter(self._floats)
            if self.old:  # row i holds key i: carry the old rows over
                old = _open_floats(self.path, self.old)
                with _writing(floats_path):
                    for start in range(0, len(old), 65536):
                        self._floats_writer.write(np.asarray(old[start : start + 65536]))
        # The file is not committed until fsynced and named by the manifest: no journal needed.
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")

    def _load_old(self) -> None:
        """The committed generation to build on: checksums, structure, then loaded into memory."""
        old = self.old
        verify_checksums(self.path, old)  # every byte is read below anyway: verify on write
        vectors = _map_file(self.path, old, "vectors")
        if vectors is None:
            raise IncompatibleError(f"index file is empty, {_file_path(self.path, old, 'vectors')}")
        check_usearch_file(np.frombuffer(vectors, dtype=np.uint8), old, _file_path(self.path, old, "vectors"))
        _open_meta(_file_path(self.path, old, "meta"), old).close()
        self.options = IndexOptions(
            **{f: old[f] for f in ("metric", "dtype", "connectivity", "expansion_add", "expansion_search")},
            fts=old.get("fts") is not None,
            fts_tokenizer=(old.get("fts") or {}).get("tokenizer", "porter"),
        )
        self.dims: int | None = old["dims"]
        self.provenance: dict | None = old.get("provenance")
        self.next_key: int = old["next_key"]
        self.store_text = old.get("store_text", True)
        self.options.keep_floats = "floats" in old["files"]
        # Loaded from the very bytes just checked (a copy: the mapping can go).
        self.index = _restore(vectors, _file_path(self.path, old, "vectors"), view=False)
        self.index.expansion_add = self.options.expansion_add

    # ------------------------------------------------------------------ changes

    def set_provenance(self, prov: dict | None, where: str) -> None:
        """The first batch sets the index's model; later ones must match it."""
        prov = absolute_model(prov)
        if not self._provenance_known:
            self.provenance, self._provenance_known = prov, True
        else:
            check_same_model(prov, self.provenance, where)

    def add(self, ids: list[object | None], payloads: list[dict], vectors: np.ndarray) -> None:
        """Add a batch; an id already in the index is replaced (upsert)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if self.dims is None:
            self.dims = int(vectors.shape[1])
        if vectors.shape[1] != self.dims:
            raise IncompatibleError(f"vectors have {vectors.shape[1]} dimensions, the index {self.dims}")
        if self.index is None:
            o = self.options
            self.index = usearch_index()(
                ndim=self.dims,
                metric="hamming" if o.dtype == "b1" else USEARCH_METRIC[o.metric],
                dtype=o.dtype,
                connectivity=o.connectivity,
                expansion_add=o.expansion_add,
                expansion_search=o.expansion_search,
            )
        keys = np.arange(self.next_key, self.next_key + len(ids), dtype=np.uint64)
        self.next_key += len(ids)
        if self._floats is not None:
            with _writing(self.path / self.floats_name):
                self._floats_writer.write(vectors)  # every key gets its row, even one replaced below
        id_texts = [_id_key(int(key) if i is None else i) for i, key in zip(ids, keys, strict=True)]
        # Last one wins among duplicates inside this batch.
        last = {t: n for n, t in enumerate(id_texts)}
        if len(last) != len(id_texts):
            keep = sorted(last.values())
            keys, vectors = keys[keep], vectors[keep]
            id_texts, payloads = [id_texts[n] for n in keep], [payloads[n] for n in keep]
        old = self._keys_for(id_texts)
        with _writing(self.path / self.meta_name):
            if old:
                self.index.remove(np.array(list(old.values()), dtype=np.uint64))
                self.db.executemany("DELETE FROM items WHERE key = ?", [(k,) for k in old.values()])
                if self.fts is not None:
                    lexical.remove(self.db, list(old.values()))
                self.replaced += len(old)
            self.db.executemany(
                "INSERT INTO items (key, id, payload) VALUES (?, ?, ?)",
                [(int(k), t, self._payload(p)) for k, t, p in zip(keys, id_texts, payloads, strict=True)],
            )
            if self.fts is not None:  # from the payload as given: the text is indexed even when not stored
                lexical.add(self.db, [int(k) for k in keys], payloads, self.fts["field"])
        # One thread builds the same graph every time; parallel inserts race and can
        # leave nodes unreachable (measured: up to 10 of 2,000 self-queries missed): commit repairs them.
        coded = np.packbits(vectors > 0, axis=1) if self.options.dtype == "b1" else vectors
        self.index.add(keys, coded, threads=self.threads)
        self.added += len(keys) - len(old)

    def _payload(self, p: dict) -> str:
        if not self.store_text:
            p = {k: v for k, v in p.items() if k != self.text_field}
        return orjson.dumps(p, option=orjson.OPT_SERIALIZE_NUMPY).decode()  # Parquet lists come as arrays

    def _keys_for(self, id_texts: list[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(id_texts), 500):
            part = id_texts[start : start + 500]
            q = f"SELECT id, key FROM items WHERE id IN ({','.join('?' * len(part))})"
            found.update(self.db.execute(q, part).fetchall())
        return found

    def delete(self, ids: list[object]) -> int:
        old = self._keys_for([_id_key(i) for i in ids])
        if old and self.index is not None:
            self.index.remove(np.array(list(old.values()), dtype=np.uint64))
            with _writing(self.path / self.meta_name):
                self.db.executemany("DELETE FROM items WHERE key = ?", [(k,) for k in old.values()])
                if self.fts is not None:
                    lexical.remove(self.db, list(old.values()))
        self.deleted += len(old)
        return len(old)

    # ------------------------------------------------------------------ commit

    def commit(self) -> dict:
        """Write, fsync, check and publish the new generation; then drop the old one."""
        if self.dims is None:
            raise InputError("no vectors to index")
        vec_path, meta_path = self.path / self.vec_name, self.path / self.meta_name
        files = [("vectors", vec_path), ("meta", meta_path)]
        if self._floats is not None:
            with _writing(self.path / self.floats_name):
                self._floats_writer.close(width=self.dims)
                self._floats.close()
            files.append(("floats", self.path / self.floats_name))
        with _writing(meta_path):
            if self.fts is not None:
                lexical.optimize(self.db)
            self.db.commit()
            count = self.db.execute("SELECT count(*) FROM items").fetchone()[0]
            self.db.close()
        _save_usearch(self.index, vec_path)
        self._repair(vec_path)
        for _, p in files:
            with _writing(p), open(p, "rb+") as f:
                os.fsync(f.fileno())
        o = self.options
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "generation": self.generation,
            "embcli_version": __version__,
            # When the index was first built (kept by appends and deletes; unknown for an index built before
            # embcli recorded it) and when this generation was committed.
            "created": self.old.get("created") if self.old else now,
            "updated": now,
            "provenance": self.provenance,
            "dims": self.dims,
            "metric": o.metric,
            "dtype": o.dtype,
            "connectivity": o.connectivity,
            "expansion_add": o.expansion_add,
            "expansion_search": o.expansion_search,
            "store_text": self.store_text,
            "fts": self.fts,  # None: no full-text index (--no-fts); old indexes lack the key
            "count": count,
            "next_key": self.next_key,
            "files": {role: {"name": p.name, "bytes": p.stat().st_size, "sha256": sha256_file(p)} for role, p in files},
        }
        # What readers will be refused, is never published: check the new files as a reader would.
        vectors = _map_file(self.path, manifest, "vectors")
        check_usearch_file(np.frombuffer(vectors, dtype=np.uint8), manifest, vec_path)
        with _writing(self.path / MANIFEST), atomic_file(self.path / MANIFEST) as f:
            f.write(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        fsync_dir(self.path)
        self._remove_leftovers(keep=tuple(p.name for _, p in files))
        self._unlock()
        return manifest

    def _repair(self, vec_path: Path) -> None:
        """Re-insert the nodes a level-0 walk from the entry point cannot reach, then save again.

        Parallel inserts race on neighbour lists, and HNSW's pruning can drop every
        edge into a node among near-duplicates: such a node is found by no search,
        not even for its own vector. The walk reads the saved file (one gather of the
        level-0 lists and a vectorized BFS: about a second at a million vectors), so
        a sound graph costs no second save. A re-inserted node links to its nearest
        nodes and they back to it; one the pruning still drops goes back in with its
        nearest neighbours inserted after it, a new local configuration each round.
        """
        lost = self._lost(vec_path)
        rounds = 0
        while len(lost) and rounds < REPAIR_ROUNDS:
            rounds += 1
            before = len(lost)
            self.repaired += len(lost)
            keys = lost
            if rounds > 1:
                coded = np.vstack(self.index.get(lost, dtype=self.index.dtype))
                near = np.asarray(self.index.search(coded, REPAIR_NEIGHBOURS, threads=1).keys).ravel()
                near = np.setdiff1d(near[near != np.iinfo(np.uint64).max].astype(np.uint64), lost)
                keys = np.concatenate([lost, near])  # the lost first: the neighbours then link to them
            coded = np.vstack(self.index.get(keys, dtype=self.index.dtype))
            self.index.remove(keys)
            self.index.add(keys, coded, threads=1)  # one thread: a reproducible build stays reproducible
            with _writing(vec_path):
                vec_path.unlink()
            _save_usearch(self.index, vec_path)
            lost = self._lost(vec_path)
            if rounds > 1 and len(lost) >= before:
                break  # no progress with neighbours either (a whole group of equal vectors cut off): stop churning
        self.unreachable = len(lost)
        if len(lost):
            current().notice(
                f"{len(lost):,} of {len(self.index):,} vectors stay unreachable in the index graph after "
                f"{rounds} repair rounds (searches will not return them; exact search does), {vec_path}"
            )
            # (Seen with hundreds of records sharing one vector: HNSW's pruning keeps no edge into the group.)

    def _lost(self, vec_path: Path) -> np.ndarray:
        """The unreachable keys but for exact twins of a node a search does reach.

        HNSW cannot keep an edge to every copy of one vector (its pruning keeps one
        of equals), and real data repeats (of 43,000 PyPI summaries, 2,422 share
        their vector with another, up to 251 at once): re-inserting such a copy
        only churns the graph. A search for it returns its twin at the same score.
        """
        lost = self._unreachable(vec_path)
        if not len(lost):
            return lost
        self.twins = 0
        coded = np.vstack(self.index.get(lost, dtype=self.index.dtype))
        found = np.asarray(self.index.search(coded, 1, threads=1).keys, dtype=np.uint64).reshape(len(lost), -1)[:, 0]
        hit = (found != lost) & (found != np.iinfo(np.uint64).max)  # max: no hit at all
        twin = np.zeros(len(lost), dtype=bool)
        if hit.any():
            got = np.vstack(self.index.get(found[hit], dtype=self.index.dtype))
            twin[hit] = np.all(got == coded[hit], axis=1)
        self.twins = int(np.count_nonzero(twin))
        return lost[~twin]

    @staticmethod
    def _unreachable(vec_path: Path) -> np.ndarray:
        with open(vec_path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if not size:
                return np.zeros(0, dtype=np.uint64)
            with mmap.mmap(f.fileno(), size, access=mmap.ACCESS_READ) as mapped:
                buf = np.frombuffer(mapped, dtype=np.uint8)
                try:
                    return unreachable_keys(buf)
                finally:
                    del buf  # the mapping closes only once no array points into it

    def abort(self) -> None:
        """Remove every file of the unpublished generation and release the lock."""
        if self.db is not None:
            with contextlib.suppress(Exception):
                self.db.close()
        if self._floats is not None:
            with contextlib.suppress(OSError):
                self._floats.close()
        for name in (self.vec_name, self.meta_name, self.floats_name):
            if name:  # unset when the failure came before the generation was chosen
                with contextlib.suppress(FileNotFoundError):
                    (self.path / name).unlink()
        self._unlock()
        if self._created:  # leave no empty index directory behind
            shutil.rmtree(self.path, ignore_errors=True)

    def _unlock(self) -> None:
        if self._lock is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._lock, fcntl.LOCK_UN)
            os.close(self._lock)
            self._lock = None

    def _remove_leftovers(self, keep: tuple[str, ...]) -> None:
        """Delete generation files no manifest names (from crashed or superseded writes)."""
        try:
            live = read_manifest(self.path)
            keep = (*keep, *(f["name"] for f in live["files"].values()))
        except IncompatibleError:
            pass
        for p in self.path.iterdir():
            if _is_ours(p.name) and p.name not in keep and p.name not in (MANIFEST, ".lock"):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()


def _is_ours(name: str) -> bool:
    """Files an index directory may hold: its own, or leftovers of an interrupted write."""
    return (
        name in (MANIFEST, ".lock")
        or name.startswith(("vectors.", "meta.", "floats."))
        or (name.startswith(f".{MANIFEST}.") and name.endswith(".tmp"))
    )


def _next_generation(path: Path) -> int:
    gens = [int(p.name.split(".")[1]) for p in path.glob("*.*.*") if p.name.split(".")[1].isdigit()]
    return max(gens, default=0) + 1


def _local_model(name: str) -> str | None:
    """The absolute path of a model name that resolve_model would read as a local directory, else None."""
    from embcli.store.models import ALIASES, BUILTIN

    if name in BUILTIN or name in ALIASES:  # resolve_model looks these up first
        return None
    path = Path(name).expanduser()
    return os.path.abspath(path) if path.is_dir() else None  # abspath: a symlinked model dir stays a link


def check_same_model(prov: dict | None, known: dict | None, where: str) -> None:
    """Vectors must come from the index's model and options (exit 4 otherwise)."""
    if _without_name(absolute_model(prov)) != _without_name(known):
        raise IncompatibleError(
            f"vectors from another model or options ({_describe(prov)}) than the index ({_describe(known)}), {where}",
            hint="build a separate index for them",
        )


def _without_name(prov: dict | None) -> dict | None:
    """A model is known by its sha256: the same one named by another path is the same model."""
    if not isinstance(prov, dict) or "model_sha256" not in prov:
        return prov
    return {k: v for k, v in prov.items() if k != "model"}


def absolute_model(prov: dict | None) -> dict | None:
    """Provenance whose model, when it is a relative directory, is made absolute: the index works from any cwd."""
    if not isinstance(prov, dict) or not isinstance(prov.get("model"), str):
        return prov
    local = _local_model(prov["model"])
    return {**prov, "model": local} if local and local != prov["model"] else prov


def query_model(prov: dict, model: str | None, index: Path) -> dict:
    """Provenance to embed text queries with: the index's model, or ``model`` standing in for it.

    A recorded model directory that is gone is exit 4 (the index cannot be used
    as it is), with a hint at --model; encoder_from_provenance then checks that
    whatever is found is the same model (sha256).
    """
    from embcli.store.models import ALIASES, BUILTIN, REPO_ID

    name = model or prov["model"]
    local = _local_model(name)
    if local:
        name = local
    elif name not in BUILTIN and name not in ALIASES and not (REPO_ID.match(name) and name[0] not in "./~"):
        if model:
            raise UsageError(f"--model {model!r} is not a built-in model, a model directory or a hub repo id")
        raise IncompatibleError(
            f"the model of this index is missing ({name!r} is no model directory here), {index}",
            hint="if it moved, give its new place with --model DIR",
        )
    return {**prov, "model": name}


def verify_index(path: str | os.PathLike) -> dict:
    """Check an index in full: what opening checks, plus every file's sha256 and SQLite's own check."""
    for attempt in range(OPEN_RETRIES):  # a writer may publish a new generation meanwhile
        reader = IndexReader(path)
        try:
            verify_checksums(reader.path, reader.manifest)
            check = reader.db.execute("PRAGMA quick_check").fetchall()
            if check != [("ok",)]:
                raise IncompatibleError(f"index metadata fails SQLite's check ({check[0][0]}), {reader.path}")
            rows = reader.db.execute("SELECT count(*) FROM items").fetchone()[0]
            if rows != reader.count:
                raise IncompatibleError(f"index metadata holds {rows} records, the manifest {reader.count}")
            if reader.fts is not None:
                stray = reader.db.execute(
                    f"SELECT count(*) FROM {lexical.TABLE} WHERE rowid NOT IN (SELECT key FROM items)"
                ).fetchone()[0]
                if stray:
                    raise IncompatibleError(f"index full-text table holds {stray} rows of no record, {reader.path}")
            return reader.manifest
        except (IncompatibleError, sqlite3.Error) as e:
            if attempt == OPEN_RETRIES - 1 or read_manifest(reader.path) == reader.manifest:
                if isinstance(e, sqlite3.Error):
                    raise IncompatibleError(f"index metadata is unreadable ({e}), {reader.path}") from None
                raise
        finally:
            reader.close()
    raise AssertionError("unreachable")


def _describe(prov: dict | None) -> str:
    if not prov:
        return "no recorded model"
    extra = ", ".join(f"{k} {prov[k]!r}" for k in ("prompt", "pooling") if prov.get(k))
    return f"{prov['model']} {prov['dims']}-d" + (f", {extra}" if extra else "")


def disk_bytes(path: Path, manifest: dict) -> int:
    return sum(f["bytes"] for f in manifest["files"].values()) + (path / MANIFEST).stat().st_size


def open_shards(paths: list[str]) -> list[IndexReader]:
    """Open indexes searched together; they must hold the same kind of vectors."""
    readers = [IndexReader(p) for p in paths]
    first = readers[0]
    for r in readers[1:]:
        same = (r.dims, r.metric, r.provenance) == (first.dims, first.metric, first.provenance)
        if not same:
            raise IncompatibleError(
                f"shards differ: {r.path} holds {_describe(r.provenance)} ({r.metric}), "
                f"{first.path} holds {_describe(first.provenance)} ({first.metric})"
            )
    return readers


def search_shards(
    readers: list[IndexReader], queries: np.ndarray, k: int, **options: object
) -> list[list[tuple[int, int, float]]]:
    """Top-k (shard, key, score) per query over all shards, merged by score.

    Shards are searched in parallel threads: usearch, numpy and SQLite release the GIL.
    Each reader is used by one thread at a time, and the merge is the same in any order.
    """
    if len(readers) == 1:
        per_shard = [readers[0].search(queries, k, **options)]
    else:
        with ThreadPoolExecutor(max_workers=min(len(readers), SEARCH_THREADS)) as pool:
            per_shard = list(pool.map(lambda r: r.search(queries, k, **options), readers))
    merged = []
    for i in range(len(queries)):
        hits = [(score, s, key) for s, found in enumerate(per_shard) for key, score in found[i]]
        hits.sort(key=lambda h: (-h[0], h[1], h[2]))
        merged.append([(s, key, score) for score, s, key in hits[:k]])
    return merged
