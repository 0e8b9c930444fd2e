"""Course material files read into lessons: Markdown, HTML, PDF and plain text.

Every format becomes Markdown-like text (HTML headings turn into `#` lines), so one heading-aware chunker serves
them all. A file that cannot be read raises `UnreadableFile` with a reason a person can act on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

MARKDOWN = frozenset({".md", ".markdown"})
HTML = frozenset({".html", ".htm"})
PDF = frozenset({".pdf"})
PLAIN = frozenset({".txt", ".text"})
SUPPORTED = MARKDOWN | HTML | PDF | PLAIN


@dataclass(frozen=True)
class Lesson:
    """One lesson's material. `markdown` says whether `#` lines in `text` are headings."""

    lesson_id: str
    title: str
    text: str
    source: str = ""
    markdown: bool = True


class UnreadableFile(Exception):
    """A course file Lessonbot cannot use; the message says why and what to do."""


def read_lesson(path: Path, *, lesson_id: str | None = None) -> Lesson:
    """The lesson in one file; its id defaults to the file name and its title to the first heading."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED:
        raise UnreadableFile(f"{path}: {suffix or 'no extension'} is not a course format; use {_formats()}")
    try:
        if suffix in PDF:
            text, title = _read_pdf(path)
        else:
            raw = path.read_bytes()
            try:
                decoded = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise UnreadableFile(f"{path}: not UTF-8 text; save it as UTF-8 and ingest it again") from None
            text, title = _html_to_markdown(decoded) if suffix in HTML else (decoded, None)
    except OSError as exc:
        raise UnreadableFile(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if not text.strip():
        raise UnreadableFile(f"{path}: has no text to learn from (a scanned PDF needs OCR first)")
    markdown = suffix not in PLAIN
    if suffix in MARKDOWN:
        text, title = _front_matter(text)
    return Lesson(
        lesson_id=lesson_id or path.name,
        title=title or (_first_heading(text) if markdown else None) or _title_from_name(path),
        text=text,
        source=str(path),
        markdown=markdown,
    )


def course_files(folder: Path) -> list[Path]:
    """Every course file under `folder`, in a stable order; hidden files and folders are skipped."""
    return sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and path.suffix.lower() in SUPPORTED
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )


def _formats() -> str:
    return ", ".join(sorted(SUPPORTED))


def _title_from_name(path: Path) -> str:
    return re.sub(r"[_-]+", " ", path.stem).strip() or path.name


def _first_heading(text: str) -> str | None:
    match = re.search(r"^#\s+(.+?)\s*#*\s*$", text, re.MULTILINE)
    return match.group(1) if match else None


def _front_matter(text: str) -> tuple[str, str | None]:
    """Markdown without its YAML front matter (`---` lines around `title: …`), and the title it gives."""
    match = re.match(r"---[ \t]*\n(.*?\n)---[ \t]*\n", text, re.DOTALL)
    if not match:
        return text, None
    import yaml

    try:
        fields = yaml.safe_load(match.group(1))
    except yaml.YAMLError:
        return text, None  # not front matter after all: a rule, some text, a rule
    if not isinstance(fields, dict):
        return text, None
    title = fields.get("title")
    return text[match.end() :], str(title) if title else None


def _read_pdf(path: Path) -> tuple[str, str | None]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        pages = [page.extract_text() or "" for page in reader.pages]
        title = reader.metadata.title if reader.metadata else None
    except (PdfReadError, ValueError, KeyError) as exc:
        raise UnreadableFile(f"{path}: not a readable PDF ({exc}); export it again or convert it to text") from None
    # PDF text has line breaks inside paragraphs; pages are kept apart as paragraphs.
    return "\n\n".join(page.strip() for page in pages if page.strip()), (title or None)


class _MarkdownWriter(HTMLParser):
    """HTML to Markdown-like text: headings become `#` lines, blocks become paragraphs, scripts are dropped."""

    BLOCKS = frozenset({"p", "div", "section", "article", "li", "tr", "pre", "blockquote", "table", "ul", "ol",
                        "dl", "dt", "dd", "figure", "figcaption", "header", "footer", "main", "aside"})
    SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "head", "nav"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.skipping = 0
        self.heading: int | None = None
        self.title: str | None = None
        self.in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        if tag in self.SKIPPED:
            self.skipping += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self.heading = int(tag[1])
        elif tag in self.BLOCKS:
            self._flush()
            if tag == "li":
                self.current.append("- ")
        elif tag == "br":
            self.current.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if tag in self.SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif re.fullmatch(r"h[1-6]", tag) or tag in self.BLOCKS:
            self._flush()

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title = (self.title or "") + data.strip()
        elif not self.skipping:
            self.current.append(data)

    def _flush(self) -> None:
        text = " ".join("".join(self.current).split())
        if text:
            self.lines.append(f"{'#' * self.heading} {text}" if self.heading else text)
        self.current = []
        self.heading = None

    def markdown(self) -> str:
        self._flush()
        return "\n\n".join(self.lines)


def _html_to_markdown(html: str) -> tuple[str, str | None]:
    writer = _MarkdownWriter()
    writer.feed(html)
    writer.close()
    return writer.markdown(), writer.title
