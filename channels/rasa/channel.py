"""Sending to a Rasa assistant's users what they did not ask for just now: a lesson at their hour, a nudge, a
broadcast.

Rasa has no "send this text" endpoint; it has `POST /conversations/{id}/trigger_intent`, which puts an intent into
the conversation as if the person had said it, predicts the next action and sends what it says to the channel
named by `output_channel` (`latest`: where the person last wrote). So a reply goes as the intent
`RASA_TRIGGER_INTENT` (EXTERNAL_lessonbot_message by default) with the reply itself, as Rasa's bot message in JSON,
in the entity `lessonbot_message`; the example domain's rule answers that intent with `action_lessonbot_deliver`,
which says it (bot/rasa_actions.py). The dispatcher calls `send` at `RASA_SENDS_PER_SECOND` at most.

The entity is sealed: "SEAL.JSON", the seal an HMAC of the JSON under a key derived from SECRET_KEY (`MessageSeal`),
which the action server holds too. A person can type the intent with any entity they like (Rasa reads
`/EXTERNAL_lessonbot_message{…}` without its model, as it reads our buttons): without the seal, the action says
nothing, so no one makes the assistant say their words as Lessonbot's.

The sealed reply carries its outbox id (`REPLY_KEY`), so the same reply is the same entity each time it is sent: a
send that Rasa acted on but answered after our timeout is tried again, and the action says nothing the second time
(it finds the first in the conversation's tracker, bot/rasa_actions.py). Rasa's trigger_intent takes no message id
of its own.

Outcomes, as the dispatcher reads them: 2xx sent; 429 → RateLimited (Retry-After); a timeout, a dropped connection
or a 5xx → TransientSendError; 401/403 (RASA_TOKEN), 404 (the API is off, or the intent is not in the domain) and
other 4xx → PermanentSendError, with what to fix.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any
from urllib.parse import quote

import httpx

from bot.channel import Delivery, PermanentSendError, RateLimit, RateLimited, TransientSendError
from channels.rasa.files import FileLinks, document_link
from channels.rasa.render import bot_message

log = logging.getLogger(__name__)

MESSAGE_ENTITY = "lessonbot_message"  # the entity of the triggered intent that carries the reply
REPLY_KEY = "lessonbot_reply"  # in the sealed reply: its outbox id, the same at every try of its send
SEAL_CHARS = 32


class MessageSeal:
    """Seals the reply a triggered intent carries, and opens it: only a reply Lessonbot sealed is said."""

    def __init__(self, secret_key: str) -> None:
        self._key = hashlib.sha256(b"lessonbot rasa message\0" + secret_key.encode()).digest()

    def _signature(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()[:SEAL_CHARS]

    def seal(self, message: dict[str, Any]) -> str:
        text = json.dumps(message, ensure_ascii=False)
        return f"{self._signature(text)}.{text}"

    def opened(self, carried: object) -> dict[str, Any] | None:
        """The reply a sealed entity carries; None for one not sealed here (typed by a person, or another key)."""
        if not isinstance(carried, str):
            return None
        signature, _, text = carried.partition(".")
        if not hmac.compare_digest(signature.encode(), self._signature(text).encode()):
            return None
        try:
            message = json.loads(text)
        except ValueError:
            return None
        return message if isinstance(message, dict) else None


class RasaChannel:
    name = "rasa"

    def __init__(
        self,
        *,
        server_url: str,
        seal: MessageSeal,
        token: str = "",
        intent: str = "EXTERNAL_lessonbot_message",
        output_channel: str = "latest",
        sends_per_second: float = 20.0,
        timeout: float = 10.0,
        files: FileLinks | None = None,
    ) -> None:
        """`server_url`: the Rasa server (started with `--enable-api`); `token`: its `--auth-token`, sent as Rasa
        expects it, in the query string; `files`: the links of documents (none: a document goes as its caption)."""
        self.server_url = server_url.rstrip("/")
        self.seal = seal
        self.token = token
        self.intent = intent
        self.output_channel = output_channel
        self.sends_per_second = sends_per_second
        self.timeout = timeout
        self.files = files
        self._client: httpx.AsyncClient | None = None

    def rate_limits(self, chat_id: str) -> tuple[RateLimit, ...]:
        """Rasa publishes no limit: ours (RASA_SENDS_PER_SECOND) keeps a burst (a broadcast) from flooding it."""
        if self.sends_per_second < 1:  # one send every so many seconds
            return (RateLimit("rasa", 1, 1 / self.sends_per_second, shared=True),)
        return (RateLimit("rasa", round(self.sends_per_second), 1.0, shared=True),)

    async def send(self, delivery: Delivery) -> str:
        message = bot_message(delivery.reply, link=document_link(self.files, delivery.chat_id, delivery.outbox_id))
        if message is None:
            raise PermanentSendError(f"a {type(delivery.reply).__name__} cannot be shown in a Rasa assistant")
        params = {"output_channel": self.output_channel}
        if self.token:
            params["token"] = self.token
        url = f"{self.server_url}/conversations/{quote(delivery.chat_id, safe='')}/trigger_intent"
        sealed = self.seal.seal({**message, REPLY_KEY: delivery.outbox_id})
        body = {"name": self.intent, "entities": {MESSAGE_ENTITY: sealed}}
        try:
            response = await self._http().post(url, params=params, json=body)
        except httpx.TimeoutException:
            raise TransientSendError("the Rasa server did not answer in time") from None
        except httpx.HTTPError as exc:
            raise TransientSendError(f"the Rasa server could not be reached: {type(exc).__name__}") from None
        status = response.status_code
        if status < 300:
            return f"rasa-{delivery.outbox_id}"
        if status == 429:
            raise RateLimited(_retry_after_seconds(response.headers.get("Retry-After")), "the Rasa server answered 429")
        if status >= 500:
            raise TransientSendError(f"the Rasa server answered {status}")
        if status in (401, 403):
            raise PermanentSendError(f"the Rasa server refused the token ({status}): check RASA_TOKEN")
        if status == 404:
            raise PermanentSendError(
                f"the Rasa server answered 404: is it run with --enable-api, and is the intent {self.intent} "
                "(RASA_TRIGGER_INTENT) in its domain?"
            )
        raise PermanentSendError(f"the Rasa server refused the message ({status}): {response.text[:300]}")

    def _http(self) -> httpx.AsyncClient:
        """Made on first use, inside the running loop."""
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _retry_after_seconds(value: str | None) -> float:
    """Retry-After in seconds; 1 s when absent or not a number."""
    try:
        return max(0.0, float(value)) if value else 1.0
    except ValueError:
        return 1.0
