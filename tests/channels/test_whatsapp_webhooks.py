"""The WhatsApp webhooks as Twilio calls them: signatures, documented form fields, duplicates, bodies that are not
Twilio's, and status callbacks that update the outbox row."""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode, urlsplit

import pytest
from sqlalchemy import func, select
from starlette.datastructures import MultiDict
from twilio.request_validator import RequestValidator

from bot.app import build_channels
from bot.channel import RequestRejected
from channels.whatsapp import WhatsAppChannel
from channels.whatsapp.inbound import verify, webhook_url
from standins.twilio import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    PUBLIC_BASE_URL,
    SENDER,
    TwilioStandIn,
)
from storage.db import Database
from storage.models import InboundMessage, OutboxMessage
from tests.support import whatsapp_app

ANN = "+15551234567"
INBOUND = "/webhooks/twilio/whatsapp"


@pytest.fixture
async def twilio():
    async with TwilioStandIn(ACCOUNT_SID, AUTH_TOKEN) as api:
        yield api


async def count(app, model, *where) -> int:
    async with app.state.lessonbot.db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where))


async def outbox_rows(app) -> list[OutboxMessage]:
    async with app.state.lessonbot.db.sessions() as session:
        return list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def test_twilios_published_signature_vector_verifies_with_our_code(fixtures_dir):
    vector = json.loads((fixtures_dir / "twilio/twilio-python/request_validator_vector.json").read_text())
    parts = urlsplit(vector["url"])
    url = webhook_url(f"{parts.scheme}://{parts.netloc}/", parts.path, parts.query)
    assert url == vector["url"]
    validator = RequestValidator(vector["auth_token"])
    params = vector["form_params"]
    signature = vector["expected_X-Twilio-Signature"]

    verify(validator, url, MultiDict(params), signature)  # raises if it does not verify

    for url_seen, form, token in [
        (url, {**params, "Digits": "1235"}, vector["auth_token"]),
        (url.replace("foo=1", "foo=2"), params, vector["auth_token"]),
        (url, params, "54321"),
    ]:
        with pytest.raises(RequestRejected) as refused:
            verify(RequestValidator(token), url_seen, MultiDict(form), signature)
        assert refused.value.status == 403
    with pytest.raises(RequestRejected) as refused:
        verify(validator, url, MultiDict(params), None)
    assert refused.value.status == 401


async def test_a_message_is_acknowledged_with_empty_twiml_and_answered_through_twilio(settings, twilio):
    async with whatsapp_app(settings, twilio) as (app, webhooks):
        response = await webhooks.message(ANN, "/help")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/xml")
        assert response.text.endswith("<Response />")
        await app.state.lessonbot.settle()

    [sent] = twilio.sent
    assert sent.to == f"whatsapp:{ANN}" and sent.get("From") == SENDER
    assert sent.body  # the dialogs' answer; its wording is theirs
    assert sent.get("StatusCallback") == f"{PUBLIC_BASE_URL}/webhooks/twilio/status"
    rows = await outbox_rows(app)
    assert [(row.status, row.platform_message_id) for row in rows] == [("sent", sent.sid)]


async def test_unsigned_and_forged_requests_are_refused_before_anything_is_stored(settings, twilio):
    async with whatsapp_app(settings, twilio) as (app, webhooks):
        form = webhooks.message_form(ANN, "hello")
        assert (await webhooks.post(INBOUND, form, signature=None)).status_code == 401
        assert (await webhooks.post(INBOUND, form, signature="bm90IGEgc2lnbmF0dXJlIGF0IGFsbA==")).status_code == 403
        other_account = RequestValidator("another-accounts-token").compute_signature(PUBLIC_BASE_URL + INBOUND, form)
        assert (await webhooks.post(INBOUND, form, signature=other_account)).status_code == 403
        other_address = webhooks.validator.compute_signature("http://127.0.0.1:8000" + INBOUND, form)
        assert (await webhooks.post(INBOUND, form, signature=other_address)).status_code == 403
        tampered = {**form, "Body": "/admin stats"}
        refused = await webhooks.post(INBOUND, tampered, signature=webhooks.signature(INBOUND, form))
        assert refused.status_code == 403
        # The caller is told the signature did not verify, and nothing about how this server is configured.
        assert refused.json() == {"error": "X-Twilio-Signature did not verify."}
        await app.state.lessonbot.settle()

        assert await count(app, InboundMessage) == 0
    assert twilio.requests == 0


