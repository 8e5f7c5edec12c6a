"""Loading native libraries in an order that works.

Importing onnxruntime (1.32) after usearch (2.26, with its numkong kernels) in
one process segfaults inside onnxruntime's import; the other order is fine.
Every usearch import goes through here, so a command that needs both (search
with text queries, cluster, classify) never crashes on it.
"""

from __future__ import annotations

import contextlib


def usearch_index() -> type:
    with contextlib.suppress(ImportError):
        import onnxruntime  # noqa: F401 - must be loaded before usearch
    from usearch.index import Index

    return Index
