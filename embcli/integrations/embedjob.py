"""A distributed ``embed``, engine-neutral: parts in, part files and a manifest out.

The driver plans the job (``EmbedJob.plan``): inputs are hashed and cut into
parts (``embcli.io.parts``), the model's graph is pinned by its sha256, and
each part gets a key: the input's sha256, the part's range, the options that
make its bytes, the graph and embcli's version. Workers each hold one
``PartEmbedder`` (one encoder, refusing any graph but the pinned one) and turn a
part into ``OUT/part-NNNNN.<fmt>`` through embcli's own writers (the bytes of
``embcli embed`` over that part), renamed into place when whole, then record
it in ``OUT/_parts/part-NNNNN.json`` (key, rows, sha256 of the file).

A re-run skips every part whose record has the same key and whose file still
has the recorded sha256: parts are idempotent, so a worker that died is simply
run again. ``OUT/_manifest.json`` is written last, by atomic rename, once every
part is done: no manifest, no result. It lists the inputs (sha256), the parts
in order (rows, sha256), the provenance, the graph's sha256, the device,
embcli's version and the options.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from embcli.errors import EmbcliError, IncompatibleError, InputError, UsageError
from embcli.io.files import atomic_file, sha256_file
from embcli.io.inputs import STDIN, expand
from embcli.io.outputs import OutputSpec, open_output
from embcli.io.parts import InputFile, Part, plan, read_part
from embcli.io.streams import JSONL_HINT, BadRecords
from embcli.version import __version__

if TYPE_CHECKING:
    from embcli.api.encoding import Encoder

MANIFEST = "_manifest.json"
PARTS_DIR = "_parts"
LOCK = "_lock"
MANIFEST_VERSION = 1
DEFAULT_PART_ROWS = 50_000
COMPRESSION_SUFFIX = {"gzip": ".gz", "bzip2": ".bz2", "xz": ".xz", "zstd": ".zst"}
_PART_FILE = re.compile(r"part-\d{5,}\.[A-Za-z0-9.]+")
_PART_RECORD = re.compile(r"part-\d{5,}\.json")
_TEMP_FILE = re.compile(r"\.part-\d{5,}\..+\.tmp")  # what atomic_file leaves when its writer is killed


@dataclass(frozen=True)
class EmbedOptions:
    """Everything that makes a part's bytes: the model and its options, the fields, the error policy, the formats.

    ``device`` is the job's one kind of device, ``cpu`` or ``cuda``: actors of
    one job never mix them. ``json_hint`` only words an error message.
    """

    model: str | None = None
    device: str = "cpu"
    max_length: int | None = None
    pooling: str | None = None
    normalize: bool | None = None
    prompt: str | None = None
    prompt_name: str | None = None
    dims: int | None = None
    batch_size: int = 32
    max_batch_tokens: int = 8192
    truncate: bool = True
    text_field: str = "text"
    vector_field: str = "embedding"
    model_field: str = "embedding_model"
    overwrite: bool = False
    skip_bad: bool = False
    input_format: str | None = None
    infer_types: bool = False
    format: str = "jsonl"
    compression: str | None = None
    json_hint: str = field(default=JSONL_HINT, compare=False)

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise UsageError(f"a job runs on cpu or cuda, not {self.device!r}")

    def key(self) -> dict:
        """The options as they go into each part's key and the manifest."""
        d = asdict(self)
        d.pop("json_hint")
        return d

    def encoder(self, threads: int | None = None) -> Encoder:
        from embcli.api.encoding import Encoder

        return Encoder(
            self.model,
            device=self.device,
            threads=threads,
            max_length=self.max_length,
            pooling=self.pooling,
            normalize=self.normalize,
            prompt=self.prompt,
            prompt_name=self.prompt_name,
            dims=self.dims,
            batch_size=self.batch_size,
            max_batch_tokens=self.max_batch_tokens,
        )


