"""The dashboard's pages: each a list of figures (a chart, its table, its CSV) built from the snapshot of counts
(storage/dashboard.py) and a few small live queries, narrowed to what the viewer's roles cover.

A page belongs to an area of dialogs/roles.py. A role that holds everywhere sees the whole page; a scoped role sees
the pages that can be narrowed to its scope — learning and knowledge to its courses, learners to its Slack
workspaces — and not the others (overview, engagement and revenue count everyone at once).

At the end, the HTML: a page's figures (`render`, `page_body`), the header (`navigation`), one learner's page
(`learner_body`). The routes that serve them, and their checks, are in __init__.py.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot.dashboard.access import Viewer
from bot.dashboard.charts import bar_chart, line_chart
from bot.dashboard.layout import Words, table
from dialogs.nudges import NOT_SENT, TEMPLATES
from dialogs.personal import person_stamp
from storage import dashboard as counts
from storage.courses import major_units
from storage.payments import revenue as takings
from storage.scheduling import HELD_OUT

STALE = timedelta(minutes=15)  # older than this, the snapshot job is not running: a page counts for itself


@dataclass
class Figure:
    """One block of a page: a title, rows under columns (shown as a table, downloadable as CSV), and a chart or
    tiles drawn from the same rows."""

    key: str
    title: str
    columns: tuple[str, ...]
    rows: list[list[Any]]
    chart: str = ""
    tiles: list[tuple[str, Any]] = field(default_factory=list)
    note: str = ""
    html: str = ""  # forms and links that belong to the figure (a requeue button)
    table_open: bool = False  # show the table itself, not folded under the chart


@dataclass
class Context:
    session: AsyncSession  # the page's transaction
    viewer: Viewer
    now: datetime
    query: dict[str, str]
    w: Words  # the page's words in the viewer's language
    cold: list[str] = field(default_factory=list)  # the pages whose counts had to be made for this request
    counted_at: datetime | None = None  # when the page's counts were made


Build = Callable[[Context], Awaitable[list[Figure]]]


@dataclass(frozen=True)
class Page:
    name: str
    title: str
    area: str
    narrowable: bool  # a scoped role sees it, narrowed to its scope
    build: Build

    def visible_to(self, viewer: Viewer) -> bool:
        held = viewer.scopes(self.area)
        return bool(held) and (self.narrowable or any(not scope.kind for scope in held))


async def figures_of(ctx: Context, name: str) -> dict[str, Any]:
    """The page's counts from the snapshot; counted now (and kept, when the page's transaction commits) when there
    is none or it is stale."""
    row = await counts.snapshot(ctx.session, name)
    if row is None or ctx.now - row.computed_at >= STALE:
        ctx.cold.append(name)
        row = await counts.compute(ctx.session, name, ctx.now)
    ctx.counted_at = row.computed_at
    return row.figures


def _courses_seen(viewer: Viewer, area: str) -> set[str] | None:
    """The courses a scoped viewer's figures are narrowed to; None: every course."""
    held = viewer.scopes(area)
    if any(not scope.kind for scope in held):
        return None
    return {scope.value for scope in held if scope.kind == "course"}


def _percent(share: float | None) -> str:
    return "" if share is None else f"{round(100 * share)} %"


# Overview -----------------------------------------------------------------------------------------------------------


