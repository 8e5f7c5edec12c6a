"""embcli index: build, extend or prune an on-disk vector index."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from typer.core import TyperCommand

from embcli.choices import DTYPES, FTS_TOKENIZERS, METRICS
from embcli.commands import _options as o
from embcli.commands._ui import progress, say, warn

if TYPE_CHECKING:
    from embcli.io.inputs import Inputs
    from embcli.io.streams import BadRecords
    from embcli.search.ingest import IngestOptions
    from embcli.search.shards import ShardedWriter

INDEX = "Index"


Metric = o.choice("Metric", METRICS)
DType = o.choice("DType", DTYPES)
FtsTokenizer = o.choice("FtsTokenizer", FTS_TOKENIZERS)


OutputOpt = o.text_option("-o", "--output", metavar="PATH", help="The index (a directory) to write.", panel=o.IO)
AppendOpt = o.option(
    bool, "--append", help="Add to the existing index; a known id replaces its record (upsert).", panel=INDEX
)
ForceOpt = o.option(bool, "--force", help="Rebuild an existing index from this input.", panel=INDEX)
DeleteIdsOpt = o.text_option(
    "--delete-ids",
    metavar="FILE",
    help="Remove the ids in FILE (one per line) from the index given as -o or INPUT.",
    panel=INDEX,
)
IdsOpt = o.text_option(
    "--ids", metavar="FILE", help="For NPY input: ids, one per line, in row order. Default: row numbers.", panel=o.IO
)
VerifyOpt = o.option(
    bool,
    "--verify",
    help="Check the index given as -o or INPUT in full: sizes, graph structure, every file's sha256, "
    "SQLite's own check. Exit 0 if sound, 4 if corrupt. Also `embcli index verify PATH`.",
    panel=INDEX,
)
InfoOpt = o.option(
    bool,
    "--info",
    help="Print what the index given as -o or INPUT holds: count, dimensions, dtype, metric, model and "
    "its options, files and sizes, generation, times. Reads only the manifest. Also `embcli index info PATH`.",
    panel=INDEX,
)
JsonOpt = o.option(bool, "--json", help="With --info: print the whole manifest as JSON instead.", panel=INDEX)
ModelOpt = o.text_option(
    "-m",
    "--model",
    metavar="NAME",
    help="Model of vectors that do not record one (NPY, or JSONL without a model field); checked against their width.",
    panel=o.MODEL,
)
MetricOpt = o.option(Metric, "--metric", help="Similarity: cosine, inner product or Euclidean.", panel=INDEX)
DtypeOpt = o.option(
    DType,
    "--dtype",
    help="Storage precision: f32, f16, i8, or b1 (sign bits, Hamming; pair with search --rescore).",
    panel=INDEX,
)
ConnectivityOpt = o.option(int, "--connectivity", min=2, metavar="N", help="HNSW edges per node (M).", panel=INDEX)
ExpansionAddOpt = o.option(
    int, "--expansion-add", metavar="N", min=1, help="HNSW candidate list while building (efConstruction).", panel=INDEX
)
ExpansionSearchOpt = o.option(
    int, "--expansion-search", metavar="N", min=1, help="Default HNSW candidate list at search time (ef).", panel=INDEX
)
KeepFloatsOpt = o.option(
    Optional[bool],
    "--keep-floats/--no-keep-floats",
    show_default=False,
    help="Keep float32 vectors beside the index for `search --rescore` and exact search. Default: yes for i8 and b1.",
    panel=INDEX,
)
StoreTextOpt = o.option(bool, "--store-text/--no-store-text", help="Keep the text field in the payload.", panel=INDEX)
FtsOpt = o.option(
    Optional[bool],
    "--fts/--no-fts",
    show_default=False,
    help="Keep a full-text index (SQLite FTS5, BM25) of the --text-field beside the payloads, for "
    "`search --hybrid` and `--lexical`; it holds its own copy of the text, even with --no-store-text. "
    "Default: yes for a new index; --append keeps what the index has.",
    panel=INDEX,
)
FtsTokenizerOpt = o.option(
    FtsTokenizer,
    "--fts-tokenizer",
    help="Full-text words: porter (Unicode words, case and accents folded, English Porter stemming) "
    "or unicode61 (the same, no stemming: for other languages).",
    panel=INDEX,
)
ThreadsOpt = o.option(
    Optional[int],
    "--threads",
    min=1,
    metavar="N",
    show_default=False,
    help="Build threads. Default: every core, at the same recall (2.3x faster on 2 cores at 100k vectors, "
    "1.15x at 1M), but the graph then depends on thread timing "
    "(near-ties may come back in another order from run to run). 1 (or --reproducible) builds the same "
    "graph every run. With --shards: up to N shards are built at a time, sharing the N threads.",
    panel=o.SPEED,
)
ReproducibleOpt = o.option(
    bool,
    "--reproducible",
    help="Build with one thread, so the same input and options give the same index bytes every run "
    "(slower by about the number of cores). With --shards: one thread a shard, --threads shards at a time.",
    panel=o.SPEED,
)
ShardsOpt = o.option(
    Optional[int],
    "--shards",
    min=1,
    metavar="N",
    show_default=False,
    help="Build a sharded index: a directory of N indexes and shards.json, each record in the shard its id "
    "routes to (sha1 of the id's JSON, mod N). search, --append, --delete-ids, info and verify treat it as "
    "one index; --append and --delete-ids rewrite only the shards their ids route to.",
    panel=INDEX,
)
EngineOpt = o.option(
    o.Engine,
    "--engine",
    help="local: this process builds the shards (--threads at a time). ray: each shard is built by a task on a "
    "Ray cluster ($RAY_ADDRESS, else a local one), one thread each; this process reads and routes the records "
    "and writes shards.json. The same index either way. Needs --shards N (or a sharded -o to --append to: "
    "only the shards its ids route to are rebuilt), -o on a filesystem every node sees, and the ray extra.",
    panel=o.SCALE,
)


class IndexCommand(TyperCommand):
    """`embcli index verify|info PATH` is `embcli index --verify|--info PATH` (an input file named so: ./verify)."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args[:1] in (["verify"], ["info"]):
            args = [f"--{args[0]}", *args[1:]]
        return super().parse_args(ctx, args)


