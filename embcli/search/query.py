"""Searching one index or several shards with text or vector queries.

This is what ``embcli search`` and ``Index.search`` share: text queries are
embedded exactly as the index's manifest says (model, options, prompt), query
vectors are checked against the index's width and model, and hits come back
with their ids and payloads.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
import orjson

from embcli.choices import SEARCH_MODES
from embcli.env import current
from embcli.errors import IncompatibleError, InputError, UsageError
from embcli.io.prefetch import chunked_prefetch
from embcli.io.readers import iter_records
from embcli.io.streams import BadRecords, Record, Source, get_text, iter_npy_rows, parse_vector
from embcli.runtime import provenance
from embcli.runtime.adapter import AdaptedEncoder, Adapter
from embcli.runtime.encoder import Encoder, Tokens, encoder_from_provenance
from embcli.search import lexical
from embcli.search.fusion import ALPHA, DEPTH, RRF_K, fuse
from embcli.search.grouping import grouped_search
from embcli.search.index import FULL_SCAN_THRESHOLD, SEARCH_THREADS, IndexReader, query_model, search_shards
from embcli.search.shards import open_readers


@dataclass
class SearchOptions:
    """How hits are found (the ``search`` command's search flags)."""

    k: int = 10
    exact: bool = False
    where: str | None = None
    expansion_search: int | None = None
    full_scan_threshold: int = FULL_SCAN_THRESHOLD
    rescore: int = 0
    # dense: vectors; lexical: BM25 over the full-text index; hybrid: both, fused (search/fusion.py).
    mode: str = "dense"
    fusion: str = "rrf"
    rrf_k: float = RRF_K
    alpha: float = ALPHA
    depth: int = DEPTH  # hybrid: candidates taken from each side (at least k)
    fts_syntax: bool = False  # query texts are FTS5 query expressions, not plain words
    explain: bool = False  # hits say their dense_rank and lexical_rank

    @property
    def dense(self) -> bool:
        return self.mode != "lexical"

    @property
    def words(self) -> bool:
        return self.mode != "dense"

    # One hit per value of this payload field (search/grouping.py), after any fusion.
    group_by: str | None = None
    group_fusion: str = "max"
    group_top: int = 3  # hits summed per group by the "sum" fusion


@dataclass
class QueryOptions:
    """How text queries are embedded: the index's model, with these runtime choices."""

    prompt: str | None = None  # None: the index's prompt
    prompt_name: str | None = None
    device: str = "auto"
    threads: int | None = None
    batch_size: int = 32
    model: str | None = None  # where the index's model is now (a moved directory); checked by sha256
    # Called with (model name, device) before the model is first resolved: the CLI and the API
    # build the built-in model's graph there (search/ never builds).
    prepare: Callable[[str, str], None] | None = None
    # Query-drift adapter: text queries are embedded by its new model and mapped into the index's
    # (old) space; the index must hold exactly the adapter's old model (exit 4 otherwise).
    adapter: Adapter | None = None


@dataclass
class QueryFields:
    """Which fields of a query record hold what (the search command's field flags)."""

    text: str = "text"
    vector: str = "embedding"
    model: str = "embedding_model"  # '' : query vectors record no model
    output: str = "results"  # where hits go: a query that already has it is bad input


CHUNK = 256  # queries embedded and searched together


@dataclass
class Hit:
    """One search result: the record's id, a higher-is-better score, its rank and its stored payload."""

    id: object
    score: float
    rank: int
    payload: dict = field(default_factory=dict)
    # With SearchOptions.explain: the hit's rank in the dense and in the BM25 ranking (None: not in its top).
    ranks: dict[str, int | None] | None = None
    group_hits: int | None = None  # grouped search: the group's hits among the candidates

    def as_record(self) -> dict:
        """The hit as ``search`` writes it; payload fields named like ours are kept under ``payload``."""
        out: dict = {"id": self.id, "score": round(self.score, 6), "rank": self.rank}
        if self.ranks is not None:
            out.update(self.ranks)
        if self.group_hits is not None:
            out["group_hits"] = self.group_hits
        clash = {k: v for k, v in self.payload.items() if k in out and k != "id"}
        out.update((k, v) for k, v in self.payload.items() if k not in out)
        if clash:
            out["payload"] = clash
        return out


Place = tuple[int, int]  # (shard, key): where a record is among the searched indexes


@dataclass
class StoredItem:
    """An indexed item found by id: its vector, and every place it is held (for --like)."""

    id: object
    vector: np.ndarray
    places: list[Place]
    approximate: str | None = None  # None: the vector as indexed; else what stands in for it


def id_candidates(text: str) -> list[object]:
    """The ids a command-line word names, as an ids file reads them (``read_ids``), most likely first.

    ``42`` is the integer id 42, then the string "42"; ``"42"`` (quoted JSON) only the string; any
    other word is that string.
    """
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return [value] if value == text else [value, text]
    return [text]


class Searcher:
    """Open shards searched together, and the encoder for text queries (loaded on first need)."""

    def __init__(self, paths: Sequence[str], query: QueryOptions | None = None) -> None:
        if not paths:
            raise IncompatibleError("no index to search")
        self.paths = [str(p) for p in paths]
        # A sharded index (a directory with shards.json) is searched as its shards.
        self.readers: list[IndexReader] = open_readers(self.paths)
        self.provenance: dict | None = self.readers[0].provenance
        self.dims: int = self.readers[0].dims
        self.query = query or QueryOptions()
        self._encoder: Encoder | AdaptedEncoder | None = None
        if self.query.adapter is not None:
            self.query.adapter.check_target(self.provenance, self.paths[0])

    def encoder(self) -> Encoder | AdaptedEncoder:
        """The index's model, made to embed queries exactly as the documents were embedded.

        With an adapter: its new model (``--model``: where that model is now), mapped into the index's space.
        """
        if self._encoder is None and self.query.adapter is not None:
            q, adapter = self.query, self.query.adapter
            if q.prepare is not None:
                q.prepare(q.model or adapter.new["model"], q.device)
            enc = encoder_from_provenance(
                query_model(adapter.new, q.model, self.readers[0].path),
                prompt=q.prompt,
                prompt_name=q.prompt_name,
                device=q.device,
                threads=q.threads,
                batch_size=q.batch_size,
            )
            self._encoder = AdaptedEncoder(enc, adapter)
        if self._encoder is None:
            if self.provenance is None:
                raise IncompatibleError(
                    f"index {self.paths[0]} records no model, so it cannot embed text queries",
                    hint="give queries with an embedding field, or rebuild the index from `embcli embed` output",
                )
            q = self.query
            if q.prepare is not None:
                q.prepare(q.model or self.provenance["model"], q.device)
            self._encoder = encoder_from_provenance(
                query_model(self.provenance, q.model, self.readers[0].path),
                prompt=q.prompt,
                prompt_name=q.prompt_name,
                device=q.device,
                threads=q.threads,
                batch_size=q.batch_size,
            )
        return self._encoder

    def tokenize(self, text: str) -> Tokens:
        return self.encoder().tokenize(text)

    def check_vector(self, vec: np.ndarray, made_by: object, where: str) -> np.ndarray:
        """A query vector must have the index's width and come from its model and options.

        With an adapter, a vector of its new model is mapped into the index's space first.
        """
        adapter = self.query.adapter
        if adapter is not None and isinstance(made_by, dict) and adapter.check_source_ok(made_by):
            return adapter.map(vec[None, :])[0]
        if (
            made_by is not None
            and self.provenance is not None
            and provenance.differs_from_index(made_by, self.provenance)
        ):
            raise IncompatibleError(f"query vector made by another model or options than the index, {where}")
        if len(vec) != self.dims:
            raise IncompatibleError(f"query vector has {len(vec)} dimensions, the index {self.dims}, {where}")
        return vec

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder().encode(texts)

    def stored(self, ref: object, *, word: bool = False) -> StoredItem:
        """The indexed item ``ref`` names, with its vector, for a more-like-this query.

        ``ref`` is an id, or with ``word`` a command-line word naming one (see ``id_candidates``).
        Every shard holding the id is noted, so that all its copies can be left out of its hits.
        An id no shard holds is bad input (exit 3).
        """
        for candidate in id_candidates(str(ref)) if word else [ref]:
            places = [(s, key) for s, r in enumerate(self.readers) if (key := r.key_of(candidate)) is not None]
            if places:
                shard, key = places[0]
                reader = self.readers[shard]
                return StoredItem(candidate, reader.stored_vector(key), places, reader.stored_vectors_are)
        where = self.paths[0] if len(self.paths) == 1 else f"in none of the {len(self.paths)} indexes"
        raise InputError(f"--like: no item has the id {ref!r}, {where}")

    def search(
        self,
        vectors: np.ndarray | None,
        options: SearchOptions,
        exclude: Sequence[Collection[Place]] | None = None,
        texts: Sequence[str | None] | None = None,
    ) -> list[list[Hit]]:
        """Top-k hits per query over every shard, merged, with payloads.

        Dense (``options.mode``): by ``vectors``. Lexical: by BM25 over ``texts``. Hybrid: both,
        each side merged over all shards first, then fused (``fusion.fuse``). A query whose text
        has no word gets no lexical hits. ``exclude``: per query, the (shard, key) places left out
        of its hits (a more-like-this query's own item); the query still gets k hits.
        With ``options.group_by``: the top k groups, each as its best hit (search/grouping.py),
        grouped after the fusion.
        """
        if options.group_by is None:
            return self._search(vectors, options, exclude, texts)
        n = len(texts) if vectors is None and texts is not None else len(vectors) if vectors is not None else 0
        flat = replace(options, group_by=None)

        def fetch(rows: Sequence[int], k: int) -> list[list[Hit]]:
            return self._search(
                None if vectors is None else np.asarray(vectors, dtype=np.float32)[list(rows)],
                replace(flat, k=k),
                None if exclude is None else [exclude[r] for r in rows],
                None if texts is None else [texts[r] for r in rows],
            )

        return grouped_search(
            fetch,
            n,
            options.k,
            options.group_by,
            fusion=options.group_fusion,
            top=options.group_top,
            total=sum(r.count for r in self.readers),
        )

    def _search(
        self,
        vectors: np.ndarray | None,
        options: SearchOptions,
        exclude: Sequence[Collection[Place]] | None = None,
        texts: Sequence[str | None] | None = None,
    ) -> list[list[Hit]]:
        if options.mode not in SEARCH_MODES:
            raise UsageError(f"unknown search mode {options.mode!r}; choose from {', '.join(SEARCH_MODES)}")
        n = len(texts) if vectors is None and texts is not None else len(vectors) if vectors is not None else 0
        if options.words and (texts is None or len(texts) != n or any(t is None for t in texts)):
            raise UsageError(f"{options.mode} search needs a text for every query")
        # Ask for as many more as the most places left out, then drop them: k hits remain.
        extra = max((len(places) for places in exclude or ()), default=0)
        want = options.k + extra
        depth = max(options.k, options.depth) + extra if options.mode == "hybrid" else want
        dense = self._dense(vectors, options, depth) if options.dense else None
        words = self._lexical(texts, options, depth) if options.words else None
        if exclude is not None:
            dense = _without(dense, exclude) if dense is not None else None
            words = _without(words, exclude) if words is not None else None
        ranked: list[list[tuple[Place, float, int | None, int | None]]] = []
        for i in range(n):
            if options.mode == "dense":
                top = enumerate(dense[i][: options.k], start=1)
                ranked.append([((s, key), score, r, None) for r, (s, key, score) in top])
            elif options.mode == "lexical":
                top = enumerate(words[i][: options.k], start=1)
                ranked.append([((s, key), score, None, r) for r, (s, key, score) in top])
            else:
                fused = fuse(
                    [((s, key), score) for s, key, score in dense[i]],
                    [((s, key), score) for s, key, score in words[i]],
                    options.k,
                    method=options.fusion,
                    rrf_k=options.rrf_k,
                    alpha=options.alpha,
                )
                ranked.append([(f.place, f.score, f.dense_rank, f.lexical_rank) for f in fused])
        payloads = [
            reader.payloads([key for per_query in ranked for (shard, key), *_ in per_query if shard == s])
            for s, reader in enumerate(self.readers)
        ]
        return [
            [
                Hit(
                    payloads[shard][key][0],
                    score,
                    rank,
                    payloads[shard][key][1],
                    {"dense_rank": d, "lexical_rank": lx} if options.explain else None,
                )
                for rank, ((shard, key), score, d, lx) in enumerate(per_query, start=1)
            ]
            for per_query in ranked
        ]

    def _dense(self, vectors: np.ndarray | None, options: SearchOptions, k: int) -> list[list[tuple[int, int, float]]]:
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dims:
            width = vectors.shape[-1] if vectors.ndim else 0
            raise IncompatibleError(f"query vectors have {width} dimensions, the index {self.dims}")
        return search_shards(
            self.readers,
            vectors,
            k,
            exact=options.exact,
            where=options.where,
            expansion_search=options.expansion_search,
            full_scan_threshold=options.full_scan_threshold,
            rescore=options.rescore,
        )

    def _lexical(
        self, texts: Sequence[str | None], options: SearchOptions, k: int
    ) -> list[list[tuple[int, int, float]]]:
        """Top-k (shard, key, score) by BM25 per text over every shard, merged by score.

        Each shard ranks by its own BM25 statistics (document frequencies, lengths): shards
        filled by a hash of the id hold alike samples, so their scores are close to
        comparable, not equal to one index's (see the README's Hybrid search).
        """
        expressions = [lexical.expression_for(t or "", options.fts_syntax) for t in texts]
        if len(self.readers) == 1:
            per_shard = [self.readers[0].lexical(expressions, k, options.where)]
        else:
            with ThreadPoolExecutor(max_workers=min(len(self.readers), SEARCH_THREADS)) as pool:
                per_shard = list(pool.map(lambda r: r.lexical(expressions, k, options.where), self.readers))
        merged = []
        for i in range(len(expressions)):
            hits = [(score, s, key) for s, found in enumerate(per_shard) for key, score in found[i]]
            hits.sort(key=lambda h: (-h[0], h[1], h[2]))
            merged.append([(s, key, score) for score, s, key in hits[:k]])
        return merged

    def check_words(self) -> None:
        """Every searched index has a full-text index (exit 4 naming the first that has none)."""
        for reader in self.readers:
            reader.lexical([], 0)

    def close(self) -> None:
        for reader in self.readers:
            reader.close()


def _without(
    hits: list[list[tuple[int, int, float]]], exclude: Sequence[Collection[Place]]
) -> list[list[tuple[int, int, float]]]:
    pairs = zip(hits, exclude, strict=True)
    return [[h for h in per_query if (h[0], h[1]) not in places] for per_query, places in pairs]


def query_chunks(
    searcher: Searcher,
    src: Source,
    fields: QueryFields,
    bad: BadRecords,
    hint: str | None = None,
    mode: str = "dense",
    fts_syntax: bool = False,
) -> Iterator[tuple[list[Record], np.ndarray | None]]:
    """Query records in chunks with their vectors: JSONL (a text, embedded, or a checked vector) or NPY rows.

    Streams: tokenizing runs ahead in a reader thread, one chunk is embedded while the next is read.
    ``mode`` lexical or hybrid: every query needs its text (``query_texts``); lexical embeds nothing
    (vectors None). ``fts_syntax``: a text that is no FTS5 query is bad input (exit 3, naming its line).
    """
    if src.sniff() != "npy":
        for chunk in chunked_prefetch(_prepared(searcher, src, fields, bad, hint, mode, fts_syntax), CHUNK):
            yield chunk, _vectors(searcher, chunk) if mode != "lexical" else None
        return
    if mode != "dense":
        raise UsageError(f"NPY queries are vectors only: {mode} search needs text queries, {src.name}")
    for numbers, block in iter_npy_rows(src, bad):
        if block.shape[1] != searcher.dims:
            raise IncompatibleError(
                f"query vectors have {block.shape[1]} dimensions, the index {searcher.dims}, {src.name}"
            )
        # Output rows are 0-based, as before; skipped (non-finite) rows keep their numbers.
        yield [Record(int(n), {"row": int(n) - 1}, source=src.name, by_row=True) for n in numbers], block


def _prepared(
    searcher: Searcher,
    src: Source,
    fields: QueryFields,
    bad: BadRecords,
    hint: str | None,
    mode: str = "dense",
    fts_syntax: bool = False,
) -> Iterator[Record]:
    """Query records with either a checked vector or the tokens of their text (and, but dense, the text)."""
    for rec in iter_records(src, None, fields.text, bad, json_hint=hint):
        loc = rec.where
        try:
            if fields.output in rec.data:
                raise InputError(
                    f"query already has a {fields.output!r} field, {loc}", hint="choose another --output-field"
                )
            if mode != "dense":  # the words side needs the text, even when a vector stands in for it on the dense side
                rec.extra["text"] = get_text(rec, fields.text)
                if fts_syntax and (why := lexical.check_expression(rec.extra["text"])):
                    raise InputError(f"query is not an FTS5 query ({why}), {loc}")
            if mode == "lexical":  # nothing to embed
                pass
            elif fields.vector in rec.data:
                vec = parse_vector(rec.data[fields.vector], fields.vector, loc)
                made_by = rec.data.get(fields.model) if fields.model else None
                rec.extra["vector"] = searcher.check_vector(vec, made_by, loc)
            else:
                rec.extra["tokens"] = searcher.tokenize(get_text(rec, fields.text))
        except InputError as e:
            bad.handle(e)
            continue
        yield rec


def _vectors(searcher: Searcher, chunk: list[Record]) -> np.ndarray:
    out = np.empty((len(chunk), searcher.dims), dtype=np.float32)
    texts = [i for i, r in enumerate(chunk) if "tokens" in r.extra]
    if texts:
        out[texts] = searcher.encoder().encode_ids([chunk[i].extra.pop("tokens").ids for i in texts])
    for i, r in enumerate(chunk):
        if "vector" in r.extra:
            out[i] = r.extra.pop("vector")
    return out


def query_texts(chunk: Sequence[Record]) -> list[str | None]:
    """The texts of a chunk of queries, for the words side of lexical and hybrid search."""
    return [rec.extra.get("text") for rec in chunk]


def given_queries(
    searcher: Searcher, texts: Sequence[str], likes: Sequence[str], fields: QueryFields, mode: str = "dense"
) -> Iterator[tuple[list[Record], np.ndarray | None, list[list[Place]] | None]]:
    """Queries from the command line, in chunks with their vectors and the places each leaves out.

    Texts (``--query``) first, as ``{text field: text}`` records embedded exactly as text queries
    from stdin are; then stored items (``--like`` ids, as ``{"like": id}``), each searched with its
    stored vector and left out of its own hits. Every id is looked up before the first search, so
    an unknown one fails before any output.
    """
    dense = mode != "lexical"
    if likes and mode != "dense":
        raise UsageError(f"--like searches by a stored vector: {mode} search needs text queries (--query)")
    items = [searcher.stored(word, word=True) for word in likes]
    if approx := next((item.approximate for item in items if item.approximate), None):
        current().notice(f"--like: this index keeps no float vectors; searching with {approx}")
    for start in range(0, len(texts), CHUNK):
        chunk = []
        for n, text in enumerate(texts[start : start + CHUNK], start=start + 1):
            if not text or text.isspace():  # argv never holds a NUL byte: empty is all that can be wrong
                raise UsageError(f"--query number {n} is empty")
            rec = Record(n, {fields.text: text})
            rec.extra["text"] = text
            if dense:
                rec.extra["tokens"] = searcher.tokenize(text)
            chunk.append(rec)
        yield chunk, _vectors(searcher, chunk) if dense else None, None
    for start in range(0, len(items), CHUNK):
        part = items[start : start + CHUNK]
        chunk = [Record(n, {"like": item.id}) for n, item in enumerate(part, start=start + 1)]
        yield chunk, np.stack([item.vector for item in part]), [item.places for item in part]