def part_file(index: int, fmt: str, compression: str | None = None) -> str:
    """``part-00007.parquet``, ``part-00007.jsonl.zst``."""
    return f"part-{index:05d}.{fmt}{COMPRESSION_SUFFIX[compression] if compression else ''}"


def pinned_graph(model: str | None = None, device: str = "cpu") -> str:
    """The sha256 of the ONNX graph a job on ``device`` runs: built first for the built-in model.

    The driver pins it; every worker refuses another (``PartEmbedder``, ``Embedder``).
    """
    from embcli.api.encoding import ensure_model
    from embcli.store.models import is_builtin, resolve_model

    if device == "cuda" and is_builtin(model):
        from embcli.build.defaultgraph import ensure_default

        ensure_default("cpu")
        ensure_default("cuda")  # the GPU graph, even from a driver without a GPU: its bytes are fixed
    else:
        ensure_model(model, device)
    spec = resolve_model(model)
    if device == "cuda" and spec.for_device is not None:
        spec = spec.for_device("cuda")
    return spec.sha256()


def check_graph(encoder: object, pinned: str | None) -> str:
    """The graph ``encoder`` runs (its sha256); refused when it is not the ``pinned`` one."""
    runtime = encoder.runtime  # type: ignore[attr-defined]
    sha = runtime.spec.sha256()
    if pinned and sha != pinned:
        import platform

        raise IncompatibleError(
            f"this worker ({platform.node()}, {runtime.device}) runs graph sha256 {sha[:16]} of "
            f"{runtime.spec.onnx_path}, but the job pinned {pinned[:16]}",
            hint="every node must have the same embcli, onnx and onnxruntime (and the same model files)",
        )
    return sha


class PartEmbedder:
    """One encoder, turning parts into part files under ``out_dir``: what each worker of a job holds."""

    def __init__(
        self, options: EmbedOptions, out_dir: str, *, threads: int | None = None, graph_sha256: str | None = None
    ) -> None:
        self.options = options
        self.out_dir = Path(out_dir)
        self.encoder = options.encoder(threads)
        self.graph_sha256 = check_graph(self.encoder, graph_sha256)

    def info(self) -> dict:
        """What this worker runs, for the driver's checks."""
        import embcli

        rt = self.encoder.runtime
        return {
            "embcli": __version__,
            "package": os.path.dirname(os.path.abspath(embcli.__file__)),
            "device": rt.device,
            "threads": rt.threads,
            "graph_sha256": self.graph_sha256,
            "provenance": rt.provenance(),
        }

    def embed(self, part: Part, key: dict) -> dict:
        """Embed one part into its file (renamed into place when whole), then record it; returns the record."""
        from embcli.runtime.embedding import EmbedStats, write_embedded

        o = self.options
        name = part_file(part.index, o.format, o.compression)
        target = self.out_dir / name
        spec = OutputSpec(str(target), o.format, o.compression)
        bad = BadRecords(skip=o.skip_bad)
        stats = EmbedStats()
        rt = self.encoder.runtime
        records = read_part(
            part, o.text_field, bad, input_format=o.input_format, infer_types=o.infer_types, json_hint=o.json_hint
        )
        with open_output(spec) as out:
            write_embedded(
                records,
                rt,
                out,
                spec,
                text_field=o.text_field,
                vector_field=o.vector_field,
                model_field=o.model_field,
                bad=bad,
                stats=stats,
                truncate=o.truncate,
                reserved=() if o.overwrite else tuple(f for f in (o.vector_field, o.model_field) if f),
            )
        record = {
            "key": key,
            "file": name,
            "sha256": sha256_file(target),
            "bytes": target.stat().st_size,
            "rows": stats.texts,
            "skipped": bad.count,
            "first_bad": bad.first,
            "tokens": stats.tokens,
            "truncated": stats.truncated,
            "device": rt.device,
            "graph_sha256": self.graph_sha256,
            "provenance": rt.provenance(),
        }
        (self.out_dir / PARTS_DIR).mkdir(exist_ok=True)
        with atomic_file(self.out_dir / PARTS_DIR / f"part-{part.index:05d}.json") as f:
            f.write(orjson.dumps(record, option=orjson.OPT_INDENT_2))
        return record


