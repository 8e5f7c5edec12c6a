"""embcli models: list, inspect, fetch and import models."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from embcli.commands import _options as o
from embcli.commands._ui import say
from embcli.errors import EmbcliError

app = typer.Typer(help="List, inspect, fetch and import embedding models.", no_args_is_help=True)

AsJson = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _print(data: dict | list, as_json: bool, text: str) -> None:
    import orjson

    if as_json:
        typer.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())
    else:
        typer.echo(text)


@app.command("list")
def list_(as_json: AsJson = False) -> None:
    """List the built-in model and the models in the cache."""
    from embcli.store.models import default_model_name, list_models

    default = default_model_name()
    rows = [{"name": n, "source": s, "about": d, "default": n == default} for n, s, d in list_models()]
    width = max(len(r["name"]) for r in rows)
    lines = [f"{r['name']:<{width}}  {r['source']:<7}  {r['about']}{'  (default)' * r['default']}" for r in rows]
    _print(rows, as_json, "\n".join(lines))


@app.command("info")
def info(
    name: Annotated[str, typer.Argument(help="Model name, directory or hub repo id. Default: the default model.")] = "",
    as_json: AsJson = False,
) -> None:
    """Show a model's dimensions, max length, pooling, prompts, files, sha256 and execution providers."""
    from embcli.runtime.native import load_onnxruntime

    ort = load_onnxruntime()

    from embcli.api.encoding import resolve
    from embcli.runtime.encoder import Encoder

    spec = resolve(name or None, "cpu")
    enc = Encoder(spec, device="cpu", threads=1)
    sha = spec.sha256()
    data = {
        "name": spec.name,
        "source": spec.source,
        "dimensions": enc.full_dim,
        "max_length": spec.max_length,
        "pooling": spec.pooling,
        "normalize": spec.normalize,
        "prompts": spec.prompts,
        "default_prompt_name": spec.default_prompt_name,
        "directory": str(spec.directory),
        "onnx": str(spec.onnx_path),
        "tokenizer": str(spec.tokenizer_path),
        "model_id": spec.model_id(),
        "sha256": sha,
        "sha256_pinned": spec.expected_sha256,
        "graph_inputs": sorted(i.name for i in enc.session.get_inputs()),
        "graph_output": enc._output.name,
        "onnxruntime": ort.__version__,
        "execution_providers": ort.get_available_providers(),
    }
    data["graph"] = {"kind": spec.graph, "why": spec.graph_why}
    pinned = " (checked)" if spec.expected_sha256 == sha else ""
    prompts = ", ".join(f"{k}={v!r}" for k, v in spec.prompts.items()) or "none"
    text = "\n".join(
        [
            f"name:         {spec.name} ({spec.source})",
            f"dimensions:   {enc.full_dim} (Matryoshka truncation with embed --dims N)",
            f"max length:   {spec.max_length} tokens",
            f"pooling:      {spec.pooling}, {'L2-normalized' if spec.normalize else 'not normalized'}",
            f"prompts:      {prompts}; default: {spec.default_prompt_name or 'none'}",
            f"directory:    {spec.directory}",
            f"onnx:         {spec.onnx_path}",
            *([f"graph kind:   {spec.graph}: {spec.graph_why}"] if spec.graph != "file" else []),
            f"tokenizer:    {spec.tokenizer_path}",
            f"sha256:       {sha}{pinned}",
            f"graph:        inputs {', '.join(data['graph_inputs'])} -> {data['graph_output']}",
            f"providers:    {', '.join(data['execution_providers'])} (onnxruntime {ort.__version__})",
        ]
    )
    _print(data, as_json, text)


@app.command("pull")
def pull(
    repo_id: Annotated[str, typer.Argument(help="Hub repo id, e.g. sentence-transformers/all-MiniLM-L6-v2.")],
    quiet: o.Quiet = False,
) -> None:
    """Download a hub model's ONNX graph, tokenizer and configs into the cache (needs network)."""
    from embcli.store.models import pull_model

    path = pull_model(repo_id)
    say(f"{repo_id} is in {path}", quiet)


