"""Cross-check `embcli eval` against trec_eval (pytrec_eval) and ir-measures on real data.

Not part of the tests (neither library is a dependency): run it with a Python where
pytrec_eval-terrier and ir-measures are installed, e.g. a scratch venv, and embcli on PYTHONPATH:

    python -m venv /tmp/te && /tmp/te/bin/pip install pytrec-eval-terrier ir-measures
    EMBCLI_PYTHON=$(command -v python) PYTHONPATH=$PWD /tmp/te/bin/python tools/crosscheck_eval.py IDX [QUERIES QRELS]

(EMBCLI_PYTHON: the Python that runs embcli, with its dependencies; default: this one.)

It searches IDX with `embcli search -k 10`, scores those hits with pytrec_eval and ir-measures,
runs `embcli eval IDX --at 1,5,10` on the same queries, and prints the means side by side.
Defaults: the package-name set in tests/data (tests/data/make_eval.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import ir_measures
import pytrec_eval
from ir_measures import AP, RR, R, nDCG

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"


def embcli(*args: str) -> bytes:
    python = os.environ.get("EMBCLI_PYTHON") or sys.executable
    return subprocess.run([python, "-m", "embcli", *args], check=True, capture_output=True).stdout


def main() -> None:
    if len(sys.argv) not in (2, 4):
        sys.exit(__doc__)
    idx = sys.argv[1]
    queries, qrels_path = sys.argv[2:] or [str(DATA / "packages-queries.jsonl"), str(DATA / "packages-qrels.trec")]
    qrels: dict[str, dict[str, int]] = {}
    for line in Path(qrels_path).read_text().splitlines():
        q, _, d, r = line.split()
        qrels.setdefault(q, {})[d] = int(r)
    run = {}
    for line in embcli("search", "-q", idx, "-k", "10", "--queries", queries).splitlines():
        hit = json.loads(line)
        run[str(hit["id"])] = {str(h["id"]): h["score"] for h in hit["results"]}
    ours = json.loads(embcli("eval", "-q", idx, "--queries", queries, "--qrels", qrels_path, "--at", "1,5,10"))
    ours = ours["configs"][0]["metrics"]
    res = pytrec_eval.RelevanceEvaluator(qrels, {"recall.1,5,10", "ndcg_cut.1,5,10", "recip_rank", "map"}).evaluate(run)
    qr = [ir_measures.Qrel(q, d, r) for q, docs in qrels.items() for d, r in docs.items()]
    sd = [ir_measures.ScoredDoc(q, d, s) for q, docs in run.items() for d, s in docs.items()]
    agg = {str(k): v for k, v in ir_measures.calc_aggregate([R @ 10, nDCG @ 10, RR @ 10, AP], qr, sd).items()}
    rows = [
        ("recall@1", "recall_1", None),
        ("recall@5", "recall_5", None),
        ("recall@10", "recall_10", "R@10"),
        ("ndcg@1", "ndcg_cut_1", None),
        ("ndcg@5", "ndcg_cut_5", None),
        ("ndcg@10", "ndcg_cut_10", "nDCG@10"),
        ("mrr@10", "recip_rank", "RR@10"),
        ("map", "map", "AP"),
    ]
    print(f"{'metric':10} {'embcli eval':>12} {'pytrec_eval':>12} {'ir-measures':>12}  max |diff|")
    for ours_name, te_name, irm_name in rows:
        te = sum(v[te_name] for v in res.values()) / len(res)
        irm = agg.get(irm_name) if irm_name else None
        diff = max(abs(ours[ours_name] - te), abs(ours[ours_name] - irm) if irm is not None else 0.0)
        irm_text = f"{irm:12.6f}" if irm is not None else f"{'-':>12}"
        print(f"{ours_name:10} {ours[ours_name]:12.6f} {te:12.6f} {irm_text}  {diff:.1e}")


if __name__ == "__main__":
    main()
