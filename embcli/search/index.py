"""The on-disk index (DESIGN §4): usearch vectors + SQLite payloads + a manifest.

An index is a directory:

    manifest.json          the commit record: options, provenance, counts, checksums
    vectors.<gen>.usearch  HNSW graph and vectors of generation <gen>
    meta.<gen>.sqlite      id <-> key map and each record's payload
    floats.<gen>.npy       float32 vectors by key, for rescoring (compact dtypes, or --keep-floats)

A write never touches a committed generation: it builds generation <gen+1>
beside it, fsyncs it, and commits by atomically replacing manifest.json. A
process killed at any moment leaves either the old or the new manifest, each
naming complete files. Files no manifest names are leftovers, removed by the
next writer. Readers check sizes and sha256 before usearch maps a byte.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from embcli import __version__
from embcli.choices import DTYPES, EXACT_SEARCH_LIMIT, METRICS
from embcli.errors import IncompatibleError, InputError, UsageError
from embcli.io.files import atomic_file, fsync_dir, sha256_file
from embcli.io.streams import NpyWriter
from embcli.runtime.native import usearch_index
from embcli.search.filters import compile_where

FORMAT = "embcli-index"
VERSION = 1
MANIFEST = "manifest.json"
USEARCH_METRIC = {"cos": "cos", "ip": "ip", "l2": "l2sq"}  # ours -> usearch's
# b1: one sign bit per dimension, searched by Hamming distance (pair it with --rescore).
COMPACT = ("i8", "b1")  # dtypes that keep float vectors beside them for rescoring, by default
# Filters matching at most this many records are searched exactly (brute force over them):
# cheap at this size, and exact. Above it, the HNSW graph with oversampling.
FULL_SCAN_THRESHOLD = EXACT_SEARCH_LIMIT

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

    def check(self) -> None:
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
        raw = (path / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise IncompatibleError(f"not an embcli index (no {MANIFEST}), {path}") from None
    try:
        m = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise IncompatibleError(f"corrupt index manifest (not JSON), {path / MANIFEST}") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise IncompatibleError(f"not an embcli index manifest, {path / MANIFEST}")
    if m.get("version") != VERSION:
        raise IncompatibleError(
            f"index format version {m.get('version')} is not supported (this embcli reads {VERSION}), {path}"
        )
    try:
        ok = (
            isinstance(m["dims"], int)
            and m["dims"] > 0
            and m["metric"] in METRICS
            and m["dtype"] in DTYPES
            and isinstance(m["count"], int)
            and {"vectors", "meta"} <= set(m["files"])
            and all(isinstance(f[k], (str, int)) for f in m["files"].values() for k in ("name", "bytes", "sha256"))
        )
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise IncompatibleError(f"corrupt index manifest (missing or bad fields), {path / MANIFEST}")
    return m


def _check_files(path: Path, m: dict) -> None:
    for f in m["files"].values():
        p = path / f["name"]
        if os.path.basename(f["name"]) != f["name"]:
            raise IncompatibleError(f"corrupt index manifest (bad file name), {path / MANIFEST}")
        try:
            size = p.stat().st_size
        except FileNotFoundError:
            raise IncompatibleError(f"index file is missing, {p}") from None
        if size != f["bytes"]:
            raise IncompatibleError(f"index file is truncated or changed ({size} bytes, expected {f['bytes']}), {p}")
        if sha256_file(p) != f["sha256"]:
            raise IncompatibleError(f"index file fails its checksum (corrupt), {p}")


def _check_usearch_meta(p: Path, m: dict) -> None:
    """The vectors file must be what the manifest says: dimensions, dtype, metric, count."""
    meta = usearch_index().metadata(str(p))
    if meta is None:
        raise IncompatibleError(f"not a usearch file, {p}")
    want = {"dimensions": m["dims"], "count_present": m["count"]}
    got = {"dimensions": meta["dimensions"], "count_present": meta["count_present"]}
    scalar = str(meta["kind_scalar"]).rsplit(".", 1)[-1].split(":")[0].lower()
    metric = str(meta["kind_metric"]).rsplit(".", 1)[-1].split(":")[0].lower()
    usearch_metric = "hamming" if m["dtype"] == "b1" else USEARCH_METRIC[m["metric"]]
    if got != want or scalar != m["dtype"] or metric != usearch_metric:
        raise IncompatibleError(
            f"index manifest and vectors disagree (manifest: {m['dims']}-d {m['dtype']} {m['metric']}, "
            f"{m['count']} vectors; file: {got['dimensions']}-d {scalar} {metric}, {got['count_present']}), {p}"
        )


class IndexReader:
    """A committed index, checked and opened for search (vectors memory-mapped)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        for attempt in range(2):  # a writer may replace the generation between reads
            self.manifest = read_manifest(self.path)
            try:
                _check_files(self.path, self.manifest)
                break
            except IncompatibleError:
                if attempt or read_manifest(self.path) == self.manifest:
                    raise
        m = self.manifest
        vec_path = self.path / m["files"]["vectors"]["name"]
        _check_usearch_meta(vec_path, m)
        self.index = usearch_index().restore(str(vec_path), view=True)
        self.index.expansion_search = m["expansion_search"]
        uri = (self.path / m["files"]["meta"]["name"]).resolve().as_uri() + "?mode=ro&immutable=1"
        self.db = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self.dims: int = m["dims"]
        self.metric: str = m["metric"]
        self.dtype: str = m["dtype"]
        self.count: int = m["count"]
        floats = m["files"].get("floats")
        # Float vectors for rescoring and exact search: memory-mapped, read only where touched.
        self.floats = np.load(self.path / floats["name"], mmap_mode="r") if floats else None

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
        threads: int = 1,
    ) -> None:
        self.path = Path(path)
        self.threads = threads
        self.store_text, self.text_field = store_text, text_field
        if self.path.exists() and not self.path.is_dir():
            raise UsageError(f"index path exists and is not a directory, {self.path}")
        exists = (self.path / MANIFEST).exists()
        if exists and not (append or force):
            raise UsageError(f"an index already exists at {self.path}", hint="--append adds to it, --force rebuilds it")
        foreign = [p for p in self.path.iterdir() if not _is_ours(p.name)] if self.path.is_dir() else []
        if not exists and foreign and not force:
            raise UsageError(f"directory is not empty and holds no index, {self.path}")
        self._created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.path / ".lock", "w")  # noqa: SIM115 - held until commit/abort
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UsageError(f"index is being written by another embcli process, {self.path}") from None
        self._remove_leftovers(keep=())
        self.old = read_manifest(self.path) if exists and append else None
        gen = (self.old["generation"] + 1) if self.old else _next_generation(self.path)
        self.vec_name, self.meta_name = f"vectors.{gen}.usearch", f"meta.{gen}.sqlite"
        self.floats_name = f"floats.{gen}.npy"
        self.generation = gen
        meta_path = self.path / self.meta_name
        if self.old:
            _check_files(self.path, self.old)
            _check_usearch_meta(self.path / self.old["files"]["vectors"]["name"], self.old)
            self.options = IndexOptions(
                **{f: self.old[f] for f in ("metric", "dtype", "connectivity", "expansion_add", "expansion_search")}
            )
            self.dims: int | None = self.old["dims"]
            self.provenance: dict | None = self.old.get("provenance")
            self.next_key: int = self.old["next_key"]
            self.store_text = self.old.get("store_text", True)
            self.options.keep_floats = "floats" in self.old["files"]
            self.index = usearch_index().restore(str(self.path / self.old["files"]["vectors"]["name"]), view=False)
            self.index.expansion_add = self.options.expansion_add
            shutil.copyfile(self.path / self.old["files"]["meta"]["name"], meta_path)
            self.db = sqlite3.connect(meta_path)
        else:
            options.check()
            self.options, self.dims, self.provenance, self.next_key = options, None, None, 0
            self.index = None
            self.db = sqlite3.connect(meta_path)
            self.db.executescript(_SCHEMA)
        self._floats = None
        if self.options.keep_floats is None:
            self.options.keep_floats = self.options.dtype in COMPACT
        if self.options.keep_floats:
            self._floats = open(self.path / self.floats_name, "wb")  # noqa: SIM115 - closed at commit/abort
            self._floats_writer = NpyWriter(self._floats)
            if self.old:  # row i holds key i: carry the old rows over
                old = np.load(self.path / self.old["files"]["floats"]["name"], mmap_mode="r")
                for start in range(0, len(old), 65536):
                    self._floats_writer.write(np.asarray(old[start : start + 65536]))
        # The file is not committed until fsynced and named by the manifest: no journal needed.
        self.db.execute("PRAGMA journal_mode=OFF")
        self.db.execute("PRAGMA synchronous=OFF")
        self.added = self.replaced = self.deleted = 0
        self._provenance_known = self.old is not None

    # ------------------------------------------------------------------ changes

    def set_provenance(self, prov: dict | None, where: str) -> None:
        """The first batch sets the index's model; later ones must match it."""
        if not self._provenance_known:
            self.provenance, self._provenance_known = prov, True
        elif prov != self.provenance:
            raise IncompatibleError(
                f"vectors from another model or options ({_describe(prov)}) "
                f"than the index ({_describe(self.provenance)}), {where}",
                hint="build a separate index for them",
            )

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
            self._floats_writer.write(vectors)  # every key gets its row, even one replaced below
        id_texts = [_id_key(int(key) if i is None else i) for i, key in zip(ids, keys, strict=True)]
        # Last one wins among duplicates inside this batch.
        last = {t: n for n, t in enumerate(id_texts)}
        if len(last) != len(id_texts):
            keep = sorted(last.values())
            keys, vectors = keys[keep], vectors[keep]
            id_texts, payloads = [id_texts[n] for n in keep], [payloads[n] for n in keep]
        old = self._keys_for(id_texts)
        if old:
            self.index.remove(np.array(list(old.values()), dtype=np.uint64))
            self.db.executemany("DELETE FROM items WHERE key = ?", [(k,) for k in old.values()])
            self.replaced += len(old)
        self.db.executemany(
            "INSERT INTO items (key, id, payload) VALUES (?, ?, ?)",
            [(int(k), t, self._payload(p)) for k, t, p in zip(keys, id_texts, payloads, strict=True)],
        )
        # One thread builds the same graph every time; parallel inserts race and can
        # leave nodes unreachable (measured: up to 10 of 2,000 self-queries missed).
        coded = np.packbits(vectors > 0, axis=1) if self.options.dtype == "b1" else vectors
        self.index.add(keys, coded, threads=self.threads)
        self.added += len(keys) - len(old)

    def _payload(self, p: dict) -> str:
        if not self.store_text:
            p = {k: v for k, v in p.items() if k != self.text_field}
        return orjson.dumps(p).decode()

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
            self.db.executemany("DELETE FROM items WHERE key = ?", [(k,) for k in old.values()])
        self.deleted += len(old)
        return len(old)

    # ------------------------------------------------------------------ commit

    def commit(self) -> dict:
        """Write, fsync and publish the new generation; then drop the old one."""
        if self.dims is None:
            raise InputError("no vectors to index")
        vec_path, meta_path = self.path / self.vec_name, self.path / self.meta_name
        files = [("vectors", vec_path), ("meta", meta_path)]
        if self._floats is not None:
            self._floats_writer.close(width=self.dims)
            self._floats.close()
            files.append(("floats", self.path / self.floats_name))
        self.db.commit()
        count = self.db.execute("SELECT count(*) FROM items").fetchone()[0]
        self.db.close()
        self.index.save(str(vec_path))
        for _, p in files:
            with open(p, "rb+") as f:
                os.fsync(f.fileno())
        o = self.options
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "generation": self.generation,
            "embcli_version": __version__,
            "provenance": self.provenance,
            "dims": self.dims,
            "metric": o.metric,
            "dtype": o.dtype,
            "connectivity": o.connectivity,
            "expansion_add": o.expansion_add,
            "expansion_search": o.expansion_search,
            "store_text": self.store_text,
            "count": count,
            "next_key": self.next_key,
            "files": {role: {"name": p.name, "bytes": p.stat().st_size, "sha256": sha256_file(p)} for role, p in files},
        }
        with atomic_file(self.path / MANIFEST) as f:
            f.write(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        fsync_dir(self.path)
        self._remove_leftovers(keep=tuple(p.name for _, p in files))
        self._unlock()
        return manifest

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self.db.close()
        with contextlib.suppress(FileNotFoundError):
            (self.path / self.vec_name).unlink()
        if self._floats is not None:
            self._floats.close()
        for name in (self.meta_name, self.floats_name):
            with contextlib.suppress(FileNotFoundError):
                (self.path / name).unlink()
        self._unlock()
        if self._created:  # leave no empty index directory behind
            shutil.rmtree(self.path, ignore_errors=True)

    def _unlock(self) -> None:
        with contextlib.suppress(Exception):
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

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
    """Top-k (shard, key, score) per query over all shards, merged by score."""
    per_shard = [r.search(queries, k, **options) for r in readers]
    merged = []
    for i in range(len(queries)):
        hits = [(score, s, key) for s, found in enumerate(per_shard) for key, score in found[i]]
        hits.sort(key=lambda h: (-h[0], h[1], h[2]))
        merged.append([(s, key, score) for score, s, key in hits[:k]])
    return merged
