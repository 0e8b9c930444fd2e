"""The member sync reads each member's time zone from their profile; one this machine cannot read is not stored (it
would stand for UTC without a word): the member's lessons and invitation take the team's zone."""

from __future__ import annotations

from sqlalchemy import select

from bot.channel import ChatMember
from storage.learners import readable_zone
from storage.models import ChannelIdentity, User
from tests.dialogs.test_personal import Members, admin_bot, direct_team, sync  # noqa: F401 (admin_bot: a fixture)


def test_a_zone_is_readable_when_this_machine_knows_it():
    assert readable_zone("America/Bogota") == "America/Bogota"
    assert readable_zone("UTC") == "UTC" and readable_zone("UTC+05:30") == "UTC+05:30"
    assert readable_zone("Mars/Olympus_Mons") is None and readable_zone("") is None and readable_zone(None) is None


class MemberFarAway(Members):
    async def member_profile(self, sender_id: str) -> ChatMember:
        return ChatMember(sender_id=sender_id, name="Carl Weiss", timezone="Mars/Olympus_Mons",
                          direct_chat=self.direct_chat)


async def test_a_profile_zone_this_machine_cannot_read_gives_way_to_the_teams(admin_bot):
    bot, channel = admin_bot
    await sync(bot, await direct_team(bot), MemberFarAway("carl", "carl-dm"))
    async with bot.db.sessions() as session:
        carl = await session.scalar(select(User).join(ChannelIdentity, ChannelIdentity.user_id == User.id)
                                    .where(ChannelIdentity.external_id == "carl"))
    assert carl.timezone is None  # not Mars: the team's zone, UTC here, when they start
    [invitation] = channel.texts("carl-dm")
    assert "Mars" not in invitation and "UTC" in invitation
