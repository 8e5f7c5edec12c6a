"""Evaluating retrieval on your own queries: ``embcli eval`` and ``embcli.evaluate``.

Each configuration (``search.configs``) is one real search over its index, with the same code
``embcli search`` runs; every judged query is searched once per configuration, to the deepest
cutoff (or ``depth``), and scored with ``retrieval_metrics`` against the qrels.

Which queries count (trec_eval's rules, said in the report): a query with at least one
judgement is scored, and one whose judgements are all non-relevant scores 0 and counts; a query
with no judgement at all is left out of the means (counted as ``unjudged_queries``). A judgement
naming a query that is not in the queries file is bad input (exit 3, the qrels file and line).
A relevant document that the index does not hold counts as relevant and never found (a
notice says how many, per index); when none of the relevant documents is in an index, the ids
cannot be the index's, and that is bad input too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import orjson

from embcli.analysis.retrieval_metrics import RELEVANT, mean_scores, metric_names, score_query
from embcli.env import current
from embcli.errors import InputError, UsageError
from embcli.io.qrels import Qrels, id_key
from embcli.io.readers import detect_format, iter_records
from embcli.io.streams import BadRecords, Source, at_row, get_text, iter_npy_rows, parse_vector
from embcli.search.configs import SearchConfig
from embcli.search.query import CHUNK, QueryOptions, Searcher, id_candidates

QUERIES_HINT = 'queries are records with an id and a text (or a vector), e.g. {"id": "q1", "text": "..."}'


@dataclass
class EvalQuery:
    """One query: its id as given, the id as text (``key``, what qrels name), and a text or a vector."""

    id: object
    key: str
    where: str
    text: str | None = None
    vector: np.ndarray | None = None
    made_by: object = None  # the query vector's provenance, when it records one


@dataclass
class EvalOptions:
    cutoffs: list[int] = field(default_factory=lambda: [10])
    depth: int | None = None  # hits retrieved per query; None: the deepest cutoff
    device: str = "auto"
    threads: int | None = None
    batch_size: int = 32
    prepare: Callable[[str, str], None] | None = None  # builds the built-in model's graph (api/commands)

    def retrieved(self) -> int:
        return max(self.depth or 0, *self.cutoffs)


@dataclass
class Evaluation:
    """The report (means per configuration, side by side) and each query's scores per configuration."""

    report: dict
    per_query: list[dict]

    def metrics(self, config: str | int = 0) -> dict[str, float]:
        """One configuration's means, by name or position."""
        configs = self.report["configs"]
        if isinstance(config, int):
            return configs[config]["metrics"]
        for c in configs:
            if c["name"] == config:
                return c["metrics"]
        raise KeyError(config)


def read_queries(
    path: str,
    *,
    input_format: str | None = None,
    id_field: str = "id",
    text_field: str = "text",
    vector_field: str = "embedding",
    model_field: str = "embedding_model",
) -> list[EvalQuery]:
    """Every query in ``path`` (any input format; '-' is stdin), checked: an id each, unique, and a text
    or a vector. NPY rows are vector queries with their 0-based row number as id (as ``search``
    calls them); plain text lines take their line number."""
    out: list[EvalQuery] = []
    seen: dict[str, str] = {}
    strict = BadRecords()
    with Source(path) as src:
        fmt = detect_format(src, input_format)
        if fmt == "npy":
            for numbers, block in iter_npy_rows(src, strict):
                for n, row in zip(numbers.tolist(), block, strict=True):
                    out.append(EvalQuery(n - 1, str(n - 1), at_row(src.name, n), vector=row))
            return out
        for rec in iter_records(src, fmt, text_field, strict, json_hint=QUERIES_HINT):
            loc = rec.where
            if fmt == "text":
                qid: object = rec.line
            elif id_field not in rec.data:
                have = ", ".join(list(rec.data)[:8]) or "none"
                raise InputError(
                    f"query has no {id_field!r} field (fields: {have}), {loc}",
                    hint="qrels name queries by id: choose the field with --id-field NAME",
                )
            else:
                qid = rec.data[id_field]
            key = id_key(qid)
            if key is None:
                raise InputError(f"query id must be a string or an integer, {loc}")
            if key in seen:
                raise InputError(f"query id {qid!r} again (first at {seen[key]}), {loc}")
            seen[key] = loc
            query = EvalQuery(qid, key, loc)
            if vector_field in rec.data:
                query.vector = parse_vector(rec.data[vector_field], vector_field, loc)
                query.made_by = rec.data.get(model_field) if model_field else None
            else:
                query.text = get_text(rec, text_field)
            out.append(query)
    return out


