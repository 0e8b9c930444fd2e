"""Slack installations and OAuth states kept in our database, for the Slack channel's installation store.

The rows are read and written through the serving process's own Database (`build_channels` hands it over), so on
SQLite they wait their turn for its one connection like every other session. This module speaks plain dicts whose
keys are Slack's own installation field names (`team_id`, `bot_token`, …); channels/slack/store.py wraps it in
slack_sdk's `AsyncInstallationStore` / `AsyncOAuthStateStore` interfaces.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update

from bot.channel import CannotRecord
from storage.db import Database, unreachable
from storage.models import utcnow
from storage.queries import insert_ignoring_conflicts, rows_affected
from storage.slack import SlackInstallation, SlackOAuthState

FIELDS = tuple(
    column.key for column in SlackInstallation.__table__.columns if column.key not in ("id", "enterprise_id", "team_id")
)
BOT_FIELDS = (
    "app_id", "enterprise_name", "team_name", "bot_token", "bot_id", "bot_user_id", "bot_scopes",
    "bot_refresh_token", "bot_token_expires_at", "is_enterprise_install", "installed_at",
)
log = logging.getLogger(__name__)

USER_FIELDS = ("user_id", "user_token", "user_scopes", "user_refresh_token", "user_token_expires_at")


def _key(enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None) -> tuple[str, str]:
    """The row key: an org-wide install is keyed by its org alone (team_id '')."""
    if is_enterprise_install or not team_id:
        return enterprise_id or "", ""
    return enterprise_id or "", team_id


def _matching(
    enterprise_id: str | None, team_id: str | None, is_enterprise_install: bool | None
) -> tuple[Any, ...] | None:
    """Which row serves a workspace. Workspace ids are unique across Slack, so a workspace is matched by its team id
    whatever org it belongs to (sending knows only the team id); an org-wide install by its org id."""
    if team_id and not is_enterprise_install:
        return (SlackInstallation.team_id == team_id,)
    if enterprise_id:
        return (SlackInstallation.enterprise_id == enterprise_id, SlackInstallation.team_id == "")
    return None


def _as_record(row: SlackInstallation) -> dict[str, Any]:
    record = {name: getattr(row, name) for name in FIELDS}
    record["enterprise_id"] = row.enterprise_id or None
    record["team_id"] = row.team_id or None
    return record


class SlackInstallations:
    """Installations, one row per workspace (or org-wide install; the latest wins, its bot token with it), and the
    one-time `state` values of installs in progress, in the process's database (which its owner closes)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # installations ----------------------------------------------------------------------------------------------

    async def save(self, fields: Mapping[str, Any], *, bot_only: bool = False) -> None:
        """Insert or update the installation keyed by (enterprise_id, team_id); `bot_only` leaves installer fields."""
        key = _key(fields.get("enterprise_id"), fields.get("team_id"), fields.get("is_enterprise_install"))
        names = BOT_FIELDS if bot_only else FIELDS
        values = {name: fields[name] for name in names if name in fields}
        values.setdefault("installed_at", utcnow())
        values["is_enterprise_install"] = bool(values.get("is_enterprise_install"))
        async with self.db.transaction() as session:
            # Insert-or-nothing, then update: race-free on both backends when two installs of a workspace cross.
            await session.execute(
                insert_ignoring_conflicts(
                    session, SlackInstallation, {"enterprise_id": key[0], "team_id": key[1], **values}
                )
            )
            await session.execute(
                update(SlackInstallation)
                .where(SlackInstallation.enterprise_id == key[0], SlackInstallation.team_id == key[1])
                .values(**values)
            )

    async def find(
        self,
        *,
        enterprise_id: str | None,
        team_id: str | None,
        is_enterprise_install: bool | None = False,
        urgent: bool = False,
    ) -> dict[str, Any] | None:
        """The installation serving a workspace (or org), or None. `urgent`: a platform waits for the answer, and
        is told to try again (CannotRecord: a 503) while the database is away."""
        where = _matching(enterprise_id, team_id, is_enterprise_install)
        if where is None:
            return None
        try:
            async with self.db.sessions(urgent=urgent) as session:
                row = await session.scalar(
                    select(SlackInstallation).where(*where).order_by(SlackInstallation.installed_at.desc()).limit(1)
                )
        except Exception as exc:
            if not (urgent and unreachable(exc)):
                raise
            log.warning("the installation of Slack workspace %s could not be read (the database is away): %s",
                        team_id or enterprise_id, f"{type(exc).__name__}"[:100])
            raise CannotRecord("the workspace could not be looked up just now: try again in a few seconds") from None
        return None if row is None else _as_record(row)

    async def delete(self, *, enterprise_id: str | None, team_id: str | None, user_id: str | None = None) -> None:
        """Forget a workspace's installation; with `user_id`, only that installer's user token."""
        where = _matching(enterprise_id, team_id, None)
        if where is None:
            return
        async with self.db.transaction() as session:
            if user_id is None:
                await session.execute(delete(SlackInstallation).where(*where))
            else:
                await session.execute(
                    update(SlackInstallation)
                    .where(*where, SlackInstallation.user_id == user_id)
                    .values(**{name: None for name in USER_FIELDS if name != "user_id"})
                )

    async def delete_bot(self, *, enterprise_id: str | None, team_id: str | None) -> None:
        """Forget the bot token (the workspace revoked it); the row stays for the installer's record."""
        where = _matching(enterprise_id, team_id, None)
        if where is None:
            return
        async with self.db.transaction() as session:
            await session.execute(
                update(SlackInstallation)
                .where(*where)
                .values(bot_token=None, bot_refresh_token=None, bot_token_expires_at=None)
            )

    # OAuth states -----------------------------------------------------------------------------------------------

    async def issue_state(self, *, expires_in: float) -> str:
        state = secrets.token_urlsafe(32)
        now = utcnow()
        async with self.db.transaction() as session:
            await session.execute(delete(SlackOAuthState).where(SlackOAuthState.expires_at < now))
            session.add(SlackOAuthState(state=state, expires_at=now + timedelta(seconds=expires_in)))
        return state

    async def consume_state(self, state: str) -> bool:
        """True once for a state issued here and not yet expired; False for anything else."""
        if not state or len(state) > 64:
            return False
        async with self.db.transaction() as session:
            result = await session.execute(
                delete(SlackOAuthState).where(SlackOAuthState.state == state, SlackOAuthState.expires_at >= utcnow())
            )
            return rows_affected(result) == 1
