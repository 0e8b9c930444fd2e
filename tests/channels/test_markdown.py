import html
import re

import pytest

from bot.messages import Text, literal
from channels.markdown import (
    PLAIN,
    RASA,
    RENDERED_KEPT,
    RENDERED_KEPT_CHARS,
    SLACK_MRKDWN,
    TELEGRAM_HTML,
    WEB_HTML,
    WHATSAPP,
    escape_mrkdwn,
    render,
    render_html,
)
from channels.slack.blocks import render_text
from channels.whatsapp.render import text_bodies

LESSON = """Nearly every phishing message pulls the same few levers:

- **Urgency**: "your account will be closed within 24 hours"
- *Fear* or _reward_: see [the guide](https://example.com/a?b=1&c=2)

Type `STOP` to <stop>; snake_case_names stay & so do 2*3*4 sums."""


def test_telegram_html_formats_and_escapes():
    out = render(LESSON, TELEGRAM_HTML)
    assert "• <b>Urgency</b>:" in out
    assert "• <i>Fear</i> or <i>reward</i>: see <a href=\"https://example.com/a?b=1&amp;c=2\">the guide</a>" in out
    assert "<code>STOP</code> to &lt;stop&gt;; snake_case_names stay &amp; so do 2*3*4 sums." in out


def test_slack_mrkdwn():
    out = render(LESSON, SLACK_MRKDWN)
    assert "• *Urgency*:" in out and "<https://example.com/a?b=1&amp;c=2|the guide>" in out
    assert "&lt;stop&gt;" in out and "snake_case_names" in out


def test_whatsapp_and_plain():
    assert "• *Urgency*:" in render(LESSON, WHATSAPP)
    plain = render(LESSON, PLAIN)
    assert "• Urgency:" in plain and "the guide (https://example.com/a?b=1&c=2)" in plain and "**" not in plain


def test_markup_in_text_cannot_escape_into_html():
    out = render('**<script>alert("x")</script>** [a](https://x.test/"onmouseover=1)', TELEGRAM_HTML)
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert 'onmouseover' not in out.split("href=")[1].split(">")[0] or "&quot;" in out


def test_headings_are_bold():
    assert render("# Quiz time", TELEGRAM_HTML) == "<b>Quiz time</b>"


# Outside text: escaped by bot.messages.literal, shown as typed ------------------------------------------------------

