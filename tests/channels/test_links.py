"""A reply's links (a checkout page): a URL button where the platform has them (Telegram), a link under the text
elsewhere, made by the one renderer for each target; and through the outbox unchanged."""

from __future__ import annotations

import pytest

from bot.messages import Choice, Link, Text, reply_from_payload
from channels.markdown import PLAIN, SLACK_MRKDWN, TELEGRAM_HTML, WHATSAPP, render, render_html, with_links
from channels.telegram.buttons import keyboard
from channels.whatsapp.render import whatsapp_text

PAY = Link("Pay 3.00 GBP", "https://checkout.stripe.com/c/pay/cs_test_1#a_b")


def test_links_survive_the_outbox():
    reply = Text("To unlock it, pay.", (Choice("Later", "later"),), (PAY,))
    assert reply_from_payload(reply.to_payload()) == reply
    assert "links" not in Text("no links").to_payload()


@pytest.mark.parametrize("url", ["javascript:alert(1)", "ftp://x", "https://a b"])
def test_a_link_is_an_http_address(url):
    with pytest.raises(ValueError):
        Link("Pay", url)


@pytest.mark.parametrize(("target", "shown"), [
    (PLAIN, "To unlock it, pay.\n\nPay 3.00 GBP (https://checkout.stripe.com/c/pay/cs_test_1#a_b)"),
    (WHATSAPP, "To unlock it, pay.\n\nPay 3.00 GBP (https://checkout.stripe.com/c/pay/cs_test_1#a_b)"),
    (SLACK_MRKDWN, "To unlock it, pay.\n\n<https://checkout.stripe.com/c/pay/cs_test_1#a_b|Pay 3.00 GBP>"),
    (TELEGRAM_HTML,
     'To unlock it, pay.\n\n<a href="https://checkout.stripe.com/c/pay/cs_test_1#a_b">Pay 3.00 GBP</a>'),
], ids=["plain", "whatsapp", "slack", "telegram"])
def test_a_link_under_the_text_in_each_targets_own_form(target, shown):
    assert render(with_links("To unlock it, pay.", [PAY]), target) == shown


def test_a_label_is_shown_as_typed_and_a_parenthesis_does_not_end_the_address():
    odd = Link("*Pay* [now]", "https://pay.example/x_(1)")
    assert render(with_links("", [odd]), PLAIN) == "*Pay* [now] (https://pay.example/x_%281%29)"
    assert '<a href="https://pay.example/x_%281%29"' in render_html(with_links("", [odd]))


def test_telegram_shows_a_link_as_a_url_button_above_the_choices():
    markup = keyboard([Choice("Later", "later")], [PAY])
    [[link], [later]] = markup.inline_keyboard
    assert (link.text, link.url, link.callback_data) == ("Pay 3.00 GBP", PAY.url, None)
    assert later.callback_data == "later"


def test_whatsapp_numbers_the_choices_under_the_link():
    text = whatsapp_text(Text("Pay here.", (Choice("Later", "later"),), (PAY,)))
    assert text == f"Pay here.\n\nPay 3.00 GBP ({PAY.url})\n\n1. Later"


def test_the_web_chat_page_gets_the_link_in_its_text_and_html():
    from channels.webchat.routes import reply_view

    view = reply_view(7, Text("Pay here.", links=(PAY,)).to_payload())
    assert view["text"] == f"Pay here.\n\nPay 3.00 GBP ({PAY.url})" and "links" not in view
    assert f'<a href="{PAY.url}"' in view["html"] and ">Pay 3.00 GBP</a>" in view["html"]
