"""Encoder-only transformer weights (BERT, RoBERTa, XLM-RoBERTa) and a numpy reference forward.

``read_encoder`` turns a Hugging Face checkpoint directory (``config.json`` plus
safetensors) into plain arrays laid out for ``x @ W``. ``reference_forward`` is
the same computation as the transformers library's, written out in numpy: it is
what every built ONNX graph is checked against before it is written.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embcli.build.safetensors import load_weights_dir
from embcli.errors import IncompatibleError

# model_type -> whether position ids start after the padding index (the RoBERTa family)
ARCHITECTURES = {"bert": False, "roberta": True, "xlm-roberta": True, "camembert": True, "mpnet": True}
ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu")
SUPPORTED = "BERT (bert: MiniLM, BGE, E5, GTE), XLM-RoBERTa (xlm-roberta, roberta, camembert) and MPNet (mpnet)"
MASK_VALUE = -10000.0  # added to attention scores at padded positions, as BERT exports do


# Layer field prefix -> checkpoint tensor name under encoder.layer.N (dense weights are transposed for x @ W).
_LAYER_TENSORS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "o": "attention.output.dense",
    "ln1": "attention.output.LayerNorm",
    "i": "intermediate.dense",
    "out": "output.dense",
    "ln2": "output.LayerNorm",
}
# MPNet names its attention projections differently; the rest of the layer is BERT's.
_MPNET_TENSORS = {
    **_LAYER_TENSORS,
    "q": "attention.attn.q",
    "k": "attention.attn.k",
    "v": "attention.attn.v",
    "o": "attention.attn.o",
    "ln1": "attention.LayerNorm",
}
REL_MAX_DISTANCE = 128  # MPNet's relative_position_bucket default (not in config.json)


@dataclass
class Layer:
    q_w: np.ndarray
    q_b: np.ndarray
    k_w: np.ndarray
    k_b: np.ndarray
    v_w: np.ndarray
    v_b: np.ndarray
    o_w: np.ndarray
    o_b: np.ndarray
    ln1_w: np.ndarray
    ln1_b: np.ndarray
    i_w: np.ndarray
    i_b: np.ndarray
    out_w: np.ndarray
    out_b: np.ndarray
    ln2_w: np.ndarray
    ln2_b: np.ndarray


@dataclass
class EncoderWeights:
    model_type: str
    hidden: int
    heads: int
    activation: str
    eps: float
    pad_id: int
    roberta_positions: bool  # position id = pad_id + 1 + index of the token (padding gets pad_id)
    word: np.ndarray
    position: np.ndarray
    token_type: np.ndarray
    emb_ln_w: np.ndarray
    emb_ln_b: np.ndarray
    layers: list[Layer]
    # MPNet: a learned bias per (relative-position bucket, head) added to every layer's attention scores.
    rel_bias: np.ndarray | None = None

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def intermediate(self) -> int:
        return self.layers[0].i_w.shape[1]

    def flops_per_token(self) -> float:
        """Multiply-adds ×2 of the dense layers per token (attention scores are small at short lengths)."""
        h, i = self.hidden, self.intermediate
        return 2.0 * len(self.layers) * (4 * h * h + 2 * h * i)


def read_config(directory: Path) -> dict:
    try:
        config = json.loads((directory / "config.json").read_text())
    except FileNotFoundError:
        raise IncompatibleError(f"no config.json in {directory}") from None
    except (OSError, ValueError) as e:
        raise IncompatibleError(f"unreadable config.json ({e}), {directory}") from None
    return config if isinstance(config, dict) else {}


def check_supported(config: dict, where: Path) -> None:
    """Refuse, in one line naming what is supported, any config this builder cannot reproduce exactly."""
    model_type = config.get("model_type")
    if model_type not in ARCHITECTURES:
        raise IncompatibleError(f"unsupported architecture {model_type!r}: supported are {SUPPORTED}, {where}")
    problems = []
    if config.get("hidden_act", "gelu") not in ACTIVATIONS:
        problems.append(f"hidden_act {config.get('hidden_act')!r} (supported: {', '.join(ACTIVATIONS)})")
    if config.get("position_embedding_type", "absolute") != "absolute":
        problems.append(f"position_embedding_type {config['position_embedding_type']!r} (only 'absolute')")
    if config.get("is_decoder") or config.get("add_cross_attention"):
        problems.append("decoder or cross-attention layers")
    if problems:
        raise IncompatibleError(f"unsupported {model_type} variant: {'; '.join(problems)}, {where}")


def read_encoder(directory: Path) -> EncoderWeights:
    """Weights of a supported checkpoint directory, transposed for ``x @ W``, as float32."""
    config = read_config(directory)
    check_supported(config, directory)
    tensors = load_weights_dir(directory)
    # Checkpoints name tensors with or without the base-model prefix ("bert.", "roberta.", …).
    prefixes = sorted(
        {
            n.split("embeddings.word_embeddings.weight")[0]
            for n in tensors
            if n.endswith("embeddings.word_embeddings.weight")
        },
        key=len,
    )
    if not prefixes:
        raise IncompatibleError(f"no embeddings.word_embeddings.weight in the weights, {directory}")
    prefix = prefixes[0]

    def get(name: str, transpose: bool = False) -> np.ndarray:
        t = tensors.get(prefix + name)
        if t is None:
            raise IncompatibleError(
                f"weights lack {prefix + name!r} (not a {config['model_type']} checkpoint?), {directory}"
            )
        t = np.asarray(t, dtype=np.float32)
        return np.ascontiguousarray(t.T) if transpose else t

    n_layers = int(config.get("num_hidden_layers", 0))
    names = _MPNET_TENSORS if config["model_type"] == "mpnet" else _LAYER_TENSORS
    layers = [
        Layer(
            **{
                f"{short}_{kind}": get(
                    f"encoder.layer.{i}.{name}.{'weight' if kind == 'w' else 'bias'}",
                    transpose=kind == "w" and not name.endswith("LayerNorm"),
                )
                for short, name in names.items()
                for kind in ("w", "b")
            }
        )
        for i in range(n_layers)
    ]
    hidden = int(config.get("hidden_size", 0))
    heads = int(config.get("num_attention_heads", 0))
    if not layers or hidden <= 0 or heads <= 0 or hidden % heads:
        raise IncompatibleError(
            f"config.json has no usable num_hidden_layers/hidden_size/num_attention_heads, {directory}"
        )
    word = get("embeddings.word_embeddings.weight")
    if config["model_type"] == "mpnet":  # no token types; relative-position attention bias instead
        token_type = np.zeros((1, hidden), np.float32)
        rel_bias = get("encoder.relative_attention_bias.weight")
        if rel_bias.shape[1] != heads:
            raise IncompatibleError(f"relative_attention_bias has {rel_bias.shape[1]} heads, not {heads}, {directory}")
    else:
        token_type, rel_bias = get("embeddings.token_type_embeddings.weight"), None
    if word.shape[1] != hidden:
        raise IncompatibleError(f"word embeddings are {word.shape[1]}-d but hidden_size is {hidden}, {directory}")
    return EncoderWeights(
        model_type=config["model_type"],
        hidden=hidden,
        heads=heads,
        activation=config.get("hidden_act", "gelu"),
        eps=float(config.get("layer_norm_eps", 1e-12)),
        pad_id=int(config.get("pad_token_id") or 0),
        roberta_positions=ARCHITECTURES[config["model_type"]],
        word=word,
        position=get("embeddings.position_embeddings.weight"),
        token_type=token_type,
        emb_ln_w=get("embeddings.LayerNorm.weight"),
        emb_ln_b=get("embeddings.LayerNorm.bias"),
        layers=layers,
        rel_bias=rel_bias,
    )


def position_ids(w: EncoderWeights, input_ids: np.ndarray) -> np.ndarray:
    if not w.roberta_positions:
        return np.broadcast_to(np.arange(input_ids.shape[1]), input_ids.shape)
    real = (input_ids != w.pad_id).astype(np.int64)
    return np.cumsum(real, axis=1) * real + w.pad_id


def relative_buckets(length: int, n_buckets: int, max_distance: int = REL_MAX_DISTANCE) -> np.ndarray:
    """MPNet's bucket of each (query, key) position pair, ``(length, length)`` int64 (as transformers computes it).

    Half the buckets are for keys before the query, half after; within each half,
    exact distances up to a quarter of the buckets, then log-spaced up to max_distance.
    """
    pos = np.arange(length)
    n = pos[:, None] - pos[None, :]  # = -(key - query)
    half = n_buckets // 2
    ret = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    exact = half // 2
    with np.errstate(divide="ignore"):
        large = exact + (
            np.log(np.maximum(n, 1).astype(np.float32) / exact) / math.log(max_distance / exact) * (half - exact)
        ).astype(np.int64)
    large = np.minimum(large, half - 1)
    return ret + np.where(n < exact, n, large)


def activation(name: str, x: np.ndarray) -> np.ndarray:
    if name == "gelu":
        from scipy.special import erf

        return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    if name == "relu":
        return np.maximum(x, 0)
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def _layer_norm(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def reference_forward(
    w: EncoderWeights, input_ids: np.ndarray, attention_mask: np.ndarray, dtype: type = np.float64
) -> np.ndarray:
    """Last hidden states ``(batch, seq, hidden)`` for right-padded ids; token type ids are all zero."""

    def c(a: np.ndarray) -> np.ndarray:
        return a.astype(dtype, copy=False)

    b, s = input_ids.shape
    x = c(w.word[input_ids]) + c(w.position[position_ids(w, input_ids)]) + c(w.token_type[0])
    x = _layer_norm(x, c(w.emb_ln_w), c(w.emb_ln_b), w.eps)
    bias = (1.0 - attention_mask[:, None, None, :].astype(dtype)) * MASK_VALUE
    nh, hd = w.heads, w.head_dim
    if w.rel_bias is not None:  # (1, heads, seq, seq)
        bias = bias + c(w.rel_bias[relative_buckets(s, w.rel_bias.shape[0])].transpose(2, 0, 1)[None])
    for layer in w.layers:

        def split(t: np.ndarray) -> np.ndarray:
            return t.reshape(b, s, nh, hd).transpose(0, 2, 1, 3)

        q = split(x @ c(layer.q_w) + c(layer.q_b))
        k = split(x @ c(layer.k_w) + c(layer.k_b))
        v = split(x @ c(layer.v_w) + c(layer.v_b))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd) + bias
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        probs = scores / scores.sum(axis=-1, keepdims=True)
        ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(b, s, w.hidden)
        x = _layer_norm(ctx @ c(layer.o_w) + c(layer.o_b) + x, c(layer.ln1_w), c(layer.ln1_b), w.eps)
        inner = activation(w.activation, x @ c(layer.i_w) + c(layer.i_b))
        x = _layer_norm(inner @ c(layer.out_w) + c(layer.out_b) + x, c(layer.ln2_w), c(layer.ln2_b), w.eps)
    return x