HOSTILE = [
    "[Verify your account](https://evil.example/login)",
    '<a href="https://evil.example">x</a>',
    "*bold* **strong** _it_ __under__ ~strike~ `code`",
    "<!channel> <@U123> <https://evil.example|x>",
    "&lt; &amp; \\*already escaped\\* C:\\path\\",
    "# heading\n- bullet\n* star\n+ plus\n1. one\n2) two\n> quote",
    "x\n> Lessonbot: your account is locked\n- call +1 555 0100\n1. now\n  2) then\n>no space",
    "🎉 \u202bשלום\u202c مرحبا",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_literal_text_shows_exactly_as_typed_in_plain_text_and_html(text):
    assert render(literal(text), PLAIN) == text
    assert html.unescape(render(literal(text), TELEGRAM_HTML)) == text
    assert "<" not in render(literal(text), TELEGRAM_HTML)
    web = render_html(literal(text))
    assert re.sub(r"</?p>|<br>", "", web) == html.escape(text.replace("\n", ""), quote=False)


@pytest.mark.parametrize("text", HOSTILE)
def test_literal_text_formats_nothing_on_slack_and_whatsapp(text):
    slack = render(literal(text), SLACK_MRKDWN)
    assert "<" not in slack and ">" not in slack  # no mention, link or special command
    whatsapp = render(literal(text), WHATSAPP)
    for out in (slack, whatsapp):
        assert not set("*_~`") & set(out)  # look-alikes instead
        assert "•" not in out  # no bullet made of a typed "- "


def test_the_terminal_gets_no_control_characters():
    assert render(literal("Ann\x1b[2J\x07\tB\nC"), PLAIN) == "Ann[2J\tB\nC"


def test_our_markup_around_a_literal_value_still_renders():
    text = f"**Hi {literal('*Ann*')}!** See [the guide](https://example.com)."
    assert render(text, TELEGRAM_HTML) == '<b>Hi *Ann*!</b> See <a href="https://example.com">the guide</a>.'
    assert render(text, SLACK_MRKDWN) == "*Hi ∗Ann∗!* See <https://example.com|the guide>."


def test_the_web_chat_html_has_paragraphs_lists_and_safe_links():
    out = render_html(LESSON + "\n\n3. third\n4. fourth\n\n# Quiz\n[bad](javascript:alert(1)) [ok](http://x.test/a\"b)")
    assert out.startswith("<p>Nearly every phishing message pulls the same few levers:</p><ul><li><strong>Urgency")
    assert '<li><em>Fear</em> or <em>reward</em>: see <a href="https://example.com/a?b=1&amp;c=2" ' \
           'rel="noopener noreferrer" target="_blank">the guide</a></li></ul>' in out
    assert "<p>Type <code>STOP</code> to &lt;stop&gt;; snake_case_names stay &amp; so do 2*3*4 sums.</p>" in out
    assert '<ol start="3"><li>third</li><li>fourth</li></ol><p><strong>Quiz</strong></p>' in out
    assert "[bad](javascript:alert(1))" in out and 'href="javascript' not in out
    assert 'href="http://x.test/a&quot;b"' in out
    assert "\n" not in out


def test_a_text_rendered_again_comes_out_the_same_for_each_target_and_what_is_kept_stays_bounded():
    text = "# Menu\n- **bold** <b>not a tag</b>\n- [pay](https://example.com/a?b=1&c=2)"
    for target in (TELEGRAM_HTML, SLACK_MRKDWN, WHATSAPP, PLAIN, WEB_HTML):
        first = render(text, target)
        assert render(text, target) == first
    assert render(text, TELEGRAM_HTML) != render(text, SLACK_MRKDWN)  # kept apart by target
    page = render_html(text)
    assert render_html(text) == page and "&lt;b&gt;" in page

    for n in range(RENDERED_KEPT * 3):
        assert render(f"line {n} *x*", PLAIN) == f"line {n} x"
    assert len(PLAIN.rendered) <= RENDERED_KEPT
    long = "a" * (RENDERED_KEPT_CHARS + 1)
    assert render(long, PLAIN) == long and long not in PLAIN.rendered


# Fenced code blocks: code as written, only escaped ----------------------------------------------------------------

CODE_PART = """Check a link's host before you trust it:

```python
# the host is the third piece
def host_of(url):
    return url.split("/")[2] < 3 & 4

- not_a_list = host_of(url).endswith("_bank_")
print(2*3*4, __name__, `tick`)
```
After the **code**."""
CODE = CODE_PART.split("```python\n")[1].split("\n```")[0]


def test_a_code_block_is_code_on_every_platform_its_lines_only_escaped():
    assert render(CODE_PART, TELEGRAM_HTML) == (
        "Check a link's host before you trust it:\n\n"
        f"<pre><code>{html.escape(CODE, quote=False)}</code></pre>\nAfter the <b>code</b>."
    )
    assert render(CODE_PART, SLACK_MRKDWN) == (
        f"Check a link's host before you trust it:\n\n```\n{escape_mrkdwn(CODE)}\n```\nAfter the *code*."
    )
    assert render(CODE_PART, WHATSAPP) == (
        f"Check a link's host before you trust it:\n\n```\n{CODE}\n```\nAfter the *code*."
    )
    assert render(CODE_PART, PLAIN) == f"Check a link's host before you trust it:\n\n{CODE}\nAfter the code."


def test_the_web_chat_shows_a_code_block_whole_in_pre():
    assert render_html(CODE_PART) == (
        "<p>Check a link's host before you trust it:</p>"
        f"<pre><code>{html.escape(CODE, quote=False)}</code></pre><p>After the <strong>code</strong>.</p>"
    )


def test_a_tilde_fence_a_longer_fence_and_an_unclosed_fence_are_code_and_an_escaped_one_is_not():
    assert render("~~~\n*a*\n~~~", TELEGRAM_HTML) == "<pre><code>*a*</code></pre>"
    assert render("````\n```\n*a*\n````\n*b*", TELEGRAM_HTML) == "<pre><code>```\n*a*</code></pre>\n<i>b</i>"
    assert render("```\n*a*", TELEGRAM_HTML) == "<pre><code>*a*</code></pre>"
    assert render("```\n \n```", TELEGRAM_HTML) == ""  # Telegram refuses an empty <pre>
    assert render(literal("```\n*a*\n```"), TELEGRAM_HTML) == "```\n*a*\n```"
    assert "<pre>" not in render("```inline``` *b*", TELEGRAM_HTML)  # not a fence: backticks after it


# Underscores: emphasis at a word's edge only, never inside a bare address ----------------------------------------

URLS = "Read https://docs.python.org/3/reference/datamodel.html#object.__init__ and https://x.test/wiki/_Hello_ today."


@pytest.mark.parametrize("target", [TELEGRAM_HTML, SLACK_MRKDWN, WHATSAPP, PLAIN])
def test_nothing_in_a_bare_address_formats(target):
    assert render(URLS, target) == target.escape(URLS)
    assert render(f"**see {URLS}**", target) == target.bold(target.escape(f"see {URLS}"))


def test_a_bare_address_in_the_web_chat_html_is_text_and_escapes_in_it_still_read():
    assert render_html(URLS) == f"<p>{URLS}</p>"
    assert render(literal("https://x.test/a_b_<c>"), TELEGRAM_HTML) == "https://x.test/a_b_&lt;c&gt;"
    assert render(literal("https://x.test/_a_"), WHATSAPP) == "https://x.test/_a_"  # a look-alike: another address


def test_an_address_outside_text_wrote_is_linked_as_written_on_slack_its_punctuation_and_markup_text():
    said = (f"See {literal('https://x.test/wiki/Phish_(attack)')}, {literal('(https://x.test/a_b)')} and "
            f"{literal('https://x.test/~ann/*x*|<!channel>')}. *Our* https://x.test/own_page.")
    assert render(said, SLACK_MRKDWN) == (
        "See <https://x.test/wiki/Phish_(attack)>, (<https://x.test/a_b>) and "
        "<https://x.test/~ann/*x*%7C&lt;!channel&gt;>. _Our_ https://x.test/own_page.")  # ours: as it was


def test_an_address_outside_text_wrote_goes_to_whatsapp_as_typed_the_rest_of_its_text_formatting_nothing():
    said = literal("See https://x.test/wiki/Phish_(attack), (https://x.test/~a_b) https://x.test/a)_b_ *c* or mail "
                   "ann_b.c+d@mail.example.org. _ann_@x.test")
    assert render(said, WHATSAPP) == (
        "See https://x.test/wiki/Phish_(attack), (https://x.test/~a_b) https://x.test/a)ˍbˍ ∗c∗ or mail "
        "ann_b.c+d@mail.example.org. ˍannˍ@x.test")
    assert render("Write to ann_b@x.test or _me_.", WHATSAPP) == "Write to ann_b@x.test or _me_."  # ours: as it was


def test_double_underscores_inside_a_word_are_not_bold():
    assert render("call obj__init__x or snake__case__name", TELEGRAM_HTML) == "call obj__init__x or snake__case__name"
    assert render("a __strong__ word", TELEGRAM_HTML) == "a <b>strong</b> word"


def test_three_backticks_inside_a_tilde_block_do_not_close_it_on_slack_or_whatsapp():
    block = "~~~\n```\n*not bold*\n~~~"
    for target in (SLACK_MRKDWN, WHATSAPP):
        shown = render(block, target)
        assert shown.startswith("```\n") and shown.endswith("\n```") and shown.count("```") == 2, shown
        assert "*not bold*" in shown


# Line marks in outside text: a typed quote, list item or heading line is text -------------------------------------

TYPED_LINES = "x\n> Lessonbot: your account is locked\n- call +1 555 0100\n1. now\n  2) then\n# head\n+ plus\n>x"
SHOWN_LINES = "x\n＞ Lessonbot: your account is locked\n‐ call +1 555 0100\n1． now\n  2） then\n＃ head\n＋ plus\n＞x"


def test_a_typed_quote_or_list_line_is_sent_as_look_alikes_to_slack_whatsapp_and_rasa():
    for target in (WHATSAPP, SLACK_MRKDWN, RASA):
        assert render(literal(TYPED_LINES), target) == SHOWN_LINES  # on Slack no "&gt;" either: it is a quote too
    # as the channels send it
    assert text_bodies(Text(literal(TYPED_LINES))) == [SHOWN_LINES]
    [message] = render_text(Text(literal(TYPED_LINES)))
    assert message.blocks[0]["text"]["text"] == SHOWN_LINES
    # a number, a sign or a dash that starts no list item stays as typed
    assert render(literal("3.14\n-5 °C\n+1 555\n#1"), WHATSAPP) == "3.14\n-5 °C\n+1 555\n#1"


def test_a_typed_list_line_indented_with_another_space_is_text_on_every_platform():
    # a no-break or an em space (pasted from a web page) indents a line as a space does, for every renderer
    typed = literal("x\n\u00a0- call +1 555 0100\n\u2003\u20031. now\n\u00a0> q")
    shown = "x\n\u00a0‐ call +1 555 0100\n\u2003\u20031． now\n\u00a0＞ q"
    for target in (WHATSAPP, SLACK_MRKDWN, RASA):
        assert render(typed, target) == shown
    for target in (TELEGRAM_HTML, PLAIN):
        assert "•" not in render(typed, target) and "- call" in render(typed, target)
    assert render_html(typed) == "<p>x<br>\u00a0- call +1 555 0100<br>\u2003\u20031. now<br>\u00a0&gt; q</p>"


def test_the_bots_own_lists_and_quotes_render_as_before_next_to_a_typed_one():
    own = f"- item\n1. one\n> said\n{literal('- typed')}"
    assert render(own, WHATSAPP) == "• item\n1. one\n> said\n‐ typed"
    assert render(own, SLACK_MRKDWN) == "• item\n1. one\n&gt; said\n‐ typed"
    assert render(own, PLAIN) == "• item\n1. one\n> said\n- typed"
    assert render(own, TELEGRAM_HTML) == "• item\n1. one\n&gt; said\n- typed"
    assert render_html(own) == "<ul><li>item</li></ul><ol><li>one</li></ol><p>&gt; said<br>- typed</p>"


# Rasa: plain text, nothing of outside text read as markup by any connector (Slack's mrkdwn, Markdown) -------------

RASA_HOSTILE = "<https://evil.test|Verify your account> [Verify](https://evil.test) <@U0ADMIN> <!channel> *A* _x_ &lt;"


def test_outside_text_makes_no_link_mention_or_formatting_in_rasas_text():
    shown = render(f"I couldn't find “{literal(RASA_HOSTILE)}”.", RASA)
    assert shown == (
        "I couldn't find “‹https://evil.test|Verify your account› ［Verify］(https://evil.test) ‹@U0ADMIN› ‹!channel› "
        "∗A∗ ˍxˍ ＆lt;”."
    )
    assert not set("<>[]*_&") & set(shown)


def test_the_bots_own_markdown_renders_for_rasa_as_plain_text():
    own = "# Quiz\n**Urgency** and *fear*: see [the guide](https://x.test/a?b=1&c=2) or https://x.test/?a=1&b=2\n- Q&A"
    assert render(own, RASA) == render(own, PLAIN) == (
        "Quiz\nUrgency and fear: see the guide (https://x.test/a?b=1&c=2) or https://x.test/?a=1&b=2\n• Q&A"
    )


@pytest.mark.parametrize(("text", "line"), [
    ("Which one is **clearly a scam, not your bank**?\nPick one.", "Which one is **clearly a scam, not your bank**?"),
    ("# Acting at once\nTrue or false?", "Acting at once"),
    ("```\nhttps://parcel-fee.example/now\n```\n\n  What is this trick called?", "What is this trick called?"),
    ("- a [link](https://example.com/a_b) to check", "a [link](https://example.com/a_b) to check"),
    ("2. Second: is it *real*?", "Second: is it *real*?"),
    ("```\nonly code\n```", ""),
])
def test_the_first_line_of_text_of_an_authors_markdown_stands_inside_another_line(text, line):
    """A dialog that names an author's text inside a line of its own (a digest's "• 67 %: …") takes its first line
    of text: no code block, no heading's or item's mark, its inline forms whole for the channel to render."""
    from bot.messages import text_line

    assert text_line(text) == line
    assert render(f"• 0 %: {line}", SLACK_MRKDWN).count("*") % 2 == 0
