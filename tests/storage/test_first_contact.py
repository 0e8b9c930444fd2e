"""A first contact's user and identity (storage.queries.first_contact): made at once, without looking again, and
only one of them kept when another transaction made the same person's identity first."""

from __future__ import annotations

from sqlalchemy import func, select

from storage.db import Database
from storage.models import ChannelIdentity, User
from storage.queries import first_contact


async def test_a_first_contact_makes_the_user_and_the_identity(database_url: str) -> None:
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            identity, user = await first_contact(session, "telegram", "4242", "Ana")
            assert (identity.channel, identity.external_id, identity.user_id) == ("telegram", "4242", user.id)
            assert user.display_name == "Ana"
        async with db.sessions() as session:
            stored = await session.scalar(select(ChannelIdentity).where(ChannelIdentity.external_id == "4242"))
            assert stored is not None and stored.user_id == user.id
    finally:
        await db.dispose()


async def test_an_identity_made_meanwhile_by_another_transaction_stands_and_the_spare_user_goes(
    database_url: str,
) -> None:
    """The caller's load found no identity, but another transaction (another chat of the same person) committed
    one since: that one is returned with its user, and the user made for nothing is not left behind."""
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            _, first = await first_contact(session, "telegram", "7", "Bo")
        async with db.transaction() as session:
            identity, user = await first_contact(session, "telegram", "7", "Bo (again)")
            assert identity.user_id == first.id and user.id == first.id and user.display_name == "Bo"
        async with db.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(User)) == 1
            assert await session.scalar(select(func.count()).select_from(ChannelIdentity)) == 1
    finally:
        await db.dispose()
