"""What the analyses share: reading a whole embedded input, result fields that never clobber, gold labels."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

import numpy as np

from embcli.env import current
from embcli.errors import InputError


def reading(pairs: Iterable[tuple], name: str, start: int = 0) -> Iterator[tuple]:
    """``pairs`` as they are read, reported as the phase "reading NAME… 12,345 vectors" (on a terminal).

    ``start``: how many were read before (a first chunk already taken).
    """
    return current().counted(pairs, f"reading {os.path.basename(name) or name}", "vectors", start=start)


def read_all(
    paths: list[str] | str | None, vector_field: str, bad, input_format: str | None = None
) -> tuple[list[dict], np.ndarray, str]:
    """Every record of the inputs (NPY rows become {"row": i}) and the stacked vectors; checks widths.

    ``bad`` is the ``BadRecords`` policy (fail, or skip and count).
    """
    from embcli.io.inputs import Inputs, ReadOptions

    inputs = Inputs([paths] if isinstance(paths, str) else paths, ReadOptions(input_format))
    pairs = list(reading(inputs.embedded(vector_field, bad), inputs.name))
    name = inputs.name
    records = [rec.fields() for rec, _ in pairs]
    if not pairs:
        return records, np.zeros((0, 0), np.float32), name
    widths = {len(v) for _, v in pairs}
    if len(widths) > 1:
        raise InputError(f"vectors of different widths {sorted(widths)}, {name}")
    x = np.vstack([v for _, v in pairs])
    del pairs  # the rows as read (1.5 GB at 1M x 384) go before the caller makes its own copies
    return records, x.astype(np.float32, copy=False), name


def check_free(records: list[dict], fields: list[str], overwrite: bool, rename: str = "--output-field") -> None:
    """A result field the records already have is an error, unless --overwrite.

    ``rename``: the command's options that name its result fields, for the hint.
    """
    if overwrite:
        return
    for i, rec in enumerate(records):
        for f in fields:
            if f in rec:
                raise InputError(
                    f"record {i + 1} already has a {f!r} field",
                    hint=f"name the result field with {rename}, or pass --overwrite",
                )


def gold_labels(records: list[dict], field: str) -> list:
    """The --eval field of every record; a record without one is bad input."""
    missing = sum(field not in r for r in records)
    if missing:
        raise InputError(f"--eval {field}: {missing} records have no {field!r} field")
    return [r[field] for r in records]


def provenance_of(records: list[dict], model_field: str) -> dict | None:
    """The first record's model field: the model and options that made these vectors."""
    return next((r.get(model_field) for r in records if model_field and r.get(model_field)), None)
