"""Configuration: read once, from the environment and `.env`, into one typed object.

Every variable is documented in `.env.example`. A bad value stops start-up with a message that names the
variable and says what it expects (`ConfigError`), never a traceback.
"""

from __future__ import annotations

import difflib
import os
import re
import secrets
import sys
import time
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.messages import KNOWN_CHANNELS, address_as_named
from knowledge.settings import KnowledgeSettings
from storage.retention import FEWEST_MESSAGE_DAYS, MESSAGE_DAYS

# Examples of the web addresses whose default is empty (the feature is off), for the message refusing a value; the
# others' example is their default (`Settings._check_url`).
ADDRESS_EXAMPLES = {
    "public_base_url": "https://bot.example.com",
    "openai_base_url": "http://127.0.0.1:11434/v1",
    "rasa_url": "http://rasa:5005",
    "rasa_nlu_url": "http://rasa:5005",
    "rasa_actions_public_url": "http://127.0.0.1:5055",
}


def is_http_address(value: str) -> bool:
    """An http:// or https:// address with a host (and a port, if any, a number), without spaces."""
    try:
        parts = urlsplit(value)
        port = parts.port  # (a port that is no number raises ValueError, as does a broken [IPv6] host)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname) and port != 0 and not re.search(r"\s", value)


# A Telegram bot token: the bot's number, a colon, then letters, digits, _ and - (every Bot API address carries it)
TELEGRAM_TOKEN = r"[0-9]+:[A-Za-z0-9_-]+"


def of_shape(value: str, shape: str, expected: str, hints: dict[str, str] | None = None, *,
             required: bool = False) -> str:
    """`value` without the blanks around it (a secret file's line break, a copy's space), when it is of `shape` (a
    pattern it must match whole) or empty and not `required`; else a ValueError saying what was `expected`, followed
    by the hint of each pattern in `hints` the value starts with (a known wrong value, said as such)."""
    value = value.strip()
    if (value or required) and not re.fullmatch(shape, value, re.DOTALL):
        raise ValueError(expected + "".join(hint for start, hint in (hints or {}).items() if re.match(start, value)))
    return value


def listed(value: object) -> list[str]:
    """The items of a comma-separated setting (ADMINS=telegram:1, slack:T1/U2), without the blanks around them and
    without empty ones."""
    return [item.strip() for item in str(value or "").split(",") if item.strip()]


# A Twilio content template's SID (a WhatsApp template approved in the Console)
CONTENT_SID = r"HX[0-9a-fA-F]{32}"

HOUR = 3600  # seconds: the bounds of the durations below, which become timedeltas and timeouts
DAY = 24 * HOUR


class ConfigError(Exception):
    """A setting has a value Lessonbot cannot use; the message names it and what it expects."""


