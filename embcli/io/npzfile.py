"""Saved heads and detectors (plain NPZ, never unpickled), read with every array checked before it is inflated.

An NPZ is a zip of ``.npy`` members. Reading a member allocates what its header
declares, so a crafted file of a few bytes could ask for gigabytes: here each
member's header is read first and must agree with the zip's record of its size,
which must itself be within a bound of what is stored on disk. Only then are the
arrays read, and their values checked (finite) by the caller's schema.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable

import numpy as np

from embcli.errors import IncompatibleError, UsageError

# A member may inflate to this many times its stored size: np.savez stores (1x), float
# vectors deflate barely (~1.1x); a zip bomb inflates 1000x.
MAX_INFLATE_RATIO = 64
SMALL_MEMBER = 1 << 20  # below this, no ratio check (metadata deflates well)
MAX_TOTAL_BYTES = 16 << 30  # whatever the ratio: 16 GiB of arrays is not a head or a detector
MAX_MEMBERS = 16


def load(path: str, kind: str, allowed: Iterable[str]) -> tuple[dict, dict[str, np.ndarray]]:
    """The JSON ``meta`` and the named arrays of an embcli NPZ of ``kind`` (``embcli-head``, …).

    Missing file: UsageError. Anything else wrong: IncompatibleError naming the file and what.
    """
    allowed = {"meta", *allowed}
    try:
        zf = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise UsageError(f"no {_noun(kind)} file at {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a directory, not a {_noun(kind)} file") from None
    except OSError as e:
        raise UsageError(f"cannot open {_noun(kind)} file ({e.strerror}), {path}") from None
    except (zipfile.BadZipFile, ValueError, EOFError):
        raise IncompatibleError(f"not an embcli {_noun(kind)} file (not an NPZ), {path}") from None
    with zf:
        infos = _members(zf, path, kind)
        for info in infos.values():
            _header(zf, info, path, kind)  # every member, before any is read
        meta = _meta(_read(zf, infos.pop("meta"), path, kind), path, kind)  # first: is it this kind at all?
        if unexpected := sorted(set(infos) - allowed):
            raise bad(path, kind, f"unexpected member {unexpected[0] + '.npy'!r}")
        arrays = {name: _read(zf, info, path, kind) for name, info in infos.items()}
    return meta, arrays


def bad(path: str, kind: str, what: str) -> IncompatibleError:
    """The one error for a head or detector file that is not right: what is wrong, and which file."""
    return IncompatibleError(f"bad embcli {_noun(kind)} file: {what}, {path}")


def float_array(arrays: dict, name: str, ndim: int, path: str, kind: str) -> np.ndarray:
    """A required floating-point array of ``ndim`` dimensions, none of them empty, all values finite."""
    a = arrays.get(name)
    if a is None:
        raise bad(path, kind, f"no {name!r} array")
    if a.dtype.kind != "f":
        raise bad(path, kind, f"{name!r} is {a.dtype}, not floating point")
    if a.ndim != ndim or 0 in a.shape:
        raise bad(path, kind, f"{name!r} has shape {a.shape}, expected {ndim} non-empty dimensions")
    if not np.isfinite(a).all():
        raise bad(path, kind, f"{name!r} holds NaN or Inf")
    return a


def _noun(kind: str) -> str:
    return kind.removeprefix("embcli-")


def _members(zf: zipfile.ZipFile, path: str, kind: str) -> dict[str, zipfile.ZipInfo]:
    """The ``.npy`` members by array name, checked against the size bounds."""
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise bad(path, kind, f"{len(infos)} members")
    members: dict[str, zipfile.ZipInfo] = {}
    total = 0
    for info in infos:
        name = info.filename.removesuffix(".npy")
        if not info.filename.endswith(".npy"):
            raise bad(path, kind, f"unexpected member {info.filename!r}")
        if name in members:
            raise bad(path, kind, f"member {info.filename!r} twice")
        stored = max(info.compress_size, 1)
        if info.file_size > SMALL_MEMBER and info.file_size > stored * MAX_INFLATE_RATIO:
            raise bad(
                path, kind, f"{info.filename!r} would inflate {stored:,} bytes to {info.file_size:,} (a zip bomb?)"
            )
        total += info.file_size
        members[name] = info
    if total > MAX_TOTAL_BYTES:
        raise bad(path, kind, f"its arrays would take {total:,} bytes")
    if "meta" not in members:
        raise bad(path, kind, "no 'meta' member")
    return members


def _header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str, kind: str) -> None:
    """Check a member's .npy header alone: no objects, and a data size that matches the zip's record."""
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"NPY version {version}")
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
            header_size = f.tell()
    except Exception as e:  # zipfile, numpy and the header parser raise many types; all mean "corrupt"
        raise bad(path, kind, f"{info.filename!r} has no readable .npy header ({type(e).__name__})") from None
    if dtype.hasobject:
        raise bad(path, kind, f"{info.filename!r} holds Python objects (never unpickled)")
    expected = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if header_size + expected != info.file_size:
        raise bad(
            path,
            kind,
            f"{info.filename!r} declares {dtype} {tuple(shape)} ({expected:,} bytes) "
            f"but holds {info.file_size - header_size:,}",
        )


def _read(zf: zipfile.ZipFile, info: zipfile.ZipInfo, path: str, kind: str) -> np.ndarray:
    try:
        with zf.open(info) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except Exception as e:  # a bad CRC, a short member, a broken deflate stream
        raise bad(path, kind, f"{info.filename!r} is unreadable ({type(e).__name__})") from None


def _meta(value: np.ndarray, path: str, kind: str) -> dict:
    """The ``meta`` member: a 0-d string array holding a JSON object of this kind and version 1."""
    if value.dtype.kind != "U" or value.ndim != 0:
        raise bad(path, kind, "'meta' is not a JSON string")
    try:
        meta = json.loads(str(value))
    except ValueError:
        raise bad(path, kind, "'meta' is not valid JSON") from None
    if not isinstance(meta, dict) or meta.get("format") != kind:
        raise IncompatibleError(f"not an embcli {_noun(kind)} file, {path}")
    if meta.get("version") != 1:
        raise bad(path, kind, f"format version {meta.get('version')!r}, this embcli reads version 1")
    return meta
