"""The encoder runtime (DESIGN §3): tokenization, ONNX session, batching, pooling.

Speed comes from feeding the graph little padding: texts are sorted by token
count, cut into batches under a token budget, and put back in input order.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from embcli.choices import DEVICES, POOLINGS
from embcli.errors import EmbcliError, IncompatibleError, UsageError
from embcli.runtime import provenance
from embcli.runtime.vectors import unit
from embcli.store.models import ModelSpec, choose_prompt

if TYPE_CHECKING:
    from tokenizers import Tokenizer

# A text longer than this many characters per kept token is tokenized from a prefix, doubled until
# it provably holds the kept tokens (see _kept_ids); prose runs at ~4-5 characters per token.
PREFIX_CHARS_PER_TOKEN = 16
# The longest prefix tokenized (~150 MB of tokenizer memory): only a text whose first million
# characters hold fewer than max_length tokens in complete words (one enormous word) is cut here.
MAX_PREFIX_CHARS = 1 << 20


@dataclass
class Tokens:
    ids: list[int]
    truncated: bool
    cached_count: int | None = None  # token count of a cached text, whose ids were not computed

    @property
    def count(self) -> int:
        return len(self.ids) if self.cached_count is None else self.cached_count


@dataclass
class TokenStates:
    """One text's token vectors as the graph computes them, before pooling, and where each token came from."""

    vectors: np.ndarray  # (tokens, full dim) float32: the graph's last hidden state, special tokens included
    word_ids: list[int | None]  # per token: the word (the tokenizer's pre-token) it is part of; None: special
    offsets: list[tuple[int, int]]  # per token: its character span in the text


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Encoder:
    """Turns texts into vectors with one model, the same way every time.

    The tokenizer and the ONNX session load here, unless ``known_width`` knows the
    graph's output width beforehand (an earlier run recorded it): then everything a
    vector's provenance and cache key need comes from the model's files, and the
    model loads on first use (``load()``), through ``reload`` when given (the
    spec re-resolved with its bytes checked, which must be the same model).
    """

    def __init__(
        self,
        spec: ModelSpec,
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
        known_width: Callable[[ModelSpec], int | None] | None = None,
        reload: Callable[[], ModelSpec] | None = None,
    ) -> None:
        self.spec = spec
        self.max_length = max_length or spec.max_length
        self.pooling = pooling or spec.pooling
        self.normalize = spec.normalize if normalize is None else normalize
        self.prompt = choose_prompt(spec, prompt, prompt_name)
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        if self.pooling not in POOLINGS:
            raise UsageError(f"unknown pooling {self.pooling!r}; choose from {', '.join(POOLINGS)}")
        if self.max_length < 2:
            raise UsageError(f"--max-length must be at least 2, got {self.max_length}")
        if spec.max_positions is not None and self.max_length > spec.max_positions:
            # Refused here, not by the graph failing on the first long batch mid-stream.
            raise UsageError(
                f"--max-length {self.max_length} is more than the {spec.max_positions} positions "
                f"of model {spec.name!r}",
                hint=f"its default max length is {spec.max_length}",
            )
        if batch_size < 1 or max_batch_tokens < 1:
            raise UsageError("--batch-size and --max-batch-tokens must be positive")
        if device not in DEVICES:
            raise UsageError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
        self._want_cuda = _wants_cuda(device)
        if self._want_cuda and spec.for_device is not None:
            self.spec = spec.for_device("cuda")  # the built-in model prefers its fp16 graph on GPUs
        self._device = device
        self.threads = threads or default_threads()
        self._reload = reload
        self._lock = threading.Lock()
        self.loaded = False
        self.device: str | None = None  # where the graph runs, once loaded
        self.batches_run = 0  # inference calls on user texts (the cache's proof of work saved)
        width = known_width(self.spec) if known_width is not None else None
        if width is None:
            self.load()
        else:
            self.full_dim = width
        if dims is not None and not 1 <= dims <= self.full_dim:
            raise UsageError(f"--dims must be between 1 and {self.full_dim} for this model, got {dims}")
        self.dims = dims if dims and dims < self.full_dim else None
        self.dim = self.dims or self.full_dim

    # ------------------------------------------------------------------ loading

    def load(self) -> None:
        """Load the tokenizer and the ONNX session now, if not yet (thread-safe)."""
        if self.loaded:
            return
        with self._lock:
            if self.loaded:
                return
            known = getattr(self, "full_dim", None)
            if self._reload is not None:
                self._take_checked_spec(self._reload())
            self.spec.verify()
            self._load_tokenizer()
            self._load_session(self._device, self.threads)
            width = self._output_dim()
            if known is not None and width != known:
                raise IncompatibleError(
                    f"the ONNX graph makes {width}-d vectors, where an earlier run recorded {known}, "
                    f"{self.spec.onnx_path}"
                )
            self.full_dim = width
            self.loaded = True

    def ensure_tokenizer(self) -> Tokenizer:
        """The tokenizer, loaded alone if the model is not loaded yet: chunking needs it before any
        inference, and a run whose chunks all come from the cache still never loads the session."""
        with self._lock:
            if getattr(self, "tokenizer", None) is None:
                self._load_tokenizer()
        return self.tokenizer

    def _take_checked_spec(self, fresh: ModelSpec) -> None:
        """Run ``fresh`` (bytes checked) only if it is the model this encoder promised."""
        if self._want_cuda and fresh.for_device is not None:
            fresh = fresh.for_device("cuda")
        if (fresh.sha256(), fresh.tokenizer_path) != (self.spec.sha256(), self.spec.tokenizer_path):
            raise IncompatibleError(
                f"the model's files changed while this run was starting (graph sha256 {fresh.sha256()[:16]}, "
                f"expected {self.spec.sha256()[:16]}), {fresh.onnx_path}",
                hint="run it again",
            )
        self.spec = fresh

    def _load_tokenizer(self) -> None:
        from tokenizers import Tokenizer

        try:
            tok = Tokenizer.from_file(str(self.spec.tokenizer_path))
        except Exception as e:
            raise IncompatibleError(f"unreadable tokenizer ({e}), {self.spec.tokenizer_path}") from None
        # tokenizer.json files often carry fixed padding and a shorter truncation
        # than the model's real max length (the MiniLM trap): take both from us.
        pad = next((i for t in ("[PAD]", "<pad>") if (i := tok.token_to_id(t)) is not None), 0)
        self.pad_id = tok.padding["pad_id"] if tok.padding else pad  # BERT [PAD]=0, XLM-R <pad>=1
        tok.no_padding()
        tok.enable_truncation(self.max_length)
        self.tokenizer = tok

    def _load_session(self, device: str, threads: int) -> None:
        from embcli.runtime.native import load_onnxruntime

        ort = load_onnxruntime()
        want_cuda = self._want_cuda
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Pool threads sleep when idle instead of spinning: on a small machine they otherwise burn the
        # cores the reader thread and other processes need (measured on a shared machine: 15-25% less CPU).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 4  # failures (a CUDA load, a bad batch) are reported by us, once
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if want_cuda else ["CPUExecutionProvider"]
        try:
            session = ort.InferenceSession(str(self.spec.onnx_path), opts, providers=providers)
        except Exception as e:
            raise IncompatibleError(f"cannot load ONNX graph ({e}), {self.spec.onnx_path}") from None
        active = session.get_providers()
        if device == "cuda" and "CUDAExecutionProvider" not in active:
            raise EmbcliError(
                "--device cuda: the CUDA execution provider did not load (no GPU, or CUDA/cuDNN "
                "libraries missing); refusing to run on CPU",
                hint="check nvidia-smi and the onnxruntime-gpu CUDA requirements, or use --device cpu",
            )
        self.session = session
        self.device = "cuda" if "CUDAExecutionProvider" in active else "cpu"
        self.threads = threads
        names = {i.name for i in session.get_inputs()}
        if "input_ids" not in names:
            raise IncompatibleError(f"ONNX graph has no input_ids input, {self.spec.onnx_path}")
        self._input_names = names
        outputs = session.get_outputs()
        preferred = [o for o in outputs if o.name in ("last_hidden_state", "token_embeddings")]
        self._output = (preferred or outputs)[0]

    def _output_dim(self) -> int:
        shape = self._output.shape
        if shape and isinstance(shape[-1], int):
            return shape[-1]
        if self.spec.dim:
            return self.spec.dim
        return int(self._run([[self.pad_id, self.pad_id]])[0].shape[-1])

    # ------------------------------------------------------------------ encoding

    def tokenize(self, text: str) -> Tokens:
        """Token ids cut to ``max_length``, the same as tokenizing the whole text and truncating.

        An enormous text is not tokenized whole (that takes ~150 bytes of memory per
        character): a prefix is, growing until it provably holds the kept tokens.
        """
        if not self.loaded:
            self.load()
        size = PREFIX_CHARS_PER_TOKEN * self.max_length
        cap = max(MAX_PREFIX_CHARS, size)
        while size < len(text):
            enc = self._encode(text[:size])
            ids = _kept_ids(enc)
            if ids is not None:
                return Tokens(ids, True)
            if size >= cap:  # one enormous word (see _kept_ids): cut here, and say it was truncated
                return Tokens(enc.ids, True)
            size = min(2 * size, cap)
        enc = self._encode(text)
        return Tokens(enc.ids, bool(enc.overflowing))

    def _encode(self, text: str):
        return self.tokenizer.encode(self.prompt + text if self.prompt else text)

    def tokenize_many(self, texts: Sequence[str]) -> list[Tokens]:
        """``tokenize`` of each text; those of ordinary length in one ``encode_batch`` (all cores)."""
        if not self.loaded:
            self.load()
        limit = PREFIX_CHARS_PER_TOKEN * self.max_length
        plain = [i for i, t in enumerate(texts) if len(t) <= limit]
        out: list[Tokens | None] = [None] * len(texts)
        batch = [self.prompt + texts[i] if self.prompt else texts[i] for i in plain]
        for i, enc in zip(plain, self.tokenizer.encode_batch(batch) if batch else [], strict=True):
            out[i] = Tokens(enc.ids, bool(enc.overflowing))
        if len(plain) < len(texts):
            for i, t in enumerate(texts):
                if out[i] is None:
                    out[i] = self.tokenize(t)  # bounded memory on a huge text
        return out  # type: ignore[return-value]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts`` in input order (float32, ``(n, dim)``)."""
        if not self.loaded:
            self.load()
        if any(len(t) > PREFIX_CHARS_PER_TOKEN * self.max_length for t in texts):
            return self.encode_ids([self.tokenize(t).ids for t in texts])  # bounded memory on a huge text
        if self.prompt:
            texts = [self.prompt + t for t in texts]
        encs = self.tokenizer.encode_batch(list(texts))
        return self.encode_ids([e.ids for e in encs])

    def encode_ids(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Vectors for pre-tokenized texts, in input order; batches sorted by length."""
        if not self.loaded:
            self.load()
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(lengths, kind="stable")
        for batch in self._batches(order, lengths):
            out[batch] = self._embed_batch([ids[i] for i in batch])
            self.batches_run += 1
        return out

    def hidden_states(self, ids: list[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """One batch's token vectors straight from the graph, and its attention mask (what the gate compares)."""
        if not self.loaded:
            self.load()
        return self._run(ids)

    def token_states(self, texts: Sequence[str]) -> list[TokenStates]:
        """Each text's per-token states (the last hidden state, before pooling), in input order.

        Texts are tokenized without the prompt (a word's vector in its own context is
        what term-level analyses compare, and offsets stay those of the text) and cut to
        ``max_length`` tokens; batches are sorted by length as ``encode`` does.
        """
        cut = PREFIX_CHARS_PER_TOKEN * self.max_length  # bounded tokenizer memory; only max_length tokens stay
        encs = self.tokenizer.encode_batch([t[:cut] for t in texts])
        ids = [e.ids for e in encs]
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        out: list[TokenStates | None] = [None] * len(ids)
        for batch in self._batches(np.argsort(lengths, kind="stable"), lengths):
            hidden, _ = self._run([ids[i] for i in batch])
            if hidden.ndim != 3:
                raise IncompatibleError(
                    f"model {self.spec.name!r} outputs pooled vectors only, not token states, {self.spec.onnx_path}",
                    hint="term-level analyses need a graph with a last_hidden_state or token_embeddings output",
                )
            hidden = hidden.astype(np.float32, copy=False)
            for row, i in enumerate(batch):
                enc = encs[i]
                out[i] = TokenStates(hidden[row, : len(ids[i])].copy(), list(enc.word_ids), list(enc.offsets))
            self.batches_run += 1
        return out  # type: ignore[return-value]

    def _batches(self, order: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
        """Cut the length-sorted order into batches under the size and padded-token caps."""
        batches, start = [], 0
        for pos in range(1, len(order) + 1):
            size = pos - start
            if pos == len(order):
                batches.append(order[start:pos])
            elif size >= self.batch_size or (size + 1) * lengths[order[pos]] > self.max_batch_tokens:
                batches.append(order[start:pos])
                start = pos
        return batches

    def _embed_batch(self, ids: list[Sequence[int]]) -> np.ndarray:
        hidden, mask = self._run(ids)
        if hidden.ndim == 2:  # the graph pools by itself
            vecs = hidden.astype(np.float32)
        else:
            vecs = pool(hidden.astype(np.float32, copy=False), mask, self.pooling)
        if self.normalize:
            vecs = unit(vecs)
        if self.dims:
            vecs = vecs[:, : self.dims]
            if self.normalize:
                vecs = unit(vecs)  # Matryoshka: truncate, then renormalize
        return vecs

    def _run(self, ids: list[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """Right-padded batch through the graph: (hidden states, attention mask)."""
        input_ids, mask = pad_batch(ids, self.pad_id)
        feed = {"input_ids": input_ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feed["token_type_ids"] = np.zeros_like(input_ids)
        feed = {k: v for k, v in feed.items() if k in self._input_names}
        try:
            return self.session.run([self._output.name], feed)[0], mask
        except Exception as e:  # onnxruntime raises its own types; say which graph failed
            first = str(e).strip().splitlines()[0][:300]
            raise IncompatibleError(f"the ONNX graph failed on a batch ({first}), {self.spec.onnx_path}") from None

    def provenance(self) -> dict:
        """Everything that makes these vectors what they are: travels with records into indexes."""
        return provenance.make(
            self.spec,
            dims=self.dim,
            max_length=self.max_length,
            pooling=self.pooling,
            normalize=self.normalize,
            prompt=self.prompt,
        )


def _wants_cuda(device: str) -> bool:
    """Whether a run on ``device`` tries CUDA: asked, or ``auto`` where onnxruntime lists it."""
    from embcli.runtime.native import cuda_provider_listed, load_onnxruntime

    if device == "cpu":
        return False
    listed = cuda_provider_listed()
    if device == "cuda" and not listed:
        available = load_onnxruntime().get_available_providers()
        raise EmbcliError(
            f"--device cuda: this onnxruntime has no CUDA execution provider "
            f"(available: {', '.join(p.removesuffix('ExecutionProvider') for p in available)})",
            hint="on a machine with an NVIDIA GPU: pip install 'embcli[gpu]'; or use --device cpu",
        )
    return listed


def encoder_from_provenance(
    prov: dict, *, prompt: str | None = None, prompt_name: str | None = None, **runtime: object
) -> Encoder:
    """An encoder that makes vectors exactly as ``prov`` records; a prompt given here overrides (queries)."""
    from embcli.store.models import resolve_model

    spec = resolve_model(prov["model"])
    if not spec.matches(prov["model_sha256"]):
        raise IncompatibleError(
            f"model {prov['model']!r} here is not the one that made these vectors "
            f"(sha256 {spec.model_id()[:16]}, recorded {prov['model_sha256']})"
        )
    if prompt is None and prompt_name is None:
        prompt = prov["prompt"]
    if spec.max_positions is not None and prov["max_length"] > spec.max_positions:
        raise IncompatibleError(
            f"the vectors record max_length {prov['max_length']}, more than model {prov['model']!r} "
            f"has positions for ({spec.max_positions})"
        )
    return Encoder(
        spec,
        max_length=prov["max_length"],
        pooling=prov["pooling"],
        normalize=prov["normalize"],
        prompt=prompt,
        prompt_name=prompt_name,
        dims=prov["dims"],
        **runtime,
    )


def _kept_ids(enc) -> list[int] | None:
    """The ids of a prefix's encoding when they are provably those of the whole text, else None.

    The tokenizer splits text into words (pre-tokens: whitespace, punctuation, CJK
    characters, per its pre-tokenizer) and tokenizes each word on its own. Cutting the
    text can change only the word it cuts (and, for look-ahead rules, the one before).
    So when the prefix has more than ``max_length`` tokens (it overflowed) and the last
    kept token belongs to a word at least two words before the prefix's last word, the
    kept tokens are exactly the whole text's first ``max_length`` tokens. A prefix with
    no such word boundary (a text of one enormous word) is grown until one appears, or
    cut at MAX_PREFIX_CHARS.
    """
    if not enc.overflowing:
        return None
    kept = max((w for w in enc.word_ids if w is not None), default=None)
    last = max((w for o in enc.overflowing for w in o.word_ids if w is not None), default=None)
    if kept is None or last is None or last < kept + 2:
        return None
    return enc.ids


def pad_batch(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded (input_ids, attention_mask) for a batch of token id lists."""
    width = max(len(x) for x in ids)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = x
        mask[row, : len(x)] = 1
    return input_ids, mask


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """Sentence vectors from token vectors; padded positions never count."""
    m = mask[:, :, None].astype(hidden.dtype)
    if mode == "cls":
        return hidden[:, 0].copy()
    if mode == "lasttoken":
        last = mask.sum(axis=1) - 1  # right padding: the last real token
        return hidden[np.arange(len(hidden)), last].copy()
    if mode == "max":
        return np.where(m > 0, hidden, -np.inf).max(axis=1).astype(hidden.dtype)
    summed = (hidden * m).sum(axis=1)
    counts = np.clip(m.sum(axis=1), 1e-9, None)
    return summed / (np.sqrt(counts) if mode == "mean_sqrt_len" else counts)
