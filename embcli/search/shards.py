"""Sharded indexes (DESIGN §4): a directory of ordinary indexes plus ``shards.json``, used as one path.

    docs.idx/
      shards.json     the commit record: format, N, the routing rule, the shard paths, the shared facts
      shard-00000/    an ordinary embcli index (manifest.json, vectors, meta, floats)
      …
      shard-NNNNN/
      .lock           one writer at a time over the whole sharded index

Routing (``ROUTING``, "sha1-json-mod"): a record with id ``x`` lives in shard
``int.from_bytes(sha1(json(x)).digest()[:8], "big") % N``, where ``json(x)`` is the
id's compact JSON as orjson writes it (UTF-8, no spaces): ids keep their JSON type,
so 1 and "1" are different ids and may land in different shards. An id lives in
exactly one shard, so an append or a delete touches only the shards its ids route to.

Engine-neutral pieces, callable on their own (a Ray task builds one shard):
``shard_of`` routes an id, ``build_shard`` builds (or appends to) one shard from the
rows routed to it, ``write_shards_json`` checks that the shards agree and commits
the whole by writing ``shards.json`` last, by atomic rename: no shards.json, no
sharded index. ``write_sharded`` and ``delete_sharded`` are this machine's engine:
route, spool to per-shard files (bounded memory), build shard by shard.
``ShardedWriter.tasks`` hands the builds out as ``ShardTask``s (plain data naming a
shard and its spool file) for another engine to run (``embcli.integrations.ray``),
and ``ShardedWriter.built`` takes each result back before ``commit``.

Each shard's commit is atomic; a write across shards is not: a crash mid-append
leaves some shards updated and the others not. Appends are upserts by id, so
running the same append again ends in the same index as one that never crashed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import orjson

from embcli.choices import DTYPES, METRICS
from embcli.errors import EmbcliError, IncompatibleError, UsageError
from embcli.io.files import atomic_file, fsync_dir
from embcli.search.index import (
    MANIFEST,
    SHARDS,
    IndexOptions,
    IndexReader,
    IndexWriter,
    _errno_text,
    _id_key,
    _is_ours,
    _lock_index,
    _open_regular,
    _without_name,
    absolute_model,
    build_threads,
    check_same_model,
    disk_bytes,
    open_shards,
    read_format_json,
    read_manifest,
    verify_index,
)
from embcli.search.ingest import Row, add_rows
from embcli.version import __version__

FORMAT = "embcli-shards"
VERSION = 1
ROUTING = "sha1-json-mod"
ROUTING_RULE = 'shard = int.from_bytes(sha1(id as compact JSON).digest()[:8], "big") % N'
MAX_SHARDS = 10_000  # every shard keeps a database open while searched: far beyond this, descriptors run out
SHARDS_MAX_BYTES = 16 << 20  # shards.json names N paths: a few hundred kB at MAX_SHARDS
SHARD_NAME = re.compile(r"shard-\d{5,}")
SPOOL_PREFIX = ".spool."
SPOOL_BATCH = 1024  # rows of one shard written to its spool file at once
SPOOL_ROWS = 16_384  # rows held in memory across all shards before every pending batch goes out


# ---------------------------------------------------------------------------- routing and layout


def shard_of(id: object, n: int) -> int:
    """The shard (0 … n-1) that holds the record with this id (a str or an int; JSON type kept)."""
    if n < 1:
        raise UsageError(f"a sharded index has at least one shard, not {n}")
    digest = hashlib.sha1(_id_key(id).encode(), usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big") % n


def shard_name(i: int) -> str:
    """The directory of shard ``i`` inside a sharded index: shard-00000, shard-00001, …"""
    return f"shard-{i:05d}"


def is_sharded(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a (published) sharded index: a directory holding shards.json. Cheap: one stat."""
    return (Path(path) / SHARDS).exists()


