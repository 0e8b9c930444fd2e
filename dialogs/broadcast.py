"""/admin broadcast: an announcement to a segment of learners — previewed with its count, confirmed, then sent.

    /admin broadcast everyone New lessons are out!
    /admin broadcast course=phishing-basics inactive=14 We miss you: a new module starts today.
    /admin broadcast status [ID]

Options come first, then the message: `course=SLUG` (learners enrolled in it), `channel=NAME` (home chat on that
platform), `inactive=DAYS` or `inactive=YYYY-MM-DD` (not active since then), or `everyone`, each written so, in lower
case; `status`, `send` and `cancel` are actions only as their usage writes them (the word in lower case, then at most
an ID). Anything else is the message: "Everyone, read this" or "Send us your questions!". The preview answers
with the number of learners and two buttons, send and cancel, which are themselves admin commands
(`/admin broadcast send ID`, `/admin broadcast cancel ID`), so they work however late they are pressed and are
checked and audited like any other. The elected dispatcher fans it out through the outbox (scheduler/broadcast.py);
`lessonbot broadcast` does the same from the shell.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from bot.messages import Choice, Text
from bot.text import whole_number
from dialogs.i18n import N_, Translator
from dialogs.learner import tr
from dialogs.turn import Turn, UsageError
from storage.broadcasts import (
    FAN_OUT,
    BroadcastError,
    Progress,
    Segment,
    cancel,
    confirm,
    create_draft,
    progress,
    recent_broadcasts,
    repeats,
)
from storage.learners import zone_for
from storage.scheduling import CANCELLED, DRAFT, SENDING, SENT, Broadcast

_OPTION = re.compile(r"^(?P<name>course|channel|inactive)=(?P<value>\S+)$")
_ACTIONS = ("status", "send", "cancel")
_DAYS = re.compile(r"^(?P<days>\d{1,4})d?$")

# storage.broadcasts raises these (English, with placeholders); listed here so the catalogs translate them.
STORAGE_MESSAGES = (
    N_("There is no course “{course}”. Courses: {known}."),
    N_("The message is empty: write what learners should read."),
    N_("The message has {length} characters; keep it under {limit}."),
    N_("The message contains the control character U+{code}, which is not text: save the message as UTF-8 text, or "
       "delete the character."),
    N_("No learner's chat is on “{channel}”. Channels in use: {known}."),
    N_("There is no broadcast #{id}."),
    N_("Broadcast #{id} was confirmed or cancelled already."),
    N_("Broadcast #{id} is no longer going out; there is nothing to stop."),
    N_("Every learner broadcast #{id} would reach got this same message within the last day, from broadcast "
       "{earlier}: nothing was sent again. To send it once more, change its words."),
)


def announcement(text: str) -> Text:
    """The message each recipient gets."""
    return Text(text)


async def broadcast(turn: Turn, args: str) -> None:
    _ = tr(turn)
    action = read_action(args)
    try:
        if action is None:
            await _preview(turn, args.strip())
        elif action[0] == "status":
            await _status(turn, action[1])
        else:
            name, typed = action
            number = whole_number(typed.lstrip("#"))
            if number is None:
                raise UsageError(_("Usage: /admin broadcast {action} ID (the number the preview showed).",
                                   action=name))
            if name == "send":
                await _send(turn, number)
            else:
                await _cancel(turn, number)
    except BroadcastError as exc:
        raise UsageError(_(exc.template, **exc.values)) from None


def read_action(args: str) -> tuple[str, str] | None:
    """The action `args` is written as, and its ID as typed ("" when none): `status [ID]`, `send ID`, `cancel ID`,
    the word in lower case and then nothing or one number (`12`, `#12`; one that is no ID gets the action's usage).
    None: `args` is a message to preview ("Status update: …", "Send us your questions!", "cancel the quiz today")."""
    words = args.split()
    if not 1 <= len(words) <= 2 or words[0] not in _ACTIONS:
        return None
    typed = words[1] if len(words) == 2 else ""
    if typed and not typed.lstrip("#").isdigit():
        return None
    return words[0], typed


def usage(_: Translator) -> str:
    return _("Usage: /admin broadcast [everyone | course=SLUG | channel=NAME | inactive=DAYS or YYYY-MM-DD] MESSAGE\n"
             "For example: /admin broadcast course=spot-phishing inactive=7 A new module is out!\n"
             "/admin broadcast status [ID] shows how far a broadcast got.")


def read_segment(words: list[str], *, now: datetime, zone_name: str | None) -> tuple[Segment, int]:
    """The segment the leading options name, and how many words they took. ValueError: a bad option value."""
    course = channel = None
    since: datetime | None = None
    taken = 0
    for word in words:
        if word == "everyone":
            taken += 1
            continue
        match = _OPTION.match(word)
        if match is None:
            break
        name, value = match["name"], match["value"]
        if name == "course":
            course = value.lower()
        elif name == "channel":
            channel = value.lower()
        else:
            since = read_since(value, now=now, zone_name=zone_name)
        taken += 1
    return Segment(course=course, channel=channel, inactive_since=since), taken


def read_since(value: str, *, now: datetime, zone_name: str | None) -> datetime:
    """`7` or `7d`: seven days before `now`; `2026-11-01`: midnight that day in the admin's zone, in UTC.
    ValueError: neither, or a moment UTC cannot hold (0001-01-01 east of UTC)."""
    days = _DAYS.match(value)
    if days:
        return now - timedelta(days=int(days["days"]))
    try:
        return datetime.combine(date.fromisoformat(value), time(0), tzinfo=zone_for(zone_name)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError(value) from None


def describe(_: Translator, segment: Segment, zone_name: str | None = None) -> str:
    if segment.everyone:
        return _("everyone")
    parts = []
    if segment.course is not None:
        parts.append(_("enrolled in {course}", course=segment.course))
    if segment.channel is not None:
        parts.append(_("on {channel}", channel=segment.channel))
    if segment.inactive_since is not None:
        local = segment.inactive_since.astimezone(zone_for(zone_name))
        parts.append(_("not active since {date}", date=f"{_.date(local)} {local:%H:%M}"))
    return ", ".join(parts)


async def _preview(turn: Turn, args: str) -> None:
    _ = tr(turn)
    words = args.split()
    try:
        segment, taken = read_segment(words, now=turn.now, zone_name=turn.user.timezone)
    except ValueError as exc:
        raise UsageError(_("“{value}” is not a number of days or a date like 2026-11-01.", value=str(exc))
                         + "\n" + usage(_)) from None
    text = args.split(None, taken)[taken] if len(words) > taken else ""
    if not text.strip():
        raise UsageError(usage(_))
    draft = await create_draft(turn.session, text=text, segment=segment, created_by=turn.identity.address,
                               now=turn.now)
    count = draft.preview_count
    head = _.plural("Broadcast #{id} goes to {n} learner ({segment}):",
                    "Broadcast #{id} goes to {n} learners ({segment}):",
                    count, id=draft.id, segment=describe(_, segment, turn.user.timezone))
    repeated = await repeats(turn.session, segment, draft.text, turn.now)
    if repeated.learners:
        head += "\n" + _.plural(
            "({n} learner left out: they got this same message within the last day, from broadcast {earlier}.)",
            "({n} learners left out: they got this same message within the last day, from broadcast {earlier}.)",
            repeated.learners, earlier=repeated.named())
    if not count:
        turn.say(head if repeated.learners else head + "\n\n" + _("Nobody to send it to. Try a wider segment."))
        return
    turn.say(
        head + "\n\n" + draft.text + "\n\n" + _("Send it?"),
        choices=(
            Choice(_.plural("Send to {n} learner", "Send to {n} learners", count), f"/admin broadcast send {draft.id}"),
            Choice(_("Cancel"), f"/admin broadcast cancel {draft.id}"),
        ),
    )


async def _send(turn: Turn, broadcast_id: int) -> None:
    _ = tr(turn)
    sent = await confirm(turn.session, broadcast_id, turn.now)
    turn.jobs_to_start.add(FAN_OUT)  # the first copies go out once this commits, not at the fan-out's next run
    text = _.plural("Broadcast #{id} is going out to {n} learner.", "Broadcast #{id} is going out to {n} learners.",
                    sent.recipients, id=sent.id)
    if sent.recipients != sent.preview_count:
        text += " " + _("(The preview said {count}: learners changed since.)", count=sent.preview_count)
    turn.say(text + "\n" + _("/admin broadcast status {id} shows how far it got.", id=sent.id))


async def _cancel(turn: Turn, broadcast_id: int) -> None:
    _ = tr(turn)
    cancelled, withdrawn = await cancel(turn.session, broadcast_id, turn.now)
    text = _("Broadcast #{id} is cancelled.", id=cancelled.id)
    if withdrawn:
        text += " " + _.plural("{n} copy not yet sent was withdrawn.", "{n} copies not yet sent were withdrawn.",
                               withdrawn)
    turn.say(text)


async def _status(turn: Turn, args: str) -> None:
    _ = tr(turn)
    typed = args.strip().lstrip("#")
    number = whole_number(typed)
    if typed and number is None:
        raise UsageError(_("Usage: /admin broadcast status [ID]"))
    broadcasts = await chosen_broadcasts(turn.session, number)
    if not broadcasts:
        turn.say(_("No broadcasts yet.") + "\n" + usage(_))
        return
    lines = []
    for item in broadcasts:
        lines.append(status_line(_, await progress(turn.session, item)))
    turn.say("\n\n".join(lines))


async def chosen_broadcasts(session: AsyncSession, number: int | None) -> list[Broadcast]:
    """Broadcast #`number` (BroadcastError: there is none), or the latest ones when no number is given: what a status
    shows, here and in `lessonbot broadcast status`."""
    if number is None:
        return await recent_broadcasts(session)
    found = await session.get(Broadcast, number)
    if found is None:
        raise BroadcastError("There is no broadcast #{id}.", id=number)
    return [found]


def status_line(_: Translator, state: Progress) -> str:
    broadcast = state.broadcast
    names = {DRAFT: _("draft, not sent"), SENDING: _("going out"), SENT: _("all queued"), CANCELLED: _("cancelled")}
    status = _("done") if state.finished and broadcast.status == SENT else names.get(broadcast.status, broadcast.status)
    snippet = broadcast.text if len(broadcast.text) <= 60 else broadcast.text[:59] + "…"
    line = _("#{id} {status}: “{snippet}”", id=broadcast.id, status=status, snippet=snippet)
    if broadcast.status == DRAFT:
        return line + "\n" + _.plural("{n} learner when previewed.", "{n} learners when previewed.",
                                      broadcast.preview_count)
    line += "\n" + _(
        "{queued} of {recipients} queued · {delivered} delivered · {in_line} in line · {waiting} waiting for the "
        "learner to write · {failed} failed · {withdrawn} withdrawn",
        queued=broadcast.queued, recipients=broadcast.recipients, delivered=state.delivered, in_line=state.in_line,
        waiting=state.waiting, failed=state.failed, withdrawn=state.withdrawn,
    )
    if state.passed_over:
        line += "\n" + _.plural(
            "{n} recipient passed over (paused, stopped or opted out after it was confirmed, or reading it in a group "
            "chat it went to for another).",
            "{n} recipients passed over (paused, stopped or opted out after it was confirmed, or reading it in a "
            "group chat it went to for another).", state.passed_over)
    return line
