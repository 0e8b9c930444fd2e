"""Fitting text into a platform's message limit without cutting through a paragraph, a sentence or a word."""

from __future__ import annotations

import re

_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def split_text(text: str, limit: int) -> list[str]:
    """Split `text` into parts of at most `limit` characters.

    Parts break at paragraph boundaries first, then sentence ends, then spaces; only a single word longer than the
    limit is cut. Joining the parts with blank lines gives back the text's paragraphs.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    if len(text) <= limit:
        return [text]
    parts: list[str] = []
    current = ""
    for piece in _pieces(text, limit):
        joiner = "\n\n" if piece.startswith("\0") else " "
        piece = piece.lstrip("\0")
        candidate = f"{current}{joiner}{piece}" if current else piece
        if len(candidate) <= limit:
            current = candidate
        else:
            if current:
                parts.append(current)
            current = piece
    if current:
        parts.append(current)
    return parts


def _pieces(text: str, limit: int) -> list[str]:
    """Paragraphs that fit, else their sentences, else their words; a leading NUL marks a paragraph start."""
    pieces: list[str] = []
    for paragraph in (p.strip() for p in re.split(r"\n\s*\n", text)):
        if not paragraph:
            continue
        if len(paragraph) <= limit:
            pieces.append("\0" + paragraph)
            continue
        first = True
        for sentence in _SENTENCE_END.split(paragraph):
            chunks = [sentence] if len(sentence) <= limit else _words(sentence, limit)
            for chunk in chunks:
                pieces.append(("\0" if first else "") + chunk)
                first = False
    return pieces


def _words(sentence: str, limit: int) -> list[str]:
    chunks: list[str] = []
    current = ""
    for word in sentence.split():
        while len(word) > limit:
            if current:
                chunks.append(current)
                current = ""
            chunks.append(word[:limit])
            word = word[limit:]
        candidate = f"{current} {word}" if current else word
        if len(candidate) <= limit:
            current = candidate
        else:
            chunks.append(current)
            current = word
    if current:
        chunks.append(current)
    return chunks
