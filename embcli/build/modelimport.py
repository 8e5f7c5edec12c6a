"""``models import``: a sentence-transformers checkpoint → a checked ONNX model directory, torch-free.

Steps: read the safetensors weights (``transformer.py``), build the fp32 graph
with the onnx package (``onnx_build.py``), check it against the numpy reference,
then optionally fuse it (onnxruntime's transformer optimizer), halve it (fp16)
or quantize it (int8, ``int8.py``); every graph is gated (``graphcheck.py``)
before the directory is written, atomically.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from embcli.build.graphcheck import Checker, GateResult
from embcli.build.transformer import EncoderWeights, read_encoder
from embcli.errors import IncompatibleError, UsageError
from embcli.io.files import sha256_file
from embcli.runtime.native import load_onnxruntime
from embcli.store.models import read_model_dir

# Files that are weights or other exports: everything else (configs, tokenizer, pooling, card) is copied.
_SKIP_SUFFIXES = (".safetensors", ".bin", ".h5", ".msgpack", ".ot", ".onnx", ".onnx_data", ".pt", ".ckpt")
_SKIP_NAMES = {
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
    ".git",
    ".cache",
    "__pycache__",
    "onnx",
    "openvino",
    "embcli-build.json",
}
HUB_PATTERNS = [
    "*.json",
    "*.txt",
    "*.model",
    "1_Pooling/*",
    "model.safetensors",
    "model-*.safetensors",
    "README.md",
    "LICENSE*",
]
BUILD_RECORD = "embcli-build.json"


@dataclass
class Build:
    """What an import made, and the figures that let it through."""

    precision: str
    optimized: bool
    gates: list[GateResult] = field(default_factory=list)
    fused: dict[str, int] = field(default_factory=dict)
    float_nodes: list[str] = field(default_factory=list)


def copy_model_files(src: Path, dst: Path) -> None:
    """Configs, tokenizer, pooling modules and card: everything but weights and other exports."""
    for item in src.iterdir():
        if item.name in _SKIP_NAMES or item.name.endswith(_SKIP_SUFFIXES) or item.name.startswith("."):
            continue
        if item.is_dir():
            shutil.copytree(item, dst / item.name, ignore=shutil.ignore_patterns(*_SKIP_NAMES, "*.safetensors"))
        else:
            shutil.copy2(item, dst / item.name)
    if not (dst / "tokenizer.json").is_file():
        raise IncompatibleError(
            f"no tokenizer.json in {src}",
            hint="embcli needs the fast tokenizer file; save it with the tokenizer's save_pretrained()",
        )


@contextmanager
def _quiet_onnxruntime_tools():
    """onnxruntime's python tools log warnings we turn into our own messages."""
    names = ("onnxruntime.transformers", "onnx_model", "fusion_base", "root")
    saved = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for n, level in saved.items():
            logging.getLogger(n).setLevel(level)


def optimize_graph(src: Path, dst: Path, w: EncoderWeights) -> dict[str, int]:
    """Fuse Attention, SkipLayerNormalization, Gelu and EmbedLayerNormalization; returns the fused op counts."""
    load_onnxruntime()  # its import chatter filtered first
    from onnxruntime.transformers.optimizer import optimize_model

    with _quiet_onnxruntime_tools():
        # opt_level=0: the python fusions only (higher levels import torch).
        model = optimize_model(str(src), model_type="bert", num_heads=w.heads, hidden_size=w.hidden, opt_level=0)
        stats = {k: v for k, v in model.get_fused_operator_statistics().items() if v}
        model.save_model_to_file(str(dst), use_external_data_format=_large(w))
    return stats


def fp16_graph(src: Path, dst: Path, w: EncoderWeights) -> None:
    """Half-precision weights and compute, float32 inputs and outputs (for GPUs)."""
    import onnx

    load_onnxruntime()  # its import chatter filtered first
    from onnxruntime.transformers.float16 import convert_float_to_float16

    from embcli.build.onnx_build import save_graph

    with _quiet_onnxruntime_tools():
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    save_graph(model, dst)


def _large(w: EncoderWeights) -> bool:
    from embcli.build.onnx_build import EXTERNAL_DATA_BYTES

    n = w.word.size + w.position.size + sum(a.size for layer in w.layers for a in layer.__dict__.values())
    return n * 4 > EXTERNAL_DATA_BYTES


VARIANTS = ("fp32", "fused", "fp16", "fused-fp16", "int8")


@dataclass
class Variant:
    name: str
    path: Path
    gates: list[GateResult] = field(default_factory=list)


