"""embcli on Ray: ``embed --engine ray`` (parts over actors), ``index --engine ray`` (shards built by tasks)
and ``Embedder`` for Ray Data.

Needs the ``ray`` extra (``pip install 'embcli[ray]'``); Ray is imported only
when a function here runs, so importing this module costs nothing.

The cluster is the one this process already joined (``ray.init`` by the
caller), else ``$RAY_ADDRESS`` (``auto``, ``ray://head:10001``), else a local
Ray cluster on this machine (all its cores), shut down afterwards. Inputs and
the output directory must be paths every node can read and write (one
machine, or a shared filesystem): each actor reads its part and writes its
part file itself, and each shard task reads its shard's spool file and writes
its shard inside the index directory.

Ray Data::

    import ray
    from embcli.integrations.ray import Embedder, pinned_graph

    sha = pinned_graph()                        # the driver pins the graph; every actor checks it
    ds = ray.data.read_parquet("docs/")         # any dataset with a "text" column
    ds = ds.map_batches(
        Embedder,
        fn_constructor_kwargs={"graph_sha256": sha},
        batch_format="pyarrow",
        batch_size=1024,
        compute=ray.data.ActorPoolStrategy(size=2),
        num_cpus=0.5,                           # fractional: leave CPUs to Ray Data's readers and writers
    )
    ds.write_parquet("vec/")
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from embcli.errors import EmbcliError, UsageError
from embcli.integrations.embedjob import (
    DEFAULT_PART_ROWS,
    MANIFEST,
    EmbedJob,
    EmbedOptions,
    PartEmbedder,
    check_graph,
    error_dict,
    pinned_graph,
    raise_error,
)

if TYPE_CHECKING:
    from embcli.search.shards import ShardedWriter, ShardTask

__all__ = ["EmbedResult", "Embedder", "build_shards", "cluster", "embed_job", "pinned_graph", "require_ray"]

EXTRA_HINT = "pip install 'embcli[ray]'"
# How long actors may take to start (a model to load, maybe a graph to build, a node to join).
START_TIMEOUT = 900.0
# Environment a worker needs to resolve the same model and graph as the driver.
_PASSED_ENV = ("HF_HUB_OFFLINE", "HF_HOME", "XDG_CACHE_HOME")
# A shard task builds with one thread, yet reserves half a CPU: whole-CPU reservations are what stall
# Ray Data when its readers and writers find no CPU left (ray-project/ray#44687), and a task still
# finds room beside an embed job's actors or a Ray Data pipeline holding most CPUs. How many build at
# once is bounded by the driver instead (one task in flight per cluster CPU), which bounds memory too:
# a task holds its whole shard.
SHARD_TASK_CPUS = 0.5


def require_ray() -> Any:
    """The ``ray`` module, or the usage error (exit 2) that names the extra to install."""
    try:
        import ray
    except ImportError:
        raise UsageError("the Ray engine needs Ray, which is not installed", hint=EXTRA_HINT) from None
    return ray


def worker_env() -> dict[str, str]:
    """Environment variables every actor gets: embcli's own (graph cache, pins, model dirs) and, when this
    embcli runs from a source checkout rather than an installed package, the ``PYTHONPATH`` that makes
    workers import it too (each actor checks that it did)."""
    import embcli

    env = {k: v for k, v in os.environ.items() if k.startswith("EMBCLI_") or k in _PASSED_ENV}
    root = os.path.dirname(os.path.dirname(os.path.abspath(embcli.__file__)))
    if os.path.basename(root) not in ("site-packages", "dist-packages"):
        rest = os.environ.get("PYTHONPATH")
        env["PYTHONPATH"] = root + (os.pathsep + rest if rest else "")
    return env


@contextlib.contextmanager
def cluster() -> Iterator[tuple[Any, bool]]:
    """(ray, owned): the cluster this process joined (not owned), else ``$RAY_ADDRESS``, else a local one
    on this machine; what this joined or started is left (shut down) afterwards."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray, False
        return
    address = os.environ.get("RAY_ADDRESS")
    quiet: dict[str, Any] = {"logging_level": logging.ERROR, "log_to_driver": False}
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"RAY_ADDRESS={address}" if address else "a local Ray cluster"
        raise EmbcliError(f"cannot start or join {where} ({str(e).splitlines()[0][:200]})") from None
    try:
        yield ray, True
    finally:
        ray.shutdown()