@dataclass
class EmbedJob:
    """A planned job: its inputs, parts and their keys, and which parts an earlier run finished."""

    out_dir: Path
    options: EmbedOptions
    part_rows: int
    inputs: list[InputFile]
    parts: list[Part]
    keys: list[dict]
    graph_sha256: str
    engine: str = "ray"
    done: dict[int, dict] = field(default_factory=dict)

    @classmethod
    def plan(
        cls,
        inputs: Sequence[str] | None,
        out_dir: str,
        options: EmbedOptions,
        *,
        part_rows: int = DEFAULT_PART_ROWS,
        graph_sha256: str | None = None,
        engine: str = "ray",
    ) -> EmbedJob:
        """Check the inputs and the output directory, cut the inputs into parts, pin the graph."""
        names = expand(inputs)
        if STDIN in names:
            raise UsageError(
                "a distributed embed reads files, not stdin (each part is read by a worker)",
                hint="give input files, globs or directories; or drop --engine to embed stdin here",
            )
        out = Path(out_dir)
        _check_out_dir(out, names)
        files, parts = plan(names, part_rows, options.input_format)
        pin = graph_sha256 or pinned_graph(options.model, options.device)
        opts = options.key()
        sha = {f.name: f.sha256 for f in files}
        keys = [
            {
                "embcli": __version__,
                "graph_sha256": pin,
                "options": opts,
                "input_sha256": sha[p.name],
                "part": p.describe(),
            }
            for p in parts
        ]
        return cls(out, options, part_rows, files, parts, keys, pin, engine)

    @property
    def todo(self) -> list[Part]:
        return [p for p in self.parts if p.index not in self.done]

    def file_of(self, part: Part) -> str:
        return part_file(part.index, self.options.format, self.options.compression)

    @contextlib.contextmanager
    def running(self) -> Iterator[EmbedJob]:
        """The directory held for this job (one driver at a time), what earlier runs finished found, and
        what no part of this plan names cleared; the manifest goes when anything is left to do."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / PARTS_DIR).mkdir(exist_ok=True)
        with _locked(self.out_dir / LOCK):
            self.done = {p.index: rec for p in self.parts if (rec := self._finished(p)) is not None}
            stale = self._clear_stale()
            if self.todo or stale:
                (self.out_dir / MANIFEST).unlink(missing_ok=True)
            yield self

    def _finished(self, part: Part) -> dict | None:
        """The part's record, if an earlier run wrote it with this key and its file is intact."""
        try:
            rec = orjson.loads((self.out_dir / PARTS_DIR / f"part-{part.index:05d}.json").read_bytes())
        except (OSError, ValueError):
            return None
        expected = (self.keys[part.index], self.file_of(part))
        if not isinstance(rec, dict) or (rec.get("key"), rec.get("file")) != expected:
            return None
        path = self.out_dir / rec["file"]
        try:
            intact = path.stat().st_size == rec.get("bytes") and sha256_file(path) == rec.get("sha256")
        except OSError:
            return None
        return rec if intact else None

    def _clear_stale(self) -> int:
        """Remove part files and records that no part of this plan names, and temp files of killed writers."""
        files = {self.file_of(p) for p in self.parts}
        records = {f"part-{p.index:05d}.json" for p in self.parts}
        gone = 0
        for entry in os.scandir(self.out_dir):
            if entry.is_file(follow_symlinks=False) and (
                (_PART_FILE.fullmatch(entry.name) and entry.name not in files) or _TEMP_FILE.fullmatch(entry.name)
            ):
                os.unlink(entry.path)
                gone += 1
        for entry in os.scandir(self.out_dir / PARTS_DIR):
            if _PART_RECORD.fullmatch(entry.name) and entry.name not in records:
                os.unlink(entry.path)
                gone += 1
        return gone

    def record(self, part: Part, rec: dict) -> None:
        """A part a worker finished (its record, as it wrote it)."""
        if rec.get("key") != self.keys[part.index]:
            raise EmbcliError(f"a worker returned part {part.index} of another job, {self.out_dir}")
        self.done[part.index] = rec

    def publish(self) -> dict:
        """Write ``_manifest.json`` (atomically, last): every part must be done."""
        missing = [p.index for p in self.parts if p.index not in self.done]
        if missing:
            raise EmbcliError(f"{len(missing)} parts are not done (first: part {missing[0]}); no manifest written")
        recs = [self.done[p.index] for p in self.parts]
        first = recs[0]
        for rec, part in zip(recs, self.parts, strict=True):
            if (rec["provenance"], rec["device"], rec["graph_sha256"]) != (
                first["provenance"],
                first["device"],
                first["graph_sha256"],
            ):
                raise IncompatibleError(
                    f"part {part.index} was made with another model, device or graph than part 0; "
                    f"no manifest written, {self.out_dir}"
                )
        manifest = {
            "embcli_manifest": MANIFEST_VERSION,
            "kind": "embed",
            "embcli": __version__,
            "engine": self.engine,
            "graph_sha256": self.graph_sha256,
            "device": first["device"],
            "provenance": first["provenance"],
            "options": {**self.options.key(), "part_rows": self.part_rows},
            "rows": sum(r["rows"] for r in recs),
            "skipped": sum(r["skipped"] for r in recs),
            "inputs": [{"path": f.name, "sha256": f.sha256, "bytes": f.bytes, "format": f.format} for f in self.inputs],
            "parts": [
                {
                    "file": rec["file"],
                    "input": part.name,
                    "kind": part.kind,
                    "first": part.first,
                    "rows": rec["rows"],
                    "skipped": rec["skipped"],
                    "bytes": rec["bytes"],
                    "sha256": rec["sha256"],
                }
                for part, rec in zip(self.parts, recs, strict=True)
            ],
        }
        with atomic_file(self.out_dir / MANIFEST) as f:
            f.write(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        return manifest


def _check_out_dir(out: Path, inputs: Sequence[str]) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o must be a directory for a distributed embed (parts are written there), {out}")
    if out.is_dir() and any(out.iterdir()) and not ((out / MANIFEST).exists() or (out / PARTS_DIR).is_dir()):
        raise UsageError(
            f"the output directory is not empty and holds no embcli job (no {MANIFEST} or {PARTS_DIR}/), {out}",
            hint="give a new or empty directory",
        )
    root = os.path.realpath(out)
    for name in inputs:
        if os.path.commonpath([root, os.path.realpath(name)]) == root:
            raise UsageError(f"an input is inside the output directory, {name}", hint="write the parts elsewhere")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One driver per output directory (the lock file never follows a symlink)."""
    import fcntl

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EmbcliError(f"another embcli job is writing this directory, {path.parent}") from None
        yield
    finally:
        os.close(fd)


def raise_error(err: dict) -> None:
    """Raise the typed error a worker sent back as a dict (``error_dict``)."""
    kinds = {c.__name__: c for c in (EmbcliError, UsageError, InputError, IncompatibleError)}
    raise kinds.get(err.get("type", ""), EmbcliError)(err.get("message", "a worker failed"), hint=err.get("hint"))


def error_dict(e: EmbcliError) -> dict:
    """A typed error as plain data: it crosses process boundaries whole (message, hint and exit code)."""
    kind = next(
        (c.__name__ for c in type(e).__mro__ if c in (UsageError, InputError, IncompatibleError)), "EmbcliError"
    )
    return {"type": kind, "message": e.message, "hint": e.hint}
