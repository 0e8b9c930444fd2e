"""Lessons cut into chunks that fit the embedding model, each knowing where it came from.

Headings split first (langchain-text-splitters' Markdown splitter keeps the text between them intact), then long
sections are cut at paragraph, line and sentence ends with some overlap. A chunk carries its course, lesson, source
file, heading path and position; its id is a hash of what gets embedded, so unchanged text keeps its id across
re-ingests and only new or edited chunks are embedded again.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

from langchain_text_splitters import ExperimentalMarkdownSyntaxTextSplitter, RecursiveCharacterTextSplitter

from knowledge.sources import Lesson
from knowledge.terms import quotable_units

# ~250 word pieces: all-MiniLM-L6-v2 reads 256, and a passage this size still reads as one idea in a chat reply.
CHUNK_CHARACTERS = 1000
CHUNK_OVERLAP = 150
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
_size_splitter = RecursiveCharacterTextSplitter(
    chunk_size=CHUNK_CHARACTERS,
    chunk_overlap=CHUNK_OVERLAP,
    separators=["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""],
    keep_separator="end",
    add_start_index=True,
)


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
        for piece in _size_splitter.create_documents([stripped]):
            text = piece.page_content.strip()
            if not text:
                continue
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
                    start=section_start + piece.metadata["start_index"] if section_start >= 0 else -1,
                    text=text,
                    origin=origin,
                )
            )
    return chunks
