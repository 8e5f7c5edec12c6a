"""Static int8 quantization that keeps accuracy (placeholder recipe; refined by measurement)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embcli.core.graphcheck import Checker, check_texts


def calibration_feeds(checker: Checker, graph: Path, batch: int = 32) -> list[dict[str, np.ndarray]]:
    """Length-sorted batches of the shipped calibration texts, as graph feeds."""
    enc = checker.encoder(graph)
    ids = [e.ids for e in enc.tokenizer.encode_batch(check_texts("calibration"))]
    ids.sort(key=len)
    feeds = []
    for start in range(0, len(ids), batch):
        rows = ids[start : start + batch]
        width = max(len(r) for r in rows)
        input_ids = np.full((len(rows), width), enc.pad_id, dtype=np.int64)
        mask = np.zeros_like(input_ids)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = r
            mask[i, : len(r)] = 1
        feed = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        feeds.append({k: v for k, v in feed.items() if k in enc._input_names})
    return feeds


def quantize_int8(src: Path, dst: Path, checker: Checker) -> list[str]:
    """Per-channel static QDQ on weight MatMuls; returns the MatMul nodes left in float."""
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    ort.set_default_logger_severity(3)  # the calibration session warns about initializers it drops

    feeds = calibration_feeds(checker, src)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(feeds)

        def get_next(self) -> dict | None:
            return next(self._it, None)

    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        op_types_to_quantize=["MatMul"],
        extra_options={"MatMulConstBOnly": True},
    )
    return []