def read_shards(path: str | os.PathLike) -> dict:
    """The validated shards.json of the sharded index at ``path`` (exit 4 on anything odd)."""
    root = Path(path)
    p = root / SHARDS
    try:
        fd = _open_regular(p, SHARDS)  # a FIFO or a device planted there is refused, never read
    except FileNotFoundError:
        raise IncompatibleError(f"not a sharded index (no {SHARDS}), {root}") from None
    m = read_format_json(fd, p, SHARDS, SHARDS_MAX_BYTES, (FORMAT, VERSION), "sharded index", p)
    routing = m.get("routing")
    if not isinstance(routing, dict) or routing.get("rule") != ROUTING:
        raise IncompatibleError(f"sharded index routed by an unknown rule ({m.get('routing')!r}), {p}")
    try:
        ok = (
            isinstance(m["n"], int)
            and 1 <= m["n"] <= MAX_SHARDS
            and isinstance(m["shards"], list)
            and len(m["shards"]) == m["n"]
            and all(isinstance(s, str) and _plain_name(s) for s in m["shards"])
            and len(set(m["shards"])) == m["n"]
            and isinstance(m["dims"], int)
            and m["dims"] > 0
            and m["metric"] in METRICS
            and m["dtype"] in DTYPES
            and (m["provenance"] is None or isinstance(m["provenance"], dict))
            and isinstance(m.get("next_row", 0), int)
        )
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise IncompatibleError(f"corrupt {SHARDS} (missing or bad fields), {p}")
    return m


def _plain_name(name: str) -> bool:
    """A shard path is a directory right inside the sharded index: nothing can point outside it."""
    return os.path.basename(name) == name and name not in ("", ".", "..") and not name.startswith(".")


def shard_paths(path: str | os.PathLike, meta: dict | None = None) -> list[Path]:
    """The shards of the sharded index at ``path``, in shard order."""
    meta = meta if meta is not None else read_shards(path)
    return [Path(path) / name for name in meta["shards"]]


def index_paths(path: str | os.PathLike) -> list[Path]:
    """The ordinary indexes ``path`` stands for: itself, or every shard of a sharded index."""
    return shard_paths(path) if is_sharded(path) else [Path(path)]


def check_shard(manifest: dict, meta: dict, where: Path) -> None:
    """A shard must hold what shards.json says every shard holds (exit 4 otherwise)."""
    theirs = (manifest["dims"], manifest["metric"], manifest["dtype"], _without_name(manifest.get("provenance")))
    ours = (meta["dims"], meta["metric"], meta["dtype"], _without_name(meta["provenance"]))
    if theirs != ours:
        raise IncompatibleError(
            f"shard differs from its {SHARDS} ({manifest['dims']}-d {manifest['dtype']} {manifest['metric']}, "
            f"against {meta['dims']}-d {meta['dtype']} {meta['metric']}, or another model), {where}"
        )


def open_readers(paths: Sequence[str | os.PathLike]) -> list[IndexReader]:
    """Open the indexes searched together, each sharded one as its shards (checked against its shards.json).

    Cheap: manifests, sizes and headers, as opening one index is; no checksums.
    """
    expanded: list[str] = []
    metas: list[tuple[int, dict, Path]] = []  # (first reader, shards.json, root) per sharded path
    for given in paths:
        if is_sharded(given):
            meta = read_shards(given)
            metas.append((len(expanded), meta, Path(given)))
            expanded += [str(p) for p in shard_paths(given, meta)]
        else:
            expanded.append(str(given))
    readers = open_shards(expanded)
    try:
        for first, meta, _root in metas:
            for r in readers[first : first + meta["n"]]:
                check_shard(r.manifest, meta, r.path)
    except BaseException:
        for r in readers:
            r.close()
        raise
    return readers


# ---------------------------------------------------------------------------- one shard


def build_shard(
    path: str | os.PathLike,
    rows: Iterable[Row],
    options: IndexOptions,
    *,
    provenance: dict | None,
    dims: int,
    append: bool = False,
    force: bool = False,
    store_text: bool = True,
    text_field: str = "text",
    threads: int | None = 1,
    on_batch: Callable[[int], None] = lambda n: None,
) -> IndexWriter:
    """Build one shard (an ordinary index at ``path``) from the rows routed to it, or ``append`` them to it.

    ``provenance`` and ``dims`` are the sharded index's, so a shard that gets no rows is still
    a valid, empty index of the right kind. Rows must carry ids (``route`` gives id-less rows
    theirs) and belong here (``shard_of``): nothing checks that before ``verify_sharded``.
    Returns the committed writer (``.added``, ``.replaced``); a failure leaves the shard as it was.
    """
    writer = IndexWriter(
        path,
        IndexOptions(**vars(options)),  # each writer settles keep_floats on its own copy
        append=append,
        force=force,
        store_text=store_text,
        text_field=text_field,
        threads=threads,
    )
    try:
        writer.set_provenance(provenance, str(path))
        if add_rows(writer, _with_ids(rows, path), on_batch) == 0 and writer.dims is None:
            writer.add([], [], np.zeros((0, dims), dtype=np.float32))  # an empty shard still has its width
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return writer


