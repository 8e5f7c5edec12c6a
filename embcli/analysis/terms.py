"""Which words changed meaning between two corpora: term-level shift (``diff --terms``).

The idea is CADE's (compass-aligned distributional embeddings): give each word a
vector per corpus from the contexts it occurs in, bring the two corpora into one
frame on the words that did not move (the compass), and rank words by how far
apart their two vectors still are.

A word's vector in a corpus is the mean of its contextual vectors: for each
occurrence, the encoder's token states (its last hidden state, before pooling)
of the word's sub-word tokens, averaged and scaled to unit length. Words are the
tokenizer's own (its pre-tokens: split at spaces and punctuation), lower-cased,
letters only. Cost is bounded: at most ``max_occurrences`` occurrences per word
and side are encoded, spread evenly over the corpus, so only the texts that hold
them run through the model.

Alignment: one encoder made both sides, so their spaces are one already, up to
each corpus's topic, which moves the contexts of every word alike. Both sides are
centred on the compass words, refitted on the ``compass_share`` least moved (so
the words that did move do not pull the frame towards themselves); with enough
compass words (2 × dims) B is also rotated onto A by orthogonal Procrustes.

The ranking key is not the plain cosine distance: the token states of function
words ("the", "of", "with") are the most context-dependent of all, so between
two topics they are the farthest apart while meaning the same. A word's
``shift`` is the squared distance between its two mean vectors, less what
sampling alone gives (s²_A/n_A + s²_B/n_B, s² the spread of its occurrence
vectors, n the occurrences used), over s²_A + s²_B: how far it moved in units of
how much its own contexts vary. ``ratio`` is that squared distance over the
sampling term alone; a word counts as moved when its ratio is at least
``min_ratio``, and the verdict is "different" when any word did.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from embcli.env import current
from embcli.errors import InputError, UsageError

CHUNK = 2048  # texts tokenized or encoded at a time: bounds the token states held at once


@dataclass
class TermOptions:
    """What ``diff --terms`` compares and lists (the command's flags)."""

    min_count: int = 10  # a word is compared when it occurs at least this often on each side
    max_occurrences: int = 64  # occurrences encoded per word and side, at most
    top: int = 20  # words listed, most moved first
    examples: int = 2  # example contexts per listed word and side
    min_ratio: float = 6.0  # squared distance over its sampling noise at which a word counts as moved
    compass_share: float = 0.75  # the share of least-moved words the final rotation is fitted on
    iterations: int = 3  # Procrustes fits, each on the words the previous one found least moved


@dataclass
class TermShift:
    """``diff --terms``' report, and whether any word moved (its exit 1)."""

    report: dict
    different: bool

    @property
    def verdict(self) -> str:
        return self.report["verdict"]

    @property
    def items(self) -> list[dict]:
        """The most moved words, one line each (what ``--items`` writes)."""
        return self.report["most_moved"]


@dataclass
class _Side:
    """One corpus's word statistics."""

    texts: Sequence[str]
    ids: Sequence[object]
    counts: Counter = field(default_factory=Counter)
    sums: np.ndarray | None = None  # (words, dim) float64 sum of unit occurrence vectors
    used: np.ndarray | None = None  # (words,) occurrences encoded
    examples: list[list[dict]] = field(default_factory=list)


def read_texts(
    path: str, text_field: str, bad, input_format: str | None = None, *, label: str = "A"
) -> tuple[list[str], list[object]]:
    """One side's texts and ids (None where a record has none); a side without texts is a usage error."""
    from embcli.io.inputs import Inputs, ReadOptions
    from embcli.io.streams import get_text

    inputs = Inputs([path], ReadOptions(input_format))
    texts: list[str] = []
    ids: list[object] = []
    records = inputs.records(text_field, bad)
    try:
        first = next(records, None)
    except InputError as e:
        if e.message.startswith("expected records but got an NPY array"):  # vectors only: nothing to read
            raise UsageError(
                f"--terms compares texts, and {label} is NPY vectors, {inputs.name}",
                hint="give records that carry their text (JSONL, CSV, Parquet) or --input-format text",
            ) from None
        raise
    if first is not None and not first.npy and text_field not in first.data:
        have = ", ".join(list(first.data)[:8]) or "none"
        raise UsageError(
            f"--terms compares texts, and {label}'s records have no {text_field!r} field (fields: {have}), "
            f"{first.where}",
            hint="choose the field with --text-field NAME",
        )
    for rec in _chain(first, records):
        try:
            texts.append(get_text(rec, text_field))
        except InputError as e:
            bad.handle(e)
            continue
        ids.append(rec.data.get("id"))
    return texts, ids


def _chain(first, rest):
    if first is not None:
        yield first
    yield from rest


def is_word(token: str) -> bool:
    return token.isalpha()


def word_spans(encoding) -> list[tuple[int, int, int]]:
    """(word id, start, end) of each word of a tokenizer encoding, from its tokens' word ids and offsets."""
    spans: dict[int, list[int]] = {}
    for wid, (start, end) in zip(encoding.word_ids, encoding.offsets, strict=True):
        if wid is None:
            continue
        span = spans.setdefault(wid, [start, end])
        span[0], span[1] = min(span[0], start), max(span[1], end)
    return [(wid, s, e) for wid, (s, e) in spans.items()]


def _words(encoder, texts: Sequence[str]):
    """Per text, its words as (word, word id, start, end), tokenized as ``token_states`` does."""
    from embcli.runtime.encoder import PREFIX_CHARS_PER_TOKEN

    cut = PREFIX_CHARS_PER_TOKEN * encoder.max_length
    for start in range(0, len(texts), CHUNK):
        chunk = [t[:cut] for t in texts[start : start + CHUNK]]
        for text, enc in zip(chunk, encoder.tokenizer.encode_batch(chunk), strict=True):
            found = []
            for wid, s, e in word_spans(enc):
                word = text[s:e].lower()
                if is_word(word):
                    found.append((word, wid, s, e))
            yield found


def _snippet(text: str, start: int, end: int, width: int = 60) -> str:
    """The word in its context: up to ``width`` characters either side, cut at spaces."""
    left = text[max(0, start - width) : start]
    right = text[end : end + width]
    if start > width and " " in left:
        left = "…" + left[left.index(" ") + 1 :]
    if len(text) - end > width and " " in right:
        right = right[: right.rindex(" ")] + "…"
    return " ".join((left + text[start:end] + right).split())


def _chosen(count: int, cap: int) -> set[int]:
    """Which of a word's ``count`` occurrences (by order) to encode: ``cap`` spread evenly, or all."""
    if count <= cap:
        return set(range(count))
    return {i * count // cap for i in range(cap)}


def _accumulate(encoder, side: _Side, vocab: dict[str, int], options: TermOptions, label: str) -> int:
    """Encode the chosen occurrences of the vocabulary's words on one side and sum their vectors.

    Returns how many texts ran through the model (those holding a chosen occurrence).
    """
    env = current()
    picks = {w: _chosen(side.counts[w], options.max_occurrences) for w in vocab}
    seen: Counter = Counter()
    wanted: list[tuple[int, list[tuple[int, int, int, int]]]] = []  # (text, [(word row, word id, start, end)])
    for t, found in enumerate(_words(encoder, side.texts)):
        here = []
        for word, wid, s, e in found:
            row = vocab.get(word)
            if row is None:
                continue
            if seen[word] in picks[word]:
                here.append((row, wid, s, e))
            seen[word] += 1
        if here:
            wanted.append((t, here))
    dim = encoder.full_dim
    side.sums = np.zeros((len(vocab), dim), np.float64)
    side.used = np.zeros(len(vocab), np.int64)
    side.examples = [[] for _ in vocab]
    for start in range(0, len(wanted), CHUNK):
        part = wanted[start : start + CHUNK]
        env.phase(f"encoding {label}: {start:,}/{len(wanted):,} texts…")
        states = encoder.token_states([side.texts[t] for t, _ in part])
        for (t, here), st in zip(part, states, strict=True):
            wids = np.asarray([-1 if w is None else w for w in st.word_ids])
            for row, wid, s, e in here:
                rows = np.flatnonzero(wids == wid)
                if not len(rows):  # cannot happen: the same tokenizer found the word
                    continue
                vec = st.vectors[rows].mean(axis=0, dtype=np.float64)
                norm = np.linalg.norm(vec)
                if norm == 0:
                    continue
                side.sums[row] += vec / norm
                side.used[row] += 1
                if len(side.examples[row]) < options.examples:
                    example = {"text": _snippet(side.texts[t], s, e)}
                    if side.ids[t] is not None:
                        example = {"id": side.ids[t], **example}
                    side.examples[row].append(example)
    return len(wanted)


def _procrustes(xa: np.ndarray, xb: np.ndarray) -> np.ndarray:
    """The rotation R minimizing ‖xb·R − xa‖² (orthogonal Procrustes)."""
    u, _, vt = np.linalg.svd(xb.T @ xa)
    return u @ vt


def _cosine_distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    num = (x * y).sum(axis=1)
    den = np.maximum(np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1), 1e-12)
    return 1 - num / den


def standardized(xa: np.ndarray, xb: np.ndarray, spread: tuple[np.ndarray, ...], used: tuple[np.ndarray, ...]):
    """Each word's squared distance between its two mean vectors less what sampling alone gives,
    over its spread: in units of how much the word's own contexts vary (the ranking key)."""
    (sa, sb), (na, nb) = spread, used
    return (((xa - xb) ** 2).sum(1) - sa / na - sb / nb) / np.maximum(sa + sb, 1e-12)


def align(
    ma: np.ndarray, mb: np.ndarray, spread: tuple[np.ndarray, ...], used: tuple[np.ndarray, ...], options: TermOptions
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Centre both sides on the compass words (and rotate B onto A when there are enough of them).

    The compass starts as every word and is refitted on the ``compass_share`` least moved.
    A rotation has dims·(dims−1)/2 free parameters: fitted on fewer than 2·dims words it maps
    any compass onto itself and says nothing, so below that only the translation is fitted
    (one encoder made both sides: its space is shared already, up to each corpus's topic).
    """
    dims = ma.shape[1]
    keep = max(2, int(np.ceil(options.compass_share * len(ma))))
    rotate = keep >= 2 * dims
    compass = np.ones(len(ma), bool)
    for _ in range(max(1, options.iterations)):
        xa, xb = ma - ma[compass].mean(0), mb - mb[compass].mean(0)
        if rotate:
            xb = xb @ _procrustes(xa[compass], xb[compass])
        order = np.argsort(standardized(xa, xb, spread, used), kind="stable")
        compass = np.zeros(len(ma), bool)
        compass[order[:keep]] = True
    info = {
        "method": "centred" + (", rotated (orthogonal Procrustes)" if rotate else "; no rotation (too few words)"),
        "compass_words": keep,
        "iterations": max(1, options.iterations),
    }
    return xa, xb, info


def term_shift(
    texts_a: Sequence[str],
    texts_b: Sequence[str],
    encoder,
    options: TermOptions | None = None,
    *,
    ids_a: Sequence[object] | None = None,
    ids_b: Sequence[object] | None = None,
) -> TermShift:
    """Rank the words both corpora use often by how far their contextual meaning moved from A to B."""
    o = options or TermOptions()
    env = current()
    if not len(texts_a) and not len(texts_b):
        report = {"mode": "terms", "verdict": "same", "n_a": 0, "n_b": 0, "words": 0, "most_moved": []}
        return TermShift(report, False)
    a = _Side(texts_a, ids_a if ids_a is not None else [None] * len(texts_a))
    b = _Side(texts_b, ids_b if ids_b is not None else [None] * len(texts_b))
    for label, side in (("A", a), ("B", b)):
        env.phase(f"counting the words of {label} ({len(side.texts):,} texts)…")
        for found in _words(encoder, side.texts):
            side.counts.update(word for word, *_ in found)
    words = sorted(w for w, c in a.counts.items() if c >= o.min_count and b.counts[w] >= o.min_count)
    if len(words) < 3:
        raise InputError(
            f"only {len(words)} words occur at least {o.min_count} times in both A and B; "
            "term shift needs at least 3 to align the two sides",
            hint="lower --min-count, or give more text",
        )
    vocab = {w: i for i, w in enumerate(words)}
    encoded = {"a": _accumulate(encoder, a, vocab, o, "A"), "b": _accumulate(encoder, b, vocab, o, "B")}
    env.phase(f"aligning {len(words):,} words…")
    na, nb = np.maximum(a.used, 1).astype(np.float64), np.maximum(b.used, 1).astype(np.float64)
    ma, mb = a.sums / na[:, None], b.sums / nb[:, None]
    # Spread of the unit occurrence vectors around their mean (unbiased): 1 − ‖mean‖², times n/(n−1).
    sa = np.clip(1 - (ma * ma).sum(1), 0, None) * na / np.maximum(na - 1, 1)
    sb = np.clip(1 - (mb * mb).sum(1), 0, None) * nb / np.maximum(nb - 1, 1)
    xa, xb, info = align(ma, mb, (sa, sb), (na, nb), o)
    shift = standardized(xa, xb, (sa, sb), (na, nb))
    cosine = _cosine_distance(xa, xb)
    # Were the word's contexts one distribution on both sides, its squared distance would be about this.
    noise = sa / na + sb / nb
    ratio = ((xa - xb) ** 2).sum(1) / np.maximum(noise, 1e-12)
    moved = ratio >= o.min_ratio
    order = np.lexsort((np.arange(len(words)), -shift))  # most moved first; ties by word

    def entry(i: int, with_examples: bool) -> dict:
        out = {
            "word": words[i],
            "shift": float(shift[i]),
            "cosine_distance": float(cosine[i]),
            "ratio": float(ratio[i]),
            "moved": bool(moved[i]),
            "count_a": int(a.counts[words[i]]),
            "count_b": int(b.counts[words[i]]),
            "used_a": int(a.used[i]),
            "used_b": int(b.used[i]),
        }
        if with_examples:
            out["examples_a"], out["examples_b"] = a.examples[i], b.examples[i]
        return out

    different = bool(moved.any())
    report = {
        "mode": "terms",
        "verdict": "different" if different else "same",
        "n_a": len(texts_a),
        "n_b": len(texts_b),
        "words": len(words),
        "moved_words": int(moved.sum()),
        "min_count": o.min_count,
        "max_occurrences": o.max_occurrences,
        "min_ratio": o.min_ratio,
        "dims": int(ma.shape[1]),
        "texts_encoded": encoded,
        "alignment": info,
        "most_moved": [entry(int(i), True) for i in order[: o.top]],
        "most_stable": [entry(int(i), False) for i in order[::-1][: min(o.top, 10)]],
    }
    return TermShift(report, different)
