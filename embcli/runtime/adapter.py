"""Query-drift adapters: a linear map from a new model's space into an old model's, as a file.

``diff --by id --fit-adapter`` fits one (``analysis/adapter.py``); here is what
uses it: the file (an NPZ of ``weight``, ``bias`` and a JSON ``meta`` naming
both models' provenance, read with every array checked, never unpickled), the
map itself, and an encoder that embeds with the new model and hands out vectors
in the old model's space. Vectors it makes say so in their provenance: the old
model's, plus ``adapter`` (the adapter's sha256 and the new model), so an index
of the old model takes them only when told which adapter made them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embcli.errors import IncompatibleError
from embcli.runtime import provenance
from embcli.runtime.encoder import Encoder, Tokens
from embcli.runtime.vectors import unit

KIND = "embcli-adapter"
KINDS = ("procrustes", "ridge")


def describe(prov: dict | None) -> str:
    """A model run in a few words, for messages: name, width, pooling."""
    if not isinstance(prov, dict):
        return "no recorded model"
    return f"{prov.get('model')} ({prov.get('dims')}-d, {prov.get('pooling')} pooling)"


def same_model(a: object, b: object) -> bool:
    """The same model and options; a model is known by its sha256, not by the path it was read from."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return False
    return {k: v for k, v in a.items() if k != "model"} == {k: v for k, v in b.items() if k != "model"}


@dataclass
class Adapter:
    """``old ≈ new @ weight + bias``, then normalized when the old model's vectors are."""

    kind: str
    weight: np.ndarray  # (new dims, old dims), float32
    bias: np.ndarray  # (old dims,), float32
    new: dict  # provenance of the model whose vectors go in
    old: dict  # provenance of the model whose space they come out in
    meta: dict  # the rest: fit options, validation figures

    @property
    def sha256(self) -> str:
        """What identifies the map: its numbers and the two models (not its file name or figures)."""
        h = hashlib.sha256()
        h.update(json.dumps([self.kind, _key(self.new), _key(self.old)], sort_keys=True).encode())
        h.update(np.ascontiguousarray(self.weight, dtype="<f4").tobytes())
        h.update(np.ascontiguousarray(self.bias, dtype="<f4").tobytes())
        return h.hexdigest()[:16]

    def map(self, vectors: np.ndarray) -> np.ndarray:
        """New-model vectors ``(n, new dims)`` into the old model's space, as its index expects them."""
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.weight.shape[0]:
            width = x.shape[-1] if x.ndim else 0
            raise IncompatibleError(
                f"the adapter maps {self.weight.shape[0]}-d vectors of {describe(self.new)}, not {width}-d ones"
            )
        y = x @ self.weight + self.bias
        return unit(y) if self.old.get("normalize") else y.astype(np.float32, copy=False)

    def mapped_provenance(self) -> dict:
        """What vectors this adapter made record: the old model's run, and the adapter that mapped them in."""
        return {**self.old, "adapter": {"sha256": self.sha256, "kind": self.kind, "from": dict(self.new)}}

    def check_target(self, index_prov: object, where: str) -> None:
        """An index takes this adapter's output only when it holds the adapter's old model (exit 4 otherwise)."""
        if not same_model(self.old, index_prov):
            raise IncompatibleError(
                f"the adapter maps {describe(self.new)} → {describe(self.old)}, but the index holds "
                f"{describe(index_prov if isinstance(index_prov, dict) else None)}, {where}",
                hint="fit an adapter to this index's model with `embcli diff OLD NEW --by id --fit-adapter`",
            )

    def check_source_ok(self, prov: dict) -> bool:
        """Vectors of this provenance are what the adapter maps."""
        return same_model(self.new, prov)

    def check_source(self, prov: dict, where: str) -> None:
        """The encoder feeding this adapter must be its new model with the same options (exit 4 otherwise)."""
        if not same_model(self.new, prov):
            raise IncompatibleError(
                f"the adapter maps {describe(self.new)} → {describe(self.old)}, but the vectors come from "
                f"{describe(prov)}, {where}"
            )

    def save(self, path: str) -> None:
        """Write the adapter file atomically (nothing half-written at ``path``)."""
        from embcli.io.files import atomic_file

        meta = {**self.meta, "format": KIND, "version": 1, "kind": self.kind, "new": self.new, "old": self.old}
        meta["sha256"] = self.sha256
        with atomic_file(path) as f:
            np.savez(f, meta=np.array(json.dumps(meta, sort_keys=True)), weight=self.weight, bias=self.bias)


