"""The dashboard over HTTP: sign-in by the link the bot sends, the session cookie, CSRF, what each role sees, CSV,
and that a signed-out browser or a person without a role sees no number."""

from __future__ import annotations

import csv
import io
import re
from contextlib import asynccontextmanager
from datetime import timedelta
from html import unescape

import httpx
from sqlalchemy import select, update

from bot.core import Lessonbot
from storage.admins import AdminSession
from storage.knowledge import KnowledgeQuestion
from storage.models import AdminAuditEntry, ChannelIdentity, User, utcnow
from tests.dialogs.learning_support import Learning, import_sample, onboard
from tests.support import RecordingChannel, Transcript, running

LINK = re.compile(r"/admin/sign-in\?link=(\S+)")


@asynccontextmanager
async def dashboard(settings):
    channel = RecordingChannel()
    async with running(settings.model_copy(update={"admins": ("test:boss",)}), channels=[channel]) as (client, bot):
        await import_sample(bot)
        yield client, bot, channel


async def link_for(bot: Lessonbot, channel: RecordingChannel, chat: str) -> str:
    [reply] = await Transcript(bot, channel, chat=chat).say("/admin dashboard")
    match = LINK.search(reply)
    assert match, reply
    return match[1]


async def sign_in(client: httpx.AsyncClient, bot: Lessonbot, channel: RecordingChannel, chat: str = "boss") -> str:
    link = await link_for(bot, channel, chat)
    page = await client.get("/admin/sign-in", params={"link": link})
    assert page.status_code == 200 and 'name="link"' in page.text  # a GET signs nobody in (link previews)
    signed = await client.post("/admin/sign-in", data={"link": link})
    assert signed.status_code == 303 and signed.headers["location"] == "/admin"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/admin" in cookie and "Max-Age=" in cookie
    return link


async def erased_on_the_dashboard(client: httpx.AsyncClient, address: str) -> httpx.Response:
    """The signed-in viewer finds `address` ("test:ann") with the learner search and erases them: the answer."""
    found = await client.get("/admin/learners", params={"q": address})
    user_id = re.search(r'href="/admin/learners/(\d+)"', found.text)[1]
    page = await client.get(f"/admin/learners/{user_id}")
    return await client.post(f"/admin/learners/{user_id}/erase", data={**form_of(page.text, "erase"), "confirm": "yes"})


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', html)[1]


def form_of(html: str, action: str) -> dict[str, str]:
    """The hidden fields of a learner page's form (`erase`, `grant`): its CSRF token, and who the page is about."""
    form = re.search(rf'action="/admin/learners/\d+/{action}">(.*?)</form>', html)[1]
    return dict(re.findall(r'type="hidden" name="(\w+)" value="([^"]*)"', form))


def export_link(html: str) -> str:
    """A learner page's link to their export."""
    return unescape(re.search(r'href="([^"]+/export[^"]*)"', html)[1])


async def export_of(client: httpx.AsyncClient, user_id: int | str) -> httpx.Response:
    """The export of a learner, as their page links to it."""
    return await client.get(export_link((await client.get(f"/admin/learners/{user_id}")).text))


async def audit(bot: Lessonbot, command: str) -> list[tuple[str, str]]:
    async with bot.db.sessions() as session:
        rows = await session.scalars(select(AdminAuditEntry).where(AdminAuditEntry.command == command)
                                     .order_by(AdminAuditEntry.id))
        return [(row.identity, row.outcome) for row in rows]


async def test_a_signed_out_browser_sees_nothing_and_a_link_works_once(settings):
    async with dashboard(settings) as (client, bot, channel):
        for path in ("/admin", "/admin/overview", "/admin/learning/funnel.csv", "/admin/learners/1"):
            response = await client.get(path)
            assert response.status_code == 401, path
            assert "Sign in first" in response.text and "<table" not in response.text
        assert response.headers["content-security-policy"].startswith("default-src 'none'")

        link = await sign_in(client, bot, channel)
        overview = await client.get("/admin/overview")
        assert overview.status_code == 200 and "Messages in and replies out" in overview.text
        assert "test:boss" in overview.text

        stranger = httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))
        again = await stranger.post("/admin/sign-in", data={"link": link})
        assert again.status_code == 403 and "does not work" in again.text
        assert (await stranger.get("/admin/overview")).status_code == 401
        assert await audit(bot, "dashboard-sign-in") == [("test:boss", "ok"), ("(unknown)", "denied")]

        await client.post("/admin/sign-out", data={"csrf": csrf_of(overview.text)})
        assert (await client.get("/admin/overview")).status_code == 401


async def test_an_expired_link_and_a_person_without_a_role_get_nothing(settings):
    async with dashboard(settings) as (client, bot, channel):
        [refused] = await Transcript(bot, channel, chat="ann").say("/admin dashboard")
        assert "admins only" in refused and "/admin/sign-in" not in refused
        link = await link_for(bot, channel, "boss")
        async with bot.db.transaction() as session:
            await session.execute(update(AdminSession).values(link_expires_at=utcnow() - timedelta(seconds=1)))
        assert (await client.post("/admin/sign-in", data={"link": link})).status_code == 403


