"""Records and vectors into an index writer: ids, payloads and provenance checked on the way.

What ``embcli index`` and ``Index.build`` share. A record's model (its
provenance field) must agree with the first one's and with the index it is
appended to; vectors without one take ``model`` (checked against their width).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from embcli.errors import IncompatibleError, InputError, UsageError
from embcli.io.streams import BadRecords, Record
from embcli.runtime import provenance
from embcli.search.index import IndexWriter

BATCH = 4096  # vectors handed to usearch at once


@dataclass
class IngestOptions:
    vector_field: str = "embedding"
    model_field: str = "embedding_model"  # '' : records carry no provenance
    model: str | None = None  # the model of vectors that do not record one
    ids: list[object] | None = None  # ids of bare vector rows (NPY), in order; default: row numbers
    id_field: str = "id"  # the records' id field (a table keyed by `name` keeps its keys)


def add_all(
    writer: IndexWriter,
    items: Iterable[tuple[Record, np.ndarray]],
    options: IngestOptions,
    bad: BadRecords,
    on_batch: Callable[[int], None] = lambda n: None,
) -> int:
    """Add every (record, vector) to ``writer``; returns the number of rows added.

    NPY rows come as records with ``npy`` set and their 1-based row number as ``line``.
    """
    opts = options
    batch_ids: list[object | None] = []
    batch_payloads: list[dict] = []
    batch_vecs: list[np.ndarray] = []
    model_prov: dict | None = None
    rows = 0

    def flush() -> None:
        if batch_vecs:
            writer.add(batch_ids, batch_payloads, np.vstack(batch_vecs))
            on_batch(len(batch_vecs))
            for pending in (batch_ids, batch_payloads, batch_vecs):
                pending.clear()

    for rec, vec in items:
        loc = rec.where
        prov = rec.data.get(opts.model_field) if opts.model_field else None
        if prov is None and opts.model:
            if model_prov is None or model_prov["dims"] != len(vec):
                model_prov = provenance.for_model(opts.model, len(vec))
            prov = model_prov
        elif prov is not None and opts.model and prov.get("model") != opts.model:
            raise IncompatibleError(f"records say model {prov.get('model')!r}, --model says {opts.model!r}, {loc}")
        if prov is not None and not provenance.is_valid(prov, len(vec)):
            bad.handle(InputError(f"bad {opts.model_field!r} field (not one written by embcli embed), {loc}"))
            continue
        writer.set_provenance(prov, loc)
        if rec.npy:
            # By row number, not by count: --ids stay with their rows when bad rows are skipped.
            if opts.ids is not None and rec.line > len(opts.ids):
                raise InputError(f"--ids has {len(opts.ids)} ids, but the input has more rows, {loc}")
            batch_ids.append(opts.ids[rec.line - 1] if opts.ids is not None else None)
            batch_payloads.append({})
        else:
            if opts.ids is not None:
                raise UsageError(f"--ids is for NPY input; records carry their own id (--id-field), {loc}")
            rid = rec.data.get(opts.id_field)
            if rid is not None and (isinstance(rid, bool) or not isinstance(rid, (str, int))):
                bad.handle(InputError(f"id must be a string or an integer, {loc}"))
                continue
            batch_ids.append(rid)
            dropped = (opts.vector_field, opts.model_field)
            batch_payloads.append({k: v for k, v in rec.data.items() if k not in dropped})
        batch_vecs.append(vec)
        rows += 1
        if len(batch_vecs) >= BATCH:
            flush()
    flush()
    if opts.ids is not None and rows + bad.count != len(opts.ids):
        raise InputError(f"--ids has {len(opts.ids)} ids for {rows + bad.count} input rows")
    return rows
