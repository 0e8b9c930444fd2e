"""The terminal's channel: what a reply looks like written to it."""

from __future__ import annotations

import io

from bot.channel import Delivery
from bot.messages import Document, Text, literal
from channels.console import ConsoleChannel


async def send(reply) -> str:
    out = io.StringIO()
    await ConsoleChannel("ann", out=out).send(Delivery(outbox_id=1, chat_id="ann", reply=reply))
    return out.getvalue()


async def test_a_text_and_a_documents_caption_are_rendered_alike():
    course = literal("Safe_passwords [2024] *basics*")
    caption = f"Your certificate for **{course}**. Code: `AB12`"
    written = await send(Document("certificate.pdf", caption, path="/tmp/certificate.pdf"))
    assert written == (
        "bot> [document] certificate.pdf — /tmp/certificate.pdf\n"
        "     Your certificate for Safe_passwords [2024] *basics*. Code: AB12\n"
    )
    assert await send(Text(caption)) == "bot> Your certificate for Safe_passwords [2024] *basics*. Code: AB12\n"
