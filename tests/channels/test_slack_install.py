"""Installing the Slack app into many workspaces: Bolt's OAuth flow with the installation store in our database."""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from slack_sdk.oauth.installation_store import Installation
from sqlalchemy import func, select

from bot.app import build_channels
from bot.channel import Delivery, PermanentSendError
from bot.config import load_settings
from bot.messages import Text
from channels.slack.installations import SlackInstallations
from channels.slack.routes import SCOPES
from channels.slack.store import SlackInstallationStore
from standins.slack import (
    BOT_TOKEN,
    CLIENT_ID,
    CLIENT_SECRET,
    SIGNING_SECRET,
    SlackStandIn,
    Workspace,
    dm_event,
    signed,
)
from storage.db import Database
from storage.models import ChannelIdentity, InboundMessage, User
from storage.queries import get_or_create_identity
from storage.slack import SlackInstallation, SlackOAuthState
from tests.channels.test_slack_events import running

# slack_sdk sends oauth.v2.access's client credentials with aiohttp's BasicAuth, which aiohttp now warns about.
pytestmark = pytest.mark.filterwarnings("ignore:BasicAuth is deprecated:DeprecationWarning")

SECOND = Workspace("T222", "xoxb-222-second-workspace", "UBOT222", "B222", "Second Workspace")


@pytest.fixture
def distributed(settings, standin):
    """Installable into many workspaces: a client id and secret instead of one bot token (the stand-in knows T111's
    token only: T222 exists once it installs the app)."""
    return settings.model_copy(update={
        "slack_signing_secret": SIGNING_SECRET,
        "slack_client_id": CLIENT_ID,
        "slack_client_secret": CLIENT_SECRET,
        "slack_api_base_url": standin.base_url,
        "public_base_url": "https://bot.example.com",
        "web_chat_enabled": False,
    })


async def count(lessonbot, model, *where) -> int:
    async with lessonbot.db.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model).where(*where))


async def install(client: httpx.AsyncClient, standin: SlackStandIn, workspace: Workspace) -> httpx.Response:
    """What an admin's browser does: /slack/install → Slack's consent page → back to /slack/oauth_redirect."""
    start = await client.get("/slack/install")
    assert start.status_code == 302, start.text
    state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
    cookie = start.headers["set-cookie"].split(";")[0]
    code = f"code-{workspace.team_id}"
    standin.add_oauth_code(code, workspace)  # the code Slack hands the browser after consent
    return await client.get(f"/slack/oauth_redirect?code={code}&state={state}", headers={"cookie": cookie})


async def post_event(client, event: dict) -> httpx.Response:
    body = json.dumps(event).encode()
    return await client.post("/slack/events", content=body, headers=signed(body))


async def test_install_starts_at_slacks_consent_page_with_our_scopes(distributed, standin):
    async with running(distributed) as (client, lessonbot):
        response = await client.get("/slack/install")
        assert response.status_code == 302
        location = urlsplit(response.headers["location"])
        assert (location.scheme, location.netloc, location.path) == ("https", "slack.com", "/oauth/v2/authorize")
        query = parse_qs(location.query)
        assert query["client_id"] == [CLIENT_ID]
        assert sorted(query["scope"][0].split(",")) == sorted(SCOPES)
        assert query["redirect_uri"] == ["https://bot.example.com/slack/oauth_redirect"]
        assert response.headers["set-cookie"].startswith(f"slack-app-oauth-state={query['state'][0]};")
        assert await count(lessonbot, SlackOAuthState) == 1  # kept in the database: any worker can finish it


async def test_a_second_workspace_installs_and_its_people_become_learners(distributed, standin):
    async with running(distributed) as (client, lessonbot):
        finished = await install(client, standin, SECOND)
        assert finished.status_code == 200, finished.text
        assert "Thank you!" in finished.text
        async with lessonbot.db.sessions() as session:
            row = await session.scalar(select(SlackInstallation))
        assert (row.team_id, row.enterprise_id, row.bot_token, row.bot_user_id, row.bot_id, row.user_id) == (
            "T222", "", SECOND.bot_token, "UBOT222", "B222", "UINSTALLER",
        )
        assert await count(lessonbot, SlackOAuthState) == 0  # the state was used up
        assert [c.method for c in standin.calls] == ["oauth.v2.access", "auth.test"]

        # Someone in the new workspace writes to the bot; the reply goes out with that workspace's token.
        event = dm_event("hello", event_id="EvT222A", team="T222", user="U0NEW", channel="D222")
        assert (await post_event(client, event)).status_code == 200
        await standin.wait_for(lambda: standin.posted("D222"))
        [reply] = standin.posted("D222")
        assert reply.token == SECOND.bot_token
        assert reply.params["text"].startswith("Hi! I'm Lessonbot")
        # the welcome's commands as Slack lets them be typed (an unregistered /stop never reaches the bot)
        assert "/lessonbot stop" in reply.params["text"] and " /stop" not in reply.params["text"]
        async with lessonbot.db.sessions() as session:
            identity = await session.scalar(select(ChannelIdentity))
            assert (identity.channel, identity.external_id) == ("slack", "T222/U0NEW")
            assert await session.get(User, identity.user_id) is not None
            [message] = list(await session.scalars(select(InboundMessage)))
            assert message.conversation_id is not None


