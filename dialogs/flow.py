"""The dialog engine: small, explicit step machines persisted in the conversation's state.

A `Flow` is a named list of `Step`s. A step *asks* (says its question, usually with choices) and *answers*: it reads
what the person sent and returns the name of the next step, or `DONE`; when the input does not fit it raises
`Invalid` with a help message, and the engine says the help and asks again. Input that is not an attempt at an
answer at all (a question such as "what is smishing?") raises `NotAnAnswer`, or is recognised here when an invalid
answer looks like a question: it goes to the fallback (the question answerer) and the step is asked again, so the
flow stays where it was.

State: `state["flows"]` is a list of `{"name", "step", "data", "member"}`, bottom first. `member` is the sender
whose message started the flow, or the learner the bot started it for on its own (a daily lesson's quiz, pushed to
their home chat: `Exchange.member`); a flow started for no one in particular has none. Each person's flows (their
own and those without a member) are their stack, whose top gets their next message: in a private chat that is every
flow; in a group each member has their own, and a member's message neither sees nor drops another's (one member's
/next to a quiz leaves another's quiz open, and their next answer goes to it; so does a lesson pushed to one learner
of a group that is home to several). A flow started while another of the person's is in progress goes on top of
theirs (/language during onboarding), and when it is done the one below is asked again. A flow the bot started on
its own is also marked `pushed` until it is answered: while the lesson asking its question has not reached the
person (in line, or set aside until they write), what they write is not its answer.
Everything in `data` must be JSON. The engine never changes the stored objects in place (a changed copy is written
back), so the conversation row always sees the change.

Adding a dialog: write a module with its steps and `FLOWS = (Flow(...),)` and list the module in dialogs/__init__.py.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dialogs.i18n import translator
from dialogs.turn import Exchange, Turn
from storage.outbox import lesson_unsent

log = logging.getLogger(__name__)

DONE = "done"

Data = dict[str, Any]
Ask = Callable[[Exchange, Data], Awaitable[None]]  # says the step's question
ReadAnswer = Callable[[Turn, Data, str], Awaitable[str]]  # reads what was sent: the next step's name, or DONE
OwnWords = Callable[[Turn, Data, str], Awaitable[bool]]  # whether typed words are one of the question's own answers


class Invalid(Exception):
    """The input does not fit this step; `help` (already translated) says what would."""

    def __init__(self, help: str) -> None:
        super().__init__(help)
        self.help = help


class NotAnAnswer(Exception):
    """The input is something else (a question to the bot): the fallback takes it, then the step is asked again."""


@dataclass(frozen=True)
class Step:
    name: str
    ask: Ask
    answer: ReadAnswer
    # The kinds of choice its question offers, by their values' prefix ("consent" for "consent:yes"): a pressed
    # choice of another kind answers some other question (an earlier step's, a second window's copy of the chat)
    # and is not read as this one's answer (`handle`).
    takes: tuple[str, ...] = ()
    # What its question is about, where the same question may be asked again about something else (the time in
    # Sydney, then in Perth): its buttons carry it after their kind and answer ("zone:yes:Australia/Sydney"), so one
    # pressed under the earlier question is out of date, not an answer about the later one.
    about: Callable[[Data], str] | None = None
    # Whether typed words are one of its question's own answers (a quiz's accepted answer "pause", "hola" in a
    # Spanish course): those words answer it, though they are also a command's plain word (bot.routing).
    own_words: OwnWords | None = None
    # The question it asks now, as its buttons name it ("quiz:12"): words typed into a form opened for a question
    # (a Slack modal, whose message names it: `meta[ANSWERS]`) answer it only when it is that one (`asks`).
    asking: Callable[[Data], str | None] | None = None

    def takes_choice(self, choice: str, data: Data) -> bool:
        """Whether a pressed `choice` is one of this step's own, offered with the question as it stands (`about`)."""
        kind, colon, rest = choice.partition(":")
        if not colon or kind not in self.takes:
            return False
        return self.about is None or rest.partition(":")[2] == self.about(data)


@dataclass(frozen=True)
class Flow:
    name: str
    steps: tuple[Step, ...]
    # its command's plain word ("stop", "parar") typed at its question answers it (bot.routing), not asks it again
    answered_by_its_word: bool = False

    def step(self, name: str) -> Step:
        for step in self.steps:
            if step.name == name:
                return step
        raise KeyError(f"flow {self.name} has no step {name!r}")


_registry: dict[str, Flow] = {}


def answered_by_its_word(name: str) -> bool:
    """Whether the flow `name` takes its command's plain word as an answer (`Flow.answered_by_its_word`)."""
    flow = _registry.get(name)
    return flow is not None and flow.answered_by_its_word


async def takes_own_words(turn: Turn, text: str) -> bool:
    """Whether the question waiting for this person reads `text` as one of its own answers (`Step.own_words`)."""
    entry = current(turn)
    if entry is None:
        return False
    step = _registry[entry["name"]].step(entry["step"])
    return step.own_words is not None and await step.own_words(turn, entry["data"], text)


