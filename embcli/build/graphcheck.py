"""The accuracy gate every built graph passes before it is written.

A graph is compared with ``reference_forward`` over the same weights:
- fp32: last hidden states at real tokens within 1e-4 absolute;
- fp16 and int8: sentence-embedding cosine ≥ 0.998 on every golden text and
  ≥ 0.995 on each of 2,000 real texts, against the fp32 graph that passed the
  first check (it stands in for the numpy reference, which is 10× slower).
The texts ship with embcli (``builtin/check-texts.jsonl``, built by
``tools/make_check_texts.py``), so the gate needs no network and no test data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from embcli.build.transformer import EncoderWeights, reference_forward
from embcli.runtime.encoder import Encoder, pad_batch
from embcli.store.models import ModelSpec

CHECK_TEXTS = Path(__file__).resolve().parent.parent / "builtin" / "check-texts.jsonl"
MAX_ABS_FP32 = 1e-4
MIN_COS_GOLDEN = 0.998
MIN_COS_REAL = 0.995
HIDDEN_CHECK_TEXTS = 64  # golden texts, spread over all lengths, whose hidden states are compared in float64


def check_texts(kind: str) -> list[str]:
    """One set of the shipped check texts: golden, real or timing."""
    import orjson

    with open(CHECK_TEXTS, "rb") as f:
        return [r["text"] for line in f if (r := orjson.loads(line))["set"] == kind]


@dataclass
class GateResult:
    precision: str
    passed: bool
    max_abs: float | None = None
    golden_min: float | None = None
    real_min: float | None = None
    real_mean: float | None = None
    texts: int = 0
    seconds: float = 0.0

    def describe(self) -> str:
        if self.max_abs is not None:
            return f"max |Δ hidden| {self.max_abs:.2e} over {self.texts} texts (gate {MAX_ABS_FP32:g}): " + (
                "passed" if self.passed else "REFUSED"
            )
        return (
            f"cosine min {self.golden_min:.5f} on golden texts (gate {MIN_COS_GOLDEN}), "
            f"min {self.real_min:.5f} / mean {self.real_mean:.5f} on 2,000 real texts (gate {MIN_COS_REAL}): "
            + ("passed" if self.passed else "REFUSED")
        )

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


@dataclass
class Checker:
    """Checks graphs of one model; reference outputs are computed once and reused across graphs."""

    weights: EncoderWeights
    spec: ModelSpec  # the model directory: tokenizer, max length, pooling
    threads: int | None = None
    fp32_graph: Path | None = None  # set by the first fp32 graph that passes
    _ref: dict = field(default_factory=dict, repr=False)

    def encoder(self, graph: Path) -> Encoder:
        spec = replace(self.spec, onnx_path=graph, _sha256=None, expected_sha256=None)
        return Encoder(spec, device="cpu", threads=self.threads, normalize=True, prompt="")

    def gate(self, graph: Path, precision: str) -> GateResult:
        start = time.perf_counter()
        enc = self.encoder(graph)
        result = self._hidden_gate(enc) if precision == "fp32" else self._embedding_gate(enc, precision)
        if precision == "fp32" and result.passed and self.fp32_graph is None:
            self.fp32_graph = graph
        result.seconds = time.perf_counter() - start
        return result

    def _hidden_gate(self, enc: Encoder) -> GateResult:
        texts = check_texts("golden")
        ids = [e.ids for e in enc.tokenizer.encode_batch(texts)]
        order = np.argsort([len(x) for x in ids], kind="stable")
        picked = order[np.linspace(0, len(order) - 1, min(HIDDEN_CHECK_TEXTS, len(order))).astype(int)]
        batches = [[ids[i] for i in picked[start : start + 8]] for start in range(0, len(picked), 8)]
        # All reference passes first: onnxruntime's spinning threads would starve numpy's BLAS.
        if "hidden" not in self._ref:
            self._ref["hidden"] = [reference_forward(self.weights, *pad_batch(b, enc.pad_id)) for b in batches]
        worst = 0.0
        for batch, ref in zip(batches, self._ref["hidden"], strict=True):
            hidden, mask = enc.hidden_states(batch)
            real = mask.astype(bool)
            worst = max(worst, float(np.abs(hidden[real] - ref[real]).max()))
        return GateResult("fp32", worst <= MAX_ABS_FP32, max_abs=worst, texts=len(picked))

    def _embedding_gate(self, enc: Encoder, precision: str) -> GateResult:
        cos = {}
        for kind in ("golden", "real"):
            texts = check_texts(kind)
            got = enc.encode(texts)
            cos[kind] = np.einsum("ij,ij->i", got, self.reference(kind))
        passed = cos["golden"].min() >= MIN_COS_GOLDEN and cos["real"].min() >= MIN_COS_REAL
        return GateResult(
            precision,
            bool(passed),
            golden_min=float(cos["golden"].min()),
            real_min=float(cos["real"].min()),
            real_mean=float(cos["real"].mean()),
            texts=sum(len(c) for c in cos.values()),
        )

    def reference(self, kind: str) -> np.ndarray:
        """Unit sentence embeddings of a check set from the fp32 graph that passed the hidden-state gate.

        That graph equals the numpy reference within 1e-4 on every hidden state, so its
        sentence vectors stand in for the reference's at a fraction of the cost.
        """
        if kind not in self._ref:
            if self.fp32_graph is None:
                raise RuntimeError("gate an fp32 graph before a reduced-precision one")
            self._ref[kind] = self.encoder(self.fp32_graph).encode(check_texts(kind))
        return self._ref[kind]
