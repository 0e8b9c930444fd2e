"""Who is looking at the dashboard: sign-in by a one-time link, the session cookie, CSRF, and the roles behind them.

1. An admin sends `/admin dashboard` in a private chat; the bot answers with `/admin/sign-in?link=…`, valid 10
   minutes, for that admin only and once (dialogs/admin.py; only the link's hash is kept, storage/admins.py).
2. Opening the link shows a page with a button: a GET signs nobody in, so a chat app's link preview cannot use the
   link up. The button POSTs it back; if it is unused and unexpired, it is used up in the same UPDATE, and the browser
   gets a session cookie: random, HttpOnly, SameSite=Strict, Secure over https, Path=/admin, for 8 hours. Every sign-in
   and every refused link is written to the audit log.
3. Each request looks the cookie's hash up (not expired, not signed out) and reads the identity's roles afresh, so a
   role taken away takes effect at the next click. No role: the page says so, and shows nothing.
4. Every form carries a CSRF token, an HMAC of the session cookie under SECRET_KEY, checked on every POST together
   with the Origin header when the browser sends one.
5. Every form (the sign-in's, posted before any session exists, too) is read within MAX_BODY_BYTES (`Access.form`):
   a larger body is refused with 413 without being read past the limit.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import timedelta
from html import escape
from urllib.parse import urlencode, urlsplit

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import Message

from bot.channel import RequestRejected
from bot.dashboard.layout import document, message_page, words_for
from channels.http import read_limited_body
from dialogs.roles import EVERYWHERE, Grant, Scope, grants_of, permitted, scopes
from storage.admins import end_session, session_identity, use_sign_in_link
from storage.db import Database
from storage.models import AdminAuditEntry, utcnow

COOKIE = "lessonbot_admin"
SESSION_LIFETIME = timedelta(hours=8)


class Refused(Exception):
    """A guard's "no": the page the browser gets instead (sign in first, not for your role, no such learner…)."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


@dataclass(frozen=True)
class Viewer:
    """A signed-in admin: who, their roles, and the CSRF token of their session."""

    identity: str
    grants: tuple[Grant, ...]
    csrf: str

    def may(self, area: str, target: Scope = EVERYWHERE) -> bool:
        return permitted(self.grants, area, target)

    def scopes(self, area: str) -> list[Scope]:
        return scopes(self.grants, area)

    def csrf_field(self) -> str:
        return f'<input type="hidden" name="csrf" value="{escape(self.csrf)}">'


