"""``embcli.evaluate``: retrieval metrics on your own queries and judgements, as ``embcli eval``."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from embcli.api.encoding import ensure_model
from embcli.errors import InputError, UsageError

if TYPE_CHECKING:
    from embcli.analysis.evaluate import EvalQuery, Evaluation
    from embcli.io.qrels import Qrels


def evaluate(
    index: str | os.PathLike | Sequence[str | os.PathLike] | None,
    queries: str | os.PathLike | Sequence[Mapping],
    qrels: str | os.PathLike | Mapping[object, Mapping[object, int]],
    *,
    configs: Sequence[str] = ("dense",),
    k: int | Sequence[int] = 10,
    depth: int | None = None,
    device: str = "auto",
    threads: int | None = None,
    batch_size: int = 32,
    id_field: str = "id",
    text_field: str = "text",
    vector_field: str = "embedding",
) -> Evaluation:
    """Recall@k, nDCG@k, MRR@k and MAP of each configuration, as ``embcli eval`` reports them.

    ``index``: a path (or several, searched as one; None when every config names its own
    ``index=``). ``queries``: a file in any input format, or records with an id and a text or a
    vector. ``qrels``: a file (JSONL, TREC or BEIR TSV) or ``{query_id: {doc_id: relevance}}``.
    ``configs``: strings as ``--config`` takes them (``"dense"``, ``"ef=64"``, ``"--rescore 4"``,
    ``"index=other.idx"``). ``k``: one cutoff or several. The result's ``report`` is the JSON
    report, ``per_query`` the per-query lines, ``metrics(name)`` one config's means.
    """
    from embcli.analysis.evaluate import EvalOptions, read_queries
    from embcli.analysis.evaluate import evaluate as run
    from embcli.io.qrels import read_qrels
    from embcli.search.configs import parse_config

    one = isinstance(index, (str, os.PathLike))
    paths = [os.fspath(index)] if one else [os.fspath(p) for p in index or []]
    if isinstance(queries, (str, os.PathLike)):
        source = os.fspath(queries)
        query_list = read_queries(source, id_field=id_field, text_field=text_field, vector_field=vector_field)
    else:
        source = "<queries>"
        query_list = _queries(queries, id_field, text_field, vector_field)
    judgements = read_qrels(os.fspath(qrels)) if isinstance(qrels, (str, os.PathLike)) else _qrels(qrels)
    cutoffs = [k] if isinstance(k, int) else list(k)
    if not configs:
        raise UsageError("evaluate() needs at least one config")
    options = EvalOptions(cutoffs, depth, device, threads, batch_size, ensure_model)
    return run(paths, query_list, judgements, [parse_config(c) for c in configs], options, queries_source=source)


def _queries(records: Sequence[Mapping], id_field: str, text_field: str, vector_field: str) -> list[EvalQuery]:
    from embcli.analysis.evaluate import EvalQuery
    from embcli.io.qrels import id_key
    from embcli.io.streams import Record, get_text, parse_vector

    out, seen = [], set()
    for n, rec in enumerate(records, start=1):
        where = f"<queries> record {n}"
        key = id_key(rec.get(id_field))
        if key is None:
            raise InputError(f"query has no {id_field!r} string or integer, {where}")
        if key in seen:
            raise InputError(f"query id {rec[id_field]!r} again, {where}")
        seen.add(key)
        query = EvalQuery(rec[id_field], key, where)
        if vector_field in rec:
            vec = rec[vector_field]
            query.vector = parse_vector(vec.tolist() if isinstance(vec, np.ndarray) else vec, vector_field, where)
        else:
            query.text = get_text(Record(n, dict(rec), source="<queries>"), text_field)
        out.append(query)
    return out


def _qrels(mapping: Mapping[object, Mapping[object, int]]) -> Qrels:
    from embcli.io.qrels import Judgement, Qrels, id_key

    judgements = []
    for query, docs in mapping.items():
        for doc, rel in docs.items():
            q, d = id_key(query), id_key(doc)
            n = len(judgements) + 1
            if q is None or d is None or isinstance(rel, bool) or not isinstance(rel, (int, np.integer)):
                raise InputError(f"qrels: ids must be strings or integers and relevance an integer, <qrels> item {n}")
            judgements.append(Judgement(q, d, int(rel), n))
    if not judgements:
        raise InputError("no relevance judgements in <qrels>")
    return Qrels("<qrels>", "mapping", judgements)
