"""Slack's shared fixtures: the Slack Web API stand-in, and settings that point a Lessonbot at it with one workspace's
bot token. A test module that needs the stand-in to know more (a channel's members) defines its own `standin`;
`slack_settings` then points at that one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.config import Settings
from standins.slack import BOT_TOKEN, SIGNING_SECRET, SlackStandIn


@pytest.fixture
async def standin() -> AsyncIterator[SlackStandIn]:
    async with SlackStandIn() as server:
        yield server


@pytest.fixture
def slack_settings(settings: Settings, standin: SlackStandIn) -> Settings:
    """One workspace (SLACK_BOT_TOKEN), its Web API at the stand-in, the web chat off."""
    return settings.model_copy(update={
        "slack_signing_secret": SIGNING_SECRET,
        "slack_bot_token": BOT_TOKEN,
        "slack_api_base_url": standin.base_url,
        "web_chat_enabled": False,
    })
