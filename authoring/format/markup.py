"""Markdown that chat apps cannot show, found in a lesson file before learners see its characters as written.

Lessons are sent in the light Markdown `channels.markdown` reads: bold, italic, code, links to a web address,
headings, lists and code blocks. Images, links to anything but a web address (a file of the course, an anchor) and
tables are not part of it, so a channel would send them as typed: `![a phish](phish.png)`, `| a | b |`.
"""

from __future__ import annotations

import re

from authoring.format.parts import fence_state

_CODE_SPAN = re.compile(r"`[^`\n]+`")  # what a code span holds is shown as code, never read as a link
_IMAGE = re.compile(r"!\[(?P<alt>[^\]\n]*)\]\((?P<target>[^)\n]*)\)")
# '\[' is the character itself, not a link (`bot.messages.MARKDOWN_ESCAPES`)
_LINK = re.compile(r"(?<![!\\])\[(?P<text>(?:\\.|[^\]\\\n])+)\]\((?P<target>[^)\n]*)\)")
_WEB_ADDRESS = re.compile(r"^https?://[^\s)]+$")  # what channels.markdown links to
# A table's second line: cells of dashes (with optional ':' for alignment) between '|'.
_TABLE_RULE = re.compile(r"^\s{0,3}\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)+\|?\s*$")


def unsupported_markdown(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """(line, message) for each image, link to something other than a web address, and table in `lines`
    (numbered), code blocks and code spans left out."""
    found: list[tuple[int, str]] = []
    fence = None
    previous: tuple[int, str] | None = None
    for number, line in lines:
        was_open = fence is not None
        fence = fence_state(fence, line)
        if was_open or fence is not None:
            previous = None
            continue
        text = _CODE_SPAN.sub("", line)
        for image in _IMAGE.finditer(text):
            found.append((number, f"an image, {image.group()}: chat lessons cannot show images, so learners would "
                          "see this text as written: describe the picture in words, or link to it with a full "
                          f"https:// address, [{image['alt'] or 'the picture'}](https://…)"))
        for link in _LINK.finditer(text):
            if not _WEB_ADDRESS.match(link["target"].strip()):
                found.append((number, f"the link {link.group()} does not go to a web address, so learners would "
                              "see it as written (a chat cannot open a file or a place in the lesson): link to a "
                              f"full https:// address, [{link['text']}](https://…), or write it without a link"))
        if _TABLE_RULE.match(line) and "|" in line:
            starts = previous[0] if previous is not None and "|" in previous[1] else number
            found.append((starts, "a table: chat apps cannot show tables, so learners would see its '|' and '-' "
                          "characters: write it as a list, one '- item' per row"))
        previous = (number, line) if line.strip() else None
    return found