def _with_ids(rows: Iterable[Row], path: str | os.PathLike) -> Iterator[Row]:
    """A shard would number id-less rows by its own keys: the same id in every shard, each routed nowhere."""
    for row in rows:
        if row.id is None:
            raise UsageError(
                f"a row without an id reached shard {path}, {row.where}",
                hint="give every row its id before routing (ShardedWriter.route numbers id-less rows)",
            )
        yield row


def delete_from_shard(path: str | os.PathLike, ids: Sequence[object]) -> int:
    """Remove these ids from one shard; the shard is rewritten only when one of them was there."""
    writer = IndexWriter(path, IndexOptions(), append=True)
    try:
        removed = writer.delete(list(ids))
        if removed:
            writer.commit()
        else:
            writer.abort()
    except BaseException:
        writer.abort()
        raise
    return removed


def write_shards_json(
    path: str | os.PathLike, n: int, *, next_row: int = 0, names: Sequence[str] | None = None
) -> dict:
    """Commit a sharded index: check that its ``n`` shards agree, then write shards.json by atomic rename.

    The shards must be committed indexes with the same dims, metric, dtype and model
    (provenance, compared by the model's sha256). ``next_row``: the id the next record
    without one gets. An existing shards.json keeps its creation time.
    """
    root = Path(path)
    names = list(names) if names is not None else [shard_name(i) for i in range(n)]
    if not 1 <= n <= MAX_SHARDS or len(names) != n or not all(_plain_name(s) for s in names):
        raise UsageError(f"a sharded index has 1 to {MAX_SHARDS:,} shards with plain names, {root}")
    manifests = [read_manifest(root / name) for name in names]
    first = manifests[0]
    meta_facts = {
        "dims": first["dims"],
        "metric": first["metric"],
        "dtype": first["dtype"],
        "provenance": first.get("provenance"),
    }
    for name, m in zip(names[1:], manifests[1:], strict=True):
        check_shard(m, meta_facts, root / name)
    created = None
    with contextlib.suppress(IncompatibleError):
        created = read_shards(root).get("created")
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "n": n,
        "routing": {"rule": ROUTING, "definition": ROUTING_RULE, "id_json": "orjson, compact, UTF-8"},
        "shards": names,
        **meta_facts,
        "next_row": next_row,
        "embcli_version": __version__,
        "created": created or now,
        "updated": now,
    }
    try:
        with atomic_file(root / SHARDS) as f:
            f.write(orjson.dumps(meta, option=orjson.OPT_INDENT_2))
    except OSError as e:
        raise EmbcliError(f"cannot write {SHARDS}: {_errno_text(e)}, {root / SHARDS}") from None
    fsync_dir(root)
    return meta


# ---------------------------------------------------------------------------- this machine's engine


@dataclass
class ShardedWrite:
    """What ``write_sharded`` did."""

    meta: dict  # the shards.json written
    rows: int  # rows read
    added: int
    replaced: int
    touched: list[int]  # the shards rewritten
    count: int  # vectors in the whole index now
    bytes: int  # on disk, all shards