async def overview(ctx: Context) -> list[Figure]:
    f = await figures_of(ctx, "overview")
    health = await counts.delivery_health(ctx.session)
    new = f["new"]
    w = ctx.w
    learners = Figure("learners", w("Learners"), (w("measure"), w("learners")),
                      [[w("agreed to take part"), f["learners"]], [w("new today"), new["today"]],
                       [w("new in 7 days"), new["7d"]], [w("new in 30 days"), new["30d"]]])
    learners.tiles = [(label, value) for label, value in learners.rows]
    channels = sorted({channel for window in f["active"].values() for channel in window})
    active_rows = [[channel, *(f["active"][w].get(channel, 0) for w in ("today", "7d", "30d"))] for channel in channels]
    active = Figure("active", w("Active learners by channel"), (w("channel"), w("today"), w("7 days"), w("30 days")),
                    active_rows, chart=bar_chart(w("Active learners in the last 7 days, by channel"),
                                    [(row[0], row[2]) for row in active_rows]), table_open=True)
    days = [row[0] for row in f["messages"]]
    title = w("Messages in and replies out, a day")
    messages = Figure("messages", title, (w("day"), w("messages in"), w("replies out")), f["messages"],
                      chart=line_chart(title, days, [(w("messages in"), [row[1] for row in f["messages"]]),
                                                     (w("replies out"), [row[2] for row in f["messages"]])]))
    delivery = Figure("delivery", w("Delivery health"), (w("state"), w("replies")), [
        [w("waiting to be sent"), health["pending"]], [w("being sent"), health["sending"]],
        [w("held until the person writes (WhatsApp's window) or comes back from a pause"), health["waiting"]],
        [w("held back by a platform's 429 now"), health["rate_limited_now"]],
        [w("sent in the last 24 hours after a 429"), f["rate_limited_24h"]], [w("dead letters"), health["dead"]]])
    delivery.tiles = [(w("waiting"), health["pending"]), (w("429 now"), health["rate_limited_now"]),
                      (w("429 in 24 h"), f["rate_limited_24h"]), (w("dead letters"), health["dead"])]
    dead = Figure("dead-letters", w("Dead letters (newest first)"),
                  (w("id"), w("to"), w("tries"), w("error"), w("written")), health["dead_letters"], table_open=True,
                  note=w("Replies the platform refused for good, or that ran out of tries."))
    if health["dead_letters"] and ctx.viewer.may("delivery"):
        dead.html = ('<form method="post" action="/admin/overview/requeue">' + ctx.viewer.csrf_field() +
                     f'<button type="submit">{escape(w("Requeue all dead letters"))}</button></form>')
    return [learners, delivery, messages, active, dead]


# Learning -----------------------------------------------------------------------------------------------------------


async def learning(ctx: Context) -> list[Figure]:
    f = await figures_of(ctx, "learning")
    w = ctx.w
    only = _courses_seen(ctx.viewer, "learning")
    courses = [row for row in f["courses"] if only is None or row["course"] in only]
    stages = {"started": w("started"), "consented": w("agreed"), "onboarded": w("set up"),
              "lesson_one": w("lesson done"), "first_quiz": w("first quiz"), "half": w("half the course"),
              "completed": w("course done")}
    if only is None:
        funnel_rows = [[stages[stage], n] for stage, n in f["funnel"]]
    else:
        funnel_rows = [[w("enrolled"), sum(row["enrolled"] for row in courses)]] + [
            [stages[stage], sum(row[stage] for row in courses)] for stage in ("lesson_one", "first_quiz", "half",
                                                                                "completed")]
    funnel = Figure("funnel", w("The way through"), (w("stage"), w("learners")), funnel_rows,
                    chart=bar_chart(w("Learners at each stage"), [(label, n) for label, n in funnel_rows]))
    course_rows = [[row["course"], row["title"], row["lessons"], row["enrolled"], row["completed"],
                    _percent(row["completed"] / row["enrolled"] if row["enrolled"] else None),
                    "" if row["median_days"] is None else row["median_days"]] for row in courses]
    per_course = Figure("courses", w("Completion per course"),
                        (w("course"), w("title"), w("lessons"), w("enrolled"), w("completed"), w("completion"),
                         w("median days")), course_rows, table_open=True)
    lessons = [row for row in f["lessons"] if only is None or row[0] in only]
    lesson_rows = [[slug, position, title, answers, _percent(share)] for slug, position, title, answers, share in
                   lessons]
    accuracy = Figure("lesson-accuracy", w("Quiz accuracy per lesson"),
                      (w("course"), w("lesson"), w("title"), w("answers"), w("right")), lesson_rows,
                      chart=bar_chart(w("Share of quiz answers right, per lesson (%)"),
                                      [(f"{row[1]}. {row[2]}", round(100 * (row[4] or 0))) for row in lessons]))
    # (kept for each course, the least often right first: narrowed, then the HARDEST of what is left)
    hardest = [row for row in f["hardest"] if only is None or row["course"] in only][: counts.HARDEST]
    hard = Figure("hardest-questions", w("The hardest questions, with their wrong answers"),
                  (w("course"), w("question"), w("answers"), w("right"), w("wrong answers given most")),
                  [[row["course"], row["question"], row["answers"], _percent(row["accuracy"]),
                    "; ".join(f"{answer} ({n})" for answer, n in row["wrong"])] for row in hardest], table_open=True,
                  note=w("Questions with at least {n} answers, the least often right first.", n=counts.MIN_ANSWERS))
    figures = [funnel, per_course, hard, accuracy]
    if only is None:
        retention = f["retention"]
        reviews = Figure("reviews", w("Spaced review"), (w("measure"), w("value")), [
            [w("reviews due now"), f["reviews_due"]], [w("cards reviewed again"), retention["reviewed_cards"]],
            [w("of those, recalled at the latest review"), _percent(retention["share"])]])
        reviews.tiles = [(label, value) for label, value in reviews.rows]
        figures.insert(1, reviews)
    return figures


