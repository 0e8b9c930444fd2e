"""slack_sdk's installation and OAuth state store interfaces, over the installations in our database.

Bolt's OAuth flow and authorization, and the channel's sending side, use the rows of channels/slack/installations.py
through slack_sdk's own `AsyncInstallationStore` / `AsyncOAuthStateStore`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize, AsyncInstallationStoreAuthorize
from slack_bolt.context.async_context import AsyncBoltContext
from slack_sdk.errors import SlackApiError
from slack_sdk.oauth.installation_store import Bot, Installation
from slack_sdk.oauth.installation_store.async_installation_store import AsyncInstallationStore
from slack_sdk.oauth.state_store.async_state_store import AsyncOAuthStateStore

from bot.channel import CannotRecord
from channels.slack.installations import SlackInstallations

log = logging.getLogger(__name__)

# What kept the installation store from answering during this request's authorization, if anything (see
# StoreAuthorize): the store's lookups run inside Bolt's, in the request's own task.
_store_away: ContextVar[CannotRecord | None] = ContextVar("slack_installation_store_away", default=None)

# What auth.test answers for a bot token Slack no longer takes (revoked, its app removed, its workspace gone):
# the app is not installed there any more. Any other error (a 429, Slack's own trouble) is Slack's to retry.
TOKEN_REFUSED = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
                           "team_access_not_granted"})

# How long Slack's yes to the bot token (auth.test) is taken on trust before it is asked again
TOKEN_CHECKED_SECONDS = 600.0

# The keyword arguments `Bot(...)` accepts, out of an installation record's fields.
_BOT_ARGUMENTS = (
    "app_id", "enterprise_id", "enterprise_name", "team_id", "team_name", "bot_token", "bot_id", "bot_user_id",
    "bot_scopes", "bot_refresh_token", "bot_token_expires_at", "is_enterprise_install", "installed_at",
)


class SlackInstallationStore(AsyncInstallationStore):
    """Bot installations per workspace; Bolt authorizes each request with it and `send` finds the token in it.

    `urgent`: lookups made while a platform waits (Bolt's, before Slack's acknowledgement) go first on SQLite's one
    connection (see storage.db.Turnstile)."""

    def __init__(self, records: SlackInstallations, *, urgent: bool = False) -> None:
        self.records = records
        self.urgent = urgent

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_save(self, installation: Installation) -> None:
        await self.records.save(installation.to_dict())

    async def async_save_bot(self, bot: Bot) -> None:
        await self.records.save(bot.to_dict(), bot_only=True)

    async def async_find_bot(
        self, *, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None = False
    ) -> Bot | None:
        record = await self._find(enterprise_id, team_id, is_enterprise_install)
        if record is None or not record.get("bot_token"):
            return None
        return Bot(**{name: record[name] for name in _BOT_ARGUMENTS})

    async def async_find_installation(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None = None,
        is_enterprise_install: bool | None = False,
    ) -> Installation | None:
        record = await self._find(enterprise_id, team_id, is_enterprise_install)
        if record is None or (user_id is not None and record.get("user_id") != user_id):
            return None
        return Installation(**record)

    async def _find(
        self, enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None
    ) -> dict[str, Any] | None:
        try:
            return await self.records.find(
                enterprise_id=enterprise_id, team_id=team_id, is_enterprise_install=is_enterprise_install,
                urgent=self.urgent,
            )
        except CannotRecord as away:
            _store_away.set(away)
            raise

    async def async_delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self.records.delete_bot(enterprise_id=enterprise_id, team_id=team_id)

    async def async_delete_installation(
        self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None
    ) -> None:
        await self.records.delete(enterprise_id=enterprise_id, team_id=team_id, user_id=user_id)

    async def async_delete_all(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        await self.records.delete(enterprise_id=enterprise_id, team_id=team_id)


class NotInstalled(Exception):
    """The request's workspace has no installation of the app (removed, or never stored)."""