async def test_a_role_taken_away_takes_effect_at_the_next_click(settings):
    async with dashboard(settings) as (client, bot, channel):
        boss = Transcript(bot, channel, chat="boss")
        await boss.say("/admin role grant test:ann support")
        await sign_in(client, bot, channel, chat="ann")
        overview = await client.get("/admin/overview")
        assert overview.status_code == 200
        assert 'href="/admin/learners"' in overview.text and 'href="/admin/revenue"' not in overview.text
        assert (await client.get("/admin/revenue")).status_code == 403
        await boss.say("/admin role revoke test:ann support")
        gone = await client.get("/admin/overview")
        assert gone.status_code == 403 and "<table" not in gone.text


async def test_pages_show_the_learning_and_each_figure_downloads_as_csv(settings):
    async with dashboard(settings) as (client, bot, channel):
        ann = Learning(bot, channel, chat="ann")
        await onboard(ann)
        await ann.press("Start my first lesson")
        await sign_in(client, bot, channel)
        for page in ("overview", "learning", "engagement", "knowledge", "learners", "revenue"):
            response = await client.get(f"/admin/{page}")
            assert response.status_code == 200, page
            assert '<meta name="viewport"' in response.text
        learning = await client.get("/admin/learning")
        assert "<svg" in learning.text and "The way through" in learning.text
        funnel = await client.get("/admin/learning/funnel.csv")
        assert funnel.headers["content-type"].startswith("text/csv")
        assert "attachment" in funnel.headers["content-disposition"]
        rows = list(csv.reader(io.StringIO(funnel.text)))
        assert rows[0] == ["stage", "learners"] and ["set up", "1"] in rows
        assert (await client.get("/admin/learning/nothing.csv")).status_code == 404

        found = await client.get("/admin/learners", params={"q": "an"})
        assert 'href="/admin/learners/' in found.text
        user_id = re.search(r'href="/admin/learners/(\d+)"', found.text)[1]
        timeline = await client.get(f"/admin/learners/{user_id}")
        assert timeline.status_code == 200 and "test:ann" in timeline.text and "lesson" in timeline.text
        exported = await client.get(export_link(timeline.text))
        assert exported.json()["profile"]["addresses"] == ["test:ann"]


async def test_a_right_to_left_name_in_the_learner_search_leaves_the_address_beside_it_as_it_is(settings):
    """In the search's list a name is set apart from the address after it (`<bdi>`): "سارة 2" followed by
    telegram:12345 does not read as the name with its number carried over to the other side."""
    async with dashboard(settings) as (client, bot, channel):
        async with bot.db.transaction() as session:
            user = User(display_name="سارة 2")
            session.add(user)
            await session.flush()
            session.add(ChannelIdentity(user_id=user.id, channel="telegram", external_id="12345"))
        await sign_in(client, bot, channel)
        found = await client.get("/admin/learners", params={"q": "سارة"})
        assert f'<a href="/admin/learners/{user.id}"><bdi>سارة 2</bdi></a> <small>telegram:12345</small>' in found.text


async def test_every_form_needs_the_session_s_csrf_token(settings):
    async with dashboard(settings) as (client, bot, channel):
        ann = Learning(bot, channel, chat="ann")
        await onboard(ann)
        await sign_in(client, bot, channel)
        found = await client.get("/admin/learners", params={"q": "test:ann"})
        user_id = re.search(r'href="/admin/learners/(\d+)"', found.text)[1]
        page = await client.get(f"/admin/learners/{user_id}")
        forged = await client.post(f"/admin/learners/{user_id}/erase", data={"confirm": "yes", "csrf": "0" * 64})
        assert forged.status_code == 403
        other_site = await client.post(f"/admin/learners/{user_id}/erase",
                                       data={"confirm": "yes", "csrf": csrf_of(page.text)},
                                       headers={"origin": "https://evil.example"})
        assert other_site.status_code == 403
        assert (await client.get(f"/admin/learners/{user_id}")).status_code == 200  # still there
        erased = await client.post(f"/admin/learners/{user_id}/erase",
                                   data={"confirm": "yes", **form_of(page.text, "erase")})
        assert erased.status_code == 303 and "Erased" in erased.headers["location"]
        assert (await client.get(f"/admin/learners/{user_id}")).status_code == 404
        confirmed = await client.get(erased.headers["location"])
        assert '<p class="flash">Erased: ' in confirmed.text
        # a link someone else wrote shows no words of theirs in the dashboard's voice
        forged_flash = await client.get("/admin/learners", params={"done": "Session expired: sign in at evil.example"})
        assert "evil.example" not in forged_flash.text and 'class="flash"' not in forged_flash.text


