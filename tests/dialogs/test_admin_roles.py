"""Admin roles kept in the database: an owner gives and takes them in chat, each command checks the role it needs
(and its course or workspace, for a scoped role), and every change and refusal is audited."""

from __future__ import annotations

import pytest
from sqlalchemy import literal, select

from bot.core import Lessonbot
from dialogs.roles import ADMIN, AUTHOR, EVERYWHERE, OWNER, SUPPORT, Grant, RoleError, Scope, allows, parse_grant
from storage.admins import AdminRole, add_role, remember_roles, remove_role, roles_column, roles_of
from storage.models import AdminAuditEntry
from tests.dialogs.learning_support import import_sample
from tests.support import RecordingChannel, Transcript


@pytest.fixture
async def bot(settings):
    channel = RecordingChannel()
    lessonbot = Lessonbot(settings.model_copy(update={"admins": ("test:boss",)}), [channel])
    await import_sample(lessonbot)
    yield lessonbot, channel
    await lessonbot.stop()


async def audit(bot: Lessonbot) -> list[tuple[str, str, str, str]]:
    async with bot.db.sessions() as session:
        rows = await session.scalars(select(AdminAuditEntry).order_by(AdminAuditEntry.id))
        return [(r.identity, r.command, r.arguments, r.outcome) for r in rows]


def test_one_table_says_what_each_role_may_do():
    course = Scope("course", "spot-phishing")
    assert allows(Grant(OWNER), "roles") and not allows(Grant(ADMIN), "roles")
    assert allows(Grant(SUPPORT), "learners") and not allows(Grant(SUPPORT), "broadcast")
    assert allows(Grant(AUTHOR, course), "access", course)
    assert not allows(Grant(AUTHOR, course), "access", Scope("course", "passwords"))
    assert not allows(Grant(AUTHOR, course), "access", EVERYWHERE)  # a scoped role never acts on everything
    assert allows(Grant(ADMIN), "access", course)  # an unscoped role covers every course
    with pytest.raises(RoleError, match="no role"):
        parse_grant("test:ann", "boss")
    with pytest.raises(RoleError, match="no scope"):
        parse_grant("test:ann", "author", "lesson:one")
    with pytest.raises(RoleError, match="no address"):
        parse_grant("ann", "support")
    with pytest.raises(RoleError, match="owner holds everywhere"):
        parse_grant("test:ann", "owner", "team:T01")
    # a WhatsApp number is named as its messages name it (E.164), however it was typed
    for typed in ("whatsapp:15551234567", "whatsapp:+1(555)123-4567", "whatsapp:0015551234567"):
        assert parse_grant(typed, "admin")[0] == "whatsapp:+15551234567"
    with pytest.raises(RoleError, match="no WhatsApp number"):
        parse_grant("whatsapp:ann", "admin")


async def test_a_role_given_to_a_whatsapp_number_typed_without_its_plus_holds(settings):
    owner, whatsapp = RecordingChannel(), RecordingChannel(name="whatsapp")
    lessonbot = Lessonbot(settings.model_copy(update={"admins": ("test:boss",)}), [owner, whatsapp])
    try:
        boss, person = Transcript(lessonbot, owner, chat="boss"), Transcript(lessonbot, whatsapp, chat="+15551234567")
        await person.say("hello")
        [granted] = await boss.say("/admin role grant whatsapp:1-555-123-4567 admin")
        assert granted == "whatsapp:+15551234567 is now admin."
        [stats] = await person.say("/admin stats")
        assert "admins only" not in stats
    finally:
        await lessonbot.stop()


