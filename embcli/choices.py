"""Every closed set of option values, defined once.

The core validates against these tuples; the CLI makes its Typer enums from
them (``commands/_options.choice``), so a new metric or device is added here
and nowhere else. Plain tuples: importing this costs nothing.
"""

from __future__ import annotations

DEVICES = ("auto", "cpu", "cuda")
POOLINGS = ("mean", "cls", "max", "lasttoken", "mean_sqrt_len")
METRICS = ("cos", "ip", "l2")
DTYPES = ("f32", "f16", "i8", "b1")  # index storage: float32, float16, int8, sign bits
ON_ERROR = ("fail", "skip")
INPUT_FORMATS = ("jsonl", "text", "csv", "tsv", "parquet", "arrow")
OUTPUT_FORMATS = ("jsonl", "npy", "parquet", "arrow", "csv", "tsv")
COMPRESSIONS = ("none", "gzip", "bzip2", "xz", "zstd")
REPORT_FORMATS = ("json", "table")  # diff and eval: a JSON report, or a table for people
# Full-text tokenizers of an index (search/lexical.py spells each out as an FTS5 tokenize= value).
FTS_TOKENIZERS = ("porter", "unicode61")
SEARCH_MODES = ("dense", "hybrid", "lexical")
FUSIONS = ("rrf", "linear")  # how search --hybrid merges the dense and the BM25 rankings
GROUP_FUSIONS = ("max", "sum")  # search --group-by: a group's score from its hits' scores
ADAPTER_KINDS = ("auto", "procrustes", "ridge")  # diff --fit-adapter: auto = Procrustes when widths match
# detect-anomalies --index: how a record that is itself in the index is found (search/index_neighbors.py)
SELF_MATCHES = ("auto", "id", "vector", "none")

# Up to this many candidate vectors, exact numpy search is fast enough: kNN over a
# whole set (search/neighbors.py) and filtered search (--full-scan-threshold) share it.
EXACT_SEARCH_LIMIT = 20_000
