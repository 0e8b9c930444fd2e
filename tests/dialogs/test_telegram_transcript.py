"""Onboarding, a lesson and a quiz answer on Telegram: real webhook requests through the app and python-telegram-bot
sending to the local Bot API stand-in, the buttons pressed as Telegram sends their callback queries."""

from __future__ import annotations

import json

import httpx
import pytest
from sqlalchemy import func, select

from bot.app import create_app
from channels.telegram import SECRET_HEADER
from standins.telegram import TOKEN, button_update, person, text_update
from storage.courses import Course, Enrollment, Question, QuestionCard
from storage.learners import Certificate
from tests.dialogs.learning_support import PAID, import_sample
from tests.support import standin  # noqa: F401 (the fixture)

SECRET = "test-webhook-secret_0123456789"
CHAT = 2222222


@pytest.fixture
def telegram_settings(settings, standin):
    return settings.model_copy(update={
        "telegram_bot_token": TOKEN, "telegram_webhook_secret": SECRET, "telegram_api_base_url": standin.base_url,
        "web_chat_enabled": False,
    })


class TelegramLearner:
    def __init__(self, client: httpx.AsyncClient, standin, *, chat: int = CHAT, name: str = "Marta") -> None:
        self.client, self.standin, self.chat = client, standin, chat
        self.user = person(chat, name)

    async def _post(self, update: dict) -> None:
        response = await self.client.post("/webhooks/telegram", content=json.dumps(update).encode(),
                                          headers={"content-type": "application/json", SECRET_HEADER: SECRET})
        assert response.status_code == 200, response.text

    async def _replies(self, before: int, count: int) -> list[str]:
        await self.standin.wait_for(lambda: len(self.standin.texts(self.chat)) >= before + count)
        return self.standin.texts(self.chat)[before:]

    async def say(self, text: str, count: int = 1) -> list[str]:
        before = len(self.standin.texts(self.chat))
        await self._post(text_update(text, chat_id=self.chat, user=self.user))
        return await self._replies(before, count)

    async def press(self, label: str, count: int = 1) -> list[str]:
        sent = [call for call in self.standin.called("sendMessage") if call.params["chat_id"] == str(self.chat)]
        for call in reversed(sent):
            for row in (call.reply_markup or {}).get("inline_keyboard", []):
                for button in row:
                    if button["text"] == label:
                        before = len(self.standin.texts(self.chat))
                        await self._post(button_update(call, button["callback_data"], user=self.user))
                        return await self._replies(before, count)
        raise AssertionError(f"no button {label!r}")


async def test_onboarding_and_a_lesson_on_telegram_in_spanish(telegram_settings, standin):
    app = create_app(telegram_settings)
    async with app.router.lifespan_context(app):
        await import_sample(app.state.lessonbot)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lessonbot.test") as client:
            marta = TelegramLearner(client, standin)
            assert await marta.say("/language es") == ["Vale, a partir de ahora te escribo en español."]
            [greeting] = await marta.say("/start")
            assert greeting.startswith("¡Hola Marta! Soy Lessonbot.")
            assert await marta.press("Sí, empecemos") == ["¿Cómo quieres que te llame?"]
            await marta.press("Marta")
            [confirm] = await marta.say("Madrid")
            assert confirm.startswith("En Madrid ahora son las ")
            await marta.press("Sí, es correcto")
            await marta.press("Mañana, 08:00")
            await marta.press("Entre semana")
            await marta.press("Spot the phish, five minutes a day")
            [done] = await marta.press("1 lección (unos 5 minutos)")
            assert done.startswith("¡Todo listo, Marta!") and "Lecciones a las 08:00, de lunes a viernes" in done
            [part] = await marta.press("Empezar mi primera lección")
            assert part.startswith("📘 Lección 1 de 5: What a phishing message wants")
            await marta.press("Siguiente ▸")
            await marta.press("Siguiente ▸")
            intro, question = await marta.press("Hacer el cuestionario ▸", count=2)
            assert intro.startswith("Hora del cuestionario: 3 preguntas") and question.startswith("Pregunta 1 de 3")
            feedback, following = await marta.press("Urgency", count=2)
            assert feedback.startswith("✅ ¡Correcto!") and following.startswith("Pregunta 2 de 3")


async def test_a_forged_telegram_button_opens_no_paid_content(telegram_settings, standin):
    app = create_app(telegram_settings)
    async with app.router.lifespan_context(app):
        lessonbot = app.state.lessonbot
        await import_sample(lessonbot)
        await import_sample(lessonbot, PAID)
        async with lessonbot.db.sessions() as session:
            paid = await session.scalar(select(Course).where(Course.slug == "passwords-that-hold"))
            last_question = await session.scalar(
                select(Question.id).where(Question.course_id == paid.id).order_by(Question.id.desc()).limit(1))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://lessonbot.test") as client:
            marta = TelegramLearner(client, standin)
            await marta.say("/start")
            await marta.press("Yes, let's start")
            await marta.press("Marta")
            await marta.say("Madrid")
            await marta.press("Yes, that's right")
            await marta.press("Morning, 08:00")
            await marta.press("Weekdays")
            await marta.press("Spot the phish, five minutes a day")
            await marta.press("1 lesson (about 5 minutes)")
            # callback_data of a genuine message, rewritten: Telegram lets a client send any data it likes
            genuine = [call for call in standin.called("sendMessage") if call.params["chat_id"] == str(CHAT)][-1]
            before = len(standin.texts(CHAT))
            await marta._post(button_update(genuine, f"quiz:{last_question}:0", user=marta.user))
            assert await marta._replies(before, 1) == ["That button isn't available."]
            await lessonbot.settle()
            assert standin.texts(CHAT)[before:] == ["That button isn't available."]
            assert not standin.called("sendDocument")
        async with lessonbot.db.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(Certificate)) == 0
            assert await session.scalar(select(func.count()).select_from(QuestionCard)) == 0
            assert await session.scalar(select(func.count()).select_from(Enrollment).where(
                Enrollment.course_id == paid.id)) == 0
