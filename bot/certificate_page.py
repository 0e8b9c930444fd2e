"""The public page that tells anyone holding a certificate whether it is genuine: `GET /certificates/CODE`.

The address is printed on every certificate (and as a QR code). The page says whether the certificate is valid and
shows the learner's name, the course and the date, and nothing else: no account, no progress, no other certificate. A
code nobody holds is a 404 page that says so. Codes are 80 random bits (dialogs/certificate.py), so they cannot
be guessed to browse others' certificates. Every value on the page is HTML-escaped and set in its own direction (a
right-to-left name reads as written); the page loads nothing.
"""

from __future__ import annotations

from html import escape

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from dialogs.certificate import as_typed, canonical_code
from dialogs.pages import certificate_page_words
from storage.db import Database
from storage.learners import certificate_by_code
from storage.models import User

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
STYLE = """
body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#eef0f5;color:#1f2430}
main{max-width:560px;margin:8vh auto;padding:28px 24px;background:#fff;border-radius:16px;
box-shadow:0 1px 3px rgba(16,24,40,.12)}
h1{margin:0 0 4px;font-size:22px}.state{margin:0 0 20px;font-weight:600}.valid{color:#067647}.unknown{color:#b42318}
dl{margin:0;display:grid;grid-template-columns:max-content 1fr;gap:8px 16px}dt{color:#667085}dd{margin:0}
code{font-family:ui-monospace,Menlo,Consolas,monospace}
"""


def certificate_routes(db: Database) -> list[Route]:
    async def verify(request: Request) -> Response:
        language, words = certificate_page_words(request.headers.get("accept-language"))
        typed = request.path_params["code"]
        code = canonical_code(typed)
        if code is None:  # cannot be a code: held by no certificate
            return not_found(language, words, as_typed(typed))
        async with db.sessions() as session:
            row = await certificate_by_code(session, code)
            # the date printed on the certificate (one issued before it was kept: in the learner's zone of now)
            zone = (await session.scalar(select(User.timezone).where(User.id == row.user_id))
                    if row is not None and row.issued_on is None else None)
        if row is None:
            return not_found(language, words, code)
        facts = (
            (words["learner"], row.learner_name),
            (words["course"], row.course_title),
            (words["date"], row.printed_on(zone).isoformat()),
        )
        # each value set in its own direction (dir="auto"), apart from the page's: a name in Arabic or Hebrew reads
        # as written, its brackets and numbers where they belong
        listed = "".join(f'<dt>{escape(name)}</dt><dd dir="auto">{escape(value)}</dd>' for name, value in facts)
        body = f'<p class="state valid">✔ {escape(words["valid"])}</p><dl>{listed}</dl>'
        return page(language, words, body, status=200)

    return [Route("/certificates/{code}", verify)]


def not_found(language: str, words: dict[str, str], code: str) -> Response:
    """The 404 page: no certificate has `code` (as stored, or as typed when it cannot be one)."""
    detail = escape(words["not_found_detail"]).replace("{code}", f"<code>{escape(code)}</code>")
    body = f'<p class="state unknown">{escape(words["not_found"])}</p><p>{detail}</p>'
    return page(language, words, body, status=404)


def page(language: str, words: dict[str, str], body: str, *, status: int) -> Response:
    title = escape(words["title"])
    html = (
        f'<!doctype html><html lang="{escape(language)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="robots" content="noindex"><title>{title}</title><style>{STYLE}</style></head>'
        f"<body><main><h1>{title}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=HEADERS)