class _Spool:
    """Rows routed to shards, held in per-shard temp files: memory stays bounded at any input size.

    Our own pickles, read back once, by this process or by the task that builds the shard
    (``read_spool``): payloads keep their Python types (a Parquet list stays an array) exactly
    as an unsharded build would hand them to the writer.
    """

    def __init__(self, directory: Path, n: int) -> None:
        self.dir = directory
        self.counts = [0] * n
        self.pending: dict[int, list[Row]] = {}
        self.held = 0

    def file(self, shard: int) -> Path:
        return self.dir / f"{shard_name(shard)}.pickle"

    def add(self, shard: int, row: Row) -> None:
        batch = self.pending.setdefault(shard, [])
        batch.append(row)
        self.counts[shard] += 1
        self.held += 1
        if len(batch) >= SPOOL_BATCH:
            self._write(shard)
        elif self.held >= SPOOL_ROWS:
            for s in list(self.pending):
                self._write(s)

    def close(self) -> None:
        for s in list(self.pending):
            self._write(s)

    def _write(self, shard: int) -> None:
        batch = self.pending.pop(shard)
        self.held -= len(batch)
        data = ([r.id for r in batch], [r.payload for r in batch], np.vstack([r.vector for r in batch]))
        p = self.file(shard)
        try:
            with open(p, "ab") as f:  # one open per batch: N shards never need N descriptors at once
                pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
        except OSError as e:
            raise EmbcliError(f"cannot write spool file: {_errno_text(e)}, {p}") from None

    def rows(self, shard: int, provenance: dict | None) -> Iterator[Row]:
        return read_spool(str(self.file(shard)) if self.counts[shard] else None, provenance)


def read_spool(path: str | None, provenance: dict | None) -> Iterator[Row]:
    """The rows of one shard's spool file, in the order they were routed (None: the shard got none)."""
    if path is None:
        return
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below, after the last batch
    except OSError as e:
        raise EmbcliError(f"cannot read spool file: {_errno_text(e)}, {path}") from None
    with f:
        while True:
            try:
                ids, payloads, vectors = pickle.load(f)  # written by _Spool, in the write that spooled them
            except EOFError:
                return
            for rid, payload, vec in zip(ids, payloads, vectors, strict=True):
                yield Row(rid, payload, vec, provenance)


@dataclass(frozen=True)
class ShardTask:
    """One shard's build as plain data (it pickles): what a thread here, or a task on another node, runs.

    ``spool`` is the shard's spool file inside the sharded index's directory, so a task elsewhere
    reads it only where that directory is on a filesystem every node sees.
    """

    shard: int
    path: str
    spool: str | None  # None: the shard got no rows (a new index still gets it, empty)
    options: IndexOptions
    provenance: dict | None
    dims: int
    append: bool
    # A new index's shard directory is new; a task run again after its worker died (Ray retries it)
    # may find the shard it committed the first time, and rebuilds it from the same rows.
    force: bool
    store_text: bool
    text_field: str
    threads: int = 1

    def run(self) -> tuple[int, int]:
        """Build (or append to) the shard from its spooled rows; returns (added, replaced)."""
        writer = build_shard(
            self.path,
            read_spool(self.spool, self.provenance),
            self.options,
            provenance=self.provenance,
            dims=self.dims,
            append=self.append,
            force=self.force,
            store_text=self.store_text,
            text_field=self.text_field,
            threads=self.threads,
        )
        return writer.added, writer.replaced


def wants_shards(path: str | os.PathLike, shards: int | None) -> bool:
    """Whether a write to ``path`` is a sharded one: --shards N was given, or ``path`` is sharded already."""
    return shards is not None or is_sharded(path)


