"""The encoder runtime (DESIGN §3): tokenization, ONNX session, batching, pooling.

Speed comes from feeding the graph little padding: texts are sorted by token
count, cut into batches under a token budget, and put back in input order.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embcli.core.models import POOLING_MODES, ModelSpec
from embcli.errors import EmbcliError, IncompatibleError, UsageError

DEVICES = ("auto", "cpu", "cuda")


@dataclass
class Tokens:
    ids: list[int]
    truncated: bool
    cached_count: int | None = None  # token count of a cached text, whose ids were not computed

    @property
    def count(self) -> int:
        return len(self.ids) if self.cached_count is None else self.cached_count


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Encoder:
    """Turns texts into vectors with one model, the same way every time."""

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
    ) -> None:
        self.spec = spec
        self.max_length = max_length or spec.max_length
        self.pooling = pooling or spec.pooling
        self.normalize = spec.normalize if normalize is None else normalize
        self.prompt = _choose_prompt(spec, prompt, prompt_name)
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        if self.pooling not in POOLING_MODES:
            raise UsageError(f"unknown pooling {self.pooling!r}; choose from {', '.join(POOLING_MODES)}")
        if self.max_length < 2:
            raise UsageError(f"--max-length must be at least 2, got {self.max_length}")
        if batch_size < 1 or max_batch_tokens < 1:
            raise UsageError("--batch-size and --max-batch-tokens must be positive")
        spec.verify()
        self._load_tokenizer()
        self._load_session(device, threads or default_threads())
        self.full_dim = self._output_dim()
        self.batches_run = 0  # inference calls on user texts (the cache's proof of work saved)
        if dims is not None and not 1 <= dims <= self.full_dim:
            raise UsageError(f"--dims must be between 1 and {self.full_dim} for this model, got {dims}")
        self.dims = dims if dims and dims < self.full_dim else None
        self.dim = self.dims or self.full_dim

    # ------------------------------------------------------------------ loading

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
        import onnxruntime as ort

        if device not in DEVICES:
            raise UsageError(f"unknown device {device!r}; choose from {', '.join(DEVICES)}")
        available = ort.get_available_providers()
        want_cuda = device == "cuda" or (device == "auto" and "CUDAExecutionProvider" in available)
        if device == "cuda" and "CUDAExecutionProvider" not in available:
            raise EmbcliError(
                f"--device cuda: this onnxruntime has no CUDA execution provider "
                f"(available: {', '.join(p.removesuffix('ExecutionProvider') for p in available)})",
                hint="on a machine with an NVIDIA GPU: pip install 'embcli[gpu]'; or use --device cpu",
            )
        if want_cuda and self.spec.for_device is not None:
            self.spec = self.spec.for_device("cuda")  # the built-in model prefers its fp16 graph on GPUs
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
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
        enc = self.tokenizer.encode(self.prompt + text if self.prompt else text)
        return Tokens(enc.ids, bool(enc.overflowing))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for ``texts`` in input order (float32, ``(n, dim)``)."""
        if self.prompt:
            texts = [self.prompt + t for t in texts]
        encs = self.tokenizer.encode_batch(list(texts))
        return self.encode_ids([e.ids for e in encs])

    def encode_ids(self, ids: Sequence[Sequence[int]]) -> np.ndarray:
        """Vectors for pre-tokenized texts, in input order; batches sorted by length."""
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(lengths, kind="stable")
        for batch in self._batches(order, lengths):
            out[batch] = self._embed_batch([ids[i] for i in batch])
            self.batches_run += 1
        return out

    def hidden_states(self, ids: list[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """One batch's token vectors straight from the graph, and its attention mask (what the gate compares)."""
        return self._run(ids)

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
            vecs = _unit(vecs)
        if self.dims:
            vecs = vecs[:, : self.dims]
            if self.normalize:
                vecs = _unit(vecs)  # Matryoshka: truncate, then renormalize
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
        return {
            "model": self.spec.name,
            "model_sha256": self.spec.model_id()[:16],
            "dims": self.dim,
            "max_length": self.max_length,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "prompt": self.prompt,
        }


def encoder_from_provenance(
    prov: dict, *, prompt: str | None = None, prompt_name: str | None = None, **runtime: object
) -> Encoder:
    """An encoder that makes vectors exactly as ``prov`` records; a prompt given here overrides (queries)."""
    from embcli.core.models import resolve_model

    spec = resolve_model(prov["model"])
    if not spec.matches(prov["model_sha256"]):
        raise IncompatibleError(
            f"model {prov['model']!r} here is not the one that made these vectors "
            f"(sha256 {spec.model_id()[:16]}, recorded {prov['model_sha256']})"
        )
    if prompt is None and prompt_name is None:
        prompt = prov["prompt"]
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


def _unit(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.clip(norms, 1e-12, None)


def _choose_prompt(spec: ModelSpec, prompt: str | None, prompt_name: str | None) -> str:
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
