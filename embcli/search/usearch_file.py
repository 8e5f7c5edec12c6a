"""The structure of a usearch vectors file, checked with numpy before usearch maps it.

usearch trusts every count, level and neighbour slot in the file: a crafted or
corrupt one sends it past the end (a segfault). ``check_usearch_file`` refuses
such a file with exit 4, vectorized over the whole file, so it stays cheap at a
million vectors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embcli.errors import IncompatibleError

USEARCH_METRIC = {"cos": "cos", "ip": "ip", "l2": "l2sq"}  # ours -> usearch's

# ---------------------------------------------------------------- usearch file structure
#
# The dense usearch file (2.x, checked against files written by 2.26):
#   u32 rows, u32 bytes per vector; rows x bytes of vectors;
#   64-byte head: "usearch", u16 version x3, u8 metric, scalar, key and slot kinds,
#     u64 count_present, count_deleted, dimensions, u8 multi;
#   graph head: u64 size, connectivity, connectivity_base, max_level, entry_slot;
#   i16 level per node; then per node: u64 key, i16 level, and for each level 0..level
#     a u32 neighbour count and room for connectivity_base (level 0) or connectivity u32 slots.
# usearch trusts all of it: a slot out of range or a level that lies sends it past the file.

_SCALAR_KINDS = {"f32": 11, "f16": 12, "i8": 23, "b1": 1}
_METRIC_KINDS = {"cos": 99, "ip": 105, "l2sq": 101, "hamming": 98}
_KEY_U64, _SLOT_U32 = 14, 15
_FREE_KEY = np.uint64(2**64 - 1)  # the key of a removed node's slot
_NO_LEVEL = 2**64 - 1  # max level -1, as u64
_MAX_LEVEL = 64  # levels are drawn with P(level >= l) = M^-l: anything near this is crafted
_MAX_CONNECTIVITY = 1 << 12
_NODE_CHUNK = 1 << 16  # nodes gathered at once: bounded memory at any size


def _vector_bytes(dims: int, dtype: str) -> int:
    return {"f32": 4 * dims, "f16": 2 * dims, "i8": dims, "b1": (dims + 7) // 8}[dtype]


def _ints(buf: np.ndarray, offset: int, dtype: str, count: int) -> np.ndarray:
    return np.frombuffer(buf, dtype=dtype, count=count, offset=offset)


def check_usearch_file(buf: np.ndarray, m: dict, p: Path) -> None:
    """Refuse a vectors file whose header or graph usearch could not map safely (exit 4).

    ``buf`` is the whole file as uint8. Checks the header against the manifest,
    then every node's level and offset, and every neighbour list's count, slots
    and levels, all vectorized over the file: cheap at a million vectors.
    """

    def bad(why: str) -> IncompatibleError:
        return IncompatibleError(f"index vectors file is corrupt ({why}), {p}")

    size = len(buf)
    if size < 8:
        raise bad("no matrix header")
    rows, cols = (int(x) for x in _ints(buf, 0, "<u4", 2))
    head = 8 + rows * cols
    if head + 64 + 40 > size:
        raise bad(f"a matrix of {rows} x {cols} bytes does not fit in {size:,} bytes")
    if cols != _vector_bytes(m["dims"], m["dtype"]):
        raise IncompatibleError(
            f"index manifest and vectors disagree (manifest: {m['dims']}-d {m['dtype']}, "
            f"{_vector_bytes(m['dims'], m['dtype'])} bytes a vector; file: {cols} bytes a vector), {p}"
        )
    if bytes(buf[head : head + 7]) != b"usearch":
        raise bad("not a usearch file")
    major = int(_ints(buf, head + 7, "<u2", 1)[0])
    metric, scalar, key_kind, slot_kind = (int(x) for x in buf[head + 13 : head + 17])
    present, deleted, dims = (int(x) for x in _ints(buf, head + 17, "<u8", 3))
    want_metric = _METRIC_KINDS["hamming" if m["dtype"] == "b1" else USEARCH_METRIC[m["metric"]]]
    if (dims, present, scalar, metric) != (m["dims"], m["count"], _SCALAR_KINDS[m["dtype"]], want_metric):
        raise IncompatibleError(
            f"index manifest and vectors disagree (manifest: {m['dims']}-d {m['dtype']} {m['metric']}, "
            f"{m['count']} vectors; file: {dims}-d, scalar kind {scalar}, metric kind {metric}, {present}), {p}"
        )
    if major != 2 or key_kind != _KEY_U64 or slot_kind != _SLOT_U32 or buf[head + 41] != 0:
        raise bad(f"usearch format {major}, key kind {key_kind}, slot kind {slot_kind}: not one this embcli writes")
    if present + deleted != rows:
        raise bad(f"{present} present and {deleted} deleted vectors, {rows} rows")
    _check_graph(buf, head + 64, rows, m, bad)


def _check_graph(buf: np.ndarray, g: int, rows: int, m: dict, bad) -> None:
    n, conn, conn_base, max_level, entry = (int(x) for x in _ints(buf, g, "<u8", 5))
    if n != rows:
        raise bad(f"graph of {n} nodes for {rows} vectors")
    if n == 0 and max_level == _NO_LEVEL:
        max_level = 0  # a graph that never held a node (an empty shard) records level -1
    if not (2 <= conn <= conn_base <= _MAX_CONNECTIVITY) or max_level > _MAX_LEVEL:
        raise bad(f"connectivity {conn}/{conn_base}, max level {max_level}")
    start = g + 40 + 2 * n
    if n == 0:
        if start != len(buf):
            raise bad(f"{len(buf) - start} bytes after an empty graph")
        return
    if start > len(buf):
        raise bad("node levels run past the end of the file")
    levels = _ints(buf, g + 40, "<i2", n).astype(np.int64)
    if levels.min() < 0 or levels.max() != max_level or entry >= n or levels[entry] != max_level:
        raise bad(f"node levels {levels.min()}..{levels.max()}, max level {max_level}, entry {entry} of {n}")
    base_bytes, level_bytes = 4 + 4 * conn_base, 4 + 4 * conn
    offsets, end = _node_offsets(levels, start, base_bytes, level_bytes)
    if end != len(buf):
        raise bad(f"nodes end at byte {end:,}, the file at {len(buf):,}")
    windows = np.lib.stride_tricks.sliding_window_view(buf, 10 + base_bytes)
    live = 0
    for lo in range(0, n, _NODE_CHUNK):
        # Node head and level-0 list, one row of bytes per node.
        rec = np.ascontiguousarray(windows[offsets[lo : lo + _NODE_CHUNK]])
        keys = rec[:, :8].copy().view("<u8")[:, 0]
        if np.any(rec[:, 8:10].copy().view("<i2")[:, 0] != levels[lo : lo + _NODE_CHUNK]):
            raise bad("a node's level differs from the level table")
        if np.any((keys != _FREE_KEY) & (keys >= m["next_key"])):
            raise bad(f"a key beyond the manifest's next key {m['next_key']}")
        live += int(np.count_nonzero(keys != _FREE_KEY))
        _check_lists(rec[:, 10:].copy().view("<u4"), conn_base, n, None, levels, bad)
    if live != m["count"]:
        raise bad(f"{live} live nodes, the manifest says {m['count']}")
    # Upper levels: node i has lists 1..levels[i] after its level-0 list.
    upper = np.flatnonzero(levels)
    if not len(upper):
        return
    owners = np.repeat(upper, levels[upper])
    first = np.cumsum(levels[upper]) - levels[upper]
    lvl = np.arange(len(owners)) - np.repeat(first, levels[upper]) + 1
    starts = offsets[owners] + 10 + base_bytes + (lvl - 1) * level_bytes
    windows = np.lib.stride_tricks.sliding_window_view(buf, level_bytes)
    for lo in range(0, len(starts), _NODE_CHUNK):
        lists = np.ascontiguousarray(windows[starts[lo : lo + _NODE_CHUNK]]).view("<u4")
        _check_lists(lists, conn, n, lvl[lo : lo + _NODE_CHUNK], levels, bad)


def _check_lists(lists: np.ndarray, cap: int, n: int, level: np.ndarray | None, levels: np.ndarray, bad) -> None:
    """Rows of (count, slot x cap): counts within room, used slots name nodes that reach ``level``."""
    counts = lists[:, 0].astype(np.int64)
    if np.any(counts > cap):
        raise bad(f"a neighbour list of {counts.max()} entries with room for {cap}")
    used = np.arange(cap) < counts[:, None]
    slots = lists[:, 1:].astype(np.int64)
    if np.any(used & (slots >= n)):
        raise bad(f"a neighbour slot {slots[used].max()} out of range ({n} nodes)")
    if level is not None:
        reach = levels[np.where(used, slots, 0)]
        if np.any(used & (reach < level[:, None])):
            raise bad("a neighbour on a level above its own")


def _node_offsets(levels: np.ndarray, start: int, base_bytes: int, level_bytes: int) -> tuple[np.ndarray, int]:
    """Where each node's record starts, and where the last one ends."""
    node_bytes = 10 + base_bytes + levels * level_bytes
    offsets = np.empty(len(levels), dtype=np.int64)
    offsets[0] = start
    np.cumsum(node_bytes[:-1], out=offsets[1:])
    offsets[1:] += start
    return offsets, int(offsets[-1] + node_bytes[-1])


