"""Long texts as overlapping token windows (``embed --chunk``): one record per window, nothing dropped.

A text is tokenized once, without truncation, by the model's own tokenizer; its tokens are cut
into windows of at most ``tokens`` that overlap by ``overlap``, and each window maps back to a
character span of the original text through the tokenizer's offsets. Window edges move back to
the start of a word (a word longer than a window is cut inside), so a chunk's text tokenizes as
it did inside the document. Each chunk as embedded (prompt, context, chunk text and the model's
special tokens) is counted again and the window shrunk until it fits the model's max length:
no chunk is ever truncated, and the windows cover every token.

Spans: the first chunk starts at 0, the last ends at the end of the text, and a chunk with no
overlap to the next ends where the next starts, so the spans together cover every character.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from embcli.errors import InputError, UsageError
from embcli.io.streams import BadRecords, Record, get_text

# Fields every chunk record gets: the document's id, the chunk's number from 0, its [start, end)
# character span in the document's text. The chunk's own id is "<parent>#<chunk>".
PARENT, CHUNK, SPAN = "parent", "chunk", "span"
CHUNK_FIELDS = (PARENT, CHUNK, SPAN)
# The default overlap is this fraction of the window (1/8: 31 of MiniLM's 254 tokens), enough
# that a sentence cut at one window's edge is whole in the next.
OVERLAP_DIVISOR = 8
# Put between the context and the chunk's text, as embedded.
CONTEXT_SEPARATOR = "\n\n"
# A context takes at most this share of a window; a longer one is cut (and counted).
CONTEXT_SHARE = 0.5
# Texts are tokenized in blocks of about this many characters, cut at whitespace: memory stays
# bounded on one enormous document (the tokenizer takes ~150 bytes per character).
BLOCK_CHARS = 1 << 16
# The first sentence: up to a . ! or ? before whitespace, or to the first blank line.
_SENTENCE = re.compile(r"\s*(.+?(?:[.!?](?=\s|$)|(?=\n[ \t]*\n)|$))", re.DOTALL)
SENTENCE_CHARS = 2000  # looked for in the text's first this many characters


@dataclass(frozen=True)
class Chunking:
    """How ``embed --chunk`` cuts texts.

    ``tokens``: most text tokens per chunk (default: all the model takes, its max length less its
    special tokens and the prompt's). ``overlap``: tokens shared by neighbouring chunks (default:
    ``tokens // 8``). ``context_field``: a field (e.g. a title) put before every chunk's text as
    it is embedded; ``context_sentence``: the document's first sentence put before every chunk
    after the first (which holds it already). The context's tokens come out of the window, so
    no chunk is ever truncated.
    """

    tokens: int | None = None
    overlap: int | None = None
    context_field: str | None = None
    context_sentence: bool = False


@dataclass
class ChunkStats:
    documents: int = 0
    chunks: int = 0
    split: int = 0  # documents cut into more than one chunk
    contexts_cut: int = 0  # contexts longer than their share of the window, cut to it


@dataclass(frozen=True)
class Chunk:
    start: int
    end: int
    text: str  # the document's text[start:end]
    embedded: str  # what the model sees (before the prompt): context + separator + text, or text


class Chunker:
    """Cuts texts into chunks that each fit one model's max length, with the model's tokenizer."""

    def __init__(self, tokenizer: object, max_length: int, prompt: str | None, options: Chunking) -> None:
        tok = type(tokenizer).from_str(tokenizer.to_str())  # type: ignore[attr-defined]  # our own: no truncation
        tok.no_truncation()
        tok.no_padding()
        self._tok = tok
        self.max_length = max_length
        self.prompt = prompt or ""
        self.options = options
        overhead = len(tok.encode(self.prompt).ids)  # the special tokens, and the prompt's
        self.room = max_length - overhead
        if self.room < 1:
            raise UsageError(f"the prompt leaves no room for text in {max_length} tokens")
        size = options.tokens if options.tokens is not None else self.room
        if not 1 <= size <= self.room:
            raise UsageError(
                f"--chunk-tokens must be between 1 and {self.room}, got {size}",
                hint=f"the model takes {max_length} tokens, {overhead} of them special or the prompt's",
            )
        overlap = options.overlap if options.overlap is not None else size // OVERLAP_DIVISOR
        if not 0 <= overlap < size:
            raise UsageError(f"--chunk-overlap must be at least 0 and less than the {size} chunk tokens, got {overlap}")
        self.size, self.overlap = size, overlap
        self.stats = ChunkStats()

    # ------------------------------------------------------------------ texts

    def chunks(self, text: str, context: str = "") -> list[Chunk]:
        """``text`` as chunks, in order; ``context`` goes before each one's text as embedded."""
        parts = [" ".join(context.split())] if context and not context.isspace() else []
        first, cut = self._prefix(parts)
        if self.options.context_sentence and (sentence := first_sentence(text)):
            parts.append(sentence)  # not before the first chunk, which starts with it
        later, cut_later = self._prefix(parts)
        self.stats.contexts_cut += cut or cut_later
        used = len(self._tok.encode(later, add_special_tokens=False).ids) if later else 0
        size = max(1, min(self.size, self.room - used))
        overlap = min(self.overlap, size // 2)

        def prefix(i: int) -> str:
            return first if i == 0 else later

        def fits(i: int, start: int, end: int) -> int:
            return len(self._tok.encode(self.prompt + prefix(i) + text[start:end]).ids) - self.max_length

        spans = _windows(self._tokens(text), len(text), size, overlap, fits)
        out = [Chunk(s, e, text[s:e], prefix(i) + text[s:e]) for i, (s, e) in enumerate(spans)]
        self.stats.documents += 1
        self.stats.chunks += len(out)
        self.stats.split += len(out) > 1
        return out

    def _prefix(self, parts: list[str]) -> tuple[str, bool]:
        """The context put before a chunk's text, cut to its share of the window; and whether it was cut."""
        if not parts:
            return "", False
        context = CONTEXT_SEPARATOR.join(parts)
        cap = max(1, int(self.room * CONTEXT_SHARE) - 2)  # the separator may take a token or two
        enc = self._tok.encode(context, add_special_tokens=False)
        if len(enc.ids) <= cap:
            return context + CONTEXT_SEPARATOR, False
        return context[: enc.offsets[cap - 1][1]] + CONTEXT_SEPARATOR, True

    def _tokens(self, text: str) -> Iterator[tuple[int, int, bool]]:
        """(start, end, starts a word) of every token of ``text``, tokenized block by block."""
        pos = 0
        while pos < len(text):
            stop = _block_end(text, pos)
            enc = self._tok.encode(text[pos:stop], add_special_tokens=False)
            last = object()
            for (s, e), w in zip(enc.offsets, enc.word_ids, strict=True):
                yield pos + s, pos + e, w is None or w != last
                last = w
            pos = stop

    # ------------------------------------------------------------------ records

    def records(
        self,
        records: Iterable[Record],
        *,
        text_field: str,
        bad: BadRecords,
        overwrite: bool = False,
        id_field: str = "id",
    ) -> Iterator[Record]:
        """One record per chunk of each record's text: ``id`` "<parent>#<n>", ``parent``, ``chunk``, ``span``.

        The chunk's text replaces the text field; every other field passes through. A record
        with no id is numbered from 1 in input order. A record that already has a chunk field
        is bad input unless ``overwrite``; when the context differs from the chunk's text, what
        is embedded travels in ``Record.extra["embed_text"]``.
        """
        for n, rec in enumerate(records, start=1):
            try:
                if not overwrite:
                    for name in CHUNK_FIELDS:
                        if name in rec.data:
                            raise InputError(
                                f"record already has a {name!r} field, {rec.where}",
                                hint="--chunk writes parent, chunk and span: rename the field, or pass --overwrite",
                            )
                text = get_text(rec, text_field)
                context = self._context_of(rec)
                parent = rec.data.get(id_field)
                parent = n if parent is None else parent
                pieces = self.chunks(text, context)
            except InputError as e:
                bad.handle(e)
                continue
            rest = {k: v for k, v in rec.data.items() if k != id_field}
            for i, piece in enumerate(pieces):
                data = {id_field: f"{parent}#{i}", **rest}
                data.update({text_field: piece.text, PARENT: parent, CHUNK: i, SPAN: [piece.start, piece.end]})
                out = Record(rec.line, data, source=rec.source, by_row=rec.by_row)
                if piece.embedded != piece.text:
                    out.extra["embed_text"] = piece.embedded
                yield out

    def _context_of(self, rec: Record) -> str:
        name = self.options.context_field
        if not name:
            return ""
        if name not in rec.data:
            raise InputError(
                f"record has no {name!r} field for --context-field, {rec.where}",
                hint="give every record the field (null for none)",
            )
        value = rec.data[name]
        if value is None or isinstance(value, str):
            return value or ""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise InputError(f"field {name!r} (--context-field) is not text, {rec.where}")


def first_sentence(text: str) -> str:
    """The text's first sentence (to a . ! or ? before whitespace, or its first blank line), whitespace collapsed."""
    m = _SENTENCE.match(text[:SENTENCE_CHARS])
    return " ".join(m.group(1).split()) if m else ""


def _block_end(text: str, pos: int) -> int:
    """Where the block from ``pos`` ends: the text's end, or whitespace near BLOCK_CHARS on (never inside a word)."""
    limit = pos + BLOCK_CHARS
    if limit >= len(text):
        return len(text)
    cut = max(text.rfind(c, pos + BLOCK_CHARS // 2, limit) for c in " \n\t\r")
    return cut if cut > pos else limit  # one enormous word: cut it


def _windows(
    tokens: Iterator[tuple[int, int, bool]],
    length: int,
    size: int,
    overlap: int,
    fits: Callable[[int, int, int], int],
) -> Iterator[tuple[int, int]]:
    """Character spans of overlapping windows of at most ``size`` tokens that cover every token.

    Holds at most ``size + 1`` tokens. ``fits(n, start, end)`` says by how many tokens window
    ``n``'s span is over the limit as embedded (<= 0: it fits); a window over it shrinks by that much.
    """
    buf: list[tuple[int, int, bool]] = []
    done = False
    start_char = 0  # the first chunk starts at the text's start
    n = 0
    while True:
        while not done and len(buf) <= size:
            tok = next(tokens, None)
            if tok is None:
                done = True
            else:
                buf.append(tok)
        if not buf:
            if start_char == 0 and length:  # a text of no tokens at all (whitespace): one chunk, whole
                yield 0, length
            return
        end = min(size, len(buf))
        if end < len(buf):
            end = _word_start(buf, end) or end  # a word longer than the window is cut inside
        while True:
            last = end == len(buf) and done
            nxt = end if last else _next_start(buf, end, overlap)
            # Up to the next chunk's start, so spans leave no gap; the last one to the text's end.
            end_char = length if last else max(buf[end - 1][1], buf[nxt][0])
            excess = fits(n, start_char, end_char)
            if excess <= 0 or end <= 1:
                break
            end = max(1, end - excess)
            end = _word_start(buf, end) or end
        yield start_char, end_char
        n += 1
        if last:
            return
        start_char = buf[nxt][0]
        del buf[:nxt]


def _word_start(buf: list[tuple[int, int, bool]], i: int) -> int:
    """The nearest token at or before ``i`` that starts a word, 0 when none after the first."""
    while i > 0 and not buf[i][2]:
        i -= 1
    return i


def _next_start(buf: list[tuple[int, int, bool]], end: int, overlap: int) -> int:
    """Where the window after one ending at ``end`` starts: ``overlap`` tokens back, at a word's start."""
    if not overlap:
        return end
    return _word_start(buf, max(end - overlap, 1)) or end