AdapterOpt = o.text_option(
    "--adapter",
    metavar="FILE",
    help="Take records whose vectors this query-drift adapter mapped into the index's model (`embed --adapter`); "
    "without it, or with another adapter, such records are refused (exit 4).",
    panel=o.MODEL,
)


def index(
    input: o.InputArg = None,
    output: OutputOpt = None,
    input_format: o.InputFormatOpt = None,
    append: AppendOpt = False,
    force: ForceOpt = False,
    delete_ids: DeleteIdsOpt = None,
    verify: VerifyOpt = False,
    info: InfoOpt = False,
    json_: JsonOpt = False,
    ids: IdsOpt = None,
    model: ModelOpt = None,
    adapter: AdapterOpt = None,
    metric: MetricOpt = Metric.cos,
    dtype: DtypeOpt = DType.f32,
    connectivity: ConnectivityOpt = 16,
    expansion_add: ExpansionAddOpt = 128,
    expansion_search: ExpansionSearchOpt = 128,
    keep_floats: KeepFloatsOpt = None,
    store_text: StoreTextOpt = True,
    fts: FtsOpt = None,
    fts_tokenizer: FtsTokenizerOpt = FtsTokenizer.porter,
    text_field: o.TextField = "text",
    id_field: o.IdField = "id",
    vector_field: o.VectorField = "embedding",
    model_field: o.ModelField = "embedding_model",
    on_error: o.OnErrorOpt = o.OnError.fail,
    threads: ThreadsOpt = None,
    reproducible: ReproducibleOpt = False,
    shards: ShardsOpt = None,
    engine: EngineOpt = o.Engine.local,
    quiet: o.Quiet = False,
) -> None:
    """Index embedded records (JSONL, Parquet, Arrow, CSV with a vector; or NPY) for `embcli search`.

    Needs the whole input before the index is published. The index is a
    directory: usearch HNSW vectors, SQLite payloads (every field but the
    vector) with a full-text index of the text (FTS5, BM25, for search
    --hybrid and --lexical; --no-fts leaves it out), and a manifest with the
    model, options and checksums. Writes are
    atomic: a crash leaves the previous index loadable. Opening an index checks
    sizes, headers and the graph's structure; `embcli index verify PATH` also
    checks every checksum. `--shards N` builds a sharded index (a directory of
    N indexes and shards.json), used as one path; with `--engine ray` its
    shards are built on a Ray cluster.
    """
    from embcli.api.encoding import ensure_model
    from embcli.errors import UsageError
    from embcli.io.inputs import Inputs, ReadOptions
    from embcli.io.streams import BadRecords, read_ids
    from embcli.search.index import IndexOptions, IndexWriter, disk_bytes, verify_index
    from embcli.search.ingest import IngestOptions, add_all
    from embcli.search.shards import ShardedWriter, delete_sharded, is_sharded, verify_sharded, wants_shards

    if input and len(input) > 1 and (verify or info or delete_ids is not None):
        raise UsageError("--verify, --info and --delete-ids take one index")
    if shards is not None and (verify or info or delete_ids is not None):
        raise UsageError("--shards is for building an index; --verify, --info and --delete-ids read its shards.json")
    target = input[0] if input else None
    on_ray = engine is o.Engine.ray
    if on_ray:
        _check_ray(verify or info or delete_ids is not None, threads)
    if json_ and not info:
        raise UsageError("--json goes with --info (embcli index info PATH --json)")
    if info:
        _info(output, target, json_, verify or delete_ids is not None)
        return
    if verify:
        path = output or target
        if not path or (output and input) or delete_ids is not None:
            raise UsageError("--verify takes the index as -o PATH (or as the argument), and nothing else")
        if is_sharded(path):
            m = verify_sharded(path)
            say(
                f"{path}: sound, {m['n']} shards, {m['count']:,} vectors, {m['dims']}-d {m['dtype']} {m['metric']}",
                quiet,
            )
            return
        m = verify_index(path)
        say(f"{path}: sound, {m['count']:,} vectors, {m['dims']}-d {m['dtype']} {m['metric']}", quiet)
        return
    if delete_ids is not None:
        path = output or target
        if not path or (output and input):
            raise UsageError("--delete-ids takes the index as -o PATH (or as the argument), and no input")
        if is_sharded(path):
            removed, left, touched = delete_sharded(path, read_ids(delete_ids))
            say(
                f"deleted {removed:,} of the given ids from {path} ({len(touched)} shards rewritten); "
                f"{left:,} vectors remain",
                quiet,
            )
            return
        writer = IndexWriter(path, IndexOptions(), append=True)
        try:
            removed = writer.delete(read_ids(delete_ids))
            manifest = writer.commit()
        except BaseException:
            writer.abort()
            raise
        say(f"deleted {removed:,} of the given ids from {path}; {manifest['count']:,} vectors remain", quiet)
        return
    if not output:
        raise UsageError("give the index path with -o PATH")
    if on_ray and not wants_shards(output, shards):
        raise UsageError(
            "--engine ray builds a sharded index: give --shards N",
            hint="each of the N shards is built by one Ray task; drop --engine ray to build one index here",
        )

    options = IndexOptions(
        metric.value, dtype.value, connectivity, expansion_add, expansion_search, keep_floats, fts, fts_tokenizer.value
    )
    bad = BadRecords(skip=on_error is o.OnError.skip)
    if model:  # bare vectors take this model's provenance: resolving the built-in one needs its graph
        ensure_model(model, "cpu")
    ingest = IngestOptions(vector_field, model_field, model, read_ids(ids) if ids else None, id_field)
    if adapter:  # appending new-model documents mapped by `embed --adapter` to an old index
        from embcli.runtime.adapter import load

        ingest.adapter = load(adapter)
    # Inputs, ids and the model are checked before the writer creates anything at -o (it would be left behind).
    inputs = Inputs(input, ReadOptions(o.value(input_format)))
    if wants_shards(output, shards):
        sharded = ShardedWriter(
            output, options, shards=shards, append=append, force=force, store_text=store_text, text_field=text_field
        )
        with sharded:
            _index_sharded(sharded, inputs, ingest, bad, output, threads, reproducible, on_ray, quiet)
        return
    writer = IndexWriter(
        output,
        options,
        append=append,
        force=force,
        store_text=store_text,
        text_field=text_field,
        threads=threads,
        reproducible=reproducible,
    )
    try:
        with progress("indexing", "vectors", quiet, fraction=inputs.share) as bar:
            rows = add_all(writer, inputs.embedded(vector_field, bad), ingest, bad, bar.advance)
            elapsed = bar.elapsed()
        if rows == 0:  # empty input: nothing to change, and an index needs at least its width
            writer.abort()
            say(f"no vectors in the input; {output} left as it was", quiet)
            return
        manifest = writer.commit()
    except BaseException:
        writer.abort()
        raise
    if summary := bad.summary():
        warn(summary, quiet)
    if manifest.get("provenance") is None:
        warn("no model is recorded for these vectors: search will take vector queries only (see --model)", quiet)
    size = disk_bytes(writer.path, manifest)
    say(
        f"indexed {rows:,} vectors ({writer.added:,} new, {writer.replaced:,} replaced) in {elapsed:.1f}s → "
        f"{output}: {manifest['count']:,} vectors, {manifest['dims']}-d {manifest['dtype']} {manifest['metric']}, "
        f"{size / 1e6:,.1f} MB",
        quiet,
    )


