"""The web chat page's script (channels/webchat/web/chat.js) showing replies rendered by the server's own code, in
Debian's headless Chromium. The page and its files are served from channels/webchat/web as they are; the chat API
answers from here (a session, one page of history), so no server process is needed to look at one bubble."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.messages import literal
from channels.webchat.routes import PAGE_HEADERS, rendered
from tests.conftest import missing

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
WEB = Path(__file__).resolve().parents[2] / "channels" / "webchat" / "web"
ORIGIN = "http://chat.test"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        missing(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=10_000)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--headless=new", "--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def show(browser, markdown: str):
    """The chat page with one reply in its history: `markdown` as the server renders it (`text` and `html`)."""
    from playwright.sync_api import expect

    reply = {"id": 1, "kind": "text", "choices": [], **rendered(markdown, remember=False)}
    history = [[reply]]
    page, errors = chat_page(browser, lambda: history.pop() if history else [],
                             lambda route: route.fulfill(status=200, headers={"Content-Type": "text/event-stream"},
                                                         body=": open\n\n"))
    expect(page.locator(".message--bot .bubble")).to_have_count(1)
    return page, errors, json.dumps(reply)


def chat_page(browser, replies: Callable[[], list[dict]], events: Callable[[Any], None]):
    """The chat page, its API answered here: a session, `replies()` for each look at the history, `events` for the
    event stream; the page and the script errors it raised."""

    def answer(route) -> None:
        path = route.request.url.removeprefix(ORIGIN).split("?")[0]
        if path.endswith("/api/sessions"):
            route.fulfill(json={"session": "s1.1.sig"})
        elif path.endswith("/api/messages"):
            route.fulfill(json={"session": "s1.1.sig", "replies": replies()})
        elif path.endswith("/api/words"):
            route.fulfill(json={"language": "en", "words": {}})
        elif path.endswith("/api/events"):
            events(route)
        else:
            file = WEB / ("index.html" if path in ("", "/") else Path(path).name)
            headers = PAGE_HEADERS if file.name == "index.html" else {}  # the page's policy, as the server sends it
            route.fulfill(body=file.read_bytes(), content_type=TYPES[file.suffix], headers=headers)

    page = browser.new_context().new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if "Content Security Policy" in message.text
            else None)  # anything the page's policy refused
    page.route(f"{ORIGIN}/**", answer)
    page.goto(f"{ORIGIN}/")
    return page, errors


def test_a_bare_address_in_a_reply_is_a_link_and_code_stays_code(browser):
    markdown = (
        "Read https://en.wikipedia.org/wiki/_Hello_ and **[the guide](https://example.com/guide)**.\n\n"
        "```python\n# a comment, not a heading\nprint(__name__, 'https://in.code/x')\n```"
    )
    page, errors, reply = show(browser, markdown)
    bubble = page.locator(".message--bot .bubble")
    links = bubble.locator("a")
    assert links.evaluate_all("links => links.map(a => [a.textContent, a.href, a.rel, a.target])") == [
        ["https://en.wikipedia.org/wiki/_Hello_", "https://en.wikipedia.org/wiki/_Hello_", "noopener noreferrer",
         "_blank"],
        ["the guide", "https://example.com/guide", "noopener noreferrer", "_blank"],
    ], reply
    code = bubble.locator("pre > code")
    assert code.text_content() == "# a comment, not a heading\nprint(__name__, 'https://in.code/x')"
    assert bubble.locator("em, pre strong, pre a").count() == 0
    assert not errors, errors


def test_an_address_in_outside_text_is_linked_as_text_never_as_markup(browser):
    hostile = 'https://x.test/"><img src=x onerror=alert(1)> <script>alert(2)</script>'
    page, errors, _ = show(browser, literal(hostile))
    bubble = page.locator(".message--bot .bubble")
    assert bubble.locator("img, script").count() == 0
    assert bubble.locator("a").evaluate_all("links => links.map(a => a.href)") == ["https://x.test/"]
    assert bubble.text_content() == hostile
    assert not errors, errors


def test_replies_still_come_while_the_server_refuses_the_event_stream(browser):
    """Too many streams from one address (a classroom behind one router): the server answers the stream 429; the
    page asks for replies as plain requests meanwhile, and tries the stream again ever less often."""
    from playwright.sync_api import expect

    reply = {"id": 1, "kind": "text", "choices": [], **rendered("Here is your lesson.", remember=False)}
    asked = {"messages": 0, "events": 0}

    def replies() -> list[dict]:
        asked["messages"] += 1  # the first, the page's history: nothing yet; then the reply
        return [reply] if asked["messages"] > 1 else []

    def refused(route) -> None:
        asked["events"] += 1
        route.fulfill(status=429, headers={"Retry-After": "30"}, json={"error": "Too many chats from this address."})

    page, errors = chat_page(browser, replies, refused)
    expect(page.locator(".message--bot .bubble")).to_have_text("Here is your lesson.")
    page.wait_for_timeout(7000)
    assert asked["events"] <= 3, asked  # 2 s, then 4 s, then 8 s between tries: not every 2 s
    assert page.locator(".message--bot .bubble").count() == 1 and not errors, errors


def test_the_pages_policy_holds_in_the_browser_and_refuses_what_the_page_never_does(browser):
    """The page with its Content-Security-Policy header, as the server sends it: the page works with nothing refused,
    and a script or a style written into the page (what a reply could smuggle in, were it ever parsed as HTML) is
    refused, as is a frame of it on another site's page."""
    page, errors, _ = show(browser, "Hello **there**.")
    assert not errors, errors
    refused = page.evaluate("""() => new Promise(resolve => {
        const seen = [];
        document.addEventListener("securitypolicyviolation", event => {
            seen.push(event.effectiveDirective);
            if (seen.length === 2) resolve(seen.sort());
        });
        const script = document.createElement("script");
        script.textContent = "window.ran = true";
        document.body.append(script);
        const style = document.createElement("style");
        style.textContent = "body { background: red }";
        document.head.append(style);
    })""")
    assert refused == ["script-src-elem", "style-src-elem"] and page.evaluate("window.ran") is None

    framing = browser.new_context().new_page()
    framing.route("http://elsewhere.test/", lambda route: route.fulfill(
        body=f'<iframe src="{ORIGIN}/"></iframe>', content_type="text/html"))
    framing.route(f"{ORIGIN}/**", lambda route: route.fulfill(
        body=(WEB / "index.html").read_bytes(), content_type="text/html", headers=PAGE_HEADERS))
    with framing.expect_console_message(lambda message: "frame-ancestors 'none'" in message.text):
        framing.goto("http://elsewhere.test/")
    assert framing.frame_locator("iframe").locator("#composer").count() == 0  # the frame shows nothing of it