async def test_an_id_past_every_database_id_is_no_such_learner(settings):
    async with dashboard(settings) as (client, bot, channel):
        await sign_in(client, bot, channel)
        csrf = csrf_of((await client.get("/admin/overview")).text)
        for user_id in (2**63 - 1, 2**63, 10**22, "9" * 5000):  # the biggest id a BIGINT holds, past it, past int()
            for path in (f"/admin/learners/{user_id}", f"/admin/learners/{user_id}/export"):
                response = await client.get(path)
                assert response.status_code == 404 and "No such learner" in response.text, path
            for action in ("erase", "grant"):
                response = await client.post(f"/admin/learners/{user_id}/{action}",
                                             data={"confirm": "yes", "course": "spot-phishing", "csrf": csrf})
                assert response.status_code == 404 and "No such learner" in response.text, action


async def test_scoped_roles_see_their_course_or_workspace_only(settings):
    async with dashboard(settings) as (client, bot, channel):
        boss = Transcript(bot, channel, chat="boss")
        await boss.say("/admin role grant test:cleo author course:spot-phishing")
        await sign_in(client, bot, channel, chat="cleo")
        home = await client.get("/admin", follow_redirects=True)
        assert str(home.url).endswith("/admin/learning")
        assert 'href="/admin/knowledge"' in home.text and 'href="/admin/overview"' not in home.text
        assert "Spaced review" not in home.text  # counted over every course: not for a course's author
        for page in ("overview", "engagement", "revenue", "learners"):
            assert (await client.get(f"/admin/{page}")).status_code == 403, page
        # the questions its course declined, what the course could add, and no other course's
        async with bot.db.transaction() as session:
            learner = await session.scalar(select(User.id).limit(1))
            for course, question in (("spot-phishing", "What is vishing in Welsh?"), ("other", "What is a VPN?")):
                session.add(KnowledgeQuestion(user_id=learner, question=question, normalized=question.lower(),
                                              outcome="declined", reason="not_covered", course=course, topic="T"))
        knowledge = await client.get("/admin/knowledge")
        assert "What is vishing in Welsh?" in knowledge.text and "What is a VPN?" not in knowledge.text


async def test_a_course_author_sees_their_course_s_hardest_questions_whatever_other_courses_hold(settings):
    """When another course holds ten questions answered wrong more often, the author of `passwords-that-hold` still
    sees theirs: one answered wrong 4 times in 5 is among their course's hardest."""
    from storage.courses import Course, Question, QuestionCard
    from tests.dialogs.learning_support import COURSES

    async with dashboard(settings) as (client, bot, channel):
        await import_sample(bot, COURSES / "examples" / "passwords")
        async with bot.db.transaction() as session:
            user = User(display_name="Quinn")
            session.add(user)
            await session.flush()
            for question_id, slug in (await session.execute(
                    select(Question.id, Course.slug).join(Course, Course.id == Question.course_id))).all():
                right = 1 if slug == "passwords-that-hold" else 0
                session.add(QuestionCard(user_id=user.id, question_id=question_id, attempts=5, correct=right,
                                         last_rating=1, last_answer="no idea"))
            prompt = await session.scalar(select(Question.prompt).join(Course, Course.id == Question.course_id)
                                          .where(Course.slug == "passwords-that-hold").order_by(Question.id).limit(1))
        await Transcript(bot, channel, chat="boss").say("/admin role grant test:cleo author course:passwords-that-hold")
        await sign_in(client, bot, channel, chat="cleo")
        hardest = list(csv.reader(io.StringIO((await client.get("/admin/learning/hardest-questions.csv")).text)))
        assert [prompt, "5", "20 %", "no idea (1)"] in [row[1:] for row in hardest], hardest
        assert {row[0] for row in hardest[1:]} == {"passwords-that-hold"}


async def test_a_course_author_sees_their_course_s_most_asked_topics_and_declined_questions_whatever_others_hold(
        settings):
    """Another course holds sixty topics asked more often, and sixty questions declined more often: the author of
    `spot-phishing` still sees the one topic and the one declined question of theirs."""
    async with dashboard(settings) as (client, bot, channel):
        async with bot.db.transaction() as session:
            user = User(display_name="Quinn")
            session.add(user)
            await session.flush()
            for n in range(60):
                for _time in range(2):
                    session.add_all([
                        KnowledgeQuestion(user_id=user.id, question=f"Q{n}?", normalized=f"q{n}", outcome="answered",
                                          course="other", topic=f"Lesson {n}"),
                        KnowledgeQuestion(user_id=user.id, question=f"D{n}?", normalized=f"d{n}", outcome="declined",
                                          reason="not_covered", course="other")])
            session.add_all([
                KnowledgeQuestion(user_id=user.id, question="What is smishing?", normalized="what is smishing",
                                  outcome="answered", course="spot-phishing", topic="Smishing"),
                KnowledgeQuestion(user_id=user.id, question="What is vishing in Welsh?",
                                  normalized="what is vishing in welsh", outcome="declined", reason="not_covered",
                                  course="spot-phishing")])
        await Transcript(bot, channel, chat="boss").say("/admin role grant test:cleo author course:spot-phishing")
        await sign_in(client, bot, channel, chat="cleo")
        topics = list(csv.reader(io.StringIO((await client.get("/admin/knowledge/topics.csv")).text)))
        assert topics[1:] == [["spot-phishing", "Smishing", "1"]], topics
        declined = list(csv.reader(io.StringIO((await client.get("/admin/knowledge/declined.csv")).text)))
        assert [row[:3] for row in declined[1:]] == [["spot-phishing", "What is vishing in Welsh?", "1"]], declined


