"""Long documents: truncated whole-document retrieval against chunked + grouped retrieval.

The corpus is tests/data/stdlib-longdocs.jsonl (80 standard-library modules as pydoc-like text,
1,000-1,500 tokens each) and its 203 queries (stdlib-longdocs-queries.jsonl): the first line of a
function's or class's docstring, whose target is its module, and which sits past the module
text's first 256 tokens, where a truncating model never looks (built by tests/data/make_longdocs.py).

Each configuration embeds the corpus with the built-in model through the Python API (the core
`embcli embed` runs), builds an exact index and searches it with every query:
  truncated        one vector per document, cut to the model's 256 tokens (embcli embed)
  chunked max      embed --chunk (254-token windows, 31 overlap), search --group-by parent
  chunked sum      the same index, --group-fusion sum (top 3 chunks)
  chunked + title  embed --chunk --context-field title, --group-by parent
Prints recall@1/@10 and MRR@10 per configuration side by side, with the texts embedded and the
CPU seconds each embedding took (chunking costs inference: more, and longer, texts).

    python bench/chunking.py [--chunk-tokens N ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import orjson

import embcli

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def read(name: str) -> list[dict]:
    with open(DATA / name, "rb") as f:
        return [orjson.loads(line) for line in f]


def scores(ranked: list[list[object]], targets: list[str], k: int = 10) -> tuple[float, float, float]:
    """recall@1, recall@k and MRR@k of one relevant document per query."""
    r1 = rk = mrr = 0.0
    for got, want in zip(ranked, targets, strict=True):
        top = got[:k]
        if want in top:
            rank = top.index(want) + 1
            rk += 1
            mrr += 1 / rank
            r1 += rank == 1
    n = len(targets)
    return r1 / n, rk / n, mrr / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chunk-tokens", type=int, nargs="*", default=[], help="more chunked runs at these window sizes")
    args = ap.parse_args()
    docs, queries = read("stdlib-longdocs.jsonl"), read("stdlib-longdocs-queries.jsonl")
    texts, targets = [q["text"] for q in queries], [q["target"] for q in queries]
    enc = embcli.Encoder(device="cpu")
    print(f"{len(docs)} documents, {len(queries)} queries; {enc.provenance['model']}, max length {enc.max_length}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:

        def run(name: str, chunking: embcli.Chunking | None, fusions: list[str | None]) -> None:
            cpu = time.process_time()
            records = list(enc.embed_records(docs, chunking=chunking))
            cpu = time.process_time() - cpu
            idx = embcli.Index.build(Path(tmp) / f"{len(rows)}.idx", records)
            for fusion in fusions:
                if fusion is None:
                    hits = idx.search(texts, k=10, exact=True)
                    ranked = [[h.id for h in per] for per in hits]
                else:
                    hits = idx.search(texts, k=10, exact=True, group_by="parent", group_fusion=fusion)
                    ranked = [[h.payload["parent"] for h in per] for per in hits]
                label = name if fusion in (None, "max") and len(fusions) == 1 else f"{name} {fusion}"
                rows.append((label, len(records), cpu, *scores(ranked, targets)))
                print(f"  {label}: done", flush=True)

        run("truncated", None, [None])
        run("chunked", embcli.Chunking(), ["max", "sum"])
        run("chunked + title", embcli.Chunking(context_field="title"), ["max"])
        for n in args.chunk_tokens:
            run(f"chunked {n} tokens", embcli.Chunking(tokens=n), ["max"])
    print()
    print(f"{'configuration':<24}{'texts':>7}{'embed CPU s':>13}{'recall@1':>10}{'recall@10':>11}{'MRR@10':>9}")
    for label, n, cpu, r1, r10, mrr in rows:
        print(f"{label:<24}{n:>7}{cpu:>13.1f}{r1:>10.3f}{r10:>11.3f}{mrr:>9.3f}")


if __name__ == "__main__":
    main()
