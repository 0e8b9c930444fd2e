"""The question answerer the dialogs call for any question no step expects.

    answer = await answerer.answer(question, learner=user.id, allowed_courses={"python-101"})

In order: the learner's per-minute allowance (shared through the database), retrieval from the allowed courses
only, then the answer: from the cache when the same question met the same passages before, else from the model
(when OPENAI_MODEL is set, within the learner's daily token budget and the day's model calls of all learners,
MODEL_CALLS_PER_DAY), else extractive. A model failure or a reply that fails the checks (a half reply, stopped before
its end, among them) falls back to the extractive answer, and is never cached; errors are logged, never shown to the
learner.

It owns its own database sessions (never the turn's), so the pipeline can run it outside the turn's transaction:
`turn.call_outside_transaction("answer", lambda: answerer.answer(...))`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.text import plain_words
from knowledge import extractive
from knowledge.answer import CourseAnswer, NoAnswer, sources_of
from knowledge.generation import PASSAGES as MODEL_PASSAGES
from knowledge.generation import ModelAnswerer, UngroundedReply, whole_words
from knowledge.retrieval import Mode, Passage, Retriever
from storage.knowledge import (
    cached_answer,
    give_back_question,
    remember_answer,
    reserve_tokens,
    spend_tokens,
    take_model_call,
    take_question,
)
from storage.models import utcnow

if TYPE_CHECKING:
    from knowledge.settings import KnowledgeSettings
    from knowledge.store import KnowledgeStore
    from storage.db import Database

log = logging.getLogger(__name__)

MAX_QUESTION_CHARACTERS = 1000
CACHE_FORMAT = "3"  # CourseAnswer.to_payload's (3: a decline's `covers`); the first format had no version here
PASSAGES = 5
INSTRUCTION_TOKENS = 200  # about what the system prompt and the passages' markup add to a model call


class Answerer:
    def __init__(
        self,
        settings: KnowledgeSettings,
        *,
        store: KnowledgeStore | None = None,
        database: Database | None = None,
        mode: Mode = "hybrid",
        extractive_only: bool = False,
        canary: str | None = None,
    ) -> None:
        """`database`: where allowances and cached answers live; None turns both off (evaluation, scripts)."""
        from knowledge.store import open_store

        self.settings = settings
        self.store = store or open_store(settings)
        self.retriever = Retriever(self.store, mode=mode)
        self.database = database
        self.model: ModelAnswerer | None = None
        if settings.openai_model and not extractive_only:
            self.model = ModelAnswerer(settings, canary=canary)

    async def answer(
        self,
        question: str,
        *,
        learner: str | int,
        allowed_courses: Collection[str],
        only_lessons: Mapping[str, Collection[str]] | None = None,
        on_partial: Callable[[str], Awaitable[None]] | None = None,
    ) -> CourseAnswer:
        """Answer `question` from `allowed_courses` only; of a course in `only_lessons`, from those lessons only (a
        paid course's free preview). `on_partial` (for channels that show text as it is written) receives the
        model's answer so far; it is not called for extractive or cached answers."""
        question = " ".join(question.split())
        if len(question) > MAX_QUESTION_CHARACTERS:
            # at a word's end: half a word ("What is chlor" of "chlorophyll") is a term the course lacks, and the
            # answer was declined for it
            question = whole_words(question[: MAX_QUESTION_CHARACTERS + 1]) or question[:MAX_QUESTION_CHARACTERS]
        learner_key = str(learner)
        if not plain_words(question):  # nothing to look up: empty, or only emoji and punctuation ("?", "👍")
            return CourseAnswer.none(NoAnswer.EMPTY_QUESTION)
        taken_at = utcnow()
        if not await self._take_question(learner_key, taken_at):
            return CourseAnswer.none(NoAnswer.TOO_FAST)
        if not allowed_courses:
            return CourseAnswer.none(NoAnswer.NO_COURSES)
        try:
            answer = await self._look_up(question, learner=learner_key, allowed_courses=allowed_courses,
                                         only_lessons=only_lessons, on_partial=on_partial)
        except BaseException:  # our failure (an embedding endpoint refusing, the store away) or the worker stopping
            await self._give_back_question(learner_key, taken_at)
            raise
        if answer.unanswered is NoAnswer.NOT_INDEXED:  # ours too: the courses are missing from the store
            await self._give_back_question(learner_key, taken_at)
        return answer

    async def _look_up(
        self,
        question: str,
        *,
        learner: str,
        allowed_courses: Collection[str],
        only_lessons: Mapping[str, Collection[str]] | None,
        on_partial: Callable[[str], Awaitable[None]] | None,
    ) -> CourseAnswer:
        """Retrieval from the allowed courses (of a course in `only_lessons`, those lessons' passages only), then the
        answer from what was found. A question those lessons do not answer but the course's others do is no gap in
        the course: it is answered past the preview (`NoAnswer.BEYOND_PREVIEW`), and nothing of those lessons is
        given."""
        # a course read in part: more passages looked at, those of its other lessons left out
        found = await asyncio.to_thread(self.retriever.search, question, allowed_courses=allowed_courses,
                                        limit=PASSAGES * 4 if only_lessons else PASSAGES)
        if found.unindexed:
            log.warning(
                "not in the knowledge store, so not searched: %s; run `lessonbot course import` with each one's folder "
                "to index it (learners keep their progress)", ", ".join(sorted(found.unindexed)),
                extra={"courses": sorted(found.unindexed),
                       "store": self.settings.chroma_host or str(self.settings.chroma_path)},
            )
            if found.unindexed >= set(allowed_courses):
                return CourseAnswer.none(NoAnswer.NOT_INDEXED)
        readable, locked = _split_preview(found.passages, only_lessons)
        answer = await self.compose(
            question, readable[:PASSAGES], learner=learner, allowed_courses=allowed_courses, on_partial=on_partial,
            rarity=found.rarity,
        )
        if answer.unanswered is NoAnswer.NOT_COVERED and locked and await self._answered_by(
            question, locked[:PASSAGES], allowed_courses, found.rarity
        ):
            return CourseAnswer.none(NoAnswer.BEYOND_PREVIEW, tokens=answer.tokens, locked=sources_of(locked[:1]))
        return answer

    async def _answered_by(
        self,
        question: str,
        passages: list[Passage],
        allowed_courses: Collection[str],
        rarity: Callable[[str], float] | None,
    ) -> bool:
        """Whether `passages` answer `question`, as the quote from them would (no model call: the answer is only
        weighed, never shown)."""
        return not (await self._extractive(question, passages, allowed_courses, rarity)).declined

    async def compose(
        self,
        question: str,
        passages: list[Passage],
        *,
        learner: str,
        allowed_courses: Collection[str],
        on_partial: Callable[[str], Awaitable[None]] | None = None,
        rarity: Callable[[str], float] | None = None,
    ) -> CourseAnswer:
        """The answer from passages already retrieved (the evaluation times retrieval and this apart); `rarity`: the
        term weights they were ranked with (`Found.rarity`), else read again from the courses."""
        if not passages:
            return CourseAnswer.none(NoAnswer.NOT_COVERED)
        if self.model is None:
            return await self._extractive(question, passages, allowed_courses, rarity)

        key = self._cache_key(question, passages)
        cached = await self._cached(key)
        if cached is not None:
            return cached
        given = passages[:MODEL_PASSAGES]
        reserved = self._most_tokens(question, given)
        day = await self._reserve(learner, reserved)
        if day is None:
            # the learner's tokens for the day are spent: the quote from the course costs nothing, and is still an
            # answer
            return await self._extractive(question, passages, allowed_courses, rarity)
        spent = 0  # what the call took, counted instead of what was set aside, however this ends (even cancelled)
        try:
            if not await self._take_model_call():  # the deployment's calls for the day are spent: the same
                return await self._extractive(question, passages, allowed_courses, rarity)
            try:
                # the whole reply within the timeout, not each read of it: a model streaming slowly has the learner
                # wait no longer than a silent one
                async with asyncio.timeout(self.settings.model_timeout_seconds):
                    reply = await self.model.reply(question, given, on_partial=on_partial)
            except Exception:
                log.exception("the answer model failed; answering extractively",
                              extra={"model": self.model.model_name})
                return await self._extractive(question, passages, allowed_courses, rarity)
            spent = reply.tokens
        finally:
            await self._spend(learner, spent, reserved=reserved, reserved_on=day)
        try:
            answer = self.model.answer(reply, given)
            if answer.declined:  # the model found no answer: what the course says nearest, as a quote's decline tells
                answer = replace(answer, covers=sources_of(passages))
        except UngroundedReply as exc:
            log.warning("model reply discarded: %s", exc, extra={"model": self.model.model_name})
            return await self._extractive(question, passages, allowed_courses, rarity, tokens=reply.tokens)
        await self._remember(key, answer, asked_by=learner)
        return answer

    async def _extractive(
        self,
        question: str,
        passages: list[Passage],
        allowed_courses: Collection[str],
        rarity: Callable[[str], float] | None,
        *,
        tokens: int = 0,
    ) -> CourseAnswer:
        if rarity is None:
            rarity = await asyncio.to_thread(self.retriever.rarity, allowed_courses)
        answer = extractive.compose(question, passages, rarity=rarity)
        return replace(answer, tokens=tokens)

    # shared state (database) --------------------------------------------------------------------------------------

    def _cache_key(self, question: str, passages: list[Passage]) -> str:
        # passage ids hash their text, so an edited lesson changes the key; casing and spacing do not. The payload's
        # format is part of it: a process running other code never reads a row it would misread.
        material = "\0".join([CACHE_FORMAT, self.model.model_name if self.model else "", question.lower(),
                              *sorted(p.chunk_id for p in passages)])
        return hashlib.sha256(material.encode()).hexdigest()

    async def _take_question(self, learner: str, now: datetime) -> bool:
        """One question counted against the learner's minute (under the row's lock: two at once never both pass its
        last slot); False when the minute is full."""
        if self.database is None:
            return True

        async with self.database.transaction() as session:
            return await take_question(session, learner, per_minute=self.settings.rate_limit_per_minute, now=now)

    async def _give_back_question(self, learner: str, taken_at: datetime) -> None:
        """The question taken at `taken_at` uncounted: the answerer failed on it, so it used none of the learner's
        minute. A failure to give it back is logged; the answerer's own failure is the one that goes on."""
        if self.database is None:
            return

        try:
            async with self.database.transaction() as session:
                await give_back_question(session, learner, taken_at=taken_at)
        except Exception:
            log.exception("a question the answerer failed on could not be given back to the learner's allowance")

    def _most_tokens(self, question: str, passages: list[Passage]) -> int:
        """What a call may take, set aside before it: the longest answer, the question and passages at about four
        characters a token, and the instructions around them."""
        prompt = len(question) + sum(len(p.text) for p in passages)
        return self.settings.max_answer_tokens + prompt // 4 + INSTRUCTION_TOKENS

    async def _reserve(self, learner: str, tokens: int) -> str | None:
        """The day (UTC) `tokens` were set aside on for a model call, or None: the learner's budget is spent."""
        if self.database is None:
            return ""

        async with self.database.transaction() as session:
            return await reserve_tokens(session, learner, tokens, budget=self.settings.daily_token_budget)

    async def _take_model_call(self) -> bool:
        """One model call counted against the day's cap over all learners (MODEL_CALLS_PER_DAY)."""
        if self.database is None:
            return True

        async with self.database.transaction() as session:
            taken = await take_model_call(session, per_day=self.settings.model_calls_per_day)
        if not taken:
            log.warning("the day's model calls are spent (MODEL_CALLS_PER_DAY); questions are answered with quotes")
        return taken

    async def _spend(self, learner: str, tokens: int, *, reserved: int, reserved_on: str) -> None:
        if self.database is None or tokens == reserved:
            return

        async with self.database.transaction() as session:
            await spend_tokens(session, learner, tokens, reserved=reserved, reserved_on=reserved_on)

    async def _cached(self, key: str) -> CourseAnswer | None:
        if self.database is None or not self.settings.cache_seconds:
            return None

        max_age = timedelta(seconds=self.settings.cache_seconds)
        async with self.database.sessions() as session:
            payload = await cached_answer(session, key, max_age=max_age)
        return CourseAnswer.from_payload(payload, cached=True) if payload is not None else None

    async def _remember(self, key: str, answer: CourseAnswer, *, asked_by: str) -> None:
        """Keep `answer` for the next to ask the same, marked as composed for `asked_by`'s question (it goes when
        they are erased: it may say again what they typed)."""
        if self.database is None or not self.settings.cache_seconds:
            return

        async with self.database.transaction() as session:
            await remember_answer(session, key, answer.to_payload(), asked_by=asked_by)


def _split_preview(
    passages: list[Passage], only_lessons: Mapping[str, Collection[str]] | None
) -> tuple[list[Passage], list[Passage]]:
    """`passages` the learner may read, and those left out: of a course in `only_lessons` (its free preview), from
    its other lessons; each kept in their order."""
    readable: list[Passage] = []
    locked: list[Passage] = []
    for passage in passages:
        lessons = (only_lessons or {}).get(passage.course_id)
        (readable if lessons is None or passage.lesson_id in lessons else locked).append(passage)
    return readable, locked