async def test_an_owner_gives_a_role_and_its_holder_may_do_that_much(bot):
    lessonbot, channel = bot
    boss, ann = Transcript(lessonbot, channel, chat="boss"), Transcript(lessonbot, channel, chat="ann")
    [refused] = await ann.say("/admin stats")
    assert "admins only" in refused and "/admin role grant test:ann" in refused

    [granted] = await boss.say("/admin role grant test:ann support")
    assert granted == "test:ann is now support."
    [again] = await boss.say("/admin role grant test:ann support")
    assert again == "test:ann was already support."
    [stats] = await ann.say("/admin stats")
    assert stats.startswith("Learners:")
    [help_text] = await ann.say("/admin help")
    assert "/admin stats" in help_text and "/admin export" in help_text
    assert "/admin broadcast" not in help_text and "/admin role" not in help_text
    [no_broadcast] = await ann.say("/admin broadcast everyone Hello")
    assert no_broadcast.startswith("Your role does not allow /admin broadcast")
    [no_roles] = await ann.say("/admin role grant test:ann owner")
    assert no_roles.startswith("Your role does not allow /admin role")
    [listing] = await boss.say("/admin role list")
    assert "test:ann — support" in listing

    [revoked] = await boss.say("/admin role revoke test:ann support")
    assert revoked == "test:ann is no longer support."
    [refused_again] = await ann.say("/admin stats")
    assert "admins only" in refused_again
    [not_stored] = await boss.say("/admin role revoke test:boss owner")
    assert "ADMINS setting" in not_stored  # an owner by configuration is changed there

    assert await audit(lessonbot) == [
        ("test:ann", "stats", "", "denied"),
        ("test:boss", "role", "grant test:ann support", "ok"),
        ("test:boss", "role", "grant test:ann support", "ok"),
        ("test:ann", "stats", "", "ok"),
        ("test:ann", "help", "", "ok"),
        ("test:ann", "broadcast", "everyone Hello", "denied"),
        ("test:ann", "role", "grant test:ann owner", "denied"),
        ("test:boss", "role", "list", "ok"),
        ("test:boss", "role", "revoke test:ann support", "ok"),
        ("test:ann", "stats", "", "denied"),
        ("test:boss", "role", "revoke test:boss owner", "ok"),
    ]
    async with lessonbot.db.sessions() as session:
        assert list(await session.scalars(select(AdminRole))) == []


async def test_a_scoped_role_acts_on_its_own_course_or_workspace_only(bot):
    lessonbot, channel = bot
    boss, cleo = Transcript(lessonbot, channel, chat="boss"), Transcript(lessonbot, channel, chat="cleo")
    await boss.say("/admin role grant test:cleo author course:spot-phishing")
    await boss.say("/admin role grant test:cleo support team:T01")
    [other_course] = await cleo.say("/admin code passwords 5")
    assert other_course.startswith("Your role does not allow /admin code")
    [own_course] = await cleo.say("/admin code spot-phishing 5")
    assert not own_course.startswith("Your role")  # allowed: the command itself answers (a free course needs none)
    [other_people] = await cleo.say("/admin export telegram:12345")
    assert other_people.startswith("Your role does not allow /admin export")
    [own_people] = await cleo.say("/admin export slack:T01/U0NOBODY")
    assert own_people.startswith("No learner is known as")
    [everything] = await cleo.say("/admin stats")
    assert everything.startswith("Your role does not allow /admin stats")  # a scoped role sees no global counts
    [listing] = await boss.say("/admin role list")
    assert "test:cleo — author (course:spot-phishing)" in listing and "test:cleo — support (team:T01)" in listing
    outcomes = [(command, outcome) for identity, command, _args, outcome in await audit(lessonbot)
                if identity == "test:cleo"]
    assert outcomes == [("code", "denied"), ("code", outcomes[1][1]), ("export", "denied"), ("export", "invalid"),
                        ("stats", "denied")]


async def test_mistyped_role_commands_say_how_and_are_audited_as_invalid(bot):
    lessonbot, channel = bot
    boss = Transcript(lessonbot, channel, chat="boss")
    [usage] = await boss.say("/admin role give test:ann admin")
    assert usage.startswith("Usage: /admin role grant IDENTITY ROLE")
    [bad_role] = await boss.say("/admin role grant test:ann boss")
    assert bad_role == "'boss' is no role: choose owner, admin, author or support."
    [bad_scope] = await boss.say("/admin role grant test:ann author lesson:1")
    assert bad_scope.startswith("'lesson:1' is no scope")
    assert [outcome for *_rest, outcome in await audit(lessonbot)] == ["invalid", "invalid", "invalid"]


