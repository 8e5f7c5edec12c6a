"""Loading native libraries in an order that works, and quietly.

Importing onnxruntime (1.32) after usearch (2.26, with its numkong kernels) in
one process segfaults inside onnxruntime's import; the other order is fine.
Every usearch import goes through here, so a command that needs both (search
with text queries, cluster, classify) never crashes on it.

onnxruntime's C++ logger also speaks before any setting can reach it: with an
unwritable HOME its import prints an ANSI-coloured "Failed to persist telemetry
device ID" warning on stderr, under -q and in the middle of our one-line errors.
Every onnxruntime import goes through ``load_onnxruntime`` to keep that off.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

# onnxruntime's own log lines below error level: "[W:onnxruntime:Default, file.cc:613 ...] text".
_ORT_CHATTER = re.compile(rb"^(?:\x1b\[[0-9;]*m)?[^\n]*\[[VIW]:onnxruntime:[^\n]*\n?", re.MULTILINE)


@functools.cache
def load_onnxruntime() -> ModuleType:
    """onnxruntime, imported without its start-up chatter, its default logger at fatal only.

    Fatal only: the errors it would log (a CUDA provider that does not load) reach
    the user as embcli's own one-line errors, or are the expected fallback of --device auto.
    """
    with _stderr_filtered(_ORT_CHATTER):
        import onnxruntime as ort
    ort.set_default_logger_severity(4)
    return ort


def cuda_provider_listed() -> bool:
    """Whether onnxruntime lists the CUDA execution provider (it may still fail to load).

    Asked without importing onnxruntime where its package has no CUDA provider
    library (the CPU wheels): a run that needs no model (``embed --cache``, every
    text a hit) then never pays for the import.
    """
    if "onnxruntime" not in sys.modules and not _cuda_library_shipped():
        return False
    try:
        ort = load_onnxruntime()
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


def _cuda_library_shipped() -> bool:
    """Whether the installed onnxruntime package carries a CUDA provider library (GPU wheels do)."""
    import importlib.util

    try:
        found = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        return False
    if found is None or not found.submodule_search_locations:
        return False
    return any(
        "providers_cuda" in f.name for d in found.submodule_search_locations for f in (Path(d) / "capi").glob("*")
    )


def usearch_index() -> type:
    with contextlib.suppress(ImportError):
        load_onnxruntime()  # must be loaded before usearch
    from usearch.index import Index

    return Index


@contextlib.contextmanager
def _stderr_filtered(drop: re.Pattern[bytes]) -> Iterator[None]:
    """Run the body with file descriptor 2 in a temporary file, then pass on what ``drop`` leaves.

    The descriptor, not ``sys.stderr``: native code writes to fd 2 directly.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no stderr at all: nothing to protect
        yield
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            if rest := drop.sub(b"", tmp.read()):
                with contextlib.suppress(OSError):
                    os.write(2, rest)  # anything else (another thread's line) is not ours to hide
