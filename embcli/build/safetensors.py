"""Read ``.safetensors`` weights with numpy alone (no torch, no safetensors package).

The format is an 8-byte little-endian header length, a JSON header mapping each
tensor to its dtype, shape and byte range, then the raw bytes. Tensors are
memory-mapped views; bf16 is widened to float32 (numpy has no bf16).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

from embcli.errors import IncompatibleError

_DTYPES = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": np.uint16,  # widened below
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}


def load_safetensors(path: Path) -> dict[str, np.ndarray]:
    """All tensors of one file, by name; raises IncompatibleError on a malformed file."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            (header_len,) = struct.unpack("<Q", f.read(8))
            if header_len > min(size - 8, 100 << 20):
                raise ValueError("header length past the end of the file")
            header = json.loads(f.read(header_len))
    except (OSError, ValueError, struct.error) as e:
        raise IncompatibleError(f"not a readable safetensors file ({e}), {path}") from None
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + header_len) if size > 8 + header_len else None
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = _DTYPES.get(info.get("dtype"))
        start, end = info.get("data_offsets", (0, -1))
        shape = info.get("shape", [])
        if dtype is None:
            raise IncompatibleError(f"tensor {name!r} has unsupported dtype {info.get('dtype')!r}, {path}")
        count = int(np.prod(shape, dtype=np.int64))
        if data is None or not 0 <= start <= end <= len(data) or end - start != count * np.dtype(dtype).itemsize:
            raise IncompatibleError(f"tensor {name!r} points outside the file (truncated?), {path}")
        arr = data[start:end].view(dtype).reshape(shape)
        if info["dtype"] == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = arr
    return tensors


def load_weights_dir(directory: Path) -> dict[str, np.ndarray]:
    """``model.safetensors``, or the shards a ``model.safetensors.index.json`` lists."""
    single = directory / "model.safetensors"
    if single.is_file():
        return load_safetensors(single)
    index = directory / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError) as e:
            raise IncompatibleError(f"unreadable shard index ({e}), {index}") from None
        tensors: dict[str, np.ndarray] = {}
        for shard in shards:
            tensors.update(load_safetensors(directory / shard))
        return tensors
    hint = (
        "pytorch_model.bin needs torch to read; convert it to safetensors first"
        if (directory / "pytorch_model.bin").is_file()
        else None
    )
    raise IncompatibleError(f"no model.safetensors in {directory}", hint=hint)
