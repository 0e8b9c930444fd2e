"""The web chat page in a real browser: Debian's Chromium, headless, driven by Playwright, against `lessonbot serve`.

The server is the real one in a child process on a fresh SQLite file with the sample course; the page talks to it
as a learner's browser would (fetch, EventSource, localStorage). Screenshots, at a phone's size (390×844) and a
desktop's (1280×800), are left in each test's tmp folder (pytest prints where). A model's answer comes from the
local OpenAI-compatible stand-in, streamed slowly enough to watch.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import make_url

from channels.webchat.streams import FALLBACK_POLL_SECONDS
from tests.conftest import missing
from tests.support import LESSONBOT, ServerProcess, serve, server_env

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PHONE = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
DESKTOP = {"viewport": {"width": 1280, "height": 800}}
SAMPLE = Path(__file__).resolve().parents[2] / "courses" / "sample"


@pytest.fixture(scope="module", autouse=True)
def chromium() -> Path:
    """Checked before anything starts: without the browser there is nothing to test here."""
    if not CHROMIUM.exists():
        missing(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp_path = tmp_path_factory.mktemp("webchat")
    return server_env(f"sqlite:///{tmp_path / 'lessonbot.db'}", tmp_path / "var")


@pytest.fixture(scope="module")
def server(env: dict[str, str]) -> Iterator[ServerProcess]:
    """One server for the module: each test is a separate browser profile, so a separate learner."""
    for command in (["db", "upgrade"], ["course", "import", str(SAMPLE)]):
        done = subprocess.run([*LESSONBOT, *command], env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
    server = serve(env)  # returns once /readyz answers 200
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def server_log(server: ServerProcess) -> Iterator[None]:
    yield
    # pytest shows it on a failure
    print(f"--- server log ({server.log_path}) ---\n{server.log_path.read_text()[-6000:]}")


@pytest.fixture(scope="module")
def browser(chromium: Path):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=10_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_chat(browser, url: str, **context):
    """A fresh browser profile on the chat page, failing the test on any script error in the page."""
    from playwright.sync_api import expect

    page = browser.new_context(**context).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url)
    expect(page.get_by_role("status")).to_have_text("Online")  # the reply stream is open
    return page, errors


def test_a_learner_chats_presses_a_choice_and_is_told_when_a_message_is_too_long(server, browser, tmp_path):
    from playwright.sync_api import expect

    page, errors = open_chat(browser, server.url, viewport={"width": 1000, "height": 760})
    expect(page).to_have_title("Lessonbot")
    expect(page.get_by_role("heading", name="Lessonbot")).to_be_visible()
    box = page.get_by_label("Your message")
    bot = page.locator(".message--bot .bubble")
    learner = page.locator(".message--learner .bubble")

    box.press_sequentially("/start")
    box.press("Enter")
    expect(bot).to_have_count(1)  # arrived over the event stream: no reload
    greeting = bot.first
    expect(greeting).to_contain_text("I'm Lessonbot")
    assert "\n\n" in greeting.inner_text()  # the bot's line breaks are kept
    expect(learner).to_have_text(["/start"])
    expect(box).to_have_value("")
    expect(page.locator("#typing")).to_be_hidden()

    # Shift+Enter is a new line, not a send.
    box.press_sequentially("two")
    box.press("Shift+Enter")
    box.press_sequentially("lines")
    expect(box).to_have_value("two\nlines")
    expect(learner).to_have_count(1)
    box.fill("")

    # A choice under the greeting: pressed, it is said as the learner's message, and leads on.
    choices = page.locator(".message--bot").first.locator(".choice")
    expect(choices.first).to_be_enabled()
    label = choices.first.inner_text()
    choices.first.click()
    expect(learner).to_have_text(["/start", label])
    expect(bot.nth(1)).to_be_visible()
    expect(bot.nth(1)).not_to_have_text(greeting.inner_text())
    for index in range(choices.count()):
        expect(choices.nth(index)).to_be_disabled()  # an answered question's buttons are not pressed again

    box.fill("/help")
    box.press("Enter")
    # During onboarding the commands come, then its question again, so its answer is still the newest question.
    expect(bot.last).to_have_text("What should I call you?")
    expect(bot.nth(-2)).to_contain_text("Here is what you can send me")
    expect(bot.nth(-2)).to_contain_text("/help — ")  # one command a line
    replies = bot.count()

    box.fill("x" * 4001)
    counter = page.locator("#counter")
    expect(counter).to_have_text("4,001 / 4,000")
    expect(counter).to_have_class("counter counter--over")
    box.press("Enter")
    error = page.get_by_role("alert")
    expect(error).to_be_visible()
    expect(error).to_contain_text("4,001 characters long; the limit is 4,000")
    expect(box).to_have_value("x" * 4001)  # kept, to be shortened
    expect(learner).to_have_count(3)
    expect(bot).to_have_count(replies)
    page.screenshot(path=str(tmp_path / "too-long.png"))

    box.fill("/help")
    box.press("Enter")
    expect(bot).to_have_count(replies + 2)
    expect(error).to_be_hidden()
    expect(counter).to_be_hidden()
    replies += 2

    # A reload shows the same conversation once, from history, in order.
    page.reload()
    expect(page.get_by_role("status")).to_have_text("Online")
    expect(learner).to_have_text(["/start", label, "/help", "/help"])
    expect(bot).to_have_count(replies)
    expect(page.locator(".message--bot").first.locator(".choice").first).to_be_disabled()
    page.wait_for_timeout(700)  # several polls of the stream: nothing is shown twice
    expect(bot).to_have_count(replies)
    assert not errors, errors


def test_a_refused_session_is_replaced_and_the_chat_works_on_a_phone(server, browser, tmp_path):
    from playwright.sync_api import expect

    page, errors = open_chat(browser, server.url, viewport={"width": 390, "height": 780}, is_mobile=True)
    # A session this server never signed (an old key, or edited by hand): the page starts a new one by itself.
    page.evaluate("localStorage.setItem('lessonbot.session', 'forged.0123456789abcdef0123456789abcdef')")
    page.reload()
    expect(page.get_by_role("status")).to_have_text("Online")
    assert page.evaluate("localStorage.getItem('lessonbot.session')").split(".")[0] != "forged"

    box = page.get_by_label("Your message")
    box.fill("/start")
    page.get_by_role("button", name="Send message").click()
    bot = page.locator(".message--bot .bubble")
    expect(bot.first).to_contain_text("I'm Lessonbot")
    answered = bot.count()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"
    page.screenshot(path=str(tmp_path / "phone.png"))

    # Message text is text: markup in it is shown as typed, never run or rendered.
    markup = '<b>bold?</b> <img src="nothing" onerror="window.ran = true">'
    box.fill(markup)
    box.press("Enter")
    said = page.locator(".message--learner .bubble").last
    expect(said).to_have_text(markup)
    assert said.locator("b, img").count() == 0
    expect(bot.nth(answered)).to_be_visible()  # answered (how, and in how many replies, is the dialog's business)
    assert page.evaluate("window.ran") is None

    # "New chat" asks first: declined, the conversation stays; accepted, it is gone from this browser.
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.get_by_role("button", name="New chat").click()
    assert asked and "can't be opened again from this browser" in asked[0], asked
    expect(page.locator(".message--learner")).to_have_count(2)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="New chat").click()
    expect(bot).to_have_count(0)
    expect(page.get_by_text("Welcome!")).to_be_visible()
    assert not errors, errors


def say(page, text: str) -> None:
    """Type `text` and send it; return once a reply has come."""
    from playwright.sync_api import expect

    bot = page.locator(".message--bot .bubble")
    before = bot.count()
    box = page.get_by_label("Your message")
    box.fill(text)
    box.press("Enter")
    expect(bot).not_to_have_count(before)


def press(page, label: str) -> None:
    """Press the newest button labelled `label`; return once a reply has come."""
    from playwright.sync_api import expect

    bot = page.locator(".message--bot .bubble")
    before = bot.count()
    page.locator(".choice:not(:disabled)", has_text=label).last.click()
    expect(bot).not_to_have_count(before)


def onboard(page, first: str = "/start", *, course: str | None = "Spot the phish, five minutes a day") -> None:
    """The shortest onboarding to the sample course, through the page's box and buttons (`course` None: the set-up
    is not asked for one, a start link named it)."""
    say(page, first)
    press(page, "Yes, let's start")
    say(page, "Ann")
    say(page, "Lisbon")
    press(page, "Yes, that's right")
    say(page, "08:00")
    press(page, "Every day")
    if course is not None:
        press(page, course)
    press(page, "1 lesson (about 5 minutes)")


@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_the_newest_reply_and_its_buttons_come_into_view_when_several_arrive(server, env, browser, tmp_path, size):
    """"Take the quiz ▸" is answered by several replies at once; the last, Question 1, and its buttons are in view
    above the message box, on a phone as on a desktop, with nothing scrolling sideways."""
    from playwright.sync_api import expect

    page, errors = open_chat(browser, server.url, **(PHONE if size == "phone" else DESKTOP))
    onboard(page)
    press(page, "Start my first lesson")
    for _ in range(12):
        if page.locator(".choice:not(:disabled)", has_text="Take the quiz ▸").count():
            break
        press(page, "Next ▸")
    press(page, "Take the quiz ▸")
    newest = page.locator(".message--bot").last
    expect(newest.locator(".choice").last).to_be_enabled()
    expect(newest).to_contain_text("Which lever does this message lean on hardest?")
    page.wait_for_timeout(300)  # the reveal happens on the next frame
    for choice in newest.locator(".choice").all():
        expect(choice).to_be_in_viewport(ratio=1)  # wholly visible, not under the message box
    footer_top = page.locator(".chat-footer").bounding_box()["y"]
    assert newest.locator(".choice").last.bounding_box()["y"] < footer_top
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"
    page.screenshot(path=str(tmp_path / f"quiz-{size}.png"))

    # Reading further up, the learner is not pulled down by a reply they did not ask for just now; a button says
    # it came, and takes them down to it.
    page.locator(".chat-body").evaluate("body => { body.scrollTop = 0; }")
    page.wait_for_timeout(300)
    new_message = page.get_by_role("button", name="New message")
    expect(new_message).to_be_hidden()
    session_id = page.evaluate("localStorage.getItem('lessonbot.session')").split(".")[0]
    queue_document(env["DATABASE_URL"], session_id, tmp_path / "unread.pdf")
    expect(page.locator(".message--bot .document")).to_have_count(1)
    page.wait_for_timeout(300)
    assert page.locator(".chat-body").evaluate("body => body.scrollTop") < 50
    expect(new_message).to_be_in_viewport()
    new_message.click()
    expect(page.locator(".message--bot .document")).to_be_in_viewport()
    expect(new_message).to_be_hidden()
    expect(page.get_by_label("Your message")).to_be_focused()
    assert not errors, errors


@pytest.mark.parametrize("size", ["phone", "desktop"])
def test_the_page_speaks_the_browsers_language(server, browser, tmp_path, size):
    from playwright.sync_api import expect

    options = PHONE if size == "phone" else DESKTOP
    page = browser.new_context(locale="es-ES", **options).new_page()
    page.goto(server.url)
    expect(page.get_by_role("status")).to_have_text("En línea")
    expect(page.get_by_label("Tu mensaje")).to_have_attribute("placeholder", "Escribe un mensaje…")
    expect(page.get_by_role("button", name="Enviar mensaje")).to_be_visible()
    expect(page.get_by_role("button", name="Nueva conversación")).to_be_visible()
    expect(page.get_by_text("¡Bienvenido!")).to_be_visible()
    expect(page.locator("#welcome-hint")).to_have_text("Saluda, o envía /start para empezar.")
    assert page.evaluate("document.documentElement.lang") == "es"
    page.screenshot(path=str(tmp_path / f"spanish-{size}.png"))


def test_the_page_follows_the_language_the_learner_chooses(server, browser):
    from playwright.sync_api import expect

    page, errors = open_chat(browser, server.url, **DESKTOP)
    expect(page.get_by_label("Your message")).to_have_attribute("placeholder", "Write a message…")
    box = page.get_by_label("Your message")
    box.fill("/language es")
    box.press("Enter")
    expect(page.locator(".message--bot")).to_have_count(1)
    expect(page.get_by_role("status")).to_have_text("En línea")
    expect(page.get_by_label("Tu mensaje")).to_have_attribute("placeholder", "Escribe un mensaje…")
    assert not errors, errors


def test_a_certificate_is_downloaded_from_its_bubble(server, env, browser, tmp_path):
    """A document reply (the certificate at a course's end) shows a Download link that saves the file."""
    from playwright.sync_api import expect

    page, errors = open_chat(browser, server.url, **PHONE)
    box = page.get_by_label("Your message")
    box.fill("/help")
    box.press("Enter")
    expect(page.locator(".message--bot")).to_have_count(1)
    session_id = page.evaluate("localStorage.getItem('lessonbot.session')").split(".")[0]
    pdf = tmp_path / "LB-TEST.pdf"
    pdf.write_bytes(b"%PDF-1.4 a certificate")
    queue_document(env["DATABASE_URL"], session_id, pdf)

    bubble = page.locator(".message--bot").last
    expect(bubble.locator(".document-name")).to_have_text("certificate-spot-phishing.pdf")
    expect(bubble).to_contain_text("Your certificate")
    page.screenshot(path=str(tmp_path / "certificate-phone.png"))
    with page.expect_download() as download:
        bubble.get_by_role("link", name="Download: certificate-spot-phishing.pdf").click()
    assert download.value.suggested_filename == "certificate-spot-phishing.pdf"
    assert Path(download.value.path()).read_bytes() == pdf.read_bytes()
    assert not errors, errors


def queue_document(database_url: str, session_id: str, path: Path) -> None:
    """Queue a document reply for a session, as a dialog does at a course's end; the server's dispatcher sends it."""
    import asyncio

    from sqlalchemy import select

    from bot.messages import Document
    from storage.db import Database
    from storage.models import Conversation
    from storage.outbox import OutboxEntry, enqueue

    async def run() -> None:
        db = Database(database_url)
        try:
            async with db.transaction() as session:
                conversation = await session.scalar(
                    select(Conversation).where(Conversation.channel == "web", Conversation.chat_id == session_id)
                )
                document = Document("certificate-spot-phishing.pdf", caption="Your certificate for “Spot the phish”.",
                                    path=str(path), media_type="application/pdf")
                await enqueue(session, [OutboxEntry(conversation.id, "web", session_id, document.to_payload())])
        finally:
            await db.dispose()

    with ThreadPoolExecutor(1) as thread:  # Playwright's own event loop runs in this one
        thread.submit(asyncio.run, run()).result()


def test_a_model_answer_streams_into_a_draft_that_the_answer_replaces(browser, tmp_path):
    from playwright.sync_api import expect

    from standins.openai import MODEL, OpenAIStandIn, cite_first_passage

    openai = OpenAIStandIn(piece_delay=0.05).start()
    openai.reply = lambda request: cite_first_passage(request) + " Check the sender before you act." * 4
    env = server_env(
        f"sqlite:///{tmp_path / 'lessonbot.db'}", tmp_path / "var",
        OPENAI_BASE_URL=openai.base_url, OPENAI_API_KEY="sk-test", OPENAI_MODEL=MODEL,
    )
    for command in (["db", "upgrade"], ["course", "import", str(SAMPLE)]):  # the import also indexes the lessons
        done = subprocess.run([*LESSONBOT, *command], env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
    server = serve(env)
    try:
        page, errors = open_chat(browser, server.url)
        box = page.get_by_label("Your message")
        bot = page.locator(".message--bot .bubble")
        onboard(page)
        answered = bot.count() + 1

        box.fill("what is smishing?")
        box.press("Enter")
        draft = page.locator(".message--draft .bubble")
        # the answer as the model writes it (the first question also loads the embedding model: slow on a busy machine)
        expect(draft).to_be_visible(timeout=30_000)
        expect(page.locator("#typing")).to_be_hidden()
        # outside the conversation's live log: a screen reader is not read each growth, only the answer once
        expect(page.get_by_role("log").locator(".message--draft")).to_have_count(0)
        partial = draft.inner_text()
        expect(draft).not_to_have_text(partial)  # it grows
        expect(page.locator(".message--draft")).to_have_count(0, timeout=20_000)  # replaced by the answer
        expect(bot).to_have_count(answered)
        expect(bot.last).to_contain_text("Check the sender before you act.")
        expect(bot.last).to_contain_text("From: [1] What a phishing message wants")
        assert not errors, errors
    finally:
        server.stop()
        openai.stop()


def test_a_lesson_shows_its_emphasis_and_lists_and_an_echo_stays_text(server, browser):
    """The light Markdown of a lesson is shown as emphasis and lists; what the learner typed and the bot echoes stays
    text, never a link, an image or markup."""
    from playwright.sync_api import expect

    page, errors = open_chat(browser, server.url)
    bot = page.locator(".message--bot .bubble")
    hostile = "[Verify](https://evil.example) <b>x</b> *b* <img src=x>"  # echoed up to 60 characters
    say(page, "/start")
    press(page, "Yes, let's start")
    say(page, "Ann")
    say(page, hostile)
    expect(bot.filter(has_text="I couldn't find a time zone")).to_contain_text(hostile)
    say(page, "Lisbon")
    press(page, "Yes, that's right")
    say(page, "08:00")
    press(page, "Every day")
    press(page, "Spot the phish, five minutes a day")
    press(page, "1 lesson (about 5 minutes)")
    press(page, "Start my first lesson")
    expect(bot.last.locator("em", has_text="smishing")).to_be_visible()
    press(page, "Next")
    expect(bot.last.locator("ul > li > strong", has_text="Urgency")).to_be_visible()
    expect(bot.locator("img, b")).to_have_count(0)
    # a bare address typed is linked as what it is, never behind other words ("Verify" is no link)
    links = bot.locator('a[href*="evil"]').evaluate_all("links => links.map(a => [a.textContent, a.href])")
    assert links and all(text.rstrip("/") == href.rstrip("/") for text, href in links), links
    assert not errors, errors


def test_a_page_opened_with_a_courses_start_link_sets_that_course_up(server, browser):
    """The page opened as /?start=spot-phishing (a course's start link) sends the payload with its first message, and
    the set-up takes that course without asking which one: after the days comes the daily amount."""
    from playwright.sync_api import expect

    page, errors = open_chat(browser, server.url.rstrip("/") + "/?start=spot-phishing")
    bot = page.locator(".message--bot .bubble")
    onboard(page, "hello", course=None)  # after the days: how much each day, no course question
    expect(bot.first).to_contain_text("I'm Lessonbot")
    expect(bot.nth(-2)).to_have_text("How much would you like to do each day?")
    expect(bot.last).to_contain_text("Course: Spot the phish, five minutes a day.")
    # a reload goes on in the same conversation: the payload is not sent again once the bot has answered
    page.reload()
    expect(page.get_by_role("status")).to_have_text("Online")
    say(page, "/help")
    expect(bot.last).to_contain_text("Here is what you can send me")
    assert not errors, errors
    page.context.close()  # its stream counts against the server's streams from one address, shared by later tests


# several tabs, slow networks, other languages, the status line, contrast --------------------------------------------


def learner_said(page) -> list[str]:
    return page.locator(".message--learner .bubble").all_inner_texts()


def test_two_tabs_of_one_session_show_the_same_conversation_and_spend_the_same_choices(server, browser):
    """The learner's side of the conversation reaches every tab of the browser, a choice used in one is spent in all,
    typed text spends no choice, and a new chat started in one tab is the chat of all."""
    from playwright.sync_api import expect

    first, errors = open_chat(browser, server.url, **DESKTOP)
    second = first.context.new_page()
    second.goto(server.url)
    expect(second.get_by_role("status")).to_have_text("Online")
    say(first, "/start")
    greeting = second.locator(".message--bot").first
    expect(greeting).to_contain_text("I'm Lessonbot")

    # typed text leaves the question's buttons usable (in a lesson: its "Next ▸" and "Later")
    say(first, "/help")
    expect(first.locator(".message--bot").first.locator(".choice").first).to_be_enabled()
    expect(second.locator(".message--learner .bubble")).to_have_text(["/start", "/help"])

    first.locator(".message--bot .choice:not(:disabled)", has_text="Yes, let's start").last.click()
    expect(first.get_by_label("Your message")).to_be_focused()  # not lost with the button it pressed
    expect(second.locator(".message--bot")).to_contain_text(["What should I call you?"])
    expect(second.locator(".message--learner .bubble")).to_have_text(["/start", "/help", "Yes, let's start"])
    pressed = second.locator(".message--bot", has=second.locator(".choice", has_text="Yes, let's start")).last
    for choice in pressed.locator(".choice").all():
        expect(choice).to_be_disabled()  # spent here too: the question was answered in the other tab
    # in its place: before the reply it led to
    order = second.locator("#messages > li .bubble").all_inner_texts()
    assert order.index("Yes, let's start") < order.index("What should I call you?"), order

    # The second tab starts a new chat: the first follows (and never writes the old session back).
    second.once("dialog", lambda dialog: dialog.accept())
    second.get_by_role("button", name="New chat").click()
    expect(second.locator(".message")).to_have_count(0)
    expect(first.locator(".message")).to_have_count(0)
    say(second, "/help")
    expect(first.locator(".message--learner .bubble")).to_have_text(["/help"])
    assert first.evaluate("localStorage.getItem('lessonbot.session')") == second.evaluate(
        "localStorage.getItem('lessonbot.session')")
    assert not errors, errors


def test_text_typed_while_a_message_is_sent_is_kept_and_typing_is_announced(server, browser):
    """The box empties when a message is sent, so the next one can be written meanwhile; the POST answering does not
    wipe it. "Lessonbot is typing…" is put where a screen reader hears it."""
    from playwright.sync_api import expect

    page, errors = open_chat(browser, server.url, **DESKTOP)
    held = []
    page.route("**/chat/api/messages", lambda route: held.append(route) if route.request.method == "POST"
               else route.continue_())
    box = page.get_by_label("Your message")
    box.fill("/help")
    box.press("Enter")
    expect(page.locator(".message--pending")).to_have_count(1)
    expect(box).to_have_value("")
    announced = page.locator("[aria-live=polite]", has=page.locator("#typing"))
    expect(announced).to_have_text("Lessonbot is typing…")
    box.fill("my next message")
    box.press("Enter")  # while the first is sent: not sent, and kept
    assert len(held) == 1
    held.pop().continue_()
    expect(page.locator(".message--bot")).not_to_have_count(0)
    expect(announced).to_have_text("")
    expect(box).to_have_value("my next message")
    expect(page.locator(".message--learner .bubble")).to_have_text(["/help"])
    assert not errors, errors


@pytest.mark.parametrize("status", [502, 504])
def test_a_message_a_proxy_answers_for_a_server_that_is_down_is_told_so_and_kept(server, browser, status):
    """A reverse proxy in front answers for a server that is down or does not answer (its own page, not our JSON):
    after the page's tries, the learner is told Lessonbot can't be reached, not that it refused what they wrote, and
    the message is back in the box to send again."""
    from playwright.sync_api import expect

    page, errors = open_chat(browser, server.url, **DESKTOP)
    tries = []

    def gateway(route) -> None:
        if route.request.method != "POST":
            route.continue_()
            return
        tries.append(route.request.post_data_json["id"])
        route.fulfill(status=status, content_type="text/html", body="<html><body><h1>Bad Gateway</h1></body></html>")

    page.route("**/chat/api/messages", gateway)
    box = page.get_by_label("Your message")
    box.fill("/help")
    box.press("Enter")
    expect(page.get_by_role("alert")).to_have_text(
        "Lessonbot can't be reached right now. Check your connection and try again.")
    expect(box).to_have_value("/help")
    assert len(tries) == 3 and len(set(tries)) == 1  # tried again with the same id: recorded once if one got through
    assert not errors, errors


def test_a_spanish_browser_is_answered_in_spanish_and_told_a_refusal_in_spanish(server, browser):
    from playwright.sync_api import expect

    page = browser.new_context(locale="es-ES", **PHONE).new_page()
    page.goto(server.url)
    status = page.locator("#status")
    expect(status).to_have_text("En línea")
    # at a phone's width the status still says it in words, not only by a dot's colour
    assert float(status.evaluate("e => getComputedStyle(e).fontSize").removesuffix("px")) >= 12
    expect(status).to_be_in_viewport()
    box = page.get_by_label("Tu mensaje")
    box.fill("hola")
    with page.expect_request(lambda request: request.url.endswith("/chat/api/messages")) as posted:
        box.press("Enter")
    # the browser's own language, as a platform tells its app's (not the page's, which may have fallen back to English)
    assert posted.value.post_data_json["language"] == "es-ES"
    expect(page.locator(".message--bot").first).to_contain_text("Soy Lessonbot")

    box.fill("x" * 4001)
    box.press("Enter")
    error = page.get_by_role("alert")
    expect(error).to_be_visible()
    # the page's own words, in Spanish, not the server's English sentence
    expect(error).to_have_text("Este mensaje tiene 4001 caracteres; el límite es 4000. Acórtalo, por favor.")
    expect(box).to_have_value("x" * 4001)


def test_the_status_line_says_offline_online_and_polling_and_a_reconnection_clears_the_error(server, browser):
    """Offline when the browser is; an error saying the bot can't be reached is gone once it can; a page whose reply
    stream is refused (too many from one address) says it is online, with replies every few seconds."""
    import socket

    import httpx
    from playwright.sync_api import expect

    page, errors = open_chat(browser, server.url, **DESKTOP)
    status = page.get_by_role("status")
    page.context.set_offline(True)
    expect(status).to_have_text("Offline")
    box = page.get_by_label("Your message")
    box.fill("/help")
    box.press("Enter")
    error = page.get_by_role("alert")
    expect(error).to_contain_text("can't be reached")
    page.context.set_offline(False)
    expect(status).to_have_text("Online")
    expect(error).to_be_hidden()

    # This address's streams taken up, a new page's is refused: its replies come by polling, and it says so.
    token = httpx.post(f"{server.url}/chat/api/sessions").json()["session"]
    held: list[socket.socket] = []
    try:
        while len(held) < 100:
            stream = socket.create_connection(("127.0.0.1", server.port))
            stream.sendall(f"GET /chat/api/events?session={token} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            answer = stream.recv(200)
            held.append(stream)
            if answer.startswith(b"HTTP/1.1 429"):
                break
        refused = browser.new_context(**DESKTOP).new_page()
        refused.goto(server.url)
        expect(refused.get_by_role("status")).to_have_text("Online (updates every few seconds)")
        say(refused, "/help")  # the reply still comes
    finally:
        for stream in held:
            stream.close()
    assert not errors, errors


def test_text_and_focus_keep_their_contrast_and_the_log_holds_only_messages(server, browser):
    """Small grey text at 4.5:1 on its background, the focus ring at 3:1, in the light and the dark scheme; the live
    log is a wrapper around the list (a list with another role loses its items)."""
    from playwright.sync_api import expect

    page, errors = open_chat(browser, server.url, **DESKTOP)
    assert page.locator("#messages").get_attribute("role") is None
    expect(page.get_by_role("log").locator("ol#messages")).to_have_count(1)
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.get_by_label("Your message").focus()
        page.keyboard.press("Shift+Tab")  # by keyboard: the ring shows
        expect(page.get_by_role("button", name="New chat")).to_be_focused()
        ratios = page.evaluate(CONTRASTS)
        assert ratios["hint"] >= 4.5 and ratios["placeholder"] >= 4.5 and ratios["ring"] >= 3, (scheme, ratios)
    assert not errors, errors


# The WCAG contrast of the welcome hint and the placeholder on their backgrounds, and of the focused element's ring on
# the header's; a colour seen through (as a ring mixed with transparency is) is painted over its background first.
CONTRASTS = """() => {
  const rgb = (color, under) => {
    const probe = document.createElement("canvas").getContext("2d");
    for (const paint of [under, color]) {
      probe.fillStyle = paint;
      probe.fillRect(0, 0, 1, 1);
    }
    return Array.from(probe.getImageData(0, 0, 1, 1).data.slice(0, 3));
  };
  const linear = (v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4);
  const luminance = (color, under) => {
    const [r, g, b] = rgb(color, under).map((v) => linear(v / 255));
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ratio = (color, background) => {
    const [x, y] = [luminance(color, background), luminance(background, "#000")].sort((p, q) => q - p);
    return (x + 0.05) / (y + 0.05);
  };
  const style = (selector, pseudo) => getComputedStyle(document.querySelector(selector), pseudo);
  return {
    hint: ratio(style("#welcome-hint").color, style(".chat-body").backgroundColor),
    placeholder: ratio(style("#input", "::placeholder").color, style("#input").backgroundColor),
    ring: ratio(getComputedStyle(document.activeElement).outlineColor, style(".chat-header").backgroundColor),
  };
}"""


HIDDEN_REST_MS = 30_000  # chat.js: how long a hidden tab keeps its event stream
STREAM_RETRY_MAX_MS = 30_000  # chat.js: the longest wait before the page tries a refused stream again


def hide(page, hidden: bool = True) -> None:
    """The tab out of sight (another tab in front, the window minimised), or in sight again, as the browser says it:
    `document.visibilityState` and a `visibilitychange` event (a headless browser has no window to minimise)."""
    state = "hidden" if hidden else "visible"
    page.evaluate("""state => {
        Object.defineProperty(document, "visibilityState", {value: state, configurable: true});
        Object.defineProperty(document, "hidden", {value: state === "hidden", configurable: true});
        document.dispatchEvent(new Event("visibilitychange"));
    }""", state)


def test_tabs_out_of_sight_give_their_streams_back_so_a_seventh_tab_gets_its_replies(server, browser):
    """A browser opens six connections to one server over HTTP/1.1, and every tab's reply stream holds one: six tabs
    of the chat in the background, and a seventh waited for ever. A tab out of sight for half a minute closes its
    stream, and opens it again when shown, with the replies that came meanwhile."""
    from playwright.sync_api import expect

    context = browser.new_context(**DESKTOP)
    try:
        background = []
        for _ in range(6):
            tab = context.new_page()
            tab.clock.install()  # its timers run on, and half a minute passes at once below
            tab.goto(server.url)
            expect(tab.get_by_role("status")).to_have_text("Online")
            hide(tab)
            tab.clock.fast_forward(HIDDEN_REST_MS + 1000)
            background.append(tab)
        front = context.new_page()
        front.goto(server.url)
        expect(front.get_by_role("status")).to_have_text("Online")
        say(front, "/start")
        expect(front.locator(".message--bot").first).to_contain_text("I'm Lessonbot")

        first = background[0]
        hide(first, hidden=False)
        # its stream opened again: at once, or (a busy machine's first try refused) at the page's next try, which
        # waits at most STREAM_RETRY_MAX_MS, replies meanwhile fetched
        expect(first.get_by_role("status")).to_have_text("Online", timeout=STREAM_RETRY_MAX_MS + 15_000)
        expect(first.locator(".message--bot").first).to_contain_text("I'm Lessonbot")  # came while it was hidden
        expect(first.locator(".message--learner .bubble")).to_have_text(["/start"])
        say(first, "/help")  # its stream carries replies again
        expect(first.locator(".message--bot", has_text="Here is what you can send me")).to_have_count(1)
    finally:
        context.close()


def test_a_page_whose_server_goes_away_says_it_cannot_be_reached_and_chats_once_it_is_back(browser, tmp_path):
    """The server stops under an open page: each time the page's reply stream tries again and finds no server, the
    page says Lessonbot can't be reached (not "Connecting…" for ever, with nothing said); once the server is back at
    its address, the page is online again by itself, the message gone, and the chat goes on."""
    from playwright.sync_api import expect

    from bench.processes import STARTUP_SECONDS, start_process

    env = server_env(f"sqlite:///{tmp_path / 'lessonbot.db'}", tmp_path / "var")
    done = subprocess.run([*LESSONBOT, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    server = serve(env)
    try:
        page, errors = open_chat(browser, server.url, **DESKTOP)
        status, alert = page.get_by_role("status"), page.get_by_role("alert")
        server.stop()
        expect(alert).to_have_text("Lessonbot can't be reached right now; trying again…")
        expect(status).to_have_text("Offline")

        back = start_process("lessonbot serve", [*LESSONBOT, "serve"], tmp_path / "var", env, port=server.port,
                             log_path=tmp_path / "var" / "server-back.log")
        server = back
        back.wait_ready_blocking("/readyz", timeout=STARTUP_SECONDS)
        expect(status).to_have_text("Online", timeout=20_000)
        expect(alert).to_be_hidden()
        say(page, "/help")
        assert errors == []
    finally:
        server.stop()


@pytest.fixture
def server_on_postgres(tmp_path) -> Iterator[tuple[ServerProcess, Callable[[bool], None]]]:
    """A server of its own on a fresh PostgreSQL database, and what refuses that database's connections (the database
    away: False) and allows them again (True)."""
    from bench.processes import DatabaseUnreachable, postgres_database
    from storage.migrate import upgrade
    from tests.bot.test_database_away import _allow_connections
    from tests.conftest import POSTGRES_ADMIN_URL

    try:
        made = postgres_database(POSTGRES_ADMIN_URL, prefix="lessonbot_away")
        url = made.__enter__()
    except DatabaseUnreachable as exc:
        missing(str(exc))
        return
    database = make_url(url).database
    try:
        upgrade(url)
        server = serve(server_env(url, tmp_path / "var"))
        try:
            yield server, lambda allowed: _allow_connections(database, allowed)
        finally:
            _allow_connections(database, True)
            server.stop()
    finally:
        made.__exit__(None, None, None)


def test_an_idle_page_while_the_database_is_away_says_it_is_offline_and_nothing_else_until_it_is_back(
        browser, server_on_postgres):
    """The database goes away under an idle page: once its stream's next read fails (within FALLBACK_POLL_SECONDS),
    the page says it is offline and trying again, and goes on saying so while each try of the stream is refused
    (not "Online" and "Connecting…" in turn, a stream opened to end at once); once the database is back, the page is
    online again by itself and the chat goes on."""
    from playwright.sync_api import expect

    server, allow_connections = server_on_postgres
    page, errors = open_chat(browser, server.url, **DESKTOP)
    status, alert = page.locator("#status"), page.get_by_role("alert")
    expect(status).to_have_text("Online")
    allow_connections(False)
    expect(status).to_have_text("Offline", timeout=FALLBACK_POLL_SECONDS * 1000 + 15_000)
    expect(alert).to_have_text("Lessonbot can't be reached right now; trying again…")
    page.evaluate("""() => {
        const status = document.getElementById("status");
        window.statusSaid = [];
        new MutationObserver(() => window.statusSaid.push(status.textContent))
            .observe(status, {childList: true, characterData: true, subtree: true});
    }""")
    page.wait_for_timeout(7000)  # the stream tried again meanwhile (2 s, then 4 s after a refusal)
    assert page.evaluate("window.statusSaid") == []
    expect(status).to_have_text("Offline")
    allow_connections(True)
    expect(status).to_have_text("Online", timeout=20_000)
    expect(alert).to_be_hidden()
    say(page, "/help")
    assert errors == []


# When the database goes away, what a Spanish page then says in its own words (not the server's English sentence, nor
# English words because the page's came after), the status it shows, and what is left in the box: a message it could
# not hand over is tried again twice, then told, and put back in the box to send again; a page that cannot read its
# conversation as it opens tries again by itself (within 4 s).
@pytest.mark.parametrize(("away", "told", "status", "left"), [
    ("at a message", "Lessonbot no pudo aceptar eso (error 503). Vuelve a intentarlo.", "En línea", "hola"),
    ("at the opening", "No se puede contactar con Lessonbot ahora mismo; reintentando…", "Sin conexión", ""),
])
def test_a_spanish_page_says_in_spanish_that_the_database_is_away_and_chats_once_it_is_back(
        browser, server_on_postgres, away, told, status, left):
    from playwright.sync_api import expect

    server, allow_connections = server_on_postgres
    if away == "at the opening":
        allow_connections(False)
    page = browser.new_context(locale="es-ES", **DESKTOP).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(server.url)
    box = page.get_by_label("Tu mensaje")
    if away == "at a message":
        expect(page.locator("#status")).to_have_text("En línea")
        allow_connections(False)
        box.fill("hola")
        box.press("Enter")
    expect(page.get_by_role("alert")).to_have_text(told)
    expect(page.locator("#status")).to_have_text(status)
    expect(box).to_have_value(left)
    allow_connections(True)
    expect(page.locator("#status")).to_have_text("En línea", timeout=20_000)
    box.fill("hola")
    box.press("Enter")
    expect(page.locator(".message--bot").first).to_contain_text("Soy Lessonbot")
    expect(page.get_by_role("alert")).to_be_hidden()
    assert errors == []
