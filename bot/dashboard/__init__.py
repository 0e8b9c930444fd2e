"""The admins' dashboard at `/admin`, served by the same app: who may look (access.py), the pages and their figures
(pages.py), the charts (charts.py), the page shell (layout.py). docs/admin.md describes it for operators.

Every route first finds the signed-in admin and checks their roles with dialogs/roles.py's one check; a signed-out
browser gets a page that says how to sign in, a role that does not cover the page one that says so, and neither
sees a number. Every change (requeue, erase, grant) is a POST with the session's CSRF token, audited; an export is
a GET (it changes nothing, and the SameSite=Strict cookie keeps other sites from asking for one), audited too.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from datetime import timedelta
from html import escape
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bot.dashboard.access import Access, Viewer, not_allowed, sign_in_needed, signed_out_page
from bot.dashboard.layout import HEADERS, Words, css_response, document, message_page, table, words_for
from bot.dashboard.pages import PAGES, Context, Page, as_csv, render
from bot.text import whole_number
from dialogs.payments import PaymentDesk
from dialogs.personal import HoldsRoles, erase_outside_turn
from dialogs.roles import Scope, team_of
from storage import dashboard as counts
from storage.courses import SOURCE_GRANT, Course
from storage.db import Database
from storage.models import AdminAuditEntry, utcnow
from storage.outbox import requeue
from storage.payments import grant
from storage.personal_data import export_person


def dashboard_routes(db: Database, access: Access, *, data_dir: Any, payments: PaymentDesk) -> list[Route]:
    def nav(w: Words, viewer: Viewer, current: str) -> str:
        links = "".join(
            f'<a href="/admin/{page.name}"{" aria-current=page" if page.name == current else ""}>'
            f"{escape(w(page.title))}</a>" for page in PAGES.values() if page.visible_to(viewer))
        return (f'<header><span class="brand">Lessonbot</span><nav>{links}</nav>'
                f'<form method="post" action="/admin/sign-out">{viewer.csrf_field()}'
                f'<span class="who">{escape(viewer.identity)}</span> '
                f'<button type="submit">{escape(w("Sign out"))}</button></form></header>')

    async def signed_in(request: Request) -> Viewer | Response:
        viewer = await access.viewer(request)
        if viewer is None:
            return sign_in_needed(request)
        if not viewer.grants:
            return not_allowed(request)
        return viewer

    async def page_for(request: Request) -> tuple[Viewer, Page] | Response:
        viewer = await signed_in(request)
        if isinstance(viewer, Response):
            return viewer
        page = PAGES.get(request.path_params.get("page", ""))
        if page is None:
            return message_page(request, "No such page", "Choose a page from the menu.", status=404)
        if not page.visible_to(viewer):
            return not_allowed(request)
        return viewer, page

    async def figures(viewer: Viewer, page: Page, request: Request) -> tuple[list[Any], Context]:
        _language, w = words_for(request)
        async with db.transaction() as session:
            ctx = Context(session, viewer, utcnow(), dict(request.query_params), w)
            return await page.build(ctx), ctx

    async def home(request: Request) -> Response:
        viewer = await signed_in(request)
        if isinstance(viewer, Response):
            return viewer
        first = next((page for page in PAGES.values() if page.visible_to(viewer)), None)
        if first is None:
            return not_allowed(request)
        return RedirectResponse(f"/admin/{first.name}", status_code=303)

    async def show(request: Request) -> Response:
        found = await page_for(request)
        if isinstance(found, Response):
            return found
        viewer, page = found
        built, ctx = await figures(viewer, page, request)
        flash = access.flash_of(request)
        w = ctx.w
        counted = ""
        if ctx.counted_at is not None:
            when = w("Counted at {time} UTC, and again every 5 minutes.", time=f"{ctx.counted_at:%Y-%m-%d %H:%M}")
            counted = f'<p class="note">{escape(when)}</p>'
        body = (f"<h1>{escape(w(page.title))}</h1>" + counted
                + (f'<p class="flash">{escape(flash[:200])}</p>' if flash else "") + render(w, built, page))
        return document(request, w(page.title), body, nav=nav(w, viewer, page.name),
                        headers={"Server-Timing": f'cold;desc="{",".join(ctx.cold)}"'} if ctx.cold else None)

    async def download(request: Request) -> Response:
        found = await page_for(request)
        if isinstance(found, Response):
            return found
        viewer, page = found
        built, _ctx = await figures(viewer, page, request)
        figure = next((f for f in built if f.key == request.path_params["figure"]), None)
        if figure is None:
            return message_page(request, "No such figure", "Choose a CSV link on the page.", status=404)
        return Response(as_csv(figure), media_type="text/csv; charset=utf-8", headers={
            **HEADERS, "Content-Disposition": f'attachment; filename="lessonbot-{page.name}-{figure.key}.csv"'})

    # Actions ------------------------------------------------------------------------------------------------------

    async def checked_form(request: Request, area: str) -> tuple[Viewer, dict[str, Any]] | Response:
        viewer = await signed_in(request)
        if isinstance(viewer, Response):
            return viewer
        form = dict(await request.form())
        if not access.csrf_ok(request, viewer, form.get("csrf")):
            return message_page(request, "Not done", "This form is out of date. Reload the page and try again.",
                                status=403)
        if not viewer.scopes(area):
            return not_allowed(request)
        return viewer, form

    def audit(session: Any, viewer: Viewer, command: str, arguments: str, outcome: str) -> None:
        session.add(AdminAuditEntry(identity=viewer.identity, command=f"dashboard:{command}", arguments=arguments,
                                    outcome=outcome))

    async def requeue_dead(request: Request) -> Response:
        checked = await checked_form(request, "delivery")
        if isinstance(checked, Response):
            return checked
        viewer, form = checked
        if not viewer.may("delivery"):
            return not_allowed(request)
        async with db.transaction() as session:
            count = await requeue(session, None)
            audit(session, viewer, "requeue", "all", "ok")
        _language, w = words_for(request)
        return RedirectResponse(f"/admin/overview?{access.flash_query(w('Requeued {n} dead letters.', n=count))}",
                                status_code=303)

    async def learner_in_reach(request: Request, viewer: Viewer, area: str) -> tuple[int, dict[str, Any]] | Response:
        """The learner of the URL, if the viewer's learners role reaches them (a workspace's support: its people)."""
        user_id = request.path_params["user_id"]
        async with db.sessions() as session:
            found = await counts.timeline(session, user_id)
        if found is None:
            return message_page(request, "No such learner", "They may have been erased.", status=404)
        targets = {team_of(address) for address in found["addresses"]} or {Scope()}
        if not any(viewer.may(area, target) for target in targets):
            return not_allowed(request)
        return user_id, found

    async def learner(request: Request) -> Response:
        viewer = await signed_in(request)
        if isinstance(viewer, Response):
            return viewer
        if not PAGES["learners"].visible_to(viewer):
            return not_allowed(request)
        found = await learner_in_reach(request, viewer, "learners")
        if isinstance(found, Response):
            return found
        user_id, person = found
        _language, w = words_for(request)
        async with db.sessions() as session:
            courses = [slug for slug in await session.scalars(select(Course.slug).order_by(Course.slug))
                       if viewer.may("access", Scope("course", slug))]
        facts = table(("", ""), [[w("name"), person["name"]], [w("addresses"), ", ".join(person["addresses"])],
                                 [w("status"), person["status"]], [w("language"), person["locale"]],
                                 [w("time zone"), person["timezone"]], [w("streak"), person["streak"]],
                                 [w("points"), person["points"]]])
        flash = access.flash_of(request)
        actions = [f'<a href="/admin/learners/{user_id}/export" download>{escape(w("Export their data (JSON)"))}</a>']
        if courses:
            options = "".join(f"<option>{escape(slug)}</option>" for slug in courses)
            actions.append(f'<form method="post" action="/admin/learners/{user_id}/grant">{viewer.csrf_field()}'
                           f'<label>{escape(w("Give a course"))} <select name="course">{options}</select></label> '
                           f'<label>{escape(w("for how many days (empty: for good)"))} <input name="days" '
                           f'inputmode="numeric" size="4"></label> <button type="submit">{escape(w("Grant"))}</button>'
                           "</form>")
        actions.append(f'<form method="post" action="/admin/learners/{user_id}/erase">{viewer.csrf_field()}'
                       '<label><input type="checkbox" name="confirm" value="yes" required> '
                       f'{escape(w("delete everything kept about this learner, as their own /stop → delete does"))}'
                       f'</label> <button type="submit" class="danger">{escape(w("Erase"))}</button></form>')
        kinds = {"lesson": w("lesson"), "answer": w("answer"), "wrong answer": w("wrong answer"),
                 "message": w("message")}
        events = [[when, kinds.get(kind, kind), detail] for when, kind, detail in person["events"]]
        name = person["name"] or w("(no name)")
        body = (f"<h1>{escape(name)}</h1>"
                + (f'<p class="flash">{escape(flash[:200])}</p>' if flash else "")
                + f'<div class="grid"><section class="figure"><h2>{escape(w("Who"))}</h2>' + facts + "</section>"
                + f'<section class="figure"><h2>{escape(w("Actions"))}</h2>'
                + "".join(f"<p>{a}</p>" for a in actions) + "</section>"
                + f'<section class="figure wide"><h2>{escape(w("Courses"))}</h2>'
                + table((w("course"), w("title"), w("status"), w("started"), w("completed")), person["courses"])
                + f'</section><section class="figure wide"><h2>{escape(w("Timeline (newest first)"))}</h2>'
                + table((w("when"), w("what"), w("detail")), events) + "</section></div>")
        return document(request, name, body, nav=nav(w, viewer, "learners"))

    async def export(request: Request) -> Response:
        viewer = await signed_in(request)
        if isinstance(viewer, Response):
            return viewer
        found = await learner_in_reach(request, viewer, "learners")
        if isinstance(found, Response):
            return found
        user_id, _person = found
        async with db.transaction() as session:
            document_ = await export_person(session, user_id, now=utcnow())
            audit(session, viewer, "export", f"user {user_id}", "ok")
        return Response(json.dumps(document_, ensure_ascii=False, indent=2), media_type="application/json", headers={
            **HEADERS, "Content-Disposition": f'attachment; filename="lessonbot-learner-{user_id}.json"'})

    async def learner_form(request: Request, area: str) -> tuple[Viewer, dict[str, Any], int] | Response:
        """A form posted about the learner of the URL: checked (CSRF, `area`), and the learner in the viewer's reach."""
        checked = await checked_form(request, area)
        if isinstance(checked, Response):
            return checked
        viewer, form = checked
        found = await learner_in_reach(request, viewer, "learners")
        if isinstance(found, Response):
            return found
        return viewer, form, found[0]

    async def erase_learner(request: Request) -> Response:
        posted = await learner_form(request, "learners")
        if isinstance(posted, Response):
            return posted
        viewer, form, user_id = posted
        _language, w = words_for(request)
        if form.get("confirm") != "yes":
            return RedirectResponse(f"/admin/learners/{user_id}?{access.flash_query(w('Tick the box to confirm.'))}",
                                    status_code=303)
        try:
            erasure = await erase_outside_turn(db, user_id, by=viewer.identity, may_take_roles=viewer.may("roles"),
                                               data_dir=data_dir, desk=lambda: nullcontext(payments))
        except HoldsRoles:
            async with db.transaction() as session:
                audit(session, viewer, "erase", f"user {user_id}", "denied")
            told = w("This learner holds admin roles, which only an owner may take away: an owner revokes them first "
                     "(/admin role list shows them), then the erasure can go ahead.")
            return RedirectResponse(f"/admin/learners/{user_id}?{access.flash_query(told)}", status_code=303)
        done = w("Erased: {messages} messages and {replies} replies went with the rest of that learner's data.",
                 messages=erasure.messages, replies=erasure.replies)
        return RedirectResponse(f"/admin/learners?{access.flash_query(done)}", status_code=303)

    async def grant_course(request: Request) -> Response:
        posted = await learner_form(request, "access")
        if isinstance(posted, Response):
            return posted
        viewer, form, user_id = posted
        slug, days = str(form.get("course", "")), str(form.get("days", "")).strip()
        if not viewer.may("access", Scope("course", slug)):
            return not_allowed(request)
        _language, w = words_for(request)
        if days and not whole_number(days, most=3650):
            done = w("Days: a number from 1 to 3650, or empty.")
            return RedirectResponse(f"/admin/learners/{user_id}?{access.flash_query(done)}", status_code=303)
        now = utcnow()
        async with db.transaction() as session:
            course = await session.scalar(select(Course).where(Course.slug == slug))
            if course is None:
                return message_page(request, "No such course", "Choose a course from the list.", status=404)
            await grant(session, user_id, course.id, source=SOURCE_GRANT, reference=f"dashboard:{now.isoformat()}",
                        expires_at=now + timedelta(days=int(days)) if days else None, now=now)
            audit(session, viewer, "grant", f"user {user_id} {slug} {days}".strip(), "ok")
        return RedirectResponse(f"/admin/learners/{user_id}?{access.flash_query(w('Granted {course}.', course=slug))}",
                                status_code=303)

    async def stylesheet(request: Request) -> Response:
        return css_response()

    async def signed_out(request: Request) -> Response:
        return signed_out_page(request)

    return [
        Route("/admin", home),
        Route("/admin/dashboard.css", stylesheet),
        Route("/admin/sign-in", access.sign_in_page, methods=["GET"]),
        Route("/admin/sign-in", access.sign_in, methods=["POST"]),
        Route("/admin/sign-out", access.sign_out, methods=["POST"]),
        Route("/admin/signed-out", signed_out),
        Route("/admin/overview/requeue", requeue_dead, methods=["POST"]),
        Route("/admin/learners/{user_id:int}", learner),
        Route("/admin/learners/{user_id:int}/export", export),
        Route("/admin/learners/{user_id:int}/erase", erase_learner, methods=["POST"]),
        Route("/admin/learners/{user_id:int}/grant", grant_course, methods=["POST"]),
        Route("/admin/{page}/{figure}.csv", download),
        Route("/admin/{page}", show),
    ]