class ShardedWriter:
    """A write to a sharded index on this machine, in three steps: ``route``, ``build``, ``commit``.

    Opening takes the whole index's writer lock and checks what is at ``path``. ``route`` spools
    rows to per-shard files, ``build`` builds or appends to the shards that got rows (all of
    them for a new index), ``commit`` writes shards.json. ``close`` (also on error, or as a
    context manager) removes the spool; a new index that never committed is removed entirely.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        options: IndexOptions,
        *,
        shards: int | None = None,
        append: bool = False,
        force: bool = False,
        store_text: bool = True,
        text_field: str = "text",
    ) -> None:
        self.root = root = Path(path)
        self.options, self.store_text, self.text_field = options, store_text, text_field
        existing = is_sharded(root)
        self.meta = meta = read_shards(root) if existing and append else None
        if meta is not None:
            if shards is not None and shards != meta["n"]:
                raise UsageError(
                    f"--shards {shards} differs from the {meta['n']} shards of the index "
                    f"(it cannot be re-sharded), {root}"
                )
            n = meta["n"]
        elif existing and not force:
            raise UsageError(f"an index already exists at {root}", hint="--append adds to it, --force rebuilds it")
        else:
            n = shards if shards is not None else read_shards(root)["n"]  # --force alone keeps the shard count
        if not 1 <= n <= MAX_SHARDS:
            raise UsageError(f"--shards must be 1 to {MAX_SHARDS:,}, not {n}")
        if append and meta is None and (root / MANIFEST).exists():
            raise UsageError(
                f"--shards with --append: the index at {root} is not sharded, and an index cannot be re-sharded",
                hint="append without --shards, or rebuild it with --force --shards N",
            )
        self.n = n
        self.names = meta["shards"] if meta else [shard_name(i) for i in range(n)]
        self._created = _prepare_root(root, append=meta is not None, force=force)
        self._lock: int | None = _lock_index(root)
        self._committed = False
        self._started = False  # whether build() has begun: from then on, a new index's old files are gone
        self.spool: _Spool | None = None
        try:
            _remove_spools(root)
            self.spool = _Spool(Path(tempfile.mkdtemp(prefix=SPOOL_PREFIX, dir=root)), n)
        except BaseException:
            self.close()
            raise
        self.model: dict | None = meta["provenance"] if meta else None
        self._model_known = meta is not None
        self.dims: int | None = meta["dims"] if meta else None
        self.next_row: int = meta.get("next_row", 0) if meta else 0
        self.rows = self.added = self.replaced = 0
        self.built_shards: list[int] = []

    def route(self, rows: Iterable[Row], on_rows: Callable[[int], None] = lambda n: None) -> int:
        """Route rows to their shards' spool files, checking their model and width; returns how many.

        A row without an id gets the next row number (``next_row``), as in an unsharded index.
        """
        assert self.spool is not None
        start = self.rows
        for row in rows:
            if not self._model_known:
                self.model, self._model_known = absolute_model(row.provenance), True
            else:
                check_same_model(row.provenance, self.model, row.where)
            if self.dims is None:
                self.dims = len(row.vector)
            elif len(row.vector) != self.dims:
                raise IncompatibleError(
                    f"vectors have {len(row.vector)} dimensions, the index {self.dims}, {row.where}"
                )
            if row.id is None:
                row.id = self.next_row + self.rows  # the unsharded index's default: the row's number
            self.spool.add(shard_of(row.id, self.n), row)
            self.rows += 1
            if self.rows % SPOOL_BATCH == 0:
                on_rows(SPOOL_BATCH)
        self.spool.close()
        on_rows(self.rows % SPOOL_BATCH - start % SPOOL_BATCH if self.rows > start else 0)
        return self.rows - start

    def pending(self) -> list[int]:
        """The shards ``build`` will write: those that got rows, or every shard of a new index."""
        assert self.spool is not None
        return [i for i in range(self.n) if self.spool.counts[i] or self.meta is None]

    def tasks(self, threads: int | None = None, reproducible: bool = False) -> list[ShardTask]:
        """The pending shards' builds, ``threads`` build threads in all (default every core): the threads
        are shared out among the shards building at once; ``reproducible``: one thread a shard (each
        shard's graph is then the same on every run), still ``threads`` shards at a time.

        Begins the build: from here on, a new index's old files (--force) are gone.
        """
        assert self.spool is not None and self.dims is not None
        if self.meta is None and not self._started:
            # --force: the old index goes only now, once the whole input was read without error
            # (shards.json first: from then on there is no index), so a bad record leaves it as it was.
            self._started = True
            _clear(self.root, keep=self.spool.dir.name)
        todo = self.pending()
        threads = threads or build_threads()
        per_shard = 1 if reproducible else max(1, threads // max(1, min(threads, len(todo))))
        return [
            ShardTask(
                shard=i,
                path=str(self.root / self.names[i]),
                spool=str(self.spool.file(i)) if self.spool.counts[i] else None,
                options=self.options,
                provenance=self.model,
                dims=self.dims,
                append=self.meta is not None,
                force=self.meta is None,
                store_text=self.store_text,
                text_field=self.text_field,
                threads=per_shard,
            )
            for i in todo
        ]

    def built(self, shard: int, added: int, replaced: int) -> None:
        """A shard's build finished (``ShardTask.run``'s result, from wherever it ran)."""
        self.added += added
        self.replaced += replaced
        self.built_shards.append(shard)

    def build(
        self, threads: int | None = None, on_shard: Callable[[int], None] = lambda i: None, reproducible: bool = False
    ) -> None:
        """Build the pending shards here, up to ``threads`` (default every core) at a time (usearch and
        SQLite release the GIL); see ``tasks`` for how the threads are shared out."""
        threads = threads or build_threads()
        tasks = self.tasks(threads, reproducible)
        at_once = max(1, min(threads, len(tasks)))

        def done(task: ShardTask, result: tuple[int, int]) -> None:
            self.built(task.shard, *result)
            on_shard(task.shard)

        if at_once == 1:
            for task in tasks:
                done(task, task.run())
            return
        pool = ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="embcli-shard")
        try:
            futures: dict[Future, ShardTask] = {pool.submit(task.run): task for task in tasks}
            waiting = set(futures)
            while waiting:
                finished, waiting = wait(waiting, return_when=FIRST_EXCEPTION)
                for fut in finished:
                    done(futures[fut], fut.result())  # the first failure raises here; the rest are cancelled
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # shards being built finish (each atomically) first

    def commit(self) -> ShardedWrite:
        """Write shards.json (the new index exists from here on) and say what was done."""
        meta = write_shards_json(self.root, self.n, next_row=self.next_row + self.rows, names=self.names)
        self._committed = True
        count, size = _totals(self.root, meta)
        return ShardedWrite(meta, self.rows, self.added, self.replaced, sorted(self.built_shards), count, size)

    def close(self) -> None:
        """Remove the spool and release the lock; a new index that was not committed leaves nothing behind."""
        if self.spool is not None:
            shutil.rmtree(self.spool.dir, ignore_errors=True)
            self.spool = None
        if not self._committed and self.meta is None and (self._started or self._created):
            # Without shards.json its shards are no index: remove them (appended shards stay, committed).
            _clear(self.root)
            if self._created:
                shutil.rmtree(self.root, ignore_errors=True)
        if self._lock is not None:
            with contextlib.suppress(OSError):
                os.close(self._lock)
            self._lock = None

    def __enter__(self) -> ShardedWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_sharded(
    path: str | os.PathLike,
    rows: Iterable[Row],
    options: IndexOptions,
    *,
    shards: int | None = None,
    append: bool = False,
    force: bool = False,
    store_text: bool = True,
    text_field: str = "text",
    threads: int | None = None,
    on_rows: Callable[[int], None] = lambda n: None,
    on_shard: Callable[[int], None] = lambda i: None,
    reproducible: bool = False,
) -> ShardedWrite | None:
    """Build a sharded index of ``shards`` shards at ``path`` (or ``append`` to one): route, build, commit.

    None when there were no rows (a new index is then not created, an existing one not touched).
    """
    with ShardedWriter(
        path, options, shards=shards, append=append, force=force, store_text=store_text, text_field=text_field
    ) as w:
        if w.route(rows, on_rows) == 0:
            return None
        w.build(threads, on_shard, reproducible)
        return w.commit()


def _prepare_root(root: Path, *, append: bool, force: bool) -> bool:
    """Check what is at ``root`` before anything is written there; returns whether it was created."""
    if root.exists() and not root.is_dir():
        raise UsageError(f"index path exists and is not a directory, {root}")
    if append:
        return False
    if (root / MANIFEST).exists() and not force:
        raise UsageError(f"an index already exists at {root}", hint="--force rebuilds it (as shards)")
    if root.is_dir():
        leftovers = [p.name for p in root.iterdir() if not _ours(p.name)]
        unfinished = [p for p in root.iterdir() if SHARD_NAME.fullmatch(p.name)]
        if leftovers and not force:
            raise UsageError(f"directory is not empty and holds no index, {root}")
        if unfinished and not force and not (root / SHARDS).exists():
            raise UsageError(f"directory holds an unfinished sharded index, {root}", hint="--force rebuilds it")
        return False
    root.mkdir(parents=True)
    return True


def _ours(name: str) -> bool:
    """What a sharded index's directory may hold (and --force may remove)."""
    return (
        name in (SHARDS, ".lock") or bool(SHARD_NAME.fullmatch(name)) or name.startswith(SPOOL_PREFIX) or _is_ours(name)
    )


