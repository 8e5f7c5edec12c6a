"""Progress and phases: a live line on a terminal's stderr (done/total, rate, ETA; the analyses' phases),
nothing off a terminal or under -q but the usual summary.

The terminal tests run the real CLI with stderr on a pseudo-terminal and replay what it wrote through a
tiny terminal model, so they check both what was shown on the way and what is left on the screen. The
line is redrawn at most 10 times a second, so a phase shorter than that may never be drawn: these tests
look only for the states always drawn, a block's last one (the API tests below see every phase).
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
import time

import numpy as np
import pytest
from conftest import DATA, cli

from embcli.commands import _ui
from embcli.env import Env, using

GOLDEN = DATA / "golden-all-MiniLM-L6-v2.jsonl"  # 256 real embedded texts: no model run needed to read them
CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


class Terminal:
    """What rich writes, replayed: every line ever drawn, and the screen at the end."""

    def __init__(self, raw: str) -> None:
        self.raw = raw
        self.drawn: list[str] = []  # each state of a line when it was left or redrawn
        rows, row, col = [""], 0, 0
        pos = 0
        for m in [*CSI.finditer(raw), None]:
            text = raw[pos : m.start() if m else len(raw)]
            for ch in text:
                if ch == "\r":
                    col = 0
                elif ch == "\n":
                    self.drawn.append(rows[row])
                    row += 1
                    col = 0
                    if row == len(rows):
                        rows.append("")
                else:
                    line = rows[row].ljust(col)
                    rows[row] = line[:col] + ch + line[col + 1 :]
                    col += 1
            if m is None:
                break
            pos = m.end()
            args, op = m.groups()
            if op == "A":  # cursor up
                row = max(row - int(args or 1), 0)
            elif op == "K":  # erase the line: a redraw or a transient line going away
                self.drawn.append(rows[row])
                rows[row] = ""
            elif op == "G":  # cursor to a column
                col = int(args or 1) - 1
        self.screen = [line.rstrip() for line in rows if line.strip()]

    def shown(self, needle: str) -> bool:
        return any(needle in line for line in self.drawn)


def cli_tty(*args: str, stdin: bytes = b"") -> tuple[int, bytes, Terminal]:
    """``embcli ARGS`` with stderr on a pseudo-terminal (120 columns) and stdout on a pipe."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    drop = ("EMBCLI_MODEL", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS", "LINES")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(HF_HUB_OFFLINE="1", TERM="xterm-256color")
    p = subprocess.Popen(
        [sys.executable, "-m", "embcli", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=slave, env=env
    )
    os.close(slave)
    chunks: list[bytes] = []

    def read_terminal() -> None:  # keep draining: a full pty buffer would block the command
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the last writer closed it
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read_terminal)
    reader.start()
    try:
        out, _ = p.communicate(stdin, timeout=120)
    finally:
        reader.join(timeout=30)
        os.close(master)
    return p.returncode, out, Terminal(b"".join(chunks).decode("utf-8", "replace"))


# --------------------------------------------------------------------------- the analyses' phases on a terminal


def test_cluster_shows_its_phases_then_only_the_summary() -> None:
    code, out, term = cli_tty("cluster", "--k", "auto", "--k-range", "2:4", str(GOLDEN))
    assert code == 0, term.raw
    assert term.shown("reading golden-all-MiniLM-L6-v2.jsonl… 256 vectors")
    assert term.shown("choosing k: trying k=4 (3/3), silhouette…")
    # The phase line is gone at the end: the screen holds the usual lines, nothing else.
    assert term.screen == [
        "embcli: k = 4: the best cosine silhouette on 256 vectors (2: 0.045, 3: 0.051, 4: 0.052)",
        "embcli: clustered 256 records into 4 clusters (kmeans)",
    ], term.raw
    plain = cli("cluster", "--k", "auto", "--k-range", "2:4", str(GOLDEN))
    assert out == plain.out  # a terminal changes what is shown, never the result


def test_cluster_off_a_terminal_prints_only_the_summary() -> None:
    r = cli("cluster", "--k", "3", str(GOLDEN))
    assert r.code == 0 and r.err == "embcli: clustered 256 records into 3 clusters (kmeans)\n", r.err


def test_quiet_on_a_terminal_prints_nothing() -> None:
    code, out, term = cli_tty("cluster", "-q", "--k", "3", str(GOLDEN))
    assert code == 0 and out and term.raw == "", term.raw