async def test_roles_read_with_the_turns_load_give_way_to_a_change_in_the_same_transaction(bot):
    """A turn's load reads the roles of the person who wrote with its first statement (`roles_column`); a role given
    or taken later in the same transaction is what `roles_of` then answers, not what was read."""
    lessonbot, _ = bot
    async with lessonbot.db.transaction() as session:
        await add_role(session, "test:ann", SUPPORT, "", by="test:boss")
    address = literal("test:") + literal("ann")
    async with lessonbot.db.transaction() as session:
        read = (await session.execute(select(roles_column(address)))).scalar()
        remember_roles(session, "test:ann", read)
        assert await roles_of(session, "test:ann") == [(SUPPORT, "")]
        await add_role(session, "test:ann", AUTHOR, "course:spot-phishing", by="test:boss")
        assert await roles_of(session, "test:ann") == [(SUPPORT, ""), (AUTHOR, "course:spot-phishing")]
        remember_roles(session, "test:ann", (await session.execute(select(roles_column(address)))).scalar())
        await remove_role(session, "test:ann", SUPPORT, "")
        assert await roles_of(session, "test:ann") == [(AUTHOR, "course:spot-phishing")]


async def test_a_listed_identity_shows_as_typed_never_as_a_link(bot):
    from channels.markdown import TELEGRAM_HTML, render

    lessonbot, channel = bot
    boss = Transcript(lessonbot, channel, chat="boss")
    await boss.say("/admin role grant test:[Verify-your-account](https://evil.example/x) support")
    await boss.say("/admin role list")
    shown = render(channel.sent["boss"][-1].text, TELEGRAM_HTML)  # as Telegram gets it
    assert "<a " not in shown and "test:[Verify-your-account](https://evil.example/x) — support" in shown


async def test_an_author_unpublishes_and_publishes_their_own_course_in_chat(bot):
    lessonbot, channel = bot
    boss, cleo = Transcript(lessonbot, channel, chat="boss"), Transcript(lessonbot, channel, chat="cleo")
    newcomer = Transcript(lessonbot, channel, chat="new")
    await boss.say("/admin role grant test:cleo author course:spot-phishing")
    [other_course] = await cleo.say("/admin unpublish passwords")
    assert other_course.startswith("Your role does not allow /admin unpublish")
    [done] = await cleo.say("/admin unpublish spot-phishing")
    assert done == ("“Spot the phish, five minutes a day” is unpublished: nobody new is offered it, and those taking "
                    "it keep it. Undo: /admin publish spot-phishing")
    [courses] = await newcomer.say("/courses")
    assert courses == "There are no courses to choose from yet. I'll be here when one is added."
    [again] = await cleo.say("/admin publish spot-phishing")
    assert again.startswith("“Spot the phish, five minutes a day” is published")
    assert "Spot the phish" in (await newcomer.say("/courses"))[0]
    [unknown] = await boss.say("/admin unpublish spot-phish")
    assert unknown == "There is no course 'spot-phish'. Courses: spot-phishing."
    [usage] = await boss.say("/admin unpublish")
    assert usage.startswith("Usage: /admin unpublish COURSE")
    outcomes = [(command, outcome) for identity, command, _args, outcome in await audit(lessonbot)
                if identity != "test:boss" or command != "role"]
    assert outcomes == [("unpublish", "denied"), ("unpublish", "ok"), ("publish", "ok"), ("unpublish", "invalid"),
                        ("unpublish", "invalid")]


def listed(help_text: str) -> list[str]:
    """The commands an /admin help answer lists."""
    return [line.split()[1] for line in help_text.splitlines()[1:]]