async def test_declined_as_not_in_the_material_counts_only_what_the_material_was_searched_for_and_lacked(settings):
    """A question from someone who may read no course there (a group, with only a paid course of theirs), or one a
    lesson past their free preview answers, was never missing from the material: the Knowledge page counts it apart,
    and "declined (not in the material)" counts only the questions the course does not cover."""
    async with dashboard(settings) as (client, bot, channel):
        await sign_in(client, bot, channel)
        async with bot.db.transaction() as session:
            learner = await session.scalar(select(User.id).limit(1))
            for question, outcome, reason in (("What is smishing?", "answered", None),
                                              ("Capital of France?", "declined", "not_covered"),
                                              ("Why do guessing tools not try passwords at random?", "declined",
                                               "no_courses"),
                                              ("What does a password manager do?", "declined", "beyond_preview"),
                                              ("And this?", "limited", "too_fast"),
                                              ("What is vishing?", "declined", "not_indexed")):
                session.add(KnowledgeQuestion(user_id=learner, question=question, normalized=question.lower(),
                                              outcome=outcome, reason=reason))
        counts = await client.get("/admin/knowledge/questions.csv")
        assert list(csv.reader(io.StringIO(counts.text)))[1:] == [
            ["asked", "6"], ["answered", "1"], ["declined (not in the material)", "1"],
            ["not looked up (the learner's allowance was spent)", "1"],
            ["outside what they may read (no course yet, none free in the group, a lesson past a free preview)", "2"],
            ["not looked up (the course is not indexed for questions: import it again)", "1"]]
        daily = list(csv.reader(io.StringIO((await client.get("/admin/knowledge/questions-daily.csv")).text)))
        assert daily[-1][1:] == ["1", "1"]  # answered, declined


async def test_active_learners_are_people_who_agreed_each_counted_once(settings):
    """docs/admin.md: a learner is a person who agreed to the privacy notice. Bob only sent /start, the owner only
    asked for a sign-in link: neither is an active learner, on the overview or among the learners who wrote each day;
    Ann, who wrote in her own chat and in a group, is one learner who wrote, not two."""
    from tests.support import message

    async with dashboard(settings) as (client, bot, channel):
        await onboard(Learning(bot, channel, chat="ann"))
        await bot.receive(message("Hello all", chat="-100", sender="ann"))
        await Transcript(bot, channel, chat="bob").say("/start")
        await sign_in(client, bot, channel)
        learners = dict(csv.reader(io.StringIO((await client.get("/admin/overview/learners.csv")).text)))
        assert learners["agreed to take part"] == "1"
        [_head, *active] = csv.reader(io.StringIO((await client.get("/admin/overview/active.csv")).text))
        assert active == [["test", "1", "1", "1"]]
        [_head, *daily] = csv.reader(io.StringIO((await client.get("/admin/engagement/daily-active.csv")).text))
        assert daily[-1][1] == "1", daily[-1]


def test_every_text_of_the_dashboard_is_in_the_catalogue():
    """What the pages pass to their words function (or show as a message page) is listed for translation."""
    import ast
    from pathlib import Path

    from dialogs.pages import DASHBOARD_WORDS

    shown: set[str] = set()
    for path in (Path(__file__).resolve().parents[2] / "bot" / "dashboard").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            texts = node.args[:1] if name == "w" else node.args[1:3] if name == "message_page" else \
                node.args[1:2] if name == "Page" else []
            shown |= {arg.value for arg in texts if isinstance(arg, ast.Constant) and isinstance(arg.value, str)}
    assert len(shown) > 150 and shown <= set(DASHBOARD_WORDS), shown - set(DASHBOARD_WORDS)


async def test_the_dashboard_speaks_the_browser_s_language(settings):
    async with dashboard(settings) as (client, bot, channel):
        signed_out = await client.get("/admin/overview", headers={"accept-language": "es-ES,es;q=0.9"})
        assert "Primero inicia sesión" in signed_out.text and 'lang="es"' in signed_out.text
        await sign_in(client, bot, channel)
        page = await client.get("/admin/learning", headers={"accept-language": "es"})
        assert "<h1>Aprendizaje</h1>" in page.text and "El recorrido" in page.text and "Cerrar sesión" in page.text
        english = await client.get("/admin/learning")
        assert "<h1>Learning</h1>" in english.text