async def test_a_redelivered_message_sid_is_acknowledged_and_answered_once(settings, twilio):
    async with whatsapp_app(settings, twilio) as (app, webhooks):
        form = webhooks.message_form(ANN, "/help", sid="SM" + "d" * 32)
        first = await webhooks.post(INBOUND, form)
        again = await webhooks.post(INBOUND, form)
        assert first.status_code == again.status_code == 200
        await app.state.lessonbot.settle()
        assert await count(app, InboundMessage) == 1
    assert len(twilio.sent) == 1


async def test_bodies_that_are_not_twilio_form_data_are_refused_and_nothing_is_stored(settings, twilio):
    async with whatsapp_app(settings, twilio) as (app, webhooks):
        client = webhooks.client
        form_type = {"Content-Type": "application/x-www-form-urlencoded"}
        huge = urlencode(webhooks.message_form(ANN, "x" * (settings.max_body_bytes + 1)))
        oversized = await client.post(INBOUND, content=huge, headers={**form_type, "X-Twilio-Signature": "x"})
        assert oversized.status_code == 413
        for body in (b"MessageSid=SM1&&&Body", b"Body=%ff%fe&From=whatsapp:%2B1555"):
            malformed = await client.post(INBOUND, content=body, headers={**form_type, "X-Twilio-Signature": "x"})
            assert malformed.status_code == 400, body
        as_json = await client.post(INBOUND, json={"Body": "hi"}, headers={"X-Twilio-Signature": "x"})
        assert as_json.status_code == 415
        no_sid = {key: value for key, value in webhooks.message_form(ANN, "hi").items() if key != "MessageSid"}
        assert (await webhooks.post(INBOUND, no_sid)).status_code == 400
        bad_number = webhooks.message_form("+1", "hi", From="whatsapp:not-a-number")
        assert (await webhooks.post(INBOUND, bad_number)).status_code == 400
        assert await count(app, InboundMessage) == 0
        # a count in other digits ("²" is a digit to str.isdigit, not to int) is no count: the text still arrives
        odd_count = webhooks.message_form(ANN, "hi", sid="SM" + "9" * 32, NumMedia="²")
        assert (await webhooks.post(INBOUND, odd_count)).status_code == 200
        assert await count(app, InboundMessage) == 1


async def test_media_locations_names_and_quick_reply_taps_are_read_from_twilios_fields(settings, twilio):
    async with whatsapp_app(settings, twilio) as (app, webhooks):
        media = webhooks.message_form(
            ANN, "my homework", sid="SM" + "1" * 32, NumMedia="2", MessageType="image",
            MediaUrl0=f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/SM1/Media/ME1",
            MediaContentType0="image/jpeg",
            MediaUrl1=f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/SM1/Media/ME2",
            MediaContentType1="application/pdf",
        )
        location = webhooks.message_form(
            ANN, "", sid="SM" + "2" * 32, MessageType="location", Latitude="52.52", Longitude="13.405",
            Address="Alexanderplatz", Label="Classroom",
        )
        tap = webhooks.message_form(
            ANN, "Beta", sid="SM" + "3" * 32, MessageType="button", ButtonText="Beta", ButtonPayload="quiz:beta"
        )
        for form in (media, location, tap):
            assert (await webhooks.post(INBOUND, form)).status_code == 200
        await app.state.lessonbot.settle()

        async with app.state.lessonbot.db.sessions() as session:
            rows = {row.platform_id: row for row in await session.scalars(select(InboundMessage))}
    assert {row.sender_id for row in rows.values()} == {ANN}
    first = rows[media["MessageSid"]].payload
    assert first["sender_name"] == "Ann Learner"
    assert first["meta"]["media"] == [
        {"url": media["MediaUrl0"], "content_type": "image/jpeg"},
        {"url": media["MediaUrl1"], "content_type": "application/pdf"},
    ]
    assert rows[location["MessageSid"]].payload["meta"]["location"] == {
        "latitude": "52.52", "longitude": "13.405", "address": "Alexanderplatz", "label": "Classroom",
    }
    assert rows[tap["MessageSid"]].payload["choice"] == "quiz:beta"


