"""``embed_arrow``: an Arrow batch in, the same batch with its vectors out, for any engine that moves Arrow.

Ray Data (``map_batches``), Spark (``mapInArrow``), Dask (``map_partitions``
over Arrow tables) and DuckDB all hand out Arrow record batches; this is the
one function they need. The vectors are those of ``Encoder.embed``; the
vector column and the provenance in the schema metadata are what embcli's
Parquet/Arrow writer makes, so embcli reads the result back as it reads
``embcli embed -o x.parquet``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from embcli.errors import InputError
from embcli.io.streams import BadRecords, Record, get_text
from embcli.io.tables import META_KEY, require_pyarrow

if TYPE_CHECKING:
    from embcli.api.encoding import Encoder

_META_VERSION = 1


def embed_arrow(
    batch: Any,
    encoder: Encoder,
    *,
    text_field: str = "text",
    vector_field: str = "embedding",
    model_field: str = "embedding_model",
    overwrite: bool = False,
    skip_bad: bool = False,
) -> Any:
    """``batch`` (a ``pyarrow.RecordBatch`` or ``Table``) with a ``fixed_size_list<float32>[D]`` vector column.

    Every column passes through; the vector is added last as ``vector_field``,
    and the provenance (model, options) goes into the schema metadata under
    ``embcli``, as ``model_field`` (``''`` leaves it out), the way embcli's
    table writer keeps it. A row whose text is missing, null, empty or not a
    string is bad input: ``InputError`` naming the row of the batch, or, with
    ``skip_bad``, the row is dropped. A batch that already has the vector (or
    the provenance) column is refused unless ``overwrite``.
    """
    pa = require_pyarrow("embed_arrow")
    if isinstance(batch, pa.Table):
        table = batch.combine_chunks()
        batch = pa.RecordBatch.from_arrays(
            [col.chunk(0) if col.num_chunks else pa.array([], col.type) for col in table.columns],
            schema=table.schema,
        )
    names = batch.schema.names
    if text_field not in names:
        raise InputError(
            f"batch has no {text_field!r} column (columns: {', '.join(names[:8]) or 'none'})",
            hint="name the text column with text_field=",
        )
    for name in (vector_field, model_field):
        if name and name in names and not overwrite:
            raise InputError(f"batch already has a {name!r} column", hint="name another, or pass overwrite=True")
    bad = BadRecords(skip=skip_bad)
    keep: list[int] = []
    texts: list[str] = []
    for i, value in enumerate(batch.column(names.index(text_field)).to_pylist()):
        try:
            texts.append(get_text(Record(i + 1, {text_field: value}, source="<batch>", by_row=True), text_field))
        except InputError as e:
            bad.handle(e)
            continue
        keep.append(i)
    if len(keep) < batch.num_rows:
        batch = batch.take(pa.array(keep, type=pa.int64()))
    vectors = encoder.embed(texts)
    column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), type=pa.float32()), encoder.dims)
    drop = {vector_field, model_field} - {""}
    fields = [f for f in batch.schema if f.name not in drop]
    arrays = [batch.column(i) for i, f in enumerate(batch.schema) if f.name not in drop]
    fields.append(pa.field(vector_field, column.type))
    arrays.append(column)
    metadata = dict(batch.schema.metadata or {})
    metadata[META_KEY] = _meta(metadata.get(META_KEY), model_field, encoder.provenance, len(fields))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields, metadata=metadata))


def _meta(old: bytes | None, model_field: str, provenance: dict, position: int) -> bytes:
    """embcli's schema metadata: what was there (JSON-text columns), with this provenance."""
    meta: dict = {}
    if old:
        try:
            loaded = orjson.loads(old)
        except orjson.JSONDecodeError:
            loaded = None
        meta = loaded if isinstance(loaded, dict) else {}
    meta["version"] = _META_VERSION
    if model_field:
        meta["provenance"] = {"field": model_field, "value": provenance, "position": position}
    else:
        meta.pop("provenance", None)
    meta.setdefault("json_columns", [])
    return orjson.dumps(meta)
