"""A content-addressed cache of vectors, so re-embedding unchanged text costs nothing.

A vector is stored under (spec, sha256(text)), where the spec digests everything
that changes the vector: the model's files (ONNX graph and tokenizer hashes),
prompt, max length, pooling, normalization and dims. Only vectors are cached:
a record's other fields always come from the current input.

SQLite in WAL mode with a busy timeout: several jobs can share one cache, each
commits per chunk, and a job killed mid-run keeps what it had committed.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import orjson

from embcli.errors import EmbcliError, IncompatibleError, UsageError
from embcli.io.files import sha256_file

if TYPE_CHECKING:
    from embcli.runtime.encoder import Encoder
    from embcli.store.models import ModelSpec

_SCHEMA = """
CREATE TABLE IF NOT EXISTS specs (
    id INTEGER PRIMARY KEY,
    digest BLOB NOT NULL UNIQUE,
    description TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS vectors (
    spec INTEGER NOT NULL,
    text_hash BLOB NOT NULL,
    vector BLOB NOT NULL,
    n_tokens INTEGER NOT NULL,
    truncated INTEGER NOT NULL,
    used INTEGER NOT NULL,
    PRIMARY KEY (spec, text_hash)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS vectors_used ON vectors (used);
CREATE TABLE IF NOT EXISTS widths (
    graph TEXT PRIMARY KEY,
    width INTEGER NOT NULL
);
"""
BUSY_TIMEOUT_S = 60
# Keys per SQLite statement in batched look-ups and touches (under every SQLite's variable limit).
BATCH_KEYS = 500


def connect(path: str | Path) -> sqlite3.Connection:
    try:
        db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash loses at most the last commit
        db.executescript(_SCHEMA)
    except sqlite3.DatabaseError as e:
        raise write_failure(e, path) or IncompatibleError(f"cannot use embedding cache ({e}), {path}") from None
    return db


def write_failure(err: sqlite3.Error, path: str | Path) -> EmbcliError | None:
    """A disk that is full or failing, said as such (exit 1) with the cache's path; None for other errors.

    SQLite keeps the errno to itself; its result code says which of the two it was.
    """
    code = getattr(err, "sqlite_errorname", "") or ""  # Python 3.11+
    text = str(err)
    if code.startswith("SQLITE_FULL") or "disk is full" in text:
        what = "no space left on device"
    elif code.startswith("SQLITE_IOERR") or "disk I/O error" in text:
        what = "input/output error"
    else:
        return None
    return EmbcliError(f"{what} ({code or text}), writing embedding cache {path}")


def spec_of(encoder: Encoder) -> dict:
    """What must match for a cached vector to be reused: model files and every vector option.

    The model's name is left out: the same files under another path make the same vectors.
    """
    return {
        **{k: v for k, v in encoder.provenance().items() if k != "model"},
        "model_sha256": encoder.spec.sha256(),
        "tokenizer_sha256": sha256_file(encoder.spec.tokenizer_path),
    }


def graph_key(spec: ModelSpec) -> str:
    """What an encoder's output width depends on: the graph's bytes, and the config's width (a graph
    whose output shape leaves it open takes that)."""
    return f"{spec.sha256()}:{spec.dim}"


def known_widths(path: str | Path) -> dict[str, int]:
    """Output widths of the graphs earlier runs loaded with this cache (what lets a run skip loading)."""
    db = connect(path)
    try:
        return dict(db.execute("SELECT graph, width FROM widths").fetchall())
    finally:
        db.close()


def text_hash(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


class EmbeddingCache:
    """One model spec's view of a cache file. Use one instance per thread."""

    def __init__(self, path: str | Path, spec: dict, dims: int) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise UsageError(f"--cache must be a file, not a directory, {self.path}")
        self.db = connect(self.path)
        self.dims = dims
        description = orjson.dumps(spec, option=orjson.OPT_SORT_KEYS)
        digest = hashlib.sha256(description).digest()
        try:
            self.db.execute(
                "INSERT OR IGNORE INTO specs (digest, description) VALUES (?, ?)", (digest, description.decode())
            )
        except sqlite3.Error as e:
            raise write_failure(e, self.path) or e from None
        self.spec_id = self.db.execute("SELECT id FROM specs WHERE digest = ?", (digest,)).fetchone()[0]

    def clone(self) -> EmbeddingCache:
        """The same cache through a new connection (SQLite connections stay in one thread)."""
        other = object.__new__(EmbeddingCache)
        other.path, other.dims, other.spec_id = self.path, self.dims, self.spec_id
        other.db = connect(self.path)
        return other

    def get(self, key: bytes) -> tuple[np.ndarray, int, bool] | None:
        row = self.db.execute(
            "SELECT vector, n_tokens, truncated FROM vectors WHERE spec = ? AND text_hash = ?", (self.spec_id, key)
        ).fetchone()
        if row is None:
            return None
        vec = np.frombuffer(row[0], dtype=np.float32)
        if vec.shape != (self.dims,):
            return None  # not ours to trust: recompute (and overwrite)
        return vec, row[1], bool(row[2])

    def get_many(self, keys: list[bytes]) -> dict[bytes, tuple[np.ndarray, int, bool]]:
        """``get`` for many keys: one query per BATCH_KEYS keys; misses are left out."""
        found: dict[bytes, tuple[np.ndarray, int, bool]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), BATCH_KEYS):
            part = unique[start : start + BATCH_KEYS]
            rows = self.db.execute(
                "SELECT text_hash, vector, n_tokens, truncated FROM vectors "
                f"WHERE spec = ? AND text_hash IN ({','.join('?' * len(part))})",
                (self.spec_id, *part),
            )
            for key, blob, n_tokens, truncated in rows:
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape == (self.dims,):  # else not ours to trust: recompute (and overwrite)
                    found[key] = (vec, n_tokens, bool(truncated))
        return found

    def record_width(self, graph: str, width: int) -> None:
        """Remember a loaded graph's output width (``graph_key``), so later runs can skip loading it."""
        try:
            self.db.execute("INSERT OR REPLACE INTO widths (graph, width) VALUES (?, ?)", (graph, width))
        except sqlite3.Error as e:
            raise write_failure(e, self.path) or e from None

    def put_and_touch(self, new: list[tuple[bytes, np.ndarray, int, bool]], hits: list[bytes]) -> None:
        """Store new vectors and mark hits as used now: one transaction per chunk, one UPDATE per BATCH_KEYS hits."""
        now = int(time.time())
        self.db.execute("BEGIN IMMEDIATE")
        try:
            self.db.executemany(
                "INSERT OR REPLACE INTO vectors (spec, text_hash, vector, n_tokens, truncated, used) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(self.spec_id, k, np.asarray(v, np.float32).tobytes(), n, int(t), now) for k, v, n, t in new],
            )
            unique = list(dict.fromkeys(hits))
            for start in range(0, len(unique), BATCH_KEYS):
                part = unique[start : start + BATCH_KEYS]
                self.db.execute(
                    "UPDATE vectors SET used = ? WHERE spec = ? AND used < ? "
                    f"AND text_hash IN ({','.join('?' * len(part))})",
                    (now, self.spec_id, now, *part),
                )
            self.db.execute("COMMIT")
        except BaseException as e:
            # SQLite may have rolled back already (a full disk does): a second ROLLBACK would
            # fail and hide why.
            if self.db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
            if isinstance(e, sqlite3.Error):
                raise write_failure(e, self.path) or e from None
            raise

    def close(self) -> None:
        self.db.close()