def build_variants(
    w: EncoderWeights,
    checker: Checker,
    work: Path,
    wanted: list[str],
    say: Callable[[str], None] = lambda m: None,
    build: Build | None = None,
) -> tuple[dict[str, Variant], dict[str, str]]:
    """Build and gate the ``wanted`` variants in ``work``, each once, from the plain fp32 graph up.

    Returns the variants that passed and, by name, why the others were refused. The
    plain fp32 graph is always built and must pass: every other graph derives from it.
    """
    from embcli.build.onnx_build import build_graph, save_graph

    build = build or Build("fp32", False)
    done: dict[str, Variant] = {}
    refused: dict[str, str] = {}

    def gated(name: str, path: Path, precision: str) -> Variant | None:
        result = checker.gate(path, precision)
        say(f"{name} graph: {result.describe()}")
        build.gates.append(result)
        if not result.passed:
            refused[name] = f"the {name} graph fails the accuracy gate: {result.describe()}"
            return None
        return Variant(name, path, [result])

    def fused() -> Variant | None:
        if "fused" not in done and "fused" not in refused:
            path = work / "fused.onnx"
            try:
                build.fused = optimize_graph(done["fp32"].path, path, w)
            except Exception as e:  # onnxruntime's optimizer is optional tooling: its failure refuses fusion only
                refused["fused"] = f"onnxruntime's transformer optimizer failed ({type(e).__name__}: {e})"
                say(f"fused: {refused['fused']}")
                return None
            say("fused: " + (", ".join(f"{v} {k}" for k, v in build.fused.items()) or "nothing"))
            if (v := gated("fused", path, "fp32")) is not None:
                done["fused"] = v
        return done.get("fused")

    save_graph(build_graph(w), work / "fp32.onnx")
    base = gated("fp32", work / "fp32.onnx", "fp32")
    if base is None:
        raise IncompatibleError(refused["fp32"] + " (a bug in the graph builder: please report it)")
    done["fp32"] = base
    for name in wanted:
        if name in done or name in refused:
            continue
        if name == "fused":
            fused()
        elif name in ("fp16", "fused-fp16"):
            parent = fused() if name == "fused-fp16" else base
            if parent is None:
                refused[name] = "needs the fused graph: " + refused["fused"]
            else:
                path = work / f"{name}.onnx"
                fp16_graph(parent.path, path, w)
                if (v := gated(name, path, "fp16")) is not None:
                    done[name] = v
        elif name == "int8":
            from embcli.build.int8 import quantize_int8

            parent = fused()  # quantized after fusion: Attention keeps QKV in float, the rest goes int8
            if parent is None:
                refused["int8"] = "needs the fused graph: " + refused["fused"]
            else:
                path = work / "int8.onnx"
                build.float_nodes = quantize_int8(parent.path, path)
                kept = ", ".join(build.float_nodes) or "none"
                say(f"int8: block-32 int8 weights; {len(build.float_nodes)} nodes kept in float: {kept}")
                if (v := gated("int8", path, "int8")) is not None:
                    done["int8"] = v
        else:
            raise UsageError(f"unknown graph variant {name!r}; choose from {', '.join(VARIANTS)}")
    return done, refused


def fetch_source(src: str, tmp: Path) -> Path:
    """A local checkpoint directory, or a hub repo id downloaded (weights, tokenizer, configs) into ``tmp``."""
    path = Path(src).expanduser()
    if path.is_dir():
        return path
    from embcli.store.models import REPO_ID, download_repo

    if not REPO_ID.match(src):
        raise UsageError(f"{src!r} is neither a directory nor a hub repo id (owner/name)")
    return download_repo(src, HUB_PATTERNS, tmp / "source")


def import_model(
    src: str,
    out: Path,
    *,
    optimize: bool = False,
    precision: str = "fp32",
    force: bool = False,
    threads: int | None = None,
    say: Callable[[str], None] = lambda m: None,
) -> Build:
    """Build a checked model directory at ``out`` from a sentence-transformers checkpoint."""
    import orjson

    from embcli.version import __version__

    if out.exists() and any(out.iterdir()) and not force:
        raise UsageError(f"output directory is not empty, {out}", hint="pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        source = fetch_source(src, stage)
        w = read_encoder(source)
        say(f"read {w.model_type}: {len(w.layers)} layers, {w.hidden} hidden, {w.heads} heads, vocab {w.word.shape[0]}")
        model_dir = stage / "model"
        model_dir.mkdir()
        copy_model_files(source, model_dir)
        work = stage / "work"
        work.mkdir()
        _check_vocab(model_dir, w)
        # The directory's tokenizer and pooling; each gate swaps in the graph it checks.
        spec = read_model_dir(model_dir, name=str(out), source="local", onnx_path=work / "fp32.onnx")
        checker = Checker(w, spec, threads=threads)
        target = {"fp32": "fused" if optimize else "fp32", "fp16": "fused-fp16" if optimize else "fp16"}.get(
            precision, precision
        )
        build = Build(precision, optimize or precision == "int8")
        done, refused = build_variants(w, checker, work, [target], say=say, build=build)
        if target not in done:
            raise IncompatibleError(refused.get(target) or next(iter(refused.values())))
        graph = done[target].path
        os.replace(graph, model_dir / "model.onnx")
        if graph.with_name(graph.name + "_data").exists():
            os.replace(graph.with_name(graph.name + "_data"), model_dir / (graph.name + "_data"))
        weights = sorted(source.glob("*.safetensors"))
        record = {
            "source": src,
            "weights_sha256": {p.name: sha256_file(p) for p in weights},
            "architecture": w.model_type,
            "graph": target,
            "precision": build.precision,
            "optimized": build.optimized,
            "fused": build.fused,
            "float_nodes": build.float_nodes,
            "gates": [g.as_dict() for g in build.gates],
            "built_by": f"embcli {__version__}",
        }
        (model_dir / BUILD_RECORD).write_bytes(orjson.dumps(record, option=orjson.OPT_INDENT_2))
        _replace_dir(model_dir, out)
        return build
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _check_vocab(model_dir: Path, w: EncoderWeights) -> None:
    from tokenizers import Tokenizer

    size = Tokenizer.from_file(str(model_dir / "tokenizer.json")).get_vocab_size(with_added_tokens=True)
    if size > w.word.shape[0]:
        raise IncompatibleError(
            f"the tokenizer has {size} tokens but the weights embed only {w.word.shape[0]}, {model_dir.parent}"
        )


def _replace_dir(new: Path, dst: Path) -> None:
    """Put ``new`` at ``dst``; an old directory there is moved aside first and removed after."""
    old = None
    if dst.exists():
        old = dst.with_name(f".{dst.name}.old.{os.getpid()}")
        os.replace(dst, old)
    os.replace(new, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
