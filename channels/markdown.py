"""The light Markdown that dialogs and course authors write, rendered for each platform.

Supported: **bold** (or __bold__), *italic* (or _italic_), `code`, [text](https://link), "# heading" lines (shown in
bold) and "- item" / "* item" bullet lines. Everything else is text, and every renderer escapes text for its target
first, so nothing a learner or an author writes can inject markup.

| target | bold | italic | code | link |
|---|---|---|---|---|
| Telegram HTML | `<b>` | `<i>` | `<code>` | `<a href>` |
| Slack mrkdwn | `*x*` | `_x_` | `` `x` `` | `<url|text>` |
| WhatsApp | `*x*` | `_x_` | `` `x` `` | `text (url)` |
| plain | x | x | x | `text (url)` |
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass

_INLINE = re.compile(
    r"(?P<code>`[^`\n]+`)"
    r"|(?P<link>\[(?P<link_text>[^\]\n]+)\]\((?P<url>https?://[^\s)]+)\))"
    r"|(?P<bold>\*\*(?=\S)(?P<bold_text>.+?)(?<=\S)\*\*|__(?=\S)(?P<bold_text2>.+?)(?<=\S)__)"
    r"|(?P<italic>(?<![\w*])\*(?=[^\s*])(?P<italic_text>[^*\n]+?)(?<=[^\s*])\*(?![\w*])"
    r"|(?<!\w)_(?=\S)(?P<italic_text2>[^_\n]+?)(?<=\S)_(?!\w))"
)
_HEADING = re.compile(r"^#{1,6}\s+(.*)$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+(.*)$")


@dataclass(frozen=True)
class Target:
    escape: Callable[[str], str]
    bold: Callable[[str], str]
    italic: Callable[[str], str]
    code: Callable[[str], str]
    link: Callable[[str, str], str]


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


TELEGRAM_HTML = Target(
    escape=lambda t: html.escape(t, quote=False),
    bold=lambda t: f"<b>{t}</b>",
    italic=lambda t: f"<i>{t}</i>",
    code=lambda t: f"<code>{t}</code>",
    link=lambda t, u: f'<a href="{html.escape(u, quote=True)}">{t}</a>',
)
SLACK_MRKDWN = Target(
    escape=_slack_escape,
    bold=lambda t: f"*{t}*",
    italic=lambda t: f"_{t}_",
    code=lambda t: f"`{t}`",
    link=lambda t, u: f"<{_slack_escape(u)}|{t}>",
)
WHATSAPP = Target(
    escape=lambda t: t,  # WhatsApp has no escape character
    bold=lambda t: f"*{t}*",
    italic=lambda t: f"_{t}_",
    code=lambda t: f"`{t}`",
    link=lambda t, u: f"{t} ({u})",
)
PLAIN = Target(
    escape=lambda t: t,
    bold=lambda t: t,
    italic=lambda t: t,
    code=lambda t: t,
    link=lambda t, u: f"{t} ({u})",
)


def render(text: str, target: Target) -> str:
    """`text` in light Markdown, rendered and escaped for `target`, line by line."""
    lines = []
    for line in text.split("\n"):
        if heading := _HEADING.match(line):
            lines.append(target.bold(_inline(heading[1], target)))
        elif bullet := _BULLET.match(line):
            lines.append(f"{bullet[1]}• {_inline(bullet[2], target)}")
        else:
            lines.append(_inline(line, target))
    return "\n".join(lines)


def _inline(text: str, target: Target) -> str:
    out, position = [], 0
    for match in _INLINE.finditer(text):
        out.append(target.escape(text[position : match.start()]))
        if match["code"]:
            out.append(target.code(target.escape(match["code"][1:-1])))
        elif match["link"]:
            out.append(target.link(target.escape(match["link_text"]), match["url"]))
        elif match["bold"]:
            out.append(target.bold(_inline(match["bold_text"] or match["bold_text2"], target)))
        else:
            out.append(target.italic(target.escape(match["italic_text"] or match["italic_text2"])))
        position = match.end()
    out.append(target.escape(text[position:]))
    return "".join(out)
