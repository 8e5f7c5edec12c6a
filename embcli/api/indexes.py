"""``embcli.Index``: build, open and search on-disk indexes, as ``embcli index`` and ``search`` do."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from embcli.api.encoding import ensure_model
from embcli.api.records import check_finite
from embcli.choices import FUSIONS, SEARCH_MODES
from embcli.errors import UsageError

if TYPE_CHECKING:
    from embcli.runtime.adapter import Adapter
    from embcli.search.query import Hit, Searcher


def _adapter(adapter: str | os.PathLike | Adapter | None) -> Adapter | None:
    """An adapter given as a file path is loaded (and checked)."""
    if adapter is None or not isinstance(adapter, (str, os.PathLike)):
        return adapter
    from embcli.runtime.adapter import load

    return load(os.fspath(adapter))


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
        fts: bool | None = None,
        fts_tokenizer: str = "porter",
        adapter: str | os.PathLike | Adapter | None = None,
    ) -> Index:
        """Build (or ``append`` to) the index at ``path`` from records with vectors, or from a 2-D array.

        Records keep every field but the vector as payload and their ``id``; array
        rows take ``ids`` (default: row numbers). The model comes from the records'
        provenance, or ``model`` for bare vectors. ``shards`` N builds a sharded index
        (records routed by id, as ``embcli index --shards N``); appending to a sharded
        index routes each record to its shard. The graph is built with ``threads`` threads, by default
        every core (as ``embcli index``); ``reproducible`` (or ``threads=1``) builds the same graph on
        every run, single-threaded.
        ``fts`` keeps a full-text index of ``text_field`` for
        ``search(mode="hybrid")`` and ``"lexical"`` (default: yes for a new index; an append keeps what
        the index has), with ``fts_tokenizer`` "porter" (English stemming) or "unicode61" (none).
        ``adapter`` (a file or ``load_adapter``'s result) lets
        in records whose vectors that adapter mapped into the index's model (``embed --adapter``).
        """
        from embcli.io.streams import BadRecords, Record, parse_vector
        from embcli.search.index import IndexOptions, IndexWriter
        from embcli.search.ingest import IngestOptions, add_all, prepare_rows
        from embcli.search.shards import wants_shards, write_sharded

        options = IndexOptions(
            metric, dtype, connectivity, expansion_add, expansion_search, keep_floats, fts, fts_tokenizer
        )
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
            ingest = IngestOptions(vector_field, model_field, model, id_list, adapter=_adapter(adapter))
            rows = prepare_rows(items, ingest, BadRecords())
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
            ingest = IngestOptions(vector_field, model_field, model, id_list, adapter=_adapter(adapter))
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
        adapter: str | os.PathLike | Adapter | None = None,
        model: str | None = None,
    ) -> Index:
        """Open an index (several paths, or a sharded index: shards searched together) after checking its files.

        Cheap at any size: manifests, sizes, headers and the graph's structure; no checksums.
        ``adapter``: text queries are embedded by the adapter's new model (found at ``model``, default the
        one it records) and mapped into the index's space; the index must hold the adapter's old model.
        """
        from embcli.search.query import QueryOptions, Searcher

        if not paths:
            raise UsageError("Index.open() needs a path")
        query = QueryOptions(prompt, prompt_name, device, threads, model=model, prepare=ensure_model)
        query.adapter = _adapter(adapter)
        return cls(Searcher([os.fspath(p) for p in paths], query))

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
        mode: str = "dense",
        fusion: str = "rrf",
        rrf_k: float = 60.0,
        alpha: float = 0.5,
        fusion_depth: int = 100,
        fts_syntax: bool = False,
        explain: bool = False,
        group_by: str | None = None,
        group_fusion: str = "max",
        group_top: int = 3,
    ) -> list[list[Hit]]:
        """Top-``k`` hits per query, best first: texts (embedded as the index's manifest says) or vectors.

        ``mode`` "dense" (vectors), "lexical" (BM25 over the index's full-text index; texts only,
        nothing embedded) or "hybrid" (both, fused by ``fusion`` "rrf" with constant ``rrf_k``, or
        "linear" with the dense weight ``alpha``, from each side's top ``fusion_depth``), as
        ``embcli search --hybrid`` / ``--lexical``. ``explain``: hits carry ``ranks``
        ({"dense_rank", "lexical_rank"}). ``fts_syntax``: texts are FTS5 query expressions.

        ``group_by`` (e.g. ``"parent"`` for chunks from ``embed_records(chunking=...)``): the top ``k``
        values of that payload field, each as its best hit, scored by ``group_fusion`` (``"max"``, or
        ``"sum"`` of its ``group_top`` best hits), with ``Hit.group_hits``; as ``search --group-by``.
        """
        from embcli.search.grouping import check_grouping
        from embcli.search.query import SearchOptions

        if group_by is not None:
            check_grouping(group_by, group_fusion, group_top)

        if isinstance(queries, str):
            raise UsageError("search() takes a list of queries, not one string")
        if mode not in SEARCH_MODES:
            raise UsageError(f"unknown search mode {mode!r}; choose from {', '.join(SEARCH_MODES)}")
        if fusion not in FUSIONS:
            raise UsageError(f"unknown fusion {fusion!r}; choose from {', '.join(FUSIONS)}")
        texts: list[str] | None = None
        if isinstance(queries, np.ndarray):
            if mode != "dense":
                raise UsageError(f"{mode} search needs text queries, not vectors")
            vectors = np.atleast_2d(np.asarray(queries, dtype=np.float32))
            check_finite(vectors)
        elif not len(queries):
            return []
        else:
            texts = list(queries)
            if mode != "dense":
                for n, text in enumerate(texts, start=1):
                    if not isinstance(text, str) or not text or text.isspace():
                        raise UsageError(f"query number {n} is not a non-empty string")
                self._searcher.check_words()
            vectors = self._searcher.embed(texts) if mode != "lexical" else None
        options = SearchOptions(
            k,
            exact,
            where,
            expansion_search,
            rescore=rescore,
            mode=mode,
            fusion=fusion,
            rrf_k=rrf_k,
            alpha=alpha,
            depth=fusion_depth,
            fts_syntax=fts_syntax,
            explain=explain,
            group_by=group_by,
            group_fusion=group_fusion,
            group_top=group_top,
        )
        if full_scan_threshold is not None:
            options.full_scan_threshold = full_scan_threshold
        return self._searcher.search(vectors, options, texts=texts if mode != "dense" else None)

    def close(self) -> None:
        self._searcher.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
