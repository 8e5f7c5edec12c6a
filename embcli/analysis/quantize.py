"""Compact vectors: f16, int8/uint8 with per-dimension ranges, and (multi-bit) binary.

Schemes, for float vectors ``x`` of width D:

- ``f16``: half precision.
- ``int8`` / ``uint8``: each dimension d is mapped linearly from its range
  [lo_d, hi_d] onto 256 levels (int8: -128..127, uint8: 0..255), rounded and
  clipped. Ranges come from calibration vectors, never from the vectors being
  coded one at a time (one query alone gives degenerate ranges).
- ``binary`` / ``ubinary`` with ``bits`` B (1..4): plane 1 is the sign of x;
  each further plane is the sign of the residual the planes before it leave,
  x ≈ Σ_p s_p·b_p with b_p ∈ {-1, +1}^D and one scale s_p per plane, fitted on
  calibration data as the mean |residual| (the L2-optimal scale for a sign
  code). Planes are packed with numpy.packbits (dimension 0 is the most
  significant bit of byte 0), plane after plane: D·B/8 bytes. ``binary``
  stores the bytes as int8 (byte - 128, like sentence-transformers),
  ``ubinary`` as uint8. Scores between codes use Hamming distances per plane
  pair: ⟨x, y⟩ ≈ Σ_p Σ_q s_p·s_q·(D - 2·ham(b_p(x), b_q(y))).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import orjson

from embcli.errors import IncompatibleError, InputError, UsageError

SCHEMES = ("f16", "int8", "uint8", "binary", "ubinary")
FORMAT = "embcli-quantizer"
MIN_CALIBRATION_ROWS = 100  # fewer give ranges that do not describe the corpus


@dataclass
class Quantizer:
    scheme: str
    dims: int
    bits: int = 1
    lo: np.ndarray | None = None  # int8/uint8 ranges, per dimension
    hi: np.ndarray | None = None
    scales: list[float] = field(default_factory=list)  # binary: one per plane

    def __post_init__(self) -> None:
        if self.scheme not in SCHEMES:
            raise UsageError(f"unknown scheme {self.scheme!r}; choose from {', '.join(SCHEMES)}")
        if not 1 <= self.bits <= 4 or (self.bits > 1 and not self.is_binary):
            raise UsageError("--bits is 1..4, and only for binary and ubinary")

    @property
    def is_binary(self) -> bool:
        return self.scheme in ("binary", "ubinary")

    @property
    def needs_fit(self) -> bool:
        return self.scheme in ("int8", "uint8") or (self.is_binary and self.bits > 1)

    @property
    def fitted(self) -> bool:
        if self.scheme in ("int8", "uint8"):
            return self.lo is not None
        return not self.is_binary or self.bits == 1 or len(self.scales) == self.bits

    @property
    def code_dtype(self) -> np.dtype:
        return np.dtype(
            {"f16": np.float16, "int8": np.int8, "uint8": np.uint8, "binary": np.int8}.get(self.scheme, np.uint8)
        )

    @property
    def code_width(self) -> int:
        return (self.dims * self.bits + 7) // 8 if self.is_binary else self.dims

    @property
    def bytes_per_vector(self) -> int:
        return self.code_width * self.code_dtype.itemsize

    # ------------------------------------------------------------------ fit

    def fit(self, x: np.ndarray) -> Quantizer:
        """Fit ranges (int8/uint8) or plane scales (multi-bit binary) on calibration vectors."""
        x = self._check(x)
        if not self.needs_fit:
            return self
        if len(x) < MIN_CALIBRATION_ROWS:
            raise UsageError(
                f"{len(x)} calibration vectors are too few to fit {self.scheme} (need {MIN_CALIBRATION_ROWS})",
                hint="fit on the corpus once with --save-ranges FILE, then code queries with --ranges FILE",
            )
        if self.scheme in ("int8", "uint8"):
            self.lo, self.hi = x.min(axis=0).astype(np.float32), x.max(axis=0).astype(np.float32)
        else:
            self.scales = []
            residual = x.astype(np.float32)
            for _ in range(self.bits):
                signs = np.where(residual > 0, 1.0, -1.0).astype(np.float32)
                scale = float(np.abs(residual).mean())
                self.scales.append(scale)
                residual = residual - scale * signs
        return self

    # ------------------------------------------------------------------ encode / decode

    def encode(self, x: np.ndarray) -> np.ndarray:
        x = self._check(x)
        if not self.fitted:
            raise UsageError(f"{self.scheme} needs ranges: give --calibration FILE or --ranges FILE")
        if self.scheme == "f16":
            return x.astype(np.float16)
        if self.scheme in ("int8", "uint8"):
            step = self._steps()
            levels = np.clip(np.rint((x - self.lo) / step), 0, 255)
            return (levels - 128).astype(np.int8) if self.scheme == "int8" else levels.astype(np.uint8)
        packed = np.packbits(self._planes(x).reshape(len(x), -1), axis=1)  # (n, ceil(D*B/8))
        return (packed.astype(np.int16) - 128).astype(np.int8) if self.scheme == "binary" else packed

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Approximate float vectors back from codes (for asymmetric scores and reports)."""
        codes = np.asarray(codes)
        if self.scheme == "f16":
            return codes.astype(np.float32)
        if self.scheme in ("int8", "uint8"):
            levels = codes.astype(np.float32) + (128 if self.scheme == "int8" else 0)
            return levels * self._steps() + self.lo
        planes = self.unpack(codes)  # (n, B, D) of 0/1
        signs = planes.astype(np.float32) * 2 - 1
        scales = np.asarray(self.scales or [1.0], dtype=np.float32)[: self.bits]
        return np.einsum("nbd,b->nd", signs, scales)

    def unpack(self, codes: np.ndarray) -> np.ndarray:
        raw = np.asarray(codes)
        raw = (raw.astype(np.int16) + 128).astype(np.uint8) if self.scheme == "binary" else raw.astype(np.uint8)
        bits = np.unpackbits(raw, axis=1)[:, : self.dims * self.bits]
        return bits.reshape(len(raw), self.bits, self.dims)

    def _planes(self, x: np.ndarray) -> np.ndarray:
        """(n, B, D) 0/1 bits: the sign of x, then of each residual."""
        planes = np.empty((len(x), self.bits, self.dims), dtype=np.uint8)
        residual = x.astype(np.float32)
        for p in range(self.bits):
            bit = residual > 0
            planes[:, p] = bit
            if p + 1 < self.bits:
                residual = residual - self.scales[p] * np.where(bit, 1.0, -1.0).astype(np.float32)
        return planes

    def _steps(self) -> np.ndarray:
        return np.maximum(self.hi - self.lo, 1e-12) / 255.0

    def _check(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dims:
            raise IncompatibleError(f"vectors have {x.shape[-1]} dimensions, the quantizer {self.dims}")
        return x

    # ------------------------------------------------------------------ scores

    def code_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Approximate inner products between two sets of codes (symmetric: both sides coded).

        For binary codes this is Σ_p Σ_q s_p·s_q·(b_p·b_q), and b_p·b_q = D - 2·Hamming.
        """
        return self.decode(a) @ self.decode(b).T

    # ------------------------------------------------------------------ files

    def to_json(self) -> bytes:
        data: dict = {"format": FORMAT, "version": 1, "scheme": self.scheme, "dims": self.dims, "bits": self.bits}
        if self.lo is not None:
            data["min"], data["max"] = self.lo.tolist(), self.hi.tolist()
        if self.scales:
            data["scales"] = self.scales
        return orjson.dumps(data, option=orjson.OPT_INDENT_2)

    def describe(self) -> dict:
        """What a later stage needs to read the codes: travels with each record."""
        import hashlib

        d = {"scheme": self.scheme, "dims": self.dims, "bits": self.bits, "dtype": self.code_dtype.name}
        if self.needs_fit:
            d["ranges_sha256"] = hashlib.sha256(self.to_json()).hexdigest()[:16]
        return d

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> Quantizer:
        try:
            d = orjson.loads(raw)
            assert d["format"] == FORMAT and d["version"] == 1
            q = cls(d["scheme"], int(d["dims"]), int(d.get("bits", 1)))
            if "min" in d:
                with np.errstate(over="ignore"):  # 1e39 becomes Inf, refused below
                    q.lo, q.hi = np.asarray(d["min"], np.float32), np.asarray(d["max"], np.float32)
                assert q.lo.shape == q.hi.shape == (q.dims,)
                assert np.isfinite(q.lo).all() and np.isfinite(q.hi).all()  # 1e39 is Inf as float32
            q.scales = [float(s) for s in d.get("scales", [])]
            assert np.isfinite(q.scales).all()
        except (orjson.JSONDecodeError, AssertionError, KeyError, TypeError, ValueError):
            raise IncompatibleError(f"not an embcli ranges file, {where}") from None
        if not q.fitted:
            raise IncompatibleError(f"ranges file lacks the fitted values for {q.scheme}, {where}")
        return q


def _recall(exact: np.ndarray, found: np.ndarray, k: int) -> float:
    """Share of found items scoring at least the k-th exact score (ties count: summaries repeat)."""
    kth = -np.partition(-exact, k - 1, axis=1)[:, k - 1]
    got = np.take_along_axis(exact, found[:, :k], axis=1)
    return float((got >= kth[:, None] - 1e-6).sum() / (k * len(exact)))


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    idx = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    return np.take_along_axis(idx, np.argsort(-np.take_along_axis(scores, idx, axis=1), axis=1), axis=1)


def report_rows(x: np.ndarray, *, k: int, n_queries: int, seed: int, dims: list[int]) -> list[dict]:
    """Bytes per vector and recall@k against float exact search for each scheme.

    Queries are input vectors (excluded from their own results). int8/uint8/f16
    score float queries against decoded documents; binary scores codes against
    codes; "+ rescore M" re-ranks the top M·k by float scores.
    """
    x = x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)
    n, width = x.shape
    qi = np.random.default_rng(seed).choice(n, size=min(n_queries, n), replace=False)

    def masked(scores: np.ndarray) -> np.ndarray:
        scores = scores.copy()
        scores[np.arange(len(qi)), qi] = -np.inf  # a query is not its own neighbour
        return scores

    exact = masked(x[qi] @ x.T)
    rows = [{"scheme": f"f32 {width}d", "bytes": 4 * width, "ratio": 1.0, "recall": 1.0}]

    def measure(name: str, nbytes: int, scores: np.ndarray, rescore: tuple[int, ...] = ()) -> None:
        row = {"scheme": name, "bytes": nbytes, "ratio": round(4 * width / nbytes, 1)}
        rows.append({**row, "recall": round(_recall(exact, _top(scores, k), k), 4)})
        for m in rescore:  # re-rank the top m·k by full float scores
            cand = _top(scores, min(m * k, n - 1))
            best = np.take_along_axis(cand, _top(np.take_along_axis(exact, cand, axis=1), k), axis=1)
            rows.append({**row, "scheme": f"{name} + rescore {m}", "recall": round(_recall(exact, best, k), 4)})

    def coded(q: Quantizer, data: np.ndarray, symmetric: bool) -> np.ndarray:
        codes = q.encode(data)
        return masked(q.code_scores(codes[qi], codes) if symmetric else data[qi] @ q.decode(codes).T)

    measure("f16", 2 * width, coded(Quantizer("f16", width), x, symmetric=False))
    for scheme in ("int8", "uint8"):
        measure(scheme, width, coded(Quantizer(scheme, width).fit(x), x, symmetric=False))
    for bits in (1, 2, 3, 4):
        q = Quantizer("binary", width, bits).fit(x)
        name = "binary" if bits == 1 else f"binary {bits}-bit"
        measure(name, q.bytes_per_vector, coded(q, x, symmetric=True), rescore=(4, 10))
    for d in sorted({d for d in dims if d < width}, reverse=True):
        xd = x[:, :d] / np.clip(np.linalg.norm(x[:, :d], axis=1, keepdims=True), 1e-12, None)
        measure(f"f32 {d}d", 4 * d, masked(xd[qi] @ xd.T))
        measure(f"int8 {d}d", d, coded(Quantizer("int8", d).fit(xd), xd, symmetric=False))
        q = Quantizer("binary", d).fit(xd)
        measure(f"binary {d}d", q.bytes_per_vector, coded(q, xd, symmetric=True), rescore=(4,))
    return rows


# --------------------------------------------------------------------------- streaming codes

CHUNK = 4096  # rows coded at a time once the quantizer is ready


@dataclass
class QuantizeOptions:
    """How vectors become codes (the ``quantize`` command's coding flags)."""

    to: str | None = None  # the scheme; None takes it from ``ranges``
    bits: int = 1
    dims: int | None = None  # Matryoshka: keep the first N dimensions, renormalized
    calibration: str | np.ndarray | None = None  # a file of vectors (JSONL or NPY), or the vectors
    calibration_rows: int = 10_000  # else: fit on the first N rows of the input
    ranges: str | Quantizer | None = None  # a --save-ranges file, or a fitted quantizer: fixed codes
    vector_field: str = "embedding"
    model_field: str = "embedding_model"
    quant_field: str = "quantization"  # '' leaves the field out of the records


class CodeStream:
    """Codes for a stream of (record or None, vector) pairs, in input order and in chunks.

    The quantizer comes from ``ranges``, else is fitted on ``calibration``, else
    on the first ``calibration_rows`` rows of the input, so memory stays bounded
    whatever the input size. ``on_ready`` sees the quantizer once, before any
    codes are yielded (to save its ranges, or say what it codes to).
    """

    def __init__(self, options: QuantizeOptions, on_ready: Callable[[Quantizer], None] | None = None) -> None:
        if options.to is None and options.ranges is None:
            raise UsageError("give the target scheme with --to (f16, int8, uint8, binary, ubinary), or --ranges FILE")
        self.options = options
        self.on_ready = on_ready
        self.fixed = _fixed_quantizer(options)
        self.quantizer: Quantizer | None = None
        self._first: int | None = None

    @property
    def first_chunk(self) -> int:
        """Rows to read before coding starts: the calibration sample when the input calibrates itself."""
        if self._first is None:  # found on the first row: empty input is no error, whatever the options
            o = self.options
            self_calibrating = self.fixed is None and o.calibration is None and Quantizer(o.to, 1, o.bits).needs_fit
            self._first = o.calibration_rows if self_calibrating else CHUNK
        return self._first

    def truncate(self, x: np.ndarray) -> np.ndarray:
        dims = self.options.dims
        if dims is None:
            return x
        if dims > x.shape[1]:
            raise UsageError(f"--dims {dims} is more than the vectors' {x.shape[1]} dimensions")
        x = x[:, :dims]
        return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)

    def chunks(self, pairs: Iterable[tuple], records: bool = True) -> Iterator[tuple[list[dict] | None, np.ndarray]]:
        """(annotated records, codes) per chunk; records is None when ``records`` is False (NPY output)."""
        pending: list[tuple] = []
        for item in pairs:
            pending.append(item)
            if len(pending) >= (self.first_chunk if self.quantizer is None else CHUNK):
                yield self._code(pending, records)
                pending = []
        if pending:
            yield self._code(pending, records)

    def _code(self, pending: list[tuple], records: bool) -> tuple[list[dict] | None, np.ndarray]:
        x = self.truncate(np.vstack([v for _, v in pending]))
        if self.quantizer is None:  # the first rows calibrate when nothing else was given
            self.quantizer = self._make(x)
            if self.on_ready is not None:
                self.on_ready(self.quantizer)
        codes = self.quantizer.encode(x)
        return (self.annotate([r for r, _ in pending], codes) if records else None), codes

    def annotate(self, recs: list, codes: np.ndarray) -> list[dict]:
        """Records whose vector became its codes, with the quantization field and the model's new dims."""
        o, meta = self.options, self.quantizer.describe()
        out = []
        for rec, code in zip(recs, codes, strict=True):
            data = dict(rec.data)  # an NPY row has none
            data[o.vector_field] = code
            if o.quant_field:
                data[o.quant_field] = meta
            if o.dims and o.model_field and isinstance(data.get(o.model_field), dict):
                data[o.model_field] = {**data[o.model_field], "dims": o.dims}  # as `embed --dims` records it
            out.append(data)
        return out

    def _make(self, first: np.ndarray) -> Quantizer:
        width = first.shape[1]
        if self.fixed is not None:
            if self.fixed.dims != width:
                raise UsageError(f"--ranges is for {self.fixed.dims} dimensions, the vectors have {width}")
            return self.fixed
        o = self.options
        q = Quantizer(o.to, width, o.bits)
        if q.needs_fit:
            calib = first if o.calibration is None else self._calibration(width)
            q.fit(calib)
        return q

    def _calibration(self, width: int) -> np.ndarray:
        source = self.options.calibration
        if isinstance(source, np.ndarray):
            rows = list(np.atleast_2d(np.asarray(source, dtype=np.float32)))
        else:
            from embcli.io.readers import iter_embedded
            from embcli.io.streams import BadRecords, Source

            with Source(source) as csrc:
                rows = [v for _, v in iter_embedded(csrc, self.options.vector_field, BadRecords())]
        return self.truncate(np.vstack(rows)) if rows else np.zeros((0, width), np.float32)


def _fixed_quantizer(options: QuantizeOptions) -> Quantizer | None:
    """The quantizer that ``ranges`` fixes, checked against --to/--bits when those are given too."""
    ranges = options.ranges
    if ranges is None:
        return None
    fixed = ranges if isinstance(ranges, Quantizer) else Quantizer.from_json(read_ranges(ranges), ranges)
    if options.to is not None and (options.to, options.bits) != (fixed.scheme, fixed.bits):
        raise UsageError(
            f"--ranges holds {fixed.scheme} with {fixed.bits} bit(s), not --to {options.to} --bits {options.bits}"
        )
    return fixed


def read_ranges(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise UsageError(f"cannot read ranges: {e.strerror}, {path}") from None


def report_table(x: np.ndarray, *, k: int, n_queries: int, seed: int, dims: int | None) -> list[dict]:
    """``quantize --report``: every scheme's bytes and recall@k on these vectors (at least 2·k of them)."""
    if len(x) < 2 * k:
        raise InputError(f"--report needs at least {2 * k} vectors, got {len(x)}")
    return report_rows(x.astype(np.float32), k=k, n_queries=n_queries, seed=seed, dims=[dims] if dims else [256, 128])