async def test_installations_are_kept_through_the_processs_own_database(distributed, standin):
    """No second engine in the serving process: on SQLite it would bypass the turnstile of the one connection."""
    async with running(distributed) as (client, lessonbot):
        assert lessonbot.channels["slack"].installations.db is lessonbot.db


async def test_a_state_works_once_and_only_with_its_browser_cookie(distributed, standin):
    async with running(distributed) as (client, lessonbot):
        start = await client.get("/slack/install")
        state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
        cookie = start.headers["set-cookie"].split(";")[0]
        standin.add_oauth_code("code-1", SECOND)
        no_cookie = await client.get(f"/slack/oauth_redirect?code=code-1&state={state}")
        assert no_cookie.status_code == 400  # invalid_browser: another browser cannot finish this install
        forged = await client.get("/slack/oauth_redirect?code=code-1&state=forged", headers={"cookie": cookie})
        assert forged.status_code == 400
        ok = await client.get(f"/slack/oauth_redirect?code=code-1&state={state}", headers={"cookie": cookie})
        assert ok.status_code == 200
        standin.add_oauth_code("code-2", SECOND)
        again = await client.get(f"/slack/oauth_redirect?code=code-2&state={state}", headers={"cookie": cookie})
        assert again.status_code == 401  # invalid_state: used already
        assert await count(lessonbot, SlackInstallation) == 1


async def test_a_refused_code_installs_nothing(distributed, standin):
    async with running(distributed) as (client, lessonbot):
        start = await client.get("/slack/install")
        state = parse_qs(urlsplit(start.headers["location"]).query)["state"][0]
        cookie = start.headers["set-cookie"].split(";")[0]
        response = await client.get(f"/slack/oauth_redirect?code=unknown&state={state}", headers={"cookie": cookie})
        assert response.status_code == 401
        assert await count(lessonbot, SlackInstallation) == 0


async def test_a_workspace_that_never_installed_is_not_recorded(distributed, standin, caplog):
    async with running(distributed) as (client, lessonbot):
        response = await post_event(client, dm_event("hello", event_id="EvNOPE", team="T999", channel="D999"))
        assert response.status_code == 200  # acknowledged, so Slack does not retry it
        assert await count(lessonbot, InboundMessage) == 0
    assert standin.calls == []


async def told_not_installed(settings, standin: SlackStandIn, team: str) -> dict[str, str]:
    """Two people type /lesson in a channel of `team`, one the bot knows as a Spanish speaker (a learner of its past,
    say), one it does not: each acknowledged with nothing, none recorded; what each was then shown privately."""
    fields = {"token": "x", "team_id": team, "team_domain": "gone", "channel_id": "C999", "channel_name": "general",
              "user_name": "ana", "command": "/lesson", "text": "", "api_app_id": "A111"}
    async with running(settings) as (client, lessonbot):
        async with lessonbot.db.transaction() as session:
            identity = await get_or_create_identity(session, "slack", f"{team}/U999")
            (await session.get(User, identity.user_id)).locale = "es"
        for person, trigger in (("U999", "999.1.es"), ("U998", "999.2.en")):
            body = urlencode({**fields, "user_id": person, "trigger_id": trigger,
                              "response_url": standin.response_url("C999", person)}).encode()
            response = await client.post("/slack/events", content=body, headers=signed(
                body, content_type="application/x-www-form-urlencoded"))
            assert response.status_code == 200 and response.text == ""
        await standin.wait_for(lambda: len(standin.ephemerals("C999")) == 2)
        assert await count(lessonbot, InboundMessage) == 0
    return {call.params["user"]: call.params["text"] for call in standin.ephemerals("C999")}


NOT_INSTALLED_TOLD = {
    "U999": "Lessonbot no está instalado en este espacio de trabajo (o ya no). Pide a un administrador que lo instale "
            "de nuevo.",
    "U998": "Lessonbot is not installed in this workspace (any more). Ask an admin to install it again.",
}


