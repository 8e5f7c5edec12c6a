"""embcli: text embeddings as Unix pipelines, and the same core as a Python library.

    import embcli
    enc = embcli.Encoder()                          # the built-in all-MiniLM-L6-v2
    vecs = enc.embed(["first text", "second"])      # float32 (n, 384), input order
    idx = embcli.Index.build("docs.idx", enc.embed_records(records))
    hits = embcli.Index.open("docs.idx").search(["query text"], k=5, where="lang = 'en'")
    records, x = embcli.read_vectors("docs.jsonl")  # embedded records: analyses as the commands run them
    embcli.cluster(x, k=8).labels, embcli.detect_anomalies(x).flags, embcli.diff(x[:500], x[500:]).verdict

Names are imported on first use, so ``import embcli`` (and ``embcli --help``)
loads neither onnxruntime, tokenizers nor usearch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from embcli.version import __version__

# name -> module that defines it
_EXPORTS = {
    "Encoder": "embcli.api",
    "Chunking": "embcli.api",
    "ensure_model": "embcli.api",
    "embed_arrow": "embcli.api",
    "Index": "embcli.api",
    "read_records": "embcli.api",
    "read_vectors": "embcli.api",
    "write_records": "embcli.api",
    "cluster": "embcli.api",
    "classify": "embcli.api",
    "detect_anomalies": "embcli.api",
    "diff": "embcli.api",
    "fit_adapter": "embcli.api",
    "load_adapter": "embcli.api",
    "quantize": "embcli.api",
    "evaluate": "embcli.api",
    "Evaluation": "embcli.analysis.evaluate",
    "term_shift": "embcli.api",
    "Clusters": "embcli.api",
    "Classification": "embcli.api",
    "Anomalies": "embcli.api",
    "Quantized": "embcli.api",
    "Hit": "embcli.search.query",
    "Env": "embcli.env",
    "using": "embcli.env",
    "EmbcliError": "embcli.errors",
    "UsageError": "embcli.errors",
    "InputError": "embcli.errors",
    "IncompatibleError": "embcli.errors",
}
__all__ = [  # noqa: RUF022 - grouped as in _EXPORTS
    "__version__",
    "Encoder",
    "Chunking",
    "ensure_model",
    "embed_arrow",
    "Index",
    "read_records",
    "read_vectors",
    "write_records",
    "cluster",
    "classify",
    "detect_anomalies",
    "diff",
    "fit_adapter",
    "load_adapter",
    "quantize",
    "evaluate",
    "Evaluation",
    "term_shift",
    "Clusters",
    "Classification",
    "Anomalies",
    "Quantized",
    "Hit",
    "Env",
    "using",
    "EmbcliError",
    "UsageError",
    "InputError",
    "IncompatibleError",
]

if TYPE_CHECKING:
    from embcli.analysis.evaluate import Evaluation
    from embcli.api import (
        Anomalies,
        Chunking,
        Classification,
        Clusters,
        Encoder,
        Index,
        Quantized,
        classify,
        cluster,
        detect_anomalies,
        diff,
        embed_arrow,
        evaluate,
        fit_adapter,
        load_adapter,
        quantize,
        read_records,
        read_vectors,
        term_shift,
        write_records,
    )
    from embcli.env import Env, using
    from embcli.errors import EmbcliError, IncompatibleError, InputError, UsageError
    from embcli.search.query import Hit


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'embcli' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