# Engagement ---------------------------------------------------------------------------------------------------------


async def engagement(ctx: Context) -> list[Figure]:
    f = await figures_of(ctx, "engagement")
    w = ctx.w
    days = [row[0] for row in f["daily_active"]]
    daily = Figure("daily-active", w("Daily active learners"), (w("day"), w("learners who wrote")),
                   f["daily_active"], chart=line_chart(w("Learners who wrote, a day"), days,
                                                       [(w("learners"), [row[1] for row in f["daily_active"]])]))
    streaks = Figure("streaks", w("Current streaks"), (w("days in a row"), w("learners")), f["streaks"],
                     chart=bar_chart(w("Learners by current streak (days)"), [(r[0], r[1]) for r in f["streaks"]]))
    weeks = max((len(c["active"]) for c in f["cohorts"]), default=0)
    cohort_rows = [[c["week"], c["learners"], *c["active"], *[""] * (weeks - len(c["active"]))] for c in f["cohorts"]]
    cohorts = Figure("cohorts", w("Weekly cohorts: who kept learning"),
                     (w("week joined"), w("learners"), *(w("week {n}", n=n) for n in range(weeks))), cohort_rows,
                     chart=_heat(w, f["cohorts"], weeks),
                     note=w("Of the learners who joined each week, how many took a lesson in that week (week 0) and "
                            "each week after."))
    nudges = await _nudges(ctx)
    broadcasts = Figure("broadcasts", w("Broadcasts and their reach"),
                        (w("id"), w("created"), w("status"), w("message"), w("recipients"), w("queued")),
                        await counts.broadcast_reach(ctx.session), table_open=True)
    return [daily, streaks, cohorts, nudges, broadcasts]


def _heat(w: Words, cohorts: list[dict[str, Any]], weeks: int) -> str:
    head = "".join(f"<th>{n}</th>" for n in range(weeks))
    rows = []
    for cohort in cohorts:
        cells = []
        for n in range(weeks):
            if n >= len(cohort["active"]):
                cells.append("<td></td>")
                continue
            share = cohort["active"][n] / cohort["learners"] if cohort["learners"] else 0
            cells.append(f'<td class="n h{min(5, int(share * 6))}">{round(100 * share)} %</td>')
        rows.append(f"<tr><th>{escape(cohort['week'])}</th><td class=\"n\">{cohort['learners']:,}</td>"
                    + "".join(cells) + "</tr>")
    return (f'<div class="table"><table><thead><tr><th>{escape(w("week joined"))}</th>'
            f'<th>{escape(w("learners"))}</th>' + head +
            "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></div>")


async def _nudges(ctx: Context) -> Figure:
    record = {(kind, template): (sent, back) for kind, template, sent, back in await counts.nudge_records(ctx.session)}
    not_sent: dict[str, list[tuple[str, int]]] = {}
    for kind, reason, count in await counts.nudges_not_sent(ctx.session):
        not_sent.setdefault(kind, []).append((reason, count))
    rows = []
    for kind, templates in TEMPLATES.items():
        # The bandit's choice, as it stands: the template with the best expected rate (Beta posterior mean).
        favourite = max(templates, key=lambda t: (1 + record.get((kind, t), (0, 0))[1])
                        / (2 + record.get((kind, t), (0, 0))[0]))
        for template in templates:
            sent, back = record.get((kind, template), (0, 0))
            rows.append([kind, template, sent, back, _percent(back / sent if sent else None),
                         "✔" if template == favourite else "", ""])
        held, back = record.get((kind, HELD_OUT), (0, 0))
        if held:
            rows.append([kind, ctx.w("no reminder (held out)"), held, back, _percent(back / held), "", ""])
        # Decided, never sent: how many, and why (what to do about it is in the reason)
        rows += [[kind, ctx.w(NOT_SENT[reason]) if reason in NOT_SENT else reason, "", "", "", "", count]
                 for reason, count in not_sent.pop(kind, [])]
    rows += [[kind, reason, "", "", "", "", count] for kind, reasons in sorted(not_sent.items())
             for reason, count in reasons]  # kinds since removed from the code
    w = ctx.w
    return Figure("nudges", w("Reminder templates"), (w("kind"), w("template"), w("delivered"), w("came back"),
                                                       w("rate"), w("bandit's choice"), w("not sent")),
                  rows, table_open=True,
                  note=w("Came back: came back to learn within two hours of the reminder. The bandit's choice is the "
                         "template with the best expected rate; it still tries the others now and then. No reminder: "
                         "learners due one who were left without it on purpose (NUDGE_HOLDOUT); a template's rate "
                         "above theirs is what the reminder itself did.")
                  + " " + w("Not sent: reminders decided but never sent, and why, as far back as the reminder log "
                            "goes. Quiet hours, a pause or /stop hold a reminder back before it is decided: those "
                            "are not counted."))


