"""The admins' dashboard at `/admin`, served by the same app: who may look (access.py), the pages and their figures
(pages.py), the charts (charts.py), the page shell (layout.py). docs/admin.md describes it for operators.

Every route first finds the signed-in admin and checks their roles with dialogs/roles.py's one check; a signed-out
browser gets a page that says how to sign in, a role that does not cover the page one that says so, and neither
sees a number. Every change (requeue, erase, grant) is a POST with the session's CSRF token, audited; an export is
a GET (it changes nothing, and the SameSite=Strict cookie keeps other sites from asking for one), audited too.

Here: `Dashboard`, one method a page or action. Its guards (`signed_in`, `page_for`, `checked_form`,
`learner_in_reach`, `learner_form`) give what they found or raise `Refused` with the page to show instead;
`answering` turns that into the response, and `dashboard_routes` wraps each method in it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from starlette.convertors import IntegerConvertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from bot.dashboard.access import Access, Refused, Viewer, not_allowed, sign_in_needed, signed_out_page
from bot.dashboard.layout import HEADERS, css_response, document, message_page, words_for
from bot.dashboard.pages import PAGES, Context, Figure, Page, as_csv, learner_body, learner_name, navigation, page_body
from bot.text import storable, whole_number
from dialogs.access import requeue_failed
from dialogs.payments import MAX_ACCESS_DAYS, PaymentDesk
from dialogs.personal import (
    ChargesElsewhere,
    HoldsRoles,
    NotThatPerson,
    erase_outside_turn,
    person_stamp,
    refuse_roles_holder,
)
from dialogs.roles import Scope, team_of
from storage import dashboard as counts
from storage.courses import SOURCE_GRANT, Course
from storage.db import Database, SessionOnDemand
from storage.models import AdminAuditEntry, utcnow
from storage.payments import grant
from storage.personal_data import export_person

Endpoint = Callable[[Request], Awaitable[Response]]


def answering(endpoint: Endpoint) -> Endpoint:
    """The endpoint's response, or the one a guard refused it with. Keeps the endpoint's name (the route's name)."""

    @functools.wraps(endpoint)
    async def answer(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Refused as refused:
            return refused.response

    return answer


class LearnerId(IntegerConvertor):
    """A learner's id in a URL, read as the chat's commands read one (`whole_number`): past the biggest id a database
    holds (or the 4,300 digits int() reads) it is 0, nobody's, and the page says "No such learner" rather than the
    lookup overflowing."""

    def convert(self, value: str) -> int:
        return whole_number(value) or 0


register_url_convertor("learner_id", LearnerId())


def audit(session: Any, viewer: Viewer, command: str, arguments: str, outcome: str) -> None:
    session.add(AdminAuditEntry(identity=viewer.identity, command=f"dashboard:{command}", arguments=arguments,
                                outcome=outcome))


@dataclass(frozen=True)
class Dashboard:
    """The dashboard's pages and actions, one method each, and the guards they start with. `data_dir` and
    `payments` are what an erasure needs (the learner's files, and the desk that ends their subscriptions)."""

    db: Database
    access: Access
    data_dir: Any
    payments: PaymentDesk

    # Guards: each returns what it found, or raises Refused --------------------------------------------------------

    async def signed_in(self, request: Request) -> Viewer:
        viewer = await self.access.viewer(request)
        if viewer is None:
            raise Refused(sign_in_needed(request))
        if not viewer.grants:
            raise Refused(not_allowed(request))
        return viewer

    async def page_for(self, request: Request) -> tuple[Viewer, Page]:
        viewer = await self.signed_in(request)
        page = PAGES.get(request.path_params.get("page", ""))
        if page is None:
            raise Refused(message_page(request, "No such page", "Choose a page from the menu.", status=404))
        if not page.visible_to(viewer):
            raise Refused(not_allowed(request))
        return viewer, page

    async def checked_form(self, request: Request, area: str) -> tuple[Viewer, dict[str, Any]]:
        viewer = await self.signed_in(request)
        form = stored_as_typed(await self.access.form(request))
        if not self.access.csrf_ok(request, viewer, form.get("csrf")):
            out_of_date = "This form is out of date. Reload the page and try again."
            raise Refused(message_page(request, "Not done", out_of_date, status=403))
        if not viewer.scopes(area):
            raise Refused(not_allowed(request))
        return viewer, form

    async def learner_in_reach(
        self, request: Request, viewer: Viewer, area: str, *, every_address: bool = False
    ) -> tuple[int, dict[str, Any]]:
        """The learner of the URL, if the viewer's role reaches them (a workspace's support: its people) at one of
        their addresses, or (`every_address`: an export or an erasure, which take every linked app, as in chat) at
        each of them."""
        user_id = request.path_params["user_id"]
        async with self.db.sessions() as session:
            found = await counts.timeline(session, user_id)
        if found is None:
            raise Refused(message_page(request, "No such learner", "They may have been erased.", status=404))
        targets = {team_of(address) for address in found["addresses"]} or {Scope()}
        if not (all if every_address else any)(viewer.may(area, target) for target in targets):
            raise Refused(not_allowed(request))
        return user_id, found

    async def learner_form(
        self, request: Request, area: str, *, every_address: bool = False
    ) -> tuple[Viewer, dict[str, Any], int]:
        """A form posted about the learner of the URL: checked (CSRF, `area`), the learner in the viewer's reach, and
        still the one the form's page showed (`same_person`)."""
        viewer, form = await self.checked_form(request, area)
        user_id, person = await self.learner_in_reach(request, viewer, "learners", every_address=every_address)
        self.same_person(request, person, form.get("person"))
        return viewer, form, user_id

    def same_person(self, request: Request, person: dict[str, Any], stamp: Any) -> None:
        """The learner of the URL is the one the page that linked here showed (its `person_stamp`): SQLite gives an
        erased person's number to the next new one, and a page left open must not act on them."""
        if person_stamp(person["created_at"]) != stamp:
            raise Refused(someone_else(request))

    # Steps the pages share ----------------------------------------------------------------------------------------

    async def figures(self, viewer: Viewer, page: Page, request: Request) -> tuple[list[Figure], Context]:
        _language, w = words_for(request)
        async with self.db.transaction() as session:
            ctx = Context(session, viewer, utcnow(), stored_as_typed(request.query_params), w)
            return await page.build(ctx), ctx

    def back_to(self, path: str, told: str) -> RedirectResponse:
        """To `path` (after a POST: a GET), showing `told` there as the confirmation."""
        return RedirectResponse(f"{path}?{self.access.flash_query(told)}", status_code=303)

    # Pages --------------------------------------------------------------------------------------------------------

    async def home(self, request: Request) -> Response:
        viewer = await self.signed_in(request)
        first = next((page for page in PAGES.values() if page.visible_to(viewer)), None)
        if first is None:
            return not_allowed(request)
        return RedirectResponse(f"/admin/{first.name}", status_code=303)

    async def show(self, request: Request) -> Response:
        viewer, page = await self.page_for(request)
        built, ctx = await self.figures(viewer, page, request)
        body = page_body(ctx, page, built, self.access.flash_of(request))
        return document(request, ctx.w(page.title), body, nav=navigation(ctx.w, viewer, page.name),
                        headers={"Server-Timing": f'cold;desc="{",".join(ctx.cold)}"'} if ctx.cold else None)

    async def download(self, request: Request) -> Response:
        viewer, page = await self.page_for(request)
        built, _ctx = await self.figures(viewer, page, request)
        figure = next((f for f in built if f.key == request.path_params["figure"]), None)
        if figure is None:
            return message_page(request, "No such figure", "Choose a CSV link on the page.", status=404)
        return Response(as_csv(figure), media_type="text/csv; charset=utf-8", headers={
            **HEADERS, "Content-Disposition": f'attachment; filename="lessonbot-{page.name}-{figure.key}.csv"'})

    async def learner(self, request: Request) -> Response:
        viewer = await self.signed_in(request)
        if not PAGES["learners"].visible_to(viewer):
            return not_allowed(request)
        user_id, person = await self.learner_in_reach(request, viewer, "learners")
        _language, w = words_for(request)
        async with self.db.sessions() as session:
            courses = [slug for slug in await session.scalars(select(Course.slug).order_by(Course.slug))
                       if viewer.may("access", Scope("course", slug))]
        body = learner_body(w, viewer, user_id, person, courses=courses, flash=self.access.flash_of(request))
        return document(request, learner_name(w, person), body, nav=navigation(w, viewer, "learners"))

    async def export(self, request: Request) -> Response:
        """The learner's data as a JSON file; someone who holds admin roles only for an owner (`HoldsRoles`)."""
        viewer = await self.signed_in(request)
        user_id, person = await self.learner_in_reach(request, viewer, "learners", every_address=True)
        self.same_person(request, person, request.query_params.get("person"))
        async with self.db.transaction() as session:
            try:
                await refuse_roles_holder(session, user_id, may_deal_with_roles=viewer.may("roles"),
                                          owners=self.access.owners)
            except HoldsRoles:
                audit(session, viewer, "export", f"user {user_id}", "denied")
                return message_page(request, "Not for your role", "This learner holds admin roles: only an owner "
                                    "may export their data.", status=403)
            document_ = await export_person(session, user_id, now=utcnow())
            audit(session, viewer, "export", f"user {user_id}", "ok")
        return Response(json.dumps(document_, ensure_ascii=False, indent=2), media_type="application/json", headers={
            **HEADERS, "Content-Disposition": f'attachment; filename="lessonbot-learner-{user_id}.json"'})

    # Actions ------------------------------------------------------------------------------------------------------

    async def requeue_dead(self, request: Request) -> Response:
        viewer, _form = await self.checked_form(request, "delivery")
        if not viewer.may("delivery"):
            return not_allowed(request)
        async with self.db.transaction() as session:
            count = await requeue_failed(SessionOnDemand.of(session), None, now=utcnow())
            audit(session, viewer, "requeue", "all", "ok")
        _language, w = words_for(request)
        return self.back_to("/admin/overview", w("Requeued {n} dead letters.", n=count))

    async def erase_learner(self, request: Request) -> Response:
        viewer, form, user_id = await self.learner_form(request, "learners", every_address=True)
        _language, w = words_for(request)
        if form.get("confirm") != "yes":
            return self.back_to(f"/admin/learners/{user_id}", w("Tick the box to confirm."))
        try:
            erasure = await erase_outside_turn(self.db, user_id, by=viewer.identity,
                                               may_take_roles=viewer.may("roles"), data_dir=self.data_dir,
                                               desk=lambda: nullcontext(self.payments), owners=self.access.owners,
                                               stamp=str(form.get("person")))
        except NotThatPerson:  # erased, and the number given again, since the checks above
            return someone_else(request)
        except HoldsRoles:
            async with self.db.transaction() as session:
                audit(session, viewer, "erase", f"user {user_id}", "denied")
            return self.back_to(f"/admin/learners/{user_id}", w(
                "This learner holds admin roles, which only an owner may take away: an owner revokes them first "
                "(/admin role list shows them), then the erasure can go ahead."))
        except ChargesElsewhere as elsewhere:
            async with self.db.transaction() as session:
                audit(session, viewer, "erase", f"user {user_id}", "denied")
            return self.back_to(f"/admin/learners/{user_id}", w(
                "This learner has a subscription with {platforms}, which this server is not connected to: erased "
                "here, they would go on being charged for it. Erase them from the dashboard of the server that takes "
                "{platforms}'s webhooks, or with /admin erase in a chat.", platforms=", ".join(elsewhere.platforms)))
        return self.back_to("/admin/learners", w(
            "Erased: {messages} messages and {replies} replies went with the rest of that learner's data.",
            messages=erasure.messages, replies=erasure.replies))

    async def grant_course(self, request: Request) -> Response:
        viewer, form, user_id = await self.learner_form(request, "access")
        slug, days = str(form.get("course", "")), str(form.get("days", "")).strip()
        if not viewer.may("access", Scope("course", slug)):
            return not_allowed(request)
        _language, w = words_for(request)
        if days and not whole_number(days, most=MAX_ACCESS_DAYS):
            return self.back_to(f"/admin/learners/{user_id}", w("Days: a number from 1 to {most}, or empty.",
                                                                 most=MAX_ACCESS_DAYS))
        now = utcnow()
        async with self.db.transaction() as session:
            course = await session.scalar(select(Course).where(Course.slug == slug))
            if course is None:  # a return, not Refused: leaving the transaction normally, as before
                return message_page(request, "No such course", "Choose a course from the list.", status=404)
            await grant(session, user_id, course.id, source=SOURCE_GRANT, reference=f"dashboard:{now.isoformat()}",
                        expires_at=now + timedelta(days=int(days)) if days else None, now=now)
            audit(session, viewer, "grant", f"user {user_id} {slug} {days}".strip(), "ok")
        return self.back_to(f"/admin/learners/{user_id}", w("Granted {course}.", course=slug))


def someone_else(request: Request) -> Response:
    """The answer to a page or a link about a learner whose number now names someone else (or no one)."""
    return message_page(request, "Not done: someone else now", "The learner this page was about has been erased, "
                        "and their number now belongs to someone else. Nothing was done. Find the learner again on "
                        "the learners page.", status=409)


async def stylesheet(request: Request) -> Response:
    return css_response()


async def signed_out(request: Request) -> Response:
    return signed_out_page(request)


def dashboard_routes(db: Database, access: Access, *, data_dir: Any, payments: PaymentDesk) -> list[Route]:
    dashboard = Dashboard(db, access, data_dir, payments)
    return [
        Route("/admin", answering(dashboard.home)),
        Route("/admin/dashboard.css", stylesheet),
        Route("/admin/sign-in", access.sign_in_page, methods=["GET"]),
        Route("/admin/sign-in", answering(access.sign_in), methods=["POST"]),
        Route("/admin/sign-out", answering(access.sign_out), methods=["POST"]),
        Route("/admin/signed-out", signed_out),
        Route("/admin/overview/requeue", answering(dashboard.requeue_dead), methods=["POST"]),
        Route("/admin/learners/{user_id:learner_id}", answering(dashboard.learner)),
        Route("/admin/learners/{user_id:learner_id}/export", answering(dashboard.export)),
        Route("/admin/learners/{user_id:learner_id}/erase", answering(dashboard.erase_learner), methods=["POST"]),
        Route("/admin/learners/{user_id:learner_id}/grant", answering(dashboard.grant_course), methods=["POST"]),
        Route("/admin/{page}/{figure}.csv", answering(dashboard.download)),
        Route("/admin/{page}", answering(dashboard.show)),
    ]


def stored_as_typed(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A query's or a form's fields, their text without what no database stores (a NUL, which PostgreSQL refuses:
    typed into the learner search or a grant's course, it would fail the request): what may reach a statement."""
    return {key: storable(value) if isinstance(value, str) else value for key, value in fields.items()}