def cache_stats(path: str | Path) -> dict:
    db = connect(path)
    try:
        rows = db.execute(
            "SELECT s.description, count(v.spec), min(v.used), max(v.used) FROM specs s "
            "LEFT JOIN vectors v ON v.spec = s.id GROUP BY s.id ORDER BY s.id"
        ).fetchall()
        total = db.execute("SELECT count(*) FROM vectors").fetchone()[0]
    finally:
        db.close()
    size = sum(p.stat().st_size for p in Path(path).parent.glob(Path(path).name + "*") if p.is_file())
    return {
        "path": str(path),
        "vectors": total,
        "bytes": size,
        "specs": [
            {"spec": orjson.loads(desc), "vectors": n, "oldest_use": oldest, "newest_use": newest}
            for desc, n, oldest, newest in rows
        ],
    }


def prune(path: str | Path, older_than_s: float) -> int:
    """Drop vectors unused for ``older_than_s`` seconds; returns how many."""
    db = connect(path)
    try:
        cutoff = int(time.time() - older_than_s)
        n = db.execute("DELETE FROM vectors WHERE used < ?", (cutoff,)).rowcount
        db.execute("VACUUM")
    except sqlite3.Error as e:
        raise write_failure(e, path) or e from None
    finally:
        db.close()
    return n