class StoreAuthorize(AsyncInstallationStoreAuthorize):
    """Bolt's authorization from the installation store, except that a store that cannot answer just now (the
    database away) is not taken for a workspace without the app: Bolt catches whatever the store raises, logs it and
    answers as if the app were not installed, and Slack's request would be acknowledged and lost. The store notes
    its CannotRecord, and it is raised after Bolt's answer: the request is refused with a 503 that Slack retries.
    A workspace without the app raises NotInstalled, for the listeners' error handler to tell the person so in
    their language (Bolt's own answer is one sentence for everyone)."""

    async def __call__(self, **kwargs: Any) -> AuthorizeResult:
        reset = _store_away.set(None)
        try:
            result = await super().__call__(**kwargs)
            away = _store_away.get()
        finally:
            _store_away.reset(reset)
        if result is None and away is not None:
            raise away
        if result is None:
            raise NotInstalled(f"no installation for {kwargs.get('enterprise_id') or kwargs.get('team_id')}")
        return result


class TokenUnchecked(Exception):
    """Slack did not say whether the app's bot token is good (auth.test rate-limited, or Slack's own trouble): the
    request fails with a 500, and Slack delivers it again."""


class TokenAuthorize(AsyncAuthorize):
    """One workspace's app (SLACK_BOT_TOKEN): every request authorized with that token, as Bolt's own single-workspace
    authorization does (auth.test, called until it answers), except that a token Slack refuses (TOKEN_REFUSED)
    raises NotInstalled, for the listeners' error handler to tell the person so in their language (Bolt's own answer
    is one sentence for everyone). Slack's yes is kept for TOKEN_CHECKED_SECONDS, and forgotten at once when Slack
    says the app was uninstalled (`forget`), so a token taken back is found out: at once in the process that heard
    it, within those minutes in the others."""

    def __init__(self, token: str, *, now: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.token = token
        self._now = now
        self._answer: Any = None  # auth.test's answer, while it was yes
        self._checked_at = 0.0

    def forget(self) -> None:
        """The app was uninstalled, or its bot token revoked: ask Slack again before the next request."""
        self._answer = None

    async def __call__(
        self, *, context: AsyncBoltContext, enterprise_id: str | None, team_id: str | None, user_id: str | None,
        actor_enterprise_id: str | None = None, actor_team_id: str | None = None, actor_user_id: str | None = None,
    ) -> AuthorizeResult:
        if self._answer is None or self._now() - self._checked_at > TOKEN_CHECKED_SECONDS:
            self._answer = None
            try:
                self._answer = await context.client.auth_test(token=self.token)
                self._checked_at = self._now()
            except SlackApiError as exc:
                error = exc.response.get("error") if exc.response is not None else None
                if error in TOKEN_REFUSED:
                    raise NotInstalled(f"the app's bot token was refused by Slack ({error})") from None
                raise TokenUnchecked(f"auth.test failed ({error or exc}): Slack delivers the request again") from exc
        answer = self._answer
        return AuthorizeResult(
            enterprise_id=answer.get("enterprise_id"), team_id=answer.get("team_id"), bot_id=answer.get("bot_id"),
            bot_user_id=answer.get("user_id"), bot_token=self.token, user_id=user_id,
            bot_scopes=answer.headers.get("x-oauth-scopes"),
        )


class SlackOAuthStateStore(AsyncOAuthStateStore):
    """The install flow's `state` values, in the database so any web worker can finish an install another began."""

    def __init__(self, records: SlackInstallations, *, expiration_seconds: int = 600) -> None:
        self.records = records
        self.expiration_seconds = expiration_seconds

    @property
    def logger(self) -> logging.Logger:
        return log

    async def async_issue(self, *args: Any, **kwargs: Any) -> str:
        return await self.records.issue_state(expires_in=self.expiration_seconds)

    async def async_consume(self, state: str) -> bool:
        return await self.records.consume_state(state)
