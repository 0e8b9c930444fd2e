"""The admins' dashboard at `/admin`, served by the same app: who may look (access.py), the pages and their figures
(pages.py), the charts (charts.py), the page shell (layout.py). docs/admin.md describes it for operators.

Every route first finds the signed-in admin and checks their roles with dialogs/roles.py's one check; a signed-out
browser gets a page that says how to sign in, a role that does not cover the page one that says so, and neither
sees a number. Every action (requeue, export, erase, grant) is a POST with the session's CSRF token, audited.
"""

from __future__ import annotations

import json
from datetime import timedelta
from html import escape
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bot.dashboard.access import Access, Viewer, not_allowed, sign_in_needed, signed_out_page
from bot.dashboard.layout import HEADERS, css_response, document, message_page, table
from bot.dashboard.pages import PAGES, Context, Page, as_csv, render
from dialogs.personal import erase
from dialogs.roles import Scope, team_of
from storage import dashboard as counts
from storage.courses import SOURCE_GRANT, Course
from storage.db import Database
from storage.models import AdminAuditEntry, utcnow
from storage.outbox import requeue
from storage.payments import grant
from storage.personal_data import export_person


def dashboard_routes(db: Database, access: Access, *, data_dir: Any) -> list[Route]:
    def nav(viewer: Viewer, current: str) -> str:
        links = "".join(
            f'<a href="/admin/{page.name}"{" aria-current=page" if page.name == current else ""}>'
            f"{escape(page.title)}</a>" for page in PAGES.values() if page.visible_to(viewer))
        return (f'<header><span class="brand">Lessonbot</span><nav>{links}</nav>'
                f'<form method="post" action="/admin/sign-out">{viewer.csrf_field()}'
                f'<span class="who">{escape(viewer.identity)}</span> <button type="submit">Sign out</button>'
                "</form></header>")

    async def signed_in(request: Request) -> Viewer | Response:
        viewer = await access.viewer(request)
        if viewer is None:
            return sign_in_needed()
        if not viewer.grants:
            return not_allowed()
        return viewer

    async def page_for(request: Request) -> tuple[Viewer, Page] | Response:
        viewer = await signed_in(request)
        if isinstance(viewer, Response):
            return viewer
        page = PAGES.get(request.path_params.get("page", ""))
        if page is None:
            return message_page("No such page", "Choose a page from the menu.", status=404)
        if not page.visible_to(viewer):
            return not_allowed()
        return viewer, page

    async def figures(viewer: Viewer, page: Page, request: Request) -> tuple[list[Any], Context]:
        async with db.transaction() as session:
            ctx = Context(session, viewer, utcnow(), dict(request.query_params))
            return await page.build(ctx), ctx

    async def home(request: Request) -> Response:
        viewer = await signed_in(request)
        if isinstance(viewer, Response):
            return viewer
        first = next((page for page in PAGES.values() if page.visible_to(viewer)), None)
        if first is None:
            return not_allowed()
        return RedirectResponse(f"/admin/{first.name}", status_code=303)

    async def show(request: Request) -> Response:
        found = await page_for(request)
        if isinstance(found, Response):
            return found
        viewer, page = found
        built, ctx = await figures(viewer, page, request)
        flash = request.query_params.get("done", "")
        body = (f"<h1>{escape(page.title)}</h1>" + (f'<p class="flash">{escape(flash[:200])}</p>' if flash else "")
                + render(built, page))
        return document(page.title, body, nav=nav(viewer, page.name),
                        headers={"Server-Timing": f'cold;desc="{",".join(ctx.cold)}"'} if ctx.cold else None)

    async def download(request: Request) -> Response:
        found = await page_for(request)
        if isinstance(found, Response):
            return found
        viewer, page = found
        built, _ctx = await figures(viewer, page, request)
        figure = next((f for f in built if f.key == request.path_params["figure"]), None)
        if figure is None:
            return message_page("No such figure", "Choose a CSV link on the page.", status=404)
        return Response(as_csv(figure), media_type="text/csv; charset=utf-8", headers={
            **HEADERS, "Content-Disposition": f'attachment; filename="lessonbot-{page.name}-{figure.key}.csv"'})

    # Actions ------------------------------------------------------------------------------------------------------

    async def checked_form(request: Request, area: str) -> tuple[Viewer, dict[str, Any]] | Response:
        viewer = await signed_in(request)
        if isinstance(viewer, Response):
            return viewer
        form = dict(await request.form())
        if not access.csrf_ok(request, viewer, form.get("csrf")):
            return message_page("Not done", "This form is out of date. Reload the page and try again.", status=403)
        if not viewer.scopes(area):
            return not_allowed()
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
            return not_allowed()
        async with db.transaction() as session:
            count = await requeue(session, None)
            audit(session, viewer, "requeue", "all", "ok")
        return RedirectResponse(f"/admin/overview?done=Requeued {count} dead letters.", status_code=303)

    async def learner_in_reach(request: Request, viewer: Viewer, area: str) -> tuple[int, dict[str, Any]] | Response:
        """The learner of the URL, if the viewer's learners role reaches them (a workspace's support: its people)."""
        user_id = request.path_params["user_id"]
        async with db.sessions() as session:
            found = await counts.timeline(session, user_id)
        if found is None:
            return message_page("No such learner", "They may have been erased.", status=404)
        targets = {team_of(address) for address in found["addresses"]} or {Scope()}
        if not any(viewer.may(area, target) for target in targets):
            return not_allowed()
        return user_id, found

    async def learner(request: Request) -> Response:
        viewer = await signed_in(request)
        if isinstance(viewer, Response):
            return viewer
        if not PAGES["learners"].visible_to(viewer):
            return not_allowed()
        found = await learner_in_reach(request, viewer, "learners")
        if isinstance(found, Response):
            return found
        user_id, person = found
        async with db.sessions() as session:
            courses = [slug for slug in await session.scalars(select(Course.slug).order_by(Course.slug))
                       if viewer.may("access", Scope("course", slug))]
        facts = table(("", ""), [["name", person["name"]], ["addresses", ", ".join(person["addresses"])],
                                 ["status", person["status"]], ["language", person["locale"]],
                                 ["time zone", person["timezone"]], ["streak", person["streak"]],
                                 ["points", person["points"]]])
        flash = request.query_params.get("done", "")
        actions = [f'<a href="/admin/learners/{user_id}/export" download>Export their data (JSON)</a>']
        if courses:
            options = "".join(f"<option>{escape(slug)}</option>" for slug in courses)
            actions.append(f'<form method="post" action="/admin/learners/{user_id}/grant">{viewer.csrf_field()}'
                           f'<label>Give a course <select name="course">{options}</select></label> '
                           '<label>for <input name="days" inputmode="numeric" size="4" placeholder="∞"> days</label> '
                           '<button type="submit">Grant</button></form>')
        actions.append(f'<form method="post" action="/admin/learners/{user_id}/erase">{viewer.csrf_field()}'
                       '<label><input type="checkbox" name="confirm" value="yes" required> delete everything kept '
                       'about this learner, as their own /stop → delete does</label> '
                       '<button type="submit" class="danger">Erase</button></form>')
        body = (f"<h1>{escape(person['name'] or '(no name)')}</h1>"
                + (f'<p class="flash">{escape(flash[:200])}</p>' if flash else "")
                + '<div class="grid"><section class="figure"><h2>Who</h2>' + facts + "</section>"
                + '<section class="figure"><h2>Actions</h2>' + "".join(f"<p>{a}</p>" for a in actions) + "</section>"
                + '<section class="figure"><h2>Courses</h2>'
                + table(("course", "title", "status", "started", "completed"), person["courses"]) + "</section>"
                + '<section class="figure"><h2>Timeline (newest first)</h2>'
                + table(("when", "what", "detail"), person["events"]) + "</section></div>")
        return document(person["name"] or "Learner", body, nav=nav(viewer, "learners"))

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

    async def erase_learner(request: Request) -> Response:
        checked = await checked_form(request, "learners")
        if isinstance(checked, Response):
            return checked
        viewer, form = checked
        found = await learner_in_reach(request, viewer, "learners")
        if isinstance(found, Response):
            return found
        user_id, _person = found
        if form.get("confirm") != "yes":
            return RedirectResponse(f"/admin/learners/{user_id}?done=Tick the box to confirm.", status_code=303)
        async with db.transaction() as session:
            erasure = await erase(session, user_id, data_dir=data_dir, by=viewer.identity)
        return RedirectResponse(f"/admin/learners?done=Erased: {erasure.messages} messages and {erasure.replies} "
                                "replies went with the rest of that learner's data.", status_code=303)

    async def grant_course(request: Request) -> Response:
        checked = await checked_form(request, "access")
        if isinstance(checked, Response):
            return checked
        viewer, form = checked
        found = await learner_in_reach(request, viewer, "learners")
        if isinstance(found, Response):
            return found
        user_id, _person = found
        slug, days = str(form.get("course", "")), str(form.get("days", "")).strip()
        if not viewer.may("access", Scope("course", slug)):
            return not_allowed()
        if days and not (days.isdigit() and 1 <= int(days) <= 3650):
            return RedirectResponse(f"/admin/learners/{user_id}?done=Days: a number from 1 to 3650, or empty.",
                                    status_code=303)
        now = utcnow()
        async with db.transaction() as session:
            course = await session.scalar(select(Course).where(Course.slug == slug))
            if course is None:
                return message_page("No such course", "Choose a course from the list.", status=404)
            await grant(session, user_id, course.id, source=SOURCE_GRANT, reference=f"dashboard:{now.isoformat()}",
                        expires_at=now + timedelta(days=int(days)) if days else None, now=now)
            audit(session, viewer, "grant", f"user {user_id} {slug} {days}".strip(), "ok")
        return RedirectResponse(f"/admin/learners/{user_id}?done=Granted {slug}.", status_code=303)

    async def stylesheet(request: Request) -> Response:
        return css_response()

    async def signed_out(request: Request) -> Response:
        return signed_out_page()

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
