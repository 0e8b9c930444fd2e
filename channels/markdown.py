"""The light Markdown that dialogs and course authors write, rendered for each platform: the one place it is read.

Supported: **bold** (or __bold__), *italic* (or _italic_), `code`, [text](https://link), "# heading" lines (shown in
bold), "- item" / "* item" bullet lines, "1. item" numbered lines and fenced code blocks (``` or ~~~ lines around
code, as course text has them: `read_lines`, in bot.messages with the other line forms, which a dialog reads there
to take one line of an author's text into one of its own: `text_line`), whose lines are code as written, only
escaped for the target.
Underscore emphasis (_x_, __x__) starts and ends only at a word's edge (snake_case_names stay as they are), and a bare
web address (https://…) is text: nothing in it formats, so the platform's app may link it whole. A backslash before a
character the Markdown gives a meaning to stands for the character itself (`bot.messages.MARKDOWN_ESCAPES`): that is
how outside text (names, what a person typed, escaped by `bot.messages.literal`) gets into a reply, and every renderer
shows such a character as typed, never as formatting, a link or a mention. Everything else is text, and every
renderer escapes text for its target first, so nothing a learner or an author writes can inject markup.

| target | bold | italic | code | code block | link | an escaped * _ ~ ` |
|---|---|---|---|---|---|---|
| Telegram HTML | `<b>` | `<i>` | `<code>` | `<pre><code>` | `<a href>` | the character |
| Slack mrkdwn | `*x*` | `_x_` | `` `x` `` | ```` ``` ```` lines | `<url|text>` | a look-alike: ∗ ˍ ∼ ˋ (`<url>`) |
| WhatsApp | `*x*` | `_x_` | `` `x` `` | ```` ``` ```` lines | `text (url)` | a look-alike: ∗ ˍ ∼ ˋ (addresses as is) |
| plain (the terminal) | x | x | x | the lines | `text (url)` | the character (control characters dropped) |
| Rasa (plain, for any connector) | x | x | x | the lines | `text (url)` | a look-alike: ∗ ˍ ∼ ˋ, and ［ ］ for [ ] |
| web chat HTML | `<strong>` | `<em>` | `<code>` | `<pre><code>` | `<a href rel="noopener…">` | the character |

Slack and WhatsApp have no escape character, so a character that must not format is sent as a look-alike they do not
read as markup; in a web address (which a look-alike would change) Slack gets Slack's link to the address instead,
`<url>`, in which nothing formats (the sentence's punctuation after it left out of it: `address_and_after`), and
WhatsApp, which formats nothing inside an address it links, the address as typed; an e-mail address too
(`Target.mail`: "ann_b@example.com", not "annˍb@example.com").
In Slack &, < and > are always escaped, so no text makes a `<!channel>`, `<@U…>` or `<url|…>`.
A line mark that `literal` escaped at a line's start (a typed "> ", "- ", "+ ", "# ", "1. ", "1) ") would be a quote,
a list item or a heading there, so Slack, WhatsApp and Rasa get it as a look-alike: ＞ ‐ ＋ ＃, or ． ） after the
number (any escaped ">": Slack quotes ">x" too; and on Slack in place of "&gt;", which is a quote as well). The bot's
own "- item" and "1. item" lines render as before; Telegram and the web chat read no line mark from an escaped one.
Rasa's text is plain, but its connectors read markup in it: Rasa's Slack connector posts it as mrkdwn, web widgets
render Markdown. So < and > are always look-alikes there (‹ ›), and an & that starts an entity ("&lt;") is ＆: no text
makes a `<!channel>`, `<@U…>`, `<url|…>`, `<url>` or a tag; an escaped [ or ] is ［ ］, so outside text makes no
`[text](url)` link.
The web chat gets whole blocks (`render_html`: paragraphs, bullet and numbered lists, code blocks) in a small HTML
subset: p, br, ul, ol, li, strong, em, code, pre and a, whose only attributes are a link's http(s) address (with rel
and target) and a numbered list's start.

A text rendered once is kept, for each target, with what it became (the last `RENDERED_KEPT` texts of up to
`RENDERED_KEPT_CHARS` characters): /help, a menu and a lesson part go out the same to many people, and rendering
them line by line again cost a tenth of the instructions of a Telegram `/help` message (docs/benchmarks.md,
"Eighteenth pass").
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bot.messages import (
    BULLET,
    HEADING,
    MARKDOWN_ESCAPES,
    NUMBERED,
    CodeBlock,
    Link,
    literal,
    read_lines,
    unescaped,
)

_NOT_ESCAPED = r"(?<!\\)"  # a closing mark right after a backslash is the escaped character, not a mark
# Every inline form starts with one of these; a line with none of them is only text to escape.
_MARKS = r"[\\`\[*_]"
_ANY_MARK = re.compile(_MARKS)
_ESCAPED = r"\\[" + re.escape("".join(sorted(MARKDOWN_ESCAPES))) + r"]"
# The lookahead first: at the many positions where no form can start, one character is looked at, not every form.
# A bare address is read as one piece of text (its escapes still read), so no _ or * in it starts emphasis.
_FORMS = (
    r"(?P<escaped>" + _ESCAPED + r")"
    r"|(?P<code>`[^`\n]+`)"
    r"|(?P<link>\[(?P<link_text>(?:\\.|[^\]\\\n])+)\]\((?P<url>https?://[^\s)]+)\))"
    r"|(?P<bare_url>https?://\S+)"
    r"|(?P<bold>\*\*(?=\S)(?P<bold_text>.+?)(?<=\S)" + _NOT_ESCAPED + r"\*\*"
    r"|(?<!\w)__(?=\S)(?P<bold_text2>.+?)(?<=\S)" + _NOT_ESCAPED + r"__(?!\w))"
    r"|(?P<italic>(?<![\w*])\*(?=[^\s*])(?P<italic_text>[^*\n]+?)(?<=[^\s*])" + _NOT_ESCAPED + r"\*(?![\w*])"
    r"|(?<!\w)_(?=\S)(?P<italic_text2>[^_\n]+?)(?<=\S)" + _NOT_ESCAPED + r"_(?!\w))"
)
_INLINE = re.compile(r"(?=" + _MARKS + r"|https?://)(?:" + _FORMS + ")")
# An e-mail address (from a letter or a digit; outside text escaped the _ in it), read as one piece of text before
# the escapes in it, for a target that shows one as written (`Target.mail`).
_MAIL = r"(?P<mail>(?<![\w.%+\\-])[^\W_](?:[\w.%+-]|\\_)*@(?:[^\W_]|-)+(?:\.(?:[^\W_]|-)+)+)"
_INLINE_AND_MAIL = re.compile(r"(?=" + _MARKS + r"|https?://|[\w.%+-])(?:" + _MAIL + "|" + _FORMS + ")")
_ESCAPED_CHARACTER = re.compile(_ESCAPED)

# Control characters a terminal would act on (colours, cursor moves, a bell); line breaks and tabs are text.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

# What Slack and WhatsApp read as formatting, and the look-alikes that show it without formatting anything.
_INERT = str.maketrans({"*": "\u2217", "_": "\u02cd", "~": "\u223c", "`": "\u02cb"})
# Rasa's connectors may read Markdown too: an escaped [ or ] would make a link with the (url) after it.
_INERT_RASA = _INERT | str.maketrans({"[": "\uff3b", "]": "\uff3d"})
# An escaped line mark (`literal` escapes them at a line's start) where it would be a quote, a list item or a heading:
# an escaped ">" (Slack quotes ">x"), or an escaped "#", "-", "+" or a number's "." or ")" with a space after it.
_ESCAPED_LINE_MARK = re.compile(r"[^\S\n]*(?:\\>|(?:\\[#+-]|\d+\\[.)])(?=[^\S\n]|$))")
_INERT_LINE_MARK = str.maketrans(
    {">": "\uff1e", "-": "\u2010", "+": "\uff0b", "#": "\uff03", ".": "\uff0e", ")": "\uff09"}
)
# What opens or closes markup in Rasa's text for any connector: Slack's <!channel>, <@U…> and <url|text>, Markdown's
# <url> and HTML tags; an & only where it starts an entity ("&lt;"), so a web address's "&b=2" stays as it is.
_ANGLES = str.maketrans({"<": "\u2039", ">": "\u203a"})
_ENTITY = re.compile(r"&(?=#?[0-9A-Za-z]+;)")


@dataclass(frozen=True)
class Target:
    escape: Callable[[str], str]
    """Text shown as text: the target's own control characters escaped."""
    literal: Callable[[str], str]
    """Text that must show exactly as typed, formatting characters included (an escaped character, a button label)."""
    bold: Callable[[str], str]
    italic: Callable[[str], str]
    code: Callable[[str], str]
    code_block: Callable[[str], str]
    """A fenced code block's lines (escaped), shown as code: nothing in them formats."""
    link: Callable[[str, str], str]
    address: Callable[[str], str] | None = None
    """A bare web address that outside text wrote (it holds an escape), as the target links an address to itself; None:
    shown as text, each escaped character as `literal` shows it (a look-alike would change the address)."""
    mail: Callable[[str], str] | None = None
    """An e-mail address that outside text wrote, as the target shows one whole; None: shown as text, each escaped
    character as `literal` shows it."""
    line_mark: Callable[[str], str] | None = None
    """An escaped mark that starts a line (> - + # or a number's . or ), as `_ESCAPED_LINE_MARK` finds it), for a
    target that would read it as a quote, a list item or a heading; None: shown as `literal` shows it anywhere."""
    rendered: dict[str, str] = field(default_factory=dict, compare=False, repr=False)
    """Texts rendered for this target, and what each became (`render`)."""


