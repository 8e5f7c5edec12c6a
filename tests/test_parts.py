"""Inputs cut into parts (embcli/io/parts.py): the parts' records, in order, are the whole input's records,
with the same line and row numbers and names, so errors in a part read as a single-process run's."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest

from embcli.errors import InputError
from embcli.io.inputs import Inputs, ReadOptions
from embcli.io.parts import GROUPS, LINES, ROWS, WHOLE, plan, read_part
from embcli.io.streams import BadRecords


def whole(names: list[str], **options) -> list[tuple]:
    recs = Inputs(names, ReadOptions(**options)).records("text", BadRecords())
    return [(r.line, r.source, r.where, r.data) for r in recs]


def by_parts(names: list[str], part_rows: int, **options) -> tuple[list, list[tuple]]:
    _, parts = plan(names, part_rows, options.get("input_format"))
    got = [
        (r.line, r.source, r.where, r.data)
        for p in parts
        for r in read_part(p, "text", BadRecords(), input_format=options.get("input_format"))
    ]
    return parts, got


def test_jsonl_cut_at_lines(tmp_path: Path) -> None:
    f = tmp_path / "a.jsonl"
    lines = [f'{{"id": {i}, "text": "t{i}"}}' for i in range(10)]
    lines[4] = "   "  # a blank line is not a record, but it keeps its number
    f.write_text("\n".join(lines))  # no newline at the end
    parts, got = by_parts([str(f)], 3)
    assert [(p.kind, p.first, p.rows) for p in parts] == [(LINES, 1, 3), (LINES, 4, 3), (LINES, 7, 3), (LINES, 10, 1)]
    assert got == whole([str(f)])
    assert got[-1][2] == f"{f} line 10"


def test_text_lines_and_a_small_file_is_one_whole_part(tmp_path: Path) -> None:
    f, g = tmp_path / "t.txt", tmp_path / "small.jsonl"
    f.write_text("".join(f"text {i}\n" for i in range(7)))
    g.write_text('{"text": "only"}\n')
    parts, got = by_parts([str(f), str(g)], 3, input_format="text")
    assert [p.kind for p in parts] == [LINES, LINES, LINES, WHOLE]
    assert got == whole([str(f), str(g)], input_format="text")


def test_csv_cut_after_rows_even_when_a_quoted_field_spans_lines(tmp_path: Path) -> None:
    f = tmp_path / "d.csv"
    rows = [{"id": str(i), "text": f'line one {i}\nline "two", {i}' if i % 3 == 0 else f"t{i}"} for i in range(11)]
    with open(f, "w", newline="", encoding="utf-8-sig") as fh:  # a BOM, and CRLF line ends
        w = csv.DictWriter(fh, fieldnames=["id", "text"], lineterminator="\r\n")
        w.writeheader()
        w.writerows(rows)
    parts, got = by_parts([str(f)], 4)
    assert [p.kind for p in parts] == [ROWS, ROWS, ROWS]
    assert [p.header > 0 for p in parts] == [False, True, True]
    assert got == whole([str(f)])
    assert [r[3]["id"] for r in got] == [str(i) for i in range(11)]


def test_a_bad_csv_row_in_a_later_part_names_its_line_in_the_file(tmp_path: Path) -> None:
    f = tmp_path / "d.tsv"
    f.write_text("id\ttext\n" + "".join(f"{i}\tt{i}\n" for i in range(6)) + "7\n" + "8\tt8\n")
    _, parts = plan([str(f)], 3)
    assert len(parts) == 3
    with pytest.raises(InputError) as part_error:
        list(read_part(parts[2], "text", BadRecords()))
    with pytest.raises(InputError) as whole_error:
        whole([str(f)])
    assert part_error.value.message == whole_error.value.message
    assert part_error.value.message.endswith(f"{f} line 8")


def test_parquet_and_arrow_cut_between_row_groups_and_batches(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist([{"id": i, "text": f"t{i}"} for i in range(25)])
    pq.write_table(table, tmp_path / "x.parquet", row_group_size=4)
    with pa.OSFile(str(tmp_path / "x.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as w:
        for b in table.to_batches(max_chunksize=5):
            w.write_batch(b)
    for name in ("x.parquet", "x.arrow"):
        path = str(tmp_path / name)
        parts, got = by_parts([path], 10)
        assert {p.kind for p in parts} == {GROUPS}
        assert [p.first for p in parts] == ([1, 13, 25] if name == "x.parquet" else [1, 11, 21])
        assert got == whole([path])
        assert got[-1][2] == f"{path} row 25"


def test_compressed_input_is_one_part_and_a_changed_input_is_refused(tmp_path: Path) -> None:
    gz, f = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl"
    gz.write_bytes(gzip.compress(b"".join(b'{"text": "t%d"}\n' % i for i in range(9))))
    f.write_text("".join(f'{{"text": "t{i}"}}\n' for i in range(9)))
    inputs, parts = plan([str(gz), str(f)], 3)
    assert [i.format for i in inputs] == ["compressed", "jsonl"]
    assert [p.kind for p in parts] == [WHOLE, LINES, LINES, LINES]
    f.write_text("changed\n")
    with pytest.raises(InputError, match="changed since the job was planned"):
        list(read_part(parts[2], "text", BadRecords()))
