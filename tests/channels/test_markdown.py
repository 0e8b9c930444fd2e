from channels.markdown import PLAIN, SLACK_MRKDWN, TELEGRAM_HTML, WHATSAPP, render

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