def _clear(root: Path, keep: str = "") -> None:
    """Remove an index at ``root``: shards.json first (from then on there is no index), then the rest that is ours.

    ``keep``: an entry to leave (the running write's spool).
    """
    with contextlib.suppress(FileNotFoundError):
        (root / SHARDS).unlink()
        fsync_dir(root)
    with contextlib.suppress(FileNotFoundError):
        (root / MANIFEST).unlink()
        fsync_dir(root)
    for p in root.iterdir():
        if p.name in (".lock", keep) or not _ours(p.name):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _remove_spools(root: Path) -> None:
    """Spool directories of writes that crashed (only a writer holding the lock gets here)."""
    for p in root.iterdir():
        if p.name.startswith(SPOOL_PREFIX) and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)


def _totals(root: Path, meta: dict) -> tuple[int, int]:
    """Vectors and bytes of the whole index, from the shards' manifests."""
    count = size = 0
    for p in shard_paths(root, meta):
        m = read_manifest(p)
        count += m["count"]
        size += disk_bytes(p, m)
    return count, size + (root / SHARDS).stat().st_size


def delete_sharded(path: str | os.PathLike, ids: Iterable[object]) -> tuple[int, int, list[int]]:
    """Remove ids from a sharded index, each from the one shard it routes to.

    Returns (removed, vectors left, shards rewritten). Only shards that held one of the ids are rewritten.
    """
    root = Path(path)
    meta = read_shards(root)
    lock = _lock_index(root)
    try:
        _remove_spools(root)
        routed: dict[int, list[object]] = {}
        for i in ids:
            routed.setdefault(shard_of(i, meta["n"]), []).append(i)
        removed, touched = 0, []
        for s, group in sorted(routed.items()):
            gone = delete_from_shard(root / meta["shards"][s], group)
            if gone:
                removed += gone
                touched.append(s)
        if touched:
            meta = write_shards_json(root, meta["n"], next_row=meta.get("next_row", 0), names=meta["shards"])
    finally:
        with contextlib.suppress(OSError):
            os.close(lock)
    return removed, _totals(root, meta)[0], touched