def asks(x: Exchange, question: str) -> bool:
    """Whether the question waiting for this person is `question`, as its buttons name it (`Step.asking`)."""
    entry = current(x)
    return entry is not None and _asking(entry, question)


def _asking(entry: dict[str, Any], question: str) -> bool:
    """Whether the flow `entry` waits at the question `question` (`Step.asking`)."""
    step = _registry[entry["name"]].step(entry["step"])
    return step.asking is not None and step.asking(entry["data"]) == question


def bring_up(x: Exchange, question: str) -> bool:
    """Put this person's flow that waits at `question` (`Step.asking`), though another was started on top of it since
    (onboarding, a settings step), on top of their flows, the others kept below it as they were: its answer comes
    next, as a pressed button of it does. False when no flow of theirs waits at it."""
    flows = stack(x.state)
    for index in reversed(_theirs(x, flows)):
        if _asking(flows[index], question):
            _save(x.state, [*flows[:index], *flows[index + 1:], flows[index]])
            return True
    return False


def register(*flows: Flow) -> None:
    for flow in flows:
        _registry[flow.name] = flow


# The stack -----------------------------------------------------------------------------------------------------------


def _copied(value: Any) -> Any:
    """A deep copy of state as JSON holds it (dicts, lists, scalars): four times quicker than `copy.deepcopy`, which
    every flow step paid."""
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_copied(item) for item in value)
    return value  # (str, int, float, bool, None: immutable)


def stack(state: dict[str, Any]) -> list[dict[str, Any]]:
    """A copy of every flow in progress in the chat, bottom first (in a group, every member's)."""
    return _copied(_in_progress(state))


