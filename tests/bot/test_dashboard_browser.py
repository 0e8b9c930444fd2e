"""The dashboard in a real browser: Debian's Chromium, headless, driven by Playwright, against `lessonbot serve`.

The admin gets the sign-in link the way an admin does, by sending `/admin dashboard` to the bot (here in `lessonbot
chat`, the terminal channel), and signs in by pressing the page's button. Every page is opened at a desktop's size
(1280×800) and a phone's (390×844), with a screenshot of each left in the test's tmp folder; on a phone nothing may
be wider than the screen. A signed-out browser and a person whose role was taken away see no figure.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bot.test_webchat_browser import DESKTOP, PHONE, SAMPLE, browser, chromium  # noqa: F401 (fixtures)
from tests.support import LESSONBOT, ServerProcess, serve, server_env

pytestmark = pytest.mark.browser

PAGES = ("overview", "learning", "engagement", "knowledge", "learners", "revenue")


def lessonbot(env: dict[str, str], *args: str, text: str | None = None) -> str:
    done = subprocess.run([*LESSONBOT, *args], env=env, input=text, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp_path = tmp_path_factory.mktemp("dashboard")
    return server_env(f"sqlite:///{tmp_path / 'lessonbot.db'}", tmp_path / "var", ADMINS="console:boss")


@pytest.fixture(scope="module")
def server(env: dict[str, str]) -> Iterator[ServerProcess]:
    lessonbot(env, "db", "upgrade")
    lessonbot(env, "course", "import", str(SAMPLE))
    lessonbot(env, "chat", "--user", "ann", text="/start\nYes\n")  # someone to count
    server = serve(env)
    try:
        yield server
    finally:
        server.stop()


def sign_in_link(env: dict[str, str], server: ServerProcess, user: str) -> str:
    """What the bot answers `/admin dashboard` with, pointed at the running server."""
    said = lessonbot(env, "chat", "--user", user, text="/admin dashboard\n")
    token = re.search(r"/admin/sign-in\?link=(\S+)", said)
    assert token, said
    return f"{server.url}/admin/sign-in?link={token[1]}"


def signed_in(browser, env, server, user: str, **context):
    from playwright.sync_api import expect

    page = browser.new_context(**context).new_page()
    page.goto(sign_in_link(env, server, user))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("navigation")).to_be_visible()
    return page


def fits_the_screen(page) -> bool:
    return page.evaluate("document.scrollingElement.scrollWidth <= window.innerWidth + 1")


def test_a_signed_out_browser_sees_no_figure(server, browser, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_context(**PHONE).new_page()
    for name in PAGES:
        response = page.goto(f"{server.url}/admin/{name}")
        assert response.status == 401
        expect(page.get_by_role("heading", name="Sign in first")).to_be_visible()
        assert page.locator("svg, table, nav").count() == 0
    page.screenshot(path=tmp_path / "signed-out-phone.png", full_page=True)


def test_an_admin_signs_in_with_the_link_and_reads_every_page_on_desktop_and_phone(server, env, browser, tmp_path):
    from playwright.sync_api import expect

    errors: list[str] = []
    for size, context in (("desktop", DESKTOP), ("phone", PHONE)):
        page = signed_in(browser, env, server, "boss", **context)
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        expect(page).to_have_url(re.compile(r"/admin/overview$"))
        for name in PAGES:
            page.get_by_role("navigation").get_by_role("link", name=name.capitalize()).click()
            expect(page.get_by_role("heading", level=1)).to_have_text(name.capitalize())
            assert fits_the_screen(page), f"{name} is wider than the {size} screen"
            page.screenshot(path=tmp_path / f"{name}-{size}.png", full_page=True)
        assert errors == []  # the Content-Security-Policy refused nothing the page needs

    page.goto(f"{server.url}/admin/learning")
    expect(page.locator("svg.chart").first).to_be_visible()
    with page.expect_download() as download:
        page.locator("#funnel").get_by_role("link", name="CSV").click()
    assert download.value.suggested_filename == "lessonbot-learning-funnel.csv"
    assert Path(download.value.path()).read_text().startswith("stage,learners")

    page.goto(f"{server.url}/admin/learners")
    page.get_by_label("Find a learner").fill("console:ann")
    page.get_by_role("button", name="Find").click()
    page.locator("main ul a").first.click()
    expect(page.get_by_role("heading", name="Timeline (newest first)")).to_be_visible()
    expect(page.locator("main")).to_contain_text("console:ann")

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Signed out")
    assert page.goto(f"{server.url}/admin/overview").status == 401


def test_a_person_without_a_role_sees_nothing(server, env, browser, tmp_path):
    from playwright.sync_api import expect

    said = lessonbot(env, "chat", "--user", "ann", text="/admin dashboard\n")
    assert "admins only" in said and "/admin/sign-in" not in said  # no link for a learner

    lessonbot(env, "admin", "role", "grant", "console:sam", "support")
    page = signed_in(browser, env, server, "sam", **DESKTOP)
    expect(page.get_by_role("navigation").get_by_role("link")).to_have_text(["Overview", "Learners"])
    assert page.goto(f"{server.url}/admin/revenue").status == 403
    lessonbot(env, "admin", "role", "revoke", "console:sam", "support")
    response = page.goto(f"{server.url}/admin/overview")
    assert response.status == 403
    expect(page.get_by_role("heading", name="Not for your role")).to_be_visible()
    assert page.locator("svg, table, nav").count() == 0
    page.screenshot(path=tmp_path / "no-role-desktop.png", full_page=True)