def test_diff_shows_its_tests(tmp_path) -> None:
    half = tmp_path / "half.jsonl"
    half.write_bytes(b"".join(GOLDEN.read_bytes().splitlines(keepends=True)[:128]))
    code, out, term = cli_tty("diff", "--permutations", "100", str(GOLDEN), str(half))
    assert code in (0, 1), term.raw
    assert term.shown("reading half.jsonl… 128 vectors")
    assert term.shown("finding the items least like the other side…")
    assert term.screen == [], term.raw  # diff says nothing on stderr; the report is on stdout
    plain = cli("diff", "--permutations", "100", str(GOLDEN), str(half))
    assert plain.err == "" and plain.code == code and plain.out == out


def test_detect_anomalies_shows_its_phases() -> None:
    code, _, term = cli_tty("detect-anomalies", "--method", "lof", str(GOLDEN))
    assert code == 0, term.raw
    assert term.shown("scoring 256 vectors with lof (k=10)")
    assert term.screen == ["embcli: scored 256 records with lof; 3 flagged as anomalies"], term.raw


def test_novelty_scoring_counts_records_as_they_stream(tmp_path) -> None:
    half = tmp_path / "half.jsonl"
    half.write_bytes(b"".join(GOLDEN.read_bytes().splitlines(keepends=True)[:128]))
    code, _, term = cli_tty("detect-anomalies", "--reference", str(GOLDEN), str(half))
    assert code == 0, term.raw
    assert term.shown("scoring 256 vectors with knn (k=10, mean)…")  # the reference, for the flag level
    # A stream's length is unknown: the count, the rate and the time so far.
    # A file input: its share read is known, so the line shows it (and an ETA) with the count.
    assert re.search(r"scoring 100% · 128 records · [\d,]+ records/s · ETA \d+:\d\d", "\n".join(term.drawn)), term.raw
    assert term.screen == ["embcli: scored 128 records with knn; 0 flagged as anomalies"], term.raw


@pytest.mark.parametrize("args", [["cluster"], ["detect-anomalies"], ["classify", "--labels", "a,b"]])
def test_empty_input_on_a_terminal_leaves_nothing(args: list[str]) -> None:
    code, out, term = cli_tty(*args, "-")
    assert code == 0 and out == b"", term.raw
    assert all(line.startswith("embcli: ") for line in term.screen), term.raw


def test_classify_shows_done_of_total_when_the_whole_input_is_read() -> None:
    # --refine reads the whole input first, so the labelling pass knows how many records there are.
    code, out, term = cli_tty("classify", "--labels", "web,data,science", "--refine", str(GOLDEN))
    assert code == 0, term.raw
    assert term.shown("refining 3 label vectors on 256 vectors")
    assert re.search(r"classifying 256/256 records · [\d,]+ records/s · ETA 0:00", "\n".join(term.drawn)), term.raw
    assert term.screen == ["embcli: classified 256 records with a zero-shot head over 3 labels"], term.raw
    assert len(out.splitlines()) == 256


# --------------------------------------------------------------------------- the progress line's text


