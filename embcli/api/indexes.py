"""``embcli.Index``: build, open and search on-disk indexes, as ``embcli index`` and ``search`` do."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from embcli.api.encoding import ensure_model
from embcli.api.records import check_finite
from embcli.errors import UsageError

if TYPE_CHECKING:
    from embcli.search.query import Hit, Searcher


class Index:
    """An on-disk index (one directory, or several shards searched as one).

    >>> Index.build("docs.idx", enc.embed_records(records))   # doctest: +SKIP
    >>> Index.open("docs.idx").search(["query text"], k=5)    # doctest: +SKIP
    """

    def __init__(self, searcher: Searcher) -> None:
        self._searcher = searcher

    @classmethod
    def build(
        cls,
        path: str | os.PathLike,
        records_or_vectors: Iterable[dict] | np.ndarray,
        *,
        ids: Sequence[object] | None = None,
        metric: str = "cos",
        dtype: str = "f32",
        model: str | None = None,
        append: bool = False,
        force: bool = False,
        vector_field: str = "embedding",
        model_field: str = "embedding_model",
        store_text: bool = True,
        text_field: str = "text",
        connectivity: int = 16,
        expansion_add: int = 128,
        expansion_search: int = 128,
        keep_floats: bool = False,
        threads: int | None = None,
        reproducible: bool = False,
        shards: int | None = None,
    ) -> Index:
        """Build (or ``append`` to) the index at ``path`` from records with vectors, or from a 2-D array.

        Records keep every field but the vector as payload and their ``id``; array
        rows take ``ids`` (default: row numbers). The model comes from the records'
        provenance, or ``model`` for bare vectors. ``shards`` N builds a sharded index
        (records routed by id, as ``embcli index --shards N``); appending to a sharded
        index routes each record to its shard. The graph is built with ``threads`` threads, by default
        every core (as ``embcli index``); ``reproducible`` (or ``threads=1``) builds the same graph on
        every run, single-threaded.
        """
        from embcli.io.streams import BadRecords, Record, parse_vector
        from embcli.search.index import IndexOptions, IndexWriter
        from embcli.search.ingest import IngestOptions, add_all, prepare_rows
        from embcli.search.shards import wants_shards, write_sharded

        options = IndexOptions(metric, dtype, connectivity, expansion_add, expansion_search, keep_floats)
        if isinstance(records_or_vectors, np.ndarray):
            matrix = np.asarray(records_or_vectors, dtype=np.float32)
            if matrix.ndim != 2:
                raise UsageError(f"vectors must be a 2-D array, got shape {matrix.shape}")
            check_finite(matrix)
            items: Iterable = (
                (Record(i, {}, npy=True, source="<array>"), row) for i, row in enumerate(matrix, start=1)
            )
            id_list = list(ids) if ids is not None else None
        else:
            if ids is not None:
                raise UsageError("ids are for an array of vectors; records carry their own id")

            def checked() -> Iterator:
                for i, rec in enumerate(records_or_vectors, start=1):
                    where = f"<records> record {i}"
                    vec = rec.get(vector_field)
                    if isinstance(vec, np.ndarray):
                        vec = vec.tolist()
                    yield Record(i, dict(rec), source="<records>"), parse_vector(vec, vector_field, where)

            items, id_list = checked(), None
        if wants_shards(path, shards):
            if model:
                ensure_model(model, "cpu")
            rows = prepare_rows(items, IngestOptions(vector_field, model_field, model, id_list), BadRecords())
            done = write_sharded(
                path,
                rows,
                options,
                shards=shards,
                append=append,
                force=force,
                store_text=store_text,
                text_field=text_field,
                threads=threads,
                reproducible=reproducible,
            )
            if done is None and not append:
                raise UsageError("no vectors to index")
            return cls.open(path)
        writer = IndexWriter(
            path,
            options,
            append=append,
            force=force,
            store_text=store_text,
            text_field=text_field,
            threads=threads,
            reproducible=reproducible,
        )
        try:
            bad = BadRecords()
            if model:
                ensure_model(model, "cpu")
            ingest = IngestOptions(vector_field, model_field, model, id_list)
            rows = add_all(writer, items, ingest, bad)
            if rows == 0 and not append:
                raise UsageError("no vectors to index")
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        return cls.open(path)

    @classmethod
    def open(
        cls,
        *paths: str | os.PathLike,
        device: str = "auto",
        threads: int | None = None,
        prompt: str | None = None,
        prompt_name: str | None = None,
    ) -> Index:
        """Open an index (several paths, or a sharded index: shards searched together) after checking its files.

        Cheap at any size: manifests, sizes, headers and the graph's structure; no checksums.
        """
        from embcli.search.query import QueryOptions, Searcher

        if not paths:
            raise UsageError("Index.open() needs a path")
        return cls(
            Searcher(
                [os.fspath(p) for p in paths], QueryOptions(prompt, prompt_name, device, threads, prepare=ensure_model)
            )
        )

    @property
    def dims(self) -> int:
        return self._searcher.dims

    @property
    def provenance(self) -> dict | None:
        """The model and options that made the indexed vectors (None when the index records none)."""
        return self._searcher.provenance

    def __len__(self) -> int:
        return sum(r.count for r in self._searcher.readers)

    def search(
        self,
        queries: Sequence[str] | np.ndarray,
        k: int = 10,
        *,
        where: str | None = None,
        exact: bool = False,
        expansion_search: int | None = None,
        full_scan_threshold: int | None = None,
        rescore: int = 0,
    ) -> list[list[Hit]]:
        """Top-``k`` hits per query, best first: texts (embedded as the index's manifest says) or vectors."""
        from embcli.search.query import SearchOptions

        if isinstance(queries, str):
            raise UsageError("search() takes a list of queries, not one string")
        if isinstance(queries, np.ndarray):
            vectors = np.atleast_2d(np.asarray(queries, dtype=np.float32))
            check_finite(vectors)
        elif not len(queries):
            return []
        else:
            vectors = self._searcher.embed(list(queries))
        options = SearchOptions(k, exact, where, expansion_search, rescore=rescore)
        if full_scan_threshold is not None:
            options.full_scan_threshold = full_scan_threshold
        return self._searcher.search(vectors, options)

    def close(self) -> None:
        self._searcher.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