def escape_mrkdwn(text: str) -> str:
    """Escape Slack's three control characters; anything else (*bold*, _italic_) keeps its mrkdwn meaning."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _html_text(text: str) -> str:
    return html.escape(text, quote=False)


def _printable(text: str) -> str:
    return _CONTROL.sub("", text)


def _inert_line_mark(mark: str) -> str:
    return mark.translate(_INERT_LINE_MARK)


def _rasa_text(text: str) -> str:
    """Plain text that no Rasa connector reads as markup: < and > as look-alikes, an & that starts an entity too."""
    return _ENTITY.sub("\uff06", _printable(text).translate(_ANGLES))


def _backtick_fenced(code: str) -> str:
    """A code block between ``` lines (Slack, WhatsApp); a run of three backticks inside it (a `~~~` block may hold
    one) gets a zero-width space, so it shows as written and does not close the block."""
    inert = code.replace("```", "`\u200b``")
    return f"```\n{inert}\n```"


TELEGRAM_HTML = Target(
    escape=_html_text,
    literal=_html_text,
    bold=lambda t: f"<b>{t}</b>",
    italic=lambda t: f"<i>{t}</i>",
    code=lambda t: f"<code>{t}</code>",
    code_block=lambda t: f"<pre><code>{t}</code></pre>",
    link=lambda t, u: f'<a href="{html.escape(u, quote=True)}">{t}</a>',
)
SLACK_MRKDWN = Target(
    escape=escape_mrkdwn,
    literal=lambda t: escape_mrkdwn(t).translate(_INERT),
    bold=lambda t: f"*{t}*",
    italic=lambda t: f"_{t}_",
    code=lambda t: f"`{t}`",
    code_block=_backtick_fenced,
    # inside <url|text> a '|' or '>' would end the URL early; Slack reads percent-encoded ones as the same URL
    link=lambda t, u: f"<{escape_mrkdwn(u.replace('|', '%7C'))}|{t}>",
    address=lambda u: f"<{escape_mrkdwn(u.replace('|', '%7C'))}>",  # linked as written; nothing in a link formats
    line_mark=_inert_line_mark,  # a look-alike, not escaped: Slack quotes an escaped "&gt;" too
)
WHATSAPP = Target(
    escape=lambda t: t,  # WhatsApp has no escape character
    literal=lambda t: t.translate(_INERT),
    bold=lambda t: f"*{t}*",
    italic=lambda t: f"_{t}_",
    code=lambda t: f"`{t}`",
    code_block=_backtick_fenced,
    link=lambda t, u: f"{t} ({u})",
    # as written: WhatsApp formats nothing inside an address it links, and a look-alike would make another address
    address=lambda u: u,
    mail=lambda m: m,
    line_mark=_inert_line_mark,
)
PLAIN = Target(
    escape=_printable,
    literal=_printable,
    bold=lambda t: t,
    italic=lambda t: t,
    code=lambda t: t,
    code_block=lambda t: t,
    link=lambda t, u: f"{t} ({u})",
)
RASA = Target(
    escape=_rasa_text,
    literal=lambda t: _rasa_text(t).translate(_INERT_RASA),
    bold=lambda t: t,
    italic=lambda t: t,
    code=lambda t: t,
    code_block=lambda t: t,
    link=lambda t, u: f"{t} ({u})",
    line_mark=_inert_line_mark,
)
WEB_HTML = Target(
    escape=_html_text,
    literal=_html_text,
    bold=lambda t: f"<strong>{t}</strong>",
    italic=lambda t: f"<em>{t}</em>",
    code=lambda t: f"<code>{t}</code>",
    code_block=lambda t: f"<pre><code>{t}</code></pre>",
    link=lambda t, u: f'<a href="{html.escape(u, quote=True)}" rel="noopener noreferrer" target="_blank">{t}</a>',
)


def _code_block(block: CodeBlock, target: Target) -> str:
    """A code block for `target`; an empty one is nothing (Telegram refuses an empty <pre>, Slack shows its fences)."""
    code = "\n".join(block.code)
    return target.code_block(target.escape(code)) if code.strip() else ""


def with_links(text: str, links: Sequence[Link]) -> str:
    """A reply's text with its links below it, each on a line of its own as light Markdown ("[Pay](https://…)"), for
    every channel that shows links in the text rather than as buttons: its renderer makes them its own kind of link."""
    if not links:
        return text
    lines = [f"[{literal(link.label)}]({link.url.replace('(', '%28').replace(')', '%29')})" for link in links]
    return (text.rstrip() + "\n\n" if text.strip() else "") + "\n".join(lines)


RENDERED_KEPT = 256
RENDERED_KEPT_CHARS = 4096


def _keep(rendered: dict[str, str], text: str, result: str) -> str:
    """`result`, kept as what `text` renders to (the oldest half let go when full)."""
    if len(text) <= RENDERED_KEPT_CHARS:
        if len(rendered) >= RENDERED_KEPT:
            for old in list(rendered)[: RENDERED_KEPT // 2]:
                rendered.pop(old, None)  # (another thread may have let it go first)
        rendered[text] = result
    return result


def render(text: str, target: Target) -> str:
    """`text` in light Markdown, rendered and escaped for `target`, line by line (kept: the same text again is not
    read again)."""
    kept = target.rendered.get(text)
    if kept is not None:
        return kept
    return _keep(target.rendered, text, _render(text, target))


def _render(text: str, target: Target) -> str:
    lines = []
    for line in read_lines(text):
        if isinstance(line, CodeBlock):
            lines.append(_code_block(line, target))
        elif heading := HEADING.match(line):
            lines.append(target.bold(_inline(heading[1], target)))
        elif bullet := BULLET.match(line):
            lines.append(f"{bullet[1]}• {_inline(bullet[2], target)}")
        elif target.line_mark and (mark := _ESCAPED_LINE_MARK.match(line)):
            # the indent and a number as text, then the escaped mark itself (after its backslash) as the target shows it
            shown = target.escape(mark[0][:-2]) + target.line_mark(mark[0][-1])
            lines.append(shown + _inline(line[mark.end() :], target))
        else:
            lines.append(_inline(line, target))
    return "\n".join(lines)


_HTML_RENDERED: dict[str, str] = {}


def render_html(text: str) -> str:
    """`text` in light Markdown as the web chat's HTML: paragraphs (a single line break kept as <br>), bullet and
    numbered lists, headings as bold paragraphs, code blocks as <pre><code> (their line breaks kept inside); no line
    breaks between the tags, so the page may keep its own."""
    kept = _HTML_RENDERED.get(text)
    if kept is not None:
        return kept
    return _keep(_HTML_RENDERED, text, _render_html(text))


def _render_html(text: str) -> str:
    blocks: list[str] = []
    lines: list[str] = []  # the paragraph being read
    items: list[str] = []  # the list being read
    kind, start = "", 1

    def end_paragraph() -> None:
        if lines:
            blocks.append("<p>" + "<br>".join(lines) + "</p>")
            lines.clear()

    def end_list() -> None:
        nonlocal kind
        if items:
            opening = "<ul>" if kind == "ul" else "<ol>" if start == 1 else f'<ol start="{start}">'
            blocks.append(opening + "".join(f"<li>{item}</li>" for item in items) + f"</{kind}>")
            items.clear()
        kind = ""

    def add_item(of_kind: str, content: str, number: int = 1) -> None:
        nonlocal kind, start
        end_paragraph()
        if kind != of_kind:
            end_list()
            kind, start = of_kind, number
        items.append(_inline(content, WEB_HTML))

    for line in read_lines(text):
        if isinstance(line, CodeBlock):
            end_paragraph()
            end_list()
            blocks.append(_code_block(line, WEB_HTML))
        elif not line.strip():
            end_paragraph()
            end_list()
        elif heading := HEADING.match(line):
            end_paragraph()
            end_list()
            blocks.append(f"<p><strong>{_inline(heading[1], WEB_HTML)}</strong></p>")
        elif bullet := BULLET.match(line):
            add_item("ul", bullet[2])
        elif numbered := NUMBERED.match(line):
            add_item("ol", numbered[2], int(numbered[1]))
        else:
            end_list()
            lines.append(_inline(line, WEB_HTML))
    end_paragraph()
    end_list()
    return "".join(blocks)


def _inline(text: str, target: Target) -> str:
    if _ANY_MARK.search(text) is None:
        return target.escape(text)
    out, position = [], 0
    forms = _INLINE_AND_MAIL if target.mail is not None and "@" in text else _INLINE
    for match in forms.finditer(text):
        out.append(target.escape(text[position : match.start()]))
        if match.lastgroup == "mail" and target.mail is not None:
            out.append(target.mail(unescaped(match["mail"])))
        elif match["escaped"]:
            out.append(target.literal(match["escaped"][1]))
        elif match["code"]:
            out.append(target.code(target.escape(match["code"][1:-1])))
        elif match["link"]:
            out.append(target.link(_inline(match["link_text"], target), match["url"]))
        elif match["bare_url"]:
            out.append(_bare_url(match["bare_url"], target))
        elif match["bold"]:
            out.append(target.bold(_inline(match["bold_text"] or match["bold_text2"], target)))
        else:
            out.append(target.italic(_inline(match["italic_text"] or match["italic_text2"], target)))
        position = match.end()
    out.append(target.escape(text[position:]))
    return "".join(out)


@dataclass(frozen=True)
class Emphasis:
    """A bold or italic run of a line: where it starts and ends (its marks included), and its opening mark."""

    start: int
    end: int
    mark: str  # "**", "__", "*" or "_"


def emphasis_in(line: str, *, at: int = 0) -> list[Emphasis]:
    """The bold and italic runs of a line that are not inside another form (a link's text, code, a web address), as
    `render` reads them, those inside another run too (each after the run it is in): where a split of the line must
    close a run and open it again. `at`: where `line` starts in the line it was cut from."""
    if _ANY_MARK.search(line) is None:
        return []
    runs = []
    for match in _INLINE.finditer(line):
        if match["bold"] or match["italic"]:
            inner = next(name for name in ("bold_text", "bold_text2", "italic_text", "italic_text2") if match[name])
            mark = match.group()[: match.start(inner) - match.start()]
            runs.append(Emphasis(at + match.start(), at + match.end(), mark))
            runs += emphasis_in(match[inner], at=at + match.start(inner))
    return runs


def _bare_url(url: str, target: Target) -> str:
    """A web address as text: its escaped characters read (outside text escapes them), nothing else formats. Where
    the target shows an escaped character as a look-alike but has a link to an address itself (Slack) or shows one as
    typed (WhatsApp), an address outside text wrote goes so (`Target.address`), the sentence's punctuation after it
    as text, with its escaped characters as `literal` shows them."""
    if target.address is not None and _ESCAPED_CHARACTER.search(url):
        address, _after = address_and_after(unescaped(url))
        return target.address(address) + _with_escapes(url[_escaped_length(url, len(address)) :], target)
    return _with_escapes(url, target)


def _with_escapes(text: str, target: Target) -> str:
    """`text` as text, each escaped character in it as `literal` shows it."""
    out, position = [], 0
    for match in _ESCAPED_CHARACTER.finditer(text):
        out.append(target.escape(text[position : match.start()]))
        out.append(target.literal(match[0][1]))
        position = match.end()
    out.append(target.escape(text[position:]))
    return "".join(out)


def _escaped_length(text: str, length: int) -> int:
    """How much of `text` its first `length` characters take with their escapes (`unescaped` reads them in order)."""
    position = 0
    for _character in range(length):
        position += 2 if _ESCAPED_CHARACTER.match(text, position) else 1
    return position


_SENTENCE_MARKS = ".,;:!?'\"”’»"
_CLOSING = {")": "(", "]": "["}


def address_and_after(url: str) -> tuple[str, str]:
    """A bare web address as a sentence holds it: the address, and the punctuation after it that is the sentence's
    ("see https://x.test/a." → the address and ".", “https://x.test/a” → and "”"; a closing bracket only when the
    address opened none for it, so "https://x.test/wiki/Phish_(attack)" stays whole, and the address ends at the first
    such bracket: "https://x.test)](https://y.test)" is https://x.test and text)."""
    end = next((at for at, mark in enumerate(url) if _unopened(url, at, mark)), len(url))
    while end > 0 and _ends_the_sentence(url, end):
        end -= 1
    return url[:end], url[end:]


def _unopened(url: str, at: int, mark: str) -> bool:
    """Whether `mark`, at `at` in `url`, is a closing bracket the address before it opened none for."""
    opening = _CLOSING.get(mark)
    return opening is not None and url.count(opening, 0, at) < url.count(mark, 0, at + 1)


def _ends_the_sentence(url: str, end: int) -> bool:
    """Whether the character before `end` is the sentence's punctuation rather than the address's."""
    last = url[end - 1]
    opening = _CLOSING.get(last)
    return last in _SENTENCE_MARKS or (opening is not None and url.count(opening, 0, end) < url.count(last, 0, end))