async def test_a_workspace_s_support_finds_that_workspace_s_people_only(settings):
    from storage.models import ChannelIdentity, User

    async with dashboard(settings) as (client, bot, channel):
        async with bot.db.transaction() as session:
            for name, external in (("Tess", "T01/U1"), ("Theo", "T02/U2")):
                user = User(display_name=name)
                session.add(user)
                await session.flush()
                session.add(ChannelIdentity(user_id=user.id, channel="slack", external_id=external))
        await Transcript(bot, channel, chat="boss").say("/admin role grant test:sam support team:T01")
        await sign_in(client, bot, channel, chat="sam")
        home = await client.get("/admin", follow_redirects=True)
        assert str(home.url).endswith("/admin/learners")
        found = await client.get("/admin/learners", params={"q": "t"})
        assert "Tess" in found.text and "Theo" not in found.text
        tess = re.search(r'href="/admin/learners/(\d+)"', found.text)[1]
        assert (await client.get(f"/admin/learners/{tess}")).status_code == 200
        other = int(tess) + 1  # Theo, of the other workspace
        assert (await client.get(f"/admin/learners/{other}")).status_code == 403
        assert (await client.get(f"/admin/learners/{other}/export")).status_code == 403


async def test_a_support_of_two_workspaces_finds_each_person_once_and_no_more_than_the_search_shows(settings):
    """Support for team:T01 and team:T02: Tess, in both workspaces (her two Slack accounts linked), is listed once,
    on the page and in its CSV; thirty people of the two workspaces found by one search are the search's twenty."""
    async with dashboard(settings) as (client, bot, channel):
        async with bot.db.transaction() as session:
            tess = User(display_name="Tess")
            session.add(tess)
            await session.flush()
            session.add_all([ChannelIdentity(user_id=tess.id, channel="slack", external_id="T01/U1"),
                             ChannelIdentity(user_id=tess.id, channel="slack", external_id="T02/U9")])
            for n in range(30):
                tom = User(display_name=f"Tom {n}")
                session.add(tom)
                await session.flush()
                session.add(ChannelIdentity(user_id=tom.id, channel="slack", external_id=f"T0{1 + n % 2}/V{n}"))
        boss = Transcript(bot, channel, chat="boss")
        await boss.say("/admin role grant test:sam support team:T01")
        await boss.say("/admin role grant test:sam support team:T02")
        await sign_in(client, bot, channel, chat="sam")
        found = await client.get("/admin/learners", params={"q": "tess"})
        assert len(re.findall(r'href="/admin/learners/\d+"', found.text)) == 1, found.text
        listed = await client.get("/admin/learners/learners.csv", params={"q": "tess"})
        [_head, *rows] = csv.reader(io.StringIO(listed.text))
        assert [(row[1], set(row[2].split(", "))) for row in rows] == [("Tess", {"slack:T01/U1", "slack:T02/U9"})]
        toms = await client.get("/admin/learners", params={"q": "tom"})
        assert len(set(re.findall(r'href="/admin/learners/(\d+)"', toms.text))) == 20


async def test_only_an_owner_may_erase_someone_who_holds_admin_roles(settings):
    """An erasure takes the person's roles with it: a support (no say over roles) is refused, on the dashboard and in
    chat, and the admin keeps their role and their session; an owner may."""

    import httpx

    from storage.admins import roles_of
    from tests.support import Transcript

    async with dashboard(settings) as (client, bot, channel):
        boss = Transcript(bot, channel, chat="boss")
        await boss.say("/admin role grant test:carol admin")
        await boss.say("/admin role grant test:sue support")
        carol_browser = httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))
        await sign_in(carol_browser, bot, channel, chat="carol")
        await sign_in(client, bot, channel, chat="sue")
        refused = await erased_on_the_dashboard(client, "test:carol")
        assert refused.status_code == 303 and "holds+admin+roles" in refused.headers["location"].replace("%20", "+")
        [said] = await Transcript(bot, channel, chat="sue").say("/admin erase test:carol confirm")
        assert said.startswith("test:carol holds admin roles, which only an owner may take away")
        assert await audit(bot, "dashboard:erase") == [("test:sue", "denied")]  # refused, and recorded
        async with bot.db.sessions() as session:
            assert await roles_of(session, "test:carol") == [("admin", "")]
        assert (await carol_browser.get("/admin/revenue")).status_code == 200
        [erased] = await boss.say("/admin erase test:carol confirm")  # the owner may
        assert erased.startswith("Erased:")
        async with bot.db.sessions() as session:
            assert await roles_of(session, "test:carol") == []


