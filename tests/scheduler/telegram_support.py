"""Someone writing to the bot in one Telegram chat as Telegram delivers it, through the webhook and the Bot API
stand-in, for the scheduler's tests that need Telegram's own updates."""

from __future__ import annotations

import json
from dataclasses import dataclass

import httpx

from channels.telegram import SECRET_HEADER
from standins.telegram import Call, TelegramStandIn, button_update, text_update

SECRET = "test-webhook-secret_0123456789"


@dataclass
class OnTelegram:
    """Someone writing to the bot in one Telegram chat (`chat`) as Telegram delivers it, and pressing its buttons
    there."""

    client: httpx.AsyncClient
    standin: TelegramStandIn
    user: dict
    chat: int

    async def post(self, update_: dict) -> None:
        response = await self.client.post("/webhooks/telegram", content=json.dumps(update_).encode(),
                                          headers={"content-type": "application/json", SECRET_HEADER: SECRET})
        assert response.status_code == 200, response.text

    async def _replies(self, before: int) -> list[str]:
        await self.standin.wait_for(lambda: len(self.standin.texts(self.chat)) > before)
        return self.standin.texts(self.chat)[before:]

    async def say(self, text: str) -> list[str]:
        before = len(self.standin.texts(self.chat))
        await self.post(text_update(text, chat_id=self.chat, user=self.user))
        return await self._replies(before)

    def sent_with(self, label: str) -> tuple[Call, str]:
        to_chat = [call for call in self.standin.called("sendMessage") if call.params["chat_id"] == str(self.chat)]
        for call in reversed(to_chat):
            for row in (call.reply_markup or {}).get("inline_keyboard", []):
                for button in row:
                    if button["text"] == label:
                        return call, button["callback_data"]
        raise AssertionError(f"no button {label!r} in {self.standin.texts(self.chat)[-3:]}")

    async def press(self, label: str) -> list[str]:
        call, data = self.sent_with(label)
        before = len(self.standin.texts(self.chat))
        await self.post(button_update(call, data, user=self.user))
        return await self._replies(before)


async def onboard_on_telegram(learner: OnTelegram) -> None:
    """The shortest onboarding: lessons at 08:00 in Lisbon every day, the sample course."""
    await learner.say("/start")
    await learner.press("Yes, let's start")
    await learner.press(learner.user["first_name"])
    await learner.say("Lisbon")
    await learner.press("Yes, that's right")
    await learner.press("Morning, 08:00")
    await learner.press("Every day")
    await learner.press("Spot the phish, five minutes a day")
    await learner.press("1 lesson (about 5 minutes)")
