"""What an index is, in words or as its manifest (``embcli index info``), read cheaply.

Only the manifest is parsed and each named file is stat()ed: no checksum, no
graph check, so a huge index answers at once. ``index verify`` is the full check.
"""

from __future__ import annotations

import os
from pathlib import Path

from embcli.runtime import provenance
from embcli.search.index import MANIFEST, SHARDS, disk_bytes, read_manifest
from embcli.search.shards import ROUTING_RULE, read_shards, shard_paths

# Manifest fields that say how the index was built (shown under "HNSW"), in this order.
HNSW = ("connectivity", "expansion_add", "expansion_search")


def index_info(path: str | os.PathLike) -> dict:
    """The manifest of the index at ``path`` (validated as opening does), and what its files look like now.

    ``files`` maps each role (vectors, meta, floats) to its name, the bytes the
    manifest records and the bytes on disk now (None when the file is missing).
    """
    root = Path(path)
    manifest = read_manifest(root)
    files = {}
    for role, f in manifest["files"].items():
        try:
            on_disk: int | None = (root / os.path.basename(f["name"])).stat().st_size
        except OSError:
            on_disk = None
        files[role] = {"name": f["name"], "bytes": f["bytes"], "on_disk": on_disk}
    return {"path": str(root), "manifest": manifest, "files": files, "manifest_bytes": (root / MANIFEST).stat().st_size}


def sharded_info(path: str | os.PathLike) -> dict:
    """A sharded index as a whole: its shards.json, the total count, and each shard's count, generation and bytes.

    Cheap as ``index_info``: shards.json and each shard's manifest, and a stat() per file.
    """
    root = Path(path)
    meta = read_shards(root)
    shards = []
    for name, p in zip(meta["shards"], shard_paths(root, meta), strict=True):
        m = read_manifest(p)
        shards.append({"path": name, "count": m["count"], "generation": m.get("generation"), "bytes": disk_bytes(p, m)})
    return {
        **meta,
        "count": sum(s["count"] for s in shards),
        "bytes": sum(s["bytes"] for s in shards) + (root / SHARDS).stat().st_size,
        "shard_info": shards,
    }


def describe_sharded(path: str, info: dict) -> list[str]:
    """A sharded index in words, one fact per line, then one line per shard."""
    counts = [s["count"] for s in info["shard_info"]]
    lines = [
        f"index: {path} (sharded: {info['n']} shards)",
        f"count: {info['count']:,} vectors (per shard: {min(counts):,} to {max(counts):,})",
        f"dimensions: {info['dims']}",
        f"dtype: {info['dtype']}",
        f"metric: {info['metric']}",
        f"model: {_model(info.get('provenance'))}",
        f"routing: {info['routing']['rule']}: {ROUTING_RULE}",
        f"created: {info.get('created') or 'not recorded'}",
        f"updated: {info.get('updated') or 'not recorded'}",
        f"built by: embcli {info.get('embcli_version', '(version not recorded)')}, sharded format {info['version']}",
        "shards:",
    ]
    width = max(len(s["path"]) for s in info["shard_info"])
    for s in info["shard_info"]:
        gen = f"generation {s['generation']}" if s["generation"] is not None else "generation not recorded"
        lines.append(f"  {s['path']:<{width}}  {s['count']:>12,} vectors  {_size(s['bytes']):>9}  {gen}")
    lines.append(f"total: {_size(info['bytes'])}")
    return lines


def describe(info: dict) -> list[str]:
    """The index in words, one fact per line (``embcli index info``)."""
    m = info["manifest"]
    removed = m["next_key"] - m["count"]
    lines = [
        f"index: {info['path']}",
        f"count: {m['count']:,} vectors" + (f" ({removed:,} deleted or replaced before)" if removed else ""),
        f"dimensions: {m['dims']}",
        f"dtype: {m['dtype']}" + (" (with float32 copies for --rescore and --exact)" if "floats" in m["files"] else ""),
        f"metric: {m['metric']}",
        f"model: {_model(m.get('provenance'))}",
        "HNSW: " + ", ".join(f"{name.replace('_', ' ')} {m[name]}" for name in HNSW if name in m),
        f"text stored: {'yes' if m.get('store_text', True) else 'no'}",
        f"full-text index: {_fts(m.get('fts'))}",
        f"generation: {m['generation']}" if "generation" in m else "generation: not recorded",
        f"created: {m.get('created') or 'not recorded'}",
        f"updated: {m.get('updated') or 'not recorded'}",
        f"built by: embcli {m.get('embcli_version', '(version not recorded)')}, index format {m['version']}",
        "files:",
    ]
    width = max(len(f["name"]) for f in info["files"].values())
    total = info["manifest_bytes"]
    for role, f in info["files"].items():
        total += f["bytes"]
        state = ""
        if f["on_disk"] is None:
            state = "  MISSING"
        elif f["on_disk"] != f["bytes"]:
            state = f"  CHANGED: {_size(f['on_disk'])} on disk"
        lines.append(f"  {f['name']:<{width}}  {_size(f['bytes']):>9}  {role}{state}")
    lines.append(f"  {MANIFEST:<{width}}  {_size(info['manifest_bytes']):>9}  manifest")
    lines.append(f"total: {_size(total)}")
    return lines


def _model(prov: dict | None) -> str:
    """The model and the options its vectors were made with, as search will re-create them."""
    if not prov:
        return "none recorded (text queries cannot be embedded; vector queries only)"
    parts = []
    if prov.get("model_sha256"):
        parts.append(f"sha256 {prov['model_sha256']}…")
    for key in ("dims", "max_length", "pooling"):
        if prov.get(key) is not None:
            parts.append(f"{key.replace('_', ' ')} {prov[key]}")
    if "normalize" in prov:
        parts.append("normalized" if prov["normalize"] else "not normalized")
    parts.append(f"prompt {prov['prompt']!r}" if prov.get("prompt") else "no prompt")
    parts += [f"{k} {v}" for k, v in prov.items() if k not in provenance.KEYS]  # options a later embcli records
    return f"{prov.get('model', '?')} ({', '.join(parts)})"


def _fts(fts: dict | None) -> str:
    if not fts:
        return "none (search --hybrid and --lexical need one: rebuild with `embcli index --force`)"
    return f"field {fts['field']!r}, tokenizer {fts['tokenizer']} ({fts.get('tokenize', '?')}), BM25"


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,} B"