# Knowledge ----------------------------------------------------------------------------------------------------------


async def knowledge(ctx: Context) -> list[Figure]:
    f = await figures_of(ctx, "knowledge")
    w = ctx.w
    only = _courses_seen(ctx.viewer, "knowledge")
    # (kept for each course, the most asked first: narrowed, then the TOP of what is left)
    topics = [row for row in f["topics"] if only is None or row[0] in only][: counts.TOP]
    topic_figure = Figure("topics", w("The most asked topics"), (w("course"), w("lesson"), w("questions")), topics,
                          chart=bar_chart(w("Questions answered from each lesson"), [(r[1], r[2]) for r in topics]),
                          note=w("The lesson each answer drew on first."))
    declined_rows = [row for row in f["declined_most"] if only is None or row[0] in only][: counts.TOP]
    declined = Figure("declined", w("Declined most often: what the course could add"),
                      (w("course"), w("question (as first asked)"), w("times"), w("last asked")), declined_rows,
                      table_open=True, note=w("Each under the course whose lessons came nearest to it."))
    if only is not None:
        return [declined, topic_figure]
    totals = Figure("questions", w("Questions asked"), (w("outcome"), w("questions")), [
        [w("asked"), f["asked"]], [w("answered"), f["answered"]],
        [w("declined (not in the material)"), f["declined"]],
        [w("not looked up (the learner's allowance was spent)"), f["limited"]],
        # (a page counted before this count was kept shows none until the next count, minutes later)
        [w("outside what they may read (no course yet, none free in the group, a lesson past a free preview)"),
         f.get("out_of_reach", 0)],
        [w("not looked up (the course is not indexed for questions: import it again)"), f.get("not_indexed", 0)]])
    totals.tiles = [(w("asked"), f["asked"]), (w("answered"), f["answered"]), (w("declined"), f["declined"]),
                    (w("allowance spent"), f["limited"])]
    days = [row[0] for row in f["daily"]]
    daily = Figure("questions-daily", w("Answered and declined, a day"), (w("day"), w("answered"), w("declined")),
                   f["daily"], chart=line_chart(w("Answered and declined, a day"), days, [
                       (w("answered"), [r[1] for r in f["daily"]]), (w("declined"), [r[2] for r in f["daily"]])]))
    return [totals, daily, declined, topic_figure]


# Learners -----------------------------------------------------------------------------------------------------------


def _teams(viewer: Viewer) -> list[str] | None:
    """The Slack workspaces a scoped viewer's learner search is narrowed to; None: everyone."""
    held = viewer.scopes("learners")
    if any(not scope.kind for scope in held):
        return None
    return [scope.value for scope in held if scope.kind == "team"]


async def learners(ctx: Context) -> list[Figure]:
    w = ctx.w
    text = ctx.query.get("q", "").strip()[:200]
    form = ('<form method="get" action="/admin/learners" role="search"><input type="search" name="q" '
            f'value="{escape(text)}" placeholder="{escape(w("name, or channel:id"))}" '
            f'aria-label="{escape(w("Find a learner"))}"> <button type="submit">{escape(w("Find"))}</button></form>')
    rows = await counts.find_learners(ctx.session, text, teams=_teams(ctx.viewer)) if text else []
    # a name set apart (<bdi>) from the address after it: a right-to-left one carries nothing over to its side
    links = "".join(f'<li><a href="/admin/learners/{row[0]}"><bdi>{escape(row[1] or w("(no name)"))}</bdi></a> '
                    f"<small>{escape(row[2])}</small></li>" for row in rows)
    nobody = f"<p>{escape(w('No learner found.'))}</p>" if text else ""
    found = Figure("learners", w("Find a learner"), (w("id"), w("name"), w("addresses"), w("status"),
                                                     w("last active")), rows,
                   html=form + (f"<ul>{links}</ul>" if links else nobody),
                   note=w("A name's beginning (any case), a number, or an address such as telegram:12345."))
    return [found]