async def test_an_export_hands_over_no_sign_in_link_or_link_code_the_person_was_sent(settings):
    """The reply that carried an admin's sign-in link, unused, and a learner's /link code, unused, are in their
    exports as "(a sign-in link or a link code, not shown)": whoever reads the file cannot sign in as them, nor take
    their progress."""
    from storage.personal_data import WITHHELD

    async with dashboard(settings) as (client, bot, channel):
        ann = Learning(bot, channel, chat="ann")
        await onboard(ann)
        [code_reply] = await ann.say("/link")
        code = re.search(r"link code is (\S+)\.", code_reply)[1]
        await Transcript(bot, channel, chat="boss").say("/admin role grant test:carol admin")
        carol_link = await link_for(bot, channel, "carol")  # asked for, and not used yet
        await sign_in(client, bot, channel)
        for address, secret in (("test:carol", carol_link), ("test:ann", code)):
            found = await client.get("/admin/learners", params={"q": address})
            user_id = re.search(r'href="/admin/learners/(\d+)"', found.text)[1]
            exported = await export_of(client, user_id)
            assert exported.status_code == 200
            assert secret not in exported.text and not LINK.search(exported.text), address
            assert WITHHELD in [reply["text"] for reply in exported.json()["replies"]], address
        stranger = httpx.AsyncClient(transport=client._transport, base_url=str(client.base_url))
        assert (await stranger.post("/admin/sign-in", data={"link": carol_link})).status_code == 303  # still hers


async def test_only_an_owner_may_export_someone_who_holds_admin_roles(settings):
    """An export of an admin holds what they were shown as one (figures, other learners' data, a support's role
    does not reach): as with an erasure, a support is refused an export of an owner or an admin, and the refusal is
    audited; an ordinary learner they may export."""
    async with dashboard(settings) as (client, bot, channel):
        await onboard(Learning(bot, channel, chat="ann"))
        boss = Transcript(bot, channel, chat="boss")
        await boss.say("/admin role grant test:carol admin")
        await boss.say("/admin role grant test:sue support")
        await Transcript(bot, channel, chat="carol").say("/admin help")
        await sign_in(client, bot, channel, chat="sue")
        answers = {}
        for address in ("test:boss", "test:carol", "test:ann"):
            found = await client.get("/admin/learners", params={"q": address})
            user_id = re.search(r'href="/admin/learners/(\d+)"', found.text)[1]
            answers[address] = await export_of(client, user_id)
        assert {address: answer.status_code for address, answer in answers.items()} == {
            "test:boss": 403, "test:carol": 403, "test:ann": 200}
        assert "holds admin roles: only an owner may export their data" in answers["test:carol"].text
        assert await audit(bot, "dashboard:export") == [("test:sue", "denied"), ("test:sue", "denied"),
                                                        ("test:sue", "ok")]


async def test_a_sign_in_posted_from_another_site_signs_no_one_in(settings):
    """Another site's page posting an admin's own link would sign the visitor in as that admin (login CSRF)."""
    async with dashboard(settings) as (client, bot, channel):
        link = await link_for(bot, channel, "boss")
        forged = await client.post("/admin/sign-in", data={"link": link}, headers={"origin": "https://evil.example"})
        assert forged.status_code == 403 and "set-cookie" not in forged.headers
        assert (await client.post("/admin/sign-in", data={"link": link})).status_code == 303  # the link still works


async def test_every_form_is_held_to_the_body_limit_the_sign_in_s_too(settings):
    """docs/security.md: bodies are limited by MAX_BODY_BYTES (413). The sign-in form, which anyone may post before
    any session exists, and the forms of a session are refused past it, whether the body says its length or not,
    with the dashboard's page and headers; nobody is signed in, nothing is done."""
    async with dashboard(settings) as (client, bot, channel):
        link = await link_for(bot, channel, "boss")
        limit = settings.max_body_bytes
        body = "&".join(f"f{n}=" + "A" * (limit * 4) for n in range(16)) + f"&link={link}"  # 4 MiB

        async def streamed():  # no Content-Length: the limit holds as the body arrives
            for start in range(0, len(body), limit):
                yield body[start:start + limit].encode()

        form = {"content-type": "application/x-www-form-urlencoded"}
        for content in (body.encode(), streamed()):
            answer = await client.post("/admin/sign-in", content=content, headers=form)
            assert answer.status_code == 413 and "larger than this server takes" in answer.text
            assert "set-cookie" not in answer.headers and answer.headers["x-frame-options"] == "DENY"
        assert (await client.post("/admin/sign-in", data={"link": link})).status_code == 303  # never used till now
        overview = await client.get("/admin/overview")
        big = f"csrf={csrf_of(overview.text)}&pad=" + "A" * (limit + 1)
        for path in ("/admin/overview/requeue", "/admin/sign-out"):
            assert (await client.post(path, content=big.encode(), headers=form)).status_code == 413, path
        assert (await client.get("/admin/overview")).status_code == 200  # still signed in
        assert await audit(bot, "dashboard:requeue") == []


