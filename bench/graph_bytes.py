#!/usr/bin/env python3
"""Is the built-in model's graph the same bytes on every build, and is the fused one worth it?

    python bench/graph_bytes.py                 # fp32 and fused, two fresh builds each (~2 min)
    python bench/graph_bytes.py --kinds fused   # just the fixed CPU graph

Each kind is built twice, each time by a fresh `embcli models build-default` process
into a fresh graph cache, and the sha256s are printed side by side (compare them with
another machine's: the same onnx and onnxruntime must give the same sha256). Then both
kinds embed the shipped timing texts (short real sentences) with one thread, in
interleaved rounds, best of the rounds per kind: the figure behind the fixed CPU graph.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build(kind: str, graphs: Path) -> Path:
    env = {**os.environ, "EMBCLI_GRAPHS_DIR": str(graphs), "PYTHONPATH": str(REPO)}
    env.pop("EMBCLI_DEFAULT_GRAPH", None)
    cmd = [sys.executable, "-m", "embcli", "models", "build-default", "-q", "--graph", kind]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{out.stderr}")
    (path,) = graphs.glob(f"*/*/model.{kind}.onnx")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", default="fp32,fused")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import onnxruntime as ort

    from embcli.io.files import sha256_file
    from embcli.store.graphs import versions

    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()) + f" (ort {ort.__version__})")
    graphs: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="embcli-graph-bytes-") as tmp:
        for kind in args.kinds.split(","):
            shas = []
            for i in range(2):
                start = time.perf_counter()
                path = build(kind, Path(tmp) / f"{kind}-{i}")
                shas.append(sha256_file(path))
                print(f"{kind:6} build {i + 1}: sha256 {shas[-1]}  ({time.perf_counter() - start:.0f}s)", flush=True)
            print(f"{kind:6} identical: {shas[0] == shas[1]}")
            graphs[kind] = path
        if len(graphs) > 1:
            speed(graphs, args.rounds)
    return 0


def speed(graphs: dict[str, Path], rounds: int) -> None:
    from dataclasses import replace

    import numpy as np

    from embcli.build.defaultgraph import weights_dir
    from embcli.build.graphcheck import check_texts
    from embcli.runtime.encoder import Encoder
    from embcli.store.models import read_model_dir

    base = read_model_dir(weights_dir(), name="default", source="local", onnx_path=next(iter(graphs.values())))
    texts = check_texts("timing")
    encoders = {
        k: Encoder(replace(base, onnx_path=p, _sha256=None), device="cpu", threads=1, normalize=True)
        for k, p in graphs.items()
    }
    best = dict.fromkeys(encoders, float("inf"))
    vectors = {}
    for _ in range(rounds):  # interleaved: a busy moment on a shared machine slows one round, not one kind
        for kind, enc in encoders.items():
            start = time.perf_counter()
            vectors[kind] = enc.encode(texts)
            best[kind] = min(best[kind], time.perf_counter() - start)
    first = next(iter(vectors.values()))
    for kind, secs in best.items():
        cos = np.einsum("ij,ij->i", vectors[kind], first).min()
        print(f"{kind:6} {len(texts) / secs:7.0f} texts/s (1 thread, {len(texts)} timing texts)  min cosine {cos:.7f}")


if __name__ == "__main__":
    sys.exit(main())
