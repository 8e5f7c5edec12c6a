"""Build an ONNX graph straight from encoder weights with the ``onnx`` package (no torch export).

The node pattern is the one a torch export of BERT produces (MatMul+Add
projections, Reshape/Transpose heads, Div-scaled scores plus a -10000 mask,
erf GELU, LayerNormalization), so onnxruntime's transformer optimizer can fuse
it exactly as it fuses exported graphs.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from embcli.build.transformer import MASK_VALUE, EncoderWeights, relative_buckets

OPSET = 17  # first opset with LayerNormalization
EXTERNAL_DATA_BYTES = 1_800_000_000  # protobuf stops at 2 GB: larger models keep weights beside the graph


class _Graph:
    """A little builder: unique names, initializers and nodes in order."""

    def __init__(self) -> None:
        self.nodes: list = []
        self.inits: list = []
        self._names: set[str] = set()
        self._n = 0

    def const(self, name: str, value: np.ndarray) -> str:
        """An initializer; a name given twice is the same constant."""
        from onnx import numpy_helper

        if name not in self._names:
            self._names.add(name)
            self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], name: str | None = None, **attrs: object) -> str:
        from onnx import helper

        self._n += 1
        out = name or f"{op_type.lower()}_{self._n}"
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=f"{op_type}_{self._n}", **attrs))
        return out

    def layer_norm(
        self, x: str, weight: np.ndarray, bias: np.ndarray, prefix: str, eps: float, out: str | None = None
    ) -> str:
        w, b = self.const(prefix + ".w", weight), self.const(prefix + ".b", bias)
        return self.op("LayerNormalization", [x, w, b], name=out, axis=-1, epsilon=eps)

    def dense(self, x: str, weight: np.ndarray, bias: np.ndarray, name: str) -> str:
        """x @ W + b, bias first as torch exports it."""
        return self.op("Add", [self.const(name + ".b", bias), self.op("MatMul", [x, self.const(name + ".w", weight)])])


def build_graph(w: EncoderWeights, with_token_types: bool = True):
    """An ``onnx.ModelProto``: inputs input_ids, attention_mask[, token_type_ids] → last_hidden_state."""
    from onnx import TensorProto, helper

    g = _Graph()
    f32 = np.float32
    i64 = np.int64
    with_token_types = with_token_types and w.token_type.shape[0] > 1

    # Embeddings: word + position + token type, then LayerNorm.
    x = g.op("Gather", [g.const("embeddings.word", w.word), "input_ids"])
    if w.roberta_positions:  # position ids count real tokens from pad_id + 1 (padding keeps pad_id)
        real = g.op(
            "Cast",
            [g.op("Not", [g.op("Equal", ["input_ids", g.const("pad_id", np.array(w.pad_id, i64))])])],
            to=TensorProto.INT64,
        )
        counted = g.op("Mul", [g.op("CumSum", [real, g.const("axis1", np.array(1, i64))]), real])
        positions = g.op("Add", [counted, "pad_id"])
    else:
        seq_len = g.op("Gather", [g.op("Shape", ["input_ids"]), g.const("one", np.array(1, i64))], axis=0)
        positions = g.op(
            "Unsqueeze",
            [g.op("Range", [g.const("zero", np.array(0, i64)), seq_len, "one"]), g.const("axes0", np.array([0], i64))],
        )
    x = g.op("Add", [x, g.op("Gather", [g.const("embeddings.position", w.position), positions])])
    if with_token_types:
        types = g.op("Gather", [g.const("embeddings.token_type", w.token_type), "token_type_ids"])
    else:
        types = g.const("embeddings.token_type0", w.token_type[0])
    x = g.op("Add", [x, types])
    x = g.layer_norm(x, w.emb_ln_w, w.emb_ln_b, "embeddings.ln", w.eps)

    # Additive attention mask (batch, 1, 1, seq): 0 on real tokens, -10000 on padding.
    # Two single-axis Unsqueezes, as torch exports them: the optimizer's Attention fusion matches that path.
    mask = g.op(
        "Unsqueeze",
        [
            g.op("Unsqueeze", ["attention_mask", g.const("axes1", np.array([1], i64))]),
            g.const("axes2", np.array([2], i64)),
        ],
    )
    mask = g.op("Cast", [mask], to=TensorProto.FLOAT)
    mask = g.op(
        "Mul",
        [g.op("Sub", [g.const("one_f", np.array(1.0, f32)), mask]), g.const("mask_value", np.array(MASK_VALUE, f32))],
    )

    if w.rel_bias is not None:  # MPNet: bias[bucket(query, key)] per head, sliced to the batch's length
        table = g.const("rel_buckets", relative_buckets(w.position.shape[0], w.rel_bias.shape[0]))
        seq = g.op(  # (seq_len,), 1-D as Slice wants its ends
            "Slice",
            [g.op("Shape", ["input_ids"]), g.const("at1", np.array([1], i64)), g.const("at2", np.array([2], i64))],
        )
        ends = g.op("Concat", [seq, seq], axis=0)
        buckets = g.op(
            "Slice", [table, g.const("zeros2", np.array([0, 0], i64)), ends, g.const("axes01", np.array([0, 1], i64))]
        )
        rel = g.op("Transpose", [g.op("Gather", [g.const("rel_bias", w.rel_bias), buckets])], perm=[2, 0, 1])
        mask = g.op("Add", [mask, rel])

    heads_shape = g.const("heads_shape", np.array([0, 0, w.heads, w.head_dim], i64))
    hidden_shape = g.const("hidden_shape", np.array([0, 0, w.hidden], i64))
    scale = g.const("score_scale", np.array(math.sqrt(w.head_dim), f32))
    for i, layer in enumerate(w.layers):
        p = f"layer{i}."

        def heads(t: str, perm: list[int]) -> str:
            return g.op("Transpose", [g.op("Reshape", [t, heads_shape])], perm=perm)

        q = heads(g.dense(x, layer.q_w, layer.q_b, p + "query"), [0, 2, 1, 3])
        k = heads(g.dense(x, layer.k_w, layer.k_b, p + "key"), [0, 2, 3, 1])
        v = heads(g.dense(x, layer.v_w, layer.v_b, p + "value"), [0, 2, 1, 3])
        scores = g.op("Add", [g.op("Div", [g.op("MatMul", [q, k]), scale]), mask])
        ctx = g.op("MatMul", [g.op("Softmax", [scores], axis=-1), v])
        ctx = g.op("Reshape", [g.op("Transpose", [ctx], perm=[0, 2, 1, 3]), hidden_shape])
        attn = g.op("Add", [g.dense(ctx, layer.o_w, layer.o_b, p + "attn_out"), x])
        x = g.layer_norm(attn, layer.ln1_w, layer.ln1_b, p + "ln1", w.eps)
        inner = _activation(g, w.activation, g.dense(x, layer.i_w, layer.i_b, p + "intermediate"))
        out = g.op("Add", [g.dense(inner, layer.out_w, layer.out_b, p + "ffn_out"), x])
        last = "last_hidden_state" if i == len(w.layers) - 1 else None
        x = g.layer_norm(out, layer.ln2_w, layer.ln2_b, p + "ln2", w.eps, out=last)

    dims = ["batch", "sequence"]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, dims) for n in ("input_ids", "attention_mask")]
    if with_token_types:
        inputs.append(helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, dims))
    outputs = [helper.make_tensor_value_info(x, TensorProto.FLOAT, [*dims, w.hidden])]
    graph = helper.make_graph(g.nodes, f"{w.model_type}_encoder", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="embcli")
    model.ir_version = 8  # readable by onnxruntime ≥ 1.14
    return model


def _activation(g: _Graph, name: str, x: str) -> str:
    f32 = np.float32
    if name == "relu":
        return g.op("Relu", [x])
    half = g.const("half", np.array(0.5, f32))
    one = g.const("one_act", np.array(1.0, f32))
    if name == "gelu":  # x · ½(1 + erf(x/√2)): the pattern the optimizer fuses to Gelu
        sqrt2 = g.const("sqrt2", np.array(math.sqrt(2.0), f32))
        erf = g.op("Add", [g.op("Erf", [g.op("Div", [x, sqrt2])]), one])
        return g.op("Mul", [g.op("Mul", [x, erf]), half])
    # tanh approximation (gelu_new / gelu_pytorch_tanh)
    c = g.const("gelu_c", np.array(math.sqrt(2.0 / math.pi), f32))
    k = g.const("gelu_k", np.array(0.044715, f32))
    cube = g.op("Mul", [g.op("Mul", [g.op("Mul", [x, x]), x]), k])
    t = g.op("Add", [g.op("Tanh", [g.op("Mul", [g.op("Add", [x, cube]), c])]), one])
    return g.op("Mul", [g.op("Mul", [x, t]), half])


def save_graph(model, path: Path) -> None:
    """Write ``model`` to ``path``; weights go to ``path.name + '_data'`` beside it when over protobuf's limit."""
    import onnx

    if model.ByteSize() > EXTERNAL_DATA_BYTES:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=path.name + "_data",
            size_threshold=1024,
        )
    else:
        onnx.save_model(model, str(path))