async def test_an_sms_sent_to_the_whatsapp_webhook_is_acknowledged_and_ignored(settings, twilio, caplog):
    caplog.set_level(logging.INFO, logger="channels.whatsapp")
    async with whatsapp_app(settings, twilio) as (app, webhooks):
        sms = webhooks.message_form(ANN, "hello", From=ANN, To="+14155238886")
        assert (await webhooks.post(INBOUND, sms)).status_code == 200
        assert await count(app, InboundMessage) == 0
    assert "not a WhatsApp message" in caplog.text


async def test_status_callbacks_update_the_outbox_row_of_the_sent_message(settings, twilio):
    async with whatsapp_app(settings, twilio) as (app, webhooks):
        await webhooks.message(ANN, "/help")
        await app.state.lessonbot.settle()
        [sent] = twilio.sent

        for status in ("sent", "delivered", "read"):
            assert (await webhooks.status(sent.sid, status)).status_code == 200
            [row] = await outbox_rows(app)
            assert (row.delivery_status, row.delivery_error) == (status, None)
        assert (await webhooks.status(sent.sid, "failed", error_code="63016")).status_code == 200
        [row] = await outbox_rows(app)
        assert (row.delivery_status, row.delivery_error) == ("failed", "63016")

        assert (await webhooks.status("SM" + "0" * 32, "delivered")).status_code == 200  # not ours: fine
        form = {"MessageSid": sent.sid, "MessageStatus": "read", "AccountSid": ACCOUNT_SID}
        unsigned = await webhooks.post("/webhooks/twilio/status", form, signature=None)
        forged = await webhooks.post("/webhooks/twilio/status", form, signature="Zm9yZ2Vk")
        assert (unsigned.status_code, forged.status_code) == (401, 403)
        [row] = await outbox_rows(app)
        assert row.delivery_status == "failed"


async def test_whatsapp_stays_off_without_public_base_url_and_says_why(settings, caplog):
    caplog.set_level(logging.INFO, logger="bot.app")
    configured = settings.model_copy(
        update={"twilio_account_sid": ACCOUNT_SID, "twilio_auth_token": AUTH_TOKEN, "twilio_whatsapp_from": SENDER}
    )
    db = Database(configured.resolved_database_url)
    try:
        assert "whatsapp" not in {channel.name for channel in build_channels(configured, db)}
    finally:
        await db.dispose()
    assert "whatsapp is off: PUBLIC_BASE_URL is empty" in caplog.text
    with pytest.raises(ValueError, match="PUBLIC_BASE_URL"):
        WhatsAppChannel(account_sid=ACCOUNT_SID, auth_token=AUTH_TOKEN, sender=SENDER, public_base_url="")


async def test_a_learners_export_holds_the_location_and_the_photo_they_sent(settings, twilio):
    """/export gives back what they sent as the bot keeps it: a shared location's place and a photo's address too,
    not an empty text."""
    from storage.models import ChannelIdentity, utcnow
    from storage.personal_data import export_person

    async with whatsapp_app(settings, twilio) as (app, webhooks):
        bot = app.state.lessonbot
        media = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/SM1/Media/ME1"
        for form in (
            webhooks.message_form(ANN, "hello", sid="SM" + "0" * 32),
            webhooks.message_form(ANN, "", sid="SM" + "2" * 32, MessageType="location", Latitude="52.52",
                                  Longitude="13.405", Address="Alexanderplatz", Label="Classroom"),
            webhooks.message_form(ANN, "my homework", sid="SM" + "1" * 32, NumMedia="1", MessageType="image",
                                  MediaUrl0=media, MediaContentType0="image/jpeg"),
        ):
            assert (await webhooks.post(INBOUND, form)).status_code == 200
        await bot.settle()
        async with bot.db.sessions() as session:
            user_id = await session.scalar(select(ChannelIdentity.user_id).where(ChannelIdentity.external_id == ANN))
            document = await export_person(session, user_id, now=utcnow())
    sent = json.dumps(document["messages"], ensure_ascii=False)
    assert "Alexanderplatz" in sent and "52.52" in sent and media in sent, sent