async def test_help_lists_what_the_role_may_run_where_it_holds_and_nothing_it_is_always_refused(bot):
    from dialogs.admin import SUBCOMMANDS

    lessonbot, channel = bot
    boss = Transcript(lessonbot, channel, chat="boss")
    sam, cat = Transcript(lessonbot, channel, chat="sam"), Transcript(lessonbot, channel, chat="cat")
    await boss.say("/admin role grant test:sam support team:T01")
    await boss.say("/admin role grant test:cat admin course:spot-phishing")
    for person, expected in ((sam, ["help", "dashboard", "export", "erase"]),
                             (cat, ["help", "dashboard", "grant", "revoke", "code", "publish", "unpublish"])):
        [help_text] = await person.say("/admin help")
        assert listed(help_text) == expected
        for name in SUBCOMMANDS.keys() - set(expected):  # each left out is refused, whatever follows it
            [refused] = await person.say(f"/admin {name}")
            assert refused.startswith(f"Your role does not allow /admin {name} here"), refused
    [everything] = await boss.say("/admin help")
    assert listed(everything) == list(SUBCOMMANDS)


async def test_a_scoped_author_who_mistypes_is_shown_the_usage_and_a_refusal_names_the_scope(bot):
    lessonbot, channel = bot
    boss, ann = Transcript(lessonbot, channel, chat="boss"), Transcript(lessonbot, channel, chat="ann")
    await ann.say("hello")
    await boss.say("/admin role grant test:ann author course:spot-phishing")
    for command, usage in (("/admin grant", "Usage: /admin grant"), ("/admin grant test:ann", "Usage: /admin grant"),
                           ("/admin code", "Usage: /admin code"), ("/admin code until=30d", "Usage: /admin code"),
                           ("/admin publish", "Usage: /admin publish"), ("/admin revoke", "Usage: /admin revoke")):
        [reply] = await ann.say(command)
        assert reply.startswith(usage), (command, reply)
    [done] = await ann.say("/admin unpublish Spot-Phishing")  # a course's id as typed, in any case
    assert done.startswith("“Spot the phish, five minutes a day” is unpublished")
    [granted] = await ann.say("/admin grant test:ann Spot-Phishing 7")
    assert granted.startswith("Granted “Spot the phish, five minutes a day” to learner")
    [other] = await ann.say("/admin code passwords 5")
    assert other == ("Your role does not allow /admin code here: it holds for course:spot-phishing only. Send "
                     "/admin help for the commands you may use.")
    outcomes = [outcome for identity, _command, _args, outcome in await audit(lessonbot) if identity == "test:ann"]
    assert outcomes == ["invalid"] * 6 + ["ok", "ok", "denied"]


async def test_a_role_that_could_never_hold_is_refused_and_one_stored_anyway_can_be_taken_away(bot):
    lessonbot, channel = bot
    boss, dee = Transcript(lessonbot, channel, chat="boss"), Transcript(lessonbot, channel, chat="dee")
    await dee.say("hello")
    assert await boss.say("/admin role grant telegran:12345 admin") == [
        "'telegran:12345' is on no channel Lessonbot has (console, web, telegram, whatsapp, slack, rasa, test): check "
        "how it is spelled."]
    for typed in ("Spot-Phishing", "spot-fishing"):
        assert await boss.say(f"/admin role grant test:dee author course:{typed}") == [
            f"There is no course '{typed}'. Courses: spot-phishing."]
    assert await boss.say("/admin role list") == [
        "No roles are stored yet: the owners are the identities in the ADMINS setting."]
    async with lessonbot.db.transaction() as session:  # stored before these checks were made
        await add_role(session, "test:dee", AUTHOR, "course:Spot-Phishing", by="test:boss")
    assert await boss.say("/admin role revoke test:dee author course:Spot-Phishing") == [
        "test:dee is no longer author (course:Spot-Phishing)."]
    assert [outcome for *_rest, outcome in await audit(lessonbot)] == ["invalid"] * 3 + ["ok", "ok"]
