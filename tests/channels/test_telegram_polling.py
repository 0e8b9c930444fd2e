"""Polling for local development, and the `lessonbot telegram` commands, against the local Bot API stand-in."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from bot.cli import build_parser
from bot.config import load_settings
from bot.core import Lessonbot
from channels.telegram import TelegramChannel
from channels.telegram.polling import PollingStopped, poll
from standins.telegram import TOKEN, Fault, button_update, text_update
from tests.support import standin  # noqa: F401 (the fixture)

SECRET = "poll-and-cli-secret"
CHAT = 1111111


@pytest.fixture
async def polling(settings, standin) -> AsyncIterator[tuple[asyncio.Task[None], Lessonbot]]:
    """`lessonbot telegram poll` as it runs: a Lessonbot around the channel, fed by getUpdates."""
    channel = TelegramChannel(token=TOKEN, api_base_url=standin.base_url, timeout=2.0)
    lessonbot = Lessonbot(settings, [channel])
    lessonbot.start()
    task = asyncio.create_task(poll(channel, lessonbot, timeout=1))
    yield task, lessonbot
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await lessonbot.stop()
    await channel.close()


async def test_polling_runs_a_conversation(polling, standin):
    task, lessonbot = polling
    standin.push_update(text_update("/start"))
    await standin.wait_for(lambda: standin.texts(CHAT))
    assert [call.method for call in standin.calls[:2]] == ["getMe", "deleteWebhook"]

    greeting = standin.called("sendMessage")[0]
    press = button_update(greeting, greeting.reply_markup["inline_keyboard"][0][0]["callback_data"])
    standin.push_update(press)
    standin.push_update(text_update("/help"))
    await standin.wait_for(lambda: len(standin.texts(CHAT)) == 3)
    [answered] = standin.called("answerCallbackQuery")
    assert answered.params["callback_query_id"] == press["callback_query"]["id"]
    assert standin.texts(CHAT)[2].startswith("Here is what you can send me")
    # Each update is confirmed (by the next offset) once recorded, so none is offered again.
    await standin.wait_for(lambda: standin.updates == [] and not task.done())


async def test_polling_survives_failures_and_redelivery(polling, standin):
    task, lessonbot = polling
    standin.fail("getUpdates", Fault.server_error())
    update = text_update("/help")
    standin.push_update(update)
    await standin.wait_for(lambda: standin.texts(CHAT))
    # Telegram offering the same update again (as after a crash before confirming) changes nothing.
    standin.push_update(update)
    await standin.wait_for(lambda: standin.updates == [])
    await lessonbot.settle()
    assert len(standin.texts(CHAT)) == 1
    assert len(standin.called("getUpdates", ok=False)) == 1 and not task.done()


async def test_a_second_consumer_stops_polling_with_a_reason(settings, standin):
    channel = TelegramChannel(token=TOKEN, api_base_url=standin.base_url)
    standin.fail("getUpdates", Fault(409, "Conflict: terminated by other getUpdates request"))
    lessonbot = Lessonbot(settings, [channel], process=False, dispatch=False)
    try:
        with pytest.raises(PollingStopped, match="another consumer"):
            await asyncio.wait_for(poll(channel, lessonbot, timeout=1), timeout=10)
    finally:
        await lessonbot.stop()
        await channel.close()


# lessonbot telegram set-webhook ---------------------------------------------------------------------------------------


async def run_command(argv: list[str], **settings: str) -> int:
    """Run a `lessonbot` subcommand as the command line does, in a thread (it runs its own event loop)."""
    args = build_parser().parse_args(argv)
    return await asyncio.to_thread(args.func, load_settings(_env_file=None, **settings), args)


async def test_set_webhook_registers_the_url_and_the_secret(standin, capsys):
    status = await run_command(
        ["telegram", "set-webhook", "https://bot.example.com"],
        telegram_bot_token=TOKEN, telegram_webhook_secret=SECRET, telegram_api_base_url=standin.base_url,
    )
    assert status == 0
    assert standin.webhook is not None
    assert standin.webhook["url"] == "https://bot.example.com/webhooks/telegram"
    assert standin.webhook["secret_token"] == SECRET
    assert json.loads(standin.webhook["allowed_updates"]) == [
        "message", "callback_query", "pre_checkout_query", "my_chat_member"]
    assert "https://bot.example.com/webhooks/telegram" in capsys.readouterr().out


async def test_set_webhook_defaults_to_the_public_base_url_and_keeps_a_given_path(standin):
    settings = dict(telegram_bot_token=TOKEN, telegram_webhook_secret=SECRET, telegram_api_base_url=standin.base_url)
    assert await run_command(["telegram", "set-webhook"], public_base_url="https://b.example.org", **settings) == 0
    assert standin.webhook["url"] == "https://b.example.org/webhooks/telegram"
    assert await run_command(["telegram", "set-webhook", "https://proxy.example.org/lb/tg"], **settings) == 0
    assert standin.webhook["url"] == "https://proxy.example.org/lb/tg"


@pytest.mark.parametrize(
    ("argv", "settings", "status", "says"),
    [
        (["http://bot.example.com"], {}, 2, "https://"),
        ([], {}, 2, "public address"),
        (["https://bot.example.com"], {"telegram_webhook_secret": ""}, 2, "TELEGRAM_WEBHOOK_SECRET"),
        (["https://bot.example.com"], {"telegram_bot_token": ""}, 2, "TELEGRAM_BOT_TOKEN"),
        (["https://bot.example.com"], {"telegram_bot_token": "999:not-this-one"}, 1, "rejected TELEGRAM_BOT_TOKEN"),
    ],
)
async def test_set_webhook_explains_what_is_wrong(argv, settings, status, says, standin, capsys):
    given = dict(telegram_bot_token=TOKEN, telegram_webhook_secret=SECRET, telegram_api_base_url=standin.base_url)
    assert await run_command(["telegram", "set-webhook", *argv], **(given | settings)) == status
    error = capsys.readouterr().err
    assert says in error
    assert "not-this-one" not in error
    assert standin.webhook is None
