"""embcli cluster: group embedded records."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer

from embcli.commands import _options as o
from embcli.commands._analysis import EvalField, EvalOut, check_free, gold_labels, read_all, report_eval, write_records
from embcli.commands._ui import say, warn

ALGO = "Clustering"


class Algo(str, Enum):
    kmeans = "kmeans"
    hdbscan = "hdbscan"
    threshold = "threshold"


def cluster(
    input: o.InputArg = None,
    output: o.Output = None,
    algo: Annotated[
        Algo,
        typer.Option(
            "--algo",
            help="kmeans (spherical), hdbscan (density, -1 = noise), threshold (communities).",
            rich_help_panel=ALGO,
        ),
    ] = Algo.kmeans,
    k: Annotated[
        str,
        typer.Option(
            "--k",
            metavar="N|auto",
            help="kmeans: number of clusters, or auto (best silhouette in --k-range).",
            rich_help_panel=ALGO,
        ),
    ] = "8",
    k_range: Annotated[
        str, typer.Option("--k-range", metavar="MIN:MAX", help="--k auto: the range tried.", rich_help_panel=ALGO)
    ] = "2:20",
    n_init: Annotated[
        int,
        typer.Option(
            "--n-init", min=1, metavar="N", help="kmeans: restarts; the lowest cost wins.", rich_help_panel=ALGO
        ),
    ] = 4,
    seed: Annotated[int, typer.Option("--seed", help="Seed for k-means++ and sampling.", rich_help_panel=ALGO)] = 0,
    min_cluster_size: Annotated[
        int,
        typer.Option("--min-cluster-size", min=2, metavar="N", help="hdbscan: smallest cluster.", rich_help_panel=ALGO),
    ] = 5,
    threshold: Annotated[
        float,
        typer.Option(
            "--threshold", min=-1.0, max=1.0, help="threshold: cosine that joins a community.", rich_help_panel=ALGO
        ),
    ] = 0.75,
    min_size: Annotated[
        int, typer.Option("--min-size", min=1, metavar="N", help="threshold: smallest community.", rich_help_panel=ALGO)
    ] = 10,
    summary: Annotated[
        Optional[str],
        typer.Option(
            "--summary",
            metavar="FILE",
            help="Write one JSONL line per cluster: size, representative members, keywords, label.",
            show_default=False,
            rich_help_panel=o.IO,
        ),
    ] = None,
    output_field: Annotated[
        str,
        typer.Option(
            "--output-field",
            metavar="NAME",
            help="Field for the cluster id (NAME_similarity holds the cosine to its centre).",
            rich_help_panel=o.IO,
        ),
    ] = "cluster",
    overwrite: o.Overwrite = False,
    eval_field: EvalField = None,
    eval_out: EvalOut = None,
    text_field: o.TextField = "text",
    vector_field: o.VectorField = "embedding",
    on_error: o.OnErrorOpt = o.OnError.fail,
    quiet: o.Quiet = False,
) -> None:
    """Cluster embedded records (JSONL with a vector, or NPY); needs the whole input.

    Each record gets a cluster id (-1 = noise) and its cosine to the cluster's
    centre. The same input and seed give the same clusters whatever the input
    order (rows are clustered in a canonical order, clusters numbered by size).
    """
    from embcli.analysis.cluster import communities, hdbscan, kmeans, kmeans_auto
    from embcli.errors import UsageError
    from embcli.io.streams import BadRecords

    bad = BadRecords(skip=on_error is o.OnError.skip)
    records, x, _ = read_all(input, vector_field, bad)
    sim_field = f"{output_field}_similarity"
    check_free(records, [output_field, sim_field], overwrite)
    if not records:
        write_records([], output)
        return
    if algo is Algo.kmeans:
        if k == "auto":
            try:
                lo, hi = (int(v) for v in k_range.split(":"))
            except ValueError:
                raise UsageError(f"--k-range: expected MIN:MAX, got {k_range!r}") from None
            result = kmeans_auto(x, lo, hi, n_init=n_init, seed=seed)
        else:
            try:
                n = int(k)
            except ValueError:
                raise UsageError(f"--k: expected a number or auto, got {k!r}") from None
            result = kmeans(x, n, n_init=n_init, seed=seed)
    elif algo is Algo.hdbscan:
        result = hdbscan(x, min_cluster_size=min_cluster_size)
    else:
        result = communities(x, threshold=threshold, min_size=min_size)
    from embcli.search.neighbors import unit

    sims = result.similarity(unit(x))
    for rec, label, sim in zip(records, result.labels, sims, strict=True):
        rec[output_field] = int(label)
        rec[sim_field] = None if label < 0 else round(float(sim), 6)
    write_records(records, output)
    if summary:
        _write_summary(summary, records, result, sims, text_field)
    if bad.summary():
        warn(bad.summary(), quiet)
    if result.note:
        say(result.note, quiet)
    n_clusters = int(result.labels.max()) + 1
    noise = int((result.labels < 0).sum())
    noise_note = f", {noise:,} noise" if noise else ""
    say(f"clustered {len(records):,} records into {n_clusters:,} clusters ({algo.value}){noise_note}", quiet)
    if eval_field:
        from sklearn import metrics

        gold = [str(g) for g in gold_labels(records, eval_field)]
        report_eval(
            {
                "v_measure": float(metrics.v_measure_score(gold, result.labels)),
                "adjusted_rand": float(metrics.adjusted_rand_score(gold, result.labels)),
                "nmi": float(metrics.normalized_mutual_info_score(gold, result.labels)),
                "clusters": n_clusters,
            },
            eval_out,
            quiet,
        )


def _write_summary(path: str, records: list[dict], result, sims, text_field: str, top: int = 5) -> None:
    import numpy as np
    import orjson

    from embcli.analysis.cluster import keywords
    from embcli.io.files import atomic_file

    members: dict[int, list[int]] = {}
    for i, label in enumerate(result.labels):
        if label >= 0:
            members.setdefault(int(label), []).append(i)
    texts = {
        c: [records[i][text_field] for i in idx if isinstance(records[i].get(text_field), str)]
        for c, idx in members.items()
    }
    words = keywords(texts) if any(texts.values()) else {}
    with atomic_file(path) as f:
        for c in sorted(members):
            idx = np.array(members[c])
            best = idx[np.argsort(-sims[idx], kind="stable")[:top]]
            reps = [
                {f: records[i][f] for f in ("id", "row", text_field) if f in records[i]}
                | {"similarity": round(float(sims[i]), 6)}
                for i in best
            ]
            line = {"cluster": c, "size": len(idx), "representatives": reps}
            if words.get(c):
                line |= {"keywords": words[c], "label": " ".join(words[c][:3])}
            f.write(orjson.dumps(line) + b"\n")