def evaluate(
    index_paths: Sequence[str],
    queries: Sequence[EvalQuery],
    qrels: Qrels,
    configs: Sequence[SearchConfig],
    options: EvalOptions,
    *,
    queries_source: str = "the queries",
) -> Evaluation:
    """Score every configuration on the judged queries; see the module's doc for the rules."""
    if len({c.name for c in configs}) < len(configs):
        raise UsageError("two configs have the same name", hint="label them with name=LABEL")
    judged = qrels.by_query()
    keys = {q.key for q in queries}
    for j in qrels.judgements:
        if j.query not in keys:
            raise InputError(
                f"judgement names query {j.query!r}, which {queries_source} do not hold, {qrels.source} line {j.line}",
                hint="qrels and queries must use the same query ids (compared as text)",
            )
    scored = [q for q in queries if q.key in judged]
    no_relevant = sum(1 for q in scored if not any(r >= RELEVANT for r in judged[q.key].values()))
    cutoffs = sorted(set(options.cutoffs))
    if not cutoffs or cutoffs[0] < 1:
        raise UsageError("cutoffs must be at least 1")
    depth = options.retrieved()
    names = metric_names(cutoffs)
    vectors_cache: dict[bytes, np.ndarray] = {}
    columns, per_query = [], []
    for config in configs:
        paths = list(config.paths or index_paths)
        if not paths:
            raise UsageError(f"config {config.text!r} names no index, and eval was given none")
        q = config.query
        embedding = QueryOptions(
            q.prompt, q.prompt_name, options.device, options.threads, options.batch_size, q.model, options.prepare
        )
        searcher = Searcher(paths, embedding)
        try:
            missing = _missing_relevant(searcher, judged, config)
            current().phase(f"{config.name}: searching {len(scored):,} queries…")
            ranked = _search(searcher, scored, dataclasses.replace(config.search, k=depth), vectors_cache)
        except UsageError as e:  # a bad --where, found when it runs: say which config had it
            raise UsageError(f"config {config.name!r}: {e.message}", e.hint) from None
        finally:
            searcher.close()
        scores = []
        for query, hits in zip(scored, ranked, strict=True):
            judgements = judged[query.key]
            s = score_query([doc for doc, _ in hits], judgements, cutoffs)
            scores.append(s)
            found = [
                {"id": hit_id, "rank": rank, "relevance": judgements[doc]}
                for rank, (doc, hit_id) in enumerate(hits, start=1)
                if judgements.get(doc, 0) >= RELEVANT
            ]
            relevant = sum(1 for r in judgements.values() if r >= RELEVANT)
            per_query.append({"config": config.name, "query_id": query.id, "relevant": relevant, **s, "found": found})
        columns.append(
            {
                "name": config.name,
                "config": config.text,
                "index": paths,
                "settings": config.settings(),
                "metrics": mean_scores(scores, names),
                "relevant_not_in_index": missing,
            }
        )
    report = {
        "cutoffs": cutoffs,
        "depth": depth,
        "queries": len(queries),
        "scored_queries": len(scored),
        "unjudged_queries": len(queries) - len(scored),
        "no_relevant_queries": no_relevant,
        "judgements": len(qrels.judgements),
        "metrics": names,
        "configs": columns,
    }
    return Evaluation(report, per_query)


def _missing_relevant(searcher: Searcher, judged: dict[str, dict[str, int]], config: SearchConfig) -> int | None:
    """How many relevant judged documents the index does not hold; none held at all is bad input."""
    if config.search.group_by:  # the judged ids are group values (e.g. parents), not the index's ids: unchecked
        return None
    relevant = sorted({doc for docs in judged.values() for doc, r in docs.items() if r >= RELEVANT})
    missing = [doc for doc in relevant if not _held(searcher, doc)]
    if relevant and len(missing) == len(relevant):
        where = searcher.paths[0] if len(searcher.paths) == 1 else f"{len(searcher.paths)} indexes"
        raise InputError(
            f"none of the {len(relevant):,} relevant documents in the qrels is in {where} "
            f"(config {config.name!r}; e.g. {missing[0]!r})",
            hint="qrels' doc ids must be the index's ids (compared as text)",
        )
    if missing:
        current().notice(
            f"warning: {config.name}: {len(missing):,} of {len(relevant):,} relevant documents are not in the "
            f"index (e.g. {missing[0]!r}); they count as relevant and never found"
        )
    return len(missing)


def _held(searcher: Searcher, doc: str) -> bool:
    return any(reader.key_of(c) is not None for c in id_candidates(doc) for reader in searcher.readers)


def _search(
    searcher: Searcher, queries: Sequence[EvalQuery], options, cache: dict[bytes, np.ndarray]
) -> list[list[tuple[str, object]]]:
    """Each query's hits as (id as text, id as stored), best first, by the search path ``search`` runs.

    Text queries are embedded once per model and query options: configs over indexes of the same
    model (f32 and i8, other ef) search with the same vectors.
    """
    if not queries:
        return []
    vectors = np.empty((len(queries), searcher.dims), dtype=np.float32)
    texts = [i for i, q in enumerate(queries) if q.vector is None]
    if texts and options.dense:  # lexical retrieval embeds nothing
        key = orjson.dumps(
            [searcher.provenance, searcher.query.prompt, searcher.query.prompt_name, searcher.query.model],
            option=orjson.OPT_SORT_KEYS,
        )
        if key not in cache:
            current().phase(f"embedding {len(texts):,} queries…")
            cache[key] = searcher.embed([queries[i].text for i in texts])
        vectors[texts] = cache[key]
    for i, q in enumerate(queries):
        if q.vector is not None:
            vectors[i] = searcher.check_vector(q.vector, q.made_by, q.where)
    out: list[list[tuple[str, object]]] = []
    for start in range(0, len(queries), CHUNK):
        # Lexical and hybrid retrieval match the query texts too (a vector query has none: refused there).
        chunk_texts = [q.text for q in queries[start : start + CHUNK]] if options.words else None
        chunk_vectors = vectors[start : start + CHUNK] if options.dense else None
        for hits in searcher.search(chunk_vectors, options, texts=chunk_texts):
            # Grouped (e.g. chunks by parent): the judged documents are the groups, not the chunks.
            found = [hit.payload.get(options.group_by, hit.id) if options.group_by else hit.id for hit in hits]
            out.append([(id_key(doc) or str(doc), doc) for doc in found])
    return out
