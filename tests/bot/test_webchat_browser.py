"""The web chat page in a real browser: Debian's Chromium, headless, driven by Playwright, against `lessonbot serve`.

The server is the real one in a child process on a fresh SQLite file; the page talks to it as a learner's browser
would (fetch, EventSource, localStorage). A screenshot of the finished conversation is left at /tmp/webchat.png.
A model's answer comes from the local OpenAI-compatible stand-in, streamed slowly enough to watch.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

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
SCREENSHOT = Path("/tmp/webchat.png")
PHONE_SCREENSHOT = Path("/tmp/webchat-phone.png")


@pytest.fixture(scope="module", autouse=True)
def chromium() -> Path:
    """Checked before anything starts: without the browser there is nothing to test here."""
    if not CHROMIUM.exists():
        missing(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module: each test is a separate browser profile, so a separate learner."""
    tmp_path = tmp_path_factory.mktemp("webchat")
    env = server_env(f"sqlite:///{tmp_path / 'lessonbot.db'}", tmp_path / "var")
    upgraded = subprocess.run([*LESSONBOT, "db", "upgrade"], env=env, capture_output=True, text=True, timeout=60)
    assert upgraded.returncode == 0, upgraded.stderr
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


@contextmanager
def sample_course_server(tmp_path: Path, **env: str) -> Iterator[ServerProcess]:
    """`lessonbot serve` on a fresh SQLite file with the sample course imported (and indexed for questions)."""
    env = server_env(f"sqlite:///{tmp_path / 'lessonbot.db'}", tmp_path / "var", **env)
    sample = Path(__file__).resolve().parents[2] / "courses" / "sample"
    for command in (["db", "upgrade"], ["course", "import", str(sample)]):  # the import also indexes the lessons
        done = subprocess.run([*LESSONBOT, *command], env=env, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stdout + done.stderr
    server = serve(env)
    try:
        yield server
    finally:
        server.stop()


class Learner:
    """A learner at the page: says something or presses a choice, and waits for the bot's next bubble."""

    def __init__(self, page) -> None:
        self.page = page
        self.box = page.get_by_label("Your message")
        self.bot = page.locator(".message--bot .bubble")

    def say(self, text: str) -> None:
        from playwright.sync_api import expect

        before = self.bot.count()
        self.box.fill(text)
        self.box.press("Enter")
        expect(self.bot).not_to_have_count(before)

    def press(self, label: str) -> None:
        from playwright.sync_api import expect

        before = self.bot.count()
        self.page.locator(".choice", has_text=label).last.click()
        expect(self.bot).not_to_have_count(before)

    def onboard(self, *, zone_typed_first: str | None = None) -> None:
        """Through onboarding to the sample course, one lesson a day; `zone_typed_first` is a time zone the bot
        cannot read, typed before Lisbon."""
        self.say("/start")
        self.press("Yes, let's start")
        self.say("Ann")
        if zone_typed_first is not None:
            self.say(zone_typed_first)
        self.say("Lisbon")
        self.press("Yes, that's right")
        self.say("08:00")
        self.press("Every day")
        self.press("Spot the phish, five minutes a day")
        self.press("1 lesson (about 5 minutes)")


def test_a_learner_chats_presses_a_choice_and_is_told_when_a_message_is_too_long(server, browser):
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
    expect(bot.last).to_contain_text("Here is what you can send me")
    expect(bot.last).to_contain_text("/help — ")  # one command a line
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
    page.screenshot(path=str(SCREENSHOT))

    box.fill("/help")
    box.press("Enter")
    expect(bot).to_have_count(replies + 1)
    expect(error).to_be_hidden()
    expect(counter).to_be_hidden()
    replies += 1

    # A reload shows the same conversation once, from history, in order.
    page.reload()
    expect(page.get_by_role("status")).to_have_text("Online")
    expect(learner).to_have_text(["/start", label, "/help", "/help"])
    expect(bot).to_have_count(replies)
    expect(page.locator(".message--bot").first.locator(".choice").first).to_be_disabled()
    page.wait_for_timeout(700)  # several polls of the stream: nothing is shown twice
    expect(bot).to_have_count(replies)
    assert not errors, errors


def test_a_refused_session_is_replaced_and_the_chat_works_on_a_phone(server, browser):
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
    page.screenshot(path=str(PHONE_SCREENSHOT))

    # Message text is text: markup in it is shown as typed, never run or rendered.
    markup = '<b>bold?</b> <img src="nothing" onerror="window.ran = true">'
    box.fill(markup)
    box.press("Enter")
    said = page.locator(".message--learner .bubble").last
    expect(said).to_have_text(markup)
    assert said.locator("b, img").count() == 0
    expect(bot.nth(answered)).to_be_visible()  # answered (how, and in how many replies, is the dialog's business)
    assert page.evaluate("window.ran") is None

    page.get_by_role("button", name="New chat").click()
    expect(bot).to_have_count(0)
    expect(page.get_by_text("Welcome!")).to_be_visible()
    assert not errors, errors


def test_a_model_answer_streams_into_a_draft_that_the_answer_replaces(browser, tmp_path):
    from playwright.sync_api import expect

    from standins.openai import MODEL, OpenAIStandIn, cite_first_passage

    openai = OpenAIStandIn(piece_delay=0.05).start()
    openai.reply = lambda request: cite_first_passage(request) + " Check the sender before you act." * 4
    model = {"OPENAI_BASE_URL": openai.base_url, "OPENAI_API_KEY": "sk-test", "OPENAI_MODEL": MODEL}
    try:
        with sample_course_server(tmp_path, **model) as server:
            page, errors = open_chat(browser, server.url)
            learner = Learner(page)
            learner.onboard()
            bot = learner.bot
            answered = bot.count() + 1

            learner.box.fill("what is smishing?")
            learner.box.press("Enter")
            draft = page.locator(".message--draft .bubble")
            expect(draft).to_be_visible()  # the answer as the model writes it
            expect(page.locator("#typing")).to_be_hidden()
            partial = draft.inner_text()
            expect(draft).not_to_have_text(partial)  # it grows
            expect(page.locator(".message--draft")).to_have_count(0, timeout=20_000)  # replaced by the answer
            expect(bot).to_have_count(answered)
            expect(bot.last).to_contain_text("Check the sender before you act.")
            expect(bot.last).to_contain_text("From: [1] What a phishing message wants")
            assert not errors, errors
    finally:
        openai.stop()


def test_a_lesson_shows_its_emphasis_and_lists_and_an_echo_stays_text(browser, tmp_path):
    from playwright.sync_api import expect

    with sample_course_server(tmp_path) as server:
        page, errors = open_chat(browser, server.url)
        learner = Learner(page)
        hostile = "[Verify](https://evil.example) <b>x</b> *b* <img src=x>"  # echoed up to 60 characters
        learner.onboard(zone_typed_first=hostile)
        expect(learner.bot.filter(has_text="I couldn't find a time zone")).to_contain_text(hostile)
        learner.press("Start my first lesson")
        expect(learner.bot.last.locator("em", has_text="smishing")).to_be_visible()
        learner.press("Next")
        expect(learner.bot.last.locator("ul > li > strong", has_text="Urgency")).to_be_visible()
        expect(learner.bot.locator('a[href*="evil"], img, b')).to_have_count(0)
        assert not errors, errors
