"""Provenance: the model and options that made a vector, as a small dict that travels with it.

``embed`` writes it on every record, ``index`` keeps it in the manifest, and
``search`` rebuilds the encoder from it. Deriving it needs only the model's
directory (its configs), never an ONNX session.
"""

from __future__ import annotations

from embcli.errors import IncompatibleError
from embcli.store.models import ModelSpec, choose_prompt, resolve_model

KEYS = ("model", "model_sha256", "dims", "max_length", "pooling", "normalize", "prompt")


def make(spec: ModelSpec, *, dims: int, max_length: int, pooling: str, normalize: bool, prompt: str) -> dict:
    """The record of a model run with these options."""
    return {
        "model": spec.name,
        "model_sha256": spec.model_id()[:16],
        "dims": dims,
        "max_length": max_length,
        "pooling": pooling,
        "normalize": normalize,
        "prompt": prompt,
    }


def for_model(model: str, width: int) -> dict:
    """What ``embed -m MODEL`` records for vectors of ``width`` dimensions (Matryoshka when narrower)."""
    spec = resolve_model(model)
    if spec.dim is None:
        raise IncompatibleError(
            f"model {model!r} does not say its width (no hidden_size in config.json), so vectors cannot be "
            "matched to it"
        )
    if width > spec.dim:
        raise IncompatibleError(f"vectors have {width} dimensions, more than model {model!r} makes")
    return make(
        spec,
        dims=width,
        max_length=spec.max_length,
        pooling=spec.pooling,
        normalize=spec.normalize,
        prompt=choose_prompt(spec, None, None),
    )


def is_valid(prov: object, width: int) -> bool:
    """A provenance dict as embcli writes it, for vectors of this width."""
    return isinstance(prov, dict) and all(k in prov for k in KEYS) and prov["dims"] == width


def differs_from_index(query: object, index: dict) -> bool:
    """A query vector must come from the index's model and options; only the prompt may differ.

    The model is known by its sha256: the same model read from another path (relative, moved)
    is the same model.
    """
    if not isinstance(query, dict):
        return True
    return any(query.get(k) != v for k, v in index.items() if k not in ("prompt", "model"))