class Precision(str, Enum):
    int8 = "int8"


@app.command("import")
def import_(
    source: Annotated[
        str,
        typer.Argument(
            metavar="SRC", help="A sentence-transformers directory with model.safetensors, or a hub repo id (online)."
        ),
    ],
    output: Annotated[str, typer.Option("-o", "--output", metavar="DIR", help="The model directory to write.")],
    optimize: Annotated[
        bool,
        typer.Option("--optimize", help="Fuse Attention, SkipLayerNorm, Gelu and EmbedLayerNorm (onnxruntime)."),
    ] = False,
    fp16: Annotated[bool, typer.Option("--fp16", help="Write a half-precision graph (for GPUs).")] = False,
    quantize: Annotated[
        Optional[Precision],
        typer.Option("--quantize", help="Write an int8 graph, only if it passes the accuracy gate."),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace DIR if it is not empty.")] = False,
    threads: o.Threads = None,
    quiet: o.Quiet = False,
) -> None:
    """Build an ONNX model directory from safetensors weights, with no torch (BERT and XLM-RoBERTa families).

    The graph is built from the weights with the onnx package and checked against a
    numpy forward pass over the same weights before anything is written: fp32 hidden
    states within 1e-4; fp16 and int8 sentence embeddings at cosine >= 0.998 on every
    golden text and >= 0.995 on 2,000 real texts. A graph that fails is refused with
    its figures. Use the directory with --model DIR.
    """
    from pathlib import Path

    from embcli.build.modelimport import import_model

    if fp16 and quantize:
        raise typer.BadParameter("choose --fp16 or --quantize int8, not both")
    precision = "fp16" if fp16 else (quantize.value if quantize else "fp32")
    out = Path(output)
    build = import_model(
        source,
        out,
        optimize=optimize,
        precision=precision,
        force=force,
        threads=threads,
        say=lambda m: say(m, quiet),
    )
    say(
        f"wrote {build.precision}{' fused' if build.optimized else ''} model to {out}; use it with --model {out}", quiet
    )


class GraphChoice(str, Enum):
    default = "default"
    fp32 = "fp32"
    fused = "fused"
    int8 = "int8"
    fp16 = "fp16"


@app.command("build-default")
def build_default(
    graph: Annotated[
        GraphChoice,
        typer.Option(
            "--graph",
            help="default: this version's graph for --device (fused fp32 on cpu, fp16 on cuda), or the one "
            "$EMBCLI_DEFAULT_GRAPH pins; or build this kind, for the runs that pin it.",
        ),
    ] = GraphChoice.default,
    device: Annotated[
        o.Device, typer.Option("--device", help="Build the default graph of this device: cpu or cuda.")
    ] = o.Device.cpu,
    quiet: o.Quiet = False,
) -> None:
    """Build the built-in model's graph from its pinned fp32 weights now (embed does it on first use).

    The graph is fixed by embcli's version: the same weights, onnx and onnxruntime
    give the same bytes (and sha256) on every machine. It is gated against a numpy
    reference forward and kept in the graph cache ($EMBCLI_GRAPHS_DIR). Another
    kind (--graph, or EMBCLI_DEFAULT_GRAPH=fp32|fused|int8|fp16|shipped) is built
    in a slot of its own and runs only where EMBCLI_DEFAULT_GRAPH pins it.
    """
    from embcli.build.defaultgraph import ensure_default

    if device == o.Device.auto:
        raise typer.BadParameter("--device must be cpu or cuda here")
    kind = None if graph is GraphChoice.default else graph.value
    built = ensure_default(device.value, kind, rebuild=True, say=lambda m: say(m, quiet))
    if built.path is None:
        raise EmbcliError(f"no graph was built: {built.why}")
    say(f"{built.path}", quiet)