def _in_progress(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The flows in progress as the state holds them, not copied: for what only reads them."""
    return [entry for entry in state.get("flows", ()) if entry.get("name") in _registry]


def _whose(x: Exchange) -> str | None:
    """The member whose flows this exchange sees and changes: the sender of the message being processed, or the
    learner the bot starts it for on its own (`Exchange.member`: a lesson at their hour); None (every flow of the
    chat) for one the bot starts for no one in particular."""
    return x.message.sender_id if isinstance(x, Turn) else x.member


def _sees(member: str | None, entry: dict[str, Any]) -> bool:
    return member is None or entry.get("member") in (None, member)


def _theirs(x: Exchange, flows: list[dict[str, Any]]) -> list[int]:
    """Where in `flows` (the chat's) the flows of this exchange's member are, bottom first: their own stack."""
    member = _whose(x)
    return [index for index, entry in enumerate(flows) if _sees(member, entry)]


def current(x: Exchange) -> dict[str, Any] | None:
    """A copy of the flow that gets this person's next message: {"name", "step", "data", "member"}, or None."""
    flows = _in_progress(x.state)  # (only the one handed out is copied)
    theirs = _theirs(x, flows)
    return _copied(flows[theirs[-1]]) if theirs else None


def is_active(x: Exchange, name: str) -> bool:
    """Whether this person has the flow `name` in progress."""
    flows = _in_progress(x.state)
    return any(flows[index]["name"] == name for index in _theirs(x, flows))


def _save(state: dict[str, Any], flows: list[dict[str, Any]]) -> None:
    if flows:
        state["flows"] = flows
    else:
        state.pop("flows", None)


def _set_top(x: Exchange, entry: dict[str, Any]) -> None:
    flows = stack(x.state)
    flows[_theirs(x, flows)[-1]] = entry
    _save(x.state, flows)


def leave(x: Exchange, name: str) -> None:
    """Drop this person's flow `name` (and whatever of theirs was started on top of it); another member's stay."""
    flows = stack(x.state)
    theirs = _theirs(x, flows)
    for position, index in enumerate(theirs):
        if flows[index]["name"] == name:
            dropped = set(theirs[position:])
            _save(x.state, [entry for at, entry in enumerate(flows) if at not in dropped])
            return


def clear(x: Exchange) -> None:
    """Drop every flow of this person's (in a group, another member's stay)."""
    flows = stack(x.state)
    theirs = set(_theirs(x, flows))
    _save(x.state, [entry for at, entry in enumerate(flows) if at not in theirs])


def set_aside(x: Exchange, name: str) -> None:
    """Drop this person's flow `name` (as `leave` does), keeping its step and answers for `take_up`: a set-up they
    stopped part way, taken up where it was."""
    flows = stack(x.state)
    entry = next((flows[index] for index in reversed(_theirs(x, flows)) if flows[index]["name"] == name), None)
    if entry is None:
        return
    leave(x, name)
    member = _whose(x)
    kept = [aside for aside in x.state.get("set_aside", ()) if not (aside["name"] == name and _sees(member, aside))]
    x.state["set_aside"] = [*kept, entry]


def take_up(x: Exchange, name: str) -> dict[str, Any] | None:
    """This person's flow `name` that `set_aside` kept ({"name", "step", "data", ...}), no longer kept; None: none."""
    member = _whose(x)
    kept = list(x.state.get("set_aside", ()))
    found = next((aside for aside in kept if aside["name"] == name and _sees(member, aside)), None)
    if found is None:
        return None
    kept.remove(found)
    if kept:
        x.state["set_aside"] = kept
    else:
        x.state.pop("set_aside", None)
    return _copied(found)


# Running -------------------------------------------------------------------------------------------------------------


async def start(x: Exchange, name: str, data: Data | None = None, *, step: str | None = None) -> None:
    """Start the flow `name` on top of this person's flows in progress (one of that name of theirs starts over), and
    ask."""
    flow = _registry[name]
    leave(x, name)
    entry = {"name": name, "step": step or flow.steps[0].name, "data": _copied(data or {}), **_started_by(x)}
    _save(x.state, [*stack(x.state), entry])
    await _ask(x, entry)


def enter(x: Exchange, name: str, data: Data, *, step: str) -> None:
    """Put the flow `name` on top at `step` without asking (a pressed button is about to answer that step)."""
    leave(x, name)
    _save(x.state, [*stack(x.state), {"name": name, "step": step, "data": _copied(data), **_started_by(x)}])


def _started_by(x: Exchange) -> dict[str, Any]:
    """Whom a flow started now answers to (the sender of the message being processed, or the learner the bot starts
    it for), and whether the bot started it on its own (`pushed`: its question is in a message of the bot's own, a
    lesson at the learner's hour, which may not have reached them yet: `_not_before_them`)."""
    member = _whose(x)
    started: dict[str, Any] = {} if member is None else {"member": member}
    if not isinstance(x, Turn):
        started["pushed"] = True
    return started


async def _not_before_them(x: Exchange, entry: dict[str, Any]) -> bool:
    """Whether the question of `entry`, asked in a lesson the bot pushed on its own, has not reached the person yet:
    the lesson is still in line, or set aside until they write (WhatsApp's window), so what they write now was
    written before they saw it. It is not the answer, and the question is not asked again: it is on its way."""
    return (bool(entry.get("pushed")) and isinstance(x, Turn) and x.conversation is not None
            and await lesson_unsent(x.transaction, x.conversation.id, x.user.id))


async def resume(x: Exchange) -> bool:
    """Ask the current step again (after a command or a question took the learner elsewhere). False: no flow."""
    entry = current(x)
    if entry is None:
        return False
    if not await _not_before_them(x, entry):
        await _ask(x, entry)
    return True


async def _ask(x: Exchange, entry: dict[str, Any]) -> None:
    flow = _registry[entry["name"]]
    data = entry["data"]
    await flow.step(entry["step"]).ask(x, data)
    # is_active() means the stack is not empty, so current() is not None
    if is_active(x, flow.name) and current(x)["name"] == flow.name:  # type: ignore[index]
        _set_top(x, {**entry, "data": data})  # ask may note things (when it asked, for answer times)


async def handle(turn: Turn, fallback: Callable[[Turn], Awaitable[None]], *, text: str | None = None) -> bool:
    """Give the message to the flow in progress (or `text`, the part of it that answers, as in "/settings time
    8:00"). False when there is none."""
    entry = current(turn)
    if entry is None:
        return False
    flow = _registry[entry["name"]]
    step = flow.step(entry["step"])
    if text is None and turn.message.choice is not None and not step.takes_choice(turn.message.choice,
                                                                                 entry["data"]):
        return False  # not this question's button: the caller says it is out of date, and the step is asked again
    if await _not_before_them(turn, entry):
        return False  # written before its question reached them (it goes now): not an answer to it
    data = entry["data"]
    answer = turn.text if text is None else text
    if not answer.strip() and turn.message.choice is None:  # a photo, a sticker, a voice note, a shared location
        turn.say(translator(turn.user.locale)("I can only read words here: please type your answer."))
        await _ask(turn, entry)
        return True
    try:
        following = await step.answer(turn, data, answer)
    except NotAnAnswer:
        await fallback(turn)
        if current(turn) == entry:
            await _ask(turn, entry)
        return True
    except Invalid as invalid:
        if looks_like_question(turn.text) and turn.message.choice is None:
            await fallback(turn)
        else:
            turn.say(invalid.help)
        if current(turn) == entry:
            await _ask(turn, entry)
        return True
    top = current(turn)
    if top is None or top["name"] != flow.name:
        return True  # the step started another flow, or ended this one itself
    if following == DONE:
        leave(turn, flow.name)
        if current(turn) is not None:
            await resume(turn)
        return True
    entry = {**entry, "step": following, "data": data}
    entry.pop("pushed", None)  # (answered: its questions have reached the person)
    _set_top(turn, entry)
    await _ask(turn, entry)
    return True


_QUESTION_START = re.compile(
    r"^(what|why|how|when|where|who|which|can|could|is|are|do|does|should|qu[eé]|por ?qu[eé]|c[oó]mo|cu[aá]ndo|"
    r"d[oó]nde|qui[eé]n|cu[aá]l|puedo|es)\b",
    re.IGNORECASE,
)


def looks_like_question(text: str) -> bool:
    """A typed question rather than an answer: ends with '?' or starts like one ("why …", "¿cómo …")."""
    text = text.strip().lstrip("¿")
    return len(text.split()) >= 3 and (text.endswith("?") or bool(_QUESTION_START.match(text)))
