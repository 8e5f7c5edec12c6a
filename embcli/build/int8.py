"""Int8 graphs that keep their accuracy: weight-only int8 in blocks of 32, activations per token.

What was measured on all-MiniLM-L6-v2 (2,000 real texts, 256 golden; README "Performance"):
- onnxruntime's ``quantize_dynamic`` is ~2x faster but drifts to cosine 0.83-0.98, and a
  text's vector depends on its batch (activation scales are per batch tensor);
- ``quantize_static`` (QDQ, per-channel, MinMax/Percentile/Entropy, SmoothQuant up to
  alpha 0.65) is batch-independent but stops at cosine ~0.97-0.986: LayerNorm outputs have
  outlier channels (|x| up to 28 against a median of 2) that one per-tensor scale cannot hold.
- Weight-only int8 passes: each weight matrix is stored as int8 with one scale per 32
  input rows (symmetric), behind a DequantizeLinear. onnxruntime turns DequantizeLinear +
  MatMul into MatMulNBits (8 bits), which quantizes activations per token and per 32-wide
  block at run time: fine enough for the outliers, and no text depends on its batch.
The fused Attention nodes (QKV projection and scores) stay in float.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BLOCK = 32
OPSET = 21  # DequantizeLinear with block_size


def quantize_int8(src: Path, dst: Path) -> list[str]:
    """Write ``src`` with block-32 int8 weights to ``dst``; returns the heavy nodes left in float."""
    import onnx
    from onnx import helper, numpy_helper

    from embcli.build.onnx_build import save_graph

    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    dequant, kept = [], []
    for node in graph.node:
        weight = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) > 1 else None
        w = numpy_helper.to_array(weight) if weight is not None else None
        if w is None or w.ndim != 2 or w.shape[0] % BLOCK:
            if node.op_type in ("MatMul", "Attention", "MultiHeadAttention"):
                kept.append(node.name)
            continue
        codes, scales = _blockwise(w.astype(np.float32))
        name = weight.name
        graph.initializer.extend(
            [numpy_helper.from_array(codes, name + ".int8"), numpy_helper.from_array(scales, name + ".scale")]
        )
        dequant.append(
            helper.make_node(
                "DequantizeLinear",
                [name + ".int8", name + ".scale"],
                [name + ".dq"],
                name=name + ".dq",
                axis=0,
                block_size=BLOCK,
            )
        )
        node.input[1] = name + ".dq"
    used = {i for n in [*dequant, *graph.node] for i in n.input}
    live = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(live)
    nodes = [*dequant, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = max(opset.version, OPSET)
    model.ir_version = max(model.ir_version, 10)  # opset 21 needs IR 10
    save_graph(model, dst)
    return kept


def _blockwise(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 codes of ``w`` (K, N) with one scale per 32 rows of K and column: (codes, scales)."""
    k, n = w.shape
    blocks = w.reshape(k // BLOCK, BLOCK, n)
    scales = np.abs(blocks).max(axis=1) / 127.0
    scales[scales == 0] = 1.0
    codes = np.clip(np.round(blocks / scales[:, None, :]), -127, 127).astype(np.int8).reshape(k, n)
    return codes, scales.astype(np.float32)
