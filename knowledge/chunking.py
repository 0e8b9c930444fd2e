"""Lessons cut into chunks that fit the embedding model, each knowing where it came from.

Headings split first (langchain-text-splitters' Markdown splitter keeps the text between them intact), then each
paragraph is a chunk of its own (a short one goes with its neighbour), so every paragraph is the main part of a
chunk; a paragraph too long for one chunk is cut at line and sentence ends into even pieces with some overlap.
A chunk carries its course, lesson, source file, heading path and position; its id is a hash of what gets embedded,
so unchanged text keeps its id across re-ingests and only new or edited chunks are embedded again.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from dataclasses import dataclass

from langchain_text_splitters import ExperimentalMarkdownSyntaxTextSplitter, RecursiveCharacterTextSplitter

from knowledge.sources import Lesson
from knowledge.terms import quotable_units

# ~250 word pieces: all-MiniLM-L6-v2 reads 256, and a passage this size still reads as one idea in a chat reply.
CHUNK_CHARACTERS = 1000
CHUNK_OVERLAP = 150
# A shorter paragraph is no chunk of its own: it goes with the next (a lead-in with what it leads into).
MIN_PARAGRAPH_CHARACTERS = 150
HEADING_SEPARATOR = " > "


@dataclass(frozen=True)
class Chunk:
    id: str
    course_id: str
    lesson_id: str
    lesson_title: str
    source: str
    heading_path: tuple[str, ...]
    position: int  # order within the lesson
    start: int  # character offset in the lesson's text, -1 when it could not be located
    text: str
    origin: str = ""  # which ingest owns it: "import", or "folder:<path>" / "file:<path>"

    @property
    def indexed_text(self) -> str:
        """What is embedded and keyword-indexed: the text under its lesson title and headings."""
        return indexed_text(self.lesson_title, self.heading_path, self.text)

    @property
    def units(self) -> list[str]:
        """Its sentences (a list with its lead-in counts as one): each gets a vector of its own at ingest."""
        return quotable_units(self.text)

    def metadata(self) -> dict[str, str | int]:
        return {
            "course_id": self.course_id,
            "lesson_id": self.lesson_id,
            "lesson_title": self.lesson_title,
            "source": self.source,
            "heading_path": HEADING_SEPARATOR.join(self.heading_path),
            "position": self.position,
            "start": self.start,
            "origin": self.origin,
            "sentences": len(self.units),  # how many sentence vectors it has (ids `<chunk id>:<n>`)
        }


def indexed_text(lesson_title: str, heading_path: tuple[str, ...] | list[str], text: str) -> str:
    context = HEADING_SEPARATOR.join([lesson_title, *(h for h in heading_path if h != lesson_title)])
    return f"{context}\n\n{text}"


def chunk_id(course_id: str, lesson_id: str, indexed: str, occurrence: int) -> str:
    digest = hashlib.sha256("\0".join([course_id, lesson_id, indexed, str(occurrence)]).encode()).hexdigest()
    return digest[:32]


_header_splitter = ExperimentalMarkdownSyntaxTextSplitter(strip_headers=True)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n\s*")
_FENCE = re.compile(r"^\s*(```|~~~)", re.MULTILINE)


def _size_splitter(size: int) -> RecursiveCharacterTextSplitter:
    return RecursiveCharacterTextSplitter(
        chunk_size=size,
        chunk_overlap=CHUNK_OVERLAP,
        separators=["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""],
        keep_separator="end",
        add_start_index=True,
    )


def _paragraphs(section: str) -> list[tuple[int, str]]:
    """(offset, text) of each paragraph of `section` (blank lines apart; a fenced code block is never cut)."""
    fences = [match.start() for match in _FENCE.finditer(section)]
    pieces: list[tuple[int, str]] = []
    start = 0
    for match in _PARAGRAPH_BREAK.finditer(section):
        if sum(1 for fence in fences if fence < match.start()) % 2:  # inside a code block
            continue
        pieces.append((start, section[start : match.start()]))
        start = match.end()
    pieces.append((start, section[start:]))
    return [(offset + len(text) - len(text.lstrip()), text.strip()) for offset, text in pieces if text.strip()]


def _blocks(section: str) -> list[tuple[int, str]]:
    """The section's paragraphs, each a block of its own, but for short ones: a paragraph under
    MIN_PARAGRAPH_CHARACTERS (a lead-in such as "If you clicked, act at once:", a one-line remark) goes with the one
    after it, and a short last one with the one before, when the two fit in CHUNK_CHARACTERS."""
    blocks: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for offset, text in _paragraphs(section):
        if pending is not None:
            joined = section[pending[0] : offset + len(text)]
            if _joins(joined):
                blocks.append((pending[0], joined))
                pending = None
                continue
            blocks.append(pending)
            pending = None
        if len(text) < MIN_PARAGRAPH_CHARACTERS:
            pending = (offset, text)
        else:
            blocks.append((offset, text))
    if pending is not None:
        joined = section[blocks[-1][0] : pending[0] + len(pending[1])] if blocks else ""
        if blocks and _joins(joined):
            blocks[-1] = (blocks[-1][0], joined)
        else:
            blocks.append(pending)
    return blocks


def _joins(joined: str) -> bool:
    return len(joined) <= CHUNK_CHARACTERS


def _pieces(section: str) -> list[tuple[int, str]]:
    """(offset, text) of each chunk of `section`: its blocks, a block over CHUNK_CHARACTERS cut into pieces of about
    even length at line and sentence ends, CHUNK_OVERLAP characters overlapping."""
    pieces: list[tuple[int, str]] = []
    for offset, block in _blocks(section):
        if len(block) <= CHUNK_CHARACTERS:
            pieces.append((offset, block))
            continue
        count = math.ceil(len(block) / CHUNK_CHARACTERS)
        size = min(CHUNK_CHARACTERS, math.ceil(len(block) / count) + CHUNK_OVERLAP)
        for document in _size_splitter(size).create_documents([block]):
            text = document.page_content.strip()
            if text:
                pieces.append((offset + int(document.metadata["start_index"]), text))
    return pieces


def _sections(lesson: Lesson) -> list[tuple[tuple[str, ...], str]]:
    """(heading path, text) for each run of text under the same headings; code blocks stay with their section."""
    if not lesson.markdown:
        return [((), lesson.text)]
    sections: list[tuple[tuple[str, ...], str]] = []
    for document in _header_splitter.split_text(lesson.text):
        headings = tuple(
            value for key, value in sorted(document.metadata.items()) if key.startswith("Header") and value
        )
        if sections and sections[-1][0] == headings:
            sections[-1] = (headings, sections[-1][1] + document.page_content)
        else:
            sections.append((headings, document.page_content))
    return sections


def chunk_lesson(course_id: str, lesson: Lesson, *, origin: str = "") -> list[Chunk]:
    chunks: list[Chunk] = []
    seen: Counter[str] = Counter()
    cursor = 0
    for headings, section in _sections(lesson):
        stripped = section.strip()
        if not stripped:
            continue
        found = lesson.text.find(stripped[:200], cursor)
        section_start = found if found >= 0 else -1
        if found >= 0:
            cursor = found
        for offset, text in _pieces(stripped):
            indexed = indexed_text(lesson.title, headings, text)
            occurrence = seen[indexed]
            seen[indexed] += 1
            chunks.append(
                Chunk(
                    id=chunk_id(course_id, lesson.lesson_id, indexed, occurrence),
                    course_id=course_id,
                    lesson_id=lesson.lesson_id,
                    lesson_title=lesson.title,
                    source=lesson.source,
                    heading_path=headings,
                    position=len(chunks),
                    start=section_start + offset if section_start >= 0 else -1,
                    text=text,
                    origin=origin,
                )
            )
    return chunks