class Clock:
    """perf_counter, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(_ui.time, "perf_counter", c)
    return c


def test_progress_with_a_total_shows_done_rate_and_eta(clock) -> None:
    bar = _ui.Progress("embedding", "texts", enabled=False, total=5000)
    clock.now += 3
    bar.advance(1234)
    text, done = bar.line()
    assert text == "embedding 1,234/5,000 texts · 411 texts/s · ETA 0:09"
    assert done == pytest.approx(1234 / 5000)


def test_progress_with_a_fraction_shows_percent_count_rate_and_eta(clock) -> None:
    read = {"share": 0.25}
    bar = _ui.Progress("embedding", "texts", enabled=True, fraction=lambda _done: read["share"])
    clock.now += 10
    bar.advance(1000)
    assert bar.line() == ("embedding 25% · 1,000 texts · 100 texts/s · ETA 0:30", 0.25)


def test_progress_without_a_total_shows_count_rate_and_elapsed(clock) -> None:
    bar = _ui.Progress("searching", "queries", enabled=False)
    clock.now += 75
    bar.advance(150)
    assert bar.line() == ("searching 150 queries · 2 queries/s · 1:15", None)


def test_progress_asks_for_the_fraction_at_most_ten_times_a_second(clock) -> None:
    calls = []
    bar = _ui.Progress("embedding", "texts", enabled=True, fraction=lambda _done: calls.append(1) or 0.5)
    for _ in range(1000):  # batches far faster than a redraw
        bar.advance(1)
        clock.now += 0.001
    assert len(calls) == 10  # over one second: the first batch, then one per 0.1 s
    off = _ui.Progress("embedding", "texts", enabled=False, fraction=lambda _done: calls.append(1) or 0.5)
    off.advance(10)
    assert len(calls) == 10  # off a terminal nothing is drawn, so nothing is asked


def test_progress_survives_a_failing_or_unknown_fraction(clock) -> None:
    bar = _ui.Progress("embedding", "texts", enabled=True, fraction=lambda _done: None)
    clock.now += 1
    bar.advance(10)
    assert bar.line() == ("embedding 10 texts · 10 texts/s · 0:01", None)  # not known yet: as without one
    broken = _ui.Progress("embedding", "texts", enabled=True, fraction=lambda _done: 1 / 0)
    broken.advance(10)
    assert broken.fraction is None and broken.line()[1] is None


def test_progress_eta_past_the_hour(clock) -> None:
    bar = _ui.Progress("indexing", "vectors", enabled=False, total=1_000_000)
    clock.now += 100
    bar.advance(10_000)
    assert bar.line()[0].endswith("ETA 2:45:00")


# --------------------------------------------------------------------------- the core's hook


def test_phases_reach_an_api_callers_callback() -> None:
    import embcli

    x = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.9, 0.1], [0, 0, 1], [0.1, 0, 0.9]], np.float32)
    seen: list[str] = []
    with using(Env(on_phase=seen.append)):
        embcli.cluster(x, "auto", k_range=(2, 3), n_init=2)
    assert "choosing k: trying k=2 (1/2), restart 2/2…" in seen and "choosing k: trying k=3 (2/2), silhouette…" in seen
    with using(Env(on_phase=seen.append, quiet=True)):
        embcli.cluster(x, 2)
    assert not any("fitting" in s for s in seen)  # quiet: not even formatted


def test_diff_reports_each_test() -> None:
    import embcli

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((60, 8)), rng.standard_normal((40, 8)) + 0.5
    seen: list[str] = []
    with using(Env(on_phase=seen.append)):
        embcli.diff(a, b, permutations=100)
    for phase in (
        "testing: MMD (permutations 50/100)…",
        "testing: MMD (permutations 100/100)…",
        "testing: classifier (fold 5/5)…",
        "testing: depth…",
        "testing: shifted dimensions (8)…",
    ):
        assert phase in seen, seen


def test_counted_reports_every_n_and_passes_items_through() -> None:
    seen: list[str] = []
    env = Env(on_phase=seen.append)
    assert list(env.counted(range(2500), "reading a.jsonl", "vectors", every=1000)) == list(range(2500))
    assert seen == [
        "reading a.jsonl…",
        "reading a.jsonl… 1,000 vectors",
        "reading a.jsonl… 2,000 vectors",
        "reading a.jsonl… 2,500 vectors",
    ]
    silent = Env()
    items = iter(range(3))
    assert list(silent.counted(items, "reading", "vectors")) == [0, 1, 2]


def test_phases_off_a_terminal_leave_no_listener(monkeypatch) -> None:
    from embcli.env import current

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    with using(Env()), _ui.phases(quiet=False):
        assert current().on_phase is None


def test_phases_restore_the_previous_listener_on_error(monkeypatch) -> None:
    from embcli.env import current

    class FakeLine:
        def __init__(self) -> None:
            self.sources: tuple = ()

        def push(self, source) -> None:
            self.sources = (*self.sources, source)

        def pop(self) -> None:
            self.sources = self.sources[:-1]

    monkeypatch.setattr(_ui, "_live_allowed", lambda quiet: True)
    monkeypatch.setattr(_ui, "_StatusLine", FakeLine)
    mine: list[str] = []
    with using(Env(on_phase=mine.append)):
        with pytest.raises(KeyError), _ui.phases(quiet=False):
            current().phase("building kNN graph…")
            time.sleep(0)
            raise KeyError
        assert current().on_phase == mine.append and _ui._line is None