def test_a_csv_cell_is_one_cell_and_never_a_formula_whatever_a_spreadsheet_splits_on():
    """A name a learner chose reaches the operator's spreadsheet: one starting with = is prefixed with ', and so is
    the "=" after a ";" in one, where a spreadsheet splits on ";" (Excel's default in many languages)."""
    import csv
    import io

    from bot.dashboard.pages import Figure, as_csv

    names = ['=HYPERLINK("https://evil.test")', "Ann;=cmd|' /C calc'!A0;", "Bea"]
    text = as_csv(Figure("learners", "Learners", ("id", "name"), [[n, name] for n, name in enumerate(names)]))
    for separator in (",", ";"):
        rows = list(csv.reader(io.StringIO(text), delimiter=separator))
        cells = [cell for row in rows[1:] for cell in row]
        assert not any(cell.startswith(("=", "+", "-", "@")) for cell in cells), (separator, rows)
    assert list(csv.reader(io.StringIO(text)))[1:] == [["0", "'" + names[0]], ["1", "Ann;'=cmd|' /C calc'!A0;"],
                                                       ["2", "Bea"]]


async def test_a_workspaces_support_exports_or_erases_only_a_person_wholly_in_the_workspace(settings):
    """Support scoped to team:T01 sees a person with a slack:T01 address, but their export and erasure take every
    app they linked (a Telegram address too): refused, as /admin export and erase refuse it in chat."""
    from storage.models import ChannelIdentity

    async with dashboard(settings) as (client, bot, channel):
        async with bot.db.transaction() as session:
            user = User(display_name="Tess")
            session.add(user)
            await session.flush()
            session.add_all([ChannelIdentity(user_id=user.id, channel="slack", external_id="T01/U1"),
                             ChannelIdentity(user_id=user.id, channel="telegram", external_id="555")])
            tess = user.id
        await Transcript(bot, channel, chat="boss").say("/admin role grant test:sam support team:T01")
        await sign_in(client, bot, channel, chat="sam")
        page = await client.get(f"/admin/learners/{tess}")
        assert page.status_code == 200  # seen: one of her addresses is the workspace's
        assert (await client.get(export_link(page.text))).status_code == 403
        erase = await client.post(f"/admin/learners/{tess}/erase",
                                  data={"confirm": "yes", **form_of(page.text, "erase")})
        assert erase.status_code == 403
        async with bot.db.sessions() as session:
            assert await session.get(User, tess) is not None


# what anyone signed in may send, and every answer's headers ---------------------------------------------------------


