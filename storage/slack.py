"""Slack app installations and OAuth states: what lets one Lessonbot serve many Slack workspaces.

A workspace that installs the app through `/slack/install` gets one `SlackInstallation` row holding its bot token;
replies to that workspace are sent with it. `SlackOAuthState` rows are the one-time `state` values of installs in
progress (Slack's OAuth flow sends them back to `/slack/oauth_redirect`; each is accepted once, before it expires).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, UniqueConstraint, or_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from storage.models import Base, BigId, utcnow


class SlackInstallation(Base):
    """The latest installation of the app in one workspace, or in one Enterprise Grid org for an org-wide install.

    Absent ids are stored as '' rather than NULL so that (enterprise_id, team_id) is unique on both backends
    (NULLs never collide in a unique constraint). An org-wide install has team_id ''.
    """

    __tablename__ = "slack_installations"
    __table_args__ = (UniqueConstraint("enterprise_id", "team_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    enterprise_id: Mapped[str] = mapped_column(String(32), default="")
    team_id: Mapped[str] = mapped_column(String(32), default="")
    is_enterprise_install: Mapped[bool] = mapped_column(default=False)
    app_id: Mapped[str | None] = mapped_column(String(32))
    enterprise_name: Mapped[str | None] = mapped_column(String(200))
    enterprise_url: Mapped[str | None] = mapped_column(String(300))
    team_name: Mapped[str | None] = mapped_column(String(200))
    # the bot: what replies are sent with
    bot_token: Mapped[str | None] = mapped_column(String(300))
    bot_id: Mapped[str | None] = mapped_column(String(32))
    bot_user_id: Mapped[str | None] = mapped_column(String(32))
    bot_scopes: Mapped[str | None] = mapped_column(String(1000))
    bot_refresh_token: Mapped[str | None] = mapped_column(String(300))
    bot_token_expires_at: Mapped[datetime | None] = mapped_column()
    # the person who installed it (a user token only if the app ever asks for user scopes)
    user_id: Mapped[str | None] = mapped_column(String(32))
    user_token: Mapped[str | None] = mapped_column(String(300))
    user_scopes: Mapped[str | None] = mapped_column(String(1000))
    user_refresh_token: Mapped[str | None] = mapped_column(String(300))
    user_token_expires_at: Mapped[datetime | None] = mapped_column()
    incoming_webhook_url: Mapped[str | None] = mapped_column(String(500))
    incoming_webhook_channel: Mapped[str | None] = mapped_column(String(200))
    incoming_webhook_channel_id: Mapped[str | None] = mapped_column(String(32))
    incoming_webhook_configuration_url: Mapped[str | None] = mapped_column(String(500))
    token_type: Mapped[str | None] = mapped_column(String(32))
    installed_at: Mapped[datetime] = mapped_column(default=utcnow)


class SlackOAuthState(Base):
    """A `state` value handed to Slack when an install starts; consumed once when Slack redirects back."""

    __tablename__ = "slack_oauth_states"

    state: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


async def forget_installer(session: AsyncSession, team_id: str, user_id: str) -> None:
    """A person erased who installed the app in a workspace: the install stays (the bot's token is the workspace's),
    without who installed it or any token of theirs. The person is known by their own workspace (`team_id`); an
    install in an Enterprise Grid org (org-wide, stored without a workspace, or in another of the org's workspaces)
    names them by their user id alone, which is the same in every workspace of the org."""
    await session.execute(
        update(SlackInstallation)
        .where(or_(SlackInstallation.team_id == team_id, SlackInstallation.enterprise_id != ""),
               SlackInstallation.user_id == user_id)
        .values(user_id=None, user_token=None, user_scopes=None, user_refresh_token=None, user_token_expires_at=None)
    )
