"""``embcli.Encoder``: one model, loaded once, turning texts into vectors as ``embcli embed`` does."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING

import numpy as np

from embcli.errors import UsageError
from embcli.runtime.chunking import Chunking

if TYPE_CHECKING:
    from embcli.runtime.cache import EmbeddingCache
    from embcli.runtime.chunking import Chunker
    from embcli.runtime.encoder import Encoder as _RuntimeEncoder
    from embcli.store.models import ModelSpec


def ensure_model(model: str | None, device: str = "cpu") -> None:
    """Build the built-in model's graph for the device(s) this run may use, before resolving the model.

    Resolution only reads the graph cache; this is the explicit build step, at first use.
    Other models are left alone: they are files that exist or not.
    """
    from embcli.store.models import is_builtin

    if not is_builtin(model):
        return
    from embcli.build.defaultgraph import ensure_default

    ensure_default("cpu")  # the spec resolves on CPU first; the encoder moves it to CUDA when that loads
    # Only where CUDA can load: without it `--device cuda` fails at once in the encoder, saying why.
    if device in ("cuda", "auto") and _cuda_listed():
        ensure_default("cuda")


def _cuda_listed() -> bool:
    from embcli.runtime.native import cuda_provider_listed

    return cuda_provider_listed()


def resolve(model: str | None = None, device: str = "auto", *, check: bool = True) -> ModelSpec:
    """The model named ``model`` (default: $EMBCLI_MODEL, else the built-in one), built first if it must be.

    ``check=False``: a built-in graph already built is taken by its record, its bytes
    not hashed now (for runs that may not load it; the encoder checks them on load).
    """
    from embcli.errors import EmbcliError
    from embcli.store.models import resolve_model

    if not check:
        try:
            spec = resolve_model(model, check=False)
            if spec.for_device is not None and device in ("cuda", "auto") and _cuda_listed():
                spec.for_device("cuda")  # raises if its CUDA graph is not built yet: built below
            return spec
        except EmbcliError:
            pass  # not built yet (first use): the checked way below builds it
    ensure_model(model, device)
    return resolve_model(model)


def cached_encoder(cache: str, model: str | None = None, **options: object) -> tuple[_RuntimeEncoder, EmbeddingCache]:
    """The encoder for ``embed --cache`` and its view of the cache.

    The model loads on the first text the cache does not have: a run where every
    text hits loads no tokenizer, no onnxruntime. What the cache key and the
    provenance need comes from the model's files; the graph's output width from
    the cache, where the first run that loaded this graph recorded it. The
    vectors, provenance and key are those of an encoder loaded up front.
    """
    from embcli.runtime.cache import EmbeddingCache, graph_key, known_widths, spec_of
    from embcli.runtime.encoder import Encoder as RuntimeEncoder

    device = str(options.pop("device", "auto"))
    widths = known_widths(cache)
    encoder = RuntimeEncoder(
        resolve(model, device, check=False),
        device=device,
        known_width=lambda spec: widths.get(graph_key(spec)),
        reload=lambda: resolve(model, device),
        **options,  # type: ignore[arg-type]
    )
    store = EmbeddingCache(cache, spec_of(encoder), encoder.dim)
    if encoder.loaded and graph_key(encoder.spec) not in widths:
        store.record_width(graph_key(encoder.spec), encoder.full_dim)
    return encoder, store


class Encoder:
    """One model, loaded once, turning texts into vectors exactly as ``embcli embed`` does.

    >>> enc = Encoder()                                  # the built-in all-MiniLM-L6-v2
    >>> enc.embed(["first text", "second"]).shape
    (2, 384)
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "auto",
        threads: int | None = None,
        max_length: int | None = None,
        pooling: str | None = None,
        normalize: bool | None = None,
        prompt: str | None = None,
        prompt_name: str | None = None,
        dims: int | None = None,
        batch_size: int = 32,
        max_batch_tokens: int = 8192,
    ) -> None:
        from embcli.runtime.encoder import Encoder as RuntimeEncoder

        self._enc: _RuntimeEncoder = RuntimeEncoder(
            resolve(model, device),
            device=device,
            threads=threads,
            max_length=max_length,
            pooling=pooling,
            normalize=normalize,
            prompt=prompt,
            prompt_name=prompt_name,
            dims=dims,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
        )

    @property
    def dims(self) -> int:
        """Width of the vectors this encoder makes."""
        return self._enc.dim

    @property
    def device(self) -> str:
        """Where the model runs: ``cpu`` or ``cuda``."""
        return self._enc.device

    @property
    def max_length(self) -> int:
        return self._enc.max_length

    @property
    def runtime(self) -> _RuntimeEncoder:
        """The runtime encoder underneath: what the embed loop and the vector cache drive."""
        return self._enc

    @property
    def provenance(self) -> dict:
        """The ``embedding_model`` record: model, graph sha256 prefix and options."""
        return self._enc.provenance()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of ``texts`` as float32 ``(n, dims)``, in input order."""
        if isinstance(texts, str):
            raise UsageError("embed() takes a list of texts, not one string")
        if not len(texts):
            return np.empty((0, self.dims), dtype=np.float32)
        return self._enc.encode(list(texts))

    def embed_records(
        self,
        records: Iterable[dict],
        *,
        text_field: str = "text",
        vector_field: str = "embedding",
        model_field: str = "embedding_model",
        overwrite: bool = False,
        skip_bad: bool = False,
        chunking: Chunking | None = None,
    ) -> Iterator[dict]:
        """Each record with its vector (a float32 array) and provenance added, streaming, in input order.

        Bad records raise ``InputError`` (``skip_bad=True`` skips them), as ``embed`` does.
        With ``chunking`` (``embcli.Chunking()``: defaults as ``embed --chunk``), each record
        becomes one record per chunk of its text, as ``chunk_records`` gives them, each embedded.
        """
        from embcli.io.streams import BadRecords, Record
        from embcli.runtime.embedding import EmbedStats, embed_records

        reserved = () if overwrite else tuple(f for f in (vector_field, model_field) if f)
        bad = BadRecords(skip=skip_bad)
        numbered: Iterable = (Record(i, dict(r), source="<records>") for i, r in enumerate(records, start=1))
        if chunking is not None:
            numbered = self._chunker(chunking).records(numbered, text_field=text_field, bad=bad, overwrite=overwrite)
        prov = self.provenance
        for recs, vecs in embed_records(
            numbered,
            self._enc,
            text_field=text_field,
            bad=bad,
            stats=EmbedStats(),
            reserved=reserved,
        ):
            for rec, vec in zip(recs, vecs, strict=True):
                rec.data[vector_field] = vec
                if model_field:
                    rec.data[model_field] = prov
                yield rec.data

    def chunk_records(
        self,
        records: Iterable[dict],
        chunking: Chunking | None = None,
        *,
        text_field: str = "text",
        overwrite: bool = False,
        skip_bad: bool = False,
    ) -> Iterator[dict]:
        """Each record as one record per chunk of its text, as ``embed --chunk`` writes them (no vectors).

        A chunk record has ``id`` "<parent>#<n>", ``parent`` (the record's id, else its number
        from 1), ``chunk`` (n from 0), ``span`` ([start, end) characters of the text) and the
        chunk's text as ``text_field``; every other field passes through. With a context
        (``Chunking(context_field=...)``), what the model sees is the context, a blank line and
        the chunk's text: ``embed_records(chunking=...)`` embeds exactly that.
        """
        from embcli.io.streams import BadRecords, Record

        numbered = (Record(i, dict(r), source="<records>") for i, r in enumerate(records, start=1))
        chunker = self._chunker(chunking or Chunking())
        for rec in chunker.records(numbered, text_field=text_field, bad=BadRecords(skip=skip_bad), overwrite=overwrite):
            yield rec.data

    def _chunker(self, chunking: Chunking) -> Chunker:
        from embcli.runtime.chunking import Chunker

        return Chunker(self._enc.tokenizer, self._enc.max_length, self._enc.prompt, chunking)