def _index_sharded(
    writer: ShardedWriter,
    inputs: Inputs,
    ingest: IngestOptions,
    bad: BadRecords,
    output: str,
    threads: int | None,
    reproducible: bool,
    on_ray: bool,
    quiet: bool,
) -> None:
    """`index --shards N` (or into a sharded index): route the records to shard files, build the shards, commit.

    Routing and the commit run here for either engine; only the builds go to Ray's tasks with --engine ray.
    """
    from embcli.search.ingest import prepare_rows

    with progress("routing", "vectors", quiet, fraction=inputs.share) as bar:
        rows = writer.route(prepare_rows(inputs.embedded(ingest.vector_field, bad), ingest, bad), bar.advance)
        elapsed = bar.elapsed()
    if rows == 0:  # before any cluster is started or joined
        say(f"no vectors in the input; {output} left as it was", quiet)
        return
    todo = writer.pending()
    how = ""
    with progress("building", "shards", quiet, total=len(todo)) as bar:
        if on_ray:
            from embcli.integrations.ray import build_shards

            width = build_shards(writer, lambda i: bar.advance(1))
            how = f" on Ray ({width} task{'s' * (width != 1)} at a time)"
        else:
            writer.build(threads, lambda i: bar.advance(1), reproducible)
        elapsed += bar.elapsed()
    done = writer.commit()
    if summary := bad.summary():
        warn(summary, quiet)
    if done.meta.get("provenance") is None:
        warn("no model is recorded for these vectors: search will take vector queries only (see --model)", quiet)
    m = done.meta
    say(
        f"indexed {rows:,} vectors ({done.added:,} new, {done.replaced:,} replaced) in {elapsed:.1f}s{how} → "
        f"{output}: {m['n']} shards ({len(done.touched)} written), {done.count:,} vectors, "
        f"{m['dims']}-d {m['dtype']} {m['metric']}, {done.bytes / 1e6:,.1f} MB",
        quiet,
    )


