"""The Python API: embcli's encoder, indexes, streams and analyses, for notebooks, jobs and clusters.

Every function here runs the same core as the matching command and gives the
same results; failures are the typed errors of ``embcli.errors`` that the CLI
maps to exit codes. Nothing here prints: notices go through ``embcli.env``.
``import embcli`` re-exports these names lazily.
"""

from embcli.api.analyses import (
    Anomalies,
    Classification,
    Clusters,
    Quantized,
    classify,
    cluster,
    detect_anomalies,
    diff,
    fit_adapter,
    load_adapter,
    quantize,
    term_shift,
)
from embcli.api.arrow import embed_arrow
from embcli.api.encoding import Encoder, ensure_model, resolve
from embcli.api.evaluation import evaluate
from embcli.api.indexes import Index
from embcli.api.records import read_records, read_vectors, write_records
from embcli.runtime.chunking import Chunking

__all__ = [
    "Anomalies",
    "Chunking",
    "Classification",
    "Clusters",
    "Encoder",
    "Index",
    "Quantized",
    "classify",
    "cluster",
    "detect_anomalies",
    "diff",
    "embed_arrow",
    "ensure_model",
    "evaluate",
    "fit_adapter",
    "load_adapter",
    "quantize",
    "read_records",
    "read_vectors",
    "resolve",
    "term_shift",
    "write_records",
]
