"""Lessonbot: the pieces of the pipeline wired together, for the web app, the terminal and the tests alike."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from bot.activity import Activity
from bot.channel import (
    CannotRecord,
    Channel,
    Closable,
    FinishesAfterAcknowledging,
    ListsMembers,
    SentReply,
    WatchesSentReplies,
    unprompted_windows,
)
from bot.config import Settings, knowledge_settings
from bot.dispatcher import OutboxDispatcher, Sending
from bot.messages import URGENT, InboundMessage
from bot.outage import Outage
from bot.payments import payment_desk
from bot.pipeline import ConversationWorker, Recorded, Responder, record
from bot.rasa_nlu import responder
from dialogs.access import chat_refused
from knowledge.settings import KnowledgeSettings
from scheduler.leader import Leadership
from storage.db import Database, SessionOnDemand, unreachable
from storage.learners import is_known, language_of_chat, language_of_sender
from storage.models import utcnow
from storage.notices import Notices
from storage.outbox import (
    OutboxStatus,
    cancel_unsent_to,
    chats_sent_since,
    record_delivery_report,
    sent_replies,
)
from storage.teams import stop_workspace

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from scheduler.clock import Clock, Job

log = logging.getLogger(__name__)

_Read = TypeVar("_Read")

# The topics of notices between processes (storage.notices): a message recorded, replies queued, a reply sent, and
# a process that shows sent replies but does not send (so senders tell it of what they sent: `SENT`); one of the
# clock's jobs to run now (a broadcast confirmed: the leader fans it out at once).
INBOUND, OUTBOX, SENT, WATCHING, WHO_WATCHES = "inbound", "outbox", "sent", "watching", "who-watches"
JOBS = "jobs"
WATCHING_EVERY_SECONDS = 20.0  # how often such a process says so; senders tell it for three times as long

class LazyAnswerer:
    """The question answerer, opened on the first question: loading the embedding model and Chroma takes a second
    or two that a process which is never asked anything should not pay at start-up."""

    def __init__(self, settings: KnowledgeSettings, db: Database) -> None:
        self.settings = settings
        self.db = db
        self._answerer: Any = None
        self._opening = asyncio.Lock()

    async def answer(
        self,
        question: str,
        *,
        learner: str | int,
        allowed_courses: set[str],
        only_lessons: Mapping[str, frozenset[str]] | None = None,
        on_partial: Callable[[str], Awaitable[None]] | None = None,
    ) -> Any:
        async with self._opening:
            if self._answerer is None:
                from knowledge.answerer import Answerer

                self._answerer = await asyncio.to_thread(Answerer, self.settings, database=self.db)
        return await self._answerer.answer(
            question, learner=learner, allowed_courses=allowed_courses, only_lessons=only_lessons,
            on_partial=on_partial,
        )


class Lessonbot:
    """Records what channels receive, processes it, and sends replies through the channels this process renders.

    `process` and `dispatch` choose this process's roles: a web worker may leave sending to one dispatcher process,
    and a dispatcher need not process messages. With `elect`, the dispatcher (and every job in `leader_work`, such
    as the clock) runs only while this process is the elected leader among all processes sharing the database.
    """

    def __init__(
        self,
        settings: Settings,
        channels: Iterable[Channel],
        *,
        process: bool = True,
        dispatch: bool = True,
        elect: bool = False,
        respond: Responder | None = None,
        db: Database | None = None,
        answers: Collection[str] = (),
    ) -> None:
        """`answers`: channels whose messages this process takes up though it sends nothing through them (a Rasa
        assistant's action calls, answered in each call's response). A message is taken up here only for these and
        the `channels` (`ConversationWorker.takes`), whoever recorded it: a payment's report for a Telegram buyer,
        recorded where Stripe's webhook came in, is processed where Telegram is."""
        self.settings = settings
        self.db = db or Database(settings.resolved_database_url)
        self.channels = {channel.name: channel for channel in channels}
        # The channels that show sent replies (the web chat), found once: every send asks.
        self._watching: dict[str, WatchesSentReplies] = {
            name: channel for name, channel in self.channels.items() if isinstance(channel, WatchesSentReplies)
        }
        self.process = process
        self.dispatch = dispatch
        self.dispatcher = OutboxDispatcher(
            self.db, sending(settings), self.channels if dispatch else {}, on_sent=self._after_sent
        )
        self.worker = ConversationWorker(
            self.db,
            settings,
            respond or responder(settings),
            on_replies=self._after_turn,
            on_jobs=self.start_job,
            answerer=LazyAnswerer(knowledge_settings(settings), self.db),
            payments=payment_desk(settings, self.channels.values()),
            activity=Activity(self.channels),
            channels=[*self.channels, *answers],
        )
        self.leadership = (
            Leadership(
                self.db,
                "dispatcher",
                owner=self.worker.owner,
                check_seconds=settings.leader_check_seconds,
                lease_seconds=settings.leader_lease_seconds,
            )
            if elect
            else None
        )
        # PostgreSQL: other processes are told at once of the work this one leaves to them (storage.notices).
        self.notices = (
            Notices(
                self.db.url, sender=self.worker.owner, handlers=self._notice_handlers(), on_listening=self._listening
            )
            if self.db.backend == "postgresql"
            else None
        )
        self._recording = Outage(log, "recording a message")  # the database away: a 503, and few lines in the log
        self._reading = Outage(log, "reading a chat for its page")  # the same for what a channel's page reads
        self._watched_until = 0.0  # until when another process shows replies this one sends (on the loop's clock)
        # What the leader runs besides the dispatcher (the scheduler adds its clock here).
        self.leader_work: list[Callable[[], Coroutine[Any, Any, None]]] = []
        self.clock: Clock | None = None  # attach_clock's: running while this process leads
        self._tasks: list[asyncio.Task[None]] = []
        self._turn_watchers: dict[int, list[asyncio.Event]] = {}

    def _recorded_elsewhere(self, item: str) -> None:
        """Another process recorded a message ("conversation channel"): processed here if this process takes its
        channel (a notice of an older process names no channel)."""
        conversation, _, channel = item.partition(" ")
        if not channel or self.worker.takes(channel):
            self.worker.notify(int(conversation))

    def _notice_handlers(self) -> dict[str, Callable[[str], None]]:
        """What other processes' notices wake here: the worker for messages they recorded (when this process
        processes), the dispatcher for replies they queued (when it sends, and leads if elected), the channels that
        show sent replies (the web chat's event streams) for replies they sent."""
        handlers: dict[str, Callable[[str], None]] = {}
        if self.process:
            handlers[INBOUND] = self._recorded_elsewhere
        if self.dispatch and self.channels:
            handlers[OUTBOX] = self._replies_queued_elsewhere
        if self._shows_replies_sent_elsewhere():
            handlers[SENT] = self._sent_elsewhere
            handlers[WHO_WATCHES] = lambda _item: self._say_watching_once()
        if self._sends_replies_shown():
            handlers[WATCHING] = self._watched_elsewhere
        if self.dispatch:
            handlers[JOBS] = self._start_job_here
        return handlers

    def _sends_replies_shown(self) -> bool:
        """A process that sends through a channel that shows sent replies (the web chat)."""
        return self.dispatch and bool(self._watching)

    def _listening(self) -> None:
        """This process listens (again): whoever shows or sends web chat replies learns of the other side now, whichever
        started first."""
        assert self.notices is not None
        if self._shows_replies_sent_elsewhere():
            self._say_watching_once()
        if self._sends_replies_shown():
            self.notices.tell(WHO_WATCHES, self.worker.owner)

    def _say_watching_once(self) -> None:
        assert self.notices is not None
        self.notices.tell(WATCHING, self.worker.owner)

    def _shows_replies_sent_elsewhere(self) -> bool:
        """A process with a channel that shows sent replies (the web chat) and no dispatcher of its own."""
        return not self.dispatch and bool(self._watching)

    def _watched_elsewhere(self, _item: str) -> None:
        self._watched_until = asyncio.get_running_loop().time() + 3 * WATCHING_EVERY_SECONDS

    async def _say_watching(self) -> None:
        """Tell the senders, now and then, that this process shows what they send (they tell it of each reply)."""
        while True:
            await asyncio.sleep(WATCHING_EVERY_SECONDS)
            self._say_watching_once()

    def _replies_queued_elsewhere(self, item: str) -> None:
        if self.leadership is None or self.leadership.is_leader:
            self.dispatcher.notify(int(item))

    def _sent_elsewhere(self, item: str) -> None:
        channel_name, _, chat_id = item.partition(" ")
        channel = self._watching.get(channel_name)
        if channel is not None:
            channel.after_sent(chat_id)

    def start_job(self, name: str) -> None:
        """Run one of the clock's jobs now rather than at its next fire time (a broadcast confirmed: its fan-out):
        by this process's clock if it leads, else by the leader's, told with a notice (PostgreSQL; on SQLite a
        leader in another process runs it at its next fire time)."""
        if self.clock is not None and self.clock.running:
            self.clock.start_now(name)
        elif self.notices is not None:
            self.notices.tell(JOBS, name)

    def _start_job_here(self, name: str) -> None:
        if self.clock is not None:
            self.clock.start_now(name)  # nothing unless this process leads

    def _after_turn(self, conversation_id: int) -> None:
        """A turn of the conversation committed here: its replies may go, and whoever waits for it may look."""
        if self.dispatch and (self.leadership is None or self.leadership.is_leader):
            self.dispatcher.notify(conversation_id)
        elif self.notices is not None:
            # The dispatcher is elsewhere: in another process, or here but not elected (a standby sends nothing, or
            # two limiters would each keep the platform's bound and the platform see twice the rate).
            self.notices.tell(OUTBOX, str(conversation_id))
        for watcher in self._turn_watchers.pop(conversation_id, ()):
            watcher.set()

    @contextlib.contextmanager
    def watching_turns(self, conversation_id: int) -> Iterator[asyncio.Event]:
        """An event set when this process next commits a turn of the conversation (a turn another process commits
        is not seen here: a watcher looks at the database again now and then). Watch before looking, so a turn
        committed in between is not missed."""
        watcher = asyncio.Event()
        self._turn_watchers.setdefault(conversation_id, []).append(watcher)
        try:
            yield watcher
        finally:
            waiting = self._turn_watchers.get(conversation_id)
            if waiting is not None and watcher in waiting:
                waiting.remove(watcher)
                if not waiting:
                    del self._turn_watchers[conversation_id]

    def _after_sent(self, channel_name: str, chat_id: str, sent: SentReply | None) -> None:
        """Channels that show replies from our own database (the web chat) learn the moment one is committed, with
        the reply where the dispatcher has it (`sent`). Other processes are told only the chat: they read it."""
        channel = self._watching.get(channel_name)
        if channel is not None:
            channel.after_sent(chat_id, sent)
            if self.notices is not None and asyncio.get_running_loop().time() < self._watched_until:
                self.notices.tell(SENT, f"{channel_name} {chat_id}")  # its streams may be open over there

    async def receive(self, message: InboundMessage) -> Recorded:
        """Record a verified message; the caller acknowledges once this returns. Processing follows on its own.
        CannotRecord while the database is away (logged once, then once a minute: `bot.outage`)."""
        try:
            recorded = await record(self.db, message, self.worker.conversations)
        except Exception as exc:
            if not unreachable(exc):
                raise
            self._recording.failed()
            raise CannotRecord("the message could not be recorded just now: try again in a few seconds") from None
        self._recording.ended()
        if not recorded.duplicate and self.process and self.worker.takes(message.channel):
            self.worker.notify(recorded.conversation_id, recorded.inbound_id, urgent=bool(message.meta.get(URGENT)))
        elif not recorded.duplicate and self.notices is not None:  # processed elsewhere
            self.notices.tell(INBOUND, f"{recorded.conversation_id} {message.channel}")
        return recorded

    async def record_delivery(
        self, channel: str, platform_message_id: str, status: str, *, error: str | None = None,
        waits_for_inbound: bool = False, sends_otherwise: bool = False, unreachable: bool = False,
        opted_out: bool = False,
    ) -> bool:
        """A platform's delivery report for a reply we sent (Twilio status callbacks, for one).

        Reports arrive out of order: a late "delivered" never overwrites "read", and a failure is final
        (storage.outbox.record_delivery_report). `waits_for_inbound`: the platform refused it until the person
        writes (WhatsApp's closed window): it goes again then; or at once with `sends_otherwise`, where the channel
        has another way (an approved template), its Delivery saying when it was refused (`window_closed_at`).
        `unreachable`: the platform will not deliver to the
        person: the chat is taken out of what the bot sends (`refused_for_good`), as when a send is refused so, until
        a message from it arrives (`opted_out`: they unsubscribed at the platform; their START lifts it). False where
        no reply of ours has that id.
        """
        async with self.db.transaction(urgent=True) as session:  # the platform waits for this one
            row = await record_delivery_report(session, channel, platform_message_id, status, error=error,
                                               waits_for_inbound=waits_for_inbound, sends_otherwise=sends_otherwise)
            if row is not None and unreachable:
                await chat_refused(SessionOnDemand.of(session), row.conversation_id, now=utcnow(), opted_out=opted_out,
                                   refused=row.id if row.status == OutboxStatus.DEAD.value else None)
            again = row is not None and row.status == OutboxStatus.PENDING.value
            conversation_id = row.conversation_id if row is not None else 0
        if again:  # (committed) back on its way at once: the person wrote since it was sent
            self._after_turn(conversation_id)
        return row is not None

    async def sent_replies(
        self, channel: str, chat_id: str, *, after: int, limit: int = 100
    ) -> list[tuple[int, dict[str, Any]]]:
        """The replies sent to one chat after outbox id `after`, oldest first (the web chat's page reads these).
        CannotRecord while the database is away."""
        async def read() -> list[tuple[int, dict[str, Any]]]:
            async with self.db.read() as reading:  # one read of what is committed
                return await sent_replies(reading, channel, chat_id, after=after, limit=limit)

        return await self._read_for_a_page(read)

    async def chats_sent_to(self, channel: str, *, since: datetime) -> dict[str, int]:
        """The chats of a channel sent a reply at or after `since`, each with the newest one's outbox id (the web
        chat's watcher asks, once a poll). CannotRecord while the database is away."""
        async def read() -> dict[str, int]:
            async with self.db.sessions() as session:
                return await chats_sent_since(session, channel, since)

        return await self._read_for_a_page(read)

    async def learner_language(self, channel: str, chat_id: str) -> str | None:
        """CannotRecord while the database is away."""
        return await self._language_for_a_page(language_of_chat, channel, chat_id)

    async def sender_language(self, channel: str, sender_id: str) -> str | None:
        """CannotRecord while the database is away."""
        return await self._language_for_a_page(language_of_sender, channel, sender_id)

    async def knows(self, channel: str, sender_id: str) -> bool:
        """CannotRecord while the database is away."""
        async def read() -> bool:
            async with self.db.sessions() as session:
                return await is_known(session, channel, sender_id)

        return await self._read_for_a_page(read)

    async def _language_for_a_page(
        self, language_of: Callable[[AsyncSession, str, str], Awaitable[str | None]], channel: str, who: str
    ) -> str | None:
        """A language a page asks for, read by `language_of` (a chat's learner's, a sender's) for `who` on `channel`:
        CannotRecord while the database is away."""
        async def read() -> str | None:
            async with self.db.sessions() as session:
                return await language_of(session, channel, who)

        return await self._read_for_a_page(read)

    async def _read_for_a_page(self, read: Callable[[], Awaitable[_Read]]) -> _Read:
        """What a channel's pages ask for (their replies, their learner's language, the chats their watcher wakes,
        whether a sender is known): CannotRecord while the database is away, for a page to be told to try again (a
        503), logged once and then once a minute (`bot.outage`)."""
        try:
            found = await read()
        except Exception as exc:
            if not unreachable(exc):
                raise
            self._reading.failed()
            raise CannotRecord("the chat could not be read just now: try again in a few seconds") from None
        self._reading.ended()
        return found

    async def stop_sending(self, channel: str, chat_prefix: str, *, workspace: str, reason: str) -> int:
        """The platform removed the app from a workspace: cancel what was not sent there and stop its teams."""
        async with self.db.transaction(urgent=True) as session:  # the platform waits for this one
            cancelled = await cancel_unsent_to(session, channel, chat_prefix, reason=reason)
            teams = await stop_workspace(session, channel, workspace, chat_prefix=chat_prefix)
        log.info("stopped sending to a workspace", extra={"channel": channel, "cancelled": cancelled, "teams": teams})
        return cancelled

    def start(self) -> None:
        """Start the background loops that pick up work left by other processes or by a crash."""
        loop = asyncio.get_running_loop()
        if self.notices is not None:
            self._tasks.append(loop.create_task(self.notices.listen(), name="notices"))
            if self._shows_replies_sent_elsewhere():
                self._tasks.append(loop.create_task(self._say_watching(), name="notices-watching"))
        if self.process:
            self._tasks.append(loop.create_task(self.worker.run(), name="conversation-worker"))
        if not self.dispatch:
            return
        if self.leadership is None:
            self._tasks.append(loop.create_task(self._lead(), name="outbox-dispatcher"))
        else:
            self._tasks.append(loop.create_task(self.leadership.hold(self._lead), name="leadership"))

    async def _lead(self) -> None:
        """The single-instance work: the dispatcher and the leader's other jobs, until one of them stops."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.dispatcher.run())
                for work in self.leader_work:
                    group.create_task(work())
        finally:
            # Leadership lost (or shutdown): the sends under way are tasks of their own, which would go on sending
            # their conversations, paced by this process's limiter beside the next leader's.
            await self.dispatcher.stop()

    async def settle(self, timeout: float = 30.0) -> None:
        """Wait until everything received so far is processed and its due replies sent."""
        async with asyncio.timeout(timeout):
            await self.worker.idle()
            if self.dispatch:
                await self.dispatcher.flush(timeout)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.worker.idle()
        # The sends under way, and what a channel does after acknowledging a request (Slack's notes), end before the
        # channels and the database close: within the same grace, side by side.
        finishing = [channel.finish(self.dispatcher.stop_grace) for channel in self.channels.values()
                     if isinstance(channel, FinishesAfterAcknowledging)]
        await asyncio.gather(self.dispatcher.stop(), *finishing)
        if self.notices is not None:
            await self.notices.close()
        for channel in self.channels.values():
            if isinstance(channel, Closable):
                try:
                    await channel.close()
                except Exception:
                    log.exception("closing the %s channel failed", channel.name)
        await self.db.dispose()


def sending(settings: Settings) -> Sending:
    """The part of the settings the dispatcher goes by."""
    return Sending(
        concurrency=settings.outbox_concurrency, poll_seconds=settings.worker_poll_seconds, paced=settings.outbox_paced,
        max_attempts=settings.outbox_max_attempts, backoff_seconds=settings.outbox_backoff_seconds,
        backoff_max_seconds=settings.outbox_backoff_max_seconds,
    )


def attach_clock(lessonbot: Lessonbot, *, jobs: tuple[Job, ...] | None = None) -> Clock:
    """Give `lessonbot` the scheduler's clock as leader work: it runs wherever (and while) the dispatcher is elected.
    `jobs`: the clock's jobs, when not the project's own (scheduler.clock.JOBS)."""
    from scheduler.clock import JOBS, Clock
    from scheduler.context import JobContext

    settings = lessonbot.settings
    clock = Clock(
        JobContext(
            db=lessonbot.db,
            notify=lessonbot.dispatcher.notify,
            data_dir=settings.data_dir,
            site_url=settings.site_url,
            unprompted_windows=unprompted_windows(lessonbot.channels.values()),
            nudge_holdout=settings.nudge_holdout,
            message_days=settings.message_retention_days,
            answers_kept=timedelta(seconds=settings.knowledge_cache_seconds),
            member_lists={name: channel for name, channel in lessonbot.channels.items()
                          if isinstance(channel, ListsMembers)},
        ),
        owner=lessonbot.worker.owner,
        jobs=JOBS if jobs is None else jobs,
    )
    lessonbot.clock = clock
    lessonbot.leader_work.append(clock.run)
    return clock
