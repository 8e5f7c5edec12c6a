"""Where the built-in model's graphs are kept, and which one a run gets: reads only, builds nothing.

The graph of the built-in model is fixed per device kind by embcli's version
(``DEFAULT_KIND``): a run gets that graph unless it pins another kind with
$EMBCLI_DEFAULT_GRAPH. Every kind lives in a slot of its own, keyed by the
weights and the onnx/onnxruntime versions that make its bytes, with a record
(``graph.json``) holding its sha256; a graph is used only while its bytes
match. Building is ``defaultgraph.ensure_default``'s job; it registers here
the graphs it had to build outside the cache (an unwritable cache).
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

from embcli.errors import UsageError
from embcli.io.files import sha256_file

MODEL = "all-MiniLM-L6-v2"
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
# The graph each device kind runs unless a run pins another. CPU: the fp32 graph after
# onnxruntime's python fusions (exact: it passes the fp32 gate; ~12% faster than the plain
# graph on short texts), built byte-identically on every machine with the same onnx and
# onnxruntime. CUDA: half precision, which is what tensor cores are for.
DEFAULT_KIND = {"cpu": "fused", "cuda": "fp16"}
# Bump when the builder's output bytes change (onnx_build, the fusions, int8, fp16): a graph
# cached by an older builder must not be taken for this one's. embcli's version is in the key too.
BUILD_RECIPE = 1
KINDS = ("fp32", "fused", "int8", "fp16", "fused-fp16", "shipped")
UNPINNED = ("", "default", "auto")  # "auto" was the old race's name: it now means the fixed graph
RECORD = "graph.json"
FALLBACK = "fallback.json"


@dataclass
class Graph:
    """The graph a run gets, and why."""

    kind: str  # fp32 | fused | int8 | fp16 | fused-fp16 | shipped
    path: Path | None  # None: the shipped graph
    sha256: str | None
    why: str
    record: dict = field(default_factory=dict)


# Graphs built outside the cache by this process (the cache was unwritable), by slot.
_registry: dict[Path, Graph] = {}


def graphs_dir() -> Path:
    """$EMBCLI_GRAPHS_DIR, else $XDG_CACHE_HOME/embcli/graphs, else ~/.cache/embcli/graphs."""
    if env := os.environ.get("EMBCLI_GRAPHS_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "embcli" / "graphs"


def pinned() -> str | None:
    """The kind $EMBCLI_DEFAULT_GRAPH pins for this run, or None (the version's fixed graph)."""
    value = os.environ.get("EMBCLI_DEFAULT_GRAPH", "")
    if value in UNPINNED:
        return None
    if value not in KINDS:
        raise UsageError(f"EMBCLI_DEFAULT_GRAPH={value!r}: choose from default, {', '.join(KINDS)}")
    return value


def kind_for(device: str, kind: str | None = None) -> str:
    """The kind a run on ``device`` gets: ``kind`` if given, else the pin, else the fixed one."""
    return kind or pinned() or DEFAULT_KIND.get(device, DEFAULT_KIND["cpu"])


def versions() -> dict[str, str]:
    """The versions that make a built graph's bytes: the builder's, the serializer's and the fusions'."""
    from embcli.version import __version__

    # Read from the installed packages' metadata: importing onnxruntime here would print its
    # start-up chatter (runtime/native.py keeps that off, and store/ sits below runtime/).
    return {
        "embcli": f"{__version__}r{BUILD_RECIPE}",
        "onnx": _installed("onnx") or "none",  # none: no builder here, a slot that cannot be filled
        "onnxruntime": _installed("onnxruntime") or _installed("onnxruntime-gpu") or "none",
    }


def _installed(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def slot(kind: str) -> Path:
    """One kind's directory. Not per device or machine: a kind's bytes are the same everywhere."""
    v = versions()
    return graphs_dir() / f"{MODEL}-{WEIGHTS_SHA256[:12]}" / "-".join([kind, *(f"{k}{x}" for k, x in v.items())])


def find_graph(device: str = "cpu", kind: str | None = None, *, check: bool = True) -> Graph | None:
    """The graph a run on ``device`` gets if it is built and intact, else None (nothing is built here).

    ``check=False`` takes the record's sha256 without hashing the file (a run that may
    not load the graph at all: the encoder checks the bytes when it loads it).
    """
    kind = kind_for(device, kind)
    fixed = kind == DEFAULT_KIND.get(device)
    if kind == "shipped":
        return Graph("shipped", None, None, "pinned by EMBCLI_DEFAULT_GRAPH=shipped")
    where = slot(kind)
    graph = _registry.get(where) or read_slot(where, kind, check=check)[0]
    if graph is not None and graph.path is not None:
        return replace(graph, why=f"{_fixed(device) if fixed else 'pinned by EMBCLI_DEFAULT_GRAPH'}, {graph.why}")
    if graph is None and fixed:  # a pin that cannot be built is tried again, and said, on every run that asks
        graph = _fallback(where)
    return graph


def _fixed(device: str) -> str:
    from embcli.version import __version__

    return f"the fixed {device} graph of embcli {__version__}"


def read_slot(where: Path, kind: str, *, check: bool = True) -> tuple[Graph | None, str | None]:
    """The slot's graph if its record is readable and its bytes match it; else None and what is wrong.

    ``check=False``: the file need only exist (its bytes are hashed when it is loaded).
    """
    import orjson

    record_path = where / RECORD
    if not record_path.is_file():
        return None, None
    try:
        record = orjson.loads(record_path.read_bytes())
        path, sha, why = where / record["file"], record["sha256"], record["why"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, f"the graph cache record is unreadable, {record_path}"
    if record.get("kind") != kind or path.parent != where or not isinstance(sha, str):  # only files of its slot
        return None, f"the graph cache record is not this slot's {kind} graph, {record_path}"
    try:
        intact = path.is_file() and (not check or _sha256_once(path) == sha)
    except OSError:
        intact = False
    if not intact:
        return None, f"the cached {kind} graph is missing or corrupt (sha256 mismatch), {path}"
    return Graph(kind, path, sha, why, record), None


# Graphs hashed by this process, by path and the stat fields any write changes (a run resolves the
# model more than once: building first, then resolving; each would hash ~90 MB again).
_hashed: dict[tuple, str] = {}


def _sha256_once(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _hashed:
        _hashed[key] = sha256_file(path)
    return _hashed[key]


def _fallback(where: Path) -> Graph | None:
    """The recorded reason this environment could not build its fixed graph, if any."""
    import orjson

    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        record = orjson.loads((where / FALLBACK).read_bytes())
        if record["python"] == sys.prefix:  # another environment may well be able to build
            return Graph("shipped", None, None, record["why"], record)
    return None


def register(where: Path, graph: Graph) -> None:
    """Use ``graph`` for ``where``'s kind for the rest of this process (built outside the cache)."""
    _registry[where] = graph