async def test_a_command_from_a_workspace_without_the_app_is_told_so_in_the_members_language(distributed, standin):
    """A slash command from a workspace whose installation is gone (or never stored) is answered, privately through
    its response_url after the acknowledgement, that the app is not installed there: in the member's language
    where the bot knows them, in English for someone it does not."""
    assert await told_not_installed(distributed, standin, "T999") == NOT_INSTALLED_TOLD


async def test_a_command_to_a_workspaces_own_app_whose_token_slack_refuses_is_told_so_in_the_members_language(
        slack_settings, standin):
    """One workspace's app (SLACK_BOT_TOKEN) whose token Slack refuses (revoked, the app removed): a slash command
    there is told the same, in the same way, as for an app installed into many workspaces."""
    revoked = slack_settings.model_copy(update={"slack_bot_token": "xoxb-111-revoked"})
    assert await told_not_installed(revoked, standin, "T111") == NOT_INSTALLED_TOLD


async def test_a_command_after_a_workspaces_own_app_was_uninstalled_is_told_so_not_recorded(slack_settings, standin):
    """One workspace's app (SLACK_BOT_TOKEN): after Slack says it was uninstalled, its token no longer works; a slash
    command typed then is not recorded to be answered with a token Slack refuses, but told privately that the app is
    not installed."""
    fields = {"token": "x", "team_id": "T111", "team_domain": "test", "channel_id": "C111", "channel_name": "general",
              "user_name": "ana", "command": "/lesson", "text": "", "api_app_id": "A111", "user_id": "U111"}
    async with running(slack_settings) as (client, lessonbot):
        for trigger in ("111.1.before", "111.2.after"):
            body = urlencode({**fields, "trigger_id": trigger,
                              "response_url": standin.response_url("C111", "U111")}).encode()
            response = await client.post("/slack/events", content=body, headers=signed(
                body, content_type="application/x-www-form-urlencoded"))
            assert response.status_code == 200 and response.text == ""
            if trigger.endswith("before"):
                assert await count(lessonbot, InboundMessage) == 1
                uninstalled = {"token": "x", "team_id": "T111", "api_app_id": "A111", "type": "event_callback",
                               "event_id": "EvUNINSTALL1", "event_time": int(time.time()),
                               "event": {"type": "app_uninstalled", "event_ts": f"{time.time():.6f}"}}
                assert (await post_event(client, uninstalled)).status_code == 200
                standin.workspaces.pop(BOT_TOKEN)  # Slack takes the token back with the app
        await standin.wait_for(lambda: standin.ephemerals("C111", "U111"))
        assert await count(lessonbot, InboundMessage) == 1
    assert [call.params["text"] for call in standin.ephemerals("C111", "U111")] == [
        "Lessonbot is not installed in this workspace (any more). Ask an admin to install it again."]


async def test_uninstalling_forgets_the_workspace_and_its_replies_stop(distributed, standin):
    async with running(distributed) as (client, lessonbot):
        assert (await install(client, standin, SECOND)).status_code == 200
        uninstalled = {
            "token": "x", "team_id": "T222", "api_app_id": "A111", "type": "event_callback",
            "event_id": "EvUNINSTALL", "event_time": int(time.time()),
            "event": {"type": "app_uninstalled", "event_ts": f"{time.time():.6f}"},
        }
        assert (await post_event(client, uninstalled)).status_code == 200
        assert await count(lessonbot, SlackInstallation) == 0
        slack = lessonbot.channels["slack"]
        with pytest.raises(PermanentSendError, match="not installed in T222"):
            await slack.send(Delivery(outbox_id=1, chat_id="T222:D222", reply=Text("still there?")))


