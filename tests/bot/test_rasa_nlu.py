"""Plain words read by an organisation's Rasa model (RASA_NLU_URL): a mapped intent runs its command, anything else
— and any trouble with the Rasa server — goes to the question answerer as before. Through the real pipeline, with
the Rasa server stand-in's /model/parse, on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bench.processes import free_port
from bot.cli import main
from bot.config import ConfigError
from bot.core import Lessonbot
from bot.rasa_nlu import read_intents
from standins.rasa import RasaServerStandIn
from tests.bot.rasa_support import RASA_TOKEN, example_domain
from tests.dialogs.learning_support import Learning, import_sample, onboard
from tests.support import RecordingChannel

# the question answerer's reply here: the sample course is imported, not indexed for questions
NOT_COVERED = "I can't look things up in your course material yet"


@asynccontextmanager
async def learner(settings, **overrides) -> AsyncIterator[tuple[RasaServerStandIn, Learning]]:
    """A set-up learner on a bot whose plain words go to the stand-in's model first (given 5 s unless a test is
    about waiting: a busy machine is no slow Rasa server)."""
    async with RasaServerStandIn(action_endpoint="http://127.0.0.1:9/webhook", domain=example_domain(),
                                 token=RASA_TOKEN) as rasa:
        configured = settings.model_copy(update={
            "rasa_nlu_url": rasa.url, "rasa_token": RASA_TOKEN, "rasa_nlu_timeout_seconds": 5.0, **overrides,
        })
        channel = RecordingChannel()
        bot = Lessonbot(configured, [channel])
        await import_sample(bot)
        t = Learning(bot, channel)
        await onboard(t)
        rasa.parsed.clear()  # onboarding's answers were all expected by its steps
        try:
            yield rasa, t
        finally:
            await bot.stop()


def reads(intent: str, confidence: float):
    return lambda text: (intent, confidence)


async def test_a_mapped_intent_runs_its_command(settings):
    async with learner(settings) as (rasa, t):
        rasa.parse = reads("ask_next", 0.93)
        [lesson] = await t.say("can we carry on with the course")
        assert lesson.startswith("📘 Lesson 1 of 5")
        assert rasa.parsed == ["can we carry on with the course"]  # asked once, though the turn was replayed


async def test_a_mapped_command_with_arguments(settings, tmp_path):
    mapping = tmp_path / "intents.yml"
    mapping.write_text("take_a_break: /pause 7\n")
    async with learner(settings, rasa_nlu_intents=mapping) as (rasa, t):
        rasa.parse = reads("take_a_break", 0.99)
        [paused] = await t.say("I need a week off")
        assert paused.startswith("Paused until") and "send /resume" in paused
        rasa.parse = reads("ask_next", 0.99)  # not in this mapping: the built-in one is replaced
        assert (await t.say("can we carry on"))[0].startswith(NOT_COVERED)


async def test_an_intent_below_the_threshold_goes_to_the_answerer(settings):
    async with learner(settings, rasa_nlu_threshold=0.8) as (rasa, t):
        rasa.parse = reads("ask_next", 0.79)
        assert (await t.say("maybe carry on"))[0].startswith(NOT_COVERED)


async def test_an_intent_nobody_mapped_goes_to_the_answerer(settings):
    async with learner(settings) as (rasa, t):
        rasa.parse = reads("order_pizza", 0.99)
        assert (await t.say("a large margherita"))[0].startswith(NOT_COVERED)


@pytest.mark.parametrize("status", [500, 503, 401, 404])
async def test_an_error_of_the_rasa_server_falls_back_to_the_answerer(settings, status):
    async with learner(settings) as (rasa, t):
        rasa.parse = reads("ask_next", 0.99)
        rasa.failures = [status]
        assert (await t.say("can we carry on"))[0].startswith(NOT_COVERED)
        assert len(rasa.parsed) == 1


async def test_a_rasa_server_too_slow_falls_back_to_the_answerer(settings):
    async with learner(settings, rasa_nlu_timeout_seconds=0.2) as (rasa, t):
        rasa.parse = reads("ask_next", 0.99)
        rasa.delay = 1.0
        assert (await t.say("can we carry on"))[0].startswith(NOT_COVERED)


async def test_a_rasa_server_that_trickles_its_answer_falls_back_to_the_answerer_in_time(settings):
    """RASA_NLU_TIMEOUT_SECONDS holds for the whole answer: one whose bytes keep coming, each well within it, is
    given up on when it has run out, and the learner's words go to the answerer then."""
    async with learner(settings, rasa_nlu_timeout_seconds=0.3) as (rasa, t):
        rasa.parse = reads("ask_next", 0.99)
        rasa.trickle = 0.1  # the answer (about 150 bytes, 8 at a time) takes two seconds, and would run /next
        assert (await t.say("can we carry on"))[0].startswith(NOT_COVERED)