# Revenue ------------------------------------------------------------------------------------------------------------


async def revenue(ctx: Context) -> list[Figure]:
    rows = await takings(ctx.session)
    shown = [[row.slug, row.currency, row.payments, row.renewals, major_units(row.paid_minor, row.currency),
              row.refunds, major_units(row.refunded_minor, row.currency)] for row in rows]
    w = ctx.w
    return [Figure("sales", w("Sales and refunds by course and currency"),
                   (w("course"), w("currency"), w("sales"), w("renewals"), w("amount"), w("refunds"), w("refunded")),
                   shown, table_open=True,
                   chart=bar_chart(w("Sales per course"), [(f"{row.slug} ({row.currency})", row.payments)
                                                           for row in rows]) if rows else "",
                   note=w("Sales include those refunded since; the amount counts every charge, a subscription's "
                          "renewals too; amounts in each currency's major unit."))]


PAGES: dict[str, Page] = {page.name: page for page in (
    Page("overview", "Overview", "delivery", False, overview),
    Page("learning", "Learning", "learning", True, learning),
    Page("engagement", "Engagement", "engagement", False, engagement),
    Page("knowledge", "Knowledge", "knowledge", True, knowledge),
    Page("learners", "Learners", "learners", True, learners),
    Page("revenue", "Revenue", "revenue", False, revenue),
)}


# Rendering ----------------------------------------------------------------------------------------------------------


def render(w: Words, figures: list[Figure], page: Page) -> str:
    blocks = []
    for figure in figures:
        link = f' <a href="/admin/{page.name}/{figure.key}.csv" download>CSV</a>'
        wide = " wide" if figure.chart or figure.table_open else ""
        parts = [f'<section class="figure{wide}" id="{figure.key}"><h2><span>{escape(figure.title)}</span>{link}</h2>']
        if figure.note:
            parts.append(f'<p class="note">{escape(figure.note)}</p>')
        if figure.tiles:
            parts.append('<div class="tiles">' + "".join(
                f'<div class="tile"><b>{value:,}</b><span>{escape(label)}</span></div>' if isinstance(value, int)
                else f'<div class="tile"><b>{escape(str(value) or "–")}</b><span>{escape(label)}</span></div>'
                for label, value in figure.tiles) + "</div>")
        parts.append(figure.html)
        parts.append(figure.chart)
        if not figure.tiles and figure.rows and page.name != "learners":
            rows = table(figure.columns, figure.rows)
            parts.append(rows if figure.table_open or not figure.chart else
                         f"<details><summary>{escape(w('The numbers'))}</summary>{rows}</details>")
        elif not figure.rows and not figure.tiles and not figure.html:
            parts.append(f'<p class="note">{escape(w("Nothing yet."))}</p>')
        parts.append("</section>")
        blocks.append("".join(parts))
    return '<div class="grid">' + "".join(blocks) + "</div>"


def navigation(w: Words, viewer: Viewer, current: str) -> str:
    """The header of every signed-in page: the pages this viewer may see, who they are, and the sign-out button."""
    links = "".join(
        f'<a href="/admin/{page.name}"{" aria-current=page" if page.name == current else ""}>'
        f"{escape(w(page.title))}</a>" for page in PAGES.values() if page.visible_to(viewer))
    return (f'<header><span class="brand">Lessonbot</span><nav>{links}</nav>'
            f'<form method="post" action="/admin/sign-out">{viewer.csrf_field()}'
            f'<span class="who">{escape(viewer.identity)}</span> '
            f'<button type="submit">{escape(w("Sign out"))}</button></form></header>')


def _flash(text: str) -> str:
    """The confirmation an action left for this page (access.py's `flash_of`), if any."""
    return f'<p class="flash">{escape(text[:200])}</p>' if text else ""


def page_body(ctx: Context, page: Page, figures: list[Figure], flash: str) -> str:
    """A page of figures under its title, with when its counts were made."""
    w = ctx.w
    counted = ""
    if ctx.counted_at is not None:
        when = w("Counted at {time} UTC, and again every 5 minutes.", time=f"{ctx.counted_at:%Y-%m-%d %H:%M}")
        counted = f'<p class="note">{escape(when)}</p>'
    return f"<h1>{escape(w(page.title))}</h1>" + counted + _flash(flash) + render(w, figures, page)