@pytest.mark.parametrize("removal", [
    {"type": "app_uninstalled"},
    {"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["UBOT222"]}},
])
async def test_a_removal_delivered_again_after_the_workspace_installed_anew_leaves_the_new_installation(
        removal, distributed, standin):
    """An admin removes the app (our answer to app_uninstalled failed: the database was away a moment) and installs
    it again a minute later; Slack then delivers the old removal again, its event_time from before the new
    installation: it is acknowledged and the new installation, its token and its replies are left alone."""
    async with running(distributed) as (client, lessonbot):
        removed_at = int(time.time()) - 120
        assert (await install(client, standin, SECOND)).status_code == 200  # installed again, after the removal
        event = {"token": "x", "team_id": "T222", "api_app_id": "A111", "type": "event_callback",
                 "event_id": "EvREMOVED", "event_time": removed_at,
                 "event": {**removal, "event_ts": f"{removed_at}.000100"}}
        body = json.dumps(event).encode()
        response = await client.post("/slack/events", content=body, headers=signed(body, retry=1))
        assert response.status_code == 200
        assert await count(lessonbot, SlackInstallation, SlackInstallation.bot_token == SECOND.bot_token) == 1
        reply = await lessonbot.channels["slack"].send(Delivery(outbox_id=1, chat_id="T222:D222", reply=Text("hi")))
        assert reply and standin.posted("D222")[0].token == SECOND.bot_token


async def test_one_workspace_mode_explains_that_install_needs_a_client_id(settings, standin):
    single = settings.model_copy(update={
        "slack_signing_secret": SIGNING_SECRET, "slack_bot_token": BOT_TOKEN, "slack_api_base_url": standin.base_url,
    })
    async with running(single) as (client, lessonbot):
        response = await client.get("/slack/install")
        assert response.status_code == 404
        assert "SLACK_CLIENT_ID and SLACK_CLIENT_SECRET" in response.text
        assert await count(lessonbot, SlackInstallation) == 0


# the store itself -----------------------------------------------------------------------------------------------------


async def test_the_store_keeps_one_row_per_workspace_and_finds_org_wide_installs(database_url):
    db = Database(database_url)
    records = SlackInstallations(db)
    store = SlackInstallationStore(records)
    try:
        first = Installation(app_id="A1", enterprise_id="E1", team_id="T1", bot_token="xoxb-old", bot_id="B1",
                             bot_user_id="UB1", user_id="U1", bot_scopes=["chat:write"])
        await store.async_save(first)
        await store.async_save(Installation(app_id="A1", enterprise_id="E1", team_id="T1", bot_token="xoxb-new",
                                            bot_id="B1", bot_user_id="UB1", user_id="U2",
                                            bot_scopes="chat:write,commands"))
        org = Installation(app_id="A1", enterprise_id="E9", team_id=None, bot_token="xoxb-org", bot_id="B9",
                           bot_user_id="UB9", user_id="U9", is_enterprise_install=True)
        await store.async_save(org)

        bot = await store.async_find_bot(enterprise_id="E1", team_id="T1")
        assert (bot.bot_token, bot.bot_user_id) == ("xoxb-new", "UB1")
        assert (await store.async_find_bot(enterprise_id=None, team_id="T1")).bot_token == "xoxb-new"  # as send asks
        org_bot = await store.async_find_bot(enterprise_id="E9", team_id="T5", is_enterprise_install=True)
        assert org_bot.bot_token == "xoxb-org" and org_bot.is_enterprise_install
        assert await store.async_find_bot(enterprise_id=None, team_id="T404") is None

        installation = await store.async_find_installation(enterprise_id="E1", team_id="T1")
        assert (installation.user_id, installation.enterprise_id) == ("U2", "E1")
        assert installation.bot_scopes == ["chat:write", "commands"]
        assert await store.async_find_installation(enterprise_id="E1", team_id="T1", user_id="U1") is None

        await store.async_delete_bot(enterprise_id="E1", team_id="T1")
        assert await store.async_find_bot(enterprise_id="E1", team_id="T1") is None
        await store.async_delete_all(enterprise_id="E9", team_id=None)
        assert await store.async_find_bot(enterprise_id="E9", team_id=None, is_enterprise_install=True) is None
        async with records.db.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(SlackInstallation)) == 1
    finally:
        await db.dispose()


async def test_states_expire_and_are_accepted_once(database_url):
    db = Database(database_url)
    records = SlackInstallations(db)
    try:
        fresh = await records.issue_state(expires_in=600)
        stale = await records.issue_state(expires_in=-1)
        assert await records.consume_state(fresh) is True
        assert await records.consume_state(fresh) is False
        assert await records.consume_state(stale) is False
        assert await records.consume_state("") is False
        assert await records.consume_state("x" * 500) is False
    finally:
        await db.dispose()


# which mode the settings choose ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "on", "logged"),
    [
        ({}, False, "slack is off: set SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN"),
        ({"slack_bot_token": BOT_TOKEN}, False, "SLACK_SIGNING_SECRET is empty"),
        ({"slack_signing_secret": SIGNING_SECRET, "slack_client_id": CLIENT_ID}, False, "set both SLACK_CLIENT_ID"),
        ({"slack_signing_secret": SIGNING_SECRET, "slack_bot_token": BOT_TOKEN}, True, None),
    ],
)
async def test_slack_is_on_only_with_a_signing_secret_and_a_token_or_client(values, on, logged, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="bot.app")
    settings = load_settings(_env_file=None, data_dir=tmp_path, web_chat_enabled=False, **values)
    db = Database(settings.resolved_database_url)
    try:
        channels = build_channels(settings, db)
    finally:
        await db.dispose()
    assert ("slack" in [c.name for c in channels]) is on
    if logged:
        assert any(logged in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