async def test_a_rasa_server_out_of_reach_falls_back_to_the_answerer(settings):
    async with learner(settings, rasa_nlu_url=f"http://127.0.0.1:{free_port()}") as (rasa, t):
        assert (await t.say("can we carry on"))[0].startswith(NOT_COVERED)


@pytest.mark.parametrize("body", [
    b'{"intent": {"name": "ask_next", "confidence": NaN}}',  # no confidence at all: NaN is below no threshold
    b'{"intent": {"name": "ask_next", "confidence": 7}}',  # a confidence runs from 0 to 1
    b'{"intent": {"name": "ask_next", "confidence": true}}',
    b'{"intent": {"name": "ask_next", "confidence": "0.99"}}',
    b'{"intent": "ask_next"}',
    b'[{"intent": {"name": "ask_next", "confidence": 0.99}}]',
    b"<html>502 Bad Gateway</html>",  # a proxy in front of the Rasa server
    b"[" * 100_000 + b"]" * 100_000,  # nested past what any parser should follow
])
async def test_an_answer_of_the_rasa_server_that_is_no_intent_falls_back_to_the_answerer(settings, body):
    async with learner(settings) as (rasa, t):
        rasa.parse_body = body
        assert (await t.say("can we carry on"))[0].startswith(NOT_COVERED)
        assert len(rasa.parsed) == 1


async def test_what_a_command_or_a_dialog_takes_never_goes_to_rasa(settings):
    async with learner(settings) as (rasa, t):
        rasa.parse = reads("greet", 0.99)
        await t.say("next")  # a command's word
        await t.press("Next ▸")
        await t.press("Next ▸")
        await t.press("Take the quiz ▸")
        await t.press("Urgency")  # a quiz answer, pressed
        await t.press("False")
        await t.say("smishing")  # and typed
        assert rasa.parsed == []


async def test_the_token_goes_as_rasa_asks_for_it(settings):
    async with learner(settings, rasa_token="wrong") as (rasa, t):
        rasa.parse = reads("ask_next", 0.99)
        assert (await t.say("can we carry on"))[0].startswith(NOT_COVERED)  # 401 from the stand-in


async def test_without_rasa_nlu_url_nothing_changes(settings):
    async with learner(settings, rasa_nlu_url="") as (rasa, t):
        rasa.parse = reads("ask_next", 0.99)
        assert (await t.say("can we carry on"))[0].startswith(NOT_COVERED)
        assert rasa.parsed == []


def test_a_mapping_file_is_checked_line_by_line(tmp_path):
    good = tmp_path / "good.yml"
    good.write_text("ask_next: /next\nbreak: /pause 3\n")
    assert read_intents(good) == {"ask_next": "/next", "break": "/pause 3"}
    for text, says in [
        ("ask_next: /nxt\n", "there is no command /nxt (did you mean /next?)"),
        ("ask_next: next\n", "'next' is not a command"),
        ("- /next\n", "should map intents to commands"),
        ("ask_next: [/next\n", "is not YAML"),
    ]:
        bad = tmp_path / "bad.yml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match="RASA_NLU_INTENTS") as raised:
            read_intents(bad)
        assert says in str(raised.value)
    with pytest.raises(ConfigError, match="cannot be read"):
        read_intents(tmp_path / "missing.yml")


def test_a_bad_mapping_file_stops_the_server_with_one_message(monkeypatch, capsys, tmp_path: Path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "intents.yml").write_text("ask_next: /nxt\n")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("RASA_NLU_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("RASA_NLU_INTENTS", str(tmp_path / "intents.yml"))
    assert main(["serve", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert "there is no command /nxt (did you mean /next?)" in err and "Traceback" not in err


def test_the_built_in_and_the_example_mappings_name_real_commands(tmp_path):
    from bot.rasa_nlu import INTENTS
    from tests.bot.rasa_support import EXAMPLE

    built_in = tmp_path / "built-in.yml"
    built_in.write_text("".join(f"{intent}: {line}\n" for intent, line in INTENTS.items()))
    assert read_intents(built_in) == dict(INTENTS)
    assert read_intents(EXAMPLE / "intents.yml")["take_a_week_off"] == "/pause 7"


async def test_what_a_rasa_assistant_passes_on_is_not_read_by_its_model_again(settings):
    from tests.bot.rasa_support import onboard, rasa_assistant

    async with rasa_assistant(settings, nlu=True) as (rasa, bot):
        await onboard(rasa, "u1")
        rasa.parse = reads("ask_next", 0.99)
        run = await rasa.say("u1", "can we carry on", action="action_lessonbot_answer")
        assert run.texts[0].startswith(NOT_COVERED) and rasa.parsed == []
