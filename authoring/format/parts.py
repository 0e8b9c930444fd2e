"""Bite-size parts: a lesson's text as chat messages of about equal size, split where Markdown allows it."""

from __future__ import annotations

import re

PART_CHARS = 700  # a bite-size chat message; a longer part is split at paragraph, then sentence, boundaries

FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
LIST_ITEM = re.compile(r"^\s{0,3}(?:[-*+]|\d{1,3}[.)])\s+(.*)$")
# Lines that keep their own line when a paragraph's soft-wrapped lines are joined.
_OWN_LINE = re.compile(r"^\s{0,3}(?:[-*+]\s|\d{1,3}[.)]\s|#{1,6}\s|>|\|)")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def split_part(text: str, limit: int = PART_CHARS) -> list[str]:
    """A part as chat messages of about equal size, each at most `limit` characters where the text allows it.

    Soft-wrapped lines of a paragraph are joined first (Markdown reads them as one line). A part breaks between
    blocks (paragraphs, lists, code), then between the lines of a block (list items), then after a sentence. A code
    block and a single sentence are never cut, so they may exceed `limit`; a channel splits such a message at its
    own hard limit when it sends it.
    """
    blocks = _blocks(text)
    whole = "\n\n".join(blocks)
    if len(whole) <= limit:
        return [whole]
    target = len(whole) / -(-len(whole) // limit)  # the same size for each of the fewest parts that fit
    parts: list[str] = []
    for joiner, unit in _units(blocks, limit):
        if parts and len(parts[-1]) < target and len(parts[-1]) + len(joiner) + len(unit) <= limit:
            parts[-1] += joiner + unit
        else:
            parts.append(unit)
    return parts


def _units(blocks: list[str], limit: int) -> list[tuple[str, str]]:
    """The pieces a long part may break between, each with the text that joins it to the piece before."""
    units: list[tuple[str, str]] = []
    for block in blocks:
        if len(block) <= limit or FENCE.match(block):
            units.append(("\n\n", block))
            continue
        for index, line in enumerate(block.split("\n")):
            joiner = "\n\n" if index == 0 else "\n"
            sentences = [line] if len(line) <= limit else _SENTENCE_END.split(line)
            units.extend((joiner if number == 0 else " ", sentence) for number, sentence in enumerate(sentences))
    return units


def _blocks(text: str) -> list[str]:
    """Markdown blocks: runs of lines between blank lines (paragraphs unwrapped), a fenced code block whole."""
    blocks: list[list[str]] = [[]]
    fence = None
    for line in text.splitlines():
        inside = fence is not None
        fence = fence_state(fence, line)
        if inside or fence is not None:  # a code block is a block of its own, blank lines and all
            if not inside and blocks[-1]:
                blocks.append([])
            blocks[-1].append(line)
            if inside and fence is None:
                blocks.append([])
        elif not line.strip():
            blocks.append([])
        else:
            blocks[-1].append(line)
    return [
        "\n".join(lines).strip("\n") if FENCE.match(lines[0]) else unwrap(lines)
        for lines in blocks
        if any(line.strip() for line in lines)
    ]


def unwrap(lines: list[str]) -> str:
    """Join soft-wrapped lines; list items, headings, quotes, table rows and hard breaks (two spaces, a backslash)
    keep their own line, and an indented line under a list item continues that item."""
    joined: list[str] = []
    for line in lines:
        if joined and _continues(joined[-1], line):
            joined[-1] = joined[-1].rstrip() + " " + line.strip()
        else:
            joined.append(line)
    return "\n".join(line.rstrip().removesuffix("\\").rstrip() for line in joined).strip("\n")


def _continues(previous: str, line: str) -> bool:
    if not line.strip() or not previous.strip() or previous.endswith(("  ", "\\")) or _OWN_LINE.match(line):
        return False
    if _OWN_LINE.match(previous):
        return LIST_ITEM.match(previous) is not None and line.startswith((" ", "\t"))
    return True


def fence_state(fence: str | None, line: str) -> str | None:
    """Track fenced code blocks: returns the open fence's marker, or None outside one."""
    match = FENCE.match(line)
    if fence is None:
        return match.group(1) if match else None
    if match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence) and \
            not line.strip()[len(match.group(1)):].strip():
        return None
    return fence


def unclosed_fence(lines: list[tuple[int, str]]) -> tuple[int, str] | None:
    """The line number and marker of a fenced code block still open after the last of `lines` (numbered), if any:
    everything after its opening line would be read as code."""
    fence, opened = None, 0
    for number, line in lines:
        was_open = fence is not None
        fence = fence_state(fence, line)
        if fence is not None and not was_open:
            opened = number
    return (opened, fence) if fence is not None else None