def unreachable_keys(buf: np.ndarray) -> np.ndarray:
    """Keys of live nodes that a walk over level 0 from the entry point never reaches (uint64, sorted).

    ``buf`` is a whole vectors file as uint8, already passed by ``check_usearch_file``.
    Every search ends on level 0, entered from the entry point's descent: a node no
    level-0 edge path leads to is found by no query, not even its own vector. Parallel
    inserts race on neighbour lists and can leave such nodes (usearch keeps no check).
    Removed nodes still carry edges, as in usearch's own walks. A frontier BFS in numpy:
    one gather of the level-0 lists (4 x connectivity_base bytes a node), then a few
    dozen vectorized steps.
    """
    rows, cols = (int(x) for x in _ints(buf, 0, "<u4", 2))
    g = 8 + rows * cols + 64
    n, conn, conn_base, _, entry = (int(x) for x in _ints(buf, g, "<u8", 5))
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    levels = _ints(buf, g + 40, "<i2", n).astype(np.int64)
    base_bytes = 4 + 4 * conn_base
    offsets, _ = _node_offsets(levels, g + 40 + 2 * n, base_bytes, 4 + 4 * conn)
    windows = np.lib.stride_tricks.sliding_window_view(buf, 10 + base_bytes)
    keys = np.empty(n, dtype=np.uint64)
    # Unused slots point at the node itself: a self-loop adds nothing to the walk.
    adjacency = np.empty((n, conn_base), dtype=np.uint32)
    for lo in range(0, n, _NODE_CHUNK):
        rec = np.ascontiguousarray(windows[offsets[lo : lo + _NODE_CHUNK]])
        keys[lo : lo + len(rec)] = rec[:, :8].copy().view("<u8")[:, 0]
        lists = rec[:, 10:].copy().view("<u4")
        own = np.arange(lo, lo + len(rec), dtype=np.uint32)[:, None]
        adjacency[lo : lo + len(rec)] = np.where(np.arange(conn_base) < lists[:, :1], lists[:, 1:], own)
    seen = np.zeros(n, dtype=bool)
    seen[entry] = True
    frontier = np.array([entry], dtype=np.int64)
    while len(frontier):
        reached = adjacency[frontier].ravel()
        reached = np.unique(reached[~seen[reached]])
        seen[reached] = True
        frontier = reached
    lost = keys[~seen]
    return np.sort(lost[lost != _FREE_KEY])