@dataclass
class EmbedResult:
    """What an ``embed_job`` did."""

    parts: int  # in the job
    embedded: int  # parts embedded by this run
    reused: int  # parts an earlier run finished
    rows: int  # records in the job's output
    texts: int  # texts embedded by this run
    tokens: int
    truncated: int
    skipped: int  # bad records skipped (the whole job)
    first_bad: str | None
    seconds: float
    manifest: dict
    manifest_path: str
    actors: int = 0
    threads: int = 0


def actor_sizes(
    parts: int, cpus: float, gpus: float, actors: int | None, threads: int | None, gpus_per_actor: float
) -> tuple[int, int, float]:
    """(actors, threads per actor, CPUs each reserves) for ``parts`` parts on a cluster of ``cpus`` and ``gpus``.

    By default actors × threads ≤ the cluster's CPUs: one actor per CPU (per GPU
    share with ``gpus_per_actor``), never more actors than parts, threads filling
    the CPUs left. Each actor reserves its threads in CPUs when they fit, else an
    even share (fractional below one): every actor can be placed, and Ray never
    waits on CPUs that the actors themselves hold.
    """
    if gpus_per_actor:
        if gpus < gpus_per_actor:
            raise UsageError(
                f"--gpus-per-actor {gpus_per_actor:g}: the Ray cluster has {gpus:g} GPUs",
                hint="drop --gpus-per-actor to embed on CPUs",
            )
        n = actors or max(1, int(gpus // gpus_per_actor))
    else:
        n = actors or max(1, int(cpus // (threads or 1)))
    n = max(1, min(n, parts))
    t = threads or max(1, int(cpus // n))
    share = cpus / n
    if t <= share:
        reserve: float = t
    elif share >= 1:
        reserve = math.floor(share)  # Ray takes whole CPUs above one
    else:
        reserve = max(0.01, math.floor(share * 100) / 100)
    return n, t, reserve


class PartActor:
    """A Ray actor's body: one ``PartEmbedder``; typed errors come back as data (message, hint, exit code)."""

    def __init__(
        self, options: EmbedOptions, out_dir: str, threads: int | None, graph_sha256: str | None, driver: dict
    ) -> None:
        self._driver = driver
        self._error: dict | None = None
        self._embedder: PartEmbedder | None = None
        try:
            self._embedder = PartEmbedder(options, out_dir, threads=threads, graph_sha256=graph_sha256)
        except EmbcliError as e:
            self._error = error_dict(e)

    def ready(self) -> dict:
        """What this actor runs, or why it cannot run (another graph, another embcli, no CUDA)."""
        if self._error is not None:
            return {"error": self._error}
        assert self._embedder is not None
        info = self._embedder.info()
        import ray

        info["node"] = ray.get_runtime_context().get_node_id()
        if (wrong := _other_embcli(info, self._driver)) is not None:
            return {"error": wrong}
        return info

    def embed(self, part: Any, key: dict) -> dict:
        if self._embedder is None:  # a restarted actor whose encoder failed this time
            return {"error": self._error}
        try:
            return self._embedder.embed(part, key)
        except EmbcliError as e:
            return {"error": error_dict(e)}


def _driver_info(ray: Any) -> dict:
    """The driver's embcli (version, package directory) and node, for workers to compare theirs with."""
    import embcli

    driver = {"embcli": embcli.__version__, "package": os.path.dirname(os.path.abspath(embcli.__file__))}
    with contextlib.suppress(Exception):  # a Ray Client driver is on no node of the cluster
        driver["node"] = ray.get_runtime_context().get_node_id()
    return driver


def _other_embcli(info: dict, driver: dict) -> dict | None:
    """The error (as data) when a worker imports another embcli than the driver, else None.

    The package directory is compared only on the driver's own node: elsewhere it may live at another path.
    """
    if info["embcli"] != driver["embcli"] or (
        info["node"] == driver.get("node") and info["package"] != driver["package"]
    ):
        return error_dict(
            UsageError(
                f"a Ray worker imports embcli {info['embcli']} from {info['package']}, the driver "
                f"embcli {driver['embcli']} from {driver['package']}",
                hint="install the same embcli on every node (or set PYTHONPATH for the workers)",
            )
        )
    return None


def embed_job(
    inputs: Sequence[str],
    out_dir: str,
    options: EmbedOptions | None = None,
    *,
    actors: int | None = None,
    threads: int | None = None,
    gpus_per_actor: float = 0,
    part_rows: int = DEFAULT_PART_ROWS,
    graph_sha256: str | None = None,
    on_part: Callable[[dict], None] | None = None,
    on_start: Callable[[EmbedJob], None] | None = None,
) -> EmbedResult:
    """Embed ``inputs`` (files, globs, directories) into part files under ``out_dir`` on a Ray cluster.

    Parts an earlier run finished with the same inputs and options are kept, so
    a re-run of a finished job does no work (and starts no cluster);
    ``_manifest.json`` is written last. ``graph_sha256`` pins another graph than
    the driver's (a job refused by every actor: for tests). A bad record (with
    ``skip_bad`` off) fails the job with its file and line, and no manifest is
    written. ``on_part`` hears each part record as it lands, ``on_start`` the
    planned job.
    """
    options = options or EmbedOptions()
    if isinstance(inputs, str):
        inputs = [inputs]
    if gpus_per_actor < 0 or (actors is not None and actors < 1) or (threads is not None and threads < 1):
        raise UsageError("--actors, --threads and --gpus-per-actor must be positive")
    if gpus_per_actor and options.device != "cuda":
        raise UsageError("--gpus-per-actor runs the model on CUDA: drop --device cpu")
    if options.device == "cuda" and not gpus_per_actor:
        gpus_per_actor = 1  # Ray hands GPUs only to actors that reserve them
    started = time.perf_counter()
    job = EmbedJob.plan(inputs, out_dir, options, part_rows=part_rows, graph_sha256=graph_sha256)
    n_actors = n_threads = 0
    texts = tokens = truncated = 0
    with job.running():
        if on_start is not None:
            on_start(job)
        todo = job.todo
        if todo:
            require_ray()
            with cluster() as (ray, owned):
                n_actors, n_threads, done = _run(ray, owned, job, actors, threads, gpus_per_actor, on_part)
            texts = sum(r["rows"] for r in done)
            tokens = sum(r["tokens"] for r in done)
            truncated = sum(r["truncated"] for r in done)
        manifest = job.publish()
    recs = [job.done[p.index] for p in job.parts]
    first_bad = next((r["first_bad"] for r in recs if r.get("first_bad")), None)
    return EmbedResult(
        parts=len(job.parts),
        embedded=len(todo),
        reused=len(job.parts) - len(todo),
        rows=manifest["rows"],
        texts=texts,
        tokens=tokens,
        truncated=truncated,
        skipped=manifest["skipped"],
        first_bad=first_bad,
        seconds=time.perf_counter() - started,
        manifest=manifest,
        manifest_path=str(job.out_dir / MANIFEST),
        actors=n_actors,
        threads=n_threads,
    )


def _run(
    ray: Any,
    owned: bool,
    job: EmbedJob,
    actors: int | None,
    threads: int | None,
    gpus_per_actor: float,
    on_part: Callable[[dict], None] | None,
) -> tuple[int, int, list[dict]]:
    """The job's unfinished parts, each on the next free actor; the first failure ends the job.

    The actors go with the job: killed here when the caller's cluster outlives it, else with the
    connection (killing actors mid-part would have Ray announce retries that will never come).
    """
    todo = deque(job.todo)
    res = ray.cluster_resources()
    n, t, reserve = actor_sizes(len(todo), res.get("CPU", 1.0), res.get("GPU", 0.0), actors, threads, gpus_per_actor)
    driver = _driver_info(ray)
    remote = ray.remote(PartActor).options(
        num_cpus=reserve,
        num_gpus=gpus_per_actor or 0,
        max_restarts=2,  # a worker that dies is started again; its part runs again (parts are idempotent)
        max_task_retries=2,
        runtime_env={"env_vars": worker_env()},
    )
    out = str(job.out_dir.resolve())
    pool = [remote.remote(job.options, out, t, job.graph_sha256, driver) for _ in range(n)]
    finished: list[dict] = []
    ok = False
    try:
        ready = [a.ready.remote() for a in pool]
        _, pending = ray.wait(ready, num_returns=len(ready), timeout=START_TIMEOUT)
        if pending:
            raise EmbcliError(
                f"{len(pending)} of {n} Ray actors did not start within {START_TIMEOUT:.0f}s "
                f"(each needs {reserve:g} CPUs{f' and {gpus_per_actor:g} GPUs' if gpus_per_actor else ''})",
                hint="fewer --actors, or a cluster with room for them",
            )
        for info in _get(ray, ready, "starting a Ray actor"):
            if "error" in info:
                raise_error(info["error"])
        running: dict[Any, tuple[Any, Any]] = {}
        for actor in pool:
            if todo:
                part = todo.popleft()
                running[actor.embed.remote(part, job.keys[part.index])] = (actor, part)
        while running:
            [ref], _ = ray.wait(list(running), num_returns=1)
            actor, part = running.pop(ref)
            [rec] = _get(ray, [ref], f"embedding part {part.index} ({part.name})")
            if "error" in rec:
                raise_error(rec["error"])
            job.record(part, rec)
            finished.append(rec)
            if on_part is not None:
                on_part(rec)
            if todo:
                nxt = todo.popleft()
                running[actor.embed.remote(nxt, job.keys[nxt.index])] = (actor, nxt)
        ok = True
    finally:
        if ok or not owned:
            for actor in pool:
                with contextlib.suppress(Exception):
                    ray.kill(actor)
    return n, t, finished


# --------------------------------------------------------------------------- sharded indexes


def build_shards(writer: ShardedWriter, on_shard: Callable[[int], None] = lambda i: None) -> int:
    """Build the shards ``writer`` routed rows to (``ShardedWriter.route`` first) as Ray tasks, one per shard.

    What the local engine runs (``ShardTask.run``: ``build_shard`` on the shard's spooled rows), on the
    cluster instead of this machine's threads; the caller then commits (``ShardedWriter.commit``), so
    the index is byte-for-byte the one ``ShardedWriter.build`` gives. Each shard builds with one
    thread. The first failure cancels the other tasks and raises it; a new index is then removed
    by ``ShardedWriter.close`` as after a local failure. ``on_shard`` hears each shard as it is done.
    Returns how many tasks ran at most at once.
    """
    with cluster() as (ray, _owned):
        # The cluster first: --force removes the old index when the build begins (writer.tasks).
        res = ray.cluster_resources()
        tasks = writer.tasks(threads=1)
        width = max(1, min(len(tasks), int(res.get("CPU", 1.0))))
        remote = ray.remote(_shard_task).options(
            num_cpus=SHARD_TASK_CPUS,
            scheduling_strategy="SPREAD",  # shards are memory- and disk-heavy: across nodes, not packed on one
            max_retries=2,  # a worker that dies: the task runs again (ShardTask.force rebuilds its shard)
            runtime_env={"env_vars": worker_env()},
        )
        driver = _driver_info(ray)
        todo = deque(tasks)
        running: dict[Any, ShardTask] = {}
        ok = False
        try:
            while todo or running:
                while todo and len(running) < width:
                    task = todo.popleft()
                    running[remote.remote(task, driver)] = task
                [ref], _ = ray.wait(list(running), num_returns=1)
                task = running.pop(ref)
                [result] = _get(ray, [ref], f"building shard {task.shard} ({task.path})")
                if "error" in result:
                    raise_error(result["error"])
                writer.built(task.shard, result["added"], result["replaced"])
                on_shard(task.shard)
            ok = True
        finally:
            if not ok and running:
                _cancel(ray, list(running))
    return width


def _shard_task(task: ShardTask, driver: dict) -> dict:
    """A Ray task's body: one shard built from its spool file; typed errors come back as data."""
    import ray

    import embcli

    info = {
        "embcli": embcli.__version__,
        "package": os.path.dirname(os.path.abspath(embcli.__file__)),
        "node": ray.get_runtime_context().get_node_id(),
    }
    if (wrong := _other_embcli(info, driver)) is not None:
        return {"error": wrong}
    try:
        added, replaced = task.run()
    except EmbcliError as e:
        return {"error": error_dict(e)}
    return {"added": added, "replaced": replaced}


def _cancel(ray: Any, refs: list, timeout: float = 60.0) -> None:
    """Cancel tasks still running and wait for them to stop: a cancelled build is interrupted and aborts
    its shard (left as it was), and the caller's cleanup must not race a task still writing there."""
    for ref in refs:
        with contextlib.suppress(Exception):
            ray.cancel(ref)
    with contextlib.suppress(Exception):
        ray.wait(refs, num_returns=len(refs), timeout=timeout)


def _get(ray: Any, refs: list, doing: str) -> list:
    """``ray.get``, with the cluster's own failures (a worker that died past its retries) as one line."""
    try:
        return ray.get(refs)
    except ray.exceptions.RayError as e:
        cause = getattr(e, "cause", None) or e
        first = (str(cause).strip().splitlines() or [type(cause).__name__])[-1][:300]
        raise EmbcliError(f"the Ray cluster failed {doing} ({first})") from None


# --------------------------------------------------------------------------- Ray Data


class Embedder:
    """A callable class for ``ray.data.Dataset.map_batches(Embedder, batch_format="pyarrow", ...)``.

    Each Ray Data actor holds one ``Encoder``; a batch (a ``pyarrow.Table``)
    comes back with its ``fixed_size_list<float32>[D]`` vector column and the
    provenance in the schema metadata, as ``embed_arrow`` makes them.
    ``graph_sha256`` (from ``pinned_graph()`` on the driver) makes every actor
    refuse a graph but that one. ``device`` is ``cpu`` unless asked: give
    ``device="cuda"`` together with ``num_gpus=`` in ``map_batches``.
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        graph_sha256: str | None = None,
        device: str = "cpu",
        threads: int | None = None,
        text_field: str = "text",
        vector_field: str = "embedding",
        model_field: str = "embedding_model",
        overwrite: bool = False,
        skip_bad: bool = False,
        **encoder_options: Any,
    ) -> None:
        from embcli.api.encoding import Encoder

        self.encoder = Encoder(model, device=device, threads=threads, **encoder_options)
        self.graph_sha256 = check_graph(self.encoder, graph_sha256)
        self._fields = {
            "text_field": text_field,
            "vector_field": vector_field,
            "model_field": model_field,
            "overwrite": overwrite,
            "skip_bad": skip_bad,
        }

    def __call__(self, batch: Any) -> Any:
        import pyarrow as pa

        from embcli.api.arrow import embed_arrow

        return pa.Table.from_batches([embed_arrow(batch, self.encoder, **self._fields)])