class Access:
    def __init__(self, db: Database, *, secret_key: str, owners: Collection[str], site_url: str,
                 max_body_bytes: int = 64 * 1024) -> None:
        self.db = db
        self._secret = secret_key.encode()
        self.owners = frozenset(owners)
        self.secure = site_url.startswith("https://")
        self.origin = "{0.scheme}://{0.netloc}".format(urlsplit(site_url))
        self.max_body_bytes = max_body_bytes  # MAX_BODY_BYTES: what a form may weigh

    async def form(self, request: Request) -> FormData:
        """The form posted, its body read within `max_body_bytes` (channels.http.read_limited_body, as every
        webhook's); Refused with a 413 page past it, read no further (a 400 one when the body does not arrive)."""
        try:
            body = await read_limited_body(request, self.max_body_bytes)
        except RequestRejected as refused:
            raise Refused(message_page(request, "Not done", "The form is larger than this server takes, or did not "
                                       "arrive whole.", status=refused.status)) from None

        async def replayed() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        return await Request(request.scope, replayed).form()

    def csrf_for(self, cookie: str) -> str:
        return hmac.new(self._secret, f"csrf:{cookie}".encode(), hashlib.sha256).hexdigest()

    async def viewer(self, request: Request) -> Viewer | None:
        """The signed-in admin making this request, with the roles they hold now; None when there is none."""
        cookie = request.cookies.get(COOKIE)
        if not cookie:
            return None
        async with self.db.sessions() as session:
            identity = await session_identity(session, cookie, now=utcnow())
            if identity is None:
                return None
            held = await grants_of(session, identity, owners=self.owners)
        return Viewer(identity, held, self.csrf_for(cookie))

    def csrf_ok(self, request: Request, viewer: Viewer, token: object) -> bool:
        """The form's token is this session's, and the request comes from a page of ours (when the browser says)."""
        # (compared as bytes: a token that is not ASCII is refused, not an error)
        return (self.from_our_pages(request) and isinstance(token, str)
                and hmac.compare_digest(token.encode(), viewer.csrf.encode()))

    def flash_query(self, text: str) -> str:
        """The query that shows `text` as the next page's confirmation (`flash_of`), signed: a link someone else made
        shows no words of theirs in the dashboard's own voice."""
        return urlencode({"done": text, "sig": self._flash_signature(text)})

    def flash_of(self, request: Request) -> str:
        """The confirmation the URL carries, if this dashboard signed it; else nothing."""
        text, signature = request.query_params.get("done", ""), request.query_params.get("sig", "")
        return text if text and hmac.compare_digest(signature.encode(), self._flash_signature(text).encode()) else ""

    def _flash_signature(self, text: str) -> str:
        return hmac.new(self._secret, f"flash:{text}".encode(), hashlib.sha256).hexdigest()[:32]

    def from_our_pages(self, request: Request) -> bool:
        """Whether a form was posted from a page of ours, as far as the browser says (its Origin header)."""
        origin = request.headers.get("origin")
        return not origin or origin in (self.origin, f"{request.url.scheme}://{request.url.netloc}")

    # Sign-in and sign-out ---------------------------------------------------------------------------------------

    async def sign_in_page(self, request: Request) -> Response:
        link = request.query_params.get("link", "")
        _language, w = words_for(request)
        body = (
            f'<div class="message"><h1>{escape(w("Lessonbot dashboard"))}</h1>'
            f'<p>{escape(w("Sign in with the link the bot sent you. It works once, for 10 minutes."))}</p>'
            '<form method="post" action="/admin/sign-in">'
            f'<input type="hidden" name="link" value="{escape(link)}">'
            f'<button type="submit">{escape(w("Sign in"))}</button></form></div>'
        )
        return document(request, w("Sign in"), body)

    async def sign_in(self, request: Request) -> Response:
        if not self.from_our_pages(request):  # another site's page posting someone's link: it would sign the visitor
            # in as that someone (their actions then recorded as theirs)
            return message_page(request, "Not signed in", "Sign in on the page the bot's link opens, not from another "
                                "site's page.", status=403)
        form = await self.form(request)
        link = form.get("link")
        cookie = secrets.token_urlsafe(32)
        now = utcnow()
        async with self.db.transaction() as session:
            identity = None
            if isinstance(link, str) and link:
                identity = await use_sign_in_link(session, link, cookie, now=now,
                                                  session_expires_at=now + SESSION_LIFETIME)
            session.add(AdminAuditEntry(identity=identity or "(unknown)", command="dashboard-sign-in", arguments="",
                                        outcome="ok" if identity else "denied"))
        if identity is None:
            return message_page(request, "This link does not work", "It was used already, has expired, or was never "
                                "sent. Send /admin dashboard to the bot in a private chat for a new one.", status=403)
        response = RedirectResponse("/admin", status_code=303, headers={"Cache-Control": "no-store"})
        response.set_cookie(COOKIE, cookie, max_age=int(SESSION_LIFETIME.total_seconds()), path="/admin",
                            httponly=True, samesite="strict", secure=self.secure)
        return response

    async def sign_out(self, request: Request) -> Response:
        viewer = await self.viewer(request)
        form = await self.form(request)
        if viewer is None or not self.csrf_ok(request, viewer, form.get("csrf")):
            return message_page(request, "Not signed out", "This form is out of date. Reload the page and try again.",
                                status=403)
        async with self.db.transaction() as session:
            await end_session(session, request.cookies.get(COOKIE, ""), now=utcnow())
        response = RedirectResponse("/admin/signed-out", status_code=303)
        response.delete_cookie(COOKIE, path="/admin", httponly=True, samesite="strict", secure=self.secure)
        return response


def signed_out_page(request: Request) -> Response:
    return message_page(request, "Signed out", "To sign in again, send /admin dashboard to the bot in a private chat.",
                        status=200)


def sign_in_needed(request: Request) -> Response:
    return message_page(request, "Sign in first", "The dashboard is for admins. Send /admin dashboard to the bot in a "
                        "private chat for a sign-in link.", status=401)


def not_allowed(request: Request) -> Response:
    return message_page(request, "Not for your role", "Your admin role does not include this page. An owner can change "
                        "your role with /admin role grant.", status=403)