def _key(prov: dict) -> dict:
    return {k: v for k, v in prov.items() if k != "model"}


def load(path: str) -> Adapter:
    """An adapter file, every part checked (exit 4 naming the file when anything is off; 2 when missing)."""
    from embcli.io import npzfile

    meta, arrays = npzfile.load(path, KIND, ("weight", "bias"))
    kind = meta.get("kind")
    if kind not in KINDS:
        raise npzfile.bad(path, KIND, f"unknown kind {kind!r}")
    new, old = meta.get("new"), meta.get("old")
    for name, prov in (("new", new), ("old", old)):
        if not isinstance(prov, dict) or not all(k in prov for k in provenance.KEYS):
            raise npzfile.bad(path, KIND, f"{name!r} is not a model provenance")
    weight = npzfile.float_array(arrays, "weight", 2, path, KIND).astype(np.float32)
    bias = npzfile.float_array(arrays, "bias", 1, path, KIND).astype(np.float32)
    if weight.shape != (new["dims"], old["dims"]) or bias.shape != (old["dims"],):
        raise npzfile.bad(
            path, KIND, f"'weight' is {weight.shape} and 'bias' {bias.shape} for {new['dims']}-d → {old['dims']}-d"
        )
    rest = {k: v for k, v in meta.items() if k not in ("format", "version", "kind", "new", "old", "sha256")}
    adapter = Adapter(kind, weight, bias, new, old, rest)
    if meta.get("sha256") not in (None, adapter.sha256):
        raise npzfile.bad(path, KIND, "its numbers do not match its recorded sha256")
    return adapter


def unmapped(prov: object, adapter: Adapter | None, where: str) -> object:
    """The old model's provenance of vectors an adapter mapped, when ``adapter`` is the one that did.

    Vectors mapped by an adapter go into an old index only when the caller names
    that adapter (``index --adapter``): another adapter, or none, is exit 4.
    Provenance without an ``adapter`` entry is returned as it is.
    """
    if not isinstance(prov, dict) or "adapter" not in prov:
        return prov
    made = prov["adapter"]
    sha = made.get("sha256") if isinstance(made, dict) else None
    src = made.get("from") if isinstance(made, dict) else None
    if adapter is None:
        raise IncompatibleError(
            f"vectors mapped from {describe(src)} into {describe(prov)} by adapter {sha}, {where}",
            hint="append them with --adapter FILE naming that adapter",
        )
    if sha != adapter.sha256:
        raise IncompatibleError(
            f"vectors mapped by adapter {sha} ({describe(src)} → {describe(prov)}), not by the adapter given "
            f"({adapter.sha256}: {describe(adapter.new)} → {describe(adapter.old)}), {where}"
        )
    return {k: v for k, v in prov.items() if k != "adapter"}


class AdaptedEncoder:
    """The new model's encoder whose vectors come out mapped into the old model's space.

    Tokenizing, batching and running the model are the new encoder's; only the
    vectors, their width and their provenance are the adapter's.
    """

    def __init__(self, encoder: Encoder, adapter: Adapter, where: str = "--adapter") -> None:
        adapter.check_source(encoder.provenance(), where)
        self._enc = encoder
        self.adapter = adapter

    def __getattr__(self, name: str) -> object:  # spec, max_length, device, batches_run, …
        return getattr(self._enc, name)

    @property
    def dim(self) -> int:
        return int(self.adapter.weight.shape[1])

    def tokenize(self, text: str) -> Tokens:
        return self._enc.tokenize(text)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.adapter.map(self._enc.encode(texts))

    def encode_ids(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        return self.adapter.map(self._enc.encode_ids(ids))

    def provenance(self) -> dict:
        return self.adapter.mapped_provenance()