def answering_as_a_server(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The same app and cookies, with an error of the app answered 500 as a server answers it (not raised here)."""
    app = client._transport.app  # type: ignore[attr-defined]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url=str(client.base_url), cookies=client.cookies)


async def test_a_support_may_not_erase_an_owner_the_settings_name(settings):
    """ADMINS makes the boss an owner; a support's erasure of them would take an owner's audit trail and sessions:
    refused as the erasure of anyone holding a role is, and nothing erased."""
    async with dashboard(settings) as (client, bot, channel):
        await Transcript(bot, channel, chat="boss").say("/admin role grant test:sue support")
        await sign_in(client, bot, channel, chat="sue")
        refused = await erased_on_the_dashboard(client, "test:boss")
        assert "holds+admin+roles" in refused.headers["location"]
        async with bot.db.sessions() as session:
            assert await session.scalar(select(ChannelIdentity).where(ChannelIdentity.external_id == "boss"))
            assert ("test:boss", "role") in [(row.identity, row.command)
                                             for row in await session.scalars(select(AdminAuditEntry))]


async def test_tokens_and_text_no_database_stores_are_refused_or_dropped_never_a_500(settings):
    """A form token or a confirmation's signature that is not ASCII, a NUL in the learner search or a grant's
    course (PostgreSQL stores no NUL): each a clear answer."""
    async with dashboard(settings) as (client, bot, channel):
        await onboard(Learning(bot, channel, chat="ann"))
        await sign_in(client, bot, channel)
        async with answering_as_a_server(client) as server:
            for path in ("/admin/overview/requeue", "/admin/sign-out"):
                assert (await server.post(path, data={"csrf": "é"})).status_code == 403
            assert (await server.get("/admin/overview", params={"done": "x", "sig": "é"})).status_code == 200
            for path in ("/admin/learners", "/admin/learners/learners.csv"):
                assert (await server.get(path, params={"q": "ann\x00"})).status_code == 200
            found = await client.get("/admin/learners", params={"q": "test:ann"})
            ann_id = re.search(r'href="/admin/learners/(\d+)"', found.text)[1]
            page = await client.get(f"/admin/learners/{ann_id}")
            granted = await server.post(f"/admin/learners/{ann_id}/grant",
                                        data={**form_of(page.text, "grant"), "course": "x\x00"})
            assert granted.status_code == 404 and "No such course" in granted.text


async def test_every_answer_under_admin_carries_the_security_headers(settings):
    """Not only the pages: a redirect, the router's 404 and 405, an error."""
    async with dashboard(settings) as (client, bot, channel):
        await sign_in(client, bot, channel)
        async with answering_as_a_server(client) as server:
            lacking = {}
            for method, path in (("GET", "/admin"), ("GET", "/admin/learners/abc"), ("GET", "/admin/a/b/c"),
                                 ("GET", "/admin/learners/1/erase"), ("DELETE", "/admin/overview"),
                                 ("GET", "/admin/overview")):
                answer = await server.request(method, path)
                missing = [name for name in ("content-security-policy", "x-frame-options", "x-content-type-options",
                                             "cache-control") if name not in answer.headers]
                if missing:
                    lacking[f"{method} {path} {answer.status_code}"] = missing
        assert not lacking


async def test_a_stale_erase_export_or_grant_never_reaches_whoever_has_the_number_now(settings):
    """SQLite gives an erased person's number to the next new one (its users table has no AUTOINCREMENT): a
    learner's page left open, or its export link, named Ann; Ann deleted her data and Bea came with Ann's number. The
    page's erase, grant and export carry who it was about, are refused for Bea, and Bea is left whole; her own page's
    work."""
    async with dashboard(settings) as (client, bot, channel):
        await sign_in(client, bot, channel)
        ann = Learning(bot, channel, chat="ann")
        await onboard(ann)  # the newest person
        found = await client.get("/admin/learners", params={"q": "test:ann"})
        ann_id = int(re.search(r'href="/admin/learners/(\d+)"', found.text)[1])
        anns_page = await client.get(f"/admin/learners/{ann_id}")
        anns_export = export_link(anns_page.text)
        anns_forms = {action: form_of(anns_page.text, action) for action in ("erase", "grant")}
        await ann.say("/stop")
        await ann.say("Stop and delete my data", choice="stop:delete")
        bea = Learning(bot, channel, chat="bea")
        if settings.database_url.startswith("sqlite"):
            await onboard(bea)  # SQLite gives her Ann's number of its own accord
        else:  # PostgreSQL's sequence never does: Bea is given it here
            async with bot.db.transaction() as session:
                session.add(User(id=ann_id, display_name="Bea"))
                await session.flush()
                session.add(ChannelIdentity(user_id=ann_id, channel="test", external_id="bea"))
        async with bot.db.sessions() as session:
            assert await session.scalar(select(ChannelIdentity.user_id).where(ChannelIdentity.external_id == "bea")) \
                == ann_id

        exported = await client.get(anns_export)
        assert exported.status_code == 409 and "someone else" in exported.text and "Bea" not in exported.text
        erased = await client.post(f"/admin/learners/{ann_id}/erase", data={**anns_forms["erase"], "confirm": "yes"})
        granted = await client.post(f"/admin/learners/{ann_id}/grant",
                                    data={**anns_forms["grant"], "course": "spot-phishing"})
        for answer in (erased, granted):
            assert answer.status_code == 409 and "someone else" in answer.text
        async with bot.db.sessions() as session:
            assert await session.get(User, ann_id) is not None
            assert await session.scalar(select(ChannelIdentity.user_id).where(ChannelIdentity.external_id == "bea"))
        assert await audit(bot, "dashboard:export") == []

        assert (await export_of(client, ann_id)).json()["profile"]["addresses"] == ["test:bea"]
        assert (await erased_on_the_dashboard(client, "test:bea")).status_code == 303
        async with bot.db.sessions() as session:
            assert await session.get(User, ann_id) is None


async def test_an_admin_s_own_export_holds_what_they_did_on_the_dashboard(settings):
    """An admin's sign-ins and their exports, grants and erasures on the dashboard are audited under their address,
    and their erasure takes their address out of those lines: they are the admin's data, and their own /export
    holds them, as it holds the commands they typed in chat (their messages)."""
    import json
    from pathlib import Path

    from bot.messages import Document

    async with dashboard(settings) as (client, bot, channel):
        await onboard(Learning(bot, channel, chat="ann"))
        await sign_in(client, bot, channel)
        found = await client.get("/admin/learners", params={"q": "test:ann"})
        ann_id = re.search(r'href="/admin/learners/(\d+)"', found.text)[1]
        assert (await export_of(client, ann_id)).status_code == 200
        await Transcript(bot, channel, chat="boss").say("/export")
        [document] = [reply for reply in channel.sent["boss"] if isinstance(reply, Document)]
        data = json.loads(Path(document.path).read_text(encoding="utf-8"))
    done = [(line["command"], line["arguments"], line["outcome"]) for line in data["admin_commands"]]
    assert ("dashboard-sign-in", "", "ok") in [(c, "", o) for c, _a, o in done]
    assert ("dashboard:export", f"user {ann_id}", "ok") in done
