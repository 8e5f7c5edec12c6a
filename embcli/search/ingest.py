"""Records and vectors into an index writer: ids, payloads and provenance checked on the way.

What ``embcli index`` and ``Index.build`` share. A record's model (its
provenance field) must agree with the first one's and with the index it is
appended to; vectors without one take ``model`` (checked against their width).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from embcli.errors import IncompatibleError, InputError, UsageError
from embcli.io.streams import BadRecords, Record
from embcli.runtime import provenance
from embcli.runtime.adapter import Adapter, unmapped
from embcli.search.index import IndexWriter

BATCH = 4096  # vectors handed to usearch at once


@dataclass
class IngestOptions:
    vector_field: str = "embedding"
    model_field: str = "embedding_model"  # '' : records carry no provenance
    model: str | None = None  # the model of vectors that do not record one
    ids: list[object] | None = None  # ids of bare vector rows (NPY), in order; default: row numbers
    id_field: str = "id"  # the records' id field (a table keyed by `name` keeps its keys)
    # Vectors mapped into the index's space by this query-drift adapter are taken (as its old model's);
    # vectors mapped by another adapter, or by any when this is None, are refused (exit 4).
    adapter: Adapter | None = None


@dataclass
class Row:
    """One record ready for an index: its id (None: the index numbers it), payload, vector and model."""

    id: object | None
    payload: dict
    vector: np.ndarray
    provenance: dict | None
    where: str = "<records>"


def prepare_rows(items: Iterable[tuple[Record, np.ndarray]], options: IngestOptions, bad: BadRecords) -> Iterator[Row]:
    """Each (record, vector) as a Row: its id, payload and model checked; bad records go to ``bad``.

    NPY rows come as records with ``npy`` set and their 1-based row number as ``line``.
    """
    opts = options
    model_prov: dict | None = None
    rows = 0
    for rec, vec in items:
        loc = rec.where
        prov = unmapped(rec.data.get(opts.model_field) if opts.model_field else None, opts.adapter, loc)
        if prov is None and opts.model:
            if model_prov is None or model_prov["dims"] != len(vec):
                model_prov = provenance.for_model(opts.model, len(vec))
            prov = model_prov
        elif prov is not None and opts.model and prov.get("model") != opts.model:
            raise IncompatibleError(f"records say model {prov.get('model')!r}, --model says {opts.model!r}, {loc}")
        if prov is not None and not provenance.is_valid(prov, len(vec)):
            bad.handle(InputError(f"bad {opts.model_field!r} field (not one written by embcli embed), {loc}"))
            continue
        if rec.npy:
            # By row number, not by count: --ids stay with their rows when bad rows are skipped.
            if opts.ids is not None and rec.line > len(opts.ids):
                raise InputError(f"--ids has {len(opts.ids)} ids, but the input has more rows, {loc}")
            rid = opts.ids[rec.line - 1] if opts.ids is not None else None
            payload: dict = {}
        else:
            if opts.ids is not None:
                raise UsageError(f"--ids is for NPY input; records carry their own id (--id-field), {loc}")
            rid = rec.data.get(opts.id_field)
            if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (str, int))):
                bad.handle(InputError(f"id must be a string or an integer, {loc}"))
                continue
            dropped = (opts.vector_field, opts.model_field)
            payload = {k: v for k, v in rec.data.items() if k not in dropped}
        rows += 1
        yield Row(rid, payload, vec, prov, loc)
    if opts.ids is not None and rows + bad.count != len(opts.ids):
        raise InputError(f"--ids has {len(opts.ids)} ids for {rows + bad.count} input rows")


def add_rows(writer: IndexWriter, rows: Iterable[Row], on_batch: Callable[[int], None] = lambda n: None) -> int:
    """Add every row to ``writer`` in batches (a known id is replaced); returns the number added."""
    batch: list[Row] = []
    count = 0

    def flush() -> None:
        if batch:
            writer.add([r.id for r in batch], [r.payload for r in batch], np.vstack([r.vector for r in batch]))
            on_batch(len(batch))
            batch.clear()

    for row in rows:
        writer.set_provenance(row.provenance, row.where)
        batch.append(row)
        count += 1
        if len(batch) >= BATCH:
            flush()
    flush()
    return count


def add_all(
    writer: IndexWriter,
    items: Iterable[tuple[Record, np.ndarray]],
    options: IngestOptions,
    bad: BadRecords,
    on_batch: Callable[[int], None] = lambda n: None,
) -> int:
    """Add every (record, vector) to ``writer``; returns the number of rows added."""
    return add_rows(writer, prepare_rows(items, options, bad), on_batch)