def _check_ray(other_mode: bool, threads: int | None) -> None:
    """`index --engine ray`: what it builds, and Ray installed (exit 2 naming the extra), before anything is read."""
    from embcli.errors import UsageError

    if other_mode:
        raise UsageError("--engine ray builds shards; --verify, --info and --delete-ids run here: drop --engine ray")
    if threads not in (None, 1):
        raise UsageError(
            "--threads is for the local engine: with --engine ray each shard is built with one thread "
            "(the same graph every run), as many at once as the cluster has CPUs"
        )
    from embcli.integrations.ray import require_ray

    require_ray()


def _info(output: str | None, input: str | None, as_json: bool, other_mode: bool) -> None:
    """`embcli index info PATH`: the manifest in words, or whole as JSON, on stdout (it is the data asked for)."""
    import orjson

    from embcli.errors import UsageError
    from embcli.io.streams import write_stdout
    from embcli.search.info import describe, describe_sharded, index_info, sharded_info
    from embcli.search.shards import is_sharded

    path = output or input
    if not path or (output and input) or other_mode:
        raise UsageError("--info takes the index as -o PATH (or as the argument), and nothing else")
    if is_sharded(path):
        info = sharded_info(path)
        if as_json:
            write_stdout(orjson.dumps(info, option=orjson.OPT_INDENT_2) + b"\n")
        else:
            write_stdout("".join(f"{line}\n" for line in describe_sharded(path, info)).encode())
        return
    info = index_info(path)
    if as_json:
        write_stdout(orjson.dumps(info["manifest"], option=orjson.OPT_INDENT_2) + b"\n")
    else:
        write_stdout("".join(f"{line}\n" for line in describe(info)).encode())