# ---------------------------------------------------------------------------- checks


def verify_sharded(path: str | os.PathLike) -> dict:
    """Check a sharded index in full: shards.json, every shard as ``verify_index`` does, their agreement
    with shards.json, and that every id lives in the shard it routes to. Returns shards.json plus the count.
    """
    root = Path(path)
    meta = read_shards(root)
    count = 0
    for s, p in enumerate(shard_paths(root, meta)):
        m = verify_index(p)
        check_shard(m, meta, p)
        count += m["count"]
        _check_routing(p, m, s, meta["n"])
    return {**meta, "count": count}


def _check_routing(p: Path, m: dict, shard: int, n: int) -> None:
    meta_file = p / m["files"]["meta"]["name"]
    db = sqlite3.connect(meta_file.resolve().as_uri() + "?mode=ro&immutable=1", uri=True)
    try:
        for (id_json,) in db.execute("SELECT id FROM items"):
            try:
                rid = orjson.loads(id_json)
            except orjson.JSONDecodeError:
                raise IncompatibleError(f"shard holds an id that is not JSON ({id_json[:40]!r}), {p}") from None
            if shard_of(rid, n) != shard:
                raise IncompatibleError(
                    f"shard holds id {rid!r}, which routes to shard {shard_of(rid, n)}, not {shard}, {p}",
                    hint="was a record added to the shard directly? rebuild the index",
                )
    except sqlite3.Error as e:
        raise IncompatibleError(f"index metadata is unreadable ({e}), {meta_file}") from None
    finally:
        db.close()


def shard_counts(path: str | os.PathLike, meta: dict | None = None) -> list[int]:
    """Vectors per shard, from the shards' manifests (cheap)."""
    meta = meta if meta is not None else read_shards(path)
    return [read_manifest(p)["count"] for p in shard_paths(path, meta)]
