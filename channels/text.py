"""Fitting text into a platform's message limit without cutting through a paragraph, a line, a sentence, a word or a
code block.

A part breaks between paragraphs first, then between the lines of a paragraph (a list, a line per item: the line
breaks stay), then after a sentence within a line, then between words (a link or an inline code span counts as one
word); only a single word longer than the limit is cut. Bold or italic that a break falls inside is closed at the end
of one part and opened again at the start of the next, so each part shows it (channels/markdown.py says where a run
of it starts and ends). A fenced code block is kept whole when it fits in a part; one that does not is cut between
its lines, and each of its parts is closed and opened again with the block's own fences, so every part still shows
code as code.

The limit is counted by `measure`: characters (`len`) by default, or UTF-16 code units (`utf16_units`, as Telegram
and Twilio count: an emoji outside the Basic Multilingual Plane counts twice). A measure must add up: the measure of
two strings joined is the sum of theirs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator

from bot.messages import CodeBlock, read_lines
from channels.markdown import Emphasis, emphasis_in

Measure = Callable[[str], int]

# after a sentence's last mark, or the bold or italic mark that closes right after it ("… the link.** Then")
_SENTENCE_END = re.compile(r"(?:(?<=[.!?…])|(?<=[.!?…][*_])|(?<=[.!?…](?:\*\*|__)))\s+")
PARAGRAPH, LINE, SPACE = "\n\n", "\n", " "  # what joins two pieces of a part
_KEPT_WHOLE = re.compile(r"`[^`\n]+`|\[[^\]\n]*\]\([^)\s]*\)")  # an inline code span; a link: [text](address)
_WORD = re.compile(rf"(?:{_KEPT_WHOLE.pattern}|\S)+")  # a word, a link or a code span in it kept whole


def utf16_units(text: str) -> int:
    """The length of `text` in UTF-16 code units: how Telegram and Twilio count a message's characters."""
    return len(text.encode("utf-16-le")) // 2


def split_utf16(text: str, limit: int, *, first: int | None = None) -> list[str]:
    """`split_text` with parts of at most `limit` UTF-16 code units, which is also at most `limit` characters."""
    return split_text(text, limit, measure=utf16_units, first=first)


def split_text(text: str, limit: int, measure: Measure = len, *, first: int | None = None) -> list[str]:
    """Split `text` into parts of at most `limit` (by `measure`); the first part at most `first` where given (a
    caption, continued in messages of a larger limit).

    Parts break at paragraph boundaries first, then line ends, then sentence ends, then spaces; only a single word (or
    a line of code) longer than the limit is cut. Joining the parts with blank lines gives back the text's paragraphs.
    """
    smallest = limit if first is None else min(first, limit)
    if smallest < 1:
        raise ValueError("limit must be positive")
    if measure(text) <= smallest:
        return [text]
    return [part for part in _pack(_pieces(text, smallest, measure), limit, measure, first=first) if part.strip()]


def _pack(pieces: Iterable[tuple[str, str]], limit: int, measure: Measure, *, first: int | None = None) -> list[str]:
    """Pieces (each with what joins it to the one before) put together, in order, into as few parts as fit: the first
    part within `first` where given, the others within `limit`."""
    parts: list[str] = []
    current: str | None = None
    size = 0
    for joiner, piece in pieces:
        grown = size + measure(joiner) + measure(piece)
        if current is not None and grown <= (first if first is not None and not parts else limit):
            current, size = current + joiner + piece, grown
        else:
            if current is not None:
                parts.append(current)
            current, size = piece, measure(piece)
    if current is not None:
        parts.append(current)
    return parts


def _pieces(text: str, limit: int, measure: Measure) -> Iterator[tuple[str, str]]:
    """Paragraphs that fit, else their lines and code blocks that fit, else their sentences, else their words."""
    for paragraph in _paragraphs(text):
        whole = LINE.join(_written(unit) for unit in paragraph)
        if measure(whole) <= limit:
            yield PARAGRAPH, whole
            continue
        joiner = PARAGRAPH
        for unit in paragraph:
            if isinstance(unit, CodeBlock):
                pieces, within = _code_pieces(unit, limit, measure), LINE
            else:
                pieces, within = _line_pieces(unit, limit, measure), SPACE
            for index, piece in enumerate(pieces):
                yield (joiner if index == 0 else within), piece
            joiner = LINE