# One learner --------------------------------------------------------------------------------------------------------


def learner_name(w: Words, person: dict[str, Any]) -> str:
    return person["name"] or w("(no name)")


def _learner_facts(w: Words, person: dict[str, Any]) -> str:
    return table(("", ""), [[w("name"), person["name"]], [w("addresses"), ", ".join(person["addresses"])],
                            [w("status"), person["status"]], [w("language"), person["locale"]],
                            [w("time zone"), person["timezone"]], [w("streak"), person["streak"]],
                            [w("points"), person["points"]]])


def _learner_actions(w: Words, viewer: Viewer, user_id: int, stamp: str, courses: list[str]) -> list[str]:
    """Export, a course to give (only `courses`, the ones the viewer may give), and erase; each form with the CSRF
    token, and each of them with `stamp`, who the page is about (`person_stamp`): a number given again to someone
    else is refused, not acted on."""
    person = f'<input type="hidden" name="person" value="{escape(stamp)}">'
    actions = [f'<a href="/admin/learners/{user_id}/export?person={escape(stamp)}" download>'
               f'{escape(w("Export their data (JSON)"))}</a>']
    if courses:
        options = "".join(f"<option>{escape(slug)}</option>" for slug in courses)
        actions.append(f'<form method="post" action="/admin/learners/{user_id}/grant">{viewer.csrf_field()}{person}'
                       f'<label>{escape(w("Give a course"))} <select name="course">{options}</select></label> '
                       f'<label>{escape(w("for how many days (empty: for good)"))} <input name="days" '
                       f'inputmode="numeric" size="4"></label> <button type="submit">{escape(w("Grant"))}</button>'
                       "</form>")
    actions.append(f'<form method="post" action="/admin/learners/{user_id}/erase">{viewer.csrf_field()}{person}'
                   '<label><input type="checkbox" name="confirm" value="yes" required> '
                   f'{escape(w("delete everything kept about this learner, as their own /stop → delete does"))}'
                   f'</label> <button type="submit" class="danger">{escape(w("Erase"))}</button></form>')
    return actions


def learner_body(w: Words, viewer: Viewer, user_id: int, person: dict[str, Any], *, courses: list[str],
                 flash: str) -> str:
    """One learner's page (storage/dashboard.py's `timeline`): who, the actions, their courses, their timeline."""
    kinds = {"lesson": w("lesson"), "answer": w("answer"), "wrong answer": w("wrong answer"),
             "message": w("message")}
    events = [[when, kinds.get(kind, kind), detail] for when, kind, detail in person["events"]]
    actions = _learner_actions(w, viewer, user_id, person_stamp(person["created_at"]), courses)
    return (f"<h1>{escape(learner_name(w, person))}</h1>" + _flash(flash)
            + f'<div class="grid"><section class="figure"><h2>{escape(w("Who"))}</h2>'
            + _learner_facts(w, person) + "</section>"
            + f'<section class="figure"><h2>{escape(w("Actions"))}</h2>'
            + "".join(f"<p>{a}</p>" for a in actions) + "</section>"
            + f'<section class="figure wide"><h2>{escape(w("Courses"))}</h2>'
            + table((w("course"), w("title"), w("status"), w("started"), w("completed")), person["courses"])
            + f'</section><section class="figure wide"><h2>{escape(w("Timeline (newest first)"))}</h2>'
            + table((w("when"), w("what"), w("detail")), events) + "</section></div>")


_FORMULA = ("=", "+", "-", "@", "\t", "\r")
# A separator a spreadsheet may split on (Excel's is ";" in many languages) followed by what starts a formula: the
# cell it would start there gets the ' too ("Ann;=cmd…" → "Ann;'=cmd…").
_FORMULA_AFTER_SEPARATOR = re.compile(r"([,;\t])(?=[=+\-@])")


def as_csv(figure: Figure) -> str:
    """The figure's rows as CSV; no cell a spreadsheet reads, whatever it splits on, starts a formula: one that would
    is prefixed with '."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(figure.columns)
    for row in figure.rows:
        writer.writerow([_no_formula(cell) if isinstance(cell, str) else cell for cell in row])
    return out.getvalue()


def _no_formula(cell: str) -> str:
    cell = _FORMULA_AFTER_SEPARATOR.sub(r"\1'", cell)
    return "'" + cell if cell.startswith(_FORMULA) else cell