class Settings(BaseSettings):
    # No inf or nan: a duration of inf seconds is no timedelta, and nan passes every bound.
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore", allow_inf_nan=False)

    # where things live
    data_dir: Path = Field(Path("var"), description="Folder for the SQLite file, Chroma and the generated secret key.")
    database_url: str = Field("", description="SQLAlchemy URL; empty means a SQLite file in DATA_DIR.")

    # the web server
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    public_base_url: str = Field("", description="The address platforms call, e.g. https://bot.example.com")
    secret_key: str = Field("", description="Signs web chat sessions; generated into DATA_DIR when empty.")
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    web_chat_enabled: bool = True
    web_chat_session_idle_days: float = Field(
        30.0, gt=0, le=3650,
        description="A web chat session ends after this many days without use; the page starts anew.",
    )
    web_chat_streams_per_address: int = Field(
        20, ge=1, description="Web chat pages (event streams) one client address may hold open in one process."
    )
    web_chat_streams_total: int = Field(1000, ge=1, description="Web chat event streams one process holds open.")
    web_chat_poll_seconds: float = Field(
        1.0, gt=0, le=HOUR, description="How often a process looks, with one query for all its open web chat pages, "
        "for replies another process (a separate dispatcher) sent."
    )

    # who may run /admin commands: channel:id, comma separated
    admins: Annotated[tuple[str, ...], NoDecode] = ()

    # logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "text"] = Field(
        "auto", description="auto: readable lines on a terminal, JSON lines otherwise (a file, a log collector)."
    )

    # the pipeline
    worker_lease_seconds: float = Field(30.0, gt=0, le=HOUR, description="How long a process may hold a conversation.")
    worker_poll_seconds: float = Field(
        1.0, gt=0, le=HOUR, description="How often to look for work other processes left."
    )
    worker_concurrency: int = Field(32, ge=1, description="Conversations one process works on at once.")
    outbox_max_attempts: int = Field(8, ge=1, le=100, description="Sends tried before a reply is dead-lettered.")
    outbox_backoff_seconds: float = Field(2.0, gt=0, le=DAY, description="First retry delay; it doubles each attempt.")
    outbox_backoff_max_seconds: float = Field(600.0, gt=0, le=DAY)
    outbox_concurrency: int = Field(
        32, ge=1, description="Sends in flight at once from one dispatcher; a quarter kept for replies to people."
    )
    outbox_paced: bool = Field(
        True, description="Hold sends to each platform's published limits; off only to measure the bot against "
                          "platform stand-ins, which have none (lessonbot bench telegram).",
    )
    leader_check_seconds: float = Field(
        5.0, gt=0, le=HOUR, description="How often the leader confirms its hold, and standbys try."
    )
    leader_lease_seconds: float = Field(
        15.0, gt=0, le=HOUR, description="SQLite: how long a silent leader's hold lasts."
    )
    nudge_holdout: float = Field(
        0.05, ge=0, le=0.5,
        description="The share of reminders decided but not sent, so /admin nudges can show how many learners come "
                    "back without one beside how many come back after one (0: send them all).",
    )
    message_retention_days: int = Field(
        MESSAGE_DAYS, le=3650,
        description="How long the messages people sent and the replies to them are kept once finished (processed; "
                    "sent, cancelled or dead): the nightly prune deletes them after (at least 60).",
    )

    # courses
    sample_course_dir: Path = Field(
        Path("courses/sample"), description="What `lessonbot course import` takes by default."
    )

    # Telegram (off unless TELEGRAM_BOT_TOKEN is set)
    telegram_bot_token: str = ""
    telegram_webhook_secret: str = Field("", description="Checked against X-Telegram-Bot-Api-Secret-Token.")
    telegram_api_base_url: str = "https://api.telegram.org/bot"

    # WhatsApp through Twilio (off unless TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_WHATSAPP_FROM and
    # PUBLIC_BASE_URL are set)
    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    twilio_whatsapp_from: str = Field("", description="The sender, e.g. whatsapp:+14155238886")
    twilio_api_base_url: str = "https://api.twilio.com"
    twilio_template_content_sid: str = Field(
        "", description="An approved WhatsApp template (HX…) sent outside the 24-hour window, the reply in {{1}}."
    )
    twilio_quick_reply_content_sids: Annotated[dict[int, str], NoDecode] = Field(
        default_factory=dict,
        description="Quick-reply content templates per button count, e.g. 2:HX…,3:HX… (body {{1}}, buttons {{2}}…).",
    )

    # Slack (off unless SLACK_SIGNING_SECRET and a token or OAuth client are set)
    slack_signing_secret: str = ""
    slack_bot_token: str = ""
    slack_client_id: str = ""
    slack_client_secret: str = ""
    slack_api_base_url: str = "https://slack.com/api/"

    # payments: Stripe Checkout on every channel (off unless STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET are set),
    # Telegram Stars on Telegram
    stripe_secret_key: str = Field("", description="sk_test_… or sk_live_… (Dashboard → Developers → API keys).")
    stripe_webhook_secret: str = Field("", description="whsec_… of the endpoint POST /webhooks/stripe.")
    stripe_api_base_url: str = Field("https://api.stripe.com", description="Stripe's API (a stand-in in tests).")
    stripe_promotion_codes: bool = Field(
        False, description="Let buyers type a promotion code (made in the Stripe Dashboard) on the Checkout page.")
    subscription_grace_hours: int = Field(
        48, ge=0, le=24 * 30,
        description="A subscription's access lasts this long past the end of the period paid for, while Stripe "
                    "retries a renewal that failed.")
    stars_per_unit: Annotated[dict[str, Decimal], NoDecode] = Field(
        default_factory=dict,
        description="Telegram Stars for one unit of a course's currency, e.g. EUR=55,GBP=65 (XTR-priced courses "
                    "need none); a course without a rate is sold on Telegram through Stripe.",
    )
    payment_support: str = Field("", description="Where /paysupport sends learners too (an e-mail address, a URL).")

    # Rasa (docs/rasa.md): the action server a Rasa assistant calls (`lessonbot rasa-actions`), sends to its users
    # through the Rasa server (off unless RASA_URL is set), and its model for plain words (off unless RASA_NLU_URL)
    rasa_url: str = Field("", description="A Rasa server run with --enable-api: lessons and nudges for rasa: "
                          "learners go out through its trigger_intent.")
    rasa_token: str = Field("", description="The Rasa server's --auth-token, for trigger_intent and /model/parse.")
    rasa_trigger_intent: str = Field(
        "EXTERNAL_lessonbot_message", pattern=r"^[A-Za-z0-9_.-]{1,100}$",
        description="The intent a reply goes out as (the domain answers it with action_lessonbot_deliver).",
    )
    rasa_output_channel: str = Field(
        "latest", pattern=r"^[A-Za-z0-9_.-]{1,100}$",
        description="Where Rasa sends what the triggered action says: latest (where the person last wrote) or a "
                    "channel's name.",
    )
    rasa_sends_per_second: float = Field(20.0, gt=0, le=1000, description="trigger_intent calls a second at most.")
    rasa_actions_token: str = Field(
        "", description="Asked of every action call (?token=, as endpoints.yml's action_endpoint sends it)."
    )
    rasa_nlu_url: str = Field("", description="A Rasa server whose model reads plain words no dialog expects.")
    rasa_nlu_threshold: float = Field(0.7, ge=0, le=1, description="The least confidence an intent needs.")
    rasa_nlu_intents: Path | None = Field(
        None, description="A YAML file of intent: command (ask_next: /next); empty: the built-in mapping."
    )
    rasa_nlu_timeout_seconds: float = Field(3.0, gt=0, le=60, description="How long to wait for /model/parse.")
    rasa_actions_public_url: str = Field(
        "", description="Where people's browsers reach `lessonbot rasa-actions`: documents go to Rasa users as links "
                        "there; empty: as their caption."
    )
    rasa_action_timeout_seconds: float = Field(
        20.0, gt=0, le=280, description="How long an action waits for its answer (below Rasa's 300 s); what comes "
                                        "later goes out through trigger_intent."
    )

    # knowledge: answers from the course material (Chroma, embeddings, an optional OpenAI-compatible model)
    chroma_path: Path | None = Field(None, description="Chroma's folder on disk; empty means DATA_DIR/chroma.")
    chroma_host: str = Field("", description="A Chroma server's host; when set, it is used instead of the disk.")
    chroma_port: int = Field(8000, ge=1, le=65535)
    chroma_collection: str = Field("lessonbot_knowledge", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,50}[A-Za-z0-9]$")
    embeddings: Literal["offline", "openai"] = Field("offline", description="offline MiniLM, or OPENAI_* embeddings.")
    openai_api_key: str = ""
    openai_base_url: str = Field("", description="An OpenAI-compatible server, e.g. http://127.0.0.1:11434/v1")
    openai_model: str = Field("", description="The chat model that writes answers; empty means extractive answers.")
    openai_embedding_model: str = "text-embedding-3-small"
    knowledge_tokenizer_dir: Path | None = Field(None, description="all-MiniLM-L6-v2 tokenizer files (default: venv).")
    knowledge_embedding_threads: int = Field(2, ge=1, le=64, description="onnxruntime threads for the offline model.")
    knowledge_rate_limit_per_minute: int = Field(6, ge=1, description="Questions one learner may ask a minute.")
    knowledge_daily_token_budget: int = Field(20_000, ge=0, description="Model tokens per learner per UTC day.")
    model_calls_per_day: int = Field(2000, ge=0, description="Model calls of all learners together per UTC day.")
    knowledge_cache_seconds: int = Field(
        7 * DAY, ge=0, le=365 * DAY, description="How long an answer is reused; 0: never."
    )
    knowledge_max_answer_tokens: int = Field(350, ge=16, le=4096)
    knowledge_model_timeout_seconds: float = Field(30.0, gt=0, le=600)

    @field_validator("message_retention_days")
    @classmethod
    def _check_message_retention(cls, value: int) -> int:
        if value < FEWEST_MESSAGE_DAYS:
            raise ValueError(
                f"expected {FEWEST_MESSAGE_DAYS} days or more: an announcement's progress, the dashboard's daily "
                "figures and the recognition of a platform's redelivery read the messages and replies that long"
            )
        return value

    @field_validator("rasa_nlu_intents", "chroma_path", "knowledge_tokenizer_dir", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """An optional file or folder left empty (`CHROMA_PATH=`, as .env.example shows it) is unset: its default,
        not the current folder (an empty path is read as ".")."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("data_dir", "sample_course_dir", mode="before")
    @classmethod
    def _not_empty(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            raise ValueError("empty: give a folder, or unset it for its default")
        return value

    @field_validator("host")
    @classmethod
    def _host_not_empty(cls, value: str) -> str:
        """`HOST=` left empty would listen on every interface (an empty address is the wildcard), not on its default
        127.0.0.1: the web chat and the dashboard open to the network without anyone having asked for it."""
        return of_shape(value, ".+", "empty: give an address, 127.0.0.1 for this machine alone or 0.0.0.0 for every "
                        "interface, or unset it for its default (127.0.0.1)", required=True)

    @field_validator("admins", mode="before")
    @classmethod
    def _parse_admins(cls, value: object) -> tuple[str, ...]:
        if value is None or value == "":
            return ()
        # a comma-separated string from the environment, or any iterable given in code (a TypeError otherwise)
        items = listed(value) if isinstance(value, str) else [str(raw).strip() for raw in value]  # type: ignore[attr-defined]
        identities = []
        for item in filter(None, items):
            channel, sep, ident = item.partition(":")
            if not sep or not ident or channel not in KNOWN_CHANNELS:
                raise ValueError(
                    f"{item!r} is not channel:id; expected e.g. telegram:12345,slack:T01/U02,whatsapp:+15551234567 "
                    f"(channels: {', '.join(KNOWN_CHANNELS)})"
                )
            named = address_as_named(f"{channel}:{ident}")
            if named is None:
                raise ValueError(f"{item!r} is no WhatsApp number: write it with its country code, e.g. "
                                 "whatsapp:+15551234567")
            identities.append(named)
        return tuple(identities)

    @field_validator("telegram_bot_token")
    @classmethod
    def _check_telegram_token(cls, value: str) -> str:
        """The token @BotFather gives, digits:letters; without the surrounding blanks a secret file or a copy leaves
        (the token goes into every Bot API URL, where a blank or a "bot" prefix makes each send fail)."""
        return of_shape(value, TELEGRAM_TOKEN, "expected the token @BotFather gave (/mybots → the bot → API Token), "
                        "the bot's number, a colon and letters, e.g. 123456789:ABC-DEF1234ghIkl-zyx57W2v1u123ew11",
                        # copied from an address of the Bot API, .../bot123:ABC/sendMessage
                        {"(?i)bot": " (give it without the \"bot\" the API's addresses put before it)"})

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _check_telegram_secret(cls, value: str) -> str:
        # setWebhook's secret_token: 1-256 characters, only A-Z, a-z, 0-9, _ and -
        if value and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", value):
            raise ValueError("expected 1-256 letters, digits, _ or - (e.g. the output of `openssl rand -hex 32`)")
        return value

    @field_validator("twilio_account_sid")
    @classmethod
    def _check_twilio_account_sid(cls, value: str) -> str:
        """The account's SID, which every send's address and Basic auth carry (a blank there fails each send)."""
        return of_shape(value, r"AC[0-9a-fA-F]{32}", "expected the Account SID of the Twilio Console (Account Info): "
                        "AC followed by 32 hex digits", {"SK": " (an API key's SID, SK…, is no account's)"})

    @field_validator("twilio_auth_token")
    @classmethod
    def _check_twilio_auth_token(cls, value: str) -> str:
        """The account's Auth Token: it signs the sends and checks every webhook's signature."""
        return of_shape(value, r"[0-9a-fA-F]{32}", "expected the Auth Token of the Twilio Console (Account Info): 32 "
                        "hex digits (not an API key's secret: Twilio signs its webhooks with the Auth Token)")

    @field_validator("twilio_whatsapp_from")
    @classmethod
    def _check_whatsapp_from(cls, value: str) -> str:
        if not value:
            return value
        number = value.strip().removeprefix("whatsapp:")
        if not re.fullmatch(r"\+[1-9][0-9]{6,14}", number):
            raise ValueError("expected the WhatsApp sender as whatsapp:+14155238886 (E.164 after the prefix)")
        return f"whatsapp:{number}"

    @field_validator("twilio_template_content_sid")
    @classmethod
    def _check_template_sid(cls, value: str) -> str:
        return of_shape(value, CONTENT_SID, "expected a content template SID: HX followed by 32 hex digits")

    @field_validator("twilio_quick_reply_content_sids", mode="before")
    @classmethod
    def _parse_quick_reply_sids(cls, value: object) -> dict[int, str]:
        if isinstance(value, dict):
            return value
        templates: dict[int, str] = {}
        for item in listed(value):
            count, _, sid = item.partition(":")
            if not count.strip().isdigit() or not 1 <= int(count) <= 3 or not re.fullmatch(CONTENT_SID, sid):
                raise ValueError(
                    f"{item!r} is not buttons:SID; expected e.g. 2:HX…,3:HX… (1 to 3 buttons, the most "
                    "WhatsApp shows in a session message)"
                )
            templates[int(count)] = sid
        return templates

    @field_validator("stars_per_unit", mode="before")
    @classmethod
    def _parse_stars_per_unit(cls, value: object) -> dict[str, Decimal]:
        if isinstance(value, dict):
            return value
        rates: dict[str, Decimal] = {}
        for item in listed(value):
            currency, _, rate = item.partition("=")
            try:
                number = Decimal(rate.strip())
            except ArithmeticError:
                number = Decimal(0)
            if not re.fullmatch(r"[A-Z]{3}", currency.strip()) or not number.is_finite() or not number > 0:
                raise ValueError(
                    f"{item!r} is not CURRENCY=STARS; expected e.g. EUR=55,GBP=65 (Stars for one euro, one "
                    "pound: a positive number)"
                )
            rates[currency.strip()] = number
        return rates

    @field_validator("slack_bot_token")
    @classmethod
    def _check_slack_bot_token(cls, value: str) -> str:
        """The app's Bot User OAuth Token (xoxb-): a user's token (xoxp-) would post as that person, an app-level
        token (xapp-) may call no method the bot sends with."""
        return of_shape(value, "xoxb-.*", "expected the Bot User OAuth Token, xoxb-… (OAuth & Permissions → OAuth "
                        "Tokens), not a user token (xoxp-, which posts as that person) or an app-level token (xapp-)")

    @field_validator("slack_signing_secret", "slack_client_secret", "openai_api_key", "rasa_token",
                     "rasa_actions_token")
    @classmethod
    def _without_blanks(cls, value: str) -> str:
        """A secret without the line break a secret file leaves: kept with it, it fails every call that carries it (a
        header, a token in the query) or refuses every request it checks (Slack's signatures)."""
        return value.strip()

    @field_validator("stripe_secret_key")
    @classmethod
    def _check_stripe_key(cls, value: str) -> str:
        """A secret key, without the line break a secret file leaves (in each call's Authorization header it fails
        every call to Stripe: no checkout page opens)."""
        return of_shape(value, "[sr]k_.*", "expected a secret key starting sk_test_ or sk_live_ (or a restricted rk_ "
                        "key), from Dashboard → Developers → API keys; never the publishable pk_ key")

    @field_validator("stripe_webhook_secret")
    @classmethod
    def _check_stripe_webhook_secret(cls, value: str) -> str:
        """The endpoint's signing secret: every event's signature is checked with it, so a wrong one refuses every
        payment's report (the buyer pays and nothing opens)."""
        return of_shape(value, "whsec_.*", "expected the signing secret of the endpoint PUBLIC_BASE_URL/webhooks/"
                        "stripe, whsec_… (Dashboard → Developers → Webhooks → the endpoint → Signing secret), not an "
                        "API key")

    @field_validator("public_base_url", "telegram_api_base_url", "twilio_api_base_url", "slack_api_base_url",
                     "stripe_api_base_url", "openai_base_url", "rasa_url", "rasa_nlu_url", "rasa_actions_public_url")
    @classmethod
    def _check_url(cls, value: str, info: ValidationInfo) -> str:
        """A web address: http(s) with a host, or empty where the default is (the feature off). The Rasa ones lose a
        trailing / (paths are added to them)."""
        name = str(info.field_name)
        default = cls.model_fields[name].default
        value = value.strip()
        if not value and not default:
            return value
        if not is_http_address(value):
            raise ValueError(f"expected an http(s) address with a host, e.g. {default or ADDRESS_EXAMPLES[name]}")
        return value.rstrip("/") if name.startswith("rasa_") else value

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str) -> str:
        if not value:
            return value
        from sqlalchemy.engine import make_url  # (here, not at the top: `lessonbot --help` imports no SQLAlchemy)
        from sqlalchemy.exc import ArgumentError

        try:  # what the database is later opened with: a URL it cannot read ("sqlite", a port "abc") stops here
            url = make_url(value)
            backend = url.get_backend_name()
        except (ArgumentError, ValueError):
            backend = ""
        if backend not in ("sqlite", "postgresql", "postgres"):
            raise ValueError("expected a sqlite:/// or postgresql:// URL, e.g. sqlite:///var/lessonbot.db or "
                             "postgresql://user:password@host:5432/name")
        if backend == "sqlite" and (url.database in (None, "", ":memory:") or url.query.get("mode") == "memory"):
            # each process (and each command) would get a database of its own, empty, gone when it ends
            raise ValueError("a SQLite database in memory lasts as long as one process: name a file, e.g. "
                             "sqlite:///var/lessonbot.db, or leave DATABASE_URL empty for DATA_DIR/lessonbot.db")
        if backend != "sqlite":
            _check_answer_bound(url.query)
        return value

    @field_validator("secret_key")
    @classmethod
    def _check_secret_key(cls, value: str) -> str:
        if value and len(value) < 16:
            raise ValueError("expected at least 16 characters (e.g. the output of `openssl rand -hex 32`)")
        return value

    @model_validator(mode="after")
    def _check_knowledge(self) -> Self:
        """What the knowledge settings need of each other, known without the network: refused at start-up, not met
        by every question later as "Sorry, something went wrong" (knowledge/embeddings.py, knowledge/generation.py)."""
        endpoint = bool(self.openai_api_key or self.openai_base_url)
        if self.embeddings == "openai" and not endpoint:
            raise ValueError(
                "EMBEDDINGS=openai needs OPENAI_API_KEY (for OpenAI) or OPENAI_BASE_URL (a compatible server, e.g. "
                "http://127.0.0.1:11434/v1): set one, or EMBEDDINGS=offline for the model on this machine"
            )
        if self.openai_model and not endpoint:
            raise ValueError(
                f"OPENAI_MODEL={self.openai_model} needs OPENAI_API_KEY (for OpenAI) or OPENAI_BASE_URL (a compatible "
                "server): set one, or unset OPENAI_MODEL for answers quoted from the course"
            )
        tokenizer_dir = self.knowledge_tokenizer_dir
        if self.embeddings == "offline" and tokenizer_dir and not (tokenizer_dir / "tokenizer.json").is_file():
            raise ValueError(
                f"KNOWLEDGE_TOKENIZER_DIR={tokenizer_dir} holds no tokenizer.json: point it at a folder holding "
                "all-MiniLM-L6-v2's tokenizer files, or unset it for those `make install` puts in the virtualenv"
            )
        return self

    @cached_property
    def resolved_database_url(self) -> str:
        """The URL as given, or the default SQLite file inside DATA_DIR."""
        return self.database_url or f"sqlite:///{self.data_dir / 'lessonbot.db'}"

    @property
    def site_url(self) -> str:
        """Where people reach this bot's own pages (a certificate's verification page): PUBLIC_BASE_URL, else the
        address it serves on (which only this machine may reach: set PUBLIC_BASE_URL for certificates others check)."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        host = "localhost" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @cached_property
    def resolved_secret_key(self) -> str:
        """SECRET_KEY, or one generated once and kept in DATA_DIR so sessions survive restarts."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32)
        try:  # O_EXCL: of several workers starting at once on a shared folder, exactly one writes the key
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            for _ in range(50):
                if existing := path.read_text().strip():
                    return existing
                time.sleep(0.05)  # the winner is still writing it
            raise ConfigError(f"{path} is empty: delete it, or set SECRET_KEY") from None
        with os.fdopen(fd, "w") as file:
            file.write(key)
        return key

    def is_admin(self, channel: str, external_id: str) -> bool:
        return f"{channel}:{external_id}" in self.admins


def _check_answer_bound(query: Any) -> None:
    """A PostgreSQL URL's `answer_timeout` (storage.postgres_statements), refused at start-up rather than by the first
    connection."""
    from storage import postgres_statements  # (here: only a PostgreSQL URL needs psycopg)

    try:
        postgres_statements.answer_bound(query.get(postgres_statements.ANSWER_TIMEOUT))
    except (TypeError, ValueError):  # (TypeError: the parameter given twice)
        raise ValueError(
            "expected ?answer_timeout=N once, N the seconds a round trip waits for PostgreSQL's answer at most (a "
            "number, 0 for no bound), e.g. postgresql://user:password@host:5432/name?answer_timeout=30"
        ) from None


# The settings whose value is a secret, by the last word of their name (SECRET_KEY, TELEGRAM_BOT_TOKEN, OPENAI_API_KEY
# …; not KNOWLEDGE_DAILY_TOKEN_BUDGET): a value refused is never repeated in a message, which ends up in logs.
SECRET_WORDS = ("TOKEN", "SECRET", "KEY", "PASSWORD")
SECRET_SETTINGS = frozenset(name.upper() for name in Settings.model_fields
                            if name.upper().rsplit("_", 1)[-1] in SECRET_WORDS)


def _describe(error: ErrorDetails) -> str:
    name = ".".join(str(part) for part in error["loc"]).upper()
    if not name:  # a check of several settings together (_check_knowledge): its message names them
        return str(error["msg"]).removeprefix("Value error, ")
    given = error.get("input")
    if name == "DATABASE_URL" and isinstance(given, str):  # a URL's password stays out of the message
        given = re.sub(r"(://[^:/@]*:).*@", r"\1***@", given)  # (a password may hold "/" or "@" itself)
    if name in SECRET_SETTINGS:
        hidden = f"{len(given)} characters" if isinstance(given, str) else "a value"
        return f"{name}: {error['msg']} (got {hidden}, not shown: it is a secret)"
    shown = "" if isinstance(given, dict) else f" (got {given!r})"
    return f"{name}: {error['msg']}{shown}"


def _env_files(overrides: dict[str, Any]) -> list[Path]:
    """The env files the settings are read from: `_env_file` given in code, else the model's (.env)."""
    given = overrides.get("_env_file", Settings.model_config.get("env_file"))
    return [Path(path) for path in (given if isinstance(given, list | tuple) else [given]) if path]


def unknown_in_env_files(overrides: dict[str, Any]) -> str | None:
    """A warning naming the keys of the env files that are no setting (a misspelling, DATABSE_URL, would otherwise be
    ignored without a word), each with the nearest setting's name when one is close; None when all are known. Only
    the files: the process environment holds many variables that are not Lessonbot's."""
    from dotenv import dotenv_values

    known = [name.upper() for name in Settings.model_fields]
    unknown: list[str] = []
    files = []
    for path in _env_files(overrides):
        if not path.expanduser().is_file():
            continue
        keys = [key for key in dotenv_values(path.expanduser(), encoding="utf-8")
                if key.upper() not in known and not key.upper().startswith("COMPOSE_")]  # (docker compose reads it too)
        for key in keys:
            close = difflib.get_close_matches(key.upper(), known, n=1, cutoff=0.7)
            unknown.append(f"{key} (did you mean {close[0]}?)" if close else key)
        if keys:
            files.append(str(path))
    if not unknown:
        return None
    which = "which is no Lessonbot setting: it is" if len(unknown) == 1 else "which are no Lessonbot settings: they are"
    return (f"Warning: {', '.join(files)} sets {', '.join(unknown)}, {which} ignored. Correct the name (.env.example "
            "lists every setting) or remove the line.")


def _not_utf8(overrides: dict[str, Any]) -> str:
    """Which env file holds a byte that is not UTF-8, and where: '.env: line 3 holds the byte 0xff'."""
    paths = _env_files(overrides)
    for path in paths:
        try:
            lines = path.read_bytes().splitlines()
        except OSError:
            continue
        for number, line in enumerate(lines, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                return f"{path}: line {number} holds the byte 0x{line[exc.start]:02x}, which is not UTF-8"
    return f"{', '.join(map(str, paths)) or '.env'}: a byte that is not UTF-8"


def load_settings(**overrides: Any) -> Settings:
    """Read the settings, or raise ConfigError naming each bad variable (or the .env file that cannot be read)."""
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        lines = [_describe(err) for err in exc.errors()]
        if warning := unknown_in_env_files(overrides):  # a misspelt name is often why a value is missing
            lines.append(warning)
        raise ConfigError("Configuration error:\n  " + "\n  ".join(lines)) from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"Configuration error:\n  {_not_utf8(overrides)}. Save the file as UTF-8 (or fix that line), or set the "
            "variable in the environment instead."
        ) from None
    except OSError as exc:  # an env file this user may not read
        raise ConfigError(
            f"Configuration error:\n  {exc.filename or '.env'} cannot be read ({exc.strerror or exc}). Let this user "
            "read it, or remove it and set the variables in the environment instead."
        ) from None
    if warning := unknown_in_env_files(overrides):  # a warning, not a refusal: the rest of the file is good
        print(warning, file=sys.stderr)
    return settings


def knowledge_settings(settings: Settings) -> KnowledgeSettings:
    """The part of the settings the knowledge room takes (it never sees the rest)."""
    return KnowledgeSettings(
        chroma_path=settings.chroma_path or settings.data_dir / "chroma",
        chroma_host=settings.chroma_host,
        chroma_port=settings.chroma_port,
        chroma_collection=settings.chroma_collection,
        embeddings=settings.embeddings,
        tokenizer_dir=settings.knowledge_tokenizer_dir,
        embedding_threads=settings.knowledge_embedding_threads,
        openai_api_key=settings.openai_api_key,
        openai_base_url=settings.openai_base_url,
        openai_model=settings.openai_model,
        openai_embedding_model=settings.openai_embedding_model,
        max_answer_tokens=settings.knowledge_max_answer_tokens,
        model_timeout_seconds=settings.knowledge_model_timeout_seconds,
        rate_limit_per_minute=settings.knowledge_rate_limit_per_minute,
        daily_token_budget=settings.knowledge_daily_token_budget,
        model_calls_per_day=settings.model_calls_per_day,
        cache_seconds=settings.knowledge_cache_seconds,
    )