def _paragraphs(text: str) -> list[list[str | CodeBlock]]:
    """Runs of lines between blank lines (spaces at a line's end dropped), a code block (blank lines and all) read as
    one of the lines."""
    paragraphs: list[list[str | CodeBlock]] = [[]]
    for unit in read_lines(text):
        if isinstance(unit, CodeBlock) and not "".join(unit.code).strip():
            continue  # an empty code block: nothing to show, and a part of nothing but it would be empty
        if isinstance(unit, str) and not unit.strip():
            if paragraphs[-1]:
                paragraphs.append([])
        else:
            paragraphs[-1].append(unit if isinstance(unit, CodeBlock) else unit.rstrip())
    return [paragraph for paragraph in paragraphs if paragraph]


def _written(unit: str | CodeBlock) -> str:
    return unit.written() if isinstance(unit, CodeBlock) else unit


def _line_pieces(line: str, limit: int, measure: Measure) -> list[str]:
    """A line that fits, else its sentences that fit, else their words (one longer than the limit cut); a bold or
    italic run cut by a break closed and opened again on each side of it."""
    if measure(line) <= limit:
        return [line]
    runs = emphasis_in(line)
    # a piece's marks closed and opened again: at most those of the deepest run and the runs it is in, at each end
    nested = (sum(measure(outer.mark) for outer in runs if outer.start <= run.start and run.end <= outer.end)
              for run in runs)
    room = limit - 2 * max(nested, default=0)
    if room < 2:
        runs, room = [], limit
    spans: list[tuple[int, int]] = []
    for start, end in _sentences(line):
        if measure(line[start:end]) <= room:
            spans.append((start, end))
            continue
        for word in _WORD.finditer(line[start:end]):
            at = start + word.start()
            for piece in _cut(word.group(), room, measure):
                spans.append((at, at + len(piece)))
                at += len(piece)
    if runs:  # packed here, before the marks go in: a run's words stay in one run where they share a part
        spans = _packed_spans(line, spans, room, measure)
    return [_with_marks(line, start, end, runs) for start, end in spans]


def _packed_spans(line: str, spans: Iterable[tuple[int, int]], room: int, measure: Measure) -> list[tuple[int, int]]:
    """Neighbouring spans of a line joined (with what lies between them) while the whole fits in `room`."""
    packed: list[tuple[int, int]] = []
    for start, end in spans:
        if packed and measure(line[packed[-1][0]:end]) <= room:
            packed[-1] = (packed[-1][0], end)
        else:
            packed.append((start, end))
    return packed


def _sentences(line: str) -> Iterator[tuple[int, int]]:
    """Where each sentence of a line starts and ends (the spaces after its end left out); a sentence's end inside an
    inline code span or a link's text is none (a break there would show their marks as text)."""
    kept = [(found.start(), found.end()) for found in _KEPT_WHOLE.finditer(line)]
    start = 0
    for gap in _SENTENCE_END.finditer(line):
        if any(first < gap.start() < last for first, last in kept):
            continue
        if gap.start() > start:
            yield start, gap.start()
        start = gap.end()
    if start < len(line):
        yield start, len(line)


def _with_marks(line: str, start: int, end: int, runs: Iterable[Emphasis]) -> str:
    """`line[start:end]`, with the marks of the bold or italic runs it starts or ends inside of put back at its edges:
    opened outermost first, closed innermost first (a run inside another comes after it in `runs`)."""
    opened = "".join(run.mark for run in runs if run.start < start < run.end)
    closed = "".join(run.mark for run in reversed(list(runs)) if run.start < end < run.end)
    return opened + line[start:end] + closed


def _code_pieces(block: CodeBlock, limit: int, measure: Measure) -> list[str]:
    """A code block whole if it fits, else runs of its lines, each closed and opened with the block's fences."""
    whole = block.written()
    if measure(whole) <= limit:
        return [whole]
    room = limit - measure(block.opening + LINE + LINE + block.closing)
    if room < 2:  # a limit too small for the fences and a character (of two UTF-16 units): the lines as they are
        return _lines(whole.split(LINE), limit, measure)
    runs = _lines(block.code, room, measure)
    return [f"{block.opening}{LINE}{run}{LINE}{block.closing}" for run in runs if run.strip()]


def _lines(lines: Iterable[str], limit: int, measure: Measure) -> list[str]:
    """Lines joined into runs of at most `limit`; a line longer than that cut."""
    return _pack(((LINE, piece) for line in lines for piece in _cut(line, limit, measure)), limit, measure)


def _cut(text: str, limit: int, measure: Measure) -> list[str]:
    """`text` cut into pieces of at most `limit` (a single character over it stays whole)."""
    pieces: list[str] = []
    while measure(text) > limit:
        end = limit
        while end > 1 and (size := measure(text[:end])) > limit:
            end = max(1, min(end - 1, end * limit // size))
        pieces.append(text[:end])
        text = text[end:]
    pieces.append(text)
    return pieces
